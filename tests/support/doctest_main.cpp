// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// doctest main shared by the test executables. Built with FP8MOE_TEST_GPU (the nvcc variants), it
// exits with 77 (reported by ctest as "skipped") when no CUDA device is visible.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#ifdef FP8MOE_TEST_GPU
#include <cuda_runtime_api.h>
#endif

int main(int argc, char** argv) {
#ifdef FP8MOE_TEST_GPU
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("no CUDA device visible: GPU test skipped\n");
    return 77;
  }
#endif
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
