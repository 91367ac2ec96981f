// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// fp8moe/io/deepseek_v3_config.hpp: the published 671B config.json (fixture written from the
// numbers of the reference notes, §2.1) and the tiny test config (§5) parse to the right values,
// round-trip through the writer, and every bad field is rejected naming the field and the
// expected value.
#include <doctest/doctest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "fp8moe/io/deepseek_v3_config.hpp"
#include "io_test_support.hpp"

namespace io = fp8moe::io;
namespace ft = fp8moe::test;

namespace {
std::filesystem::path data(std::string_view name) {
  return std::filesystem::path(FP8MOE_IO_TEST_DATA) / name;
}
}  // namespace

TEST_CASE("config: the published DeepSeek-V3 671B config.json, every field") {
  auto const c = io::read_deepseek_v3_config(data("deepseek_v3_671b.config.json"));
  CHECK(c.model_type == "deepseek_v3");
  CHECK(c.vocab_size == 129280);
  CHECK(c.hidden_size == 7168);
  CHECK(c.intermediate_size == 18432);
  CHECK(c.moe_intermediate_size == 2048);
  CHECK(c.num_hidden_layers == 61);
  CHECK(c.num_attention_heads == 128);
  CHECK(c.num_key_value_heads == 128);
  CHECK(c.max_position_embeddings == 163840);
  CHECK(c.q_lora_rank == 1536);
  CHECK(c.kv_lora_rank == 512);
  CHECK(c.qk_nope_head_dim == 128);
  CHECK(c.qk_rope_head_dim == 64);
  CHECK(c.qk_head_dim() == 192);
  CHECK(c.v_head_dim == 128);
  CHECK(c.n_routed_experts == 256);
  CHECK(c.n_shared_experts == 1);
  CHECK(c.num_experts_per_tok == 8);
  CHECK(c.n_group == 8);
  CHECK(c.topk_group == 4);
  CHECK(c.first_k_dense_replace == 3);
  CHECK(c.moe_layer_freq == 1);
  CHECK(c.scoring_func == "sigmoid");
  CHECK(c.topk_method == "noaux_tc");
  CHECK(c.routed_scaling_factor == 2.5);
  CHECK(c.norm_topk_prob);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.rope_theta == 10000.0);
  REQUIRE(c.rope_scaling.has_value());
  CHECK(c.rope_scaling->type == "yarn");
  CHECK(c.rope_scaling->factor == 40.0);
  CHECK(c.rope_scaling->original_max_position_embeddings == 4096);
  CHECK(c.rope_scaling->beta_fast == 32.0);
  CHECK(c.rope_scaling->beta_slow == 1.0);
  CHECK(c.rope_scaling->mscale == 1.0);
  CHECK(c.rope_scaling->mscale_all_dim == 1.0);
  CHECK(c.num_nextn_predict_layers == 1);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.hidden_act == "silu");
  CHECK_FALSE(c.attention_bias);
  REQUIRE(c.quantization_config.has_value());
  CHECK(c.quantization_config->quant_method == "fp8");
  CHECK(c.quantization_config->fmt == "e4m3");
  CHECK(c.quantization_config->activation_scheme == "dynamic");
  CHECK(c.quantization_config->weight_block_size == std::array<std::int64_t, 2>{128, 128});
  CHECK_FALSE(c.quantization_config->scale_fmt.has_value());
  // the fields the struct does not model are kept, verbatim
  CHECK(c.extra.at("torch_dtype") == "\"bfloat16\"");
  CHECK(c.extra.at("architectures") == "[\"DeepseekV3ForCausalLM\"]");
  CHECK(c.extra.at("aux_loss_alpha") == "0.001");
  CHECK(c.extra.count("auto_map") == 1);
  CHECK(c.extra.size() == 13);  // 46 keys in the file, 33 modelled
  // dense layers 0..2, MoE from 3 on (moe_layer_freq 1)
  CHECK_FALSE(c.is_moe_layer(2));
  CHECK(c.is_moe_layer(3));
  CHECK(c.is_moe_layer(60));
}

TEST_CASE("config: the tiny test config, and a round trip through the writer") {
  ft::scratch_dir dir;
  for (auto const* name : {"deepseek_v3_671b.config.json", "tiny.config.json"}) {
    INFO(name);
    auto const c = io::read_deepseek_v3_config(data(name));
    auto const text = io::encode_deepseek_v3_config(c);
    CHECK(io::parse_deepseek_v3_config(text) == c);
    io::write_deepseek_v3_config(dir / "config.json", c);
    CHECK(io::read_deepseek_v3_config(dir.path()) == c);  // a directory holding config.json
    // the written file carries the same values as the original, field by field
    auto const orig = nlohmann::json::parse(ft::read_raw(data(name)));
    auto const back = nlohmann::json::parse(ft::read_raw(dir / "config.json"));
    for (auto const& [k, v] : orig.items()) {
      INFO("field ", k);
      CHECK(back.at(k) == v);
    }
  }
  auto const t = io::read_deepseek_v3_config(data("tiny.config.json"));
  CHECK(t.hidden_size == 256);
  CHECK(t.rope_scaling->original_max_position_embeddings == 128);
  CHECK(t.n_routed_experts / t.n_group == 4);
  CHECK_FALSE(t.is_moe_layer(0));
  CHECK(t.is_moe_layer(1));
}

