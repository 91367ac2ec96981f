// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Bridges from a permute_plan to the grouped GEMM problems of gemm/problem.hpp: the plan's
// row_expert is the contiguous layout's m_indices (-1 on padding), its counts the masked layout's
// masked_m. Views only: nothing is copied; the arrays stay where the plan keeps them.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "fp8moe/core/error.hpp"
#include "fp8moe/gemm/problem.hpp"
#include "fp8moe/moe/permute.hpp"

namespace fp8moe::moe {

/// D (M,N) = permuted A (M,K) x B_e (N,K)^T per row's expert; padding rows get C or 0.
template <class TA, class TB, class TD>
gemm::grouped_contiguous<TA, TB, TD> contiguous_problem(permute_plan const& p,
                                                        scaling::quantized_matrix_view<TA const> a,
                                                        gemm::quantized_batched_view<TB const> b,
                                                        matrix_view<TD> d, matrix_view<float const> c = {}) {
  constexpr char const* where = "fp8moe::moe::contiguous_problem";
  require(p.layout == layout_kind::contiguous, where, "plan", "a contiguous plan");
  require(a.rows() == p.rows, where, "a", std::to_string(p.rows) + " rows (plan.rows)",
          std::to_string(a.rows()));
  require(p.align <= std::numeric_limits<int>::max(), where, "plan.align", "an int");
  return {a, b, vector_view<int const>{p.row_expert, p.rows}, d, c, static_cast<int>(p.align)};
}

/// The permuted rows (E*max_m, C) of a masked plan as (E, max_m, C), scales alike (per-row tiles).
template <class T>
gemm::quantized_batched_view<T> as_masked_batches(permute_plan const& p,
                                                  scaling::quantized_matrix_view<T> a) {
  constexpr char const* where = "fp8moe::moe::as_masked_batches";
  require(p.layout == layout_kind::masked, where, "plan", "a masked plan");
  require(a.rows() == p.rows && a.tile_rows() == 1, where, "a", "(E*max_m, C) rows with per-row scale tiles");
  using S = std::conditional_t<std::is_const_v<T>, float const, float>;
  std::int64_t const E = p.experts, m = p.align;
  return {batched_matrix_view<T>{a.data.data, E, m, a.data.cols, m * a.data.row_stride, a.data.row_stride,
                                 a.data.col_stride},
          batched_matrix_view<S>{a.scales.data, E, m, a.scales.cols, m * a.scales.row_stride,
                                 a.scales.row_stride, a.scales.col_stride},
          a.tile};
}

/// D (E, max_m, N) = A_e x B_e^T for the first counts[e] rows of each expert (DeepEP low-latency
/// layout); d is the (E*max_m, N) output viewed per expert.
template <class TA, class TB, class TD>
gemm::grouped_masked<TA, TB, TD> masked_problem(permute_plan const& p,
                                                scaling::quantized_matrix_view<TA const> a,
                                                gemm::quantized_batched_view<TB const> b, matrix_view<TD> d,
                                                int expected_m = 0) {
  constexpr char const* where = "fp8moe::moe::masked_problem";
  require(d.rows == p.rows, where, "d", std::to_string(p.rows) + " rows (E * max_m)", std::to_string(d.rows));
  std::int64_t const E = p.experts, m = p.align;
  return {as_masked_batches(p, a),
          b,
          vector_view<int const>{p.counts, E},
          batched_matrix_view<TD>{d.data, E, m, d.cols, m * d.row_stride, d.row_stride, d.col_stride},
          {},
          expected_m};
}

}  // namespace fp8moe::moe
