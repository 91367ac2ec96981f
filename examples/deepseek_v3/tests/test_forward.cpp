// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The DeepSeek-V3 example's parameters and forward (params.hpp, layers.hpp, forward.hpp, model.hpp):
// the bound tensors are exactly hf_inventory's; loading keeps FP8 bytes and scale_inv blocks; the
// whole tiny and nano models in fp32 against href's independent float64 forward (reference_forward.hpp);
// naive == absorbed MLA; the FP8 checkpoint in precision fp8 against its dequantized twin in fp32
// (DeepGEMM's calc_diff); bf16 against fp32; bad token ids rejected before anything is written.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "config.hpp"
#include "hf_names.hpp"
#include "init.hpp"
#include "model.hpp"
#include "reference_forward.hpp"
#include "test_support.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace {

/// A fresh checkpoint directory under the temp directory, removed at scope exit.
struct temp_checkpoint {
  fs::path dir;
  temp_checkpoint(std::string const& preset, std::string const& dtype, std::uint64_t seed) {
    dir = fs::temp_directory_path() /
          ("dsv3_test_forward_" + preset + "_" + dtype + "_" + std::to_string(seed) + "_" +
           std::to_string(
               static_cast<unsigned long long>(std::hash<std::string>{}(fs::current_path().string()))));
    fs::remove_all(dir);
    dsv3::write_random_checkpoint(dsv3::preset(preset), dir, dtype, seed);
  }
  ~temp_checkpoint() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

using dsv3::test::tokens_for;

std::vector<double> to_double(fp8moe::matrix_view<float const> v) {
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(v.size()));
  for (std::int64_t r = 0; r < v.rows; ++r)
    for (std::int64_t c = 0; c < v.cols; ++c) out.push_back(v(r, c));
  return out;
}

using dsv3::test::max_rel;

}  // namespace

TEST_CASE("params bind exactly the tensors of hf_inventory, with their shapes and fp8 marks") {
  for (char const* name : {"tiny", "nano", "671b"}) {
    CAPTURE(name);
    auto const cfg = dsv3::preset(name);
    auto const inv = dsv3::hf_inventory(cfg);
    auto const bound = dsv3::bound_tensors(cfg);
    REQUIRE(bound.size() == inv.size());
    for (std::size_t i = 0; i < inv.size(); ++i) {
      CHECK(bound[i].name == inv[i].name);
      CHECK(bound[i].shape == inv[i].shape);
      CHECK(bound[i].fp8 == inv[i].fp8);
    }
  }
}

