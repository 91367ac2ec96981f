// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Checks of the float64 oracle dsv3::ref layer by layer, on hand-computed cases: stored-type
// decoding, linear, RMSNorm, embedding, interleaved RoPE, YaRN frequencies and softmax scale of the
// published 671B config, the MoE gate (-inf vs 0.0 group fill, top-2 group score, bias for
// selection only), SwiGLU, MLA on a one-head model worked out by hand, the MoE block, residuals.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "../../../tests/io/io_test_support.hpp"
#include "fp8moe/numeric/bfloat16.hpp"
#include "fp8moe/numeric/float8.hpp"
#include "reference_forward.hpp"

namespace {

using dsv3::ref::tensor;
using fp8moe::test::check_error;

/// A tensor of the given shape and values (row-major).
tensor make(std::vector<std::int64_t> shape, std::vector<double> values) {
  tensor t(std::move(shape));
  REQUIRE(values.size() == t.data.size());
  t.data = std::move(values);
  return t;
}

bool same_double(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}

/// The DeepSeek-V3 (671B) config.json values of reference §2.1.
dsv3::ref::config published_671b() {
  dsv3::ref::config c;
  c.vocab_size = 129280;
  c.hidden_size = 7168;
  c.intermediate_size = 18432;
  c.moe_intermediate_size = 2048;
  c.num_hidden_layers = 61;
  c.num_attention_heads = 128;
  c.num_key_value_heads = 128;
  c.max_position_embeddings = 163840;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = 256;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 8;
  c.n_group = 8;
  c.topk_group = 4;
  c.first_k_dense_replace = 3;
  c.moe_layer_freq = 1;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.routed_scaling_factor = 2.5;
  c.norm_topk_prob = true;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000;
  c.rope_scaling = fp8moe::io::rope_scaling_params{.type = "yarn",
                                                   .factor = 40,
                                                   .original_max_position_embeddings = 4096,
                                                   .beta_fast = 32,
                                                   .beta_slow = 1,
                                                   .mscale = 1.0,
                                                   .mscale_all_dim = 1.0};
  c.num_nextn_predict_layers = 1;
  return c;
}

/// A 4-expert gate config: 2 groups of 2, one group kept, top-2, sigmoid, noaux_tc, x2.5.
dsv3::ref::config gate_config() {
  dsv3::ref::config c = published_671b();
  c.n_routed_experts = 4;
  c.n_group = 2;
  c.topk_group = 1;
  c.num_experts_per_tok = 2;
  return c;
}

/// Logits whose sigmoid is p: ln(p / (1 - p)).
tensor logits_for(std::vector<double> p) {
  std::vector<double> l;
  for (double v : p) l.push_back(std::log(v / (1.0 - v)));
  return make({1, static_cast<std::int64_t>(p.size())}, l);
}

}  // namespace

