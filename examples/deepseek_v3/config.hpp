// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The model configurations of the example: presets "tiny" (~8.5M parameters, every feature of
// DeepSeek-V3 switched on, FP8-shaped), "nano" (small enough for float64 gradient checks) and
// "671b" (the published deepseek-ai/DeepSeek-V3 config.json, verbatim), and load_config(), which
// takes a preset name or a config.json file/directory. The config is fp8moe::io's struct.
#pragma once

#include <array>
#include <filesystem>
#include <string>
#include <string_view>

#include "fp8moe/core/error.hpp"
#include "fp8moe/io/deepseek_v3_config.hpp"

namespace dsv3 {

using config = fp8moe::io::deepseek_v3_config;

/// The preset names preset() knows, for messages and help text.
inline constexpr std::array<std::string_view, 3> preset_names{"tiny", "nano", "671b"};

namespace detail {

/// deepseek-ai/DeepSeek-V3 config.json as published (reference/deepseek_v3_model.md §2.1).
inline constexpr std::string_view published_671b_config = R"({
  "architectures": ["DeepseekV3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "auto_map": {
    "AutoConfig": "configuration_deepseek.DeepseekV3Config",
    "AutoModel": "modeling_deepseek.DeepseekV3Model",
    "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"
  },
  "aux_loss_alpha": 0.001,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "ep_size": 1,
  "first_k_dense_replace": 3,
  "hidden_act": "silu",
  "hidden_size": 7168,
  "initializer_range": 0.02,
  "intermediate_size": 18432,
  "kv_lora_rank": 512,
  "max_position_embeddings": 163840,
  "model_type": "deepseek_v3",
  "moe_intermediate_size": 2048,
  "moe_layer_freq": 1,
  "n_group": 8,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "norm_topk_prob": true,
  "num_attention_heads": 128,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 61,
  "num_key_value_heads": 128,
  "num_nextn_predict_layers": 1,
  "pretraining_tp": 1,
  "q_lora_rank": 1536,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "quantization_config": {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "weight_block_size": [128, 128]
  },
  "rms_norm_eps": 1e-06,
  "rope_scaling": {
    "beta_fast": 32, "beta_slow": 1, "factor": 40,
    "mscale": 1.0, "mscale_all_dim": 1.0,
    "original_max_position_embeddings": 4096, "type": "yarn"
  },
  "rope_theta": 10000,
  "routed_scaling_factor": 2.5,
  "scoring_func": "sigmoid",
  "seq_aux": true,
  "tie_word_embeddings": false,
  "topk_group": 4,
  "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16",
  "transformers_version": "4.33.1",
  "use_cache": true,
  "v_head_dim": 128,
  "vocab_size": 129280
}
)";

/// What tiny and nano share with the published model: its routing (sigmoid scores, bias-corrected
/// group top-k, normalized top-k weights times 2.5), YaRN with beta 32/1 and mscale 1/1, silu,
/// RMSNorm eps 1e-6, theta 10000, untied head, one MTP layer, and the HF architecture name.
inline config deepseek_v3_family() {
  config c;
  c.num_nextn_predict_layers = 1;  // one MTP module (D = 1), stored as layer num_hidden_layers
  c.moe_layer_freq = 1;            // every layer from first_k_dense_replace on is MoE
  c.n_shared_experts = 1;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";  // select with sigmoid + e_score_correction_bias, gate with sigmoid
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.rope_scaling = fp8moe::io::rope_scaling_params{
      .type = "yarn", .beta_fast = 32.0, .beta_slow = 1.0, .mscale = 1.0, .mscale_all_dim = 1.0};
  c.tie_word_embeddings = false;
  c.hidden_act = "silu";
  c.attention_bias = false;
  c.extra["architectures"] = R"(["DeepseekV3ForCausalLM"])";
  c.extra["torch_dtype"] = R"("bfloat16")";
  return c;
}

}  // namespace detail

