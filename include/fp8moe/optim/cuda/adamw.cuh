// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::adamw_dispatch<cuda_executor> (nvcc only): one grid-stride element-wise kernel per tensor,
// enqueued on exec.stream, running optim::adamw_update (the host path's per-element math; nvcc may
// contract its multiply-adds into FMAs, so results can differ from the host's in the last bit).
// Every span is device memory; nothing synchronizes the stream.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <span>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/optim/adamw.hpp"

namespace fp8moe::optim {

namespace cuda_detail {
template <class M>
__global__ void adamw_kernel(adamw_coefficients c, float* p, float const* g, M* m, M* v, std::int64_t n) {
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    adamw_update(c, p[i], g[i], m[i], v[i]);
}
}  // namespace cuda_detail

template <>
struct adamw_dispatch<cuda_executor> {
  template <class M>
  static void step(cuda_executor const& exec, adamw_config const& cfg, std::int64_t step,
                   std::span<adamw_tensor<M> const> tensors, float grad_scale) {
    adamw_coefficients const with_decay = adamw_coefficients_for(cfg, step, true, grad_scale);
    adamw_coefficients const no_decay = adamw_coefficients_for(cfg, step, false, grad_scale);
    constexpr int threads = 256;
    for (adamw_tensor<M> const& t : tensors) {
      auto const n = static_cast<std::int64_t>(t.param.size());
      if (n == 0) continue;
      auto const blocks = static_cast<unsigned>(std::min<std::int64_t>((n + threads - 1) / threads, 8192));
      cuda_detail::adamw_kernel<M><<<blocks, threads, 0, exec.stream>>>(
          t.decay ? with_decay : no_decay, t.param.data(), t.grad.data(), t.m.data(), t.v.data(), n);
      FP8MOE_CUDA_CHECK_LAUNCH();
    }
  }
};

}  // namespace fp8moe::optim