TEST_CASE("load keeps the FP8 bytes and weight_scale_inv blocks; fp32 holds their product") {
  temp_checkpoint const ck("tiny", "fp8", 7);
  auto const p8 = dsv3::load_params(ck.dir, dsv3::precision::fp8);
  auto const p32 = dsv3::load_params(ck.dir, dsv3::precision::fp32);
  CHECK(p8.bytes == dsv3::param_bytes(p8.cfg, dsv3::precision::fp8));
  CHECK(p8.bytes < p32.bytes);
  fp8moe::io::checkpoint const file(ck.dir);
  // kv_a_proj_with_mqa: 144 rows, a partial 128-row block (scale grid 2 x 2)
  std::string const name = "model.layers.1.self_attn.kv_a_proj_with_mqa.weight";
  auto const& w8 = p8.layers[1].attn.wkv_a.fp8;
  auto const& w32 = p32.layers[1].attn.wkv_a.f32;
  REQUIRE(w8.data.rows == 144);
  REQUIRE(w8.scales.rows == 2);
  REQUIRE(w8.scales.cols == 2);
  auto const bytes = file.tensor(name).bytes;
  auto const scales = file.tensor(name + "_scale_inv").as<float>();
  for (std::int64_t r = 0; r < w8.data.rows; ++r)
    for (std::int64_t c = 0; c < w8.data.cols; ++c) {
      auto const stored = static_cast<std::uint8_t>(bytes[static_cast<std::size_t>(r * w8.data.cols + c)]);
      REQUIRE(w8.data(r, c).bits() == stored);
      float const s = scales[static_cast<std::size_t>((r / 128) * 2 + c / 128)];
      REQUIRE(w8.scales(r / 128, c / 128) == s);
      REQUIRE(w32(r, c) == static_cast<float>(w8.data(r, c)) * s);
    }
  // the router gate and the head stay float in precision fp8 (DeepSeek keeps them out of FP8)
  CHECK(p8.layers[1].moe.gate.f32.data != nullptr);
  CHECK(p8.lm_head.f32.data != nullptr);
  CHECK(p8.layers[1].attn.wkv_b_float(3, 5) == p32.layers[1].attn.wkv_b.f32(3, 5));
  // [gate; up] as one weight: rows [0, I) are gate_proj, rows [I, 2I) up_proj, scales included
  for (auto const* pp : {&p8, &p32}) {
    auto const& m = pp->layers[2].moe.experts[3];
    REQUIRE(m.gate_up.rows == 2 * m.gate.rows);
    for (std::int64_t r = 0; r < m.gate.rows; r += 7)
      for (std::int64_t c = 0; c < m.gate.cols; c += 5) {
        if (pp == &p8) {
          REQUIRE(m.gate_up.fp8.data(r, c).bits() == m.gate.fp8.data(r, c).bits());
          REQUIRE(m.gate_up.fp8.data(m.gate.rows + r, c).bits() == m.up.fp8.data(r, c).bits());
          REQUIRE(m.gate_up.fp8.scale_at(m.gate.rows + r, c) == m.up.fp8.scale_at(r, c));
          REQUIRE(m.gate_up.fp8.scale_at(r, c) == m.gate.fp8.scale_at(r, c));
        } else {
          REQUIRE(m.gate_up.f32(r, c) == m.gate.f32(r, c));
          REQUIRE(m.gate_up.f32(m.gate.rows + r, c) == m.up.f32(r, c));
        }
      }
  }
}

TEST_CASE("fp32 logits of the whole tiny and nano models match the float64 reference forward") {
  // Tolerance: float32 rounding. Each product accumulates K <= 512 terms in float (relative error
  // <= ~K u with u = 2^-24, typically sqrt(K) u ~ 1.4e-6), about 40 chained ops per block, YaRN
  // angles computed in float (pos * inv_freq: relative 6e-8 of angles < 64 rad). The max error
  // relative to the largest logit stays below 1e-5 (measured 9.5e-7 tiny, 4.4e-7 nano); a wrong mask, scale,
  // pair convention or routing choice moves the logits by O(1) relative.
  for (std::string const name : {"tiny", "nano"}) {
    CAPTURE(name);
    temp_checkpoint const ck(name, "f32", 3);
    auto const cfg = dsv3::preset(name);
    std::int64_t const T = name == "tiny" ? 40 : 16;
    auto const tokens = tokens_for(cfg.vocab_size, T);
    dsv3::model m(ck.dir, dsv3::precision::fp32);
    auto const ours = to_double(m.forward(tokens));
    auto const ref = dsv3::ref::logits(ck.dir, tokens);
    double const err = max_rel(ours, ref);
    MESSAGE(name, ": max |fp32 - float64| / max |logit| = ", err);
    CHECK(err < 1e-5);
  }
}

TEST_CASE("naive and absorbed MLA give the same logits") {
  temp_checkpoint const ck("tiny", "f32", 5);
  auto const tokens = tokens_for(1024, 33);
  dsv3::model naive(ck.dir, dsv3::precision::fp32, {.attention = dsv3::mla_form::naive});
  dsv3::model absorbed(ck.dir, dsv3::precision::fp32, {.attention = dsv3::mla_form::absorbed});
  auto const a = to_double(naive.forward(tokens));
  auto const b = to_double(absorbed.forward(tokens));
  // the two forms sum the same products in another order (float rounding only): 1e-5 as above
  // (measured 6.9e-7)
  double const err = max_rel(b, a);
  MESSAGE("max |absorbed - naive| / max |logit| = ", err);
  CHECK(err < 1e-5);
  CHECK(err > 0.0);  // really two code paths
}

