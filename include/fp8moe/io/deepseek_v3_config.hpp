// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The Hugging Face `config.json` of the DeepSeek-V3 family (model_type "deepseek_v3": V3, R1,
// V3.1 ...) as a plain struct: read, validated (each error names the field and the expected value),
// written back (fields the struct does not model are kept verbatim in `extra`). Units and meanings
// follow transformers' DeepseekV3Config; the defaults used for absent optional fields are its own.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fp8moe/core/error.hpp"
#include "fp8moe/io/file.hpp"
#include "fp8moe/io/json.hpp"

namespace fp8moe::io {

/// `rope_scaling` with YaRN (the only scaling DeepSeek-V3 uses). Absent keys take transformers'
/// defaults: beta_fast 32, beta_slow 1, mscale 1, mscale_all_dim 0.
struct rope_scaling_params {
  std::string type = "yarn";  // "type" (or "rope_type") in the file; only "yarn" is accepted
  double factor = 1.0;
  std::int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
  bool operator==(rope_scaling_params const&) const = default;
};

/// `quantization_config` of the FP8 checkpoints: E4M3 weights with 128x128 block scales
/// (`weight_scale_inv`), activations quantized on the fly. Only these values are accepted.
struct quantization_params {
  std::string quant_method = "fp8";
  std::string fmt = "e4m3";
  std::string activation_scheme = "dynamic";
  std::array<std::int64_t, 2> weight_block_size{128, 128};
  std::optional<std::string> scale_fmt;  // V3.1: "ue8m0" (power-of-two activation scales); else absent
  bool operator==(quantization_params const&) const = default;
};

/// Every field of a DeepSeek-V3 config.json that the model reads. Required fields have no default
/// here: a file without one is rejected, naming it.
struct deepseek_v3_config {
  std::string model_type = "deepseek_v3";
  // sizes
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;            // H
  std::int64_t intermediate_size = 0;      // dense SwiGLU width
  std::int64_t moe_intermediate_size = 0;  // each expert's SwiGLU width
  std::int64_t num_hidden_layers = 0;      // main-model layers (MTP layers are extra)
  std::int64_t num_attention_heads = 0;
  std::int64_t num_key_value_heads = 0;  // a formality in MLA; absent: num_attention_heads
  std::int64_t max_position_embeddings = 0;
  // multi-head latent attention
  std::optional<std::int64_t> q_lora_rank;  // null: a plain q_proj (V2-Lite style)
  std::int64_t kv_lora_rank = 0;
  std::int64_t qk_nope_head_dim = 0;
  std::int64_t qk_rope_head_dim = 0;  // even: RoPE rotates interleaved pairs
  std::int64_t v_head_dim = 0;
  // mixture of experts
  std::int64_t n_routed_experts = 0;  // E
  std::int64_t n_shared_experts = 0;
  std::int64_t num_experts_per_tok = 0;    // k
  std::int64_t n_group = 0;                // expert groups (nodes)
  std::int64_t topk_group = 0;             // groups a token may use
  std::int64_t first_k_dense_replace = 0;  // layers [0, this) are dense
  std::int64_t moe_layer_freq = 0;         // layer l >= first_k_dense_replace is MoE iff l % this == 0
  std::string scoring_func;                // "sigmoid" | "softmax"
  std::string topk_method;                 // "noaux_tc" | "greedy" | "group_limited_greedy"
  double routed_scaling_factor = 0.0;
  bool norm_topk_prob = false;
  // norms, positions, head
  double rms_norm_eps = 0.0;
  double rope_theta = 0.0;
  std::optional<rope_scaling_params> rope_scaling;  // null/absent: plain RoPE
  std::int64_t num_nextn_predict_layers = 0;        // MTP layers, stored as layers num_hidden_layers + i
  bool tie_word_embeddings = false;
  std::string hidden_act = "silu";                         // absent: "silu"; only "silu" is accepted
  bool attention_bias = false;                             // absent: false; only false is accepted
  std::optional<quantization_params> quantization_config;  // null/absent: an unquantized checkpoint
  /// Every other top-level field (architectures, torch_dtype, bos_token_id, auto_map, ...) as its
  /// JSON text, written back unchanged.
  std::map<std::string, std::string> extra;

