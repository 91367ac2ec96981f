// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The backward in the other precisions, on the FP8-shaped tiny config with routing held fixed to the
// fp32 forward: bf16 parameters, and the FP8 training recipe (dsv3::fp8_training: Fprop, Dgrad, Wgrad
// of the fp8_gemm linears through nn::fp8_linear / _dgrad / _wgrad) against the fp32 gradients
// (DeepGEMM's calc_diff per tensor); each switch changes exactly the products it names.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "config.hpp"
#include "init.hpp"
#include "model.hpp"
#include "test_backward_support.hpp"

namespace {

constexpr std::int64_t T = 32;

std::vector<std::int32_t> tokens() {
  return dsv3::test::token_ids(T, 37, 11, 1024);
}
std::vector<std::int32_t> targets() {
  return dsv3::test::next_targets(tokens());
}

/// DeepGEMM's calc_diff: 1 - 2<a,b> / (|a|^2 + |b|^2), in float64 (0 when equal).
double calc_diff(float const* a, float const* b, std::int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (std::int64_t i = 0; i < n; ++i)
    ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return aa + bb == 0 ? 0.0 : 1.0 - 2.0 * ab / (aa + bb);
}

/// Gradients of one backward of `m` (after its forward, routing fixed to `ref`), with their slots.
struct grads {
  std::vector<dsv3::detail::slot> slots;
  dsv3::params g;
  double loss = 0;
  grads(dsv3::model& m, dsv3::activations const* ref) : g(dsv3::make_gradients(m.config(), &slots)) {
    m.forward(tokens(), ref);
    loss = m.backward(targets(), g).main;
  }
  float const* at(std::string const& name) const {
    for (auto const& s : slots)
      if (s.name == name) return s.linear ? s.linear->f32.data : s.floats;
    FAIL("no slot " << name);
    return nullptr;
  }
};

std::int64_t numel(dsv3::detail::slot const& s) {
  std::int64_t n = 1;
  for (auto d : s.shape) n *= d;
  return n;
}

}  // namespace

TEST_CASE("backward in bf16 and under the FP8 training recipe, against fp32 (tiny, routing fixed)") {
  dsv3::test::temp_checkpoint ck("tiny", 3);
  dsv3::model m32(ck.dir, dsv3::precision::fp32);
  grads const g32(m32, nullptr);
  std::string const mtp = "model.layers." + std::to_string(m32.config().num_hidden_layers) + ".";

  // Worst calc_diff against fp32 over the tensors that get a gradient; `fp8_only`: only fp8_gemm ones.
  std::string worst_name;
  auto const worst = [&](grads const& g, bool fp8_only, bool want_fp8) {
    double w = 0;
    for (auto const& s : g32.slots) {
      if (s.name.starts_with(mtp) || s.name.ends_with("e_score_correction_bias")) continue;
      if (fp8_only && s.fp8 != want_fp8) continue;
      double const d = calc_diff(g.at(s.name), g32.at(s.name), numel(s));
      if (d > w) worst_name = s.name;
      w = std::max(w, d);
    }
    return w;
  };

  SUBCASE("bf16 parameters and activations") {
    dsv3::model m16(ck.dir, dsv3::precision::bf16);
    grads const g16(m16, &m32.acts());
    double const w = worst(g16, false, false);
    MESSAGE("bf16: worst calc_diff " << w << ", loss " << g16.loss << " (fp32 " << g32.loss << ")");
    // bf16 keeps 8 bits: each product's relative error ~2^-9, calc_diff (a squared relative error)
    // ~1e-5 per GEMM, more through the chain; a wrong or missing term gives O(1).
    CHECK(w > 0);
    CHECK(w < 1e-3);
  }
  SUBCASE("FP8 Fprop + Dgrad + Wgrad") {
    dsv3::model m8(m32.parameters(), {.train = {.fprop = true, .dgrad = true, .wgrad = true}});
    grads const g8(m8, &m32.acts());
    CHECK(m8.acts().layers[1].moe.grouped.active);  // the routed experts ran as grouped FP8 GEMMs
    double const w8 = worst(g8, true, true);
    std::string const n8 = worst_name;
    double const wf = worst(g8, true, false);
    MESSAGE("fp8 recipe: worst calc_diff " << w8 << " (FP8 GEMM tensors; worst " << n8 << "), " << wf
                                           << " (kept in float; worst " << worst_name << "), loss " << g8.loss
                                           << " (fp32 " << g32.loss << ")");
    // E4M3 keeps 3 bits (relative error up to 2^-4 per element, ~2^-6 RMS): calc_diff ~1e-3 per GEMM
    // (DeepGEMM's test bound), compounded through Fprop, Dgrad and Wgrad of the chained layers: the
    // deepest gradients (layer 1's q_a_proj, layer 2's q_a_layernorm) measure 0.023 at this seed.
    // 5e-2 bounds it; a wrong operand, transpose or missing term gives O(1).
    CHECK(w8 > 1e-6);
    CHECK(w8 < 5e-2);
    CHECK(wf < 5e-2);
    CHECK(std::abs(g8.loss - g32.loss) < 1e-2 * g32.loss);
  }
  SUBCASE("each switch alone changes only what it names") {
    // Wgrad alone: the forward and every input gradient are fp32's, so the weights kept out of FP8
    // (LM head, router gates, norms, embedding) get bit-identical gradients; the FP8 ones differ.
    dsv3::model mw(m32.parameters(), {.train = {.wgrad = true}});
    grads const gw(mw, &m32.acts());
    CHECK(worst(gw, true, false) == 0.0);
    CHECK(worst(gw, true, true) > 1e-6);
    CHECK(gw.loss == g32.loss);
    // Dgrad alone: the forward is fp32's (same loss); the LM head's gradient (before any Dgrad) is
    // identical, the layers' are not.
    dsv3::model md(m32.parameters(), {.train = {.dgrad = true}});
    grads const gd(md, &m32.acts());
    CHECK(gd.loss == g32.loss);
    CHECK(calc_diff(gd.at("lm_head.weight"), g32.at("lm_head.weight"), 1024 * 256) == 0.0);
    CHECK(worst(gd, true, true) > 1e-6);
    // Fprop alone: the loss moves.
    dsv3::model mf(m32.parameters(), {.train = {.fprop = true}});
    grads const gf(mf, &m32.acts());
    CHECK(gf.loss != g32.loss);
    CHECK(std::abs(gf.loss - g32.loss) < 1e-2 * g32.loss);
  }
  SUBCASE("the recipe needs fp32 parameters") {
    CHECK_THROWS_WITH_AS(dsv3::model(ck.dir, dsv3::precision::bf16, {.train = {.wgrad = true}}),
                         doctest::Contains("options.train"), fp8moe::error);
  }
}

