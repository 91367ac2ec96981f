// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The activations of one forward over T tokens as a struct of views into ONE allocation (llm.c
// style; each layer's struct is the state its backward reads), and the whole forward: embedding ->
// decoder blocks (x += MLA(attn_norm x); x += FFN(ffn_norm x)) -> final norm -> LM head (reference
// §1.6), logits for every position (T, V); and its backward (cross-entropy over targets, then each
// layer's *_backward in reverse, gradients into a make_gradients() struct).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/moe/balance.hpp"
#include "fp8moe/nn/embedding.hpp"
#include "fp8moe/nn/softmax.hpp"
#include "layers.hpp"
#include "moe.hpp"
#include "params.hpp"

namespace dsv3 {

/// One decoder block's activations (T tokens, H hidden).
struct layer_acts {
  matrix_view<float> x{};        // (T, H) block input (the residual stream)
  std::span<float> attn_rstd;    // (T)
  matrix_view<float> attn_in{};  // (T, H) input_layernorm(x)
  mla_acts attn;
  matrix_view<float> attn_out{};  // (T, H) MLA output (wo o)
  matrix_view<float> h{};         // (T, H) x + attn_out
  std::span<float> ffn_rstd;      // (T)
  matrix_view<float> ffn_in{};    // (T, H) post_attention_layernorm(h)
  mlp_acts mlp;                   // dense: h13 (T, 2I), act (T, I)
  moe_acts moe;                   // MoE layers
  matrix_view<float> ffn_out{};   // (T, H) the next block's x = h + ffn_out
};

/// All activations of a forward over T tokens.
struct activations {
  std::int64_t tokens = 0;              // T
  std::vector<std::int32_t> ids;        // (T) token ids
  std::vector<std::int64_t> positions;  // (T) 0..T-1
  std::vector<layer_acts> layers;       // num_hidden_layers
  matrix_view<float> x_final{};         // (T, H) output of the last block
  std::span<float> norm_rstd;           // (T)
  matrix_view<float> x_norm{};          // (T, H) model.norm(x_final)
  matrix_view<float> logits{};          // (T, V) lm_head(x_norm)
  std::shared_ptr<std::byte[]> storage;
  std::size_t bytes = 0;
};

namespace detail {

inline std::span<float> take_span(fm::nn::workspace_arena& a, std::int64_t n) {
  float* p = a.take<float>(n);
  return p ? std::span<float>{p, static_cast<std::size_t>(n)} : std::span<float>{};
}

inline mlp_acts carve_mlp(fm::nn::workspace_arena& a, std::int64_t R, std::int64_t I) {
  return {a.matrix<float>(R, 2 * I), a.matrix<float>(R, I)};
}

/// Carves the activations of T tokens (counting or carving). Each block has its own x (the residual
/// input its backward needs).
inline void carve_activations(fm::io::deepseek_v3_config const& c, mla_form form, std::int64_t T,
                              fm::nn::workspace_arena& a, activations& acts) {
  std::int64_t const H = c.hidden_size, V = c.vocab_size, nh = c.num_attention_heads, dn = c.qk_nope_head_dim,
                     dr = c.qk_rope_head_dim, dv = c.v_head_dim, kvr = c.kv_lora_rank;
  acts.tokens = T;
  acts.layers.assign(static_cast<std::size_t>(c.num_hidden_layers), {});
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    auto& L = acts.layers[static_cast<std::size_t>(l)];
    L.x = a.matrix<float>(T, H);
    L.attn_rstd = take_span(a, T);
    L.attn_in = a.matrix<float>(T, H);
    auto& m = L.attn;
    if (c.q_lora_rank) {
      m.cq = a.matrix<float>(T, *c.q_lora_rank);
      m.cq_rstd = take_span(a, T);
      m.cq_norm = a.matrix<float>(T, *c.q_lora_rank);
    }
    m.q = a.matrix<float>(T, nh * (dn + dr));
    m.kv_a = a.matrix<float>(T, kvr + dr);
    m.kv_rstd = take_span(a, T);
    m.latent = a.matrix<float>(T, kvr);
    if (form == mla_form::naive) {
      m.kv = a.matrix<float>(T, nh * (dn + dv));
      m.probs = a.matrix<float>(nh * T, T);
    }
    m.o = a.matrix<float>(T, nh * dv);
    L.attn_out = a.matrix<float>(T, H);
    L.h = a.matrix<float>(T, H);
    L.ffn_rstd = take_span(a, T);
    L.ffn_in = a.matrix<float>(T, H);
    if (!c.is_moe_layer(l)) {
      L.mlp = carve_mlp(a, T, c.intermediate_size);
    } else {
      auto& e = L.moe;
      std::int64_t const E = c.n_routed_experts, k = c.num_experts_per_tok, M = T * k;
      e.logits = a.matrix<float>(T, E);
      e.ids = a.matrix<std::int32_t>(T, k);
      e.weights = a.matrix<float>(T, k);
      std::int32_t* counts = a.take<std::int32_t>(E);
      e.counts =
          counts ? std::span<std::int32_t>{counts, static_cast<std::size_t>(E)} : std::span<std::int32_t>{};
      auto& p = e.plan;
      p = {};
      p.layout = fm::moe::layout_kind::contiguous;
      p.tokens = T, p.k = k, p.experts = E, p.rows = M, p.align = 1;
      p.row_token = a.take<std::int32_t>(M);
      p.row_slot = a.take<std::int32_t>(M);
      p.row_expert = a.take<std::int32_t>(M);
      p.slot_row = a.take<std::int32_t>(M);
      p.expert_offset = a.take<std::int32_t>(E + 1);
      p.counts = a.take<std::int32_t>(E);
      e.xp = a.matrix<float>(M, H);
      e.experts = carve_mlp(a, M, c.moe_intermediate_size);
      e.yp = a.matrix<float>(M, H);
      if (c.n_shared_experts > 0) {
        e.shared = carve_mlp(a, T, c.n_shared_experts * c.moe_intermediate_size);
        e.shared_out = a.matrix<float>(T, H);
      }
      e.routed = a.matrix<float>(T, H);
    }
    L.ffn_out = a.matrix<float>(T, H);
  }
  acts.x_final = a.matrix<float>(T, H);
  acts.norm_rstd = take_span(a, T);
  acts.x_norm = a.matrix<float>(T, H);
  acts.logits = a.matrix<float>(T, V);
}

}  // namespace detail

