// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// doctest main shared by the test executables. Built with FP8MOE_TEST_GPU (the nvcc variants), it
// asks the CUDA runtime first (gpu_gate.hpp): no device -> exit 77 (ctest "skipped"); any other
// runtime error, or no device under FP8MOE_REQUIRE_GPU=1 -> exit 1 with the error printed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#ifdef FP8MOE_TEST_GPU
#include <cuda_runtime_api.h>

#include "gpu_gate.hpp"

static_assert(cudaSuccess == fp8moe::test::cuda_success &&
                  cudaErrorNoDevice == fp8moe::test::cuda_error_no_device,
              "gpu_gate.hpp's copies of the cudaError_t codes are wrong");
#endif

int main(int argc, char** argv) {
#ifdef FP8MOE_TEST_GPU
  namespace ft = fp8moe::test;
  ft::gpu_probe p;
  if (cudaDriverGetVersion(&p.driver_version) != cudaSuccess)
    p.driver_version = -1;  // unknown: not "no driver"
  cudaError_t const e = cudaGetDeviceCount(&p.device_count);
  p.count_status = static_cast<int>(e);
  p.error_text = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  p.require_gpu = ft::require_gpu_from_env();
  ft::gpu_gate const g = ft::decide_gpu_gate(p);
  if (g.action != ft::gpu_gate::run) {
    std::printf("%s\n", g.message.c_str());
    std::fflush(stdout);
    return g.exit_code();
  }
#endif
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
