// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The SwiGLU MLP of DeepSeek-V3 (dense FFN, shared and routed experts) on fp8_linear:
//   h13 (T,2I) = X W13^T (gate rows [0,I), up rows [I,2I)); act (T,I) = silu(gate) * up;
//   Y (T,H) = act W2^T.
// Forward keeps h13 and act in a swiglu_mlp_state whose arrays live at the front of the caller's
// workspace (pass the same workspace to the backward). The backward is a straight-through
// estimator of the quantizers: exact derivatives of the dequantized computation. Also the
// element-wise entries swiglu / swiglu_backward the MoE expert block shares.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/fp8_linear.hpp"
#include "fp8moe/nn/workspace.hpp"

namespace fp8moe::nn {

/// act (R,I) = swiglu(h (R,0:I), h (R,I:2I)); Out float or bf16. Overwrites act.
template <executor Exec, class H, class Out>
void swiglu(Exec const& exec, matrix_view<H> h, matrix_view<Out> act) {
  constexpr char const* where = "fp8moe::nn::swiglu";
  check_matrix(act, where, "act");
  check_shape(h, act.rows, 2 * act.cols, where, "h");
  if constexpr (detail::check_nn_dispatch<Exec>())
    dispatch<executor_t<Exec>>::swiglu(exec, matrix_view<float const>(h), act);
}

/// dh (R,2I) = d swiglu / d h at h (R,2I), times dact (R,I). Overwrites dh.
template <executor Exec, class H, class D>
void swiglu_backward(Exec const& exec, matrix_view<H> h, matrix_view<D> dact, matrix_view<float> dh) {
  constexpr char const* where = "fp8moe::nn::swiglu_backward";
  check_matrix(dact, where, "dact");
  check_shape(h, dact.rows, 2 * dact.cols, where, "h");
  check_shape(dh, dact.rows, 2 * dact.cols, where, "dh");
  if constexpr (detail::check_nn_dispatch<Exec>())
    dispatch<executor_t<Exec>>::swiglu_backward(exec, matrix_view<float const>(h),
                                                matrix_view<float const>(dact), dh);
}

/// The two FP8 linear layers of the MLP.
template <class W = float8_e4m3_t>
struct swiglu_mlp_weights {
  fp8_weight<W> w13;  // W13 (2I,H), W13^T (H,2I)
  fp8_weight<W> w2;   // W2 (H,I),   W2^T (I,H)
};

/// FP32 weight gradients (overwritten, or accumulated with swiglu_mlp_backward's `accumulate`).
struct swiglu_mlp_grads {
  matrix_view<float> dw13;  // (2I,H)
  matrix_view<float> dw2;   // (H,I)
};

/// Extents: T tokens, H hidden, I intermediate.
struct mlp_shape {
  std::int64_t tokens = 0, hidden = 0, inter = 0;
};

/// What the forward keeps for the backward: views into the front of the caller's workspace.
struct swiglu_mlp_state {
  matrix_view<float> h13{};  // (T,2I) gate | up pre-activations
  matrix_view<float> act{};  // (T,I) SwiGLU output
  mlp_shape shape{};
};

namespace detail {

/// The state at the front of the workspace, then each pass's temporaries.
inline swiglu_mlp_state carve_mlp_state(workspace_arena& a, mlp_shape const& s) {
  swiglu_mlp_state st;
  st.h13 = a.matrix<float>(s.tokens, 2 * s.inter);
  st.act = a.matrix<float>(s.tokens, s.inter);
  st.shape = s;
  return st;
}

template <class Exec>
std::size_t mlp_bytes(Exec const& exec, mlp_shape const& s, scaling::recipe const& r,
                      gemm::gemm_options const& g) {
  std::size_t const l13 = workspace_bytes(exec, linear_shape{s.tokens, 2 * s.inter, s.hidden}, r, g);
  std::size_t const l2 = workspace_bytes(exec, linear_shape{s.tokens, s.hidden, s.inter}, r, g);
  workspace_arena a;
  carve_mlp_state(a, s);
  a.matrix<float>(s.tokens, s.inter);      // dact
  a.matrix<float>(s.tokens, 2 * s.inter);  // dh13
  a.sub(std::max(l13, l2));
  return a.bytes();
}

template <class W>
void check_mlp_weights(swiglu_mlp_weights<W> const& w, char const* where) {
  std::int64_t const I2 = w.w13.w.rows(), H = w.w13.w.cols();
  require(I2 >= 2 && I2 % 2 == 0, where, "w.w13", "(2I, H) with an even row count", std::to_string(I2));
  require(w.w2.w.rows() == H && w.w2.w.cols() == I2 / 2, where, "w.w2",
          "(H, I) = " + fp8moe::detail::shape_string(H, I2 / 2),
          fp8moe::detail::shape_string(w.w2.w.rows(), w.w2.w.cols()));
}

}  // namespace detail

/// Workspace bytes of swiglu_mlp + swiglu_mlp_backward (the state included) for this shape.
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, mlp_shape const& s,
                            scaling::recipe const& r = scaling::deepseek_v3,
                            gemm::gemm_options const& g = {}) {
  return detail::mlp_bytes(exec, s, r, g);
}

