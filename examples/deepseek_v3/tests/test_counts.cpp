// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::counts and dsv3::flops_per_token: the 671B numbers of reference §2.3, and for other
// configs agreement with sums over the tensor inventory (an independent enumeration of the shapes).
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "counts.hpp"
#include "hf_names.hpp"
#include "io_test_support.hpp"

namespace ft = fp8moe::test;

namespace {

/// Elements of the inventory whose names satisfy `keep`.
template <class Keep>
std::int64_t inventory_sum(dsv3::config const& c, Keep keep) {
  std::int64_t n = 0;
  for (auto const& t : dsv3::hf_inventory(c))
    if (keep(t)) n += t.numel();
  return n;
}

bool is_mtp(dsv3::config const& c, dsv3::hf_tensor const& t) {
  for (std::int64_t i = 0; i < c.num_nextn_predict_layers; ++i)
    if (t.name.starts_with("model.layers." + std::to_string(c.num_hidden_layers + i) + ".")) return true;
  return false;
}

/// Routed expert id of an expert tensor, or -1.
std::int64_t expert_of(dsv3::hf_tensor const& t) {
  auto const p = t.name.find(".experts.");
  return p == std::string::npos ? -1 : std::stoll(t.name.substr(p + 9));
}

/// Activated matmul weights from the inventory: every 2-D tensor of the main model but the
/// embedding, with only experts 0..k-1 of each MoE layer (one token uses k of them); a tied head
/// multiplies with the embedding matrix.
std::int64_t inventory_activated_matmul(dsv3::config const& c) {
  return inventory_sum(c,
                       [&](dsv3::hf_tensor const& t) {
                         return !is_mtp(c, t) && t.shape.size() == 2 &&
                                t.name != "model.embed_tokens.weight" && expert_of(t) < c.num_experts_per_tok;
                       }) +
         (c.tie_word_embeddings ? c.vocab_size * c.hidden_size : 0);
}

}  // namespace

TEST_CASE("671b: the parameter counts of reference §2.3") {
  dsv3::param_counts const p = dsv3::counts(dsv3::preset("671b"));
  CHECK(p.embedding == 926'679'040);
  CHECK(p.head == 926'679'040);
  CHECK(p.attention == 187'107'328);
  CHECK(p.dense_layer == 583'483'392);
  CHECK(p.moe_layer == 11'507'286'272);
  CHECK(p.moe_layer_activated == 585'318'400);
  CHECK(p.dense_layers == 3);
  CHECK(p.moe_layers == 58);
  CHECK(p.total == 671'026'419'200);  // "Total Parameters: 671,026,419,200"
  // §2.3's activated rows: embedding + head + final norm + 3 dense + 58 x MoE-activated = 37.55B
  CHECK(p.activated_per_token == 2 * 926'679'040ll + 7168 + 3 * 583'483'392ll + 58 * 585'318'400ll);
  CHECK(p.activated_per_token == 37'552'282'624);
  // MTP unique: one MoE layer + enorm + hnorm + eh_proj [7168, 14336] + shared_head.norm (≈11.61B)
  CHECK(p.mtp == 11'507'286'272 + 3 * 7168 + 7168 * 14336);
  CHECK(p.mtp_duplicates == 2 * 926'679'040);
  CHECK(p.stored == 684'489'845'504);  // "whole HF repo ≈684.5B"
}

TEST_CASE("counts agree with the inventory, with and without MTP, q_lora, shared experts, bias, head") {
  std::vector<dsv3::config> configs{dsv3::preset("tiny"), dsv3::preset("nano"), dsv3::preset("671b")};
  dsv3::config v = dsv3::preset("tiny");
  v.q_lora_rank.reset();  // plain q_proj
  v.n_shared_experts = 0;
  v.topk_method = "greedy";  // no e_score_correction_bias
  v.tie_word_embeddings = true;
  v.num_nextn_predict_layers = 2;
  v.moe_layer_freq = 2;  // layers 2 and 4 (MTP) MoE; 1, 3 and 5 (MTP) dense
  configs.push_back(v);
  v.num_nextn_predict_layers = 0;
  configs.push_back(v);
  for (auto const& c : configs) {
    INFO("hidden ", c.hidden_size, ", MTP layers ", c.num_nextn_predict_layers, ", tied ",
         c.tie_word_embeddings);
    dsv3::param_counts const p = dsv3::counts(c);
    CHECK(p.stored == inventory_sum(c, [](auto const&) { return true; }));
    CHECK(p.total == inventory_sum(c, [&](auto const& t) { return !is_mtp(c, t); }));
    CHECK(p.mtp + p.mtp_duplicates == inventory_sum(c, [&](auto const& t) { return is_mtp(c, t); }));
    CHECK(p.activated_matmul == inventory_activated_matmul(c));
    if (c.num_nextn_predict_layers == 0) CHECK(p.stored == p.total);
  }
}

TEST_CASE("tiny has ~8.5M parameters (reference §5: 6.59M main + 1.97M MTP, ~3.0M activated)") {
  dsv3::param_counts const p = dsv3::counts(dsv3::preset("tiny"));
  CHECK(p.total == 6'585'648);
  CHECK(p.mtp == 1'967'632);
  CHECK(p.total + p.mtp == doctest::Approx(8.55e6).epsilon(0.01));
  CHECK(p.activated_per_token == doctest::Approx(3.0e6).epsilon(0.02));
}

TEST_CASE("FLOPs per token: 2 x activated matmul weights + 2 x L x heads x (qk + v) x context; backward 2x") {
  for (auto const name : {"tiny", "nano", "671b"}) {
    INFO(name);
    dsv3::config const c = dsv3::preset(name);
    std::int64_t const per_key =
        2 * c.num_hidden_layers * c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim);
    for (std::int64_t ctx : {1, 7, 4096}) {
      auto const f = dsv3::flops_per_token(c, ctx);
      CHECK(f.forward == 2 * inventory_activated_matmul(c) + per_key * ctx);
      CHECK(f.backward == 2 * f.forward);
      CHECK(f.total() == 3 * f.forward);
    }
  }
  // MTP adds eh_proj (H x 2H), one decoder layer (activated), the head and one layer of attention
  dsv3::config const c = dsv3::preset("tiny");
  std::int64_t const H = c.hidden_size;
  auto const mtp_matmul = inventory_sum(c, [&](auto const& t) {
    return is_mtp(c, t) && t.shape.size() == 2 && !t.name.ends_with("embed_tokens.weight") &&
           expert_of(t) < c.num_experts_per_tok;
  });
  CHECK(mtp_matmul > 2 * H * H + c.vocab_size * H);
  std::int64_t const attention = 2 * c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim) * 100;
  CHECK(dsv3::flops_per_token(c, 100, true).forward ==
        dsv3::flops_per_token(c, 100).forward + 2 * mtp_matmul + attention);
  // 671B at a 4096-key context: 2 x 36.7B matmul weights + attention ≈ 94 GFLOP forward
  auto const f = dsv3::flops_per_token(dsv3::preset("671b"), 4096);
  CHECK(f.forward == doctest::Approx(93.7e9).epsilon(0.01));
}

TEST_CASE("counts and flops reject bad input before computing") {
  dsv3::config c = dsv3::preset("tiny");
  ft::check_error([&] { (void)dsv3::flops_per_token(c, 0); }, {"flops_per_token", "'context'", ">= 1"});
  c.n_group = 3;  // 16 experts do not split into 3 groups
  ft::check_error([&] { (void)dsv3::counts(c); }, {"n_group", "divisor"});
}
