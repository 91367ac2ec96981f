// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::hf_inventory against the tensor inventory of deepseek-ai/DeepSeek-V3 (reference §2.2):
// names, shapes, FP8 flags and scale_inv shapes, the tensor count 91,991, the byte count of the
// header dump, and the fixed order.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "counts.hpp"
#include "hf_names.hpp"
#include "init.hpp"

namespace {

using shape = std::vector<std::int64_t>;

std::map<std::string, dsv3::hf_tensor> by_name(std::vector<dsv3::hf_tensor> const& inv) {
  std::map<std::string, dsv3::hf_tensor> m;
  for (auto const& t : inv) m.emplace(t.name, t);
  return m;
}

}  // namespace

TEST_CASE("671b: names, dtypes and shapes of the §2.2 table") {
  auto const inv = dsv3::hf_inventory(dsv3::preset("671b"));
  auto const m = by_name(inv);
  REQUIRE(m.size() == inv.size());  // no name twice
  struct row {
    char const* name;
    shape s;
    bool fp8;
    shape scale;
  };
  std::vector<row> const table{
      {"model.embed_tokens.weight", {129280, 7168}, false, {}},
      {"model.layers.0.input_layernorm.weight", {7168}, false, {}},
      {"model.layers.0.self_attn.q_a_proj.weight", {1536, 7168}, true, {12, 56}},
      {"model.layers.0.self_attn.q_a_layernorm.weight", {1536}, false, {}},
      {"model.layers.0.self_attn.q_b_proj.weight", {24576, 1536}, true, {192, 12}},
      {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", {576, 7168}, true, {5, 56}},
      {"model.layers.0.self_attn.kv_a_layernorm.weight", {512}, false, {}},
      {"model.layers.0.self_attn.kv_b_proj.weight", {32768, 512}, true, {256, 4}},
      {"model.layers.0.self_attn.o_proj.weight", {7168, 16384}, true, {56, 128}},
      {"model.layers.0.post_attention_layernorm.weight", {7168}, false, {}},
      {"model.layers.2.mlp.gate_proj.weight", {18432, 7168}, true, {144, 56}},
      {"model.layers.2.mlp.up_proj.weight", {18432, 7168}, true, {144, 56}},
      {"model.layers.2.mlp.down_proj.weight", {7168, 18432}, true, {56, 144}},
      {"model.layers.3.mlp.gate.weight", {256, 7168}, false, {}},
      {"model.layers.3.mlp.gate.e_score_correction_bias", {256}, false, {}},
      {"model.layers.3.mlp.experts.0.gate_proj.weight", {2048, 7168}, true, {16, 56}},
      {"model.layers.60.mlp.experts.255.up_proj.weight", {2048, 7168}, true, {16, 56}},
      {"model.layers.17.mlp.experts.17.down_proj.weight", {7168, 2048}, true, {56, 16}},
      {"model.layers.60.mlp.shared_experts.gate_proj.weight", {2048, 7168}, true, {16, 56}},
      {"model.layers.60.mlp.shared_experts.down_proj.weight", {7168, 2048}, true, {56, 16}},
      {"model.norm.weight", {7168}, false, {}},
      {"lm_head.weight", {129280, 7168}, false, {}},
      {"model.layers.61.embed_tokens.weight", {129280, 7168}, false, {}},
      {"model.layers.61.enorm.weight", {7168}, false, {}},
      {"model.layers.61.hnorm.weight", {7168}, false, {}},
      {"model.layers.61.eh_proj.weight", {7168, 14336}, false, {}},
      {"model.layers.61.self_attn.kv_a_proj_with_mqa.weight", {576, 7168}, true, {5, 56}},
      {"model.layers.61.mlp.gate.e_score_correction_bias", {256}, false, {}},
      {"model.layers.61.mlp.experts.255.down_proj.weight", {7168, 2048}, true, {56, 16}},
      {"model.layers.61.shared_head.norm.weight", {7168}, false, {}},
      {"model.layers.61.shared_head.head.weight", {129280, 7168}, false, {}},
  };
  for (auto const& r : table) {
    INFO(r.name);
    auto const it = m.find(r.name);
    REQUIRE(it != m.end());
    CHECK(it->second.shape == r.s);
    CHECK(it->second.fp8 == r.fp8);
    if (r.fp8) {
      CHECK(it->second.scale_inv_shape() == r.scale);
      CHECK(it->second.scale_inv_name() == std::string(r.name) + "_scale_inv");
    }
  }
  // dense layers 0-2 have no router and no experts; MoE layers no dense mlp; no layer 62
  CHECK_FALSE(m.count("model.layers.2.mlp.gate.weight"));
  CHECK_FALSE(m.count("model.layers.3.mlp.gate_proj.weight"));
  CHECK_FALSE(m.count("model.layers.3.mlp.experts.256.gate_proj.weight"));
  CHECK_FALSE(m.count("model.layers.62.input_layernorm.weight"));
  CHECK_FALSE(m.count("model.layers.0.self_attn.q_proj.weight"));
  // 91,991 tensors with the scale_inv companions: 3 x 20 + 58 x 1558 + 3 main, 1558 + 6 MTP
  auto const n_fp8 = std::count_if(inv.begin(), inv.end(), [](auto const& t) { return t.fp8; });
  CHECK(inv.size() + static_cast<std::size_t>(n_fp8) == 91'991u);
  CHECK(inv.size() + static_cast<std::size_t>(n_fp8) == 3u * 20 + 58u * 1558 + 3 + 1558 + 6);
}

TEST_CASE("671b: element total == counts().stored, and the fp8 checkpoint's bytes == the header dump's") {
  dsv3::config c = dsv3::preset("671b");
  std::int64_t n = 0;
  for (auto const& t : dsv3::hf_inventory(c)) n += t.numel();
  CHECK(n == dsv3::counts(c).stored);
  // the dump of deepseek-ai/DeepSeek-V3 reports 688,574,839,360 bytes (E4M3 + F32 scale_inv + BF16 + F32
  // bias)
  CHECK(dsv3::checkpoint_bytes(c, dsv3::checkpoint_dtype::fp8) == 688'574'839'360ull);
  c.num_nextn_predict_layers = 0;
  n = 0;
  for (auto const& t : dsv3::hf_inventory(c)) n += t.numel();
  CHECK(n == dsv3::counts(c).total);
  CHECK(n == 671'026'419'200);
}

TEST_CASE("the order is fixed: embedding, layers in order, norm, head, then MTP layers") {
  dsv3::config const c = dsv3::preset("tiny");
  auto const inv = dsv3::hf_inventory(c);
  REQUIRE(inv.size() > 4);
  CHECK(inv.front().name == "model.embed_tokens.weight");
  CHECK(inv[1].name == "model.layers.0.input_layernorm.weight");
  CHECK(inv.back().name == "model.layers.4.shared_head.head.weight");
  auto const pos = [&](std::string const& n) {
    return std::find_if(inv.begin(), inv.end(), [&](auto const& t) { return t.name == n; }) - inv.begin();
  };
  CHECK(pos("model.layers.3.post_attention_layernorm.weight") < pos("model.norm.weight"));
  CHECK(pos("model.norm.weight") + 1 == pos("lm_head.weight"));
  CHECK(pos("lm_head.weight") + 1 == pos("model.layers.4.embed_tokens.weight"));
  // layer numbers never decrease along the list
  std::int64_t last = -1;
  for (auto const& t : inv)
    if (t.name.starts_with("model.layers.")) {
      std::int64_t const l = std::stoll(t.name.substr(13));
      CHECK(l >= last);
      last = l;
    }
  CHECK(dsv3::hf_inventory(c).size() == inv.size());
}

TEST_CASE("variants: q_proj without q_lora, no shared expert, no bias without noaux_tc, tied head") {
  dsv3::config c = dsv3::preset("tiny");
  c.q_lora_rank.reset();
  c.n_shared_experts = 0;
  c.topk_method = "greedy";
  c.tie_word_embeddings = true;
  auto const m = by_name(dsv3::hf_inventory(c));
  REQUIRE(m.count("model.layers.0.self_attn.q_proj.weight"));
  CHECK(m.at("model.layers.0.self_attn.q_proj.weight").shape == shape{4 * 48, 256});
  CHECK(m.at("model.layers.0.self_attn.q_proj.weight").fp8);
  CHECK_FALSE(m.count("model.layers.0.self_attn.q_a_proj.weight"));
  CHECK_FALSE(m.count("model.layers.1.mlp.shared_experts.gate_proj.weight"));
  CHECK_FALSE(m.count("model.layers.1.mlp.gate.e_score_correction_bias"));
  CHECK_FALSE(m.count("lm_head.weight"));
  CHECK(m.count("model.layers.4.shared_head.head.weight"));  // the MTP layer keeps its head copy
  // tiny's partial blocks: kv_a 144 rows -> [2, 2]; q_b 192 rows -> [2, 1]
  auto const t = by_name(dsv3::hf_inventory(dsv3::preset("tiny")));
  CHECK(t.at("model.layers.0.self_attn.kv_a_proj_with_mqa.weight").scale_inv_shape() == shape{2, 2});
  CHECK(t.at("model.layers.0.self_attn.q_b_proj.weight").scale_inv_shape() == shape{2, 1});
  CHECK(t.at("model.layers.1.mlp.shared_experts.down_proj.weight").shape == shape{256, 128});
}
