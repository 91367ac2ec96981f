// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// quantize / dequantize / transpose_requantize: the public entry points (one function template per
// op, its first parameter constrained on `executor`) and their argument checks, shared by every
// executor. Each forwards to scaling::dispatch<executor>: the host path in host/dispatch.hpp (OpenMP
// loops in host/quantize.hpp, host/transpose.hpp), the CUDA path in cuda/quantize.cuh (nvcc).
// Outputs are overwritten (data and scales); inputs are read-only; everything is validated before
// any output is written. Per-tile math is scale_math.hpp, shared by both paths. Partial tiles at
// the right/bottom edges get their own amax over the elements that exist.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/host/dispatch.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "fp8moe/scaling/scale_math.hpp"

namespace fp8moe::scaling {

/// Per-executor implementations of the ops below (core/dispatch.hpp): defined for host_executor in
/// host/dispatch.hpp (included here) and for cuda_executor in cuda/quantize.cuh (nvcc).
template <class Exec>
struct dispatch;

/// The executor's owning matrix, returned by the allocating dequantize: host_matrix<T> here,
/// device_matrix<T> on exec.stream for cuda_executor (cuda/quantize.cuh).
template <class Exec>
struct owning_matrix;
template <>
struct owning_matrix<host_executor> {
  template <class T>
  static host_matrix<T> make(host_executor const&, std::int64_t rows, std::int64_t cols) {
    return host_matrix<T>(rows, cols);
  }
};

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

/// Entry checks of quantize: element types at compile time, then recipe, views and shapes (before
/// anything is written). Returns x as a const view.
template <class In, class T>
matrix_view<std::remove_const_t<In> const> checked_quantize_args(matrix_view<In> x, tensor_recipe const& r,
                                                                 quantized_matrix_view<T> const& out) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::quantize: the output element type must be float8_e4m3_t or float8_e5m2_t");
  static_assert(wide_element<std::remove_const_t<In>>,
                "fp8moe::scaling::quantize: the input element type must be float or bfloat16_t");
  matrix_view<std::remove_const_t<In> const> const xc = x;
  validate_quantize(xc, r, out, quantize_where);
  return xc;
}

/// The recipe checks of transpose_requantize (also run before the allocating form allocates).
template <class T>
void check_transpose_recipe(tensor_recipe const& r, std::string_view where, std::string_view out_arg) {
  check_recipe(r, where);
  require(r.source == amax_source::current, where, "recipe.source", "amax_source::current", "delayed");
  require(r.tile.rows == 1, where, "recipe.tile",
          "rows == 1 (tiles run along the rows of the transposed output, e.g. {1,128})",
          std::to_string(r.tile.rows) + "x" + std::to_string(r.tile.cols));
  check_format<T>(r, where, out_arg);
}

template <class T>
void validate_transpose(std::int64_t R, std::int64_t C, tensor_recipe const& r,
                        quantized_matrix_view<T> const& out, std::string_view where) {
  check_transpose_recipe<T>(r, where, "out.data");
  check_quantized(out, C, R, r.tile, where, "out");
}

/// Entry checks of transpose_requantize from the high-precision source.
template <class In, class T>
matrix_view<std::remove_const_t<In> const> checked_transpose_args(matrix_view<In> x, tensor_recipe const& r,
                                                                  quantized_matrix_view<T> const& out) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::transpose_requantize: the output element type must be float8_e4m3_t or "
                "float8_e5m2_t");
  static_assert(wide_element<std::remove_const_t<In>>,
                "fp8moe::scaling::transpose_requantize: x must be float or bfloat16_t");
  constexpr char const* where = "fp8moe::scaling::transpose_requantize";
  matrix_view<std::remove_const_t<In> const> const xc = x;
  check_matrix(xc, where, "x");
  validate_transpose(xc.rows, xc.cols, r, out, where);
  return xc;
}

/// Entry checks of transpose_requantize from an already quantized source.
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

/// The two sources of transpose_requantize, and their extents (rows, cols).
template <class X>
inline constexpr bool is_matrix_view_v = false;
template <class T>
inline constexpr bool is_matrix_view_v<matrix_view<T>> = true;
template <class X>
inline constexpr bool is_quantized_view_v = false;
template <class T>
inline constexpr bool is_quantized_view_v<quantized_matrix_view<T>> = true;
template <class T>
std::pair<std::int64_t, std::int64_t> extents(matrix_view<T> const& x) {
  return {x.rows, x.cols};
}
template <class T>
std::pair<std::int64_t, std::int64_t> extents(quantized_matrix_view<T> const& x) {
  return {x.rows(), x.cols()};
}