TEST_CASE("ref: stored element types decode as the formats define them") {
  using dsv3::ref::decode_bf16;
  using dsv3::ref::decode_e4m3;
  using dsv3::ref::decode_e5m2;
  using dsv3::ref::decode_f16;
  // E4M3 (fn): bias 7, 3 mantissa bits, max 448, NaN at S.1111.111, subnormal m * 2^-9
  CHECK(decode_e4m3(0x38) == 1.0);
  CHECK(decode_e4m3(0xB8) == -1.0);
  CHECK(decode_e4m3(0x7E) == 448.0);
  CHECK(decode_e4m3(0x77) == 240.0);  // 1.111b * 2^7
  CHECK(decode_e4m3(0x08) == std::ldexp(1.0, -6));
  CHECK(decode_e4m3(0x01) == std::ldexp(1.0, -9));
  CHECK(decode_e4m3(0x07) == 7 * std::ldexp(1.0, -9));
  CHECK(std::isnan(decode_e4m3(0x7F)));
  CHECK(std::isnan(decode_e4m3(0xFF)));
  CHECK(std::signbit(decode_e4m3(0x80)));
  // E5M2: bias 15, 2 mantissa bits, inf at 0.11111.00
  CHECK(decode_e5m2(0x3C) == 1.0);
  CHECK(decode_e5m2(0x7B) == 57344.0);
  CHECK(decode_e5m2(0x7C) == std::numeric_limits<double>::infinity());
  CHECK(std::isnan(decode_e5m2(0x7D)));
  CHECK(decode_e5m2(0x01) == std::ldexp(1.0, -16));
  // BF16 and F16
  CHECK(decode_bf16(0x3F80) == 1.0);
  CHECK(decode_bf16(0xC040) == -3.0);
  CHECK(decode_bf16(0x0001) == std::ldexp(1.0, -133));
  CHECK(decode_f16(0x3C00) == 1.0);
  CHECK(decode_f16(0x7BFF) == 65504.0);
  CHECK(decode_f16(0x0001) == std::ldexp(1.0, -24));
  CHECK(decode_f16(0xC000) == -2.0);
  CHECK(decode_f16(0x7C00) == std::numeric_limits<double>::infinity());
  // every code against fp8moe::numeric, an independent implementation
  for (int b = 0; b < 256; ++b) {
    INFO("byte ", b);
    auto const u = static_cast<std::uint8_t>(b);
    CHECK(same_double(decode_e4m3(u), fp8moe::float8_e4m3_t::from_bits(u).to_float()));
    CHECK(same_double(decode_e5m2(u), fp8moe::float8_e5m2_t::from_bits(u).to_float()));
  }
  for (int b = 0; b < 65536; b += 7) {
    auto const u = static_cast<std::uint16_t>(b);
    REQUIRE(same_double(decode_bf16(u), static_cast<float>(fp8moe::bfloat16_t::from_bits(u))));
  }
}

TEST_CASE("ref: linear, RMSNorm of a constant row, embedding") {
  // y = x W^T: x (1,2), W (3,2)
  tensor const y = dsv3::ref::linear(make({1, 2}, {1, 2}), make({3, 2}, {1, 0, 0, 1, 3, 4}));
  CHECK(y.shape == std::vector<std::int64_t>{1, 3});
  CHECK(y.data == std::vector<double>{1, 2, 11});
  check_error(
      [] {
        dsv3::ref::linear(make({1, 3}, {1, 2, 3}), make({3, 2}, {1, 0, 0, 1, 3, 4}));
      },
      {"dsv3::ref", "'x'", "[T, 2]", "[1, 3]"});

  // a constant row c: mean(x^2) = c^2, y_i = w_i c / sqrt(c^2 + eps)
  double const eps = 1e-6;
  tensor const n =
      dsv3::ref::rms_norm(make({2, 4}, {3, 3, 3, 3, -2, -2, -2, -2}), make({4}, {1, 2, 3, 4}), eps);
  for (int i = 0; i < 4; ++i) {
    CHECK(n(0, i) == doctest::Approx((i + 1) * 3.0 / std::sqrt(9.0 + eps)).epsilon(1e-15));
    CHECK(n(1, i) == doctest::Approx(-(i + 1) * 2.0 / std::sqrt(4.0 + eps)).epsilon(1e-15));
  }
  // a zero row stays zero (eps keeps it finite)
  tensor const z = dsv3::ref::rms_norm(make({1, 2}, {0, 0}), make({2}, {1, 1}), eps);
  CHECK(z.data == std::vector<double>{0, 0});

  tensor const table = make({3, 2}, {10, 11, 20, 21, 30, 31});  // (V,H)
  std::vector<std::int32_t> tokens{2, 0, 2};
  tensor const e = dsv3::ref::embedding(table, tokens);
  CHECK(e.data == std::vector<double>{30, 31, 10, 11, 30, 31});
  std::vector<std::int32_t> bad{1, 3};
  check_error([&] { dsv3::ref::embedding(table, bad); }, {"'tokens'", "[0, 3)", "got 3", "position 1"});
  std::vector<std::int32_t> negative{-1};
  check_error([&] { dsv3::ref::embedding(table, negative); }, {"'tokens'", "got -1"});
}