  /// q_nope + q_rope: the per-head query/key width.
  std::int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  /// True when layer l (of the main model) has an MoE feed-forward, as transformers decides it.
  bool is_moe_layer(std::int64_t l) const {
    return n_routed_experts > 0 && l >= first_k_dense_replace && l % moe_layer_freq == 0;
  }
  bool operator==(deepseek_v3_config const&) const = default;
};

namespace detail {

[[noreturn]] inline void throw_field(std::string_view file, std::string_view field, std::string_view expected,
                                     std::string_view got) {
  throw error(errc::io, fp8moe::detail::concat("fp8moe::io: '", file, "': field '", field, "': expected ",
                                               expected, ", got ", got));
}

/// Reads typed fields of one JSON object, naming `prefix + key` in errors.
struct field_reader {
  nlohmann::json const& obj;
  std::string_view file;
  std::string prefix;

  nlohmann::json const* find(std::string_view key) const {
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
  }
  std::string name(std::string_view key) const { return prefix + std::string(key); }
  nlohmann::json const& need(std::string_view key, std::string_view expected) const {
    auto const* v = find(key);
    if (!v) throw_field(file, name(key), expected, "nothing (the field is missing)");
    return *v;
  }
  std::int64_t integer(std::string_view key, std::int64_t min) const {
    std::string const expected = "an integer >= " + std::to_string(min);
    auto const& v = need(key, expected);
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) ||
        v.get<std::int64_t>() < min)
      throw_field(file, name(key), expected, short_json(v));
    return v.get<std::int64_t>();
  }
  std::int64_t integer_or(std::string_view key, std::int64_t min, std::int64_t fallback) const {
    return find(key) ? integer(key, min) : fallback;
  }
  /// A finite number > 0 (or >= 0 when `zero_ok`).
  double number(std::string_view key, bool zero_ok = false) const {
    std::string const expected = zero_ok ? "a finite number >= 0" : "a finite number > 0";
    auto const& v = need(key, expected);
    if (!v.is_number()) throw_field(file, name(key), expected, short_json(v));
    double const d = v.get<double>();
    if (!std::isfinite(d) || d < 0.0 || (!zero_ok && d == 0.0))
      throw_field(file, name(key), expected, short_json(v));
    return d;
  }
  double number_or(std::string_view key, bool zero_ok, double fallback) const {
    return find(key) ? number(key, zero_ok) : fallback;
  }
  bool boolean(std::string_view key) const {
    auto const& v = need(key, "true or false");
    if (!v.is_boolean()) throw_field(file, name(key), "true or false", short_json(v));
    return v.get<bool>();
  }
  bool boolean_or(std::string_view key, bool fallback) const { return find(key) ? boolean(key) : fallback; }
  std::string string(std::string_view key, std::string_view expected) const {
    auto const& v = need(key, expected);
    if (!v.is_string()) throw_field(file, name(key), expected, short_json(v));
    return v.get<std::string>();
  }
  std::string string_or(std::string_view key, std::string_view expected, std::string fallback) const {
    return find(key) ? string(key, expected) : fallback;
  }
};

inline std::string quoted(std::string_view s) {
  return fp8moe::detail::concat('"', s, '"');
}

