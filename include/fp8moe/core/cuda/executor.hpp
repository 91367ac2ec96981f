// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// cuda_executor{stream}: runs ops as kernels enqueued on `stream`; nothing here synchronizes the
// stream. FP8MOE_CUDA_CHECK turns a failing runtime call into fp8moe::error naming the call.
// Host-compilable (needs only the CUDA runtime headers); part of the fp8moe::cuda target.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"

namespace fp8moe {

struct cuda_executor {
  cudaStream_t stream = nullptr;
};

template <>
struct is_device_executor<cuda_executor> : std::true_type {};

namespace detail {
[[noreturn]] inline void throw_cuda(cudaError_t e, char const* call, char const* file, int line) {
  (void)cudaGetLastError();  // reset a non-sticky error, or every later launch check would report it again
  throw error(errc::cuda, concat(call, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") at ",
                                 file, ":", line));
}
}  // namespace detail

/// Number of visible CUDA devices; 0 when there is no driver or no device (never throws).
inline int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace fp8moe

/// Checks a CUDA runtime call: FP8MOE_CUDA_CHECK(cudaMemcpyAsync(...)).
#define FP8MOE_CUDA_CHECK(call)                                                                           \
  do {                                                                                                    \
    cudaError_t fp8moe_err_ = (call);                                                                     \
    if (fp8moe_err_ != cudaSuccess) ::fp8moe::detail::throw_cuda(fp8moe_err_, #call, __FILE__, __LINE__); \
  } while (0)

/// Checks the last kernel launch (launch-configuration errors) without synchronizing, and resets
/// the runtime's last-error slot (cudaGetLastError), so an error that a caller caught earlier is not
/// reported again at an unrelated later launch.
#define FP8MOE_CUDA_CHECK_LAUNCH() FP8MOE_CUDA_CHECK(cudaGetLastError())