TEST_CASE("the FP8 checkpoint in precision fp8 matches its dequantized twin in fp32") {
  temp_checkpoint const ck("tiny", "fp8", 11);
  auto const tokens = tokens_for(1024, 64);
  dsv3::model f32(ck.dir, dsv3::precision::fp32);
  auto const ref = to_double(f32.forward(tokens));
  auto const& a = f32.acts();
  for (auto const& [label, recipe] :
       {std::pair{std::string("act_quant (inference)"), dsv3::deepseek_v3_inference},
        std::pair{std::string("training quantizer"), dsv3::deepseek_v3_training}}) {
    CAPTURE(label);
    dsv3::model f8(ck.dir, dsv3::precision::fp8, {.fp8_recipe = recipe});
    // (1) every FP8 GEMM on the fp32 model's own inputs against the fp32 GEMM: DeepGEMM's test
    // threshold for FP8 against the higher-precision product (reference fp8_gemm.md), calc_diff < 1e-3
    // (one activation quantization: relative RMS error ~3% of E4M3, calc_diff ~ err^2/2 ~ 5e-4).
    dsv3::context c8, c32;
    c8.prec = dsv3::precision::fp8;
    c8.recipe = recipe;
    auto const& w8 = f8.parameters();
    auto const& w32 = f32.parameters();
    auto check_gemm = [&](char const* what, fp8moe::matrix_view<float const> x, dsv3::linear_weight const& q,
                          dsv3::linear_weight const& f) {
      CAPTURE(what);
      REQUIRE(q.fp8.data.data != nullptr);
      fp8moe::host_matrix<float> y8(x.rows, q.rows), y32(x.rows, q.rows);
      dsv3::linear(c8, x, q, y8.view());
      dsv3::linear(c32, x, f, y32.view());
      double const d = fp8moe::test::calc_diff(y8.storage(), y32.storage());
      CHECK(d < 1e-3);
      CHECK(d > 0.0);
    };
    for (std::size_t l = 0; l < 2; ++l) {
      auto const& L = a.layers[l];
      auto const &q = w8.layers[l], &f = w32.layers[l];
      check_gemm("q_a_proj", L.attn_in, q.attn.wq_a, f.attn.wq_a);
      check_gemm("q_b_proj", L.attn.cq_norm, q.attn.wq_b, f.attn.wq_b);
      check_gemm("kv_a_proj_with_mqa", L.attn_in, q.attn.wkv_a, f.attn.wkv_a);
      check_gemm("kv_b_proj", L.attn.latent, q.attn.wkv_b, f.attn.wkv_b);
      check_gemm("o_proj", L.attn.o, q.attn.wo, f.attn.wo);
      auto const& mq = l == 0 ? q.mlp : q.moe.shared;
      auto const& mf = l == 0 ? f.mlp : f.moe.shared;
      auto const& acts = l == 0 ? L.mlp : L.moe.shared;
      check_gemm("gate_proj", L.ffn_in, mq.gate, mf.gate);
      check_gemm("up_proj", L.ffn_in, mq.up, mf.up);
      check_gemm("down_proj", acts.act, mq.down, mf.down);
    }
    // (2) the whole model with the routing held fixed to the fp32 run's (a random model's router
    // scores are near ties, so the 1x128 quantization noise alone flips ~7% of the top-k slots, each
    // an O(1) change of its token's output). About 20 quantized GEMMs feed the logits along the
    // residual stream, each adding calc_diff ~5e-4 of independent noise, diluted by the unquantized
    // residual: bound 5e-3 (measured 2.5e-3 with either quantizer).
    auto const fixed = to_double(f8.forward(tokens, &a));
    double const diff = fp8moe::test::calc_diff(fixed, ref);
    MESSAGE(label, ": calc_diff(fp8 routing fixed, fp32) = ", diff);
    CHECK(diff < 5e-3);
    CHECK(diff > 0.0);
    // (3) free routing: reported, and far from garbage (wrong scales give calc_diff ~1)
    double const free_diff = fp8moe::test::calc_diff(to_double(f8.forward(tokens)), ref);
    MESSAGE(label, ": calc_diff(fp8 own routing, fp32) = ", free_diff);
    CHECK(free_diff < 5e-2);
  }
}

