// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The MoE feed-forward of the DeepSeek-V3 model (reference §1.5) and its backward, llm.c style:
// moe::route + permute + the routed experts + the shared expert + combine, built from the layers of
// layers.hpp (linear, the SwiGLU MLP); the backward next to the forward. Under the FP8 training recipe
// (Fprop, Dgrad and Wgrad all FP8) the routed experts run as grouped FP8 GEMMs (gemm::grouped_gemm:
// contiguous for Fprop and Dgrad, K-grouped for Wgrad); otherwise one expert at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include "fp8moe/gemm/gemm.hpp"
#include "fp8moe/moe/balance.hpp"
#include "fp8moe/moe/expert_block.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/moe/score.hpp"
#include "fp8moe/nn/activation.hpp"
#include "fp8moe/scaling/quantize.hpp"
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

/// How the routed experts' GEMMs run under the FP8 training recipe (fp8_training with fprop, dgrad and
/// wgrad all on): `grouped` (one grouped GEMM per projection over every expert's rows, one K-grouped
/// Wgrad per weight) or `per_expert` (each expert's SwiGLU through `linear`, the reference the grouped
/// form is tested against). Any other precision or switch mix walks the experts one at a time.
enum class expert_gemms { grouped, per_expert };

/// What the grouped FP8 experts keep from the forward for the backward (Mu = rows in use: each
/// expert's rows padded to m_align = the 1 x 128 activation tile, so no scale tile of the K-grouped
/// Wgrad straddles two experts), in one buffer that grows to the largest request (copies share it).
struct grouped_expert_acts {
  bool active = false;                              // the last moe_forward ran the grouped form
  std::shared_ptr<std::vector<std::byte>> storage;  // everything below
  fm::moe::permute_plan plan{};                     // contiguous, m_align 128, Mu rows; -1 on padding rows
  fm::scaling::quantized_batched_view<float8_e4m3_t> w13{};  // (E, 2I, H) [gate | up], 128x128 blocks
  fm::scaling::quantized_batched_view<float8_e4m3_t> w2{};   // (E, H, I) down, 128x128 blocks
  matrix_view<float> h13{};                                  // (Mu, 2I) [gate x | up x], 0 on padding rows
  matrix_view<float> act{};                                  // (Mu, I) SwiGLU output (padding rows unset)
  matrix_view<float> y{};                                    // (Mu, H) expert outputs, 0 on padding rows
};

