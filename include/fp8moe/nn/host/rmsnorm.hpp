// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::rmsnorm_dispatch<host_executor>: the host path of RMSNorm forward/backward. OpenMP over rows
// (forward, dx) and over columns (dw, so no two threads add into one dw element); float math.
#pragma once

#include <cstdint>
#include <span>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/host/elementwise.hpp"
#include "fp8moe/nn/rmsnorm.hpp"

#if FP8MOE_HAS_OPENMP
#include <omp.h>
#endif

namespace fp8moe::nn {

namespace host {

/// y rows [t0, t1) = x * rstd * w, rstd = rmsnorm_rstd(sum of squares) (stored when rstd is given).
template <class X, class W, class Y>
FP8MOE_HOST_SIMD_CLONES void rmsnorm_rows(matrix_view<X const> x, std::span<W const> w, matrix_view<Y> y,
                                          std::span<float> rstd, float eps, std::int64_t t0,
                                          std::int64_t t1) {
  std::int64_t const C = x.cols;
  for (std::int64_t t = t0; t < t1; ++t) {
    X const* xr = x.row(t);
    float ss = 0.0f;
    for (std::int64_t c = 0; c < C; ++c) {
      float const v = static_cast<float>(xr[c]);
      ss += v * v;
    }
    float const r = rmsnorm_rstd(ss, C, eps);
    if (!rstd.empty()) rstd[static_cast<std::size_t>(t)] = r;
    Y* yr = y.row(t);
    for (std::int64_t c = 0; c < C; ++c)
      yr[c] =
          static_cast<Y>(static_cast<float>(xr[c]) * r * static_cast<float>(w[static_cast<std::size_t>(c)]));
  }
}

}  // namespace host

template <>
struct rmsnorm_dispatch<host_executor> {
  template <class X, class W, class Y>
  static void forward(host_executor const& exec, matrix_view<X const> x, std::span<W const> w,
                      matrix_view<Y> y, std::span<float> rstd, float eps) {
    int const threads = host::elementwise_threads(exec, x.rows * x.cols);
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(threads)
    {
      std::int64_t const n = omp_get_num_threads(), me = omp_get_thread_num();
      host::rmsnorm_rows(x, w, y, rstd, eps, x.rows * me / n, x.rows * (me + 1) / n);
    }
#else
    host::rmsnorm_rows(x, w, y, rstd, eps, 0, x.rows);
#endif
    (void)threads;
  }

  template <class X, class W>
  static void backward(host_executor const& exec, matrix_view<X const> x, std::span<W const> w,
                       std::span<float const> rstd, matrix_view<float const> dy, matrix_view<float> dx,
                       std::span<float> dw) {
    std::int64_t const C = x.cols, T = x.rows;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t t = 0; t < T; ++t) {
      X const* xr = x.row(t);
      float const* dyr = dy.row(t);
      float const r = rstd[static_cast<std::size_t>(t)];
      float gx = 0.0f;
      for (std::int64_t c = 0; c < C; ++c)
        gx += static_cast<float>(w[static_cast<std::size_t>(c)]) * dyr[c] * static_cast<float>(xr[c]);
      float const gx_mean = gx / static_cast<float>(C);
      float* dxr = dx.row(t);
      for (std::int64_t c = 0; c < C; ++c)
        dxr[c] += rmsnorm_dx(static_cast<float>(xr[c]),
                             static_cast<float>(w[static_cast<std::size_t>(c)]) * dyr[c], r, gx_mean);
    }
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t c = 0; c < C; ++c) {
      float acc = 0.0f;
      for (std::int64_t t = 0; t < T; ++t)
        acc += dy(t, c) * static_cast<float>(x(t, c)) * rstd[static_cast<std::size_t>(t)];
      dw[static_cast<std::size_t>(c)] += acc;
    }
    (void)exec;
  }
};

}  // namespace fp8moe::nn
