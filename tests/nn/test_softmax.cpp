// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::softmax_forward, cross_entropy_forward / cross_entropy_backward against float64 references
// written here (large logits: the max subtraction), ignore_index, float64 finite differences of
// the mean loss, aliasing dlogits = logits, bad targets.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "fp8moe/nn/softmax.hpp"
#include "test_support.hpp"

using namespace fp8moe;

namespace {

/// Mean over valid rows of -log softmax(x (T,V))[y], in float64 (log-sum-exp with max shift).
double ref_ce(std::vector<double> const& x, std::vector<std::int32_t> const& y, std::int64_t V,
              std::int32_t ignore) {
  double sum = 0;
  int n = 0;
  for (std::size_t t = 0; t < y.size(); ++t) {
    if (y[t] == ignore) continue;
    double m = -INFINITY;
    for (std::int64_t v = 0; v < V; ++v) m = std::max(m, x[t * V + v]);
    double s = 0;
    for (std::int64_t v = 0; v < V; ++v) s += std::exp(x[t * V + v] - m);
    sum += m + std::log(s) - x[t * V + y[t]];
    ++n;
  }
  return n ? sum / n : 0.0;
}

}  // namespace

TEST_CASE("softmax_forward matches float64 and survives large logits") {
  std::int64_t const T = 5, V = 37;
  auto x = test::random_normal(T * V, 3.0f, 61);                 // (T,V)
  for (std::int64_t v = 0; v < V; ++v) x[2 * V + v] += 1000.0f;  // exp(1000) overflows without the shift
  std::vector<float> p(T * V);
  test::poison(p);
  nn::softmax_forward(host_executor{2}, make_matrix(static_cast<float const*>(x.data()), T, V),
                      make_matrix(p.data(), T, V));
  for (std::int64_t t = 0; t < T; ++t) {
    double m = -INFINITY, s = 0;
    for (std::int64_t v = 0; v < V; ++v) m = std::max(m, double(x[t * V + v]));
    for (std::int64_t v = 0; v < V; ++v) s += std::exp(double(x[t * V + v]) - m);
    for (std::int64_t v = 0; v < V; ++v) {
      double const ref = std::exp(double(x[t * V + v]) - m) / s;
      REQUIRE(std::abs(p[t * V + v] - ref) <= 1e-6 * ref + 1e-9);  // float exp and a V-term float sum
    }
  }
}

TEST_CASE("cross_entropy forward/backward: float64 reference, ignore_index, finite differences") {
  std::int64_t const T = 6, V = 13;
  std::int32_t const ignore = -100;
  auto x = test::random_normal(T * V, 2.0f, 62);
  for (std::int64_t v = 0; v < V; ++v) x[V + v] -= 500.0f;
  std::vector<std::int32_t> y{4, 0, ignore, 12, 7, ignore};  // (T); T_valid = 4
  std::vector<float> losses(T, -1.0f);
  auto const xv = make_matrix(static_cast<float const*>(x.data()), T, V);
  float const mean = nn::cross_entropy_forward(host_executor{2}, xv, std::span<std::int32_t const>(y),
                                               std::span<float>(losses), ignore);
  std::vector<double> xd(x.begin(), x.end());
  CHECK(mean == doctest::Approx(ref_ce(xd, y, V, ignore)).epsilon(1e-5));
  CHECK(losses[2] == 0.0f);
  CHECK(losses[5] == 0.0f);
  CHECK(losses[0] ==
        doctest::Approx(ref_ce(xd, {4, ignore, ignore, ignore, ignore, ignore}, V, ignore)).epsilon(1e-5));
  float const dloss = 0.75f;
  std::vector<float> g(T * V);
  test::poison(g);
  nn::cross_entropy_backward(host_executor{3}, xv, std::span<std::int32_t const>(y),
                             make_matrix(g.data(), T, V), dloss, ignore);
  double const h = 1e-5;
  for (std::size_t k = 0; k < xd.size(); ++k) {
    auto xp = xd, xm = xd;
    xp[k] += h;
    xm[k] -= h;
    double const fd = dloss * (ref_ce(xp, y, V, ignore) - ref_ce(xm, y, V, ignore)) / (2 * h);
    REQUIRE(std::abs(g[k] - fd) <= 1e-6);  // |g| <= 1/4 here; float exp/sum ~1e-7, FD error ~1e-10
  }
  // dlogits may alias logits.
  auto xa = x;
  nn::cross_entropy_backward(host_executor{1}, make_matrix(static_cast<float const*>(xa.data()), T, V),
                             std::span<std::int32_t const>(y), make_matrix(xa.data(), T, V), dloss, ignore);
  for (std::size_t k = 0; k < xa.size(); ++k) REQUIRE(xa[k] == g[k]);
}

TEST_CASE("cross_entropy with every row ignored is 0 with a zero gradient") {
  std::vector<float> x(2 * 3, 1.5f), losses(2), g(6, 4.0f);
  std::vector<std::int32_t> y{-1, -1};
  auto const xv = make_matrix(static_cast<float const*>(x.data()), 2, 3);
  CHECK(nn::cross_entropy_forward(host_executor{}, xv, std::span<std::int32_t const>(y),
                                  std::span<float>(losses), -1) == 0.0f);
  nn::cross_entropy_backward(host_executor{}, xv, std::span<std::int32_t const>(y),
                             make_matrix(g.data(), 2, 3), 1.0f, -1);
  for (float v : g) CHECK(v == 0.0f);
}

TEST_CASE("softmax / cross_entropy reject bad input before writing") {
  std::vector<float> x(2 * 3, 0.5f), losses(2, 8.0f), g(6, 8.0f);
  auto const xv = make_matrix(static_cast<float const*>(x.data()), 2, 3);
  for (std::int32_t bad : {3, -2}) {
    std::vector<std::int32_t> y{0, bad};
    CHECK_THROWS_WITH_AS(nn::cross_entropy_forward(host_executor{}, xv, std::span<std::int32_t const>(y),
                                                   std::span<float>(losses)),
                         doctest::Contains("'targets'"), fp8moe::error);
    CHECK_THROWS_WITH_AS(nn::cross_entropy_backward(host_executor{}, xv, std::span<std::int32_t const>(y),
                                                    make_matrix(g.data(), 2, 3)),
                         doctest::Contains("'targets'"), fp8moe::error);
  }
  std::vector<std::int32_t> y{0, 1};
  CHECK_THROWS_WITH_AS(nn::cross_entropy_forward(host_executor{}, xv, std::span<std::int32_t const>(y),
                                                 std::span<float>(losses.data(), 1)),
                       doctest::Contains("'losses'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(nn::softmax_forward(host_executor{}, xv, make_matrix(g.data(), 3, 2)),
                       doctest::Contains("'probs'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(nn::cross_entropy_backward(host_executor{}, xv, std::span<std::int32_t const>(y),
                                                  make_matrix(g.data(), 2, 3), NAN),
                       doctest::Contains("'dloss'"), fp8moe::error);
  for (float v : losses) CHECK(v == 8.0f);
  for (float v : g) CHECK(v == 8.0f);
}