/// The fields deepseek_v3_config models (everything else goes to `extra`).
inline constexpr std::array<std::string_view, 33> deepseek_v3_fields{"model_type",
                                                                     "vocab_size",
                                                                     "hidden_size",
                                                                     "intermediate_size",
                                                                     "moe_intermediate_size",
                                                                     "num_hidden_layers",
                                                                     "num_attention_heads",
                                                                     "num_key_value_heads",
                                                                     "max_position_embeddings",
                                                                     "q_lora_rank",
                                                                     "kv_lora_rank",
                                                                     "qk_nope_head_dim",
                                                                     "qk_rope_head_dim",
                                                                     "v_head_dim",
                                                                     "n_routed_experts",
                                                                     "n_shared_experts",
                                                                     "num_experts_per_tok",
                                                                     "n_group",
                                                                     "topk_group",
                                                                     "first_k_dense_replace",
                                                                     "moe_layer_freq",
                                                                     "scoring_func",
                                                                     "topk_method",
                                                                     "routed_scaling_factor",
                                                                     "norm_topk_prob",
                                                                     "rms_norm_eps",
                                                                     "rope_theta",
                                                                     "rope_scaling",
                                                                     "num_nextn_predict_layers",
                                                                     "tie_word_embeddings",
                                                                     "hidden_act",
                                                                     "attention_bias",
                                                                     "quantization_config"};

}  // namespace detail