/// Entry checks of dequantize. Returns q as a const view.
template <class T, class Out>
quantized_matrix_view<std::remove_const_t<T> const> checked_dequantize_args(quantized_matrix_view<T> q,
                                                                            matrix_view<Out> const& y) {
  using Q = std::remove_const_t<T>;
  static_assert(float8_type<Q>, "fp8moe::scaling::dequantize: q must hold float8_e4m3_t or float8_e5m2_t");
  static_assert(wide_element<Out> && !std::is_const_v<Out>,
                "fp8moe::scaling::dequantize: y must be a mutable float or bfloat16_t matrix");
  constexpr char const* where = "fp8moe::scaling::dequantize";
  quantized_matrix_view<Q const> const qc = q;
  check_matrix(qc.data, where, "q.data");
  require(qc.tile.rows >= 0 && qc.tile.cols >= 0, where, "q.tile", "non-negative tile extents");
  check_quantized(qc, qc.data.rows, qc.data.cols, qc.tile, where, "q");
  check_matrix(y, where, "y");
  check_shape(y, qc.rows(), qc.cols(), where, "y");
  return qc;
}

}  // namespace detail

// The unmatched case of every entry point below: one readable error naming the header to include.
#define FP8MOE_SCALING_REQUIRE_PATH(Exec, op)                                        \
  static_assert(has_dispatch<dispatch<executor_t<Exec>>>,                            \
                "fp8moe::scaling::" op                                               \
                ": this executor has no scaling path in this translation unit; for " \
                "cuda_executor include \"fp8moe/scaling/cuda/quantize.cuh\" (nvcc)")

// ---------------------------------------------------------------------------------------------
// quantize

/// Quantizes x (R,C) float or bf16 into out: FP8 data (R,C) + scales (ceil(R/tr), ceil(C/tc))
/// in any layout (row-major or mn_major_scale_layout). Overwrites out. Current-amax recipes only.
/// Throws fp8moe::error (before writing) on a bad recipe, element type, shape or stride. On a
/// cuda_executor the views hold device memory and the kernels are enqueued on exec.stream.
template <executor Exec, class In, class T>
void quantize(Exec const& exec, matrix_view<In> x, tensor_recipe const& r, quantized_matrix_view<T> out) {
  FP8MOE_SCALING_REQUIRE_PATH(Exec, "quantize");
  auto const xc = detail::checked_quantize_args(x, r, out);
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>)
    dispatch<executor_t<Exec>>::quantize(exec, xc, r, out);
}

/// Allocating overload: returns the executor's owning quantized matrix (row-major data and scales):
/// quantized_matrix<T> on the host, device_quantized_matrix<T> on exec.stream for cuda_executor.
/// T defaults to float8_e4m3_t; pass quantize<float8_e5m2_t>(...) for E5M2 recipes.
template <class T = float8_e4m3_t, executor Exec, class In>
auto quantize(Exec const& exec, matrix_view<In> x, tensor_recipe const& r) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::quantize: the output element type must be float8_e4m3_t or float8_e5m2_t");
  FP8MOE_SCALING_REQUIRE_PATH(Exec, "quantize");
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>) {
    detail::check_recipe(r, detail::quantize_where);
    detail::check_format<T>(r, detail::quantize_where, "T (output element type)");
    check_matrix(x, detail::quantize_where, "x");
    auto q = dispatch<executor_t<Exec>>::template make_quantized<T>(exec, x.rows, x.cols, r.tile);
    quantize(exec, x, r, q.view());
    return q;
  }
}

// ---------------------------------------------------------------------------------------------
// dequantize

/// y(r,c) = float(q(r,c)) * sf(r/tr, c/tc), rounded to bf16 (RNE) when y is bf16. Overwrites y.
template <executor Exec, class T, class Out>
void dequantize(Exec const& exec, quantized_matrix_view<T> q, matrix_view<Out> y) {
  FP8MOE_SCALING_REQUIRE_PATH(Exec, "dequantize");
  auto const qc = detail::checked_dequantize_args(q, y);
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>) dispatch<executor_t<Exec>>::dequantize(exec, qc, y);
}