/// Activations for T tokens in one allocation (re-used by forward() while T fits).
inline activations make_activations(fm::io::deepseek_v3_config const& c, mla_form form, std::int64_t T) {
  activations acts;
  fm::nn::workspace_arena counting;
  detail::carve_activations(c, form, T, counting, acts);
  acts.bytes = counting.bytes();
  acts.storage = std::shared_ptr<std::byte[]>(new std::byte[acts.bytes]);
  fm::nn::workspace_arena arena({acts.storage.get(), acts.bytes});
  detail::carve_activations(c, form, T, arena, acts);
  return acts;
}

namespace detail {

/// Activations by token count: decoding alternates between a few small counts (1 per plain step,
/// D+1 per verification, the prompt once), so each is carved once and kept.
class activations_by_count {
 public:
  activations& get(fm::io::deepseek_v3_config const& c, mla_form form, std::int64_t T) {
    auto it = by_count_.find(T);
    if (it == by_count_.end()) it = by_count_.emplace(T, make_activations(c, form, T)).first;
    return it->second;
  }
  /// Drops the activations of more than `keep` tokens (a long prompt's, after the prefill).
  void release_above(std::int64_t keep) { by_count_.erase(by_count_.upper_bound(keep), by_count_.end()); }

 private:
  std::map<std::int64_t, activations> by_count_;
};

}  // namespace detail

/// Checks token ids before anything is written: each in [0, vocab_size); an fp8moe::error naming
/// `tokens` otherwise.
inline void check_tokens(fm::io::deepseek_v3_config const& c, std::span<std::int32_t const> tokens) {
  fm::require(!tokens.empty(), "dsv3::forward", "tokens", "at least one token", "none");
  for (std::size_t t = 0; t < tokens.size(); ++t)
    fm::require(tokens[t] >= 0 && tokens[t] < c.vocab_size, "dsv3::forward", "tokens",
                "token ids in [0, vocab_size = " + std::to_string(c.vocab_size) + ")",
                std::to_string(tokens[t]) + " at position " + std::to_string(t));
}