/// Checks the relations between fields (the per-field ranges are checked while parsing; this
/// re-checks them too, for configs built in code). Throws errc::io naming `file`, the field and
/// the expected value.
inline void validate(deepseek_v3_config const& c, std::string_view file = "config") {
  using detail::throw_field;
  using fp8moe::detail::concat;
  auto const positive = [&](std::string_view f, std::int64_t v) {
    if (v < 1) throw_field(file, f, "an integer >= 1", std::to_string(v));
  };
  if (c.model_type != "deepseek_v3")
    throw_field(file, "model_type", "\"deepseek_v3\"", detail::quoted(c.model_type));
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("intermediate_size", c.intermediate_size);
  positive("moe_intermediate_size", c.moe_intermediate_size);
  positive("num_hidden_layers", c.num_hidden_layers);
  positive("num_attention_heads", c.num_attention_heads);
  positive("num_key_value_heads", c.num_key_value_heads);
  positive("max_position_embeddings", c.max_position_embeddings);
  if (c.q_lora_rank && *c.q_lora_rank < 1)
    throw_field(file, "q_lora_rank", "null or an integer >= 1", std::to_string(*c.q_lora_rank));
  positive("kv_lora_rank", c.kv_lora_rank);
  positive("qk_nope_head_dim", c.qk_nope_head_dim);
  positive("v_head_dim", c.v_head_dim);
  if (c.qk_rope_head_dim < 2 || c.qk_rope_head_dim % 2 != 0)
    throw_field(file, "qk_rope_head_dim", "an even integer >= 2 (RoPE rotates pairs)",
                std::to_string(c.qk_rope_head_dim));
  positive("n_routed_experts", c.n_routed_experts);
  if (c.n_shared_experts < 0)
    throw_field(file, "n_shared_experts", "an integer >= 0", std::to_string(c.n_shared_experts));
  positive("n_group", c.n_group);
  if (c.n_routed_experts % c.n_group != 0)
    throw_field(file, "n_group", concat("a divisor of n_routed_experts (", c.n_routed_experts, ")"),
                std::to_string(c.n_group));
  if (c.topk_group < 1 || c.topk_group > c.n_group)
    throw_field(file, "topk_group", concat("an integer in [1, n_group = ", c.n_group, "]"),
                std::to_string(c.topk_group));
  std::int64_t const per_group = c.n_routed_experts / c.n_group;
  if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.topk_group * per_group)
    throw_field(file, "num_experts_per_tok",
                concat("an integer in [1, topk_group x experts per group = ", c.topk_group * per_group, "]"),
                std::to_string(c.num_experts_per_tok));
  if (c.first_k_dense_replace < 0 || c.first_k_dense_replace > c.num_hidden_layers)
    throw_field(file, "first_k_dense_replace",
                concat("an integer in [0, num_hidden_layers = ", c.num_hidden_layers, "]"),
                std::to_string(c.first_k_dense_replace));
  positive("moe_layer_freq", c.moe_layer_freq);
  if (c.scoring_func != "sigmoid" && c.scoring_func != "softmax")
    throw_field(file, "scoring_func", "\"sigmoid\" or \"softmax\"", detail::quoted(c.scoring_func));
  if (c.topk_method != "noaux_tc" && c.topk_method != "greedy" && c.topk_method != "group_limited_greedy")
    throw_field(file, "topk_method", "\"noaux_tc\", \"greedy\" or \"group_limited_greedy\"",
                detail::quoted(c.topk_method));
  if (c.topk_method == "noaux_tc" && c.n_group > 1 && per_group < 2)
    throw_field(file, "n_group",
                concat("at most n_routed_experts / 2 = ", c.n_routed_experts / 2,
                       " groups (noaux_tc scores a group by its top-2 experts)"),
                std::to_string(c.n_group));
  if (!std::isfinite(c.routed_scaling_factor) || c.routed_scaling_factor <= 0)
    throw_field(file, "routed_scaling_factor", "a finite number > 0",
                std::to_string(c.routed_scaling_factor));
  if (!std::isfinite(c.rms_norm_eps) || c.rms_norm_eps <= 0)
    throw_field(file, "rms_norm_eps", "a finite number > 0", std::to_string(c.rms_norm_eps));
  if (!std::isfinite(c.rope_theta) || c.rope_theta <= 0)
    throw_field(file, "rope_theta", "a finite number > 0", std::to_string(c.rope_theta));
  if (c.num_nextn_predict_layers < 0)
    throw_field(file, "num_nextn_predict_layers", "an integer >= 0",
                std::to_string(c.num_nextn_predict_layers));
  if (c.hidden_act != "silu") throw_field(file, "hidden_act", "\"silu\"", detail::quoted(c.hidden_act));
  if (c.attention_bias) throw_field(file, "attention_bias", "false (MLA has no biases)", "true");
  if (auto const& r = c.rope_scaling) {
    if (r->type != "yarn") throw_field(file, "rope_scaling.type", "\"yarn\"", detail::quoted(r->type));
    if (!std::isfinite(r->factor) || r->factor < 1.0)
      throw_field(file, "rope_scaling.factor", "a finite number >= 1", std::to_string(r->factor));
    if (r->original_max_position_embeddings < 1)
      throw_field(file, "rope_scaling.original_max_position_embeddings", "an integer >= 1",
                  std::to_string(r->original_max_position_embeddings));
    if (!std::isfinite(r->beta_slow) || r->beta_slow <= 0)
      throw_field(file, "rope_scaling.beta_slow", "a finite number > 0", std::to_string(r->beta_slow));
    if (!std::isfinite(r->beta_fast) || r->beta_fast <= r->beta_slow)
      throw_field(file, "rope_scaling.beta_fast", concat("a finite number > beta_slow (", r->beta_slow, ")"),
                  std::to_string(r->beta_fast));
    if (!std::isfinite(r->mscale) || r->mscale < 0)
      throw_field(file, "rope_scaling.mscale", "a finite number >= 0", std::to_string(r->mscale));
    if (!std::isfinite(r->mscale_all_dim) || r->mscale_all_dim < 0)
      throw_field(file, "rope_scaling.mscale_all_dim", "a finite number >= 0",
                  std::to_string(r->mscale_all_dim));
  }
  if (auto const& q = c.quantization_config) {
    if (q->quant_method != "fp8")
      throw_field(file, "quantization_config.quant_method", "\"fp8\"", detail::quoted(q->quant_method));
    if (q->fmt != "e4m3") throw_field(file, "quantization_config.fmt", "\"e4m3\"", detail::quoted(q->fmt));
    if (q->activation_scheme != "dynamic")
      throw_field(file, "quantization_config.activation_scheme", "\"dynamic\"",
                  detail::quoted(q->activation_scheme));
    if (q->weight_block_size != std::array<std::int64_t, 2>{128, 128})
      throw_field(file, "quantization_config.weight_block_size", "[128, 128]",
                  concat("[", q->weight_block_size[0], ", ", q->weight_block_size[1], "]"));
    if (q->scale_fmt && *q->scale_fmt != "ue8m0")
      throw_field(file, "quantization_config.scale_fmt", "absent, null or \"ue8m0\"",
                  detail::quoted(*q->scale_fmt));
  }
}

