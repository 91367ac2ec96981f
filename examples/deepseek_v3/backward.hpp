// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The MTP loss term of the training backward (issue 16; reference §3.2): the checkpoint's MTP layer
// as an fp8moe::mtp::mtp_module (mtp_module_of) over dsv3::decoder_block, the example's decoder block
// as an mtp::transformer_block (forward = block_forward, with an optional compressed cache for
// generation, mtp_layer.hpp; backward = block_backward into the gradients), so the library's
// mtp_forward / mtp_loss / mtp_backward do the rest. Depth 1 reads the main model's last-block output
// after the final norm (the checkpoint's and vLLM's convention, mtp::depth1_input::after_final_norm);
// the final norm's gradient is shared. Host only; allocates its activations and workspace once per
// token count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "forward.hpp"
#include "fp8moe/mtp/mtp.hpp"
#include "layers.hpp"
#include "moe.hpp"
#include "params.hpp"

namespace dsv3 {

/// One decoder block of `p` (layer_params w, e.g. the MTP layer's) as an mtp::transformer_block, for
/// training and for generation alike. forward(x (T,H), positions (T), y (T,H)) = x + attention + FFN:
/// block_forward plus the residual, routing as the block chooses, in ctx's precision and MLA form; with
/// a cache attached (absorbed form) the rows are appended to it and attend it (positions must then
/// continue the cache). backward(dy, dx) = block_backward: dx OVERWRITTEN, the gradients of `g`
/// ACCUMULATE; it needs `g` and the naive form without a cache, else an fp8moe::error. The activations
/// are its own, kept per token count; workspace_bytes is 0. ctx, p, w, g and rope are the caller's (held
/// by pointer: keep them alive); copies share the activations and the cache. Host only.
class decoder_block {
 public:
  struct state {
    std::int64_t tokens = 0;
  };

  decoder_block(context& ctx, params const& p, layer_params const& w, rope_state const& rope,
                layer_params const* g = nullptr)
      : ctx_(&ctx), p_(&p), w_(&w), g_(g), rope_(&rope), rt_(std::make_shared<runtime>()) {
    rt_->cfg = p.cfg;  // a one-layer config whose layer 0 has w's kind (dense or MoE)
    rt_->cfg.num_hidden_layers = 1;
    rt_->cfg.first_k_dense_replace = w.is_moe ? 0 : 1;
    rt_->cfg.moe_layer_freq = 1;
    rt_->cfg.num_nextn_predict_layers = 0;
  }

  /// Routes the attention through `cache` from now on (nullptr: none); the context must run the
  /// absorbed form.
  void attach(fm::attention::mla_cache* cache) {
    fm::require(!cache || ctx_->attention == mla_form::absorbed, "dsv3::decoder_block::attach", "cache",
                "a context in the absorbed MLA form (context.attention)");
    rt_->cache = cache;
  }

  std::int64_t hidden() const { return p_->cfg.hidden_size; }
  template <fm::executor Exec>
  std::size_t workspace_bytes(Exec const&, std::int64_t) const {
    return 0;
  }

  template <fm::executor Exec>
  state forward(Exec const&, matrix_view<float const> x, std::span<std::int32_t const> positions,
                matrix_view<float> y, std::span<std::byte>) const {
    std::int64_t const T = x.rows, H = hidden();
    fm::require(x.cols == H && y.rows == T && y.cols == H && static_cast<std::int64_t>(positions.size()) == T,
                "dsv3::decoder_block::forward", "x, y, positions", "(T, hidden), (T, hidden) and (T)");
    auto& r = *rt_;
    r.last = &r.acts.get(r.cfg, ctx_->attention, T);
    layer_acts& a = r.last->layers[0];
    r.positions.assign(positions.begin(), positions.end());
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < H; ++c) a.x(t, c) = x(t, c);
    block_forward(*ctx_, *p_, *w_, *rope_, router_of(p_->cfg), r.positions, a, r.tm, {}, r.cache);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < H; ++c) y(t, c) = a.h(t, c) + a.ffn_out(t, c);
    round_activation(*ctx_, y);
    return {T};
  }

  template <fm::executor Exec>
  void backward(Exec const&, state const& st, matrix_view<float const> dy, matrix_view<float> dx,
                std::span<std::byte>) {
    constexpr char const* where = "dsv3::decoder_block::backward";
    auto& r = *rt_;
    fm::require(g_ != nullptr, where, "this block", "gradients to write into (constructed with g)", "none");
    fm::require(ctx_->attention == mla_form::naive && !r.cache, where, "this block",
                "the naive MLA form without a cache (what block_backward differentiates)");
    fm::require(r.last && st.tokens == r.last->tokens, where, "state", "the last forward's");
    fm::require(dy.rows == st.tokens && dy.cols == hidden() && dx.rows == dy.rows && dx.cols == dy.cols,
                where, "dy, dx", "(T, hidden) each");
    auto const mark = ctx_->temps.mark();
    auto const dres = ctx_->temps.matrix(dy.rows, dy.cols);
    for (std::int64_t t = 0; t < dy.rows; ++t)
      for (std::int64_t c = 0; c < dy.cols; ++c) dres(t, c) = dy(t, c);
    block_backward(*ctx_, *w_, *rope_, router_of(p_->cfg), r.positions, r.last->layers[0], dres, *g_);
    for (std::int64_t t = 0; t < dy.rows; ++t)
      for (std::int64_t c = 0; c < dy.cols; ++c) dx(t, c) = dres(t, c);
    ctx_->temps.release(mark);
  }

 private:
  struct runtime {
    fm::io::deepseek_v3_config cfg;
    detail::activations_by_count acts;
    activations* last = nullptr;  // the last forward's
    std::vector<std::int64_t> positions;
    layer_timings tm;
    fm::attention::mla_cache* cache = nullptr;
  };
  context* ctx_;
  params const* p_;
  layer_params const* w_;
  layer_params const* g_;
  rope_state const* rope_;
  std::shared_ptr<runtime> rt_;
};
static_assert(fm::mtp::transformer_block<decoder_block>);