/// One decoder block: x (acts.x) -> acts.ffn_out + acts.h (the caller adds them into the next x).
/// `fixed` (T,k): an MoE layer's routing held fixed (empty: route). `cache`: the layer's compressed
/// KV cache (absorbed form; decoding), or nullptr.
inline void block_forward(context& ctx, params const& p, layer_params const& w, rope_state const& rope,
                          fm::moe::router_config const& rc, std::span<std::int64_t const> positions,
                          layer_acts& a, layer_timings& tm, matrix_view<std::int32_t const> fixed = {},
                          fm::attention::mla_cache* cache = nullptr) {
  double const eps = p.cfg.rms_norm_eps;
  std::int64_t const T = a.x.rows, H = a.x.cols;
  double t0 = now_seconds();
  rmsnorm(ctx, a.x, w.attn_norm, eps, a.attn_in, a.attn_rstd);
  mla_forward(ctx, w.attn, rope, eps, positions, a.attn_in, a.attn, a.attn_out, cache);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t c = 0; c < H; ++c) a.h(t, c) = a.x(t, c) + a.attn_out(t, c);
  round_activation(ctx, a.h);
  double t1 = now_seconds();
  tm.attention += t1 - t0;
  rmsnorm(ctx, a.h, w.ffn_norm, eps, a.ffn_in, a.ffn_rstd);
  if (w.is_moe)
    moe_forward(ctx, w.moe, rc, a.ffn_in, a.moe, a.ffn_out, fixed);
  else
    mlp_forward(ctx, w.mlp, a.ffn_in, a.mlp, a.ffn_out);
  (w.is_moe ? tm.moe : tm.dense_mlp) += now_seconds() - t1;
}

/// The whole forward over acts.ids (checked): fills every view of `acts` and returns the logits (T, V).
/// `routing_from`: the activations of another forward over the same tokens whose expert selection
/// every MoE layer reuses (routing held fixed), or nullptr. `caches` (one per layer, or empty): each
/// layer's compressed KV cache, appended to (decoding at acts.positions; absorbed form).
inline matrix_view<float> forward(context& ctx, params const& p, rope_state const& rope, activations& acts,
                                  layer_timings& tm, activations const* routing_from = nullptr,
                                  std::span<fm::attention::mla_cache> caches = {}) {
  auto const& c = p.cfg;
  std::int64_t const T = acts.tokens, H = c.hidden_size;
  auto const rc = router_of(c);
  if (routing_from)  // checked before anything is written
    fm::require(routing_from->tokens == T && routing_from->layers.size() == acts.layers.size() &&
                    routing_from->ids == acts.ids,
                "dsv3::forward", "routing_from",
                "the activations of a forward over the same tokens and config");
  fm::require(caches.empty() || caches.size() == acts.layers.size(), "dsv3::forward", "caches",
              "none or one per layer (" + std::to_string(acts.layers.size()) + ")",
              std::to_string(caches.size()));
  tm = {};
  ctx.core_seconds = 0;
  double t0 = now_seconds();
  auto x0 = acts.layers.empty() ? acts.x_final : acts.layers[0].x;
  fm::nn::embedding_forward(ctx.exec, std::span<std::int32_t const>(acts.ids),
                            matrix_view<float const>(p.embed), x0);
  round_activation(ctx, x0);
  tm.embedding = now_seconds() - t0;
  for (std::size_t l = 0; l < acts.layers.size(); ++l) {
    auto& a = acts.layers[l];
    matrix_view<std::int32_t const> fixed{};
    if (routing_from && p.layers[l].is_moe) fixed = routing_from->layers[l].moe.ids;
    block_forward(ctx, p, p.layers[l], rope, rc, acts.positions, a, tm, fixed,
                  caches.empty() ? nullptr : &caches[l]);
    double t1 = now_seconds();
    auto next = l + 1 < acts.layers.size() ? acts.layers[l + 1].x : acts.x_final;
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < H; ++j) next(t, j) = a.h(t, j) + a.ffn_out(t, j);
    round_activation(ctx, next);
    (p.layers[l].is_moe ? tm.moe : tm.dense_mlp) += now_seconds() - t1;
  }
  t0 = now_seconds();
  rmsnorm(ctx, acts.x_final, p.norm, c.rms_norm_eps, acts.x_norm, acts.norm_rstd);
  linear(ctx, acts.x_norm, p.lm_head, acts.logits);  // float head (DeepSeek: BF16 weights, never FP8)
  tm.head = now_seconds() - t0;
  tm.attention_core = ctx.core_seconds;
  return acts.logits;
}