/// Parses config.json text into a validated config. `file` names the source in messages.
inline deepseek_v3_config parse_deepseek_v3_config(std::string_view text,
                                                   std::string_view file = "config.json") {
  using detail::throw_field;
  nlohmann::json const j = detail::parse_json(text, file, "config");
  if (!j.is_object())
    throw error(errc::io, fp8moe::detail::concat("fp8moe::io: '", file, "': expected a JSON object"));
  detail::field_reader const r{j, file, ""};
  deepseek_v3_config c;
  c.model_type = r.string_or("model_type", "\"deepseek_v3\"", "deepseek_v3");
  c.vocab_size = r.integer("vocab_size", 1);
  c.hidden_size = r.integer("hidden_size", 1);
  c.intermediate_size = r.integer("intermediate_size", 1);
  c.moe_intermediate_size = r.integer("moe_intermediate_size", 1);
  c.num_hidden_layers = r.integer("num_hidden_layers", 1);
  c.num_attention_heads = r.integer("num_attention_heads", 1);
  c.num_key_value_heads = r.integer_or("num_key_value_heads", 1, c.num_attention_heads);
  c.max_position_embeddings = r.integer("max_position_embeddings", 1);
  if (auto const& q = r.need("q_lora_rank", "null or an integer >= 1"); !q.is_null())
    c.q_lora_rank = r.integer("q_lora_rank", 1);
  c.kv_lora_rank = r.integer("kv_lora_rank", 1);
  c.qk_nope_head_dim = r.integer("qk_nope_head_dim", 1);
  c.qk_rope_head_dim = r.integer("qk_rope_head_dim", 2);
  c.v_head_dim = r.integer("v_head_dim", 1);
  c.n_routed_experts = r.integer("n_routed_experts", 1);
  c.n_shared_experts = r.integer("n_shared_experts", 0);
  c.num_experts_per_tok = r.integer("num_experts_per_tok", 1);
  c.n_group = r.integer("n_group", 1);
  c.topk_group = r.integer("topk_group", 1);
  c.first_k_dense_replace = r.integer("first_k_dense_replace", 0);
  c.moe_layer_freq = r.integer("moe_layer_freq", 1);
  c.scoring_func = r.string("scoring_func", "\"sigmoid\" or \"softmax\"");
  c.topk_method = r.string("topk_method", "\"noaux_tc\", \"greedy\" or \"group_limited_greedy\"");
  c.routed_scaling_factor = r.number("routed_scaling_factor");
  c.norm_topk_prob = r.boolean("norm_topk_prob");
  c.rms_norm_eps = r.number("rms_norm_eps");
  c.rope_theta = r.number("rope_theta");
  if (auto const* rs = r.find("rope_scaling"); rs && !rs->is_null()) {
    if (!rs->is_object()) throw_field(file, "rope_scaling", "null or an object", detail::short_json(*rs));
    detail::field_reader const s{*rs, file, "rope_scaling."};
    rope_scaling_params p;
    p.type = s.find("type") ? s.string("type", "\"yarn\"") : s.string("rope_type", "\"yarn\"");
    p.factor = s.number("factor");
    p.original_max_position_embeddings = s.integer("original_max_position_embeddings", 1);
    p.beta_fast = s.number_or("beta_fast", false, 32.0);
    p.beta_slow = s.number_or("beta_slow", false, 1.0);
    p.mscale = s.number_or("mscale", true, 1.0);
    p.mscale_all_dim = s.number_or("mscale_all_dim", true, 0.0);
    c.rope_scaling = p;
  }
  c.num_nextn_predict_layers = r.integer("num_nextn_predict_layers", 0);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings");
  c.hidden_act = r.string_or("hidden_act", "\"silu\"", "silu");
  c.attention_bias = r.boolean_or("attention_bias", false);
  if (auto const* qc = r.find("quantization_config"); qc && !qc->is_null()) {
    if (!qc->is_object())
      throw_field(file, "quantization_config", "null or an object", detail::short_json(*qc));
    detail::field_reader const s{*qc, file, "quantization_config."};
    quantization_params q;
    q.quant_method = s.string("quant_method", "\"fp8\"");
    q.fmt = s.string("fmt", "\"e4m3\"");
    q.activation_scheme = s.string("activation_scheme", "\"dynamic\"");
    auto const& b = s.need("weight_block_size", "[128, 128]");
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer())
      throw_field(file, "quantization_config.weight_block_size", "[128, 128]", detail::short_json(b));
    q.weight_block_size = {b[0].get<std::int64_t>(), b[1].get<std::int64_t>()};
    if (auto const* sf = s.find("scale_fmt"); sf && !sf->is_null())
      q.scale_fmt = s.string("scale_fmt", "absent, null or \"ue8m0\"");
    c.quantization_config = q;
  }
  for (auto const& [k, v] : j.items())
    if (std::find(detail::deepseek_v3_fields.begin(), detail::deepseek_v3_fields.end(), k) ==
        detail::deepseek_v3_fields.end())
      c.extra.emplace(k, detail::dump_json(v, file));
  validate(c, file);
  return c;
}

