// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::decoder: incremental decoding over the compressed KV cache (reference §1.3, absorbed form):
// one attention::mla_cache per layer holding per token only the normed latent and the rotated rope key
// (kv_lora_rank + qk_rope_head_dim floats; 576 for V3). step(tokens) runs the model on the new tokens at
// positions length().. (prefill: the whole prompt; decoding: one token; verification: several), appending
// to every cache; truncate(n) rolls every cache back (speculative decoding). Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "forward.hpp"
#include "layers.hpp"
#include "model.hpp"
#include "params.hpp"

namespace dsv3 {

/// What one cached token costs: the latent cache's values per token per layer (kv_lora_rank +
/// qk_rope_head_dim) against a plain multi-head KV cache's H*(dn+dr) + H*dv (reference §1.3: V3 576
/// against 40,960), over the main model's layers.
struct cache_footprint {
  std::int64_t latent_values = 0;  // per token per layer
  std::int64_t mha_values = 0;     // per token per layer
  std::int64_t layers = 0;         // num_hidden_layers (the MTP layer, when drafting, caches one more)

  /// Bytes per token over all layers with `element_bytes` per value (4: this example's float cache).
  std::int64_t latent_bytes(std::int64_t element_bytes = 4) const {
    return latent_values * layers * element_bytes;
  }
  std::int64_t mha_bytes(std::int64_t element_bytes = 4) const { return mha_values * layers * element_bytes; }
};

inline cache_footprint cache_footprint_of(fm::io::deepseek_v3_config const& c) {
  return {c.kv_lora_rank + c.qk_rope_head_dim,
          c.num_attention_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim) +
              c.num_attention_heads * c.v_head_dim,
          c.num_hidden_layers};
}

class decoder {
 public:
  /// A decoder of the parameters `p` (kept by reference: they must outlive it) with caches of
  /// `capacity` tokens per layer. The attention runs the absorbed form whatever o.attention says.
  decoder(params const& p, std::int64_t capacity, model_options const& o = {})
      : p_(&p), rope_(make_rope(p.cfg)) {
    auto const& c = p.cfg;
    fm::require(capacity >= 1, "dsv3::decoder", "capacity", ">= 1 token", std::to_string(capacity));
    ctx_.exec = o.exec;
    ctx_.prec = p.prec;
    ctx_.recipe = o.fp8_recipe;
    ctx_.attention = mla_form::absorbed;
    caches_.reserve(static_cast<std::size_t>(c.num_hidden_layers));
    for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) caches_.emplace_back(rope_.dims, capacity);
  }

  params const& parameters() const { return *p_; }
  std::int64_t capacity() const { return caches_.empty() ? 0 : caches_.front().capacity(); }
  /// Tokens in the caches: the position of the next token step() takes.
  std::int64_t length() const { return length_; }
  std::span<fm::attention::mla_cache const> caches() const { return caches_; }
  /// The activations of the last step (x_final: the last block's output, the MTP layer's input).
  activations const& acts() const { return *last_; }
  layer_timings const& timings() const { return tm_; }

  /// Logits (n, V) of `tokens` (n >= 1 ids in [0, vocab)) at positions length()..length()+n-1, each
  /// attending the cache and the new tokens before it; appends n rows to every cache. Checked (ids,
  /// room in the caches) before anything is written. A view valid until the next step.
  matrix_view<float const> step(std::span<std::int32_t const> tokens) {
    check_tokens(p_->cfg, tokens);
    auto const n = static_cast<std::int64_t>(tokens.size());
    fm::require(length_ + n <= capacity(), "dsv3::decoder::step", "tokens",
                "at most capacity - length = " + std::to_string(capacity() - length_) + " tokens",
                std::to_string(n));
    activations& a = acts_.get(p_->cfg, mla_form::absorbed, n);
    a.ids.assign(tokens.begin(), tokens.end());
    a.positions.resize(tokens.size());
    std::iota(a.positions.begin(), a.positions.end(), length_);
    last_ = &a;
    auto const logits = dsv3::forward(ctx_, *p_, rope_, a, tm_, nullptr, caches_);
    length_ += n;
    return logits;
  }

  /// Keeps the first n tokens of every cache (0 <= n <= length()); what is dropped is zeroed, so
  /// the caches are bit-identical to never having held it.
  void truncate(std::int64_t n) {
    fm::require(n >= 0 && n <= length_, "dsv3::decoder::truncate", "n",
                "0 <= n <= length() = " + std::to_string(length_), std::to_string(n));
    for (auto& c : caches_) c.truncate(n);
    length_ = n;
  }

  /// Frees the activations of more than `keep` tokens (call after a long prefill).
  void release_activations_above(std::int64_t keep) {
    if (last_ && last_->tokens > keep) last_ = nullptr;
    acts_.release_above(keep);
  }

 private:
  params const* p_;
  rope_state rope_;
  context ctx_;
  detail::activations_by_count acts_;
  activations const* last_ = nullptr;
  layer_timings tm_;
  std::vector<fm::attention::mla_cache> caches_;
  std::int64_t length_ = 0;
};

}  // namespace dsv3
