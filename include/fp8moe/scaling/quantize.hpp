// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host quantize / dequantize / transpose_requantize: public entry points and argument checks; the
// loops are in host/quantize.hpp and host/transpose.hpp (OpenMP over rows or tiles). Outputs are
// overwritten (data and scales); inputs are read-only; everything is validated before any output
// is written. Per-tile math is scale_math.hpp, shared with the CUDA path (scaling/cuda/).
// Partial tiles at the right/bottom edges get their own amax over the elements that exist.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/host/quantize.hpp"
#include "fp8moe/scaling/host/transpose.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "fp8moe/scaling/scale_math.hpp"

namespace fp8moe::scaling {

namespace detail {

inline constexpr char const* quantize_where = "fp8moe::scaling::quantize";

inline char const* format_name(element_format f) {
  return f == element_format::e4m3 ? "e4m3" : "e5m2";
}

inline void check_recipe(tensor_recipe const& r, std::string_view where) {
  std::string_view const p = recipe_problem(r);
  require(p.empty(), where, "recipe", "a valid recipe", p);
}

template <class T>
void check_format(tensor_recipe const& r, std::string_view where, std::string_view arg) {
  require(format_of<T>() == r.format, where, arg,
          std::string("element type ") + format_name(r.format) + " (recipe.format)",
          format_name(format_of<T>()));
}

/// Checks a quantized view: data shape, tile, and a scale matrix of the matching shape.
template <class T>
void check_quantized(quantized_matrix_view<T> const& q, std::int64_t rows, std::int64_t cols, tile_shape tile,
                     std::string_view where, std::string_view arg) {
  std::string const a(arg);
  check_matrix(q.data, where, a + ".data");
  check_shape(q.data, rows, cols, where, a + ".data");
  require(q.tile.rows >= 0 && q.tile.cols >= 0, where, a + ".tile", "non-negative tile extents");
  require(q.tile == tile, where, a + ".tile",
          "tile " + std::to_string(tile.rows) + "x" + std::to_string(tile.cols) + " (recipe.tile)",
          std::to_string(q.tile.rows) + "x" + std::to_string(q.tile.cols));
  check_matrix(q.scales, where, a + ".scales");
  check_shape(q.scales, scale_rows(tile, rows), scale_cols(tile, cols), where, a + ".scales");
}

template <class In, class T>
void validate_quantize(matrix_view<In const> x, tensor_recipe const& r, quantized_matrix_view<T> const& out,
                       std::string_view where) {
  check_recipe(r, where);
  require(r.source == amax_source::current, where, "recipe.source",
          "amax_source::current (for delayed scaling pass a delayed_scaling state: scaling/delayed.hpp)",
          "delayed");
  check_format<T>(r, where, "out.data");
  check_matrix(x, where, "x");
  check_quantized(out, x.rows, x.cols, r.tile, where, "out");
}

template <class In, class T>
void quantize_validated(host_executor const& exec, matrix_view<In const> x, tensor_recipe const& r,
                        quantized_matrix_view<T> out) {
  if (amax_ignores_nan(r.formula))
    quantize_host_impl<true>(exec, x, r, out);
  else
    quantize_host_impl<false>(exec, x, r, out);
}

/// Entry checks shared by the host and CUDA quantize overloads: element types at compile time,
/// then recipe, views and shapes (before anything is written). Returns x as a const view.
template <class In, class T>
matrix_view<std::remove_const_t<In> const> checked_quantize_args(matrix_view<In> x, tensor_recipe const& r,
                                                                 quantized_matrix_view<T> const& out) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::quantize: the output element type must be float8_e4m3_t or float8_e5m2_t");
  static_assert(wide_element<In>,
                "fp8moe::scaling::quantize: the input element type must be float or bfloat16_t");
  matrix_view<std::remove_const_t<In> const> const xc = x;
  validate_quantize(xc, r, out, quantize_where);
  return xc;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// quantize

/// Quantizes x (R,C) float or bf16 into out: FP8 data (R,C) + scales (ceil(R/tr), ceil(C/tc))
/// in any layout (row-major or mn_major_scale_layout). Overwrites out. Current-amax recipes only.
/// Throws fp8moe::error (before writing) on a bad recipe, element type, shape or stride.
template <class In, class T>
void quantize(host_executor const& exec, matrix_view<In> x, tensor_recipe const& r,
              quantized_matrix_view<T> out) {
  detail::quantize_validated(exec, detail::checked_quantize_args(x, r, out), r, out);
}

/// Allocating overload: returns a quantized_matrix<T> (row-major data and scales).
/// T defaults to float8_e4m3_t; pass quantize<float8_e5m2_t>(...) for E5M2 recipes.
template <class T = float8_e4m3_t, class In>
quantized_matrix<T> quantize(host_executor const& exec, matrix_view<In> x, tensor_recipe const& r) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::quantize: the output element type must be float8_e4m3_t or float8_e5m2_t");
  detail::check_recipe(r, detail::quantize_where);
  detail::check_format<T>(r, detail::quantize_where, "T (output element type)");
  check_matrix(x, detail::quantize_where, "x");
  quantized_matrix<T> q(x.rows, x.cols, r.tile);
  quantize(exec, x, r, q.view());
  return q;
}

// ---------------------------------------------------------------------------------------------
// dequantize

/// y(r,c) = float(q(r,c)) * sf(r/tr, c/tc), rounded to bf16 (RNE) when y is bf16. Overwrites y.
template <class T, class Out>
void dequantize(host_executor const& exec, quantized_matrix_view<T> q, matrix_view<Out> y) {
  using Q = std::remove_const_t<T>;
  static_assert(float8_type<Q>, "fp8moe::scaling::dequantize: q must hold float8_e4m3_t or float8_e5m2_t");
  static_assert(wide_element<Out> && !std::is_const_v<Out>,
                "fp8moe::scaling::dequantize: y must be a mutable float or bfloat16_t matrix");
  constexpr char const* where = "fp8moe::scaling::dequantize";
  quantized_matrix_view<Q const> const qc = q;
  check_matrix(qc.data, where, "q.data");
  require(qc.tile.rows >= 0 && qc.tile.cols >= 0, where, "q.tile", "non-negative tile extents");
  detail::check_quantized(qc, qc.data.rows, qc.data.cols, qc.tile, where, "q");
  check_matrix(y, where, "y");
  check_shape(y, qc.rows(), qc.cols(), where, "y");
  std::int64_t const R = qc.rows(), C = qc.cols();
  if (R == 0 || C == 0) return;
  std::int64_t const tr = qc.tile_rows(), tc = qc.tile_cols();
  auto const& lut = detail::decode_table_v<Q>.v;
  int const nt = exec.num_threads();
  (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t row = 0; row < R; ++row) {
    detail::dequantize_row<Q>(lut.data(), reinterpret_cast<std::uint8_t const*>(&qc.data(row, 0)),
                              qc.data.col_stride, &y(row, 0), y.col_stride, C, tc, &qc.scales(row / tr, 0),
                              qc.scales.col_stride);
  }
}

// ---------------------------------------------------------------------------------------------
// transpose_requantize

namespace detail {

template <class T>
void validate_transpose(std::int64_t R, std::int64_t C, tensor_recipe const& r,
                        quantized_matrix_view<T> const& out, std::string_view where) {
  check_recipe(r, where);
  require(r.source == amax_source::current, where, "recipe.source", "amax_source::current", "delayed");
  require(r.tile.rows == 1, where, "recipe.tile",
          "rows == 1 (tiles run along the rows of the transposed output, e.g. {1,128})",
          std::to_string(r.tile.rows) + "x" + std::to_string(r.tile.cols));
  check_format<T>(r, where, "out.data");
  check_quantized(out, C, R, r.tile, where, "out");
}

/// Entry checks shared by the host and CUDA transpose_requantize-from-source overloads.
template <class In, class T>
matrix_view<std::remove_const_t<In> const> checked_transpose_args(matrix_view<In> x, tensor_recipe const& r,
                                                                  quantized_matrix_view<T> const& out) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::transpose_requantize: the output element type must be float8_e4m3_t or "
                "float8_e5m2_t");
  static_assert(wide_element<In>, "fp8moe::scaling::transpose_requantize: x must be float or bfloat16_t");
  constexpr char const* where = "fp8moe::scaling::transpose_requantize";
  matrix_view<std::remove_const_t<In> const> const xc = x;
  check_matrix(xc, where, "x");
  validate_transpose(xc.rows, xc.cols, r, out, where);
  return xc;
}

