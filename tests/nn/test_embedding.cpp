// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::embedding_forward / embedding_backward: gather against a reference, bf16 table, scatter-add
// with repeated ids against float64 finite differences of L = sum(dout * out), bad ids.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "fp8moe/nn/embedding.hpp"
#include "test_support.hpp"

using namespace fp8moe;

TEST_CASE("embedding_forward gathers rows (float and bf16 tables)") {
  std::int64_t const V = 11, C = 24;
  auto wte = test::random_normal(V * C, 1.0f, 51);  // (V,C)
  std::vector<std::int32_t> ids{3, 0, 10, 3, 7};    // (T)
  std::int64_t const T = static_cast<std::int64_t>(ids.size());
  std::vector<float> out(T * C);  // (T,C)
  test::poison(out);
  nn::embedding_forward(host_executor{2}, std::span<std::int32_t const>(ids),
                        make_matrix(static_cast<float const*>(wte.data()), V, C),
                        make_matrix(out.data(), T, C));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t c = 0; c < C; ++c) REQUIRE(out[t * C + c] == wte[ids[t] * C + c]);
  std::vector<bfloat16_t> wb(V * C);
  for (std::size_t i = 0; i < wb.size(); ++i) wb[i] = bfloat16_t(wte[i]);
  std::vector<bfloat16_t> ob(T * C);
  nn::embedding_forward(host_executor{}, std::span<std::int32_t const>(ids),
                        make_matrix(static_cast<bfloat16_t const*>(wb.data()), V, C),
                        make_matrix(ob.data(), T, C));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t c = 0; c < C; ++c) REQUIRE(float(ob[t * C + c]) == float(wb[ids[t] * C + c]));
}

TEST_CASE("embedding_backward scatter-adds (repeated ids) and matches finite differences") {
  std::int64_t const V = 6, C = 5;
  std::vector<std::int32_t> ids{2, 5, 2, 0, 2};  // id 2 three times; ids 1, 3, 4 unused
  std::int64_t const T = static_cast<std::int64_t>(ids.size());
  auto wte = test::random_normal(V * C, 1.0f, 52);
  auto dout = test::random_normal(T * C, 1.0f, 53);
  std::vector<float> dw(V * C, 0.125f);  // accumulates onto 0.125
  nn::embedding_backward(host_executor{3}, std::span<std::int32_t const>(ids),
                         make_matrix(static_cast<float const*>(dout.data()), T, C),
                         make_matrix(dw.data(), V, C));
  // L(wte) = sum_t sum_c dout[t,c] * wte[ids[t], c], in float64, central differences.
  auto loss = [&](std::vector<double> const& w) {
    double l = 0;
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t c = 0; c < C; ++c) l += dout[t * C + c] * w[ids[t] * C + c];
    return l;
  };
  std::vector<double> wd(wte.begin(), wte.end());
  for (std::size_t k = 0; k < wd.size(); ++k) {
    auto wp = wd, wm = wd;
    wp[k] += 1e-3;
    wm[k] -= 1e-3;
    double const fd = (loss(wp) - loss(wm)) / 2e-3;  // L is linear: exact up to rounding
    REQUIRE(double(dw[k]) - 0.125 == doctest::Approx(fd).epsilon(1e-5).scale(1.0));
  }
}

TEST_CASE("embedding rejects out-of-range ids and bad shapes before writing") {
  std::int64_t const V = 4, C = 3;
  std::vector<float> wte(V * C, 1.0f), out(2 * C, 9.0f);
  auto wv = make_matrix(static_cast<float const*>(wte.data()), V, C);
  for (std::int32_t bad : {-1, 4}) {
    std::vector<std::int32_t> ids{1, bad};
    CHECK_THROWS_WITH_AS(nn::embedding_forward(host_executor{}, std::span<std::int32_t const>(ids), wv,
                                               make_matrix(out.data(), 2, C)),
                         doctest::Contains("'ids'"), fp8moe::error);
    CHECK_THROWS_WITH_AS(nn::embedding_backward(host_executor{}, std::span<std::int32_t const>(ids),
                                                make_matrix(static_cast<float const*>(out.data()), 2, C),
                                                make_matrix(wte.data(), V, C)),
                         doctest::Contains("'ids'"), fp8moe::error);
  }
  std::vector<std::int32_t> ids{1, 2};
  CHECK_THROWS_WITH_AS(nn::embedding_forward(host_executor{}, std::span<std::int32_t const>(ids), wv,
                                             make_matrix(out.data(), 2, C - 1)),
                       doctest::Contains("'out'"), fp8moe::error);
  for (float v : out) CHECK(v == 9.0f);
  for (float v : wte) CHECK(v == 1.0f);
}
