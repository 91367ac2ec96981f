// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::preset / load_config: the presets are valid, round-trip through config.json, and switch on
// the features they promise; 671b is the published config; bad names and paths are rejected.
#include <doctest/doctest.h>

#include <string>

#include "config.hpp"
#include "io_test_support.hpp"

namespace io = fp8moe::io;
namespace ft = fp8moe::test;

TEST_CASE("every preset validates and round-trips through config.json text") {
  for (auto const name : dsv3::preset_names) {
    INFO("preset ", name);
    dsv3::config const c = dsv3::preset(name);
    CHECK_NOTHROW(io::validate(c));
    CHECK(io::parse_deepseek_v3_config(io::encode_deepseek_v3_config(c)) == c);
    CHECK(dsv3::load_config(name) == c);
  }
}

TEST_CASE("tiny switches on every DeepSeek-V3 feature and is FP8-shaped") {
  dsv3::config const c = dsv3::preset("tiny");
  CHECK(c.q_lora_rank.has_value());  // low-rank q
  CHECK(c.kv_lora_rank < c.hidden_size);
  CHECK_FALSE(c.is_moe_layer(0));  // dense and MoE layers
  CHECK(c.is_moe_layer(c.num_hidden_layers - 1));
  CHECK(c.n_group > 1);
  CHECK(c.topk_group < c.n_group);                                               // groups are dropped
  CHECK(c.num_experts_per_tok < c.topk_group * c.n_routed_experts / c.n_group);  // the group mask matters
  CHECK(c.n_shared_experts == 1);
  CHECK(c.scoring_func == "sigmoid");
  CHECK(c.topk_method == "noaux_tc");
  REQUIRE(c.rope_scaling.has_value());
  CHECK(c.rope_scaling->original_max_position_embeddings < c.max_position_embeddings);  // YaRN active
  CHECK(c.rope_scaling->factor > 1.0);
  CHECK(c.num_nextn_predict_layers == 1);
  CHECK(c.quantization_config.has_value());
  // every reduction dimension K of a linear is a multiple of 128 (1x128 activation tiles) ...
  for (std::int64_t k : {c.hidden_size, *c.q_lora_rank, c.kv_lora_rank, c.num_attention_heads * c.v_head_dim,
                         c.intermediate_size, c.moe_intermediate_size})
    CHECK(k % 128 == 0);
  // ... and kv_a's output (kv_lora + rope) is not: a partial 128-row block, like the published 576
  CHECK((c.kv_lora_rank + c.qk_rope_head_dim) % 128 != 0);
}

TEST_CASE("nano is small, unquantized, and still has every feature") {
  dsv3::config const c = dsv3::preset("nano");
  CHECK(c.hidden_size == 32);
  CHECK_FALSE(c.quantization_config.has_value());
  CHECK(c.q_lora_rank.has_value());
  CHECK_FALSE(c.is_moe_layer(0));
  CHECK(c.is_moe_layer(1));
  CHECK(c.topk_group < c.n_group);
  CHECK(c.num_experts_per_tok < c.topk_group * c.n_routed_experts / c.n_group);
  REQUIRE(c.rope_scaling.has_value());
  CHECK(c.rope_scaling->original_max_position_embeddings == 8);
  CHECK(c.num_nextn_predict_layers == 1);
}

TEST_CASE("671b is the published deepseek-ai/DeepSeek-V3 config (reference §2.1)") {
  dsv3::config const c = dsv3::preset("671b");
  CHECK(c.vocab_size == 129280);
  CHECK(c.hidden_size == 7168);
  CHECK(c.intermediate_size == 18432);
  CHECK(c.moe_intermediate_size == 2048);
  CHECK(c.num_hidden_layers == 61);
  CHECK(c.first_k_dense_replace == 3);
  CHECK(c.num_attention_heads == 128);
  CHECK(c.q_lora_rank == 1536);
  CHECK(c.kv_lora_rank == 512);
  CHECK(c.qk_nope_head_dim == 128);
  CHECK(c.qk_rope_head_dim == 64);
  CHECK(c.v_head_dim == 128);
  CHECK(c.n_routed_experts == 256);
  CHECK(c.num_experts_per_tok == 8);
  CHECK(c.n_group == 8);
  CHECK(c.topk_group == 4);
  CHECK(c.routed_scaling_factor == 2.5);
  CHECK(c.max_position_embeddings == 163840);
  REQUIRE(c.rope_scaling.has_value());
  CHECK(c.rope_scaling->factor == 40.0);
  CHECK(c.rope_scaling->original_max_position_embeddings == 4096);
  CHECK(c.rope_scaling->mscale_all_dim == 1.0);
  CHECK(c.num_nextn_predict_layers == 1);
  REQUIRE(c.quantization_config.has_value());
  CHECK(c.quantization_config->weight_block_size == std::array<std::int64_t, 2>{128, 128});
  // fields the struct does not model are kept (written back verbatim)
  CHECK(c.extra.at("aux_loss_alpha") == "0.001");
  CHECK(c.extra.at("transformers_version") == "\"4.33.1\"");
}

TEST_CASE("load_config reads a config.json file or directory; bad names and paths are rejected") {
  ft::scratch_dir d;
  dsv3::config c = dsv3::preset("nano");
  c.vocab_size = 96;
  io::write_deepseek_v3_config(d / "config.json", c);
  CHECK(dsv3::load_config((d / "config.json").string()) == c);
  CHECK(dsv3::load_config(d.path().string()) == c);
  ft::check_error([] { (void)dsv3::preset("small"); }, {"dsv3::preset", "'name'", "\"small\""});
  ft::check_error([&] { (void)dsv3::load_config((d / "nope.json").string()); },
                  {"'config'", "nope.json", "no such file"});
  ft::write_raw(d / "bad.json", R"({"vocab_size": 0})");
  ft::check_error([&] { (void)dsv3::load_config((d / "bad.json").string()); }, {"bad.json", "vocab_size"});
}
