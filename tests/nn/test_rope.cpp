// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::rope_frequencies (YaRN), yarn_softmax_scale and rope_forward / rope_backward on interleaved
// pairs against float64 references written here (the published DeepSeek-V3 numbers: ramp band
// 10..23, softmax scale 0.135234), a strided q view, float64 finite differences, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "fp8moe/nn/rope.hpp"
#include "test_support.hpp"

using namespace fp8moe;

namespace {

constexpr nn::rope_config v3{.dim = 64,
                             .theta = 10000.0,
                             .factor = 40.0,
                             .original_max_position_embeddings = 4096,
                             .beta_fast = 32.0,
                             .beta_slow = 1.0,
                             .mscale = 1.0,
                             .mscale_all_dim = 1.0};

/// x (T, H, D) rotated pairwise by pos[t] * f[i], times a, in float64 (DeepSeek's complex multiply).
std::vector<double> ref_rope(std::vector<double> const& x, std::vector<std::int64_t> const& pos,
                             std::vector<float> const& f, double a, std::int64_t T, std::int64_t H,
                             std::int64_t D) {
  std::vector<double> y(x.size());
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < D / 2; ++i) {
        std::size_t const k = static_cast<std::size_t>((t * H + h) * D + 2 * i);
        double const ang = static_cast<double>(pos[t]) * static_cast<double>(f[i]);
        // (x0 + i x1) * a e^{i ang}
        y[k] = a * (x[k] * std::cos(ang) - x[k + 1] * std::sin(ang));
        y[k + 1] = a * (x[k] * std::sin(ang) + x[k + 1] * std::cos(ang));
      }
  return y;
}

}  // namespace

TEST_CASE("YaRN frequencies: DeepSeek-V3's ramp between dims 10 and 23, divided by 40 above") {
  std::vector<float> f(32);
  nn::rope_frequencies(v3, f);
  for (int i = 0; i < 32; ++i) {
    double const base = std::pow(10000.0, -2.0 * i / 64.0);
    double expect;
    if (i <= 10)
      expect = base;  // extrapolation band (low = floor(10.47) = 10)
    else if (i >= 23)
      expect = base / 40.0;  // interpolation band (high = ceil(22.51) = 23)
    else {
      double const r = (i - 10.0) / 13.0;
      expect = base / 40.0 * r + base * (1.0 - r);
    }
    CHECK(f[i] == doctest::Approx(expect).epsilon(1e-6));
  }
  // factor 1: plain RoPE frequencies.
  nn::rope_config plain = v3;
  plain.factor = 1.0;
  nn::rope_frequencies(plain, f);
  for (int i = 0; i < 32; ++i)
    CHECK(f[i] == doctest::Approx(std::pow(10000.0, -2.0 * i / 64.0)).epsilon(1e-6));
}

TEST_CASE("YaRN mscale: softmax scale 0.135234 and attention factor 1 for DeepSeek-V3") {
  CHECK(nn::yarn_softmax_scale(v3, 192) == doctest::Approx(0.135234).epsilon(1e-5));
  CHECK(nn::yarn_attention_factor(v3) == 1.0);
  nn::rope_config c = v3;
  c.mscale_all_dim = 0.0;  // transformers' default branch: get_mscale(factor)
  CHECK(nn::yarn_attention_factor(c) == doctest::Approx(0.1 * std::log(40.0) + 1.0));
  CHECK(nn::yarn_softmax_scale(c, 192) == doctest::Approx(1.0 / std::sqrt(192.0)));
}

