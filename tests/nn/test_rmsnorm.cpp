// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::rmsnorm_forward / rmsnorm_backward against a float64 reference written here (float and bf16
// tensors, 1..3 threads), the backward against float64 central finite differences of
// L = sum(dy * y), accumulation into dx/dw, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "fp8moe/nn/rmsnorm.hpp"
#include "test_support.hpp"

using namespace fp8moe;

namespace {

/// y (T,C) = x (T,C) / sqrt(mean(x^2) + eps) * w (C), in float64.
std::vector<double> ref_rmsnorm(std::vector<double> const& x, std::vector<double> const& w, std::int64_t T,
                                std::int64_t C, double eps) {
  std::vector<double> y(x.size());
  for (std::int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (std::int64_t c = 0; c < C; ++c) ss += x[t * C + c] * x[t * C + c];
    double const r = 1.0 / std::sqrt(ss / static_cast<double>(C) + eps);
    for (std::int64_t c = 0; c < C; ++c) y[t * C + c] = x[t * C + c] * r * w[c];
  }
  return y;
}

std::vector<double> to_double(std::vector<float> const& v) {
  return {v.begin(), v.end()};
}

}  // namespace

TEST_CASE("rmsnorm_forward matches a float64 reference (float, 1..3 threads)") {
  std::int64_t const T = 7, C = 96;
  float const eps = 1e-6f;
  auto x = test::random_normal(T * C, 2.0f, 11);
  auto w = test::random_normal(C, 1.0f, 12);
  auto const ref = ref_rmsnorm(to_double(x), to_double(w), T, C, eps);
  for (int threads : {1, 2, 3}) {
    std::vector<float> y(T * C), rstd(T);
    test::poison(y);
    test::poison(rstd);
    nn::rmsnorm_forward(host_executor{threads}, make_matrix(x.data(), T, C), std::span<float const>(w),
                        make_matrix(y.data(), T, C), std::span<float>(rstd), eps);
    // Tolerance: float sum of C squares (relative C*2^-24) and three float roundings: |y| * 1e-5.
    for (std::int64_t i = 0; i < T * C; ++i)
      REQUIRE(std::abs(y[i] - ref[i]) <= 1e-5 * std::abs(ref[i]) + 1e-7);
    for (std::int64_t t = 0; t < T; ++t) {
      double ss = 0;
      for (std::int64_t c = 0; c < C; ++c) ss += double(x[t * C + c]) * x[t * C + c];
      CHECK(rstd[t] == doctest::Approx(1.0 / std::sqrt(ss / C + eps)).epsilon(1e-6));
    }
  }
}

TEST_CASE("rmsnorm_forward with bf16 x, w and y rounds once") {
  std::int64_t const T = 5, C = 64;
  auto xf = test::random_normal(T * C, 1.0f, 21);
  auto wf = test::random_normal(C, 1.0f, 22);
  std::vector<bfloat16_t> x(T * C), w(C), y(T * C);
  for (std::size_t i = 0; i < xf.size(); ++i) xf[i] = float(x[i] = bfloat16_t(xf[i]));
  for (std::size_t i = 0; i < wf.size(); ++i) wf[i] = float(w[i] = bfloat16_t(wf[i]));
  auto const ref = ref_rmsnorm(to_double(xf), to_double(wf), T, C, 1e-6);
  nn::rmsnorm_forward(host_executor{}, make_matrix(x.data(), T, C), std::span<bfloat16_t const>(w),
                      make_matrix(y.data(), T, C));
  // One bf16 rounding (2^-8 relative) plus float math.
  for (std::int64_t i = 0; i < T * C; ++i)
    REQUIRE(std::abs(double(float(y[i])) - ref[i]) <= std::abs(ref[i]) * (1.0 / 256 + 1e-5) + 1e-7);
}

