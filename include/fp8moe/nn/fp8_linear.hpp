// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// fp8_linear: the FP8 linear layer of DeepSeek-V3's training framework (arXiv:2412.19437 §3.3),
// written once for every executor on top of scaling::quantize and gemm::fp8_gemm:
//   forward  Y (M,N)  = X (M,K) W^T       X quantized with recipe.activation (1x128)
//   dgrad    dX (M,K) = dY (M,N) W        dY quantized with recipe.gradient (1x128), W^T cached
//   wgrad    dW (N,K) (+)= dY^T X         both operands quantized in 128x1 column tiles
// Element formats (E4M3/E5M2) come from the recipe per operand. Outputs are overwritten (wgrad may
// accumulate). Hot calls take a caller workspace of workspace_bytes(exec, shape, recipe) bytes and
// allocate nothing; the overloads without a workspace allocate one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <type_traits>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/gemm/gemm.hpp"
#include "fp8moe/nn/dispatch.hpp"
#include "fp8moe/nn/host/dispatch.hpp"
#include "fp8moe/nn/workspace.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "fp8moe/scaling/recipe.hpp"

namespace fp8moe::nn {

/// The weight of an FP8 linear layer: W (N,K) quantized with recipe.weight (128x128 blocks) and
/// its transpose W^T (K,N), which the dgrad GEMM reads K-major on every executor (cache it: build
/// both once per weight update with quantize_weight). The forward reads only w.
template <class W = float8_e4m3_t>
struct fp8_weight {
  scaling::quantized_matrix_view<W const> w;   // (N,K)
  scaling::quantized_matrix_view<W const> wt;  // (K,N) exact transpose of w (square blocks)
};

/// Extents of one fp8_linear: X (M,K), W (N,K), Y (M,N).
struct linear_shape {
  std::int64_t m = 0, n = 0, k = 0;
};

/// Calls fn(T{}) with T the FP8 element type of `f` (float8_e4m3_t or float8_e5m2_t): a recipe's
/// run-time format picks the compile-time element type.
template <class F>
decltype(auto) with_format(scaling::element_format f, F&& fn) {
  if (f == scaling::element_format::e5m2) return fn(float8_e5m2_t{});
  return fn(float8_e4m3_t{});
}

/// As above for the FP8 GEMM of `exec`: where it multiplies E4M3 only (dispatch<Exec>::fp8_e5m2 is
/// false, the device), an E5M2 format is an fp8moe::error and E5M2 code is never instantiated.
template <class Exec, class F>
decltype(auto) with_format(Exec const&, scaling::element_format f, F&& fn) {
  if constexpr (dispatch<executor_t<Exec>>::fp8_e5m2) {
    if (f == scaling::element_format::e5m2) return fn(float8_e5m2_t{});
  } else {
    require(f != scaling::element_format::e5m2, "fp8moe::nn", "recipe",
            "E4M3 operands on this executor (its FP8 GEMM is E4M3 x E4M3)", "an E5M2 format");
  }
  return fn(float8_e4m3_t{});
}

/// Throws fp8moe::error unless the FP8 GEMM of `exec` takes each of `formats` (call it before
/// writing any output when a format is used only later).
template <class Exec>
void check_formats(Exec const& exec, std::initializer_list<scaling::element_format> formats) {
  for (auto f : formats) with_format(exec, f, [](auto) {});
}

namespace detail {

inline constexpr char const* linear_where = "fp8moe::nn::fp8_linear";

template <class Exec>
constexpr bool check_nn_dispatch() {
  static_assert(has_dispatch<dispatch<executor_t<Exec>>>,
                "fp8moe::nn: this executor has no nn path here; for cuda_executor include "
                "\"fp8moe/nn/cuda/dispatch.cuh\" (nvcc)");
  return has_dispatch<dispatch<executor_t<Exec>>>;
}

/// The weight checks; `need_wt`: the pass reads W^T (dgrad), so it must be the transpose of W.
template <class W>
void check_weight(fp8_weight<W> const& w, scaling::recipe const& r, char const* where, bool need_wt = false) {
  require(r.weight.format == scaling::format_of<W>(), where, "w",
          r.weight.format == scaling::element_format::e4m3 ? "float8_e4m3_t elements (recipe.weight.format)"
                                                           : "float8_e5m2_t elements (recipe.weight.format)");
  check_matrix(w.w.data, where, "w.w");
  if (!need_wt) return;
  check_matrix(w.wt.data, where, "w.wt");
  require(w.wt.rows() == w.w.cols() && w.wt.cols() == w.w.rows(), where, "w.wt",
          "the transpose of w: " + fp8moe::detail::shape_string(w.w.cols(), w.w.rows()),
          fp8moe::detail::shape_string(w.wt.rows(), w.wt.cols()));
  require(w.wt.tile.rows == w.w.tile.cols && w.wt.tile.cols == w.w.tile.rows, where, "w.wt.tile",
          "w.tile transposed");
}

/// The workspace layout of the three passes (one carving each; the query takes the largest).
template <class Exec>
std::size_t linear_bytes(Exec const& exec, linear_shape const& s, scaling::recipe const& r,
                         gemm::gemm_options const& g) {
  std::size_t const gw = gemm::workspace_bytes(exec, g);
  workspace_arena fwd, dgrad, wgrad;
  fwd.quantized<float8_e4m3_t>(s.m, s.k, r.activation.tile);
  fwd.sub(gw);
  dgrad.quantized<float8_e4m3_t>(s.m, s.n, r.gradient.tile);
  dgrad.sub(gw);
  wgrad.quantized<float8_e4m3_t>(s.n, s.m, r.gradient.tile);
  wgrad.quantized<float8_e4m3_t>(s.k, s.m, r.activation.tile);
  wgrad.sub(gw);
  return std::max({fwd.bytes(), dgrad.bytes(), wgrad.bytes()});
}

}  // namespace detail

/// Workspace bytes of fp8_linear, fp8_linear_dgrad and fp8_linear_wgrad for this shape and recipe.
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, linear_shape const& s,
                            scaling::recipe const& r = scaling::deepseek_v3,
                            gemm::gemm_options const& g = {}) {
  return detail::linear_bytes(exec, s, r, g);
}