TEST_CASE("rope_forward rotates interleaved pairs of a strided q view; rope_backward by -angle") {
  // q (T, H*(d_nope+d_rope)) with the rope part at columns [d_nope, d_nope+d_rope) of each head.
  std::int64_t const T = 6, H = 3, Dn = 8, Dr = 16, W = H * (Dn + Dr);
  nn::rope_config c{.dim = Dr, .theta = 10000.0, .factor = 4.0, .original_max_position_embeddings = 64};
  c.mscale = 0.7;
  c.mscale_all_dim = 1.0;  // attention factor != 1, to exercise it
  std::vector<float> f(Dr / 2);
  nn::rope_frequencies(c, f);
  nn::rope_table const tab{f, static_cast<float>(nn::yarn_attention_factor(c))};
  REQUIRE(tab.attention_factor != 1.0f);
  std::vector<std::int64_t> pos{0, 1, 5, 17, 100, 3};
  auto q = test::random_normal(T * W, 1.0f, 41);
  auto const q0 = q;
  batched_matrix_view<float> xv{q.data() + Dn, T, H, Dr, W, Dn + Dr, 1};
  std::vector<double> xr(T * H * Dr);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t d = 0; d < Dr; ++d) xr[(t * H + h) * Dr + d] = q0[t * W + h * (Dn + Dr) + Dn + d];
  auto const ref = ref_rope(xr, pos, f, tab.attention_factor, T, H, Dr);
  nn::rope_forward(host_executor{2}, tab, std::span<std::int64_t const>(pos), xv);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t d = 0; d < Dn; ++d)
        REQUIRE(q[t * W + h * (Dn + Dr) + d] == q0[t * W + h * (Dn + Dr) + d]);
      for (std::int64_t d = 0; d < Dr; ++d) {
        // angle p*f in float: |angle| * 2^-24 abs error (<= 100 * 6e-8), plus float cos/sin/products.
        REQUIRE(std::abs(xv(t, h, d) - ref[(t * H + h) * Dr + d]) <= 2e-5);
      }
    }
  // The backward against float64 central differences of L = sum(dy * rope(x)).
  auto dy = test::random_normal(T * H * Dr, 1.0f, 42);
  std::vector<float> g(dy.begin(), dy.end());
  nn::rope_backward(host_executor{1}, tab, std::span<std::int64_t const>(pos),
                    batched_matrix_view<float>{g.data(), T, H, Dr, H * Dr, Dr, 1});
  double const step = 1e-5;
  for (std::size_t k = 0; k < xr.size(); ++k) {
    auto xp = xr, xm = xr;
    xp[k] += step;
    xm[k] -= step;
    auto const yp = ref_rope(xp, pos, f, tab.attention_factor, T, H, Dr);
    auto const ym = ref_rope(xm, pos, f, tab.attention_factor, T, H, Dr);
    double fd = 0;
    for (std::size_t i = 0; i < yp.size(); ++i) fd += dy[i] * (yp[i] - ym[i]);
    fd /= 2 * step;
    REQUIRE(std::abs(g[k] - fd) <= 2e-5);
  }
}

TEST_CASE("rope_forward on bf16 keys (T, 1, d_rope)") {
  std::int64_t const T = 4, D = 8;
  std::vector<float> f(D / 2);
  nn::rope_frequencies({.dim = D}, f);
  auto xf = test::random_normal(T * D, 1.0f, 43);
  std::vector<bfloat16_t> x(T * D);
  std::vector<double> xd(T * D);
  for (std::size_t i = 0; i < x.size(); ++i) xd[i] = float(x[i] = bfloat16_t(xf[i]));
  std::vector<std::int64_t> pos{3, 0, 9, 2};
  nn::rope_forward(host_executor{}, nn::rope_table{f, 1.0f}, std::span<std::int64_t const>(pos),
                   batched_matrix_view<bfloat16_t>{x.data(), T, 1, D, D, D, 1});
  auto const ref = ref_rope(xd, pos, f, 1.0, T, 1, D);
  for (std::size_t i = 0; i < x.size(); ++i)
    REQUIRE(std::abs(float(x[i]) - ref[i]) <= std::abs(ref[i]) / 256 + 1e-5);
}

TEST_CASE("rope rejects bad input") {
  std::vector<float> f(4), x(2 * 8, 3.0f);
  CHECK_THROWS_WITH_AS(nn::rope_frequencies({.dim = 7}, std::span<float>(f)),
                       doctest::Contains("'config.dim'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(nn::rope_frequencies({.dim = 10}, std::span<float>(f)),
                       doctest::Contains("'inv_freq'"), fp8moe::error);
  nn::rope_frequencies({.dim = 8}, f);
  std::vector<std::int64_t> pos{0, -1};
  nn::rope_table const tab{f, 1.0f};
  batched_matrix_view<float> xv{x.data(), 2, 1, 8, 8, 8, 1};
  CHECK_THROWS_WITH_AS(nn::rope_forward(host_executor{}, tab, std::span<std::int64_t const>(pos), xv),
                       doctest::Contains("'positions'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      nn::rope_forward(host_executor{}, tab, std::span<std::int64_t const>(pos.data(), 1), xv),
      doctest::Contains("'positions'"), fp8moe::error);
  xv.cols = 6;
  pos[1] = 1;
  CHECK_THROWS_WITH_AS(nn::rope_backward(host_executor{}, tab, std::span<std::int64_t const>(pos), xv),
                       doctest::Contains("'x'"), fp8moe::error);
  for (float v : x) CHECK(v == 3.0f);
}