// ---- backward -----------------------------------------------------------------------------------------

/// What backward() adds to the mean cross-entropy over the valid targets.
struct backward_options {
  /// The sequence balance loss (DeepSeek-V3 Eq. 17-20) of every MoE layer, weight alpha (0: off), over
  /// sequences of sequence_length tokens (0: all T tokens are one sequence).
  fm::moe::sequence_balance_config balance{.alpha = 0.0f};
  /// lambda of the MTP loss term (DeepSeek-V3: 0.3, later 0.1; model::backward, backward.hpp), when
  /// the config has MTP layers; 0: off.
  float mtp_weight = 0.0f;
  std::int32_t ignore_index = -100;  // targets equal to it add no loss
};

/// The loss terms of one backward.
struct loss_terms {
  double main = 0;     // mean cross-entropy of the logits over the valid targets
  double balance = 0;  // sum over the MoE layers of the sequence balance loss (alpha included)
  double mtp = 0;      // the MTP term (lambda included)
  double total() const { return main + balance + mtp; }
};

/// The backward of block_forward: dres (T,H) holds dL/d(this block's output h + ffn_out) on entry and
/// dL/dx (the block input) on exit (the residual gradient, updated in place); the parameter gradients
/// of g ACCUMULATE. FFN (dense mlp_backward or moe_backward) -> post_attention_layernorm -> MLA ->
/// input_layernorm, each residual branch adding into dres.
inline void block_backward(context& ctx, layer_params const& w, rope_state const& rope,
                           fm::moe::router_config const& rc, std::span<std::int64_t const> positions,
                           layer_acts const& a, matrix_view<float> dres, layer_params const& g,
                           fm::moe::sequence_balance_config const& balance = {.alpha = 0.0f}) {
  std::int64_t const T = a.x.rows, H = a.x.cols;
  auto const mark = ctx.temps.mark();
  auto const dffn_in = ctx.temps.matrix(T, H);
  if (w.is_moe)
    moe_backward(ctx, w.moe, rc, a.ffn_in, a.moe, dres, dffn_in, g.moe, balance);
  else
    mlp_backward(ctx, w.mlp, a.ffn_in, a.mlp, dres, dffn_in, false, g.mlp);
  rmsnorm_backward(ctx, a.h, w.ffn_norm, a.ffn_rstd, dffn_in, dres, g.ffn_norm);  // dres = dL/dh
  auto const dattn_in = ctx.temps.zeros(T, H);
  mla_backward(ctx, w.attn, rope, positions, a.attn_in, a.attn, dres, dattn_in, g.attn);
  rmsnorm_backward(ctx, a.x, w.attn_norm, a.attn_rstd, dattn_in, dres, g.attn_norm);  // dres = dL/dx
  ctx.temps.release(mark);
}

/// The argument checks of backward() (before anything is written): targets (T) ids in [0, vocab) or
/// o.ignore_index, g gradients of this config (make_gradients), d_embedded empty or (T, H).
inline void check_backward(params const& p, activations const& acts, std::span<std::int32_t const> targets,
                           params const& g, backward_options const& o, matrix_view<float> d_embedded) {
  constexpr char const* where = "dsv3::backward";
  auto const& c = p.cfg;
  std::int64_t const T = acts.tokens, H = c.hidden_size, V = c.vocab_size;
  fm::require(static_cast<std::int64_t>(targets.size()) == T, where, "targets",
              "one per token, T = " + std::to_string(T), std::to_string(targets.size()));
  for (std::size_t t = 0; t < targets.size(); ++t)
    fm::require(targets[t] == o.ignore_index || (targets[t] >= 0 && targets[t] < V), where, "targets",
                "ids in [0, vocab_size) or ignore_index",
                std::to_string(targets[t]) + " at position " + std::to_string(t));
  fm::require(g.prec == precision::fp32 && g.layers.size() == p.layers.size() &&
                  g.mtp.size() == p.mtp.size() && g.cfg.hidden_size == H && g.cfg.vocab_size == V,
              where, "g", "gradients of this config from make_gradients");
  fm::require(d_embedded.data == nullptr || (d_embedded.rows == T && d_embedded.cols == H), where,
              "d_embedded", "empty or (T, H)");
}

