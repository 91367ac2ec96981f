// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn/host/elementwise.hpp: exp_range_reduced against float64 std::exp over the whole float range it
// covers (and its ends, NaN), elementwise_threads' threshold, and nn::swiglu's host path (which uses
// it) against the per-element nn::swiglu with std::exp, both element types, strided and not.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "fp8moe/nn/host/dispatch.hpp"
#include "fp8moe/nn/host/elementwise.hpp"
#include "fp8moe/nn/swiglu_mlp.hpp"
#include "fp8moe/numeric/bfloat16.hpp"
#include "test_support.hpp"

using namespace fp8moe;

namespace {

/// |a - b| / |b| in float64.
double rel(double a, double b) {
  return std::abs(a - b) / std::abs(b);
}

}  // namespace

TEST_CASE("exp_range_reduced is within 1.5e-7 relative of std::exp on [-87.3, 88.7]") {
  // The bound: 1.26 float ulps (2^-23 relative each): the rounding of r, the polynomial's 7 steps and
  // the final product; the truncation error of the degree-7 polynomial is < 6e-9. Measured: 9.9e-8.
  double worst = 0;
  std::int64_t n = 0;
  for (float x = -87.3f; x < 88.7f; x = std::nextafter(x + std::abs(x) * 3e-6f, 100.0f), ++n)
    worst = test::worse(worst, rel(nn::host::exp_range_reduced(x), std::exp(static_cast<double>(x))));
  CHECK(n > 100000);
  CHECK(worst < 1.5e-7);
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 0.5f, -0.34657f, 0.34657f, 1.0f, -1.0f, 88.72f, -87.33f})
    CHECK(rel(nn::host::exp_range_reduced(x), std::exp(static_cast<double>(x))) < 1.5e-7);
  CHECK(nn::host::exp_range_reduced(0.0f) == 1.0f);
}

TEST_CASE("exp_range_reduced: 0 below -87.34, +inf above 88.73, NaN stays NaN") {
  float const inf = std::numeric_limits<float>::infinity();
  CHECK(nn::host::exp_range_reduced(-87.5f) == 0.0f);
  CHECK(nn::host::exp_range_reduced(-1000.0f) == 0.0f);
  CHECK(nn::host::exp_range_reduced(-inf) == 0.0f);
  CHECK(nn::host::exp_range_reduced(88.8f) == inf);
  CHECK(nn::host::exp_range_reduced(inf) == inf);
  CHECK(std::isnan(nn::host::exp_range_reduced(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("elementwise_threads: one thread below 32K elements, the executor's from there") {
  host_executor const ex{2};
  CHECK(nn::host::elementwise_threads(ex, 0) == 1);
  CHECK(nn::host::elementwise_threads(ex, (1 << 15) - 1) == 1);
  CHECK(nn::host::elementwise_threads(ex, 1 << 15) == 2);
  CHECK(nn::host::elementwise_threads(host_executor{3}, 1 << 20) == 3);
}

TEST_CASE("nn::swiglu on the host: within 5e-7 relative (+1e-30) of nn::swiglu with std::exp") {
  // 5e-7: the exp error (< 1.5e-7, scaled by 1 - sigmoid <= 1) plus the four roundings (1/(1+e), two
  // products, and std::exp's own) of either path, each <= 2^-24 relative.
  // (R, I) shapes below and above the one-thread threshold; act strided (every other column).
  for (auto [R, I] : {std::pair<std::int64_t, std::int64_t>{3, 37}, {300, 128}}) {
    CAPTURE(R);
    std::vector<float> h(static_cast<std::size_t>(R * 2 * I));
    for (std::size_t i = 0; i < h.size(); ++i)  // g over [-100, 100]: both saturated ends
      h[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)) * (i % 7 == 0 ? 100.0 : 6.0));
    auto const hv = make_matrix<float const>(h.data(), R, 2 * I);
    std::vector<float> act(static_cast<std::size_t>(R * I), -7.0f),
        wide(static_cast<std::size_t>(R * 2 * I), -7.0f);
    nn::swiglu(host_executor{2}, hv, make_matrix(act.data(), R, I));
    nn::swiglu(host_executor{2}, hv, matrix_view<float>{wide.data(), R, I, 2 * I, 2});
    std::vector<bfloat16_t> actb(static_cast<std::size_t>(R * I));
    nn::swiglu(host_executor{1}, hv, make_matrix(actb.data(), R, I));
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t i = 0; i < I; ++i) {
        float const want = nn::swiglu(hv(r, i), hv(r, I + i));
        float const got = act[static_cast<std::size_t>(r * I + i)];
        REQUIRE(std::abs(got - want) <= 5e-7f * std::abs(want) + 1e-30f);
        REQUIRE(wide[static_cast<std::size_t>(r * 2 * I + 2 * i)] == got);
        REQUIRE(wide[static_cast<std::size_t>(r * 2 * I + 2 * i + 1)] == -7.0f);  // untouched
        // bf16: one more rounding of the float value (half a bf16 ulp: <= 2^-8 relative)
        REQUIRE(std::abs(static_cast<float>(actb[static_cast<std::size_t>(r * I + i)]) - want) <=
                std::abs(want) * 0.004f + 1e-30f);
      }
  }
}