/// Entry checks shared by the host and CUDA transpose_requantize-from-FP8 overloads.
template <class Q, class T>
quantized_matrix_view<std::remove_const_t<Q> const> checked_transpose_args(
    quantized_matrix_view<Q> xq, tensor_recipe const& r, quantized_matrix_view<T> const& out) {
  using QT = std::remove_const_t<Q>;
  static_assert(
      float8_type<QT> && float8_type<T>,
      "fp8moe::scaling::transpose_requantize: the element types must be float8_e4m3_t or float8_e5m2_t");
  constexpr char const* where = "fp8moe::scaling::transpose_requantize";
  quantized_matrix_view<QT const> const qc = xq;
  check_matrix(qc.data, where, "xq.data");
  check_quantized(qc, qc.data.rows, qc.data.cols, qc.tile, where, "xq");
  validate_transpose(qc.rows(), qc.cols(), r, out, where);
  return qc;
}

}  // namespace detail

/// From the high-precision source (TE style, no double quantization): x (R,C) -> out = quantized
/// x^T (C,R) with recipe.tile {1,K} along R, i.e. Kx1 column tiles of x (the layout the
/// weight-gradient GEMM needs). out.scales is (C, ceil(R/K)). Overwrites out.
template <class In, class T>
void transpose_requantize(host_executor const& exec, matrix_view<In> x, tensor_recipe const& r,
                          quantized_matrix_view<T> out) {
  using I = std::remove_const_t<In>;
  matrix_view<I const> const xc = detail::checked_transpose_args(x, r, out);
  detail::source_rows<I> const load_row{xc};
  float const vfi = detail::value_for_inf<I>(r);
  if (amax_ignores_nan(r.formula))
    detail::transpose_quantize_host_impl<true>(exec, xc.rows, xc.cols, load_row, r, vfi, out);
  else
    detail::transpose_quantize_host_impl<false>(exec, xc.rows, xc.cols, load_row, r, vfi, out);
}

