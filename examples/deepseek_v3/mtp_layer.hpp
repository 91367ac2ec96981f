// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The checkpoint's MTP layer (layer num_hidden_layers; reference §3.2) as fp8moe::mtp::mtp_module over
// the example's decoder block: dsv3::decoder_block adapts block_forward to mtp::transformer_block
// (forward only: the block's backward comes with the example's backward), mtp_module_of binds the
// layer's parameters, mtp_drafter runs it over its own compressed cache (speculative decoding), and
// mtp_logits gives the depth-1 logits of a whole sequence (`deepseek_v3 logits --mtp-out`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "decode.hpp"
#include "forward.hpp"
#include "fp8moe/mtp/mtp.hpp"
#include "layers.hpp"
#include "model.hpp"
#include "params.hpp"

namespace dsv3 {

/// One decoder block of `p` (layer_params w, which may be the MTP layer's block) as an
/// mtp::transformer_block: forward(x (T,H), positions (T), y (T,H)) = x + attention + FFN, exactly
/// block_forward plus the residual, in the model's precision; with a cache attached (absorbed form),
/// the rows are appended to it and attend it (positions must then continue the cache). The
/// activations are the block's own (kept per token count), so workspace_bytes is 0. Copies share
/// the activations and the cache. Host only.
class decoder_block {
 public:
  struct state {
    std::int64_t tokens = 0;
  };

  decoder_block(params const& p, layer_params const& w, model_options const& o = {})
      : p_(&p), w_(&w), rt_(std::make_shared<runtime>()) {
    rt_->cfg = p.cfg;  // a one-layer config whose layer 0 has w's kind (dense or MoE)
    rt_->cfg.num_hidden_layers = 1;
    rt_->cfg.first_k_dense_replace = w.is_moe ? 0 : 1;
    rt_->cfg.moe_layer_freq = 1;
    rt_->rope = make_rope(p.cfg);
    rt_->ctx.exec = o.exec;
    rt_->ctx.prec = p.prec;
    rt_->ctx.recipe = o.fp8_recipe;
    rt_->ctx.attention = o.attention;
  }

  /// Routes the attention through `cache` (absorbed form) from now on; nullptr: none (o.attention).
  void attach(fm::attention::mla_cache* cache) {
    rt_->cache = cache;
    if (cache) rt_->ctx.attention = mla_form::absorbed;
  }

  std::int64_t hidden() const { return p_->cfg.hidden_size; }
  template <fm::executor Exec>
  std::size_t workspace_bytes(Exec const&, std::int64_t) const {
    return 0;
  }

  template <fm::executor Exec>
  state forward(Exec const&, matrix_view<float const> x, std::span<std::int32_t const> positions,
                matrix_view<float> y, std::span<std::byte>) const {
    constexpr char const* where = "dsv3::decoder_block::forward";
    std::int64_t const T = x.rows, H = hidden();
    fm::require(x.cols == H && y.rows == T && y.cols == H, where, "x, y", "(T, hidden) each");
    fm::require(static_cast<std::int64_t>(positions.size()) == T, where, "positions", "size T");
    auto& r = *rt_;
    layer_acts& a = r.acts.get(r.cfg, r.ctx.attention, T).layers[0];
    r.positions.assign(positions.begin(), positions.end());
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < H; ++c) a.x(t, c) = x(t, c);
    block_forward(r.ctx, *p_, *w_, r.rope, router_of(p_->cfg), r.positions, a, r.tm, {}, r.cache);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < H; ++c) y(t, c) = a.h(t, c) + a.ffn_out(t, c);
    round_activation(r.ctx, y);
    return {T};
  }

  template <fm::executor Exec>
  void backward(Exec const&, state const&, matrix_view<float const>, matrix_view<float>,
                std::span<std::byte>) {
    fm::require(false, "dsv3::decoder_block::backward", "this call",
                "the example's block backward (not written yet: this block serves inference)");
  }

 private:
  struct runtime {
    fm::io::deepseek_v3_config cfg;
    rope_state rope;
    context ctx;
    detail::activations_by_count acts;
    std::vector<std::int64_t> positions;
    layer_timings tm;
    fm::attention::mla_cache* cache = nullptr;
  };
  params const* p_;
  layer_params const* w_;
  std::shared_ptr<runtime> rt_;
};
static_assert(fm::mtp::transformer_block<decoder_block>);

/// The MTP layer `i` of p (p.mtp[i]) as an mtp_module over `block`: its own embedding copy, enorm,
/// hnorm, eh_proj, shared_head.{norm, head}; depth 1 reads the main model's output after its final
/// norm (vLLM's convention, reference §3.2), eps = rms_norm_eps. Float views into p.
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

