// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The MoE feed-forward of the DeepSeek-V3 model (reference §1.5) and its backward, llm.c style:
// moe::route + permute + the routed experts + the shared expert + combine, built from the layers of
// layers.hpp (linear, the SwiGLU MLP); the backward next to the forward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "fp8moe/moe/balance.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/moe/score.hpp"
#include "layers.hpp"
#include "params.hpp"

namespace dsv3 {

/// The router of a config (reference §1.5): sigmoid (V3) or softmax scores, expert groups with the
/// dropped ones masked to -inf (model.py; transformers' 0.0 fill is the bug serving engines fixed),
/// group score = sum of the top-2 biased scores for noaux_tc (else the max), k experts, weights from
/// the unbiased scores, normalized when norm_topk_prob, times routed_scaling_factor.
inline fm::moe::router_config router_of(fm::io::deepseek_v3_config const& c) {
  bool const grouped = c.topk_method != "greedy" && c.n_group > 1;
  return {.experts = static_cast<int>(c.n_routed_experts),
          .groups = grouped ? static_cast<int>(c.n_group) : 1,
          .topk_groups = grouped ? static_cast<int>(c.topk_group) : 1,
          .k = static_cast<int>(c.num_experts_per_tok),
          .score = c.scoring_func == "softmax" ? fm::moe::score_function::softmax
                                               : fm::moe::score_function::sigmoid,
          .route_scale = static_cast<float>(c.routed_scaling_factor),
          .normalize = c.norm_topk_prob,
          .group_top = c.topk_method == "noaux_tc" ? 2 : 1};
}

/// What an MoE layer keeps (T tokens, k slots, E experts, M = T*k permuted rows, I / Is widths).
struct moe_acts {
  matrix_view<float> logits{};      // (T, E) router logits x gate^T (float)
  matrix_view<std::int32_t> ids{};  // (T, k) selected experts, best first
  matrix_view<float> weights{};     // (T, k) gating weights (unbiased, normalized, scaled)
  std::span<std::int32_t> counts;   // (E) tokens per expert
  fm::moe::permute_plan plan{};     // contiguous, m_align 1: M = T*k rows, expert-major
  matrix_view<float> xp{};          // (M, H) permuted inputs
  mlp_acts experts{};               // h13 (M, 2I), act (M, I)
  matrix_view<float> yp{};          // (M, H) expert outputs, permuted
  mlp_acts shared{};                // h13 (T, 2Is), act (T, Is)
  matrix_view<float> routed{};      // (T, H) sum_j w_j expert_j(x)
  matrix_view<float> shared_out{};  // (T, H) shared expert(x)
};

/// The gating weights of given experts ids (T,k) from this layer's logits (T,E), as moe::route
/// computes them for its own selection: unbiased scores, normalized when rc.normalize, times
/// route_scale. Holds the routing of another run fixed (FP8 vs FP32 comparisons, gradient checks).
inline void weights_for_ids(fm::moe::router_config const& rc, matrix_view<float const> logits,
                            matrix_view<std::int32_t const> fixed, moe_acts& a) {
  std::fill(a.counts.begin(), a.counts.end(), 0);
  for (std::int64_t t = 0; t < logits.rows; ++t) {
    fm::moe::score_trait const f(rc.score, logits.row(t), 1, rc.experts);
    float sum = 0.0f;
    for (std::int64_t j = 0; j < rc.k; ++j) {
      std::int32_t const e = fixed(t, j);
      fm::require(e >= 0 && e < rc.experts, "dsv3::moe_forward", "fixed routing", "expert ids in [0, E)");
      a.ids(t, j) = e;
      a.weights(t, j) = f.value(logits(t, e));
      sum += a.weights(t, j);
      ++a.counts[static_cast<std::size_t>(e)];
    }
    for (std::int64_t j = 0; j < rc.k; ++j) {
      float const g = rc.normalize ? (sum > 0.0f ? a.weights(t, j) / sum : 1.0f / static_cast<float>(rc.k))
                                   : a.weights(t, j);
      a.weights(t, j) = g * rc.route_scale;
    }
  }
}

/// Calls fn(e, r0, n, sub) for each expert e with n > 0 rows [r0, r0+n) of the permuted rows, sub its
/// slice of a.experts (the forward and the backward walk the experts alike).
template <class F>
void for_each_expert(moe_acts const& a, std::int64_t experts, F&& fn) {
  std::int64_t const I2 = a.experts.h13.cols, I = a.experts.act.cols;
  for (std::int64_t e = 0; e < experts; ++e) {
    std::int64_t const r0 = a.plan.expert_offset[e], n = a.plan.expert_offset[e + 1] - r0;
    if (n == 0) continue;
    fn(static_cast<std::size_t>(e), r0, n,
       mlp_acts{fm::make_matrix(a.experts.h13.row(r0), n, I2), fm::make_matrix(a.experts.act.row(r0), n, I)});
  }
}

/// out (T,H) = sum_j w_j Expert_{id_j}(x) + Shared(x) (reference §1.5): moe::route, the permute plan,
/// each expert's SwiGLU on its contiguous rows through `linear`, moe::combine, the shared expert.
/// `fixed` (T,k), when non-empty, replaces the selection (routing held fixed; weights still computed).
inline void moe_forward(context& ctx, moe_params const& w, fm::moe::router_config const& rc,
                        matrix_view<float const> x, moe_acts& a, matrix_view<float> out,
                        matrix_view<std::int32_t const> fixed = {}) {
  auto const& ex = ctx.exec;
  std::int64_t const T = x.rows, H = x.cols;
  if (T == 0) return;
  linear(ctx, x, w.gate, a.logits);  // float gate (HF routes in fp32)
  fm::vector_view<float const> const bias{w.bias.data(), static_cast<std::int64_t>(w.bias.size())};
  if (fixed.data)
    weights_for_ids(rc, a.logits, fixed, a);
  else
    fm::moe::route(
        ex, rc, matrix_view<float const>(a.logits), bias, a.ids, a.weights,
        fm::vector_view<std::int32_t>{a.counts.data(), static_cast<std::int64_t>(a.counts.size())});
  fm::moe::build_permute_plan(ex, matrix_view<std::int32_t const>(a.ids), a.plan);
  fm::moe::permute(ex, a.plan, x, a.xp);
  for_each_expert(a, rc.experts, [&](std::size_t e, std::int64_t r0, std::int64_t n, mlp_acts const& sub) {
    mlp_forward(ctx, w.experts[e], fm::make_matrix<float const>(a.xp.row(r0), n, H), sub,
                fm::make_matrix(a.yp.row(r0), n, H));
  });
  fm::moe::combine(ex, a.plan, matrix_view<float const>(a.yp), matrix_view<float const>(a.weights), a.routed);
  round_activation(ctx, a.routed);
  if (!w.has_shared) {
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < H; ++c) out(t, c) = a.routed(t, c);
    return;
  }
  mlp_forward(ctx, w.shared, x, a.shared, a.shared_out);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t c = 0; c < H; ++c) out(t, c) = a.routed(t, c) + a.shared_out(t, c);
  round_activation(ctx, out);
}

