// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Checks of the float64 oracle dsv3::ref on whole checkpoints written here through fp8moe::io (its
// own tensor list, independent of hf_names.hpp and init.hpp): FP8 weights with partial 128x128
// scale blocks in a sharded checkpoint (scales in another shard) against their F32 twin, BF16
// loading, causality and prefix consistency of the logits, expert and head relabelling
// invariance, the MTP module's logits, and errors naming the tensor.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../../../tests/io/io_test_support.hpp"
#include "fp8moe/io/checkpoint.hpp"
#include "fp8moe/io/deepseek_v3_config.hpp"
#include "fp8moe/numeric/bfloat16.hpp"
#include "fp8moe/numeric/float8.hpp"
#include "reference_forward.hpp"

namespace {

using dsv3::ref::tensor;
using fp8moe::test::check_error;
using fp8moe::test::scratch_dir;

/// A small config with every feature: q and kv low rank, 1 dense + 2 MoE layers, 4 groups of 2
/// experts (2 kept, top-2), bias, shared expert, YaRN active (original 8 < 12 tokens), 1 MTP layer.
/// Widths not multiples of 128 (hidden 160, q rank 136, kv_a 72 rows) give partial FP8 blocks.
dsv3::ref::config small_config() {
  return fp8moe::io::parse_deepseek_v3_config(R"({
    "vocab_size": 300, "hidden_size": 160, "intermediate_size": 192, "moe_intermediate_size": 48,
    "num_hidden_layers": 3, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64,
    "q_lora_rank": 136, "kv_lora_rank": 64, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
    "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2,
    "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5,
    "rms_norm_eps": 1e-6, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 8,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "num_nextn_predict_layers": 1, "tie_word_embeddings": false})",
                                              "small_config");
}

/// One tensor of the test checkpoint: HF name, shape, values, and whether DeepSeek stores it as
/// F8_E4M3 with a weight_scale_inv (the linear weights of attention and the MLPs).
struct named {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
  bool fp8 = false;
};

