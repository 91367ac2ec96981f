// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The checkpoint's MTP layer (layer num_hidden_layers; reference §3.2) in generation, as the
// fp8moe::mtp::mtp_module that mtp_module_of binds over dsv3::decoder_block (both in backward.hpp, which
// the training's MTP term shares): mtp_drafter runs it over its own compressed cache (speculative
// decoding), and mtp_logits gives the depth-1 logits of a whole sequence (`deepseek_v3 logits --mtp-out`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "backward.hpp"
#include "forward.hpp"
#include "fp8moe/mtp/mtp.hpp"
#include "layers.hpp"
#include "model.hpp"
#include "params.hpp"

namespace dsv3 {

namespace detail {

/// The context of the MTP layer's own runs in generation: o's executor and FP8 recipe, p's
/// precision, MLA form `form`.
inline context mtp_context(params const& p, model_options const& o, mla_form form) {
  context ctx;
  ctx.exec = o.exec;
  ctx.prec = p.prec;
  ctx.recipe = o.fp8_recipe;
  ctx.attention = form;
  return ctx;
}

}  // namespace detail

/// The MTP layer over its own compressed cache (speculative decoding). Row i of a forward combines
/// h_prev row i (the main model's last-block output at position i, or, chained, the previous call's
/// hidden row) with the embedding of tokens[i] (the token at position i+1) and predicts the token at
/// position i+2; rows sit at positions length()...
class mtp_drafter {
 public:
  mtp_drafter(params const& p, std::int64_t capacity, model_options const& o = {})
      : ctx_(detail::mtp_context(p, o, mla_form::absorbed)),
        rope_(make_rope(p.cfg)),
        block_(ctx_, p, mtp_layer(p).block, rope_),
        cache_(rope_.dims, capacity),
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
  context ctx_;
  rope_state rope_;
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
  auto ctx = detail::mtp_context(p, o, o.attention);
  auto const rope = make_rope(p.cfg);
  decoder_block block(ctx, p, p.mtp.front().block, rope);
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