/// The MTP layer over its own compressed cache (speculative decoding). Row i of a forward combines
/// h_prev row i (the main model's last-block output at position i, or, chained, the previous call's
/// hidden row) with the embedding of tokens[i] (the token at position i+1) and predicts the token at
/// position i+2; rows sit at positions length()...
class mtp_drafter {
 public:
  mtp_drafter(params const& p, std::int64_t capacity, model_options const& o = {})
      : block_(p, mtp_layer(p).block, o),
        cache_(make_rope(p.cfg).dims, capacity),
        module_(mtp_module_of(p, block_)),
        V_(p.cfg.vocab_size) {
    block_.attach(&cache_);
  }
  mtp_drafter(mtp_drafter const&) = delete;  // the module and the block point into this object
  mtp_drafter& operator=(mtp_drafter const&) = delete;

  std::int64_t length() const { return cache_.length(); }
  fm::attention::mla_cache const& cache() const { return cache_; }
  void truncate(std::int64_t n) { cache_.truncate(n); }

  /// Logits (n, V) of n rows (tokens (n), h_prev (n, H)) at positions length().., appended to the
  /// cache; `src`: main_model (h_prev = the main model's x_final rows) or previous_depth (chained
  /// drafts: h_prev = hidden() rows of the last call). Valid until the next call.
  matrix_view<float const> forward(fm::mtp::source src, std::span<std::int32_t const> tokens,
                                   matrix_view<float const> h_prev) {
    auto const n = static_cast<std::int64_t>(tokens.size());
    fm::require(length() + n <= cache_.capacity(), "dsv3::mtp_drafter::forward", "tokens",
                "at most capacity - length = " + std::to_string(cache_.capacity() - length()) + " rows",
                std::to_string(n));
    positions_.resize(tokens.size());
    for (std::int64_t i = 0; i < n; ++i)
      positions_[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(length() + i);
    logits_.resize(static_cast<std::size_t>(n * V_));
    // h_prev may be hidden() of the last call (in the workspace): copied first
    h_copy_.assign(static_cast<std::size_t>(h_prev.rows * h_prev.cols), 0.0f);
    for (std::int64_t r = 0; r < h_prev.rows; ++r)
      for (std::int64_t c = 0; c < h_prev.cols; ++c)
        h_copy_[static_cast<std::size_t>(r * h_prev.cols + c)] = h_prev(r, c);
    auto const bytes = fm::mtp::workspace_bytes(fm::host_executor{}, module_, n);
    if (ws_.size() < bytes) ws_.resize(bytes);
    auto const logits = fm::make_matrix(logits_.data(), n, V_);
    state_ = fm::mtp::mtp_forward(fm::host_executor{}, module_, src, tokens,
                                  fm::make_matrix<float const>(h_copy_.data(), h_prev.rows, h_prev.cols),
                                  positions_, logits, ws_);
    return logits;
  }
  /// The hidden state (n, H) of the last forward (the next chained draft's h_prev).
  matrix_view<float const> hidden() const { return state_.hidden; }

 private:
  static mtp_params const& mtp_layer(params const& p) {
    fm::require(!p.mtp.empty(), "dsv3::mtp_drafter", "params",
                "a model with an MTP layer (num_nextn_predict_layers >= 1)", "none");
    return p.mtp.front();
  }
  decoder_block block_;
  fm::attention::mla_cache cache_;
  fm::mtp::mtp_module<decoder_block> module_;
  std::int64_t V_;
  std::vector<std::int32_t> positions_;
  std::vector<float> logits_, h_copy_;
  std::vector<std::byte> ws_;
  fm::mtp::mtp_state<decoder_block> state_{};
};

/// The MTP (depth-1) logits (T-1, V) of `tokens` (T >= 2), row i predicting token i+2 from the main
/// model's state at position i and token i+1, as the model's `logits` but for the MTP layer; the
/// main model in `m`'s precision and attention form.
inline std::vector<float> mtp_logits(model& m, std::span<std::int32_t const> tokens,
                                     model_options const& o = {}) {
  fm::require(tokens.size() >= 2, "dsv3::mtp_logits", "tokens", "at least 2 tokens",
              std::to_string(tokens.size()));
  auto const& p = m.parameters();
  fm::require(!p.mtp.empty(), "dsv3::mtp_logits", "model",
              "a model with an MTP layer (num_nextn_predict_layers >= 1)", "none");
  m.forward(tokens);
  auto const T = static_cast<std::int64_t>(tokens.size()), n = T - 1;
  auto const& x = m.acts().x_final;
  decoder_block block(p, p.mtp.front().block, o);
  auto const mod = mtp_module_of(p, block);
  std::vector<std::int32_t> positions(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) positions[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  std::vector<float> out(static_cast<std::size_t>(n * p.cfg.vocab_size));
  std::vector<std::byte> ws(fm::mtp::workspace_bytes(fm::host_executor{}, mod, n));
  fm::mtp::mtp_forward(fm::host_executor{}, mod, fm::mtp::source::main_model, tokens.subspan(1),
                       fm::make_matrix<float const>(x.data, n, x.cols, x.row_stride), positions,
                       fm::make_matrix(out.data(), n, p.cfg.vocab_size), ws);
  return out;
}

}  // namespace dsv3