/// From an already quantized x (R,C) (e.g. 1x128 row tiles): each element is dequantized
/// (float(q) * sf, exact in fp32) and requantized into 1xK tiles of x^T. With power-of-two scales
/// on both sides the requantization only rescales by a power of two, so it is exact for every
/// element that stays in the FP8 normal range (fp8_numerics.md §0.11); elements pushed below it are
/// rounded once (RNE), as a direct quantization of the dequantized values would. Overwrites out.
template <class Q, class T>
void transpose_requantize(host_executor const& exec, quantized_matrix_view<Q> xq, tensor_recipe const& r,
                          quantized_matrix_view<T> out) {
  using QT = std::remove_const_t<Q>;
  quantized_matrix_view<QT const> const qc = detail::checked_transpose_args(xq, r, out);
  std::int64_t const tr = qc.tile_rows(), tc = qc.tile_cols();
  auto const load_row = [qc, tr, tc](std::int64_t row, std::int64_t c0, std::int64_t nc, float* v)
                            FP8MOE_SCALING_FORCE_INLINE {
                              auto const& lut = detail::decode_table_v<QT>.v;
                              for (std::int64_t c = 0; c < nc; ++c)
                                v[c] = lut[qc.data(row, c0 + c).bits()] * qc.scales(row / tr, (c0 + c) / tc);
                            };
  if (amax_ignores_nan(r.formula))
    detail::transpose_quantize_host_impl<true>(exec, qc.rows(), qc.cols(), load_row, r, 3.40282347e38f, out);
  else
    detail::transpose_quantize_host_impl<false>(exec, qc.rows(), qc.cols(), load_row, r, 3.40282347e38f, out);
}

}  // namespace fp8moe::scaling