/// Every tensor of an HF DeepSeek-V3 checkpoint for `c`, random (fixed seed): linear weights
/// uniform with variance 1/in, norm weights 1 +- 0.2, router bias +-0.1 (negative ones included).
std::vector<named> random_tensors(dsv3::ref::config const& c, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<named> out;
  auto const add = [&](std::string name, std::vector<std::int64_t> shape, float amplitude, float offset,
                       bool fp8) {
    named t{std::move(name), std::move(shape), {}, fp8};
    t.values.resize(static_cast<std::size_t>(dsv3::ref::element_count(t.shape)));
    for (auto& v : t.values) v = offset + amplitude * u(gen);
    out.push_back(std::move(t));
  };
  auto const linear = [&](std::string name, std::int64_t o, std::int64_t i, bool fp8) {
    add(std::move(name), {o, i}, std::sqrt(3.0f / static_cast<float>(i)), 0.0f, fp8);
  };
  auto const norm = [&](std::string name, std::int64_t n) { add(std::move(name), {n}, 0.2f, 1.0f, false); };
  auto const mlp = [&](std::string const& p, std::int64_t inter) {
    linear(p + "gate_proj.weight", inter, c.hidden_size, true);
    linear(p + "up_proj.weight", inter, c.hidden_size, true);
    linear(p + "down_proj.weight", c.hidden_size, inter, true);
  };
  std::int64_t const H = c.hidden_size, V = c.vocab_size, nh = c.num_attention_heads;
  std::int64_t const dq = c.qk_nope_head_dim + c.qk_rope_head_dim, rkv = c.kv_lora_rank;
  add("model.embed_tokens.weight", {V, H}, 1.0f, 0.0f, false);
  for (std::int64_t L = 0; L < c.num_hidden_layers + c.num_nextn_predict_layers; ++L) {
    std::string const p = "model.layers." + std::to_string(L) + ".";
    if (L >= c.num_hidden_layers) {  // the MTP module's own parts
      add(p + "embed_tokens.weight", {V, H}, 1.0f, 0.0f, false);
      norm(p + "enorm.weight", H);
      norm(p + "hnorm.weight", H);
      linear(p + "eh_proj.weight", H, 2 * H, false);
      norm(p + "shared_head.norm.weight", H);
      linear(p + "shared_head.head.weight", V, H, false);
    }
    norm(p + "input_layernorm.weight", H);
    norm(p + "post_attention_layernorm.weight", H);
    std::string const a = p + "self_attn.";
    linear(a + "q_a_proj.weight", *c.q_lora_rank, H, true);
    norm(a + "q_a_layernorm.weight", *c.q_lora_rank);
    linear(a + "q_b_proj.weight", nh * dq, *c.q_lora_rank, true);
    linear(a + "kv_a_proj_with_mqa.weight", rkv + c.qk_rope_head_dim, H, true);
    norm(a + "kv_a_layernorm.weight", rkv);
    linear(a + "kv_b_proj.weight", nh * (c.qk_nope_head_dim + c.v_head_dim), rkv, true);
    linear(a + "o_proj.weight", H, nh * c.v_head_dim, true);
    if (!c.is_moe_layer(L)) {
      mlp(p + "mlp.", c.intermediate_size);
      continue;
    }
    linear(p + "mlp.gate.weight", c.n_routed_experts, H, false);
    add(p + "mlp.gate.e_score_correction_bias", {c.n_routed_experts}, 0.1f, 0.0f, false);
    for (std::int64_t e = 0; e < c.n_routed_experts; ++e)
      mlp(p + "mlp.experts." + std::to_string(e) + ".", c.moe_intermediate_size);
    mlp(p + "mlp.shared_experts.", c.n_shared_experts * c.moe_intermediate_size);
  }
  norm("model.norm.weight", H);
  linear("lm_head.weight", V, H, false);
  return out;
}

/// A model held in memory with random_tensors(c, seed) as its weights.
dsv3::ref::model random_model(dsv3::ref::config const& c, std::uint64_t seed) {
  dsv3::ref::model m;
  m.cfg = c;
  for (named const& t : random_tensors(c, seed)) {
    tensor w(t.shape);
    w.data.assign(t.values.begin(), t.values.end());
    m.weights.emplace(t.name, std::move(w));
  }
  return m;
}

/// An FP8 weight as DeepSeek stores it: E4M3 codes and the 128x128 block multipliers.
struct fp8_weight {
  std::vector<std::uint8_t> codes;  // (out,in)
  std::vector<float> scale_inv;     // (ceil(out/128), ceil(in/128))
  std::vector<std::int64_t> scale_shape;
};

/// Quantizes t (out,in) per 128x128 block with scale amax/448 rounded up to 16 significant bits,
/// and replaces t.values by the dequantized values code * scale, which are exact in float (4 + 16
/// bits), so an F32 checkpoint of them is the exact twin of the FP8 one.
fp8_weight quantize_in_place(named& t) {
  std::int64_t const out = t.shape[0], in = t.shape[1], nb_o = (out + 127) / 128, nb_i = (in + 127) / 128;
  fp8_weight q{std::vector<std::uint8_t>(t.values.size()),
               std::vector<float>(static_cast<std::size_t>(nb_o * nb_i)),
               {nb_o, nb_i}};
  for (std::int64_t bo = 0; bo < nb_o; ++bo)
    for (std::int64_t bi = 0; bi < nb_i; ++bi) {
      float amax = 0.0f;
      for (std::int64_t i = bo * 128; i < std::min(out, bo * 128 + 128); ++i)
        for (std::int64_t j = bi * 128; j < std::min(in, bi * 128 + 128); ++j)
          amax = std::max(amax, std::abs(t.values[i * in + j]));
      int e = 0;
      double const m = std::frexp(static_cast<double>(amax) / 448.0, &e);
      auto const s = static_cast<float>(std::ldexp(std::ceil(std::ldexp(m, 16)), e - 16));
      q.scale_inv[bo * nb_i + bi] = s;
      for (std::int64_t i = bo * 128; i < std::min(out, bo * 128 + 128); ++i)
        for (std::int64_t j = bi * 128; j < std::min(in, bi * 128 + 128); ++j) {
          auto const code = fp8moe::float8_e4m3_t(t.values[i * in + j] / s);
          q.codes[i * in + j] = code.bits();
          t.values[i * in + j] = code.to_float() * s;
        }
    }
  return q;
}