/// "tiny": 4 layers (1 dense + 3 MoE) + 1 MTP layer, hidden 256, ~8.55M parameters
/// (reference §5). Every GEMM reduction dimension is a multiple of 128 (the FP8 path's 1x128
/// activation tiles need it) while two output dimensions are not (kv_a_proj_with_mqa: 144 rows,
/// scale grid 2x2; q_b_proj: 192 rows), like the published 576-row kv_a.
inline config tiny_config() {
  config c = detail::deepseek_v3_family();
  c.vocab_size = 1024;
  c.hidden_size = 256;              // H: K of q_a/kv_a/gate/up/router, a multiple of 128
  c.intermediate_size = 512;        // dense SwiGLU: K of down_proj = 512
  c.moe_intermediate_size = 128;    // each expert: K of down_proj = 128
  c.num_hidden_layers = 4;          // layer 0 dense, layers 1-3 MoE
  c.first_k_dense_replace = 1;      // dense + MoE layers both present
  c.num_attention_heads = 4;        // H * v_head_dim = 128: K of o_proj
  c.num_key_value_heads = 4;        // a formality in MLA
  c.q_lora_rank = 128;              // low-rank q (q_a_proj, q_a_layernorm, q_b_proj); K of q_b = 128
  c.kv_lora_rank = 128;             // K of kv_b = 128
  c.qk_nope_head_dim = 32;          //
  c.qk_rope_head_dim = 16;          // kv_a rows = 128 + 16 = 144 (partial 128-block)
  c.v_head_dim = 32;                //
  c.n_routed_experts = 16;          // 4 groups of 4
  c.num_experts_per_tok = 4;        // top-4 < topk_group x 4 = 8: the group mask matters
  c.n_group = 4;                    //
  c.topk_group = 2;                 // topk_group < n_group: groups are dropped
  c.max_position_embeddings = 512;  // = factor x original
  c.rope_scaling->factor = 4.0;
  c.rope_scaling->original_max_position_embeddings = 128;     // YaRN is active from position 128 on
  c.quantization_config = fp8moe::io::quantization_params{};  // fp8, e4m3, dynamic, [128, 128]
  return c;
}

/// "nano": 3 layers (1 dense + 2 MoE) + 1 MTP layer, hidden 32, ~40K parameters, for float64
/// finite-difference gradient checks (reference §5). Not FP8-shaped (K = 32 < 128): no
/// quantization_config.
inline config nano_config() {
  config c = detail::deepseek_v3_family();
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.moe_intermediate_size = 16;
  c.num_hidden_layers = 3;  // layer 0 dense, layers 1-2 MoE
  c.first_k_dense_replace = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.q_lora_rank = 16;
  c.kv_lora_rank = 16;
  c.qk_nope_head_dim = 8;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 8;
  c.n_routed_experts = 8;     // 4 groups of 2 (noaux_tc scores a group by its top-2)
  c.num_experts_per_tok = 2;  // top-2 < topk_group x 2 = 4
  c.n_group = 4;
  c.topk_group = 2;
  c.max_position_embeddings = 32;
  c.rope_scaling->factor = 4.0;
  c.rope_scaling->original_max_position_embeddings = 8;  // a 16-token sequence crosses it
  return c;
}

/// The published deepseek-ai/DeepSeek-V3 config (§2.1), parsed from its text.
inline config config_671b() {
  return fp8moe::io::parse_deepseek_v3_config(detail::published_671b_config, "preset 671b");
}

/// The preset `name` ("tiny", "nano" or "671b"); throws fp8moe::error naming the argument otherwise.
inline config preset(std::string_view name) {
  if (name == "tiny") return tiny_config();
  if (name == "nano") return nano_config();
  if (name == "671b") return config_671b();
  fp8moe::detail::throw_argument("dsv3::preset", "name", "\"tiny\", \"nano\" or \"671b\"",
                                 fp8moe::detail::concat('"', name, '"'));
}

/// A preset name, or else the path of a config.json (or of a directory holding one), read and
/// validated by fp8moe::io (errors name the file and the field).
inline config load_config(std::string_view name_or_path) {
  for (auto const n : preset_names)
    if (name_or_path == n) return preset(n);
  std::filesystem::path const p{std::string(name_or_path)};
  if (!std::filesystem::exists(p))
    fp8moe::detail::throw_argument("dsv3::load_config", "config",
                                   "\"tiny\", \"nano\", \"671b\" or an existing config.json or directory",
                                   fp8moe::detail::concat('"', name_or_path, "\" (no such file)"));
  return fp8moe::io::read_deepseek_v3_config(p);
}

}  // namespace dsv3