namespace test_backward_precision_cases {

/// Deterministic values in [-a, a) (a 64-bit LCG), written over n floats.
void fill_uniform(float* v, std::int64_t n, std::uint64_t seed, float a) {
  for (std::int64_t i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = a * (static_cast<float>(seed >> 40) / static_cast<float>(1ull << 23) - 1.0f);
  }
}

/// max |a - b| / max |b| over n values (0 when both are 0).
double max_rel_diff(float const* a, float const* b, std::int64_t n) {
  double d = 0, m = 0;
  for (std::int64_t i = 0; i < n; ++i)
    d = std::max(d, std::abs(double(a[i]) - b[i])), m = std::max(m, std::abs(double(b[i])));
  return m == 0 ? d : d / m;
}

/// Tiny's first MoE layer (random weights) on T tokens with the routing held fixed: expert 0 takes
/// every token's slot 0 (T > 128 rows: two 128-row tiles in one expert), slots 1-3 spread over
/// experts 1..13, experts 14 and 15 get none (empty groups). forward + backward with the experts'
/// GEMMs as `gemms`; the gradients start from nonzero values (they ACCUMULATE).
struct moe_layer_run {
  static constexpr std::int64_t T = 160, layer = 1;
  dsv3::config cfg = dsv3::tiny_config();
  dsv3::params w = dsv3::make_gradients(cfg), g = dsv3::make_gradients(cfg);
  dsv3::activations acts = dsv3::make_activations(cfg, dsv3::mla_form::naive, T);
  std::vector<float> x, dout, out, dx;
  std::vector<std::int32_t> ids;
  bool grouped = false;

  moe_layer_run(dsv3::fp8_training train, dsv3::expert_gemms gemms) {
    std::int64_t const H = cfg.hidden_size, k = cfg.num_experts_per_tok;
    fill_uniform(reinterpret_cast<float*>(w.storage.get()), static_cast<std::int64_t>(w.bytes / 4), 7, 0.05f);
    fill_uniform(reinterpret_cast<float*>(g.storage.get()), static_cast<std::int64_t>(g.bytes / 4), 9, 0.01f);
    x.resize(static_cast<std::size_t>(T * H)), dout.resize(x.size()), out.resize(x.size()),
        dx.resize(x.size());
    fill_uniform(x.data(), T * H, 11, 1.0f);
    fill_uniform(dout.data(), T * H, 13, 1e-2f);
    for (std::int64_t t = 0; t < T; ++t) {
      ids.push_back(0);
      for (std::int64_t j = 1; j < k; ++j) ids.push_back(static_cast<std::int32_t>(1 + (t + 4 * j) % 13));
    }
    dsv3::context ctx;
    ctx.train = train;
    auto& a = acts.layers[layer].moe;
    a.gemms = gemms;
    auto const& wl = w.layers[layer].moe;
    auto const rc = dsv3::router_of(cfg);
    auto const xv = fp8moe::make_matrix<float const>(x.data(), T, H);
    dsv3::moe_forward(ctx, wl, rc, xv, a, fp8moe::make_matrix(out.data(), T, H),
                      fp8moe::make_matrix<std::int32_t const>(ids.data(), T, k));
    grouped = a.grouped.active;
    dsv3::moe_backward(ctx, wl, rc, xv, a, fp8moe::make_matrix<float const>(dout.data(), T, H),
                       fp8moe::make_matrix(dx.data(), T, H), g.layers[layer].moe);
  }
};

}  // namespace test_backward_precision_cases