enum class stored { f32, bf16 };

/// Writes config.json and model.safetensors holding `tensors` as F32 or BF16 (the router bias
/// stays F32, as DeepSeek stores it).
void write_plain(std::filesystem::path const& dir, dsv3::ref::config const& c,
                 std::vector<named> const& tensors, stored as) {
  fp8moe::io::write_deepseek_v3_config(dir / "config.json", c);
  std::vector<std::vector<fp8moe::bfloat16_t>> bf(tensors.size());
  std::vector<fp8moe::io::tensor_entry> entries;
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    named const& t = tensors[k];
    if (as == stored::bf16 && !t.name.ends_with("e_score_correction_bias")) {
      for (float v : t.values) bf[k].push_back(fp8moe::bfloat16_t(v));
      entries.push_back(fp8moe::io::make_tensor_entry<fp8moe::bfloat16_t>(t.name, bf[k], t.shape));
    } else {
      entries.push_back(fp8moe::io::make_tensor_entry<float>(t.name, t.values, t.shape));
    }
  }
  fp8moe::io::write_safetensors(dir / "model.safetensors", entries);
}

/// Quantizes the fp8 tensors in place (see quantize_in_place) and writes them as an FP8 checkpoint
/// in shards of at most `shard_bytes`, every weight_scale_inv in a last shard of its own.
void write_fp8_sharded(std::filesystem::path const& dir, dsv3::ref::config c, std::vector<named>& tensors,
                       std::uint64_t shard_bytes) {
  c.quantization_config = fp8moe::io::quantization_params{};
  std::vector<std::vector<std::byte>> codes;
  std::vector<fp8_weight> scales;
  std::vector<fp8moe::io::tensor_entry> weights, scale_entries;
  std::vector<std::string> scale_names;
  codes.reserve(tensors.size());
  scales.reserve(tensors.size());
  scale_names.reserve(tensors.size());
  for (named& t : tensors) {
    if (!t.fp8) {
      weights.push_back(fp8moe::io::make_tensor_entry<float>(t.name, t.values, t.shape));
      continue;
    }
    scales.push_back(quantize_in_place(t));
    auto const& q = scales.back();
    codes.emplace_back(q.codes.size());
    std::memcpy(codes.back().data(), q.codes.data(), q.codes.size());
    weights.push_back({t.name, fp8moe::io::dtype::f8_e4m3, t.shape, codes.back()});
    scale_names.push_back(t.name + "_scale_inv");
    scale_entries.push_back(
        fp8moe::io::make_tensor_entry<float>(scale_names.back(), q.scale_inv, q.scale_shape));
  }
  std::vector<std::vector<fp8moe::io::tensor_entry>> shards =
      fp8moe::io::split_into_shards(weights, shard_bytes);
  shards.push_back(scale_entries);
  fp8moe::io::write_sharded_safetensors(dir, shards);
  fp8moe::io::write_deepseek_v3_config(dir / "config.json", c);
}

std::vector<std::int32_t> const tokens{5, 17, 299, 0, 42, 42, 123, 7, 256, 1, 88, 150};  // T = 12

/// Row t (of width n) of a row-major matrix.
std::vector<double> row_of(std::vector<double> const& m, std::size_t t, std::size_t n) {
  return {m.begin() + static_cast<std::ptrdiff_t>(t * n),
          m.begin() + static_cast<std::ptrdiff_t>((t + 1) * n)};
}

