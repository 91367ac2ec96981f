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
