// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Float64 reference of the block-scaled FP8 GEMM: the promotion semantics of problem.hpp written
// out element by element (exact per-block FP8 products for E4M3, double accumulation), single
// threaded, for tests and for checking device results. Writes D like the real path; D may be double.
#pragma once

#include <cstdint>
#include <type_traits>

#include "fp8moe/gemm/problem.hpp"

namespace fp8moe::gemm::reference {

/// One output element before rounding:
///   acc = c;  for each promotion block [kb, kb+P) of [k0, k0+k):
///             acc += (sum_{kk} a(ar, kk) * b(br, kk)) * (sa(ar, kb) * sb(br, kb))
/// Products of FP8 values and their 128-term sums are exact in double for E4M3.
template <class TA, class TB>
double block_scaled_dot(quantized_matrix_view<TA const> const& a, std::int64_t ar,
                        quantized_matrix_view<TB const> const& b, std::int64_t br, std::int64_t k0,
                        std::int64_t k, int promotion_k, double c = 0.0) {
  double acc = c;
  for (std::int64_t kb = k0; kb < k0 + k; kb += promotion_k) {
    std::int64_t const ke = kb + promotion_k < k0 + k ? kb + promotion_k : k0 + k;
    double partial = 0.0;
    for (std::int64_t kk = kb; kk < ke; ++kk) {
      partial +=
          static_cast<double>(a.data(ar, kk).to_float()) * static_cast<double>(b.data(br, kk).to_float());
    }
    double const scale = static_cast<double>(a.scale_at(ar, kb)) * static_cast<double>(b.scale_at(br, kb));
    acc += partial * scale;
  }
  return acc;
}

namespace detail {
template <class TD>
TD round_to(double v) {
  if constexpr (std::is_same_v<TD, double>) {
    return v;
  } else {
    return TD(static_cast<float>(v));  // bf16: double -> float -> bf16 (double rounding, <= 1 ulp)
  }
}

template <class TA, class TB, class TD>
void rows(quantized_matrix_view<TA const> const& a, std::int64_t a_row0,
          quantized_matrix_view<TB const> const& b, std::int64_t m, std::int64_t k0, std::int64_t k,
          matrix_view<TD> const& d, matrix_view<float const> const& c, int p) {
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < b.rows(); ++j) {
      double const c0 = c.data != nullptr ? static_cast<double>(c(i, j)) : 0.0;
      d(i, j) = round_to<TD>(block_scaled_dot(a, a_row0 + i, b, j, k0, k, p, c0));
    }
  }
}
}  // namespace detail

/// Dense reference: D = [C +] A * B^T.
template <class TA, class TB, class TD>
void fp8_gemm(dense<TA, TB, TD> const& p, gemm_options const& o = {}) {
  static_assert(reference_output_element<TD>,
                "fp8moe::gemm::reference: D must be float, bfloat16_t or double");
  validate(p, o);
  detail::rows(p.a, 0, p.b, p.m(), 0, p.k(), p.d, p.c, o.promotion_k);
}

/// Contiguous reference: row r uses expert m_indices[r]; padding rows get C or 0.
template <class TA, class TB, class TD>
void grouped_gemm(grouped_contiguous<TA, TB, TD> const& p, gemm_options const& o = {}) {
  validate(p, o);
  check_indices(p);
  for (std::int64_t r = 0; r < p.m(); ++r) {
    int const e = p.m_indices[r];
    for (std::int64_t j = 0; j < p.n(); ++j) {
      double const c0 = p.c.data != nullptr ? static_cast<double>(p.c(r, j)) : 0.0;
      double const v = e < 0 ? c0 : block_scaled_dot(p.a, r, p.b[e], j, 0, p.k(), o.promotion_k, c0);
      p.d(r, j) = detail::round_to<TD>(v);
    }
  }
}

/// Masked reference: rows r < masked_m[g] of every group; the other rows are not written.
template <class TA, class TB, class TD>
void grouped_gemm(grouped_masked<TA, TB, TD> const& p, gemm_options const& o = {}) {
  validate(p, o);
  check_indices(p);
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    matrix_view<float const> const c = p.c.data != nullptr ? p.c[g] : matrix_view<float const>{};
    detail::rows(p.a[g], 0, p.b[g], p.masked_m[g], 0, p.k(), p.d[g], c, o.promotion_k);
  }
}

/// K-grouped reference: D_g = [C_g +] A_g * B_g^T over the group's K columns.
template <class TA, class TB>
void grouped_gemm(k_grouped<TA, TB> const& p, gemm_options const& o = {}) {
  validate(p, o);
  std::int64_t k0 = 0;
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    matrix_view<float const> const c = p.c.data != nullptr ? p.c[g] : matrix_view<float const>{};
    detail::rows(p.a, 0, p.b, p.m(), k0, p.k_sizes[g], p.d[g], c, o.promotion_k);
    k0 += p.k_sizes[g];
  }
}

}  // namespace fp8moe::gemm::reference