/// The backward of forward() over the same acts (the forward must have run on acts.ids): the loss is the
/// mean cross-entropy of acts.logits against targets (T) over the rows whose target is not
/// o.ignore_index, plus the balance term when o.balance.alpha > 0. Every gradient of g (make_gradients)
/// ACCUMULATES (zero_gradients first for one step's gradient). d_embedded (T,H), when non-empty,
/// receives dL/d(embedding output) (WRITTEN). `d_x_final` (T,H), when non-empty, is added to the
/// gradient of the last block's output (another loss reading it: the MTP term, backward.hpp).
/// Cross-entropy (nn) -> LM head -> final norm -> blocks in reverse -> embedding (nn::embedding_
/// backward). Returns the loss terms (of the forward's values; mtp left 0).
inline loss_terms backward(context& ctx, params const& p, rope_state const& rope, activations const& acts,
                           std::span<std::int32_t const> targets, params const& g,
                           backward_options const& o = {}, matrix_view<float> d_embedded = {},
                           matrix_view<float const> d_x_final = {}) {
  check_backward(p, acts, targets, g, o, d_embedded);
  fm::require(
      d_x_final.data == nullptr || (d_x_final.rows == acts.tokens && d_x_final.cols == p.cfg.hidden_size),
      "dsv3::backward", "d_x_final", "empty or (T, H)");
  auto const& c = p.cfg;
  std::int64_t const T = acts.tokens, H = c.hidden_size, V = c.vocab_size;
  auto const rc = router_of(c);
  auto& temps = ctx.temps;
  temps.release(0);
  loss_terms loss;
  // cross-entropy (mean over the valid targets) -> dlogits
  auto const losses = temps.matrix(1, T);
  loss.main = fm::nn::cross_entropy_forward(ctx.exec, matrix_view<float const>(acts.logits), targets,
                                            std::span<float>(losses.data, static_cast<std::size_t>(T)),
                                            o.ignore_index);
  auto const dlogits = temps.matrix(T, V);
  fm::nn::cross_entropy_backward(ctx.exec, matrix_view<float const>(acts.logits), targets, dlogits, 1.0f,
                                 o.ignore_index);
  // LM head, final norm
  auto const dx_norm = temps.matrix(T, H);
  linear_backward(ctx, acts.x_norm, p.lm_head, dlogits, dx_norm, false, g.lm_head.f32);
  auto const dres = temps.zeros(T, H);  // the residual stream's gradient
  rmsnorm_backward(ctx, acts.x_final, p.norm, acts.norm_rstd, dx_norm, dres, g.norm);
  if (d_x_final.data)
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < H; ++j) dres(t, j) += d_x_final(t, j);
  // the blocks, last first
  for (std::size_t l = acts.layers.size(); l-- > 0;) {
    auto const& a = acts.layers[l];
    if (p.layers[l].is_moe && o.balance.alpha > 0.0f)
      loss.balance +=
          fm::moe::sequence_balance_loss(ctx.exec, rc, matrix_view<float const>(a.moe.logits), o.balance);
    block_backward(ctx, p.layers[l], rope, rc, acts.positions, a, dres, g.layers[l], o.balance);
  }
  // embedding
  fm::nn::embedding_backward(ctx.exec, std::span<std::int32_t const>(acts.ids),
                             matrix_view<float const>(dres), g.embed);
  if (d_embedded.data)
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < H; ++j) d_embedded(t, j) = dres(t, j);
  temps.release(0);
  return loss;
}

}  // namespace dsv3
