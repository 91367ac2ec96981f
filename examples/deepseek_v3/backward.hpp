// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The MTP loss term of the training backward (issue 16; reference §3.2): the checkpoint's MTP layer
// as an fp8moe::mtp::mtp_module over a decoder block that trains (forward = block_forward, backward =
// block_backward into the gradients), so the library's mtp_forward / mtp_loss / mtp_backward do the
// rest. Depth 1 reads the main model's last-block output after the final norm (the checkpoint's and
// vLLM's convention, mtp::depth1_input::after_final_norm); the final norm's gradient is shared.
// Host only; allocates its activations and workspace once per token count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "forward.hpp"
#include "fp8moe/mtp/mtp.hpp"
#include "layers.hpp"
#include "params.hpp"

namespace dsv3 {

/// One decoder block (w of p, e.g. the MTP layer's) as an mtp::transformer_block that trains:
/// forward(x (T,H), positions (T), y (T,H)) = x + attention + FFN (block_forward, routing as the
/// block chooses); backward(dy, dx) = block_backward: dx OVERWRITTEN, the gradients of g ACCUMULATE.
/// Its activations are its own (one layer, naive MLA); workspace_bytes is 0. The context is the
/// caller's (held by pointer, with p, w, g and rope; keep them alive).
class training_block {
 public:
  struct state {
    std::int64_t tokens = 0;
  };

  training_block(context& ctx, params const& p, layer_params const& w, layer_params const& g,
                 rope_state const& rope)
      : ctx_(&ctx), p_(&p), w_(&w), g_(&g), rope_(&rope) {
    cfg_ = p.cfg;  // a one-layer config whose layer 0 has w's kind (dense or MoE)
    cfg_.num_hidden_layers = 1;
    cfg_.first_k_dense_replace = w.is_moe ? 0 : 1;
    cfg_.moe_layer_freq = 1;
    cfg_.num_nextn_predict_layers = 0;
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
                "dsv3::training_block::forward", "x, y, positions", "(T, hidden), (T, hidden) and (T)");
    if (acts_->tokens != T) *acts_ = make_activations(cfg_, mla_form::naive, T);
    auto& a = acts_->layers[0];
    pos_->assign(positions.begin(), positions.end());
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < H; ++c) a.x(t, c) = x(t, c);
    layer_timings tm;
    block_forward(*ctx_, *p_, *w_, *rope_, router_of(p_->cfg), *pos_, a, tm);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < H; ++c) y(t, c) = a.h(t, c) + a.ffn_out(t, c);
    round_activation(*ctx_, y);
    return {T};
  }

  template <fm::executor Exec>
  void backward(Exec const&, state const& st, matrix_view<float const> dy, matrix_view<float> dx,
                std::span<std::byte>) {
    fm::require(st.tokens == acts_->tokens, "dsv3::training_block::backward", "state", "the last forward's");
    auto const mark = ctx_->temps.mark();
    auto const dres = ctx_->temps.matrix(dy.rows, dy.cols);
    for (std::int64_t t = 0; t < dy.rows; ++t)
      for (std::int64_t c = 0; c < dy.cols; ++c) dres(t, c) = dy(t, c);
    block_backward(*ctx_, *w_, *rope_, router_of(p_->cfg), *pos_, acts_->layers[0], dres, *g_);
    for (std::int64_t t = 0; t < dy.rows; ++t)
      for (std::int64_t c = 0; c < dy.cols; ++c) dx(t, c) = dres(t, c);
    ctx_->temps.release(mark);
  }

 private:
  context* ctx_;
  params const* p_;
  layer_params const* w_;
  layer_params const* g_;
  rope_state const* rope_;
  fm::io::deepseek_v3_config cfg_;
  std::shared_ptr<activations> acts_ = std::make_shared<activations>();
  std::shared_ptr<std::vector<std::int64_t>> pos_ = std::make_shared<std::vector<std::int64_t>>();
};
static_assert(fm::mtp::transformer_block<training_block>);

/// The MTP loss term of one training step (depth 1, the first MTP layer), with its state kept
/// between steps (activations and workspace per token count).
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
    auto const& w = p.mtp.at(0);
    auto const& gw = g.mtp.at(0);
    training_block block(ctx, p, w.block, gw.block, rope);
    auto const fv = [](vector_param v) { return std::span<float const>(v); };
    fm::mtp::mtp_module<training_block> mod;
    mod.weights = {.embed = w.embed,
                   .final_norm = fv(p.norm),
                   .enorm = fv(w.enorm),
                   .hnorm = fv(w.hnorm),
                   .eh_proj = w.eh_proj.f32,
                   .head_norm = fv(w.head_norm),
                   .head = w.head.f32};
    mod.grads = {.d_embed = gw.embed,
                 .d_final_norm = g.norm,
                 .d_enorm = gw.enorm,
                 .d_hnorm = gw.hnorm,
                 .d_eh_proj = gw.eh_proj.f32,
                 .d_head_norm = gw.head_norm,
                 .d_head = gw.head.f32};
    mod.block = &block;
    mod.options = {.depth1 = fm::mtp::depth1_input::after_final_norm,
                   .eps = static_cast<float>(p.cfg.rms_norm_eps),
                   .loss_weight = lambda,
                   .depths = 1,
                   .ignore_index = ignore_index};
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