/// Builds the layer weight from a float/bf16 master W (N,K): w = quantize(W, recipe.weight) and
/// wt = its exact transpose (recipe.weight must have square tiles, e.g. 128x128). Overwrites both.
template <executor Exec, class In, class W>
void quantize_weight(Exec const& exec, matrix_view<In> master, scaling::quantized_matrix_view<W> w,
                     scaling::quantized_matrix_view<W> wt, scaling::tensor_recipe const& weight_recipe) {
  constexpr char const* where = "fp8moe::nn::quantize_weight";
  require(weight_recipe.tile.rows == weight_recipe.tile.cols && weight_recipe.tile.rows > 0, where,
          "weight_recipe.tile", "square blocks (e.g. 128x128): the transpose is then exact");
  require(wt.rows() == master.cols && wt.cols() == master.rows, where, "wt",
          fp8moe::detail::shape_string(master.cols, master.rows),
          fp8moe::detail::shape_string(wt.rows(), wt.cols()));
  require(wt.scales.rows == w.scales.cols && wt.scales.cols == w.scales.rows && wt.tile == w.tile, where,
          "wt.scales", "the transposed scale shape of w");
  scaling::quantize(exec, master, weight_recipe, w);
  if constexpr (detail::check_nn_dispatch<Exec>())
    dispatch<executor_t<Exec>>::transpose_into(exec, scaling::quantized_matrix_view<W const>(w), wt);
}

// ---- forward ------------------------------------------------------------------------------------