/// What an MoE layer keeps (T tokens, k slots, E experts, M = T*k permuted rows, I / Is widths).
/// plan, xp, experts and yp belong to the per-expert form; the grouped FP8 form keeps `grouped`.
struct moe_acts {
  matrix_view<float> logits{};                 // (T, E) router logits x gate^T (float)
  matrix_view<std::int32_t> ids{};             // (T, k) selected experts, best first
  matrix_view<float> weights{};                // (T, k) gating weights (unbiased, normalized, scaled)
  std::span<std::int32_t> counts;              // (E) tokens per expert
  fm::moe::permute_plan plan{};                // contiguous, m_align 1: M = T*k rows, expert-major
  matrix_view<float> xp{};                     // (M, H) permuted inputs
  mlp_acts experts{};                          // h13 (M, 2I), act (M, I)
  matrix_view<float> yp{};                     // (M, H) expert outputs, permuted
  mlp_acts shared{};                           // h13 (T, 2Is), act (T, Is)
  matrix_view<float> routed{};                 // (T, H) sum_j w_j expert_j(x)
  matrix_view<float> shared_out{};             // (T, H) shared expert(x)
  grouped_expert_acts grouped{};               // the grouped FP8 form's state
  expert_gemms gemms = expert_gemms::grouped;  // the FP8 training recipe's expert GEMMs (set before forward)
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

namespace detail {

/// True when the routed experts run as grouped FP8 GEMMs: the FP8 training recipe with Fprop, Dgrad and
/// Wgrad all on, fp32 master weights with the [gate | up] pair adjacent (mlp_params::gate_up), 1 x K
/// activation and gradient tiles with one K (the Wgrad's K tile along the tokens, = m_align, a multiple
/// of the grouped GEMM's 64) and square weight blocks, and I a multiple of both (so the (2I, H) blocks
/// and 1 x K tiles of [gate | up] are those of gate and up apart: the per-expert form's numerics).
inline bool grouped_experts_apply(context const& ctx, moe_params const& w, moe_acts const& a) {
  auto const& r = ctx.train.recipe;
  if (a.gemms != expert_gemms::grouped || !(ctx.train.fprop && ctx.train.dgrad && ctx.train.wgrad) ||
      w.experts.empty())
    return false;
  auto const& e0 = w.experts.front();
  std::int64_t const I = e0.gate.rows, kt = r.activation.tile.cols, wt = r.weight.tile.rows;
  return e0.gate_up.f32.data != nullptr && e0.down.f32.data != nullptr && e0.gate.fp8_gemm &&
         r.activation.tile.rows == 1 && r.gradient.tile.rows == 1 && r.gradient.tile.cols == kt && kt > 0 &&
         kt % 64 == 0 && wt > 0 && r.weight.tile.cols == wt && I % kt == 0 && I % wt == 0;
}

/// (E, R, C) view of one weight (get(mlp_params) -> matrix_view<float>) of every expert when they lie
/// at one stride, row-major (as bind_all lays them out); empty otherwise.
template <class Get>
fm::batched_matrix_view<float> experts_at_one_stride(std::vector<mlp_params> const& ex, Get get) {
  auto const m0 = get(ex.front());
  std::int64_t const E = static_cast<std::int64_t>(ex.size());
  auto const addr = [](float const* p) {
    return static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(p));
  };
  std::int64_t const step = E > 1 ? addr(get(ex[1]).data) - addr(m0.data) : 0;
  if (step % static_cast<std::int64_t>(sizeof(float)) != 0 || m0.col_stride != 1 || m0.row_stride != m0.cols)
    return {};
  for (std::int64_t e = 0; e < E; ++e) {
    auto const m = get(ex[static_cast<std::size_t>(e)]);
    if (addr(m.data) != addr(m0.data) + e * step || m.row_stride != m0.row_stride || m.col_stride != 1)
      return {};
  }
  std::int64_t const bs = E > 1 ? step / static_cast<std::int64_t>(sizeof(float)) : m0.rows * m0.cols;
  return {m0.data, E, m0.rows, m0.cols, bs, m0.row_stride, 1};
}

/// Rows [r0, r0+n) of m.
template <class T>
matrix_view<T> rows_of(matrix_view<T> m, std::int64_t r0, std::int64_t n) {
  return {m.row(r0), n, m.cols, m.row_stride, m.col_stride};
}
/// Rows [r0, r0+n) of a quantized matrix with 1 x K tiles (r0 a row of its own scale row).
template <class T>
fm::scaling::quantized_matrix_view<T> rows_of(fm::scaling::quantized_matrix_view<T> q, std::int64_t r0,
                                              std::int64_t n) {
  return {rows_of(q.data, r0, n), rows_of(q.scales, r0, n), q.tile};
}
/// Columns [c0, c0+n) of a quantized matrix with 1 x K tiles, c0 a multiple of K (its scale columns
/// from c0 / K).
template <class T>
fm::scaling::quantized_matrix_view<T> cols_of(fm::scaling::quantized_matrix_view<T> q, std::int64_t c0,
                                              std::int64_t n) {
  std::int64_t const K = q.tile.cols;
  return {{q.data.data + c0 * q.data.col_stride, q.data.rows, n, q.data.row_stride, q.data.col_stride},
          {q.scales.data + c0 / K * q.scales.col_stride, q.scales.rows, fm::scaling::scale_cols(q.tile, n),
           q.scales.row_stride, q.scales.col_stride},
          q.tile};
}
/// Calls fn(r0, n) for each expert's rows in use [r0, r0+n), n > 0, of a grouped plan (the padding rows
/// after them are skipped: the grouped GEMMs never read them).
template <class F>
void for_each_segment(fm::moe::permute_plan const& p, F&& fn) {
  for (std::int64_t e = 0; e < p.experts; ++e)
    if (p.counts[e] > 0) fn(std::int64_t{p.expert_offset[e]}, std::int64_t{p.counts[e]});
}
/// out (C, Mu) = the rows in use of x (Mu, C) transposed and quantized with r (1 x K tiles along the
/// rows of x), one expert segment at a time; the padding columns get zero data (they add nothing to
/// the K-grouped product) and no tile straddles two segments (they start at multiples of K).
template <class T>
void transpose_segments(context const& ctx, fm::moe::permute_plan const& p, matrix_view<float const> x,
                        fm::scaling::tensor_recipe const& r, fm::scaling::quantized_matrix_view<T> out) {
  for (std::int64_t i = 0; i < out.data.rows; ++i)
    std::memset(static_cast<void*>(out.data.row(i)), 0, static_cast<std::size_t>(out.data.cols) * sizeof(T));
  for_each_segment(p, [&](std::int64_t r0, std::int64_t n) {
    fm::scaling::transpose_requantize(ctx.exec, rows_of(x, r0, n), r, cols_of(out, r0, n));
  });
}

/// The forward of the grouped FP8 experts: the expert weights quantized once (128x128 blocks) into the
/// state, x quantized 1x128 and its FP8 rows permuted into expert segments of m_align rows, [gate | up]
/// of every expert in one grouped contiguous GEMM, SwiGLU, its output quantized 1x128, down likewise,
/// then combine into a.routed. The per-expert form computes the same products (same tiles and scales,
/// the same gemm options ctx.train.gemm).
inline void grouped_experts_forward(context& ctx, moe_params const& w, matrix_view<float const> x,
                                    moe_acts& a) {
  auto const& ex = ctx.exec;
  auto const& r = ctx.train.recipe;
  auto& g = a.grouped;
  std::int64_t const T = x.rows, H = x.cols, E = static_cast<std::int64_t>(w.experts.size()), k = a.ids.cols,
                     I = w.experts.front().gate.rows;
  int const align = static_cast<int>(r.activation.tile.cols);
  std::int64_t const Mu = fm::moe::contiguous_rows(fm::moe::contiguous{align}, a.counts.data(), E);
  auto const wt = r.weight.tile;
  auto const carve = [&](fm::nn::workspace_arena& ar) {
    g.plan = fm::moe::carve_contiguous_plan(ar, fm::moe::contiguous{align}, T, k, E, Mu, Mu);
    auto const batched = [&](std::int64_t R, std::int64_t C) {
      std::int64_t const sr = fm::scaling::scale_rows(wt, R), sc = fm::scaling::scale_cols(wt, C);
      float8_e4m3_t* d = ar.take<float8_e4m3_t>(E * R * C);
      float* s = ar.take<float>(E * sr * sc);
      return fm::scaling::quantized_batched_view<float8_e4m3_t>{
          {d, E, R, C, R * C, C, 1}, {s, E, sr, sc, sr * sc, sc, 1}, wt};
    };
    g.w13 = batched(2 * I, H);
    g.w2 = batched(H, I);
    g.h13 = ar.matrix<float>(Mu, 2 * I);
    g.act = ar.matrix<float>(Mu, I);
    g.y = ar.matrix<float>(Mu, H);
  };
  fm::nn::workspace_arena count;
  carve(count);
  if (!g.storage) g.storage = std::make_shared<std::vector<std::byte>>();
  if (g.storage->size() < count.bytes()) g.storage->resize(count.bytes());
  fm::nn::workspace_arena state({g.storage->data(), count.bytes()});
  carve(state);
  fm::moe::build_permute_plan(ex, matrix_view<std::int32_t const>(a.ids), g.plan);
  for (std::int64_t e = 0; e < E; ++e) {  // the fp32 master weights, quantized once per step
    auto const& m = w.experts[static_cast<std::size_t>(e)];
    fm::scaling::quantize(ex, matrix_view<float const>(m.gate_up.f32), r.weight, g.w13[e]);
    fm::scaling::quantize(ex, matrix_view<float const>(m.down.f32), r.weight, g.w2[e]);
  }
  fm::vector_view<int const> const m_idx{g.plan.row_expert, Mu};
  fm::nn::with_format(ex, r.activation.format, [&]<class A>(A) {
    auto const temps = [&](fm::nn::workspace_arena& ar) {
      return std::tuple{ar.quantized<A>(T, H, r.activation.tile), ar.quantized<A>(Mu, H, r.activation.tile),
                        ar.quantized<A>(Mu, I, r.activation.tile),
                        ar.sub(fm::gemm::workspace_bytes(ex, ctx.train.gemm))};
    };
    fm::nn::workspace_arena count_t;
    temps(count_t);
    fm::nn::workspace_arena ar(ctx.workspace(count_t.bytes()));
    auto const [xq, aq, actq, gws] = temps(ar);
    using W8 = float8_e4m3_t;
    fm::scaling::quantize(ex, x, r.activation, xq);
    fm::moe::permute(ex, g.plan, fm::scaling::quantized_matrix_view<A const>(xq), aq);
    fm::gemm::grouped_gemm(ex, fm::gemm::grouped_contiguous<A, W8, float>{aq, g.w13, m_idx, g.h13, {}, align},
                           ctx.train.gemm, gws);
    for_each_segment(g.plan, [&](std::int64_t r0, std::int64_t n) {
      fm::nn::swiglu(ex, rows_of(matrix_view<float const>(g.h13), r0, n), rows_of(g.act, r0, n));
      fm::scaling::quantize(ex, rows_of(matrix_view<float const>(g.act), r0, n), r.activation,
                            rows_of(actq, r0, n));
    });
    fm::gemm::grouped_gemm(ex, fm::gemm::grouped_contiguous<A, W8, float>{actq, g.w2, m_idx, g.y, {}, align},
                           ctx.train.gemm, gws);
  });
  fm::moe::combine(ex, g.plan, matrix_view<float const>(g.y), matrix_view<float const>(a.weights), a.routed);
  g.active = true;
}

/// The backward of grouped_experts_forward: dweights (T,k) WRITTEN (moe::combine_backward), dx (T,H)
/// WRITTEN (moe::permute_backward of the Dgrad rows), the experts' gate/up/down gradients of gr ACCUMULATE.
/// Dgrad: dY (1x128) x the 128x128 blocks of W2^T, SwiGLU', d[gate | up] (1x128) x those of W13^T, each
/// one grouped contiguous GEMM; Wgrad: dY^T, SwiGLU-output^T, d[gate | up]^T and the permuted float x^T
/// re-tiled 128x1 along the tokens, one K-grouped GEMM per weight (expert e's rows are group e's K),
/// accumulating into the gradients (C = D).
inline void grouped_experts_backward(context& ctx, matrix_view<float const> x, moe_acts const& a,
                                     matrix_view<float const> dout, matrix_view<float> dx,
                                     matrix_view<float> dweights, moe_params const& gr) {
  auto const& ex = ctx.exec;
  auto const& r = ctx.train.recipe;
  auto const& g = a.grouped;
  auto const& p = g.plan;
  std::int64_t const H = x.cols, E = p.experts, Mu = p.rows, I = g.act.cols;
  int const align = static_cast<int>(p.align);
  auto const mark = ctx.temps.mark();
  auto const dy = ctx.temps.matrix(Mu, H);        // (Mu, H)
  auto const dact = ctx.temps.matrix(Mu, I);      // (Mu, I)
  auto const dh13 = ctx.temps.matrix(Mu, 2 * I);  // (Mu, 2I)
  auto const dxp = ctx.temps.matrix(Mu, H);       // (Mu, H)
  auto const xp = ctx.temps.matrix(Mu, H);        // (Mu, H) the permuted float x (0 on padding rows)
  fm::moe::combine_backward(ex, p, matrix_view<float const>(g.y), matrix_view<float const>(a.weights), dout,
                            dy, dweights);
  fm::moe::permute(ex, p, x, xp);
  // The weight gradients as (E, R, C): the experts' own storage when at one stride, else gathered here.
  auto const grads = [&](auto get, std::int64_t R, std::int64_t C) {
    auto v = experts_at_one_stride(gr.experts, get);
    if (v.data != nullptr) return std::pair{v, false};
    auto const m = ctx.temps.matrix(E * R, C);
    for (std::int64_t e = 0; e < E; ++e)
      for (std::int64_t i = 0; i < R; ++i)
        for (std::int64_t c = 0; c < C; ++c)
          m(e * R + i, c) = get(gr.experts[static_cast<std::size_t>(e)])(i, c);
    return std::pair{fm::batched_matrix_view<float>{m.data, E, R, C, R * C, C, 1}, true};
  };
  auto const gate_up = [](mlp_params const& m) { return m.gate_up.f32; };
  auto const down = [](mlp_params const& m) { return m.down.f32; };
  auto const [dw13, gathered13] = grads(gate_up, 2 * I, H);  // (E, 2I, H)
  auto const [dw2, gathered2] = grads(down, H, I);           // (E, H, I)
  std::vector<int> ks(static_cast<std::size_t>(E));          // (E) group e's K: expert e's padded rows
  for (std::int64_t e = 0; e < E; ++e)
    ks[static_cast<std::size_t>(e)] = p.expert_offset[e + 1] - p.expert_offset[e];
  fm::vector_view<int const> const m_idx{p.row_expert, Mu};
  using ND = fm::nn::dispatch<fm::host_executor>;
  fm::nn::with_format(ex, r.gradient.format, [&]<class G>(G) {
    fm::nn::with_format(ex, r.activation.format, [&]<class A>(A) {
      auto const temps = [&](fm::nn::workspace_arena& ar) {
        return std::tuple{ar.quantized<G>(Mu, H, r.gradient.tile),
                          ar.quantized<G>(Mu, 2 * I, r.gradient.tile),
                          ar.quantized<G>(H, Mu, r.gradient.tile),
                          ar.quantized<A>(I, Mu, r.activation.tile),
                          ar.quantized<G>(2 * I, Mu, r.gradient.tile),
                          ar.quantized<A>(H, Mu, r.activation.tile),
                          ar.sub(fm::gemm::workspace_bytes(ex, ctx.train.gemm))};
      };
      fm::nn::workspace_arena count;
      temps(count);
      fm::nn::workspace_arena ar(ctx.workspace(count.bytes()));
      auto const [dyq, dh13q, dyt, actt, dh13t, xt, gws] = temps(ar);
      using W8 = float8_e4m3_t;
      auto const w2t = ND::transposed_weight(ex, fm::scaling::quantized_batched_view<W8 const>(g.w2), ar);
      auto const w13t = ND::transposed_weight(ex, fm::scaling::quantized_batched_view<W8 const>(g.w13), ar);
      // Dgrad: dact = dY W2, SwiGLU', dxp = d[gate | up] W13
      for_each_segment(p, [&](std::int64_t r0, std::int64_t n) {
        fm::scaling::quantize(ex, rows_of(matrix_view<float const>(dy), r0, n), r.gradient,
                              rows_of(dyq, r0, n));
      });
      fm::gemm::grouped_gemm(ex, fm::gemm::grouped_contiguous<G, W8, float>{dyq, w2t, m_idx, dact, {}, align},
                             ctx.train.gemm, gws);
      for_each_segment(p, [&](std::int64_t r0, std::int64_t n) {
        fm::nn::swiglu_backward(ex, rows_of(matrix_view<float const>(g.h13), r0, n),
                                rows_of(matrix_view<float const>(dact), r0, n), rows_of(dh13, r0, n));
        fm::scaling::quantize(ex, rows_of(matrix_view<float const>(dh13), r0, n), r.gradient,
                              rows_of(dh13q, r0, n));
      });
      fm::gemm::grouped_gemm(ex,
                             fm::gemm::grouped_contiguous<G, W8, float>{dh13q, w13t, m_idx, dxp, {}, align},
                             ctx.train.gemm, gws);
      // Wgrad: dW2_e += dY_e^T act_e, dW13_e += d[gate | up]_e^T x_e, K-grouped over the experts' rows
      fm::vector_view<int const> const kv{ks.data(), E};
      transpose_segments(ctx, p, matrix_view<float const>(dy), r.gradient, dyt);
      transpose_segments(ctx, p, matrix_view<float const>(g.act), r.activation, actt);
      fm::gemm::grouped_gemm(
          ex, fm::gemm::k_grouped<G, A>{dyt, actt, kv, dw2, fm::batched_matrix_view<float const>(dw2)},
          ctx.train.gemm, gws);
      transpose_segments(ctx, p, matrix_view<float const>(dh13), r.gradient, dh13t);
      transpose_segments(ctx, p, matrix_view<float const>(xp), r.activation, xt);
      fm::gemm::grouped_gemm(
          ex, fm::gemm::k_grouped<G, A>{dh13t, xt, kv, dw13, fm::batched_matrix_view<float const>(dw13)},
          ctx.train.gemm, gws);
    });
  });
  fm::moe::permute_backward(ex, p, matrix_view<float const>(dxp), dx);
  auto const scatter = [&](auto get, fm::batched_matrix_view<float> v) {
    for (std::int64_t e = 0; e < E; ++e) {
      auto const m = get(gr.experts[static_cast<std::size_t>(e)]);
      for (std::int64_t i = 0; i < v.rows; ++i)
        for (std::int64_t c = 0; c < v.cols; ++c) m(i, c) = v[e](i, c);
    }
  };
  if (gathered13) scatter(gate_up, dw13);
  if (gathered2) scatter(down, dw2);
  ctx.temps.release(mark);
}

}  // namespace detail

