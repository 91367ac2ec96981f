// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::transformer_block: what a multi-token-prediction depth needs from a model's decoder block
// (forward over (T,C) hidden states at given positions with a saved state; backward from dy to dx
// OVERWRITTEN plus its own parameter gradients ACCUMULATED), and mtp::tiny_block, a small concrete
// block for tests and examples. Host path in mtp/host/block.hpp; float tensors, row-major.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/matmul.hpp"
#include "fp8moe/nn/rmsnorm.hpp"
#include "fp8moe/nn/workspace.hpp"

namespace fp8moe::mtp {

/// A decoder block an MTP depth can run (DeepSeek-V3's is MLA + MoE; tests use tiny_block). For
/// T tokens of hidden size C = hidden():
///  - workspace_bytes(exec, T): bytes of the caller-owned workspace forward + backward need (the
///    saved state included);
///  - forward(exec, x (T,C), positions (T), y (T,C), ws) -> state: y OVERWRITTEN (never aliases x);
///    the state (views into ws, small values) is what backward reads; it may refer to x and
///    positions, so keep them alive and unchanged until backward;
///  - backward(exec, state, dy (T,C), dx (T,C), ws): dx OVERWRITTEN with dL/dx; the block's own
///    parameter gradients ACCUMULATE into the gradient storage it holds (so a block used twice,
///    e.g. by chained MTP depths, sums both uses). ws is the forward's, unchanged since.
template <class B, class Exec = host_executor>
concept transformer_block = executor<Exec> &&
    requires(B& b, B const& cb, Exec const& exec, std::int64_t tokens, matrix_view<float const> x,
             std::span<std::int32_t const> positions, matrix_view<float> y, typename B::state const& st,
             matrix_view<float const> dy, matrix_view<float> dx, std::span<std::byte> ws) {
  typename B::state;
  { cb.hidden() } -> std::convertible_to<std::int64_t>;
  { cb.workspace_bytes(exec, tokens) } -> std::convertible_to<std::size_t>;
  { cb.forward(exec, x, positions, y, ws) } -> std::same_as<typename B::state>;
  { b.backward(exec, st, dy, dx, ws) } -> std::same_as<void>;
};

/// Undefined primary template; mtp/host/block.hpp defines the host_executor specialisation (the
/// element-wise pieces tiny_block and the MTP module need besides nn's ops).
template <class Exec>
struct block_dispatch;

/// d tanh(z)/dz * da, from a = tanh(z) (host and device).
FP8MOE_HOST_DEVICE float tanh_backward_value(float a, float da) {
  return da * (1.0f - a * a);
}

namespace detail {

template <class Exec>
constexpr bool check_block_dispatch() {
  static_assert(has_dispatch<block_dispatch<executor_t<Exec>>>,
                "fp8moe::mtp: this executor has no path here; include \"fp8moe/mtp/host/block.hpp\" "
                "(a CUDA path is not written yet)");
  return has_dispatch<block_dispatch<executor_t<Exec>>>;
}

/// The largest nn::matmul workspace over `shapes`.
template <class Exec>
std::size_t matmul_bytes(Exec const& exec, std::initializer_list<nn::matmul_shape> shapes) {
  std::size_t b = 0;
  for (auto const& s : shapes) b = std::max(b, nn::workspace_bytes(exec, s));
  return b;
}

template <class M>
void check_rows(char const* where, char const* arg, M const& m, std::int64_t rows, std::int64_t cols) {
  check_matrix(m, where, arg);
  require(m.empty() || m.col_stride == 1, where, arg, "row-major (col_stride 1)");
  check_shape(m, rows, cols, where, arg);
}

// The element-wise ops below are the module's internal pieces: (T,C) row-major float views,
// checked by their callers.

/// m (T,C) = value.
template <executor Exec>
void fill(Exec const& exec, matrix_view<float> m, float value) {
  if constexpr (check_block_dispatch<Exec>()) block_dispatch<executor_t<Exec>>::fill(exec, m, value);
}
/// dst (T,C) = src, or dst += src with `accumulate`.
template <executor Exec>
void copy(Exec const& exec, matrix_view<float const> src, matrix_view<float> dst, bool accumulate) {
  if constexpr (check_block_dispatch<Exec>())
    block_dispatch<executor_t<Exec>>::copy(exec, src, dst, accumulate);
}
/// z (T,F) = tanh(z), in place.
template <executor Exec>
void tanh_inplace(Exec const& exec, matrix_view<float> z) {
  if constexpr (check_block_dispatch<Exec>()) block_dispatch<executor_t<Exec>>::tanh_inplace(exec, z);
}
/// da (T,F) = da * (1 - a^2), in place.
template <executor Exec>
void tanh_backward_inplace(Exec const& exec, matrix_view<float const> a, matrix_view<float> da) {
  if constexpr (check_block_dispatch<Exec>())
    block_dispatch<executor_t<Exec>>::tanh_backward_inplace(exec, a, da);
}
/// m_i (T,C) = sum_{j<=i} u_j / (positions_i + 1).
template <executor Exec>
void causal_mean(Exec const& exec, matrix_view<float const> u, std::span<std::int32_t const> positions,
                 matrix_view<float> m) {
  if constexpr (check_block_dispatch<Exec>())
    block_dispatch<executor_t<Exec>>::causal_mean(exec, u, positions, m);
}
/// du_j (T,C) = sum_{i>=j} dm_i / (positions_i + 1) (overwritten).
template <executor Exec>
void causal_mean_backward(Exec const& exec, matrix_view<float const> dm,
                          std::span<std::int32_t const> positions, matrix_view<float> du) {
  if constexpr (check_block_dispatch<Exec>())
    block_dispatch<executor_t<Exec>>::causal_mean_backward(exec, dm, positions, du);
}

}  // namespace detail

/// tiny_block's parameters: norm g (C), W1 (F,C), W2 (C,F).
struct tiny_block_weights {
  std::span<float const> norm;
  matrix_view<float const> w1;
  matrix_view<float const> w2;
};

/// tiny_block's parameter gradients, ACCUMULATED by backward (zero them first for a plain gradient).
struct tiny_block_grads {
  std::span<float> d_norm;
  matrix_view<float> d_w1;
  matrix_view<float> d_w2;
};

/// A tiny transformer-shaped block for tests and examples, not a model layer: pre-norm, a causal
/// token mixer and a residual tanh MLP. Positions must be strictly increasing and >= 0.
///   u = rmsnorm(x; g)                               (T,C)
///   m_i = sum_{j<=i} u_j / (positions_i + 1)        (T,C)  (the prefix mean for positions 0..T-1)
///   a = tanh(m W1^T)                                (T,F)
///   y = x + a W2^T                                  (T,C)
/// The views it holds are the caller's; backward needs non-empty grads.
class tiny_block {
 public:
  /// What forward keeps: the input views and the intermediates (views into the workspace).
  struct state {
    matrix_view<float const> x{};
    std::span<std::int32_t const> positions{};
    matrix_view<float> m{}, a{};  // (T,C), (T,F)
    std::span<float> rstd{};      // (T)
  };

