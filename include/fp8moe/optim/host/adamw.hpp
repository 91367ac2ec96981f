// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::adamw_dispatch<host_executor>: the host AdamW step. One OpenMP team for the whole list,
// each tensor's elements split statically over it (`omp for simd`: the views were checked not to
// overlap); the per-element math is optim::adamw_update, shared with the CUDA path. Results do not
// depend on the thread count (every element is independent).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/optim/adamw.hpp"

namespace fp8moe::optim {

template <>
struct adamw_dispatch<host_executor> {
  template <class M>
  static void step(host_executor const& exec, adamw_config const& cfg, std::int64_t step,
                   std::span<adamw_tensor<M> const> tensors, float grad_scale) {
    adamw_coefficients const with_decay = adamw_coefficients_for(cfg, step, true, grad_scale);
    adamw_coefficients const no_decay = adamw_coefficients_for(cfg, step, false, grad_scale);
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(exec.num_threads())
#endif
    for (adamw_tensor<M> const& t : tensors) {
      adamw_coefficients const c = t.decay ? with_decay : no_decay;
      float* const p = t.param.data();
      float const* const g = t.grad.data();
      M* const m = t.m.data();
      M* const v = t.v.data();
      auto const n = static_cast<std::int64_t>(t.param.size());
#if FP8MOE_HAS_OPENMP
#pragma omp for simd schedule(static) nowait
#endif
      for (std::int64_t i = 0; i < n; ++i) adamw_update(c, p[i], g[i], m[i], v[i]);
    }
    (void)exec;
  }
};

}  // namespace fp8moe::optim