TEST_CASE("ref: RoPE rotates interleaved pairs and is the identity at position 0") {
  std::vector<double> const f{0.5, 0.25};  // (dr/2)
  std::vector<double> x{0.3, -1.2, 2.0, 0.7};
  std::vector<double> const x0 = x;
  dsv3::ref::rope_rotate(x, 0, f, 1.0);
  CHECK(x == x0);  // cos 0 = 1, sin 0 = 0: exact

  // position 2: pair (0,1) by angle 1, pair (2,3) by angle 0.5; (1,0) -> (cos a, sin a)
  std::vector<double> y{1, 0, 1, 0};
  dsv3::ref::rope_rotate(y, 2, f, 1.0);
  CHECK(y[0] == doctest::Approx(std::cos(1.0)));
  CHECK(y[1] == doctest::Approx(std::sin(1.0)));
  CHECK(y[2] == doctest::Approx(std::cos(0.5)));
  CHECK(y[3] == doctest::Approx(std::sin(0.5)));
  // (0,1) -> (-sin a, cos a); the attention factor multiplies both
  std::vector<double> w{0, 1, 0, 1};
  dsv3::ref::rope_rotate(w, 2, f, 3.0);
  CHECK(w[0] == doctest::Approx(-3.0 * std::sin(1.0)));
  CHECK(w[1] == doctest::Approx(3.0 * std::cos(1.0)));
  CHECK(w[2] == doctest::Approx(-3.0 * std::sin(0.5)));
  CHECK(w[3] == doctest::Approx(3.0 * std::cos(0.5)));
}

TEST_CASE("ref: YaRN frequencies of the published config switch at the section 1.4 boundaries 10 and 23") {
  dsv3::ref::config c = published_671b();
  std::vector<double> const f = dsv3::ref::rope_inv_freq(c);
  REQUIRE(f.size() == 32);
  auto const base = [](int i) { return std::pow(10000.0, -2.0 * i / 64.0); };
  // low = floor(64 ln(4096/(2 pi 32)) / (2 ln 10000)) = floor(10.47) = 10,
  // high = ceil(64 ln(4096/(2 pi)) / (2 ln 10000)) = ceil(22.51) = 23
  for (int i = 0; i <= 10; ++i) CHECK(f[i] == doctest::Approx(base(i)).epsilon(1e-14));
  for (int i = 23; i < 32; ++i) CHECK(f[i] == doctest::Approx(base(i) / 40.0).epsilon(1e-14));
  for (int i = 11; i < 23; ++i) {  // the linear band: ramp (i - 10) / 13
    double const ramp = (i - 10) / 13.0;
    CHECK(f[i] == doctest::Approx(base(i) / 40.0 * ramp + base(i) * (1.0 - ramp)).epsilon(1e-14));
    CHECK(f[i] < base(i));
    CHECK(f[i] > base(i) / 40.0);
  }
  // softmax scale: 192^-0.5 * (0.1 ln 40 + 1)^2 = 0.135234 (reference §1.3); cos/sin factor 1
  double const m = 0.1 * std::log(40.0) + 1.0;
  CHECK(dsv3::ref::softmax_scale(c) == doctest::Approx(m * m / std::sqrt(192.0)).epsilon(1e-15));
  CHECK(std::abs(dsv3::ref::softmax_scale(c) - 0.135234) < 5e-7);
  CHECK(dsv3::ref::rope_attention_factor(c) == 1.0);

  // mscale_all_dim 0 (transformers' default): no softmax mscale, cos/sin times mscale(40, 1)
  c.rope_scaling->mscale_all_dim = 0.0;
  CHECK(dsv3::ref::softmax_scale(c) == doctest::Approx(1.0 / std::sqrt(192.0)).epsilon(1e-15));
  CHECK(dsv3::ref::rope_attention_factor(c) == doctest::Approx(m).epsilon(1e-15));

  // without rope_scaling: plain RoPE
  c.rope_scaling.reset();
  std::vector<double> const plain = dsv3::ref::rope_inv_freq(c);
  for (int i = 0; i < 32; ++i) CHECK(plain[i] == doctest::Approx(base(i)).epsilon(1e-14));
  CHECK(dsv3::ref::softmax_scale(c) == doctest::Approx(1.0 / std::sqrt(192.0)).epsilon(1e-15));
  CHECK(dsv3::ref::rope_attention_factor(c) == 1.0);
}