  explicit tiny_block(tiny_block_weights w, tiny_block_grads g = {}, float eps = 1e-6f)
      : w_(w), g_(g), eps_(eps) {
    constexpr char const* where = "fp8moe::mtp::tiny_block";
    std::int64_t const C = static_cast<std::int64_t>(w.norm.size());
    require(C > 0, where, "w.norm", "size C >= 1", "size 0");
    detail::check_rows(where, "w.w1", w.w1, w.w1.rows, C);
    require(w.w1.rows > 0, where, "w.w1", "(F, C) with F >= 1", "F = 0");
    detail::check_rows(where, "w.w2", w.w2, C, w.w1.rows);
    require(g.d_norm.empty() || static_cast<std::int64_t>(g.d_norm.size()) == C, where, "g.d_norm",
            "empty or size C = " + std::to_string(C), "size " + std::to_string(g.d_norm.size()));
    if (g.d_w1.data) detail::check_rows(where, "g.d_w1", g.d_w1, w.w1.rows, C);
    if (g.d_w2.data) detail::check_rows(where, "g.d_w2", g.d_w2, C, w.w1.rows);
    require(std::isfinite(eps) && eps > 0.0f, where, "eps", "a finite value > 0", std::to_string(eps));
  }

  std::int64_t hidden() const { return static_cast<std::int64_t>(w_.norm.size()); }
  std::int64_t inter() const { return w_.w1.rows; }

  template <executor Exec>
  std::size_t workspace_bytes(Exec const& exec, std::int64_t tokens) const {
    nn::workspace_arena a;
    carve(a, tokens);
    carve_backward(a, tokens);
    a.sub(matmuls(exec, tokens));
    return a.bytes();
  }