/// The config as config.json text (keys sorted, 2-space indent): parse_deepseek_v3_config of it
/// gives back an equal struct. Validates first.
inline std::string encode_deepseek_v3_config(deepseek_v3_config const& c,
                                             std::string_view file = "config.json") {
  validate(c, file);
  nlohmann::json j = nlohmann::json::object();
  for (auto const& [k, v] : c.extra) j[k] = detail::parse_json(v, file, "extra field " + k);
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["q_lora_rank"] = c.q_lora_rank ? nlohmann::json(*c.q_lora_rank) : nlohmann::json(nullptr);
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["n_routed_experts"] = c.n_routed_experts;
  j["n_shared_experts"] = c.n_shared_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["scoring_func"] = c.scoring_func;
  j["topk_method"] = c.topk_method;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (auto const& r = c.rope_scaling)
    j["rope_scaling"] = {{"type", r->type},
                         {"factor", r->factor},
                         {"original_max_position_embeddings", r->original_max_position_embeddings},
                         {"beta_fast", r->beta_fast},
                         {"beta_slow", r->beta_slow},
                         {"mscale", r->mscale},
                         {"mscale_all_dim", r->mscale_all_dim}};
  else
    j["rope_scaling"] = nullptr;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = c.hidden_act;
  j["attention_bias"] = c.attention_bias;
  if (auto const& q = c.quantization_config) {
    j["quantization_config"] = {{"quant_method", q->quant_method},
                                {"fmt", q->fmt},
                                {"activation_scheme", q->activation_scheme},
                                {"weight_block_size", q->weight_block_size}};
    if (q->scale_fmt) j["quantization_config"]["scale_fmt"] = *q->scale_fmt;
  }
  return detail::dump_json(j, file, 2) + "\n";
}

/// Reads and validates `path` (a config.json file, or a directory holding one).
inline deepseek_v3_config read_deepseek_v3_config(std::filesystem::path path) {
  if (std::filesystem::is_directory(path)) path /= "config.json";
  return parse_deepseek_v3_config(read_text_file(path, 16u << 20), path.string());
}

/// Writes `c` to `path` atomically (after validating it).
inline void write_deepseek_v3_config(std::filesystem::path const& path, deepseek_v3_config const& c) {
  std::string const text = encode_deepseek_v3_config(c, path.string());
  atomic_file_writer w(path);
  w.write(text);
  w.commit();
}

}  // namespace fp8moe::io