TEST_CASE("ref: gate masks dropped groups with -inf, where a 0.0 fill picks another expert") {
  dsv3::ref::config const c = gate_config();
  // scores s = (0.9, 0.45, 0.3, 0.3), bias (0, -0.5, 0, 0): biased (0.9, -0.05, 0.3, 0.3);
  // group scores (top-2 sums) 0.85 and 0.6: group 0 = experts {0, 1} is kept.
  tensor const logits = logits_for({0.9, 0.45, 0.3, 0.3});
  std::vector<double> const bias{0, -0.5, 0, 0};
  dsv3::ref::routing const r = dsv3::ref::moe_gate(c, logits, bias);
  CHECK(r.experts == std::vector<std::int64_t>{0, 1});
  // weights from the unbiased scores: 2.5 * 0.9/1.35 and 2.5 * 0.45/1.35
  REQUIRE(r.weights.size() == 2);
  CHECK(r.weights[0] == doctest::Approx(5.0 / 3.0).epsilon(1e-14));
  CHECK(r.weights[1] == doctest::Approx(5.0 / 6.0).epsilon(1e-14));
  // transformers' 0.0 fill: expert 2 of the dropped group (0.0) beats expert 1 (-0.05)
  dsv3::ref::routing const zero = dsv3::ref::moe_gate(c, logits, bias, 0.0);
  CHECK(zero.experts == std::vector<std::int64_t>{0, 2});
}

TEST_CASE(
    "ref: gate scores a group by its top-2 sum (noaux_tc), its max (group_limited_greedy), or not at all") {
  dsv3::ref::config c = gate_config();
  tensor const logits = logits_for({0.8, 0.1, 0.5, 0.5});
  // noaux_tc: group sums 0.9 and 1.0 -> group 1 -> experts 2, 3 (tie: lower index first)
  dsv3::ref::routing r = dsv3::ref::moe_gate(c, logits, {});
  CHECK(r.experts == std::vector<std::int64_t>{2, 3});
  CHECK(r.weights[0] == doctest::Approx(1.25).epsilon(1e-14));
  CHECK(r.weights[1] == doctest::Approx(1.25).epsilon(1e-14));
  // max: 0.8 and 0.5 -> group 0
  c.topk_method = "group_limited_greedy";
  CHECK(dsv3::ref::moe_gate(c, logits, {}).experts == std::vector<std::int64_t>{0, 1});
  // greedy: no groups
  c.topk_method = "greedy";
  CHECK(dsv3::ref::moe_gate(c, logits, {}).experts == std::vector<std::int64_t>{0, 2});
}

TEST_CASE("ref: gate selects with the bias and weighs with the unbiased scores; softmax scoring") {
  dsv3::ref::config c = gate_config();
  c.n_group = 1;
  c.topk_group = 1;
  // s = (0.6, 0.5, 0.55, 0.2), bias (0, 0.2, 0, 0): choice (0.6, 0.7, 0.55, 0.2) -> experts 1, 0
  std::vector<double> const bias{0, 0.2, 0, 0};
  dsv3::ref::routing const r = dsv3::ref::moe_gate(c, logits_for({0.6, 0.5, 0.55, 0.2}), bias);
  CHECK(r.experts == std::vector<std::int64_t>{1, 0});
  CHECK(r.weights[0] == doctest::Approx(2.5 * 0.5 / 1.1).epsilon(1e-14));
  CHECK(r.weights[1] == doctest::Approx(2.5 * 0.6 / 1.1).epsilon(1e-14));

  // softmax of (0, ln 2, ln 3, ln 4) = (0.1, 0.2, 0.3, 0.4); not normalized; scale 1
  c.scoring_func = "softmax";
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 1.0;
  dsv3::ref::routing const s =
      dsv3::ref::moe_gate(c, make({1, 4}, {0, std::log(2.0), std::log(3.0), std::log(4.0)}), {});
  CHECK(s.experts == std::vector<std::int64_t>{3, 2});
  CHECK(s.weights[0] == doctest::Approx(0.4).epsilon(1e-14));
  CHECK(s.weights[1] == doctest::Approx(0.3).epsilon(1e-14));

  std::vector<double> const short_bias{0, 0};
  check_error(
      [&] {
        dsv3::ref::moe_gate(c, make({1, 4}, {0, 0, 0, 0}), short_bias);
      },
      {"'bias'", "expected 4", "got 2"});
  check_error([&] { dsv3::ref::moe_gate(c, make({1, 3}, {0, 0, 0}), {}); }, {"'logits'", "[T, 4]"});
}

