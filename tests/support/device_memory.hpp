// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Device-memory helpers for the GPU test variants (nvcc only): to_device copies host values into a
// fresh cudaMalloc allocation (at least one element, so empty inputs give a valid pointer; the caller
// frees it or lets the process end), to_host copies n elements back. Both synchronous (legacy stream).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <vector>

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

}  // namespace fp8moe::test