TEST_CASE("config: optional fields and their transformers defaults") {
  auto j = nlohmann::json::parse(ft::read_raw(data("tiny.config.json")));
  j["q_lora_rank"] = nullptr;  // V2-Lite style plain q_proj
  j.erase("quantization_config");
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4}, {"original_max_position_embeddings", 128}};
  j.erase("num_key_value_heads");
  j.erase("hidden_act");
  j.erase("attention_bias");
  j.erase("model_type");
  auto const c = io::parse_deepseek_v3_config(j.dump());
  CHECK_FALSE(c.q_lora_rank.has_value());
  CHECK_FALSE(c.quantization_config.has_value());
  CHECK(c.rope_scaling->type == "yarn");
  CHECK(c.rope_scaling->beta_fast == 32.0);
  CHECK(c.rope_scaling->beta_slow == 1.0);
  CHECK(c.rope_scaling->mscale == 1.0);
  CHECK(c.rope_scaling->mscale_all_dim == 0.0);
  CHECK(c.num_key_value_heads == 4);
  CHECK(c.hidden_act == "silu");
  CHECK(c.model_type == "deepseek_v3");
  CHECK(io::parse_deepseek_v3_config(io::encode_deepseek_v3_config(c)) == c);
  j["rope_scaling"] = nullptr;
  CHECK_FALSE(io::parse_deepseek_v3_config(j.dump()).rope_scaling.has_value());
  j["quantization_config"] = {{"quant_method", "fp8"},
                              {"fmt", "e4m3"},
                              {"activation_scheme", "dynamic"},
                              {"weight_block_size", {128, 128}},
                              {"scale_fmt", "ue8m0"}};  // V3.1
  auto const v31 = io::parse_deepseek_v3_config(j.dump());
  CHECK(v31.quantization_config->scale_fmt == "ue8m0");
  CHECK(io::parse_deepseek_v3_config(io::encode_deepseek_v3_config(v31)) == v31);
}

