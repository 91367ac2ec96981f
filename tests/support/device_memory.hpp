// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Device-memory helpers for the GPU test variants (nvcc only): to_device copies host values into a
// fresh cudaMalloc allocation (at least one element, so empty inputs give a valid pointer; the caller
// frees it or lets the process end), to_host copies n elements back, device_array owns its memory
// (an fp8moe::device_buffer). All synchronous (legacy stream).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "fp8moe/core/cuda/device_buffer.hpp"
#include "fp8moe/core/cuda/executor.hpp"

namespace fp8moe::test {

/// A device copy of h[0, n).
template <class T>
T* to_device(T const* h, std::size_t n) {
  T* d = nullptr;
  FP8MOE_CUDA_CHECK(cudaMalloc(&d, std::max<std::size_t>(n, 1) * sizeof(T)));
  FP8MOE_CUDA_CHECK(cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

/// A device copy of v.
template <class T>
T* to_device(std::vector<T> const& v) {
  return to_device(v.data(), v.size());
}

/// The n elements at device pointer d.
template <class T>
std::vector<T> to_host(T const* d, std::size_t n) {
  std::vector<T> h(n);
  FP8MOE_CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

/// An owning device array of n elements (at least one allocated, so an empty one still has a valid
/// pointer), optionally copied from the host: fp8moe::device_buffer on the legacy default stream,
/// with the synchronous behaviour the tests rely on (the destructor waits for the device first, as
/// cudaFree would, so no kernel of another stream still uses the memory).
template <class T>
struct device_array {
  device_buffer<T> buf;
  T* p = nullptr;
  std::size_t n = 0;
  explicit device_array(std::size_t count)
      : buf(std::max<std::size_t>(count, 1), cuda_executor{}), p(buf.data()), n(count) {
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(nullptr));  // usable on every stream from here on
  }
  device_array(T const* host, std::size_t count) : device_array(count) {
    FP8MOE_CUDA_CHECK(cudaMemcpy(p, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~device_array() { (void)cudaDeviceSynchronize(); }
  device_array(device_array const&) = delete;
  device_array& operator=(device_array const&) = delete;
  /// Every byte 0xFF (NaN for floating-point elements).
  void poison() { FP8MOE_CUDA_CHECK(cudaMemset(p, 0xFF, n * sizeof(T))); }
  std::vector<T> get() const { return to_host(p, n); }
};

}  // namespace fp8moe::test
