// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// docs/moe.md's worked example, compiled as written (extracted at configure time into
// moe_md_snippets.inc, see CMakeLists.txt) and run on the host executor at a small shape: the
// allocating route/permute against the hot-path ops, the combine of the permuted rows against a
// float64 reference, the backward and the bias update.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "moe_md_snippets.inc"
#include "test_support.hpp"

TEST_CASE("docs/moe.md worked example: route, permute, combine, backward and bias update on the host") {
  std::int64_t const T = 64, H = 256;
  int const E = rc.experts, k = rc.k;
  auto const logits = fm::test::random_normal(static_cast<std::size_t>(T * E), 1.0f, 301);
  auto const bias0 = fm::test::random_normal(static_cast<std::size_t>(E), 0.01f, 302);
  auto const x = fm::test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 303);
  fm::scaling::quantized_matrix<fm::float8_e4m3_t> xq(T, H, fm::scaling::tile_1x128);
  for (std::int64_t i = 0; i < T * H; ++i)
    xq.data.storage()[static_cast<std::size_t>(i)] = fm::float8_e4m3_t(x[i]);
  for (std::size_t i = 0; i < xq.scales.storage().size(); ++i) xq.scales.storage()[i] = 0.5f;
  fm::host_executor const exec;
  auto const lv = fm::matrix_view<float const>(fm::make_matrix(logits.data(), T, E));
  auto const [r, p] = route_and_permute(exec, lv, fm::vector_view<float const>{bias0.data(), E}, xq.view());

  // the routing is the hot-path route's, and every (token, slot) has one permuted row
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k)), counts(static_cast<std::size_t>(E));
  std::vector<float> w(ids.size());
  moe::route(exec, rc, lv, fm::vector_view<float const>{bias0.data(), E}, fm::make_matrix(ids.data(), T, k),
             fm::make_matrix(w.data(), T, k), fm::make_vector(counts.data(), E));
  CHECK(r.ids.storage() == ids);
  CHECK(r.counts == counts);
  auto const& plan = p.plan.view();
  std::int64_t routed = 0;
  for (std::int64_t m = 0; m < plan.rows; ++m) routed += p.plan.row_token()[static_cast<std::size_t>(m)] >= 0;
  CHECK(routed == T * k);

  // experts = identity on the dequantized rows: out_t = (sum_j w_tj) x_t (float64 reference; FP32
  // fma over 8 terms of magnitude <= 2.5 * 448 * 0.5: 1e-5 relative to sum |w x| is ample)
  std::vector<float> y(static_cast<std::size_t>(plan.rows * H));
  for (std::int64_t m = 0; m < plan.rows; ++m)
    for (std::int64_t h = 0; h < H; ++h)
      y[static_cast<std::size_t>(m * H + h)] = p.x.data(m, h).to_float() * p.x.scales(m, h / 128);
  auto const dout = fm::test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 304);
  std::vector<float> out(static_cast<std::size_t>(T * H)), dy(y.size()), dw(ids.size()),
      dlogits(static_cast<std::size_t>(T * E));
  combine_and_backward(exec, plan, lv, r.ids.view(), r.weights.view(),
                       fm::matrix_view<float const>(fm::make_matrix(y.data(), plan.rows, H)),
                       fm::matrix_view<float const>(fm::make_matrix(dout.data(), T, H)),
                       fm::make_matrix(out.data(), T, H), fm::make_matrix(dy.data(), plan.rows, H),
                       fm::make_matrix(dw.data(), T, k), fm::make_matrix(dlogits.data(), T, E), 32);
  for (std::int64_t t = 0; t < T; ++t) {
    double wsum = 0, wabs = 0;
    for (int j = 0; j < k; ++j) wsum += r.weights(t, j), wabs += std::abs(r.weights(t, j));
    for (std::int64_t h = 0; h < H; ++h) {
      double const xv = static_cast<double>(xq.data(t, h).to_float()) * 0.5;
      REQUIRE(std::abs(out[static_cast<std::size_t>(t * H + h)] - wsum * xv) <=
              1e-5 * wabs * std::abs(xv) + 1e-30);
    }
  }
  // dweights_tj = <dout_t, x_t>; the router gradient is finite and not all zero
  CHECK(std::all_of(dlogits.begin(), dlogits.end(), [](float g) { return std::isfinite(g); }));
  CHECK(std::any_of(dlogits.begin(), dlogits.end(), [](float g) { return g != 0.0f; }));

  // bias update through a callback reducer (a single rank: counts unchanged)
  std::vector<float> bias(bias0);
  int calls = 0;
  after_step(exec, fm::make_vector(bias.data(), E), r, [&calls](std::span<std::int64_t>) { ++calls; });
  CHECK(calls == 1);
  for (int e = 0; e < E; ++e) {
    float const step = bias[static_cast<std::size_t>(e)] - bias0[static_cast<std::size_t>(e)];
    CHECK((step == doctest::Approx(1e-3f) || step == doctest::Approx(-1e-3f) || step == 0.0f));
  }
}