/// Forward. x (T,H): float/bf16 (quantized here with recipe.activation) or already quantized;
/// y (T,H) float or bf16, overwritten. Returns the state (views into `workspace`).
template <executor Exec, class X, class W, class Out>
swiglu_mlp_state swiglu_mlp(Exec const& exec, X const& x, swiglu_mlp_weights<W> const& w, matrix_view<Out> y,
                            std::span<std::byte> workspace, scaling::recipe const& r = scaling::deepseek_v3,
                            gemm::gemm_options const& g = {}) {
  constexpr char const* where = "fp8moe::nn::swiglu_mlp";
  detail::check_mlp_weights(w, where);
  std::int64_t const H = w.w13.w.cols(), I = w.w13.w.rows() / 2;
  std::int64_t const T = y.rows;
  check_shape(y, T, H, where, "y");
  mlp_shape const s{T, H, I};
  check_workspace(workspace, workspace_bytes(exec, s, r, g), where);
  workspace_arena arena(workspace);
  swiglu_mlp_state const st = detail::carve_mlp_state(arena, s);
  auto const rest = arena.rest();
  fp8_linear(exec, x, w.w13, st.h13, rest, r, g);
  swiglu(exec, matrix_view<float const>(st.h13), st.act);
  fp8_linear(exec, matrix_view<float const>(st.act), w.w2, y, rest, r, g);
  return st;
}

/// Backward. x: the forward's input (as passed to it); dy (T,H) = dL/dy. Writes dx (T,H) FP32 and
/// the weight gradients (overwritten, or += with `accumulate`). `workspace` is the forward's.
template <executor Exec, class X, class W, class G>
void swiglu_mlp_backward(Exec const& exec, X const& x, swiglu_mlp_state const& st,
                         swiglu_mlp_weights<W> const& w, matrix_view<G> dy, matrix_view<float> dx,
                         swiglu_mlp_grads const& grads, bool accumulate, std::span<std::byte> workspace,
                         scaling::recipe const& r = scaling::deepseek_v3, gemm::gemm_options const& g = {}) {
  constexpr char const* where = "fp8moe::nn::swiglu_mlp_backward";
  detail::check_mlp_weights(w, where);
  auto const s = st.shape;
  require(s.hidden == w.w13.w.cols() && s.inter == w.w13.w.rows() / 2 && st.h13.data != nullptr, where,
          "state", "the state of a forward call with these weights");
  check_shape(dy, s.tokens, s.hidden, where, "dy");
  check_shape(dx, s.tokens, s.hidden, where, "dx");
  check_shape(grads.dw13, 2 * s.inter, s.hidden, where, "grads.dw13");
  check_shape(grads.dw2, s.hidden, s.inter, where, "grads.dw2");
  check_workspace(workspace, workspace_bytes(exec, s, r, g), where);
  workspace_arena arena(workspace);
  detail::carve_mlp_state(arena, s);  // skip the state
  auto const dact = arena.matrix<float>(s.tokens, s.inter);
  auto const dh13 = arena.matrix<float>(s.tokens, 2 * s.inter);
  auto const rest = arena.rest();
  fp8_linear_dgrad(exec, dy, w.w2, dact, rest, r, g);
  swiglu_backward(exec, matrix_view<float const>(st.h13), matrix_view<float const>(dact), dh13);
  fp8_linear_dgrad(exec, matrix_view<float const>(dh13), w.w13, dx, rest, r, g);
  fp8_linear_wgrad(exec, dy, matrix_view<float const>(st.act), grads.dw2, accumulate, rest, r, g);
  fp8_linear_wgrad(exec, matrix_view<float const>(dh13), x, grads.dw13, accumulate, rest, r, g);
}

}  // namespace fp8moe::nn