/// The MTP layer `i` of p (p.mtp[i]) as an mtp_module over `block`: its own embedding copy, enorm,
/// hnorm, eh_proj, shared_head.{norm, head}; depth 1 reads the main model's output after its final
/// norm (vLLM's convention, reference §3.2), eps = rms_norm_eps. Float views into p; no gradients.
inline fm::mtp::mtp_module<decoder_block> mtp_module_of(params const& p, decoder_block& block,
                                                        std::size_t i = 0) {
  fm::require(i < p.mtp.size(), "dsv3::mtp_module_of", "i",
              "an MTP layer index below num_nextn_predict_layers = " + std::to_string(p.mtp.size()),
              std::to_string(i));
  auto const& m = p.mtp[i];
  auto const fv = [](vector_param v) { return std::span<float const>(v); };
  fm::mtp::mtp_module<decoder_block> mod;
  mod.weights = {.embed = m.embed,
                 .final_norm = fv(p.norm),
                 .enorm = fv(m.enorm),
                 .hnorm = fv(m.hnorm),
                 .eh_proj = m.eh_proj.f32,
                 .head_norm = fv(m.head_norm),
                 .head = m.head.f32};
  mod.block = &block;
  mod.options.depth1 = fm::mtp::depth1_input::after_final_norm;
  mod.options.eps = static_cast<float>(p.cfg.rms_norm_eps);
  return mod;
}

/// The MTP loss term of one training step (depth 1, the first MTP layer), with its buffers and
/// workspace kept between steps (the block's activations are carved once per step).
class mtp_training {
 public:
  /// Forward and backward of lambda * mean cross-entropy of the MTP logits (row i from the main
  /// model's state at i and the embedding of token i+1 predicts targets[i+1], the token at i+2;
  /// mtp::shift_for_depth): returns the term (lambda included); dh (T,H) = its gradient with respect
  /// to acts.x_final (WRITTEN); p.mtp[0]'s gradients in g and the shared final norm's ACCUMULATE.
  double run(context& ctx, params const& p, rope_state const& rope, activations const& acts,
             std::span<std::int32_t const> targets, params const& g, float lambda, std::int32_t ignore_index,
             matrix_view<float> dh) {
    std::int64_t const T = acts.tokens, H = p.cfg.hidden_size, V = p.cfg.vocab_size;
    auto const& gw = g.mtp.at(0);
    decoder_block block(ctx, p, p.mtp.at(0).block, rope, &gw.block);
    auto mod = mtp_module_of(p, block);
    mod.grads = {.d_embed = gw.embed,
                 .d_final_norm = g.norm,
                 .d_enorm = gw.enorm,
                 .d_hnorm = gw.hnorm,
                 .d_eh_proj = gw.eh_proj.f32,
                 .d_head_norm = gw.head_norm,
                 .d_head = gw.head.f32};
    mod.options.loss_weight = lambda;
    mod.options.depths = 1;
    mod.options.ignore_index = ignore_index;
    auto const n = static_cast<std::size_t>(T);
    emb_.resize(n), tgt_.resize(n), pos_.resize(n), losses_.resize(n);
    fm::mtp::shift_for_depth(std::span<std::int32_t const>(acts.ids), targets, 1, emb_, tgt_, ignore_index);
    for (std::size_t i = 0; i < n; ++i) pos_[i] = static_cast<std::int32_t>(acts.positions[i]);
    logits_.resize(n * static_cast<std::size_t>(V));
    ws_.resize(fm::mtp::workspace_bytes(ctx.exec, mod, T));
    auto const logits = fm::make_matrix(logits_.data(), T, V);
    auto const st = fm::mtp::mtp_forward(
        ctx.exec, mod, fm::mtp::source::main_model, std::span<std::int32_t const>(emb_),
        matrix_view<float const>(acts.x_final), std::span<std::int32_t const>(pos_), logits, ws_);
    double const loss = fm::mtp::mtp_loss(ctx.exec, mod, matrix_view<float const>(logits),
                                          std::span<std::int32_t const>(tgt_), losses_);
    fm::mtp::mtp_loss_backward(ctx.exec, mod, matrix_view<float const>(logits),
                               std::span<std::int32_t const>(tgt_),
                               logits);  // dlogits in place
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < H; ++c) dh(t, c) = 0.0f;
    fm::mtp::mtp_backward(ctx.exec, mod, st, matrix_view<float const>(logits), matrix_view<float const>{}, dh,
                          ws_);
    return loss;
  }

 private:
  std::vector<std::int32_t> emb_, tgt_, pos_;
  std::vector<float> losses_, logits_;
  std::vector<std::byte> ws_;
};

}  // namespace dsv3