/// The largest |a - b| / max|b|.
double max_rel_diff(std::vector<double> const& a, std::vector<double> const& b) {
  REQUIRE(a.size() == b.size());
  double d = 0.0, m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(a[i] - b[i]));
    m = std::max(m, std::abs(b[i]));
  }
  return d / m;
}

/// Swaps rows [a*n, a*n+n) and [b*n, b*n+n) of w (rows,cols).
void swap_row_blocks(tensor& w, std::int64_t a, std::int64_t b, std::int64_t n) {
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t j = 0; j < w.cols(); ++j) std::swap(w(a * n + r, j), w(b * n + r, j));
}

}  // namespace

TEST_CASE(
    "ref model: an FP8 sharded checkpoint (scales in another shard) gives its F32 twin's logits exactly") {
  dsv3::ref::config const c = small_config();
  std::vector<named> tensors = random_tensors(c, 1);
  scratch_dir fp8_dir, f32_dir;
  write_fp8_sharded(fp8_dir.path(), c, tensors, 256 << 10);
  write_plain(f32_dir.path(), c, tensors, stored::f32);  // the dequantized values

  fp8moe::io::checkpoint const ck(fp8_dir.path());
  REQUIRE(ck.files().size() >= 3);
  std::string const kv_a = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight";  // (72,160): blocks [1,2]
  CHECK(ck.tensor(kv_a).type() == fp8moe::io::dtype::f8_e4m3);
  CHECK(ck.file_of(kv_a).path() != ck.file_of(kv_a + "_scale_inv").path());

  dsv3::ref::model const m8 = dsv3::ref::load(fp8_dir.path());
  dsv3::ref::model const m32 = dsv3::ref::load(f32_dir.path());
  CHECK(m8.weights.size() == tensors.size());  // the *_scale_inv are folded into their weights
  for (named const& t : tensors) {
    INFO(t.name);
    REQUIRE(m8.weights.at(t.name).data == std::vector<double>(t.values.begin(), t.values.end()));
  }
  std::vector<double> const l8 = dsv3::ref::logits(m8, tokens);
  std::vector<double> const l32 = dsv3::ref::logits(f32_dir.path(), tokens);
  REQUIRE(l8.size() == tokens.size() * 300);
  CHECK(l8 == l32);
  for (double v : l8) REQUIRE(std::isfinite(v));
  CHECK(dsv3::ref::mtp_logits(m8, tokens) == dsv3::ref::mtp_logits(m32, tokens));
}