/// Y (M,N) = Xq (M,K) W^T from an already quantized X (recipe.activation's tiles and format).
template <executor Exec, class XQ, class W, class Out>
void fp8_linear(Exec const& exec, scaling::quantized_matrix_view<XQ> xq, fp8_weight<W> const& w,
                matrix_view<Out> y, std::span<std::byte> workspace,
                scaling::recipe const& r = scaling::deepseek_v3, gemm::gemm_options const& g = {}) {
  using A = std::remove_const_t<XQ>;
  detail::check_weight(w, r, detail::linear_where);
  require(scaling::format_of<A>() == r.activation.format, detail::linear_where, "xq",
          "elements in recipe.activation's format");
  require(xq.cols() == w.w.cols(), detail::linear_where, "x",
          "(M, K) with K = w.cols = " + std::to_string(w.w.cols()),
          fp8moe::detail::shape_string(xq.rows(), xq.cols()));
  check_shape(y, xq.rows(), w.w.rows(), detail::linear_where, "y");
  workspace_arena arena(workspace);
  gemm::fp8_gemm(exec, gemm::dense<A, W, Out>{scaling::quantized_matrix_view<A const>(xq), w.w, y, {}}, g,
                 arena.sub(gemm::workspace_bytes(exec, g)));
}

/// Y (M,N) = X (M,K) W^T: X (float or bf16) quantized with recipe.activation into the workspace.
template <executor Exec, class In, class W, class Out>
void fp8_linear(Exec const& exec, matrix_view<In> x, fp8_weight<W> const& w, matrix_view<Out> y,
                std::span<std::byte> workspace, scaling::recipe const& r = scaling::deepseek_v3,
                gemm::gemm_options const& g = {}) {
  constexpr char const* where = detail::linear_where;
  detail::check_weight(w, r, where);
  check_matrix(x, where, "x");
  require(x.cols == w.w.cols(), where, "x", "(M, K) with K = w.cols = " + std::to_string(w.w.cols()),
          fp8moe::detail::shape_string(x.rows, x.cols));
  check_shape(y, x.rows, w.w.rows(), where, "y");
  check_workspace(workspace, workspace_bytes(exec, linear_shape{x.rows, w.w.rows(), x.cols}, r, g), where);
  workspace_arena arena(workspace);
  with_format(exec, r.activation.format, [&]<class A>(A) {
    auto const xq = arena.quantized<A>(x.rows, x.cols, r.activation.tile);
    scaling::quantize(exec, x, r.activation, xq);
    gemm::fp8_gemm(exec, gemm::dense<A, W, Out>{scaling::quantized_matrix_view<A const>(xq), w.w, y, {}}, g,
                   arena.sub(gemm::workspace_bytes(exec, g)));
  });
}

// ---- backward -----------------------------------------------------------------------------------

/// dX (M,K) = dY (M,N) W: dY (float or bf16) quantized with recipe.gradient, times the cached W^T.
/// With `accumulate`, dX += the product instead (FP32).
template <executor Exec, class G, class W>
void fp8_linear_dgrad(Exec const& exec, matrix_view<G> dy, fp8_weight<W> const& w, matrix_view<float> dx,
                      std::span<std::byte> workspace, scaling::recipe const& r = scaling::deepseek_v3,
                      gemm::gemm_options const& g = {}) {
  constexpr char const* where = "fp8moe::nn::fp8_linear_dgrad";
  detail::check_weight(w, r, where, true);
  check_matrix(dy, where, "dy");
  require(dy.cols == w.w.rows(), where, "dy", "(M, N) with N = w.rows = " + std::to_string(w.w.rows()),
          fp8moe::detail::shape_string(dy.rows, dy.cols));
  check_shape(dx, dy.rows, w.w.cols(), where, "dx");
  check_workspace(workspace, workspace_bytes(exec, linear_shape{dy.rows, dy.cols, w.w.cols()}, r, g), where);
  workspace_arena arena(workspace);
  with_format(exec, r.gradient.format, [&]<class A>(A) {
    auto const dyq = arena.quantized<A>(dy.rows, dy.cols, r.gradient.tile);
    scaling::quantize(exec, dy, r.gradient, dyq);
    gemm::fp8_gemm(exec, gemm::dense<A, W, float>{scaling::quantized_matrix_view<A const>(dyq), w.wt, dx, {}},
                   g, arena.sub(gemm::workspace_bytes(exec, g)));
  });
}

