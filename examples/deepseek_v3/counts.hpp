// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Parameter counts and FLOPs per token of a DeepSeek-V3 config, computed from the config alone
// (no allocation, constant time in the number of experts and layers). Conventions follow the
// published numbers (reference/deepseek_v3_model.md §2.3): `total` is the main model with its
// head (671,026,419,200 for the 671B config); the MTP layers are counted apart.
#pragma once

#include <cstdint>
#include <string>

#include "config.hpp"
#include "fp8moe/core/error.hpp"

namespace dsv3 {

/// Parameter counts (elements). Every member is a sum of weight shapes of the HF checkpoint.
struct param_counts {
  std::int64_t embedding = 0;            // vocab x H
  std::int64_t head = 0;                 // vocab x H (0 when tie_word_embeddings)
  std::int64_t attention = 0;            // one MLA block: projections + q_a/kv_a norms
  std::int64_t dense_layer = 0;          // MLA + dense SwiGLU + the two layer norms
  std::int64_t moe_layer = 0;            // MLA + every routed and shared expert + router + bias + norms
  std::int64_t moe_layer_activated = 0;  // MLA + k routed + shared experts + router + norms (no bias)
  std::int64_t dense_layers = 0;         // how many main layers are dense
  std::int64_t moe_layers = 0;           // how many main layers are MoE
  std::int64_t total = 0;                // main model: embedding + layers + final norm + head
  std::int64_t activated_per_token = 0;  // what one token of the main model reads (as §2.3 counts)
  std::int64_t activated_matmul = 0;     // of those, the weights of matrix products (FLOPs)
  std::int64_t mtp = 0;                  // MTP layers without their copies of embedding and head
  std::int64_t mtp_duplicates = 0;       // the embed_tokens + shared_head.head copies MTP layers store
  std::int64_t stored = 0;               // total + mtp + mtp_duplicates: elements in the HF checkpoint
};

namespace detail {

/// The per-layer pieces, as counted once (shared by counts() and flops_per_token()).
struct layer_sizes {
  std::int64_t attention, attention_matmul, norms, dense_ffn, expert, shared, router, bias;
};

inline layer_sizes layer_sizes_of(config const& c) {
  std::int64_t const H = c.hidden_size, nh = c.num_attention_heads;
  std::int64_t const q_proj =
      c.q_lora_rank ? *c.q_lora_rank * H + nh * c.qk_head_dim() * *c.q_lora_rank : nh * c.qk_head_dim() * H;
  std::int64_t const q_norm = c.q_lora_rank ? *c.q_lora_rank : 0;
  std::int64_t const kv_a = (c.kv_lora_rank + c.qk_rope_head_dim) * H;
  std::int64_t const kv_b = nh * (c.qk_nope_head_dim + c.v_head_dim) * c.kv_lora_rank;
  std::int64_t const o = H * nh * c.v_head_dim;
  std::int64_t const attention_matmul = q_proj + kv_a + kv_b + o;
  return {.attention = attention_matmul + q_norm + c.kv_lora_rank,
          .attention_matmul = attention_matmul,
          .norms = 2 * H,  // input_layernorm + post_attention_layernorm
          .dense_ffn = 3 * c.intermediate_size * H,
          .expert = 3 * c.moe_intermediate_size * H,
          .shared = 3 * c.n_shared_experts * c.moe_intermediate_size * H,
          .router = c.n_routed_experts * H,
          .bias = c.topk_method == "noaux_tc" ? c.n_routed_experts : 0};
}

}  // namespace detail

/// The parameter counts of `c` (validated first: throws fp8moe::error naming the field).
inline param_counts counts(config const& c) {
  fp8moe::io::validate(c, "dsv3::counts config");
  auto const s = detail::layer_sizes_of(c);
  std::int64_t const H = c.hidden_size;
  param_counts p;
  p.embedding = c.vocab_size * H;
  p.head = c.tie_word_embeddings ? 0 : c.vocab_size * H;
  p.attention = s.attention;
  p.dense_layer = s.attention + s.norms + s.dense_ffn;
  p.moe_layer = s.attention + s.norms + s.router + s.bias + c.n_routed_experts * s.expert + s.shared;
  p.moe_layer_activated = s.attention + s.norms + s.router + c.num_experts_per_tok * s.expert + s.shared;
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
    (c.is_moe_layer(l) ? p.moe_layers : p.dense_layers)++;
  p.total = p.embedding + p.head + H + p.dense_layers * p.dense_layer + p.moe_layers * p.moe_layer;
  p.activated_per_token =
      p.embedding + p.head + H + p.dense_layers * p.dense_layer + p.moe_layers * p.moe_layer_activated;
  p.activated_matmul =
      c.vocab_size * H + p.dense_layers * (s.attention_matmul + s.dense_ffn) +
      p.moe_layers * (s.attention_matmul + s.router + c.num_experts_per_tok * s.expert + s.shared);
  // each MTP layer: enorm, hnorm, eh_proj (H x 2H), a decoder layer, shared_head.norm; and copies of
  // embed_tokens and shared_head.head (= lm_head)
  for (std::int64_t i = 0; i < c.num_nextn_predict_layers; ++i) {
    p.mtp += 3 * H + 2 * H * H + (c.is_moe_layer(c.num_hidden_layers + i) ? p.moe_layer : p.dense_layer);
    p.mtp_duplicates += 2 * c.vocab_size * H;
  }
  p.stored = p.total + p.mtp + p.mtp_duplicates;
  return p;
}

/// FLOPs for one token (a multiply-add = 2 FLOPs).
struct token_flops {
  std::int64_t forward = 0;
  std::int64_t backward = 0;  // 2 x forward: the gradients of the input and of the weights
  std::int64_t total() const { return forward + backward; }
};

/// FLOPs of one token of the main model that attends `context` keys (itself included; a causal
/// sequence of T tokens averages (T + 1) / 2):
///   forward = 2 x activated_matmul + 2 x layers x heads x (qk_head_dim + v_head_dim) x context
/// (the matrix products of the projections, experts, router and head, plus the scores q.k and the
/// weighted sum of values in MLA's naive form; norms, softmax, RoPE and routing are left out).
/// With `mtp`, each MTP layer's eh_proj, decoder layer and shared head are added.
inline token_flops flops_per_token(config const& c, std::int64_t context, bool mtp = false) {
  fp8moe::require(context >= 1, "dsv3::flops_per_token", "context", "an integer >= 1",
                  std::to_string(context));
  param_counts const p = counts(c);
  auto const s = detail::layer_sizes_of(c);
  std::int64_t const H = c.hidden_size;
  std::int64_t const attention_core = 2 * c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim) * context;
  token_flops f;
  f.forward = 2 * p.activated_matmul + c.num_hidden_layers * attention_core;
  if (mtp)
    for (std::int64_t i = 0; i < c.num_nextn_predict_layers; ++i) {
      bool const moe = c.is_moe_layer(c.num_hidden_layers + i);
      std::int64_t const ffn = moe ? s.router + c.num_experts_per_tok * s.expert + s.shared : s.dense_ffn;
      f.forward += 2 * (2 * H * H + s.attention_matmul + ffn + c.vocab_size * H) + attention_core;
    }
  f.backward = 2 * f.forward;
  return f;
}

}  // namespace dsv3