TEST_CASE("config: a bad field is rejected, naming the field and the expected value") {
  auto const base = nlohmann::json::parse(ft::read_raw(data("tiny.config.json")));
  struct bad {
    char const* what;
    nlohmann::json patch;  // JSON merge patch (RFC 7386): null removes
    char const* field;
    char const* expected;
  };
  using J = nlohmann::json;
  bad const cases[] = {
      {"missing size", J{{"hidden_size", nullptr}}, "field 'hidden_size'", "the field is missing"},
      {"size not an integer", J{{"vocab_size", 1.5}}, "field 'vocab_size'", "an integer >= 1, got 1.5"},
      {"size as a string", J{{"hidden_size", "256"}}, "field 'hidden_size'", "an integer >= 1, got \"256\""},
      {"zero heads", J{{"num_attention_heads", 0}}, "field 'num_attention_heads'", "an integer >= 1, got 0"},
      {"q_lora_rank 0", J{{"q_lora_rank", 0}}, "field 'q_lora_rank'", "an integer >= 1, got 0"},
      {"q_lora_rank missing", J{{"q_lora_rank", nullptr}}, "field 'q_lora_rank'", "null or an integer >= 1"},
      {"odd rope dim", J{{"qk_rope_head_dim", 15}}, "field 'qk_rope_head_dim'", "an even integer >= 2"},
      {"groups do not divide experts", J{{"n_group", 3}}, "field 'n_group'",
       "a divisor of n_routed_experts (16)"},
      {"one expert per group under noaux_tc",
       J{{"n_group", 16}, {"topk_group", 2}, {"num_experts_per_tok", 2}}, "field 'n_group'", "top-2"},
      {"topk_group above n_group", J{{"topk_group", 5}}, "field 'topk_group'", "[1, n_group = 4], got 5"},
      {"k above the allowed groups' experts", J{{"num_experts_per_tok", 9}}, "field 'num_experts_per_tok'",
       "topk_group x experts per group = 8], got 9"},
      {"dense layers beyond the model", J{{"first_k_dense_replace", 5}}, "field 'first_k_dense_replace'",
       "[0, num_hidden_layers = 4], got 5"},
      {"moe_layer_freq 0", J{{"moe_layer_freq", 0}}, "field 'moe_layer_freq'", "an integer >= 1, got 0"},
      {"negative shared experts", J{{"n_shared_experts", -1}}, "field 'n_shared_experts'", "an integer >= 0"},
      {"scoring function", J{{"scoring_func", "relu"}}, "field 'scoring_func'",
       "\"sigmoid\" or \"softmax\", got \"relu\""},
      {"top-k method", J{{"topk_method", "random"}}, "field 'topk_method'", "\"noaux_tc\", \"greedy\""},
      {"negative route scale", J{{"routed_scaling_factor", -2.5}}, "field 'routed_scaling_factor'",
       "a finite number > 0, got -2.5"},
      {"norm_topk_prob as a string", J{{"norm_topk_prob", "true"}}, "field 'norm_topk_prob'",
       "true or false"},
      {"eps zero", J{{"rms_norm_eps", 0}}, "field 'rms_norm_eps'", "a finite number > 0, got 0"},
      {"rope theta missing", J{{"rope_theta", nullptr}}, "field 'rope_theta'", "missing"},
      {"rope scaling not YaRN", J{{"rope_scaling", {{"type", "linear"}}}}, "field 'rope_scaling.type'",
       "\"yarn\", got \"linear\""},
      {"YaRN factor below 1", J{{"rope_scaling", {{"factor", 0.5}}}}, "field 'rope_scaling.factor'",
       "a finite number >= 1"},
      {"YaRN without original length", J{{"rope_scaling", {{"original_max_position_embeddings", nullptr}}}},
       "field 'rope_scaling.original_max_position_embeddings'", "missing"},
      {"YaRN betas swapped", J{{"rope_scaling", {{"beta_fast", 1}, {"beta_slow", 32}}}},
       "field 'rope_scaling.beta_fast'", "a finite number > beta_slow (32)"},
      {"YaRN mscale negative", J{{"rope_scaling", {{"mscale", -1}}}}, "field 'rope_scaling.mscale'", ">= 0"},
      {"rope_scaling a number", J{{"rope_scaling", 4}}, "field 'rope_scaling'", "null or an object, got 4"},
      {"MTP layers negative", J{{"num_nextn_predict_layers", -1}}, "field 'num_nextn_predict_layers'",
       ">= 0"},
      {"tie as a number", J{{"tie_word_embeddings", 0}}, "field 'tie_word_embeddings'",
       "true or false, got 0"},
      {"E5M2 weights", J{{"quantization_config", {{"fmt", "e5m2"}}}}, "field 'quantization_config.fmt'",
       "\"e4m3\", got \"e5m2\""},
      {"64x128 blocks", J{{"quantization_config", {{"weight_block_size", {64, 128}}}}},
       "field 'quantization_config.weight_block_size'", "[128, 128], got [64, 128]"},
      {"blocks not a pair", J{{"quantization_config", {{"weight_block_size", 128}}}},
       "field 'quantization_config.weight_block_size'", "[128, 128], got 128"},
      {"static activations", J{{"quantization_config", {{"activation_scheme", "static"}}}},
       "field 'quantization_config.activation_scheme'", "\"dynamic\", got \"static\""},
      {"another method", J{{"quantization_config", {{"quant_method", "gptq"}}}},
       "field 'quantization_config.quant_method'", "\"fp8\""},
      {"scale format", J{{"quantization_config", {{"scale_fmt", "e4m3"}}}},
       "field 'quantization_config.scale_fmt'", "\"ue8m0\""},
      {"activation", J{{"hidden_act", "gelu"}}, "field 'hidden_act'", "\"silu\", got \"gelu\""},
      {"attention bias", J{{"attention_bias", true}}, "field 'attention_bias'", "false"},
      {"another model", J{{"model_type", "llama"}}, "field 'model_type'", "\"deepseek_v3\", got \"llama\""},
  };
  for (auto const& b : cases) {
    INFO(b.what);
    auto j = base;
    j.merge_patch(b.patch);
    ft::check_error([&] { (void)io::parse_deepseek_v3_config(j.dump(), "tiny/config.json"); },
                    {"'tiny/config.json'", b.field, b.expected});
  }
  ft::check_error(
      [&] { (void)io::parse_deepseek_v3_config("{\"vocab_size\": 1, \"vocab_size\": 2}", "c.json"); },
      {"'c.json'", "duplicate key 'vocab_size'"});
  ft::check_error([&] { (void)io::parse_deepseek_v3_config("{\"vocab_size\": ", "c.json"); },
                  {"'c.json'", "not valid JSON"});
  ft::check_error([&] { (void)io::parse_deepseek_v3_config("[]", "c.json"); }, {"'c.json'", "a JSON object"});
  ft::check_error([&] { (void)io::read_deepseek_v3_config("/nonexistent/config.json"); },
                  {"/nonexistent/config.json"});
}

TEST_CASE("config: a config built in code is validated before it is written") {
  ft::scratch_dir dir;
  auto c = io::read_deepseek_v3_config(data("tiny.config.json"));
  c.topk_group = 7;
  ft::check_error([&] { io::write_deepseek_v3_config(dir / "config.json", c); },
                  {"field 'topk_group'", "n_group = 4"});
  CHECK(dir.entries().empty());
  c.topk_group = 2;
  c.rope_scaling->beta_slow = 0;
  ft::check_error([&] { io::validate(c); }, {"field 'rope_scaling.beta_slow'"});
}