  template <executor Exec>
  state forward(Exec const& exec, matrix_view<float const> x, std::span<std::int32_t const> positions,
                matrix_view<float> y, std::span<std::byte> ws) const {
    constexpr char const* where = "fp8moe::mtp::tiny_block::forward";
    std::int64_t const T = x.rows, C = hidden();
    detail::check_rows(where, "x", x, T, C);
    detail::check_rows(where, "y", y, T, C);
    require(static_cast<std::int64_t>(positions.size()) == T, where, "positions",
            "size T = x.rows = " + std::to_string(T), "size " + std::to_string(positions.size()));
    for (std::size_t i = 0; i < positions.size(); ++i)
      if (positions[i] < 0 || (i > 0 && positions[i] <= positions[i - 1]))  // message built on failure only
        require(false, where, "positions", "strictly increasing values >= 0",
                std::to_string(positions[i]) + " at " + std::to_string(i));
    require(T == 0 || y.data != x.data, where, "y", "storage apart from x");
    nn::check_workspace(ws, workspace_bytes(exec, T), where);
    nn::workspace_arena arena(ws);
    state st = carve(arena, T);
    st.x = x;
    st.positions = positions;
    carve_backward(arena, T);
    auto const mws = arena.sub(matmuls(exec, T));
    // u is y's storage until the residual: y = x + a W2^T is written last.
    nn::rmsnorm_forward(exec, x, w_.norm, y, st.rstd, eps_);
    detail::causal_mean(exec, matrix_view<float const>(y), positions, st.m);
    nn::matmul(exec, matrix_view<float const>(st.m), nn::transposed(w_.w1), st.a, {}, mws);
    detail::tanh_inplace(exec, st.a);
    detail::copy(exec, x, y, false);
    nn::matmul(exec, matrix_view<float const>(st.a), nn::transposed(w_.w2), y, {.beta = 1.0f}, mws);
    return st;
  }

  template <executor Exec>
  void backward(Exec const& exec, state const& st, matrix_view<float const> dy, matrix_view<float> dx,
                std::span<std::byte> ws) {
    constexpr char const* where = "fp8moe::mtp::tiny_block::backward";
    std::int64_t const T = st.x.rows, C = hidden();
    require(st.m.cols == C && st.a.cols == inter() && st.a.rows == T, where, "state",
            "the state of a forward call of this block");
    require(!g_.d_norm.empty() && g_.d_w1.data != nullptr && g_.d_w2.data != nullptr, where, "grads",
            "non-empty gradient views (given at construction)");
    detail::check_rows(where, "dy", dy, T, C);
    detail::check_rows(where, "dx", dx, T, C);
    nn::check_workspace(ws, workspace_bytes(exec, T), where);
    nn::workspace_arena arena(ws);
    carve(arena, T);
    auto const [da, dm, du] = carve_backward(arena, T);
    auto const mws = arena.sub(matmuls(exec, T));
    nn::matmul(exec, dy, w_.w2, da, {}, mws);  // da = dy W2
    nn::matmul(exec, nn::transposed(dy), matrix_view<float const>(st.a), g_.d_w2, {.beta = 1.0f}, mws);
    detail::tanh_backward_inplace(exec, matrix_view<float const>(st.a), da);  // dz
    nn::matmul(exec, matrix_view<float const>(da), w_.w1, dm, {}, mws);       // dm = dz W1
    nn::matmul(exec, nn::transposed(matrix_view<float const>(da)), matrix_view<float const>(st.m), g_.d_w1,
               {.beta = 1.0f}, mws);
    detail::copy(exec, dy, dx, false);  // residual
    detail::causal_mean_backward(exec, matrix_view<float const>(dm), st.positions, du);
    nn::rmsnorm_backward(exec, st.x, w_.norm, std::span<float const>(st.rstd), matrix_view<float const>(du),
                         dx, g_.d_norm);
  }

 private:
  state carve(nn::workspace_arena& a, std::int64_t T) const {
    state st;
    st.m = a.matrix<float>(T, hidden());
    st.a = a.matrix<float>(T, inter());
    float* r = a.take<float>(T);
    st.rstd = r ? std::span<float>(r, static_cast<std::size_t>(T)) : std::span<float>{};
    return st;
  }
  struct backward_temps {
    matrix_view<float> da, dm, du;
  };
  backward_temps carve_backward(nn::workspace_arena& a, std::int64_t T) const {
    auto da = a.matrix<float>(T, inter());
    auto dm = a.matrix<float>(T, hidden());
    auto du = a.matrix<float>(T, hidden());
    return {da, dm, du};
  }
  template <class Exec>
  std::size_t matmuls(Exec const& exec, std::int64_t T) const {
    std::int64_t const C = hidden(), F = inter();
    return detail::matmul_bytes(exec, {{T, F, C}, {T, C, F}, {C, F, T}, {F, C, T}});
  }

  tiny_block_weights w_;
  tiny_block_grads g_;
  float eps_;
};

}  // namespace fp8moe::mtp

#include "fp8moe/mtp/host/block.hpp"