TEST_CASE(
    "MoE experts under the FP8 recipe: grouped GEMMs equal the per-expert path up to FP32 summation order") {
  using namespace test_backward_precision_cases;
  dsv3::fp8_training const fp8{.fprop = true, .dgrad = true, .wgrad = true};
  moe_layer_run const grouped(fp8, dsv3::expert_gemms::grouped);
  moe_layer_run const each(fp8, dsv3::expert_gemms::per_expert);
  moe_layer_run const f32({}, dsv3::expert_gemms::grouped);
  REQUIRE(grouped.grouped);
  REQUIRE_FALSE(each.grouped);
  REQUIRE_FALSE(f32.grouped);
  std::int64_t const n = moe_layer_run::T * grouped.cfg.hidden_size;
  // The same tiles and scales (1x128 activations and gradients, 128x128 weights, 128x1 Wgrad operands
  // per expert), so only FP32 summation order differs: the Dgrad of [gate | up] sums both halves in one
  // K = 2I GEMM instead of adding two rounded products (one extra rounding, 2^-24 relative), and a
  // kernel may split a 128-long promotion block differently (<= 128 * 2^-24 = 7.6e-6 of the largest
  // term). 1e-5 of each tensor's largest value bounds both; one E4M3 tile with another scale moves
  // its elements by up to 2^-4 relative, i.e. >= 1e-3 here.
  double worst = max_rel_diff(grouped.out.data(), each.out.data(), n);
  worst = std::max(worst, max_rel_diff(grouped.dx.data(), each.dx.data(), n));
  auto const& cfg = grouped.cfg;
  std::int64_t const H = cfg.hidden_size, I = cfg.moe_intermediate_size;
  std::string worst_name = "out/dx";
  for (std::size_t e = 0; e < static_cast<std::size_t>(cfg.n_routed_experts); ++e) {
    auto const& ga = grouped.g.layers[moe_layer_run::layer].moe.experts[e];
    auto const& gb = each.g.layers[moe_layer_run::layer].moe.experts[e];
    double const d13 = max_rel_diff(ga.gate_up.f32.data, gb.gate_up.f32.data, 2 * I * H);
    double const d2 = max_rel_diff(ga.down.f32.data, gb.down.f32.data, H * I);
    if (std::max(d13, d2) > worst) worst_name = "expert " + std::to_string(e);
    worst = std::max({worst, d13, d2});
  }
  auto const& rg = grouped.g.layers[moe_layer_run::layer].moe.gate.f32;
  auto const& re = each.g.layers[moe_layer_run::layer].moe.gate.f32;
  worst = std::max(worst, max_rel_diff(rg.data, re.data, rg.rows * rg.cols));
  MESSAGE("grouped vs per-expert FP8 experts: worst max|diff|/max|value| " << worst << " (" << worst_name
                                                                           << ")");
  CHECK(worst < 1e-5);
  // ... and both are the FP8 recipe, not fp32: the output and expert 0's [gate | up] gradient move by
  // the E4M3 error (calc_diff ~1e-3 per GEMM), bounded as the whole-model check above.
  double const dout8 = calc_diff(grouped.out.data(), f32.out.data(), n);
  auto const& g0 = grouped.g.layers[moe_layer_run::layer].moe.experts[0].gate_up.f32;
  double const dw8 =
      calc_diff(g0.data, f32.g.layers[moe_layer_run::layer].moe.experts[0].gate_up.f32.data, 2 * I * H);
  MESSAGE("grouped FP8 vs fp32: calc_diff out " << dout8 << ", expert 0 gate|up gradient " << dw8);
  CHECK(dout8 > 1e-6);
  CHECK(dout8 < 5e-2);
  CHECK(dw8 > 1e-9);
  CHECK(dw8 < 5e-2);
}
