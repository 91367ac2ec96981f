// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The grouped SwiGLU expert block of a DeepSeek-V3 MoE layer (host path): quantize (1x128) ->
// permute (grouped contiguous) -> grouped gate+up FP8 GEMM -> SwiGLU -> quantize -> grouped down
// FP8 GEMM -> weighted combine (+ optional shared expert), and its full backward (dgrad grouped
// GEMMs on the transposed 128x128 weights, K-grouped wgrad GEMMs). Outputs are overwritten;
// forward activations are kept in a caller-owned expert_block_state reused across calls.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fp8moe/config.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/gemm/gemm.hpp"
#include "fp8moe/gemm/problem.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/recipe.hpp"

namespace fp8moe::moe {

// ---- SwiGLU, shared by host and device: act = silu(g) * u, silu(g) = g * sigmoid(g)

FP8MOE_HOST_DEVICE float sigmoid_f32(float g) {
  return 1.0f / (1.0f + detail::exp_f32(-g));
}
FP8MOE_HOST_DEVICE float swiglu(float g, float u) {
  return g * sigmoid_f32(g) * u;
}
/// d/dg = u * s (1 + g (1 - s)), d/du = g s, with s = sigmoid(g).
FP8MOE_HOST_DEVICE void swiglu_backward(float g, float u, float d, float& dg, float& du) {
  float const s = sigmoid_f32(g);
  dg = d * u * s * (1.0f + g * (1.0f - s));
  du = d * g * s;
}

/// Routed expert weights, FP8 with 128x128 block scales (DeepSeek-V3 recipe).
template <class W = float8_e4m3_t>
struct expert_weights {
  gemm::quantized_batched_view<W const> w13;  // (E, 2I, H): gate rows [0, I), up rows [I, 2I)
  gemm::quantized_batched_view<W const> w2;   // (E, H, I)
};

/// Optional shared expert (applied to every token with weight 1); empty views = none.
template <class W = float8_e4m3_t>
struct shared_expert_weights {
  scaling::quantized_matrix_view<W const> w13{};  // (2Is, H)
  scaling::quantized_matrix_view<W const> w2{};   // (H, Is)
  bool present() const { return w13.data.data != nullptr; }
};

struct expert_block_config {
  int m_align = 128;  ///< rows per expert segment; a multiple of the 1x128 tile (the wgrad K tile)
  scaling::tensor_recipe activation = scaling::deepseek_v3.activation;  ///< x and SwiGLU output
  scaling::tensor_recipe gradient = scaling::deepseek_v3.gradient;      ///< dY and dH13
  gemm::gemm_options gemm{};
};

using fp8_t = float8_e4m3_t;

/// Forward activations kept for the backward (owned; reallocated only when shapes change).
struct expert_block_state {
  host_permute_plan plan;
  scaling::quantized_matrix<fp8_t> xq;     // (T,H) quantized input
  scaling::quantized_matrix<fp8_t> a;      // (M,H) permuted xq
  host_matrix<float> h13;                  // (M,2I) gate|up pre-activations
  host_matrix<float> act;                  // (M,I) SwiGLU output
  scaling::quantized_matrix<fp8_t> actq;   // (M,I)
  host_matrix<float> y;                    // (M,H) expert outputs (before routing weights)
  host_matrix<float> sh13;                 // (T,2Is) shared expert
  host_matrix<float> sact;                 // (T,Is)
  scaling::quantized_matrix<fp8_t> sactq;  // (T,Is)
  std::int64_t tokens = 0, k = 0, experts = 0, hidden = 0, inter = 0, shared_inter = 0;
};

/// Weight gradients (FP32, overwritten). Shared ones may be empty when there is no shared expert.
struct expert_block_grads {
  batched_matrix_view<float> dw13;  // (E, 2I, H)
  batched_matrix_view<float> dw2;   // (E, H, I)
  matrix_view<float> dsw13{};       // (2Is, H)
  matrix_view<float> dsw2{};        // (H, Is)
};

namespace detail {

inline constexpr char const* block_where = "fp8moe::moe::expert_block";

/// (E, R, C) weights viewed transposed per expert: (E, C, R), MN-major, 128x128 blocks stay square.
template <class W>
gemm::quantized_batched_view<W const> transposed(gemm::quantized_batched_view<W const> const& w) {
  auto const& d = w.data;
  auto const& s = w.scales;
  return {{d.data, d.batches, d.cols, d.rows, d.batch_stride, d.col_stride, d.row_stride},
          {s.data, s.batches, s.cols, s.rows, s.batch_stride, s.col_stride, s.row_stride},
          {w.tile.cols, w.tile.rows}};
}

template <class T>
void resize(host_matrix<T>& m, std::int64_t r, std::int64_t c) {
  if (m.rows() != r || m.cols() != c) m = host_matrix<T>(r, c);
}
inline void resize(scaling::quantized_matrix<fp8_t>& q, std::int64_t r, std::int64_t c,
                   scaling::tile_shape t) {
  if (q.data.rows() != r || q.data.cols() != c || !(q.tile == t))
    q = scaling::quantized_matrix<fp8_t>(r, c, t);
}

/// act (R,I) = swiglu(h (R,0:I), h (R,I:2I)).
inline void swiglu_rows(host_executor const& exec, matrix_view<float const> h, matrix_view<float> act) {
  std::int64_t const I = act.cols;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
  for (std::int64_t r = 0; r < act.rows; ++r)
    for (std::int64_t i = 0; i < I; ++i) act(r, i) = swiglu(h(r, i), h(r, I + i));
  (void)exec;
}

inline void swiglu_rows_backward(host_executor const& exec, matrix_view<float const> h,
                                 matrix_view<float const> dact, matrix_view<float> dh) {
  std::int64_t const I = dact.cols;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
  for (std::int64_t r = 0; r < dact.rows; ++r)
    for (std::int64_t i = 0; i < I; ++i)
      swiglu_backward(h(r, i), h(r, I + i), dact(r, i), dh(r, i), dh(r, I + i));
  (void)exec;
}

template <class W>
void check_block_weights(expert_weights<W> const& w, shared_expert_weights<W> const& s, std::int64_t H,
                         expert_block_config const& cfg) {
  constexpr char const* where = block_where;
  std::int64_t const E = w.w13.batches(), I2 = w.w13.rows();
  require(E >= 1, where, "weights.w13", "E >= 1 experts", std::to_string(E));
  require(w.w13.cols() == H, where, "weights.w13", "(E, 2I, H = " + std::to_string(H) + ")",
          std::to_string(w.w13.cols()) + " columns");
  require(I2 >= 2 && I2 % 2 == 0, where, "weights.w13", "an even row count 2I", std::to_string(I2));
  require(
      w.w2.batches() == E && w.w2.rows() == H && w.w2.cols() == I2 / 2, where, "weights.w2",
      "(E, H, I) = " + std::to_string(E) + "x" + std::to_string(H) + "x" + std::to_string(I2 / 2),
      std::to_string(w.w2.batches()) + "x" + std::to_string(w.w2.rows()) + "x" + std::to_string(w.w2.cols()));
  require(cfg.m_align >= 1 && cfg.activation.tile.rows == 1 && cfg.activation.tile.cols > 0 &&
              cfg.m_align % cfg.activation.tile.cols == 0,
          where, "config.m_align", "a multiple of the 1 x K activation tile (the wgrad K tile)",
          std::to_string(cfg.m_align));
  require(cfg.gradient.tile.rows == 1 && cfg.gradient.tile.cols == cfg.activation.tile.cols, where,
          "config.gradient.tile", "1 x K with the activation's K");
  if (s.present()) {
    require(s.w13.cols() == H && s.w13.rows() % 2 == 0 && s.w13.rows() >= 2, where, "shared.w13", "(2Is, H)");
    require(s.w2.rows() == H && s.w2.cols() == s.w13.rows() / 2, where, "shared.w2", "(H, Is)");
  }
}

/// The argument checks of the forward shared by the host and device overloads (views only, no data
/// read): x (T,H), the weights against H and cfg, ids (T,k) with k >= 1, weights (T,k), out (T,H).
template <class In, class Out, class W>
void check_block_args(expert_block_config const& cfg, matrix_view<In> const& x,
                      matrix_view<std::int32_t const> const& ids, matrix_view<float const> const& weights,
                      expert_weights<W> const& w, shared_expert_weights<W> const& sw,
                      matrix_view<Out> const& out) {
  constexpr char const* where = block_where;
  check_matrix(x, where, "x");
  std::int64_t const T = x.rows, H = x.cols, k = ids.cols;
  check_block_weights(w, sw, H, cfg);
  check_matrix(ids, where, "ids");
  require(ids.rows == T && k >= 1, where, "ids", "(T, k) with T = " + std::to_string(T),
          std::to_string(ids.rows));
  check_shape(weights, T, k, where, "weights");
  check_matrix(out, where, "out");
  check_shape(out, T, H, where, "out");
}

/// The gradient-shape checks of the backward shared by the host and device overloads: weights and
/// dweights (T,k), dout / dx (T,H), dw13 (E,2I,H), dw2 (E,H,I) and, with a shared expert (Is > 0),
/// dsw13 (2Is,H) and dsw2 (H,Is).
template <class G>
void check_block_grad_args(std::int64_t T, std::int64_t H, std::int64_t I, std::int64_t E, std::int64_t k,
                           std::int64_t Is, matrix_view<float const> const& weights,
                           matrix_view<G> const& dout, matrix_view<float> const& dx,
                           matrix_view<float> const& dweights, expert_block_grads const& g,
                           char const* where) {
  check_shape(weights, T, k, where, "weights");
  check_matrix(dout, where, "dout");
  check_shape(dout, T, H, where, "dout");
  check_shape(dx, T, H, where, "dx");
  check_shape(dweights, T, k, where, "dweights");
  require(g.dw13.batches == E && g.dw13.rows == 2 * I && g.dw13.cols == H, where, "grads.dw13", "(E, 2I, H)");
  require(g.dw2.batches == E && g.dw2.rows == H && g.dw2.cols == I, where, "grads.dw2", "(E, H, I)");
  if (Is > 0) {
    check_shape(g.dsw13, 2 * Is, H, where, "grads.dsw13");
    check_shape(g.dsw2, H, Is, where, "grads.dsw2");
  }
}

}  // namespace detail

/// Forward. x (T,H) float or bf16; ids (T,k) in [0,E) or -1 (not routed here); weights (T,k)
/// FP32; out (T,H) float or bf16 = sum_j weights(t,j) * expert_{ids(t,j)}(x_t) [+ shared(x_t)],
/// accumulated in FP32 in slot order, then the shared expert, rounded once.
template <class In, class Out, class W>
void expert_block(host_executor const& exec, expert_block_config const& cfg, matrix_view<In> x,
                  matrix_view<std::int32_t const> ids, matrix_view<float const> weights,
                  expert_weights<W> const& w, shared_expert_weights<W> const& sw, matrix_view<Out> out,
                  expert_block_state& st) {
  static_assert(std::is_same_v<W, fp8_t>, "fp8moe::moe::expert_block: weights must be float8_e4m3_t");
  constexpr char const* where = detail::block_where;
  detail::check_block_args(cfg, x, ids, weights, w, sw, out);
  std::int64_t const T = x.rows, H = x.cols, k = ids.cols, E = w.w13.batches(), I = w.w13.rows() / 2;
  std::vector<std::int32_t> counts(static_cast<std::size_t>(E), 0);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t j = 0; j < k; ++j) {
      auto const e = ids(t, j);
      if (e < -1 || e >= E)
        require(false, where, "ids", "values in [-1, E)",
                fp8moe::detail::concat("ids(", t, ", ", j, ") = ", e));
      if (e >= 0) ++counts[static_cast<std::size_t>(e)];
    }
  contiguous const layout{cfg.m_align};
  std::int64_t const M = contiguous_rows(layout, counts.data(), E);
  auto const tile = cfg.activation.tile;
  st.tokens = T, st.k = k, st.experts = E, st.hidden = H, st.inter = I;
  st.shared_inter = sw.present() ? sw.w13.rows() / 2 : 0;
  // 1-2. quantize x, plan, permute the FP8 rows with their scales
  detail::resize(st.xq, T, H, tile);
  scaling::quantize(exec, x, cfg.activation, st.xq.view());
  st.plan = host_permute_plan(layout, T, k, E, M);
  build_permute_plan(exec, ids, st.plan.view());
  auto const& p = st.plan.view();
  detail::resize(st.a, M, H, tile);
  permute(exec, p, scaling::quantized_matrix_view<fp8_t const>(st.xq.view()), st.a.view());
  vector_view<int const> const m_idx{p.row_expert, M};
  // 3. gate+up grouped GEMM, 4. SwiGLU, 5. quantize, 6. down grouped GEMM
  detail::resize(st.h13, M, 2 * I);
  gemm::grouped_gemm(exec,
                     gemm::grouped_contiguous<fp8_t, fp8_t, float>{
                         st.a.view(), w.w13, m_idx, st.h13.view(), {}, cfg.m_align},
                     cfg.gemm);
  detail::resize(st.act, M, I);
  detail::swiglu_rows(exec, st.h13.view(), st.act.view());
  detail::resize(st.actq, M, I, tile);
  scaling::quantize(exec, st.act.view(), cfg.activation, st.actq.view());
  detail::resize(st.y, M, H);
  gemm::grouped_gemm(exec,
                     gemm::grouped_contiguous<fp8_t, fp8_t, float>{
                         st.actq.view(), w.w2, m_idx, st.y.view(), {}, cfg.m_align},
                     cfg.gemm);
  // 7. combine (+ shared expert)
  if (!sw.present()) {
    combine(exec, p, st.y.view(), weights, out);
    return;
  }
  std::int64_t const Is = st.shared_inter;
  detail::resize(st.sh13, T, 2 * Is);
  gemm::fp8_gemm(exec, scaling::quantized_matrix_view<fp8_t const>(st.xq.view()), sw.w13, st.sh13.view(),
                 cfg.gemm);
  detail::resize(st.sact, T, Is);
  detail::swiglu_rows(exec, st.sh13.view(), st.sact.view());
  detail::resize(st.sactq, T, Is, tile);
  scaling::quantize(exec, st.sact.view(), cfg.activation, st.sactq.view());
  host_matrix<float> routed(T, H), shared(T, H);
  combine(exec, p, st.y.view(), weights, routed.view());
  gemm::fp8_gemm(exec, scaling::quantized_matrix_view<fp8_t const>(st.sactq.view()), sw.w2, shared.view(),
                 cfg.gemm);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) out(t, h) = static_cast<Out>(routed(t, h) + shared(t, h));
}

