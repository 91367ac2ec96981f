// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::adamw_dispatch<host_executor>: the host AdamW step. One OpenMP team for the whole list, each
// tensor's blocks of 512 elements split statically over it. A block runs optim::adamw_moments, sqrt,
// optim::adamw_param as three vector loops: the same operations as adamw_update, so bit-identical to
// it, and to any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "fp8moe/config.hpp"
#if defined(__SSE__) && !FP8MOE_CUDA_COMPILER
#include <xmmintrin.h>
#elif defined(__aarch64__) && defined(__ARM_NEON) && !FP8MOE_CUDA_COMPILER
#include <arm_neon.h>
#endif
#include "fp8moe/core/executor.hpp"
#include "fp8moe/optim/adamw.hpp"

namespace fp8moe::optim {

namespace host_detail {
inline constexpr std::int64_t adamw_block = 512;

/// x[i] = sqrt(x[i]) for i < n, correctly rounded (IEEE). GCC keeps a std::sqrt loop scalar while
/// sqrt may set errno (-fmath-errno, its default, which its optimize attribute cannot switch off per
/// function), so where the ISA has a vector sqrt (SSE sqrtps, AArch64 fsqrt) it is called directly:
/// the same correctly rounded result, four lanes at a time.
inline void sqrt_block(float* x, std::int64_t n) {
  std::int64_t i = 0;
#if defined(__SSE__) && !FP8MOE_CUDA_COMPILER
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#elif defined(__aarch64__) && defined(__ARM_NEON) && !FP8MOE_CUDA_COMPILER
  for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vsqrtq_f32(vld1q_f32(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

/// Elements [0, n) of one tensor's block (n <= adamw_block). The views were checked not to overlap.
template <class M>
void adamw_block_update(adamw_coefficients const& c, float* __restrict p, float const* __restrict g,
                        M* __restrict m, M* __restrict v, std::int64_t n) {
  alignas(64) float mf[adamw_block], vf[adamw_block];
  for (std::int64_t i = 0; i < n; ++i) adamw_moments(c, g[i], m[i], v[i], mf[i], vf[i]);
  sqrt_block(vf, n);
  for (std::int64_t i = 0; i < n; ++i) p[i] = adamw_param(c, p[i], mf[i], vf[i]);
}
}  // namespace host_detail

template <>
struct adamw_dispatch<host_executor> {
  template <class M>
  static void step(host_executor const& exec, adamw_config const& cfg, std::int64_t step,
                   std::span<adamw_tensor<M> const> tensors, float grad_scale) {
    using host_detail::adamw_block;
    adamw_coefficients const with_decay = adamw_coefficients_for(cfg, step, true, grad_scale);
    adamw_coefficients const no_decay = adamw_coefficients_for(cfg, step, false, grad_scale);
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(exec.num_threads())
#endif
    for (adamw_tensor<M> const& t : tensors) {
      auto const n = static_cast<std::int64_t>(t.param.size());
      std::int64_t const blocks = (n + adamw_block - 1) / adamw_block;
#if FP8MOE_HAS_OPENMP
#pragma omp for schedule(static) nowait
#endif
      for (std::int64_t b = 0; b < blocks; ++b) {
        std::int64_t const o = b * adamw_block;
        host_detail::adamw_block_update(t.decay ? with_decay : no_decay, t.param.data() + o,
                                        t.grad.data() + o, t.m.data() + o, t.v.data() + o,
                                        std::min(adamw_block, n - o));
      }
    }
    (void)exec;
  }
};

}  // namespace fp8moe::optim