/// dW (N,K) = dY^T X (FP32; with `accumulate`, dW += dY^T X): dY^T and X^T quantized in 1x128
/// tiles along the tokens (128x1 column tiles of dY and X) with recipe.gradient / recipe.activation.
/// X may be float/bf16 or already quantized (then requantized from its FP8 values).
template <executor Exec, class G, class X>
void fp8_linear_wgrad(Exec const& exec, matrix_view<G> dy, X const& x, matrix_view<float> dw, bool accumulate,
                      std::span<std::byte> workspace, scaling::recipe const& r = scaling::deepseek_v3,
                      gemm::gemm_options const& g = {}) {
  constexpr char const* where = "fp8moe::nn::fp8_linear_wgrad";
  std::int64_t xr = 0, xc = 0;
  if constexpr (requires { x.data.rows; }) {
    xr = x.data.rows, xc = x.data.cols;
  } else {
    xr = x.rows, xc = x.cols;
  }
  check_matrix(dy, where, "dy");
  require(xr == dy.rows, where, "x", "(M, K) with M = dy.rows = " + std::to_string(dy.rows),
          fp8moe::detail::shape_string(xr, xc));
  check_matrix(dw, where, "dw");
  check_shape(dw, dy.cols, xc, where, "dw");
  check_workspace(workspace, workspace_bytes(exec, linear_shape{dy.rows, dy.cols, xc}, r, g), where);
  workspace_arena arena(workspace);
  with_format(exec, r.gradient.format, [&]<class A>(A) {
    with_format(exec, r.activation.format, [&]<class B>(B) {
      auto const dyt = arena.quantized<A>(dy.cols, dy.rows, r.gradient.tile);
      auto const xt = arena.quantized<B>(xc, xr, r.activation.tile);
      scaling::transpose_requantize(exec, dy, r.gradient, dyt);
      scaling::transpose_requantize(exec, x, r.activation, xt);
      matrix_view<float const> const c =
          accumulate ? matrix_view<float const>(dw) : matrix_view<float const>{};
      gemm::fp8_gemm(exec,
                     gemm::dense<A, B, float>{scaling::quantized_matrix_view<A const>(dyt),
                                              scaling::quantized_matrix_view<B const>(xt), dw, c},
                     g, arena.sub(gemm::workspace_bytes(exec, g)));
    });
  });
}

// ---- allocating conveniences --------------------------------------------------------------------

/// fp8_linear with a workspace it allocates (host memory, or stream-ordered on exec.stream).
template <executor Exec, class In, class W, class Out>
void fp8_linear(Exec const& exec, matrix_view<In> x, fp8_weight<W> const& w, matrix_view<Out> y,
                scaling::recipe const& r = scaling::deepseek_v3, gemm::gemm_options const& g = {}) {
  if constexpr (detail::check_nn_dispatch<Exec>()) {
    auto ws = dispatch<executor_t<Exec>>::allocate(
        exec, workspace_bytes(exec, linear_shape{x.rows, w.w.rows(), x.cols}, r, g));
    fp8_linear(exec, x, w, y, ws.span(), r, g);
  }
}
template <executor Exec, class G, class W>
void fp8_linear_dgrad(Exec const& exec, matrix_view<G> dy, fp8_weight<W> const& w, matrix_view<float> dx,
                      scaling::recipe const& r = scaling::deepseek_v3, gemm::gemm_options const& g = {}) {
  if constexpr (detail::check_nn_dispatch<Exec>()) {
    auto ws = dispatch<executor_t<Exec>>::allocate(
        exec, workspace_bytes(exec, linear_shape{dy.rows, dy.cols, w.w.cols()}, r, g));
    fp8_linear_dgrad(exec, dy, w, dx, ws.span(), r, g);
  }
}
template <executor Exec, class G, class X>
void fp8_linear_wgrad(Exec const& exec, matrix_view<G> dy, X const& x, matrix_view<float> dw, bool accumulate,
                      scaling::recipe const& r = scaling::deepseek_v3, gemm::gemm_options const& g = {}) {
  if constexpr (detail::check_nn_dispatch<Exec>()) {
    auto ws = dispatch<executor_t<Exec>>::allocate(
        exec, workspace_bytes(exec, linear_shape{dy.rows, dy.cols, dw.cols}, r, g));
    fp8_linear_wgrad(exec, dy, x, dw, accumulate, ws.span(), r, g);
  }
}

}  // namespace fp8moe::nn