TEST_CASE("ref: SwiGLU MLP and residual decoder layer worked by hand") {
  dsv3::ref::model m;
  m.cfg = gate_config();
  m.cfg.hidden_size = 2;
  // inter 1: gate picks x0, up picks x1, down spreads (2, 3): y = silu(x0) x1 (2, 3)
  m.weights["mlp.gate_proj.weight"] = make({1, 2}, {1, 0});
  m.weights["mlp.up_proj.weight"] = make({1, 2}, {0, 1});
  m.weights["mlp.down_proj.weight"] = make({2, 1}, {2, 3});
  tensor const y = dsv3::ref::swiglu_mlp(m, "mlp.", make({1, 2}, {1.0, 2.0}), 1);
  double const h = 1.0 / (1.0 + std::exp(-1.0)) * 2.0;
  CHECK(y(0, 0) == doctest::Approx(2 * h).epsilon(1e-15));
  CHECK(y(0, 1) == doctest::Approx(3 * h).epsilon(1e-15));
  check_error(
      [&] {
        dsv3::ref::swiglu_mlp(m, "mlp.", make({1, 2}, {1.0, 2.0}), 2);
      },
      {"'mlp.gate_proj.weight'", "expected shape [2, 2]", "got [1, 2]"});
  check_error(
      [&] {
        dsv3::ref::swiglu_mlp(m, "other.", make({1, 2}, {1.0, 2.0}), 1);
      },
      {"'other.gate_proj.weight'", "missing"});
}

TEST_CASE("ref: MLA of a one-head model, worked by hand") {
  // hidden 2, one head, plain q_proj, nope 1, rope 2, v 1, kv rank 1, theta such that f_0 = 1.
  dsv3::ref::model m;
  dsv3::ref::config& c = m.cfg;
  c = published_671b();
  c.hidden_size = 2;
  c.num_attention_heads = 1;
  c.q_lora_rank.reset();
  c.qk_nope_head_dim = 1;
  c.qk_rope_head_dim = 2;
  c.v_head_dim = 1;
  c.kv_lora_rank = 1;
  c.rope_scaling.reset();
  c.rms_norm_eps = 1e-6;
  std::string const p = "model.layers.0.self_attn.";
  m.weights[p + "q_proj.weight"] = make({3, 2}, {1, 0, 1, 0, 0, 1});  // q = [x0 | (x0, x1)]
  m.weights[p + "kv_a_proj_with_mqa.weight"] =
      make({3, 2}, {1, 0, 0, 1, 1, 0});  // [c = x0 | k_pe = (x1, x0)]
  m.weights[p + "kv_a_layernorm.weight"] = make({1}, {1});
  m.weights[p + "kv_b_proj.weight"] = make({2, 1}, {2, 3});  // [k_nope = 2n | v = 3n]
  m.weights[p + "o_proj.weight"] = make({2, 1}, {1, -1});    // out = (o, -o)

  double const x[2][2] = {{1.0, 0.5}, {-2.0, 1.0}};
  tensor const out = dsv3::ref::mla(m, p, make({2, 2}, {x[0][0], x[0][1], x[1][0], x[1][1]}));
  REQUIRE(out.shape == std::vector<std::int64_t>{2, 2});

  auto const n = [&](int s) { return x[s][0] / std::sqrt(x[s][0] * x[s][0] + 1e-6); };  // normed latent
  auto const rot = [](double a, double b, double angle) {
    return std::pair{a * std::cos(angle) - b * std::sin(angle), a * std::sin(angle) + b * std::cos(angle)};
  };
  // position 0 sees only itself: o = v_0
  CHECK(out(0, 0) == doctest::Approx(3 * n(0)).epsilon(1e-14));
  CHECK(out(0, 1) == doctest::Approx(-3 * n(0)).epsilon(1e-14));
  // position 1: scores over keys 0, 1 with scale 3^-0.5
  auto const [q0, q1] = rot(x[1][0], x[1][1], 1.0);
  double score[2];
  for (int s = 0; s < 2; ++s) {
    auto const [k0, k1] = rot(x[s][1], x[s][0], s);
    score[s] = (x[1][0] * 2 * n(s) + q0 * k0 + q1 * k1) / std::sqrt(3.0);
  }
  double const p0 = 1.0 / (1.0 + std::exp(score[1] - score[0]));
  double const o1 = p0 * 3 * n(0) + (1 - p0) * 3 * n(1);
  CHECK(out(1, 0) == doctest::Approx(o1).epsilon(1e-14));
  CHECK(out(1, 1) == doctest::Approx(-o1).epsilon(1e-14));
  CHECK(p0 > 0.01);  // both keys matter: the case checks the mixing
  CHECK(p0 < 0.99);
}