TEST_CASE("ref model: FP8 weights are multiplied by their 128x128 scale blocks, partial blocks included") {
  scratch_dir d;
  // W (130, 260): every code 0x38 (1.0); scale_inv (2, 3) = 1..6: W[i,j] = scale_inv[i/128, j/128]
  std::vector<std::byte> codes(130 * 260, std::byte{0x38});
  std::vector<float> const scale{1, 2, 3, 4, 5, 6};
  std::vector<float> const wrong_scale{1, 2, 3, 4};
  std::vector<fp8moe::io::tensor_entry> const entries{
      {"w.weight", fp8moe::io::dtype::f8_e4m3, {130, 260}, codes},
      fp8moe::io::make_tensor_entry<float>("w.weight_scale_inv", scale, {2, 3}),
      {"no_scale.weight", fp8moe::io::dtype::f8_e4m3, {130, 260}, codes},
      {"bad_scale.weight", fp8moe::io::dtype::f8_e4m3, {130, 260}, codes},
      fp8moe::io::make_tensor_entry<float>("bad_scale.weight_scale_inv", wrong_scale, {2, 2})};
  fp8moe::io::write_safetensors(d / "model.safetensors", entries);
  fp8moe::io::checkpoint const ck(d.path());
  tensor const w = dsv3::ref::load_weight(ck, "w.weight");
  REQUIRE(w.shape == std::vector<std::int64_t>{130, 260});
  CHECK(w(0, 0) == 1.0);
  CHECK(w(127, 127) == 1.0);
  CHECK(w(0, 128) == 2.0);
  CHECK(w(127, 255) == 2.0);
  CHECK(w(0, 256) == 3.0);
  CHECK(w(0, 259) == 3.0);
  CHECK(w(128, 0) == 4.0);
  CHECK(w(129, 200) == 5.0);
  CHECK(w(129, 259) == 6.0);
  check_error([&] { dsv3::ref::load_weight(ck, "no_scale.weight"); },
              {"'no_scale.weight' is FP8", "'no_scale.weight_scale_inv' is missing"});
  check_error([&] { dsv3::ref::load_weight(ck, "bad_scale.weight"); },
              {"'bad_scale.weight_scale_inv'", "expected shape [2, 3]", "got [2, 2]"});
  scratch_dir orphan;  // a scale whose weight is missing
  std::vector<fp8moe::io::tensor_entry> const lone{
      fp8moe::io::make_tensor_entry<float>("orphan.weight_scale_inv", wrong_scale, {2, 2})};
  fp8moe::io::write_safetensors(orphan / "model.safetensors", lone);
  fp8moe::io::write_deepseek_v3_config(orphan / "config.json", small_config());
  check_error([&] { dsv3::ref::load(orphan.path()); }, {"'orphan.weight_scale_inv'", "without its weight"});
}

TEST_CASE("ref model: a BF16 checkpoint loads as stored and gives its F32 twin's logits") {
  dsv3::ref::config const c = small_config();
  std::vector<named> tensors = random_tensors(c, 2);
  scratch_dir bf_dir, f32_dir;
  write_plain(bf_dir.path(), c, tensors, stored::bf16);
  for (named& t : tensors)  // the twin: the BF16-rounded values in F32
    if (!t.name.ends_with("e_score_correction_bias"))
      for (float& v : t.values) v = static_cast<float>(fp8moe::bfloat16_t(v));
  write_plain(f32_dir.path(), c, tensors, stored::f32);
  dsv3::ref::model const mb = dsv3::ref::load(bf_dir.path());
  CHECK(mb.weights.at("model.norm.weight").data ==
        dsv3::ref::load(f32_dir.path()).weights.at("model.norm.weight").data);
  CHECK(dsv3::ref::logits(mb, tokens) == dsv3::ref::logits(f32_dir.path(), tokens));
}