// ---- backward (each function's contract: see the backward section of layers.hpp) -------------------

/// The backward of moe_forward with its routing as the forward chose it (the selection is not
/// differentiated): dx (T,H) = dL/dx, WRITTEN. moe::combine_backward gives each permuted row's output
/// gradient and dL/d weights; each expert's mlp_backward on its contiguous rows; moe::permute_backward
/// sums the rows back per token; moe::route_backward carries dL/d weights through the normalized,
/// scaled, gathered UNBIASED scores to the router logits (the bias gets no gradient); with
/// balance.alpha > 0 the sequence balance loss's gradient is added there (moe::sequence_balance_loss_
/// backward); the router gate (float) and the shared expert ACCUMULATE into dx. Gradients of g ACCUMULATE.
inline void moe_backward(context& ctx, moe_params const& w, fm::moe::router_config const& rc,
                         matrix_view<float const> x, moe_acts const& a, matrix_view<float const> dout,
                         matrix_view<float> dx, moe_params const& g,
                         fm::moe::sequence_balance_config const& balance = {.alpha = 0.0f}) {
  auto const& ex = ctx.exec;
  std::int64_t const T = x.rows, H = x.cols, M = a.plan.rows;
  if (T == 0) return;
  auto const mark = ctx.temps.mark();
  auto const dyp = ctx.temps.matrix(M, H);                    // (M, H)
  auto const dweights = ctx.temps.matrix(T, a.weights.cols);  // (T, k)
  fm::moe::combine_backward(ex, a.plan, matrix_view<float const>(a.yp), matrix_view<float const>(a.weights),
                            dout, dyp, dweights);
  auto const dxp = ctx.temps.matrix(M, H);  // (M, H)
  for_each_expert(a, rc.experts, [&](std::size_t e, std::int64_t r0, std::int64_t n, mlp_acts const& sub) {
    mlp_backward(ctx, w.experts[e], fm::make_matrix<float const>(a.xp.row(r0), n, H), sub,
                 fm::make_matrix<float const>(dyp.row(r0), n, H), fm::make_matrix(dxp.row(r0), n, H), false,
                 g.experts[e]);
  });
  fm::moe::permute_backward(ex, a.plan, matrix_view<float const>(dxp), dx);
  auto const dlogits = ctx.temps.matrix(T, rc.experts);  // (T, E)
  fm::moe::route_backward(ex, rc, matrix_view<float const>(a.logits), matrix_view<std::int32_t const>(a.ids),
                          matrix_view<float const>(dweights), dlogits);
  if (balance.alpha > 0.0f)
    fm::moe::sequence_balance_loss_backward(ex, rc, matrix_view<float const>(a.logits), dlogits, balance);
  linear_backward(ctx, x, w.gate, dlogits, dx, true, g.gate.f32);
  if (w.has_shared) mlp_backward(ctx, w.shared, x, a.shared, dout, dx, true, g.shared);
  ctx.temps.release(mark);
}

}  // namespace dsv3
