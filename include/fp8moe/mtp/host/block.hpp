// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::block_dispatch<host_executor>: the element-wise pieces of tiny_block and the MTP module on
// the host (fill, copy/accumulate, tanh and its backward: OpenMP over rows; the causal running sum
// and its reverse: OpenMP over columns, each column summed in token order).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/mtp/block.hpp"

namespace fp8moe::mtp {

template <>
struct block_dispatch<host_executor> {
  static void fill(host_executor const& exec, matrix_view<float> m, float value) {
    each(exec, m.rows, m.cols, [&](std::int64_t r, std::int64_t c) { m(r, c) = value; });
  }
  static void copy(host_executor const& exec, matrix_view<float const> src, matrix_view<float> dst,
                   bool accumulate) {
    each(exec, src.rows, src.cols,
         [&](std::int64_t r, std::int64_t c) { dst(r, c) = accumulate ? dst(r, c) + src(r, c) : src(r, c); });
  }
  static void tanh_inplace(host_executor const& exec, matrix_view<float> z) {
    each(exec, z.rows, z.cols, [&](std::int64_t r, std::int64_t c) { z(r, c) = std::tanh(z(r, c)); });
  }
  static void tanh_backward_inplace(host_executor const& exec, matrix_view<float const> a,
                                    matrix_view<float> da) {
    each(exec, a.rows, a.cols,
         [&](std::int64_t r, std::int64_t c) { da(r, c) = tanh_backward_value(a(r, c), da(r, c)); });
  }
  static void causal_mean(host_executor const& exec, matrix_view<float const> u,
                          std::span<std::int32_t const> pos, matrix_view<float> m) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t c = 0; c < u.cols; ++c) {
      float run = 0.0f;
      for (std::int64_t t = 0; t < u.rows; ++t) {
        run += u(t, c);
        m(t, c) = run / static_cast<float>(pos[static_cast<std::size_t>(t)] + 1);
      }
    }
    (void)exec;
  }
  static void causal_mean_backward(host_executor const& exec, matrix_view<float const> dm,
                                   std::span<std::int32_t const> pos, matrix_view<float> du) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t c = 0; c < dm.cols; ++c) {
      float run = 0.0f;
      for (std::int64_t t = dm.rows - 1; t >= 0; --t) {
        run += dm(t, c) / static_cast<float>(pos[static_cast<std::size_t>(t)] + 1);
        du(t, c) = run;
      }
    }
    (void)exec;
  }

 private:
  /// f(r, c) for every element of a (rows, cols) matrix, OpenMP over rows.
  template <class F>
  static void each(host_executor const& exec, std::int64_t rows, std::int64_t cols, F const& f) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) f(r, c);
    (void)exec;
  }
};

}  // namespace fp8moe::mtp