TEST_CASE("ref model: logits are causal and prefix-consistent") {
  dsv3::ref::config const c = small_config();
  dsv3::ref::model m = random_model(c, 3);
  std::size_t const T = tokens.size(), V = 300;
  std::vector<double> const full = dsv3::ref::logits(m, tokens);
  REQUIRE(full.size() == T * V);
  for (std::size_t t : {std::size_t{3}, std::size_t{8}}) {
    INFO("t = ", t);
    std::vector<std::int32_t> changed = tokens;  // tokens after t change
    for (std::size_t s = t + 1; s < T; ++s)
      changed[s] = static_cast<std::int32_t>((changed[s] * 7 + 3) % 300);
    std::vector<double> const other = dsv3::ref::logits(m, changed);
    for (std::size_t s = 0; s <= t; ++s) CHECK(row_of(other, s, V) == row_of(full, s, V));
    CHECK(row_of(other, t + 1, V) != row_of(full, t + 1, V));  // the test can see a change
    // the logits of a prefix are the prefix of the logits
    std::vector<double> const prefix = dsv3::ref::logits(m, std::span(tokens).first(t + 1));
    CHECK(prefix ==
          std::vector<double>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>((t + 1) * V)));
  }
  // rows differ from each other and are not constant: the model is not degenerate
  CHECK(row_of(full, 0, V) != row_of(full, 1, V));
  CHECK(row_of(full, 4, V) != row_of(full, 5, V));  // same token 42 at positions 4 and 5

  // MTP: (T-1, V), row i predicts token i+2 from h_i and token i+1; causal the same way
  std::vector<double> const mtp = dsv3::ref::mtp_logits(m, tokens);
  REQUIRE(mtp.size() == (T - 1) * V);
  std::vector<std::int32_t> changed = tokens;
  changed[6] = 9;  // changes MTP rows 5.. (they read token 6), not rows 0..4
  std::vector<double> const mtp2 = dsv3::ref::mtp_logits(m, changed);
  for (std::size_t s = 0; s < 5; ++s) CHECK(row_of(mtp2, s, V) == row_of(mtp, s, V));
  CHECK(row_of(mtp2, 5, V) != row_of(mtp, 5, V));
  // the hidden state before or after the final norm: the final norm's gain makes them differ
  CHECK(dsv3::ref::mtp_logits(m, tokens, 1, dsv3::ref::mtp_input::pre_final_norm) != mtp);
  // the MTP layer's own embedding and head (random here, unlike the main ones) are used while the
  // checkpoint has them, else the main model's
  for (char const* own : {"model.layers.3.embed_tokens.weight", "model.layers.3.shared_head.head.weight"}) {
    INFO(own);
    dsv3::ref::model without = m;
    without.weights.erase(own);
    CHECK(dsv3::ref::mtp_logits(without, tokens) != mtp);
  }
  dsv3::ref::model shared = m;
  shared.weights.erase("model.layers.3.embed_tokens.weight");
  shared.weights.erase("model.layers.3.shared_head.head.weight");
  dsv3::ref::model copies = m;
  copies.weights.at("model.layers.3.embed_tokens.weight") = m.weights.at("model.embed_tokens.weight");
  copies.weights.at("model.layers.3.shared_head.head.weight") = m.weights.at("lm_head.weight");
  CHECK(dsv3::ref::mtp_logits(shared, tokens) == dsv3::ref::mtp_logits(copies, tokens));

  check_error([&] { dsv3::ref::mtp_logits(m, tokens, 2); }, {"'depth'", "got 2"});
  check_error([&] { dsv3::ref::mtp_logits(m, std::span(tokens).first(1)); }, {"'tokens'", "more than 1"});
}

TEST_CASE("ref model: MTP concatenates the embedding first, the hidden state second (section 3.2)") {
  dsv3::ref::config const c = small_config();
  dsv3::ref::model m = random_model(c, 6);
  std::size_t const V = 300;
  std::int64_t const H = c.hidden_size;
  auto const zero_columns = [&](dsv3::ref::model& x, std::int64_t from) {  // eh_proj (H, 2H)
    tensor& w = x.weights.at("model.layers.3.eh_proj.weight");
    for (std::int64_t r = 0; r < H; ++r)
      for (std::int64_t j = from; j < from + H; ++j) w(r, j) = 0.0;
  };
  using dsv3::ref::mtp_input;
  // hidden half [H, 2H) zeroed: the main hidden state is not read, so pre/post final norm agree
  dsv3::ref::model emb_only = m;
  zero_columns(emb_only, H);
  CHECK(dsv3::ref::mtp_logits(emb_only, tokens, 1, mtp_input::pre_final_norm) ==
        dsv3::ref::mtp_logits(emb_only, tokens, 1, mtp_input::post_final_norm));
  // embedding half [0, H) zeroed: row T-2 no longer reads token T-1, the only change below
  dsv3::ref::model hidden_only = m;
  zero_columns(hidden_only, 0);
  std::vector<std::int32_t> last = tokens;
  last.back() = 77;
  std::size_t const row = tokens.size() - 2;
  CHECK(row_of(dsv3::ref::mtp_logits(hidden_only, last), row, V) ==
        row_of(dsv3::ref::mtp_logits(hidden_only, tokens), row, V));
  CHECK(row_of(dsv3::ref::mtp_logits(m, last), row, V) != row_of(dsv3::ref::mtp_logits(m, tokens), row, V));
}