TEST_CASE("ref: MoE block sums the routed experts by gate weight plus the shared expert") {
  dsv3::ref::model m;
  dsv3::ref::config& c = m.cfg;
  c = gate_config();
  c.hidden_size = 2;
  c.moe_intermediate_size = 1;
  c.n_shared_experts = 1;
  std::string const p = "model.layers.3.mlp.";
  m.weights[p + "gate.weight"] = make({4, 2}, {0.3, -0.2, 1.0, 0.4, -0.7, 0.1, 0.2, 0.9});
  m.weights[p + "gate.e_score_correction_bias"] = make({4}, {0.0, 0.1, 0.5, 0.6});
  for (int e = 0; e < 4; ++e) {  // expert e: silu(x0) x1 (e + 1) (1, 2)
    std::string const q = p + "experts." + std::to_string(e) + ".";
    m.weights[q + "gate_proj.weight"] = make({1, 2}, {1, 0});
    m.weights[q + "up_proj.weight"] = make({1, 2}, {0, 1});
    m.weights[q + "down_proj.weight"] = make({2, 1}, {e + 1.0, 2.0 * (e + 1)});
  }
  m.weights[p + "shared_experts.gate_proj.weight"] = make({1, 2}, {0, 1});  // silu(x1) x0 (1, 1)
  m.weights[p + "shared_experts.up_proj.weight"] = make({1, 2}, {1, 0});
  m.weights[p + "shared_experts.down_proj.weight"] = make({2, 1}, {1, 1});

  tensor const x = make({2, 2}, {0.8, -1.5, -0.3, 2.0});  // (T,H)
  tensor const y = dsv3::ref::moe(m, p, x);
  dsv3::ref::routing const r = dsv3::ref::moe_gate(c, dsv3::ref::linear(x, m.weights.at(p + "gate.weight")),
                                                   m.weights.at(p + "gate.e_score_correction_bias").data);
  for (int t = 0; t < 2; ++t) {
    double const x0 = x(t, 0), x1 = x(t, 1);
    double routed = 0.0;
    for (int j = 0; j < 2; ++j)
      routed += r.weights[t * 2 + j] * static_cast<double>(r.experts[t * 2 + j] + 1);
    double const shared = dsv3::ref::silu(x1) * x0;
    CHECK(y(t, 0) == doctest::Approx(routed * dsv3::ref::silu(x0) * x1 + shared).epsilon(1e-14));
    CHECK(y(t, 1) == doctest::Approx(2 * routed * dsv3::ref::silu(x0) * x1 + shared).epsilon(1e-14));
  }
  // the normalized weights of each token sum to routed_scaling_factor
  CHECK(r.weights[0] + r.weights[1] == doctest::Approx(2.5).epsilon(1e-14));
  CHECK(r.weights[2] + r.weights[3] == doctest::Approx(2.5).epsilon(1e-14));
  // the bias is used when present: token 0's sigmoid scores (0.63, 0.55, 0.33, 0.23) choose group
  // 0 unbiased, but (0.63, 0.65, 0.83, 0.83) biased choose group 1
  CHECK(r.experts[0] == 3);
  CHECK(r.experts[1] == 2);
  dsv3::ref::model no_bias = m;
  no_bias.weights.erase(p + "gate.e_score_correction_bias");
  CHECK(dsv3::ref::moe(no_bias, p, x).data != y.data);
}