TEST_CASE("rmsnorm_backward matches float64 central finite differences and accumulates") {
  std::int64_t const T = 4, C = 32;
  double const eps = 1e-5;
  auto x = test::random_normal(T * C, 1.5f, 31);
  auto w = test::random_normal(C, 1.0f, 32);
  auto dy = test::random_normal(T * C, 1.0f, 33);
  std::vector<float> y(T * C), rstd(T);
  nn::rmsnorm_forward(host_executor{}, make_matrix(x.data(), T, C), std::span<float const>(w),
                      make_matrix(y.data(), T, C), std::span<float>(rstd), float(eps));
  // dx, dw start at a known non-zero value: the backward adds to it.
  std::vector<float> dx(T * C, 0.25f), dw(C, -0.5f);
  nn::rmsnorm_backward(host_executor{2}, make_matrix(x.data(), T, C), std::span<float const>(w),
                       std::span<float const>(rstd), make_matrix(static_cast<float const*>(dy.data()), T, C),
                       make_matrix(dx.data(), T, C), std::span<float>(dw));
  auto const xd = to_double(x), wd = to_double(w), dyd = to_double(dy);
  auto loss = [&](std::vector<double> const& xx, std::vector<double> const& ww) {
    auto const yy = ref_rmsnorm(xx, ww, T, C, eps);
    double l = 0;
    for (std::size_t i = 0; i < yy.size(); ++i) l += dyd[i] * yy[i];
    return l;
  };
  double const h = 1e-6;  // central differences in float64: error O(h^2) + O(1e-16/h), ~1e-10 here
  for (std::int64_t i = 0; i < T * C; ++i) {
    auto xp = xd, xm = xd;
    xp[i] += h;
    xm[i] -= h;
    double const fd = (loss(xp, wd) - loss(xm, wd)) / (2 * h);
    // float backward: a C-term sum, relative error ~1e-6 of the term magnitudes (|g| <= ~3).
    REQUIRE(double(dx[i]) - 0.25 == doctest::Approx(fd).epsilon(1e-4).scale(1.0));
  }
  for (std::int64_t c = 0; c < C; ++c) {
    auto wp = wd, wm = wd;
    wp[c] += h;
    wm[c] -= h;
    double const fd = (loss(xd, wp) - loss(xd, wm)) / (2 * h);
    REQUIRE(double(dw[c]) + 0.5 == doctest::Approx(fd).epsilon(1e-4).scale(1.0));
  }
}

TEST_CASE("rmsnorm rejects bad input before writing") {
  std::int64_t const T = 2, C = 8;
  std::vector<float> x(T * C, 1.0f), w(C, 1.0f), y(T * C, 7.0f), rstd(T);
  host_executor ex;
  auto xv = make_matrix(static_cast<float const*>(x.data()), T, C);
  CHECK_THROWS_WITH_AS(
      nn::rmsnorm_forward(ex, xv, std::span<float const>(w.data(), C - 1), make_matrix(y.data(), T, C)),
      doctest::Contains("'w'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      nn::rmsnorm_forward(ex, xv, std::span<float const>(w), make_matrix(y.data(), T, C - 1)),
      doctest::Contains("'y'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(nn::rmsnorm_forward(ex, xv, std::span<float const>(w), make_matrix(y.data(), T, C),
                                           std::span<float>(rstd.data(), 1)),
                       doctest::Contains("'rstd'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      nn::rmsnorm_forward(ex, xv, std::span<float const>(w), make_matrix(y.data(), T, C), {}, 0.0f),
      doctest::Contains("'eps'"), fp8moe::error);
  for (float v : y) CHECK(v == 7.0f);
  std::vector<float> dx(T * C), dw(C);
  CHECK_THROWS_WITH_AS(nn::rmsnorm_backward(ex, xv, std::span<float const>(w), std::span<float const>(rstd),
                                            make_matrix(static_cast<float const*>(y.data()), T, C),
                                            make_matrix(dx.data(), T, C), std::span<float>(dw.data(), 3)),
                       doctest::Contains("'dw'"), fp8moe::error);
}