/// Allocating overload: returns y (R,C) of Out (float by default, or bfloat16_t) as the executor's
/// owning matrix: host_matrix<Out> on the host, device_matrix<Out> on exec.stream for cuda_executor.
/// q is validated before anything is allocated.
template <class Out = float, executor Exec, class T>
auto dequantize(Exec const& exec, quantized_matrix_view<T> q) {
  static_assert(wide_element<Out>, "fp8moe::scaling::dequantize: Out must be float or bfloat16_t");
  FP8MOE_SCALING_REQUIRE_PATH(Exec, "dequantize");
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>) {
    detail::check_quantized(q, q.data.rows, q.data.cols, q.tile, "fp8moe::scaling::dequantize", "q");
    auto y = owning_matrix<executor_t<Exec>>::template make<Out>(exec, q.rows(), q.cols());
    dequantize(exec, q, y.view());
    return y;
  }
}

// ---------------------------------------------------------------------------------------------
// transpose_requantize

/// From the high-precision source (TE style, no double quantization): x (R,C) -> out = quantized
/// x^T (C,R) with recipe.tile {1,K} along R, i.e. Kx1 column tiles of x (the layout the
/// weight-gradient GEMM needs). out.scales is (C, ceil(R/K)). Overwrites out.
template <executor Exec, class In, class T>
void transpose_requantize(Exec const& exec, matrix_view<In> x, tensor_recipe const& r,
                          quantized_matrix_view<T> out) {
  FP8MOE_SCALING_REQUIRE_PATH(Exec, "transpose_requantize");
  auto const xc = detail::checked_transpose_args(x, r, out);
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>)
    dispatch<executor_t<Exec>>::transpose_requantize(exec, xc, r, out);
}

/// From an already quantized x (R,C) (e.g. 1x128 row tiles): each element is dequantized
/// (float(q) * sf, exact in fp32) and requantized into 1xK tiles of x^T. With power-of-two scales
/// on both sides the requantization only rescales by a power of two, so it is exact for every
/// element that stays in the FP8 normal range (fp8_numerics.md §0.11); elements pushed below it are
/// rounded once (RNE), as a direct quantization of the dequantized values would. Overwrites out.
template <executor Exec, class Q, class T>
void transpose_requantize(Exec const& exec, quantized_matrix_view<Q> xq, tensor_recipe const& r,
                          quantized_matrix_view<T> out) {
  FP8MOE_SCALING_REQUIRE_PATH(Exec, "transpose_requantize");
  auto const qc = detail::checked_transpose_args(xq, r, out);
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>)
    dispatch<executor_t<Exec>>::transpose_requantize(exec, qc, r, out);
}

/// Allocating form of both sources (x a float/bf16 matrix_view or an FP8 quantized_matrix_view):
/// returns x^T (C,R) quantized with recipe r (1xK tiles) as the executor's owning quantized matrix
/// (quantized_matrix<T> on the host, device_quantized_matrix<T> on exec.stream for cuda_executor);
/// T defaults to float8_e4m3_t. The source and the recipe are validated before anything is allocated.
template <class T = float8_e4m3_t, executor Exec, class X>
requires detail::is_matrix_view_v<X> || detail::is_quantized_view_v<X>
auto transpose_requantize(Exec const& exec, X x, tensor_recipe const& r) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::transpose_requantize: the output element type must be "
                "float8_e4m3_t or float8_e5m2_t");
  FP8MOE_SCALING_REQUIRE_PATH(Exec, "transpose_requantize");
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>) {
    constexpr char const* where = "fp8moe::scaling::transpose_requantize";
    if constexpr (detail::is_quantized_view_v<X>)
      detail::check_quantized(x, x.data.rows, x.data.cols, x.tile, where, "xq");
    else
      check_matrix(x, where, "x");
    detail::check_transpose_recipe<T>(r, where, "T (output element type)");
    auto const [rows, cols] = detail::extents(x);
    auto q = dispatch<executor_t<Exec>>::template make_quantized<T>(exec, cols, rows, r.tile);
    transpose_requantize(exec, x, r, q.view());
    return q;
  }
}

}  // namespace fp8moe::scaling