/// Backward. dout (T,H) = dL/dout. Writes dx (T,H) FP32 = dL/dx (through the FP8 path, as a
/// straight-through estimator of the quantizers), dweights (T,k) = dL/dweights (for the router
/// backward; 0 for -1 slots), and the FP32 weight gradients (K-grouped over each expert's tokens).
template <class G, class W>
void expert_block_backward(host_executor const& exec, expert_block_config const& cfg,
                           expert_block_state const& st, matrix_view<float const> weights,
                           expert_weights<W> const& w, shared_expert_weights<W> const& sw,
                           matrix_view<G> dout, matrix_view<float> dx, matrix_view<float> dweights,
                           expert_block_grads const& g) {
  constexpr char const* where = "fp8moe::moe::expert_block_backward";
  std::int64_t const T = st.tokens, H = st.hidden, I = st.inter, E = st.experts, k = st.k,
                     Is = st.shared_inter;
  require(st.experts > 0, where, "state", "the state of a forward call");
  detail::check_block_weights(w, sw, H, cfg);
  require(w.w13.batches() == E && w.w13.rows() == 2 * I, where, "weights", "the weights of the forward call");
  require(sw.present() == (Is > 0), where, "shared", "the shared expert of the forward call");
  detail::check_block_grad_args(T, H, I, E, k, Is, weights, dout, dx, dweights, g, where);
  auto const& p = st.plan.view();
  std::int64_t const M = p.rows;
  auto const tile = cfg.gradient.tile;
  vector_view<int const> const m_idx{p.row_expert, M};
  // combine backward: dY (M,H) and dweights
  host_matrix<float> dy(M, H);
  combine_backward(exec, p, st.y.view(), weights, dout, dy.view(), dweights);
  // dgrad through the down projection: dact (M,I) = dY * W2_e
  scaling::quantized_matrix<fp8_t> dyq(M, H, tile);
  scaling::quantize(exec, dy.view(), cfg.gradient, dyq.view());
  host_matrix<float> dact(M, I), dh13(M, 2 * I), dxp(M, H);
  gemm::grouped_gemm(exec,
                     gemm::grouped_contiguous<fp8_t, fp8_t, float>{
                         dyq.view(), detail::transposed(w.w2), m_idx, dact.view(), {}, cfg.m_align},
                     cfg.gemm);
  detail::swiglu_rows_backward(exec, st.h13.view(), dact.view(), dh13.view());
  scaling::quantized_matrix<fp8_t> dh13q(M, 2 * I, tile);
  scaling::quantize(exec, dh13.view(), cfg.gradient, dh13q.view());
  gemm::grouped_gemm(exec,
                     gemm::grouped_contiguous<fp8_t, fp8_t, float>{
                         dh13q.view(), detail::transposed(w.w13), m_idx, dxp.view(), {}, cfg.m_align},
                     cfg.gemm);
  permute_backward(exec, p, dxp.view(), dx);
  // wgrad: K-grouped over each expert's (padded) rows; padding rows are zero in both operands
  std::vector<int> k_sizes(static_cast<std::size_t>(E));
  for (std::int64_t e = 0; e < E; ++e)
    k_sizes[static_cast<std::size_t>(e)] = p.expert_offset[e + 1] - p.expert_offset[e];
  vector_view<int const> const ks{k_sizes.data(), E};
  scaling::quantized_matrix<fp8_t> dyt(H, M, tile), actt(I, M, tile), dh13t(2 * I, M, tile), at(H, M, tile);
  scaling::transpose_requantize(exec, dy.view(), cfg.gradient, dyt.view());
  scaling::transpose_requantize(exec, st.act.view(), cfg.activation, actt.view());
  gemm::grouped_gemm(exec, gemm::k_grouped<fp8_t, fp8_t>{dyt.view(), actt.view(), ks, g.dw2, {}}, cfg.gemm);
  scaling::transpose_requantize(exec, dh13.view(), cfg.gradient, dh13t.view());
  scaling::transpose_requantize(exec, scaling::quantized_matrix_view<fp8_t const>(st.a.view()),
                                cfg.activation, at.view());
  gemm::grouped_gemm(exec, gemm::k_grouped<fp8_t, fp8_t>{dh13t.view(), at.view(), ks, g.dw13, {}}, cfg.gemm);
  if (Is == 0) return;
  // shared expert: dsact = dout * Ws2, dsh13 = swiglu', dx += dsh13 * Ws13; wgrads over all T tokens
  scaling::quantized_matrix<fp8_t> doq(T, H, tile);
  scaling::quantize(exec, dout, cfg.gradient, doq.view());
  host_matrix<float> dsact(T, Is), dsh13(T, 2 * Is), dxs(T, H);
  gemm::fp8_gemm(exec, scaling::quantized_matrix_view<fp8_t const>(doq.view()), gemm::transposed(sw.w2),
                 dsact.view(), cfg.gemm);
  detail::swiglu_rows_backward(exec, st.sh13.view(), dsact.view(), dsh13.view());
  scaling::quantized_matrix<fp8_t> dsh13q(T, 2 * Is, tile);
  scaling::quantize(exec, dsh13.view(), cfg.gradient, dsh13q.view());
  gemm::fp8_gemm(exec, scaling::quantized_matrix_view<fp8_t const>(dsh13q.view()), gemm::transposed(sw.w13),
                 dxs.view(), cfg.gemm);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) dx(t, h) += dxs(t, h);
  scaling::quantized_matrix<fp8_t> dot(H, T, tile), sactt(Is, T, tile), dsh13t(2 * Is, T, tile),
      xt(H, T, tile);
  scaling::transpose_requantize(exec, dout, cfg.gradient, dot.view());
  scaling::transpose_requantize(exec, st.sact.view(), cfg.activation, sactt.view());
  gemm::fp8_gemm(exec, scaling::quantized_matrix_view<fp8_t const>(dot.view()),
                 scaling::quantized_matrix_view<fp8_t const>(sactt.view()), g.dsw2, cfg.gemm);
  scaling::transpose_requantize(exec, dsh13.view(), cfg.gradient, dsh13t.view());
  scaling::transpose_requantize(exec, scaling::quantized_matrix_view<fp8_t const>(st.xq.view()),
                                cfg.activation, xt.view());
  gemm::fp8_gemm(exec, scaling::quantized_matrix_view<fp8_t const>(dsh13t.view()),
                 scaling::quantized_matrix_view<fp8_t const>(xt.view()), g.dsw13, cfg.gemm);
}

}  // namespace fp8moe::moe