TEST_CASE("bf16 logits stay close to fp32") {
  temp_checkpoint const ck("tiny", "bf16", 13);
  auto const tokens = tokens_for(1024, 48);
  dsv3::model f32(ck.dir, dsv3::precision::fp32);
  dsv3::model b16(ck.dir, dsv3::precision::bf16);
  auto const ref = to_double(f32.forward(tokens));
  auto const ours = to_double(b16.forward(tokens));
  // bf16 keeps 8 significant bits (u = 2^-9): every activation rounded adds a relative error <= 2e-3;
  // over ~40 roundings per block the relative RMS error stays ~1e-2, so calc_diff ~ err^2/2 < 1e-3.
  // DeepGEMM's BF16 bound (1e-5) is per GEMM; this is the whole model with every activation rounded.
  double const diff = fp8moe::test::calc_diff(ours, ref);
  MESSAGE("calc_diff(bf16, fp32) = ", diff);
  CHECK(diff < 1e-3);
  CHECK(diff > 0.0);
}

TEST_CASE("bad token ids are rejected before anything is written") {
  temp_checkpoint const ck("nano", "f32", 17);
  dsv3::model m(ck.dir, dsv3::precision::fp32);
  std::vector<std::int32_t> good{1, 2, 3};
  auto const before = to_double(m.forward(good));
  std::vector<std::int32_t> bad{1, 64, 3};  // nano: vocab 64
  CHECK_THROWS_WITH_AS(m.forward(bad), doctest::Contains("tokens"), fp8moe::error);
  CHECK_THROWS_WITH_AS(m.forward(bad), doctest::Contains("64 at position 1"), fp8moe::error);
  std::vector<std::int32_t> negative{-1};
  CHECK_THROWS_AS(m.forward(negative), fp8moe::error);
  CHECK_THROWS_AS(m.forward(std::vector<std::int32_t>{}), fp8moe::error);
  // routing held fixed to a forward over other tokens is refused too
  dsv3::model other(ck.dir, dsv3::precision::fp32);
  std::vector<std::int32_t> other_tokens{3, 2, 1};
  other.forward(other_tokens);
  CHECK_THROWS_WITH_AS(m.forward(good, &other.acts()), doctest::Contains("routing_from"), fp8moe::error);
  // the activations of the last good call are untouched
  CHECK(to_double(m.acts().logits) == before);
  // routing held fixed to its own last forward reproduces it exactly
  dsv3::model same(ck.dir, dsv3::precision::fp32);
  CHECK(to_double(same.forward(good, &m.acts())) == before);
  CHECK_THROWS_WITH_AS(dsv3::compute_logits(ck.dir, bad, dsv3::precision::fp32), doctest::Contains("tokens"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(dsv3::parse_precision("fp16"), doctest::Contains("precision"), fp8moe::error);
}

TEST_CASE("compute_logits returns T x vocab, row-major, equal to model::forward") {
  temp_checkpoint const ck("nano", "f32", 19);
  auto const tokens = tokens_for(64, 7);
  auto const v = dsv3::compute_logits(ck.dir, tokens, dsv3::precision::fp32);
  dsv3::model m(ck.dir, dsv3::precision::fp32);
  auto const w = to_double(m.forward(tokens));
  REQUIRE(v.size() == 7u * 64u);
  for (std::size_t i = 0; i < v.size(); ++i) REQUIRE(static_cast<double>(v[i]) == w[i]);
}