TEST_CASE("ref model: relabelling experts within a group or swapping heads leaves the logits unchanged") {
  dsv3::ref::config const c = small_config();
  dsv3::ref::model m = random_model(c, 4);
  std::vector<double> const base = dsv3::ref::logits(m, tokens);

  // experts 2 and 3 (group 1) of layer 1: gate rows, bias entries and expert weights together
  dsv3::ref::model e = m;
  std::string const p = "model.layers.1.mlp.";
  swap_row_blocks(e.weights.at(p + "gate.weight"), 2, 3, 1);
  std::swap(e.weights.at(p + "gate.e_score_correction_bias").data[2],
            e.weights.at(p + "gate.e_score_correction_bias").data[3]);
  for (char const* w : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"})
    std::swap(e.weights.at(p + "experts.2." + w), e.weights.at(p + "experts.3." + w));
  CHECK(max_rel_diff(dsv3::ref::logits(e, tokens), base) < 1e-13);
  // the gate rows alone: another model (the test can see a wrong relabelling)
  dsv3::ref::model g = m;
  swap_row_blocks(g.weights.at(p + "gate.weight"), 2, 3, 1);
  CHECK(max_rel_diff(dsv3::ref::logits(g, tokens), base) > 1e-6);

  // heads 0 and 1 of layer 2: q_b rows (dq each), kv_b rows (dn + dv each), o_proj columns (dv each)
  dsv3::ref::model h = m;
  std::string const a = "model.layers.2.self_attn.";
  swap_row_blocks(h.weights.at(a + "q_b_proj.weight"), 0, 1, 24);
  swap_row_blocks(h.weights.at(a + "kv_b_proj.weight"), 0, 1, 32);
  tensor& o = h.weights.at(a + "o_proj.weight");  // (H, nh*dv)
  for (std::int64_t r = 0; r < o.rows(); ++r)
    for (std::int64_t j = 0; j < 16; ++j) std::swap(o(r, j), o(r, 16 + j));
  CHECK(max_rel_diff(dsv3::ref::logits(h, tokens), base) < 1e-13);
  dsv3::ref::model q = m;  // q rows alone: another model
  swap_row_blocks(q.weights.at(a + "q_b_proj.weight"), 0, 1, 24);
  CHECK(max_rel_diff(dsv3::ref::logits(q, tokens), base) > 1e-6);
}

TEST_CASE("ref model: missing or misshapen tensors and bad tokens are errors naming them") {
  dsv3::ref::config const c = small_config();
  dsv3::ref::model m = random_model(c, 5);
  dsv3::ref::model missing = m;
  missing.weights.erase("model.layers.0.self_attn.kv_a_layernorm.weight");
  check_error([&] { dsv3::ref::logits(missing, tokens); },
              {"'model.layers.0.self_attn.kv_a_layernorm.weight'", "missing from the checkpoint"});
  dsv3::ref::model shape = m;
  shape.weights.at("lm_head.weight").shape = {150, 320};
  check_error([&] { dsv3::ref::logits(shape, tokens); }, {"'lm_head.weight'", "[300, 160]", "[150, 320]"});
  std::vector<std::int32_t> bad{1, 2, 300};
  check_error([&] { dsv3::ref::logits(m, bad); }, {"'tokens'", "[0, 300)", "got 300"});
  // tie_word_embeddings: the head is the embedding, lm_head.weight is not read
  dsv3::ref::model tied = m;
  tied.cfg.tie_word_embeddings = true;
  tied.weights.erase("lm_head.weight");
  dsv3::ref::model untied = m;
  untied.weights.at("lm_head.weight") = m.weights.at("model.embed_tokens.weight");
  CHECK(dsv3::ref::logits(tied, tokens) == dsv3::ref::logits(untied, tokens));
}
