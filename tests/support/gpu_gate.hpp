// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Whether a GPU test variant runs, is skipped (exit 77, ctest "skipped") or fails before running,
// from what the CUDA runtime reported. Plain ints and no CUDA header, so the decision is unit-tested
// on the host (tests/support/test_gpu_gate.cpp); tests/support/doctest_main.cpp feeds it the runtime.
#pragma once

#include <cstdlib>
#include <string>

namespace fp8moe::test {

/// The CUDA runtime's codes the decision needs (stable ABI values of cudaError_t; doctest_main.cpp
/// static_asserts them against cuda_runtime_api.h).
inline constexpr int cuda_success = 0;
inline constexpr int cuda_error_no_device = 100;

/// Exit status ctest reads as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt).
inline constexpr int skip_exit_code = 77;

/// What the runtime said: cudaDriverGetVersion (0 = no driver installed at all), then
/// cudaGetDeviceCount's status and count; require_gpu from FP8MOE_REQUIRE_GPU.
struct gpu_probe {
  int driver_version = 0;
  int count_status = cuda_success;
  int device_count = 0;
  bool require_gpu = false;
  std::string error_text;  ///< cudaGetErrorName + cudaGetErrorString of count_status
};

struct gpu_gate {
  enum action_t { run, skip, fail } action = run;
  std::string message;  ///< printed when not running
  int exit_code() const { return action == skip ? skip_exit_code : action == fail ? 1 : 0; }
};

/// Skip only where there is no device: no driver installed, cudaErrorNoDevice, or a count of 0.
/// Any other runtime error (a driver older than the runtime, a broken install) fails with its text;
/// with require_gpu (scripts/gpu-check.sh) a skip fails too, so a GPU run cannot pass without a GPU.
inline gpu_gate decide_gpu_gate(gpu_probe const& p) {
  bool const no_device = p.driver_version == 0 || p.count_status == cuda_error_no_device ||
                         (p.count_status == cuda_success && p.device_count <= 0);
  if (!no_device && p.count_status != cuda_success)
    return {gpu_gate::fail, "CUDA runtime error (not a missing device): " + p.error_text + " (code " +
                                std::to_string(p.count_status) + ", driver version " +
                                std::to_string(p.driver_version) + "): GPU test failed"};
  if (no_device) {
    std::string why = p.driver_version == 0 ? "no CUDA driver installed" : "no CUDA device visible";
    if (p.require_gpu) return {gpu_gate::fail, why + " but FP8MOE_REQUIRE_GPU is set: GPU test failed"};
    return {gpu_gate::skip, why + ": GPU test skipped"};
  }
  return {gpu_gate::run, {}};
}

/// FP8MOE_REQUIRE_GPU set to anything but "" or "0".
inline bool require_gpu_from(char const* value) {
  return value != nullptr && value[0] != '\0' && std::string(value) != "0";
}
inline bool require_gpu_from_env() {
  return require_gpu_from(std::getenv("FP8MOE_REQUIRE_GPU"));
}

}  // namespace fp8moe::test