/// out (T,H) = sum_j w_j Expert_{id_j}(x) + Shared(x) (reference §1.5): moe::route, the permute plan,
/// each expert's SwiGLU on its contiguous rows through `linear` (or, under the FP8 training recipe, all
/// experts' as grouped FP8 GEMMs: detail::grouped_experts_forward), moe::combine, the shared expert.
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
  a.grouped.active = false;
  if (detail::grouped_experts_apply(ctx, w, a)) {
    detail::grouped_experts_forward(ctx, w, x, a);
  } else {
    fm::moe::build_permute_plan(ex, matrix_view<std::int32_t const>(a.ids), a.plan);
    fm::moe::permute(ex, a.plan, x, a.xp);
    for_each_expert(a, rc.experts, [&](std::size_t e, std::int64_t r0, std::int64_t n, mlp_acts const& sub) {
      mlp_forward(ctx, w.experts[e], fm::make_matrix<float const>(a.xp.row(r0), n, H), sub,
                  fm::make_matrix(a.yp.row(r0), n, H));
    });
    fm::moe::combine(ex, a.plan, matrix_view<float const>(a.yp), matrix_view<float const>(a.weights),
                     a.routed);
  }
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
/// gradient and dL/d weights; each expert's mlp_backward on its contiguous rows (or the grouped FP8
/// Dgrad and K-grouped Wgrad when the forward ran grouped, with the weights it quantized: the step's
/// weights must not change between the two); moe::permute_backward
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
  auto const dweights = ctx.temps.matrix(T, a.weights.cols);  // (T, k)
  if (a.grouped.active) {
    detail::grouped_experts_backward(ctx, x, a, dout, dx, dweights, g);
  } else {
    auto const dyp = ctx.temps.matrix(M, H);  // (M, H)
    fm::moe::combine_backward(ex, a.plan, matrix_view<float const>(a.yp), matrix_view<float const>(a.weights),
                              dout, dyp, dweights);
    auto const dxp = ctx.temps.matrix(M, H);  // (M, H)
    for_each_expert(a, rc.experts, [&](std::size_t e, std::int64_t r0, std::int64_t n, mlp_acts const& sub) {
      mlp_backward(ctx, w.experts[e], fm::make_matrix<float const>(a.xp.row(r0), n, H), sub,
                   fm::make_matrix<float const>(dyp.row(r0), n, H), fm::make_matrix(dxp.row(r0), n, H), false,
                   g.experts[e]);
    });
    fm::moe::permute_backward(ex, a.plan, matrix_view<float const>(dxp), dx);
  }
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
