// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// moe/router + moe/balance: the router against an independent float64 re-implementation of
// DeepSeek-V3's Gate (inference/model.py, -inf group masking), ties, negative biases, counts above
// 65536, bad input; backward and the balance loss gradient by finite differences; bias update.
// (nvcc build) the CUDA router against the host path.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "fp8moe/moe/balance.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "test_support.hpp"
#if FP8MOE_CUDA_COMPILER
#include "device_memory.hpp"
#include "fp8moe/moe/cuda/balance.cuh"
#include "fp8moe/moe/cuda/permute.cuh"
#include "fp8moe/moe/cuda/router.cuh"
#include "fp8moe/moe/permute.hpp"
#endif

using namespace fp8moe;
namespace moe = fp8moe::moe;

namespace {

// ---- float64 oracle of DeepSeek-V3 Gate.forward (reference doc §1.3), written from the description:
// scores -> (+bias) -> group score = sum of top-n biased scores -> keep topk_groups groups, others
// = -inf -> top-k (stable: ties to the lower index) -> gather unbiased -> normalize -> * route_scale.
struct gate_ref {
  std::vector<int> ids;
  std::vector<double> weights;
  double group_gap = INFINITY;   // margin between the last kept and the first dropped group
  double expert_gap = INFINITY;  // margin between the k-th and the (k+1)-th candidate
};

std::vector<double> ref_scores(moe::router_config const& c, float const* u) {
  std::vector<double> s(static_cast<std::size_t>(c.experts));
  if (c.score == moe::score::sigmoid) {
    for (int e = 0; e < c.experts; ++e) s[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(u[e])));
  } else {
    double m = -INFINITY, sum = 0;
    for (int e = 0; e < c.experts; ++e) m = std::max(m, static_cast<double>(u[e]));
    for (int e = 0; e < c.experts; ++e) sum += std::exp(u[e] - m);
    for (int e = 0; e < c.experts; ++e) s[e] = std::exp(u[e] - m) / sum;
  }
  return s;
}

// `mask_value` = -inf is the fixed reference; 0 reproduces the pre-1398800 bug.
gate_ref ref_gate(moe::router_config const& c, float const* u, float const* bias,
                  double mask_value = -INFINITY) {
  gate_ref r;
  auto const s = ref_scores(c, u);
  std::vector<double> b(s);
  if (bias)
    for (int e = 0; e < c.experts; ++e) b[e] += bias[e];
  int const per = c.experts / c.groups;
  if (c.groups > 1 && c.topk_groups < c.groups) {
    std::vector<double> gs(c.groups);
    for (int g = 0; g < c.groups; ++g) {
      std::vector<double> v(b.begin() + g * per, b.begin() + (g + 1) * per);
      std::sort(v.begin(), v.end(), std::greater<>());
      gs[g] = std::accumulate(v.begin(), v.begin() + c.group_top, 0.0);
    }
    std::vector<int> order(c.groups);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return gs[x] > gs[y]; });
    r.group_gap = gs[order[c.topk_groups - 1]] - gs[order[c.topk_groups]];
    for (int i = c.topk_groups; i < c.groups; ++i)
      for (int e = order[i] * per; e < (order[i] + 1) * per; ++e) b[e] = mask_value;
  }
  std::vector<int> order(c.experts);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return b[x] > b[y]; });
  if (c.k < c.experts) r.expert_gap = b[order[c.k - 1]] - b[order[c.k]];
  double sum = 0;
  for (int j = 0; j < c.k; ++j) {
    r.ids.push_back(order[j]);
    sum += s[order[j]];
  }
  for (int j = 0; j < c.k; ++j)
    r.weights.push_back((c.normalize ? s[order[j]] / sum : s[order[j]]) * c.route_scale);
  return r;
}

struct routed {
  std::vector<std::int32_t> ids, counts;
  std::vector<float> weights;
};

routed run_route(moe::router_config const& c, std::vector<float> const& logits,
                 std::vector<float> const& bias) {
  std::int64_t const T = static_cast<std::int64_t>(logits.size()) / c.experts;
  routed r;
  r.ids.assign(static_cast<std::size_t>(T * c.k), 0);
  r.weights.assign(static_cast<std::size_t>(T * c.k), 0.0f);
  r.counts.assign(static_cast<std::size_t>(c.experts), 0);
  test::poison(r.ids);
  test::poison(r.weights);
  test::poison(r.counts);
  moe::route(host_executor{}, c, make_matrix(logits.data(), T, c.experts),
             vector_view<float const>{bias.data(), static_cast<std::int64_t>(bias.size())},
             make_matrix(r.ids.data(), T, c.k), make_matrix(r.weights.data(), T, c.k),
             make_vector(r.counts.data(), c.experts));
  return r;
}

// Compares with the oracle; tokens whose selection margin is below `margin` (FP32 vs FP64 can
// legitimately disagree there) are only checked for weight sums. FP32 weights: ~10 roundings of
// 2^-24 each plus exp's 1-2 ulp -> relative error < 1e-6; 4e-6 * |w| + 1e-7 leaves headroom.
int compare_with_oracle(moe::router_config const& c, std::vector<float> const& logits,
                        std::vector<float> const& bias, routed const& r, double margin = 1e-5) {
  std::int64_t const T = static_cast<std::int64_t>(logits.size()) / c.experts;
  int skipped = 0;
  for (std::int64_t t = 0; t < T; ++t) {
    auto const ref = ref_gate(c, &logits[t * c.experts], bias.empty() ? nullptr : bias.data());
    if (ref.group_gap < margin || ref.expert_gap < margin) {
      ++skipped;
      continue;
    }
    for (int j = 0; j < c.k; ++j) {
      INFO("token " << t << " slot " << j);
      REQUIRE(r.ids[t * c.k + j] == ref.ids[j]);
      CHECK(std::abs(r.weights[t * c.k + j] - ref.weights[j]) <= 4e-6 * std::abs(ref.weights[j]) + 1e-7);
    }
  }
  return skipped;
}

}  // namespace

TEST_CASE("router: DeepSeek-V3 shape (256 experts, 8 groups, keep 4, top-8) matches the float64 Gate") {
  constexpr auto c = moe::deepseek_v3_router;
  static_assert(c.experts == 256 && c.groups == 8 && c.topk_groups == 4 && c.k == 8 && c.route_scale == 2.5f);
  std::int64_t const T = 600;
  auto const logits = test::random_normal(static_cast<std::size_t>(T * c.experts), 2.0f, 11);
  auto const bias = test::random_normal(static_cast<std::size_t>(c.experts), 0.05f, 12);  // mixed signs
  auto const r = run_route(c, logits, bias);
  int const skipped = compare_with_oracle(c, logits, bias, r);
  CHECK(skipped <= T / 50);  // near-ties within 1e-5 are rare for continuous inputs
  // properties: weights sum to route_scale, at most topk_groups groups used, counts consistent
  std::vector<std::int64_t> counts(c.experts, 0);
  for (std::int64_t t = 0; t < T; ++t) {
    double sum = 0;
    std::uint32_t groups = 0;
    for (int j = 0; j < c.k; ++j) {
      sum += r.weights[t * c.k + j];
      groups |= 1u << (r.ids[t * c.k + j] / (c.experts / c.groups));
      ++counts[r.ids[t * c.k + j]];
    }
    CHECK(std::abs(sum - 2.5) < 1e-5);
    CHECK(__builtin_popcount(groups) <= c.topk_groups);
  }
  for (int e = 0; e < c.experts; ++e) CHECK(r.counts[e] == counts[e]);
}

TEST_CASE("router: negative biases never select a masked group (the 0-mask bug of model.py before 1398800)") {
  moe::router_config const c{.experts = 64, .groups = 8, .topk_groups = 2, .k = 6, .route_scale = 2.5f};
  std::int64_t const T = 300;
  auto const logits = test::random_normal(static_cast<std::size_t>(T * c.experts), 1.0f, 21);
  auto bias = test::random_normal(static_cast<std::size_t>(c.experts), 0.1f, 22);
  for (auto& b : bias) b -= 5.0f;  // every biased score < 0
  auto const r = run_route(c, logits, bias);
  compare_with_oracle(c, logits, bias, r);
  int buggy_differs = 0;
  for (std::int64_t t = 0; t < T; ++t) {
    std::uint32_t groups = 0;
    for (int j = 0; j < c.k; ++j) groups |= 1u << (r.ids[t * c.k + j] / 8);
    CHECK(__builtin_popcount(groups) <= c.topk_groups);
    auto const bug = ref_gate(c, &logits[t * c.experts], bias.data(), 0.0);
    buggy_differs += !std::equal(bug.ids.begin(), bug.ids.end(), r.ids.begin() + t * c.k);
  }
  CHECK(buggy_differs == T);  // the 0-mask picks masked experts for every token: the test discriminates
}

TEST_CASE("router: ties break toward the lower index, at group and expert level") {
  moe::router_config const c{.experts = 32, .groups = 4, .topk_groups = 2, .k = 4, .route_scale = 1.0f};
  std::int64_t const T = 200;
  // two levels only: equal multisets give bit-equal group sums in any precision
  auto u = test::random_uniform(static_cast<std::size_t>(T * c.experts), 0.0f, 1.0f, 31);
  for (auto& x : u) x = x < 0.3f ? 0.5f : -0.25f;
  std::vector<float> const bias;
  auto const r = run_route(c, u, bias);
  for (std::int64_t t = 0; t < T; ++t) {
    auto const ref = ref_gate(c, &u[t * c.experts], nullptr);
    for (int j = 0; j < c.k; ++j) REQUIRE(r.ids[t * c.k + j] == ref.ids[j]);
  }
  // all equal: groups 0,1 and experts 0..3 win
  std::vector<float> const flat(static_cast<std::size_t>(c.experts), 0.125f);
  auto const f = run_route(c, flat, bias);
  CHECK(f.ids == std::vector<std::int32_t>{0, 1, 2, 3});
  for (float w : f.weights) CHECK(w == 0.25f);
}

TEST_CASE("router: softmax (DeepSeek-V2 style), no normalization, no groups; bf16 logits") {
  moe::router_config const c{.experts = 64, .k = 6, .score = moe::score::softmax, .normalize = false};
  std::int64_t const T = 256;
  auto const logits = test::random_normal(static_cast<std::size_t>(T * c.experts), 1.5f, 41);
  auto const r = run_route(c, logits, {});
  compare_with_oracle(c, logits, {}, r);
  // bf16 logits: same result as the float path on the bf16-rounded values
  std::vector<bfloat16_t> lb;
  std::vector<float> lr;
  for (float x : logits) {
    lb.emplace_back(x);
    lr.push_back(static_cast<float>(lb.back()));
  }
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * c.k));
  std::vector<float> w(static_cast<std::size_t>(T * c.k));
  moe::route(host_executor{}, c, matrix_view<bfloat16_t const>(make_matrix(lb.data(), T, c.experts)), {},
             make_matrix(ids.data(), T, c.k), make_matrix(w.data(), T, c.k), {});
  auto const rr = run_route(c, lr, {});
  CHECK(ids == rr.ids);
  CHECK(w == rr.weights);
}

TEST_CASE("router: weights come from the unbiased scores") {
  moe::router_config const c{.experts = 16, .groups = 4, .topk_groups = 2, .k = 4, .route_scale = 2.5f};
  auto const logits = test::random_normal(static_cast<std::size_t>(c.experts), 1.0f, 51);
  std::vector<float> bias(16, 0.0f);
  bias[4] = bias[6] = bias[9] = bias[10] = 100.0f;  // forces the selection (groups 1 and 2)
  auto const r = run_route(c, logits, bias);
  std::vector<std::int32_t> sorted(r.ids);
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == std::vector<std::int32_t>{4, 6, 9, 10});
  auto const s = ref_scores(c, logits.data());
  double const sum = s[4] + s[6] + s[9] + s[10];
  for (int j = 0; j < 4; ++j) CHECK(std::abs(r.weights[j] - 2.5 * s[r.ids[j]] / sum) < 4e-6);
}

TEST_CASE("router: token counts above 65536 are exact integers") {
  moe::router_config const c{.experts = 8, .k = 2};
  std::int64_t const T = 140001;
  auto const logits = test::random_normal(static_cast<std::size_t>(T * c.experts), 1.0f, 61);
  std::vector<float> bias(8, 0.0f);
  bias[5] = 10.0f;  // every token picks expert 5: count = T, not representable in bf16 (spacing 1024)
  auto const r = run_route(c, logits, bias);
  CHECK(r.counts[5] == T);
  CHECK(static_cast<float>(bfloat16_t(static_cast<float>(T))) != static_cast<float>(T));
  std::int64_t total = 0;
  std::vector<std::int64_t> brute(8, 0);
  for (auto id : r.ids) ++brute[id];
  for (int e = 0; e < 8; ++e) {
    CHECK(r.counts[e] == brute[e]);
    total += r.counts[e];
  }
  CHECK(total == T * c.k);
}

TEST_CASE("router: bad input is rejected before any output is written") {
  std::vector<float> logits = test::random_normal(4 * 16, 1.0f, 71);
  std::vector<std::int32_t> ids(4 * 4);
  std::vector<float> w(4 * 4);
  std::vector<std::int32_t> n(16);
  test::poison(ids);
  auto call = [&](moe::router_config c, std::vector<float> const& bias) {
    moe::route(host_executor{}, c, make_matrix(logits.data(), 4, 16),
               vector_view<float const>{bias.data(), static_cast<std::int64_t>(bias.size())},
               make_matrix(ids.data(), 4, c.k), make_matrix(w.data(), 4, c.k), make_vector(n.data(), 16));
  };
  moe::router_config const ok{.experts = 16, .groups = 4, .topk_groups = 2, .k = 4};
  CHECK_THROWS_WITH_AS(call({.experts = 16, .k = 17}, {}), doctest::Contains("config.k"), fp8moe::error);
  CHECK_THROWS_WITH_AS(call({.experts = 16, .groups = 3, .topk_groups = 1, .k = 4}, {}),
                       doctest::Contains("a divisor of experts"), fp8moe::error);
  CHECK_THROWS_WITH_AS(call({.experts = 16, .groups = 8, .topk_groups = 1, .k = 4}, {}),
                       doctest::Contains("topk_groups * experts/groups >= k"), fp8moe::error);
  CHECK_THROWS_WITH_AS(call(ok, std::vector<float>(15, 0.0f)), doctest::Contains("'bias'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(call({.experts = 16, .groups = 4, .topk_groups = 2, .k = 4, .group_top = 5}, {}),
                       doctest::Contains("group_top"), fp8moe::error);
  logits[37] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(call(ok, {}), doctest::Contains("logits(2, 5)"), fp8moe::error);
  logits[37] = INFINITY;
  CHECK_THROWS_WITH_AS(call(ok, {}), doctest::Contains("finite values"), fp8moe::error);
  logits[37] = 0.5f;
  CHECK_THROWS_WITH_AS(call(ok, std::vector<float>(16, NAN)), doctest::Contains("bias[0]"), fp8moe::error);
  for (auto v : ids) CHECK(v == -1);  // still poisoned (0xFFFFFFFF)
  std::vector<float> dl(4 * 16);
  std::vector<float> dw(4 * 4, 1.0f);
  ids.assign(16, 0);
  ids[3] = 16;
  CHECK_THROWS_WITH_AS(
      moe::route_backward(host_executor{}, ok, matrix_view<float const>(make_matrix(logits.data(), 4, 16)),
                          matrix_view<std::int32_t const>(make_matrix(ids.data(), 4, 4)),
                          matrix_view<float const>(make_matrix(dw.data(), 4, 4)),
                          make_matrix(dl.data(), 4, 16)),
      doctest::Contains("ids(0, 3) = 16"), fp8moe::error);
  call(ok, {});  // and a good call passes
  CHECK(ids[0] >= 0);
}

TEST_CASE("router: every rejected call leaves ids, weights and counts untouched (bit for bit)") {
  std::vector<float> logits = test::random_normal(4 * 16, 1.0f, 72);
  moe::router_config const ok{.experts = 16, .groups = 4, .topk_groups = 2, .k = 4};
  // Outputs sized for the largest k used below (17), filled with a pattern that a write would change.
  std::vector<std::int32_t> ids(4 * 17), counts(16);
  std::vector<float> w(4 * 17);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = 1000 + static_cast<std::int32_t>(i);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = -0.5f - static_cast<float>(i);
  for (std::size_t i = 0; i < counts.size(); ++i) counts[i] = 7000 + static_cast<std::int32_t>(i);
  auto const ids0 = ids, counts0 = counts;
  auto const w0 = w;
  auto call = [&](moe::router_config c, std::vector<float> const& bias, std::int64_t counts_n = 16) {
    moe::route(host_executor{}, c, make_matrix(logits.data(), 4, 16),
               vector_view<float const>{bias.data(), static_cast<std::int64_t>(bias.size())},
               make_matrix(ids.data(), 4, c.k), make_matrix(w.data(), 4, c.k),
               make_vector(counts.data(), counts_n));
  };
  auto untouched = [&] {
    CHECK(ids == ids0);
    CHECK(std::memcmp(w.data(), w0.data(), w.size() * sizeof(float)) == 0);
    CHECK(counts == counts0);
  };
  SUBCASE("k > experts") {
    CHECK_THROWS_AS(call({.experts = 16, .k = 17}, {}), fp8moe::error);
  }
  SUBCASE("groups not a divisor") {
    CHECK_THROWS_AS(call({.experts = 16, .groups = 3, .topk_groups = 1, .k = 4}, {}), fp8moe::error);
  }
  SUBCASE("too few kept groups") {
    CHECK_THROWS_AS(call({.experts = 16, .groups = 8, .topk_groups = 1, .k = 4}, {}), fp8moe::error);
  }
  SUBCASE("bias size") {
    CHECK_THROWS_AS(call(ok, std::vector<float>(15, 0.0f)), fp8moe::error);
  }
  SUBCASE("NaN bias") {
    CHECK_THROWS_AS(call(ok, std::vector<float>(16, NAN)), fp8moe::error);
  }
  SUBCASE("counts size") {
    CHECK_THROWS_AS(call(ok, {}, 15), fp8moe::error);
  }
  SUBCASE("NaN logit in the last token") {
    logits[3 * 16 + 15] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH_AS(call(ok, {}), doctest::Contains("logits(3, 15)"), fp8moe::error);
  }
  SUBCASE("infinite logit in the last token") {
    logits[3 * 16 + 2] = -INFINITY;
    CHECK_THROWS_AS(call(ok, {}), fp8moe::error);
  }
  untouched();
}

TEST_CASE("router backward: rejected ids leave dlogits untouched") {
  moe::router_config const ok{.experts = 16, .groups = 4, .topk_groups = 2, .k = 4};
  auto const logits = test::random_normal(4 * 16, 1.0f, 73);
  std::vector<std::int32_t> ids(16);
  for (int t = 0; t < 4; ++t)
    for (int j = 0; j < 4; ++j) ids[t * 4 + j] = (t + 5 * j) % 16;
  std::vector<float> dw(16, 1.0f), dl(4 * 16);
  for (std::size_t i = 0; i < dl.size(); ++i) dl[i] = 3.0f + static_cast<float>(i);
  auto const dl0 = dl;
  ids[15] = -2;  // the last slot of the last token
  CHECK_THROWS_WITH_AS(
      moe::route_backward(host_executor{}, ok, matrix_view<float const>(make_matrix(logits.data(), 4, 16)),
                          matrix_view<std::int32_t const>(make_matrix(ids.data(), 4, 4)),
                          matrix_view<float const>(make_matrix(dw.data(), 4, 4)),
                          make_matrix(dl.data(), 4, 16)),
      doctest::Contains("ids(3, 3) = -2"), fp8moe::error);
  CHECK(std::memcmp(dl.data(), dl0.data(), dl.size() * sizeof(float)) == 0);
}

TEST_CASE("router: allocating route() and the expert_router concept") {
  moe::router_config const c{.experts = 32, .groups = 4, .topk_groups = 2, .k = 4, .route_scale = 2.5f};
  auto logits = test::random_normal(50 * 32, 1.0f, 81);
  std::vector<float> bias = test::random_normal(32, 0.1f, 82);
  auto const r = moe::route(host_executor{}, c, make_matrix(logits.data(), 50, 32), bias);
  auto const v = run_route(c, logits, bias);
  CHECK(r.ids.storage() == v.ids);
  CHECK(r.weights.storage() == v.weights);
  CHECK(r.counts == v.counts);
  moe::grouped_topk_router router{c, bias};
  std::vector<std::int32_t> ids(50 * 4), n(32);
  std::vector<float> w(50 * 4);
  router.route(host_executor{}, matrix_view<float const>(make_matrix(logits.data(), 50, 32)),
               make_matrix(ids.data(), 50, 4), make_matrix(w.data(), 50, 4), make_vector(n.data(), 32));
  CHECK(ids == v.ids);
  static_assert(moe::expert_router<moe::grouped_topk_router>);
  static_assert(!moe::expert_router<int>);
}

TEST_CASE(
    "router: the router form of route() (constrained on expert_router) equals route() with the config") {
  moe::router_config const c{.experts = 32, .groups = 4, .topk_groups = 2, .k = 4, .route_scale = 2.5f};
  auto const logits = test::random_normal(40 * 32, 1.0f, 83);
  std::vector<float> const bias = test::random_normal(32, 0.1f, 84);
  auto const v = run_route(c, logits, bias);
  std::vector<std::int32_t> ids(40 * 4), n(32);
  std::vector<float> w(40 * 4);
  test::poison(ids);
  test::poison(w);
  test::poison(n);
  moe::route(host_executor{}, moe::grouped_topk_router{c, bias},
             matrix_view<float const>(make_matrix(logits.data(), 40, 32)), make_matrix(ids.data(), 40, 4),
             make_matrix(w.data(), 40, 4), make_vector(n.data(), 32));
  CHECK(ids == v.ids);
  CHECK(w == v.weights);
  CHECK(n == v.counts);
  static_assert(moe::expert_router<moe::grouped_topk_router, host_executor>);
}

TEST_CASE("score_trait: value, and its derivative against central differences (sigmoid, softmax)") {
  // du_e = J^T ds for L(u) = sum_j ds_j s_j(u), checked in float64 against central differences of
  // the trait's own FP32 value(): step 1e-2 leaves a truncation error ~ h^2 |s^(3)| / 6 < 2e-5 and a
  // rounding error ~ 1e-7 / h = 1e-5; 1e-4 + 1e-3 |du| is well above both and far below a wrong
  // formula (e.g. s(1+s) or a missing coupling term changes du by O(0.1)).
  int const n = 6;
  std::vector<float> const u0 = {-1.5f, -0.25f, 0.0f, 0.4f, 1.25f, 2.0f};
  std::vector<float> const ds = {0.3f, -1.1f, 0.7f, 0.2f, -0.4f, 0.9f};
  for (auto f : {moe::score::sigmoid, moe::score::softmax}) {
    INFO("softmax " << (f == moe::score::softmax));
    auto loss = [&](std::vector<float> const& u) {
      moe::score_trait const st(f, u.data(), 1, n);
      double l = 0;
      for (int e = 0; e < n; ++e) l += static_cast<double>(ds[e]) * st.value(u[e]);
      return l;
    };
    moe::score_trait const st(f, u0.data(), 1, n);
    CHECK(st.function() == f);
    CHECK(st.coupled() == (f == moe::score::softmax));
    std::vector<double> s(n);
    double ssum = 0, sds = 0;
    for (int e = 0; e < n; ++e) {
      s[e] = st.value(u0[e]);
      ssum += s[e];
      sds += ds[e] * s[e];
      if (f == moe::score::sigmoid)
        CHECK(s[e] == doctest::Approx(1.0 / (1.0 + std::exp(-u0[e]))).epsilon(1e-6));
    }
    if (f == moe::score::softmax) CHECK(ssum == doctest::Approx(1.0).epsilon(1e-6));
    for (int e = 0; e < n; ++e) {
      double const du = st.grad<double>(s[e], ds[e], sds);
      auto up = u0, um = u0;
      up[e] += 0.01f;
      um[e] -= 0.01f;
      double const fd = (loss(up) - loss(um)) / (static_cast<double>(up[e]) - um[e]);
      INFO("e = " << e);
      CHECK(std::abs(du - fd) <= 1e-4 + 1e-3 * std::abs(du));
      // the sparse split (router backward) is the same derivative: coupling for all, diagonal added
      CHECK(st.coupling<double>(s[e], sds) + st.diagonal<double>(s[e], ds[e]) ==
            doctest::Approx(du).epsilon(1e-12));
    }
  }
}

TEST_CASE("score_trait: a value that names no score function is a checked error (config.score)") {
  auto const unknown = static_cast<moe::score_function>(2);
  CHECK(moe::is_score_function(moe::score::sigmoid));
  CHECK(moe::is_score_function(moe::score::softmax));
  CHECK(!moe::is_score_function(unknown));
  moe::router_config const c{.experts = 16, .k = 4, .score = unknown};
  auto const logits = test::random_normal(4 * 16, 1.0f, 85);
  std::vector<std::int32_t> ids(16, 7);
  std::vector<float> w(16, 7.0f);
  CHECK_THROWS_WITH_AS(
      moe::route(host_executor{}, c, matrix_view<float const>(make_matrix(logits.data(), 4, 16)), {},
                 make_matrix(ids.data(), 4, 4), make_matrix(w.data(), 4, 4), {}),
      doctest::Contains("config.score"), fp8moe::error);
  CHECK(ids == std::vector<std::int32_t>(16, 7));  // nothing written
  CHECK_THROWS_WITH_AS(moe::sequence_balance_loss(
                           host_executor{}, c, matrix_view<float const>(make_matrix(logits.data(), 4, 16))),
                       doctest::Contains("moe::score::sigmoid or moe::score::softmax"), fp8moe::error);
}

namespace {
// float64 weights of fixed selected ids as a function of the logits (for finite differences)
std::vector<double> ref_weights_fixed(moe::router_config const& c, std::vector<double> const& u,
                                      std::int32_t const* ids) {
  std::vector<double> s(static_cast<std::size_t>(c.experts));
  if (c.score == moe::score::sigmoid) {
    for (int e = 0; e < c.experts; ++e) s[e] = 1.0 / (1.0 + std::exp(-u[e]));
  } else {
    double m = *std::max_element(u.begin(), u.end()), sum = 0;
    for (int e = 0; e < c.experts; ++e) sum += std::exp(u[e] - m);
    for (int e = 0; e < c.experts; ++e) s[e] = std::exp(u[e] - m) / sum;
  }
  double sum = 0;
  for (int j = 0; j < c.k; ++j) sum += s[ids[j]];
  std::vector<double> w(c.k);
  for (int j = 0; j < c.k; ++j) w[j] = (c.normalize ? s[ids[j]] / sum : s[ids[j]]) * c.route_scale;
  return w;
}
}  // namespace

TEST_CASE("router: backward matches central finite differences (sigmoid/softmax, normalized or not)") {
  moe::router_config const configs[] = {
      {.experts = 32, .groups = 4, .topk_groups = 2, .k = 4, .route_scale = 2.5f},
      {.experts = 32, .groups = 4, .topk_groups = 2, .k = 4, .route_scale = 2.5f, .normalize = false},
      {.experts = 24, .k = 3, .score = moe::score::softmax, .normalize = false},
      {.experts = 24, .k = 3, .score = moe::score::softmax, .route_scale = 1.5f},
  };
  for (auto const& c : configs) {
    std::int64_t const T = 8;
    auto const logits = test::random_normal(static_cast<std::size_t>(T * c.experts), 1.0f, 91);
    auto const dw = test::random_normal(static_cast<std::size_t>(T * c.k), 1.0f, 92);
    auto const r = run_route(c, logits, {});
    std::vector<float> dl(static_cast<std::size_t>(T * c.experts));
    test::poison(dl);
    moe::route_backward(
        host_executor{}, c, matrix_view<float const>(make_matrix(logits.data(), T, c.experts)),
        matrix_view<std::int32_t const>(make_matrix(r.ids.data(), T, c.k)),
        matrix_view<float const>(make_matrix(dw.data(), T, c.k)), make_matrix(dl.data(), T, c.experts));
    // loss = sum_j dw_j w_j(u); central differences in float64, h = 1e-5: truncation ~h^2 * |w'''| ~ 1e-10,
    // rounding ~1e-16/h ~ 1e-11. The analytic gradient is FP32 (~1e-7 relative): tolerance 2e-6 + 1e-5 |g|.
    for (std::int64_t t = 0; t < T; ++t) {
      std::vector<double> u(logits.begin() + t * c.experts, logits.begin() + (t + 1) * c.experts);
      for (int e = 0; e < c.experts; ++e) {
        double const h = 1e-5, u0 = u[e];
        u[e] = u0 + h;
        auto const wp = ref_weights_fixed(c, u, &r.ids[t * c.k]);
        u[e] = u0 - h;
        auto const wm = ref_weights_fixed(c, u, &r.ids[t * c.k]);
        u[e] = u0;
        double fd = 0;
        for (int j = 0; j < c.k; ++j) fd += dw[t * c.k + j] * (wp[j] - wm[j]) / (2 * h);
        INFO("token " << t << " expert " << e);
        CHECK(std::abs(dl[t * c.experts + e] - fd) <= 2e-6 + 1e-5 * std::abs(fd));
      }
    }
  }
}

// the per-expert step shared by the host update and the device kernel, at compile time:
// sign(total - E * load) * gamma, exact in integers (total 100 over E = 4: mean 25)
static_assert(moe::detail::bias_step(100, 4, 10, 0.5f) == 0.5f);
static_assert(moe::detail::bias_step(100, 4, 25, 0.5f) == 0.0f);
static_assert(moe::detail::bias_step(100, 4, 26, 0.5f) == -0.5f);
static_assert(moe::detail::bias_step(3, 2, 1, 0.25f) == 0.25f);  // 3 - 2 = 1 > 0: below the mean 1.5

TEST_CASE("balance: bias update sign and magnitude, exact integer counts, reduce callback") {
  std::vector<float> bias{0.5f, -0.25f, 0.0f, 1.0f};
  std::vector<std::int32_t> const counts{10, 20, 30, 40};  // mean 25
  moe::update_bias(host_executor{}, make_vector(bias.data(), 4),
                   vector_view<std::int32_t const>{counts.data(), 4});
  CHECK(bias == std::vector<float>{0.5f + 1e-3f, -0.25f + 1e-3f, 0.0f - 1e-3f, 1.0f - 1e-3f});
  // exactly at the mean: unchanged; gamma = 0 freezes
  std::vector<float> b2{0.1f, 0.2f, 0.3f};
  std::vector<std::int64_t> const c2{7, 5, 6};  // mean 6
  moe::update_bias(host_executor{}, make_vector(b2.data(), 3), vector_view<std::int64_t const>{c2.data(), 3},
                   {.gamma = 0.01f});
  CHECK(b2 == std::vector<float>{0.1f - 0.01f, 0.2f + 0.01f, 0.3f});
  moe::update_bias(host_executor{}, make_vector(b2.data(), 3), vector_view<std::int64_t const>{c2.data(), 3},
                   {.gamma = 0.0f});
  CHECK(b2 == std::vector<float>{0.1f - 0.01f, 0.2f + 0.01f, 0.3f});
  // Megatron PR #7081 trace: 64 experts, 608..676 summing to 40840 (mean 638.125). A bf16 sum
  // gives 41216 or 40704 and flips the sign for the experts at 638; integers do not.
  std::vector<std::int32_t> trace(64);
  for (int e = 0; e < 64; ++e) trace[e] = 608 + (e * 37) % 69;
  std::int64_t s = std::accumulate(trace.begin(), trace.end(), std::int64_t{0});
  trace[63] += static_cast<std::int32_t>(40840 - s);
  trace[0] = 638;
  trace[1] = 639;
  s = std::accumulate(trace.begin(), trace.end(), std::int64_t{0});
  trace[2] += static_cast<std::int32_t>(40840 - s);
  REQUIRE(std::accumulate(trace.begin(), trace.end(), std::int64_t{0}) == 40840);
  std::vector<float> b3(64, 0.0f);
  moe::update_bias(host_executor{}, make_vector(b3.data(), 64),
                   vector_view<std::int32_t const>{trace.data(), 64});
  CHECK(b3[0] == 1e-3f);   // 638 < 638.125
  CHECK(b3[1] == -1e-3f);  // 639 > 638.125
  // reduce: a fake 2-rank all-reduce adding another rank's counts {40, 30, 20, 10} -> all 50 = mean
  std::vector<float> b4(4, 0.0f);
  int calls = 0;
  moe::update_bias(host_executor{}, make_vector(b4.data(), 4),
                   vector_view<std::int32_t const>{counts.data(), 4}, {}, [&](std::span<std::int64_t> v) {
                     ++calls;
                     for (std::size_t i = 0; i < v.size(); ++i)
                       v[i] += 40 - 10 * static_cast<std::int64_t>(i);
                   });
  CHECK(calls == 1);
  CHECK(b4 == std::vector<float>(4, 0.0f));
  // recenter keeps the selection-relevant differences and zero mean
  std::vector<float> b5{1.0f, 1.0f, 1.0f, 1.0f};
  moe::update_bias(host_executor{}, make_vector(b5.data(), 4),
                   vector_view<std::int32_t const>{counts.data(), 4}, {.gamma = 0.5f, .recenter = true});
  CHECK(b5 == std::vector<float>{0.5f, 0.5f, -0.5f, -0.5f});
  std::vector<std::int32_t> bad{1, -2, 3, 4};
  CHECK_THROWS_AS(moe::update_bias(host_executor{}, make_vector(b5.data(), 4),
                                   vector_view<std::int32_t const>{bad.data(), 4}),
                  fp8moe::error);
  CHECK_THROWS_AS(moe::update_bias(host_executor{}, make_vector(b5.data(), 4),
                                   vector_view<std::int32_t const>{bad.data(), 3}),
                  fp8moe::error);
}

namespace {
// The DeepSeek-V2 MoEGate seq-aux formula (reference doc §1.4), batch of B sequences, with V3's
// normalized scores: ce = scatter_add(topk_idx) / (L k / E); loss = alpha * mean_b sum_i ce_i * mean_t s'.
double ref_seq_loss(moe::router_config const& c, std::vector<double> const& u, std::int64_t T, std::int64_t L,
                    double alpha) {
  std::int64_t const B = T / L, E = c.experts;
  double total = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    std::vector<double> ce(E, 0.0), mean(E, 0.0);
    for (std::int64_t t = b * L; t < (b + 1) * L; ++t) {
      std::vector<float> uf(u.begin() + t * E, u.begin() + (t + 1) * E);
      std::vector<double> s(E);
      if (c.score == moe::score::sigmoid) {
        for (int e = 0; e < E; ++e) s[e] = 1.0 / (1.0 + std::exp(-u[t * E + e]));
      } else {
        double m = -INFINITY, z = 0;
        for (int e = 0; e < E; ++e) m = std::max(m, u[t * E + e]);
        for (int e = 0; e < E; ++e) z += std::exp(u[t * E + e] - m);
        for (int e = 0; e < E; ++e) s[e] = std::exp(u[t * E + e] - m) / z;
      }
      std::vector<int> order(E);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return s[x] > s[y]; });
      for (int j = 0; j < c.k; ++j) ce[order[j]] += 1.0;
      double const z = std::accumulate(s.begin(), s.end(), 0.0);
      for (int e = 0; e < E; ++e) mean[e] += s[e] / z / L;
    }
    double seq = 0;
    for (int e = 0; e < E; ++e) seq += ce[e] / (static_cast<double>(L) * c.k / E) * mean[e];
    total += seq;
  }
  return alpha * total / B;
}
}  // namespace

TEST_CASE("balance: sequence-wise loss against the V2 scatter_add formula; gradient by finite differences") {
  for (auto sf : {moe::score::sigmoid, moe::score::softmax}) {
    moe::router_config const c{.experts = 16, .groups = 4, .topk_groups = 2, .k = 3, .score = sf};
    std::int64_t const T = 12, L = 6;
    auto const logits = test::random_normal(static_cast<std::size_t>(T * c.experts), 1.0f, 101);
    std::vector<double> u(logits.begin(), logits.end());
    moe::sequence_balance_config const cfg{.alpha = 1e-4f, .sequence_length = L};
    double const loss =
        moe::sequence_balance_loss(host_executor{}, c, make_matrix(logits.data(), T, 16), cfg);
    double const ref = ref_seq_loss(c, u, T, L, 1e-4);
    CHECK(std::abs(loss - ref) <= 1e-6 * ref);  // FP32 scores (1e-7 rel) summed in double
    // perfectly balanced f and P give alpha * sum_i (1) (1/E) * ... = alpha: loss is O(alpha)
    CHECK(loss > 0.5e-4);
    CHECK(loss < 1e-4 * 16 / 3.0);
    // gradient: accumulate into a non-zero buffer, then compare (dlogits - base) with finite differences
    std::vector<float> dl(static_cast<std::size_t>(T * 16), 0.25f);
    moe::sequence_balance_loss_backward(host_executor{}, c,
                                        matrix_view<float const>(make_matrix(logits.data(), T, 16)),
                                        make_matrix(dl.data(), T, 16), cfg, 2.0f);
    double gmax = 0;
    for (float g : dl) gmax = std::max(gmax, std::abs(g - 0.25));
    CHECK(gmax > 1e-7);
    for (std::int64_t i = 0; i < T * 16; ++i) {
      double const h = 1e-4, u0 = u[i];
      u[i] = u0 + h;
      double const lp = ref_seq_loss(c, u, T, L, 1e-4);
      u[i] = u0 - h;
      double const lm = ref_seq_loss(c, u, T, L, 1e-4);
      u[i] = u0;
      double const fd = 2.0 * (lp - lm) / (2 * h);  // dloss = 2
      INFO("element " << i);
      // f is piecewise constant: h = 1e-4 does not cross a top-k boundary for these inputs (checked by
      // the smoothness of the result); FP32 accumulate of 0.25 + g: 2^-24 * 0.25 = 1.5e-8 absolute.
      CHECK(std::abs((dl[i] - 0.25) - fd) <= 3e-8 + 1e-4 * std::abs(fd));
    }
  }
}

TEST_CASE("balance: the writing form of sequence_balance_loss stores the returned loss, rounded to float") {
  for (auto sf : {moe::score::sigmoid, moe::score::softmax}) {
    moe::router_config const c{.experts = 16, .k = 3, .score = sf};
    auto const logits = test::random_normal(24 * 16, 1.0f, 102);
    auto const lv = matrix_view<float const>(make_matrix(logits.data(), 24, 16));
    double const l =
        moe::sequence_balance_loss(host_executor{}, c, lv, {.alpha = 1e-2f, .sequence_length = 8});
    float out = NAN;
    moe::sequence_balance_loss(host_executor{}, c, lv, {.alpha = 1e-2f, .sequence_length = 8}, &out);
    CHECK(out == static_cast<float>(l));
    CHECK(l > 0);
    CHECK_THROWS_WITH_AS(moe::sequence_balance_loss(host_executor{}, c, lv, {}, nullptr),
                         doctest::Contains("'loss'"), fp8moe::error);
  }

  moe::router_config const c{.experts = 16, .k = 2};
  std::vector<float> l(5 * 16, 0.1f);
  CHECK_THROWS_WITH_AS(
      moe::sequence_balance_loss(host_executor{}, c, make_matrix(l.data(), 5, 16), {.sequence_length = 2}),
      doctest::Contains("sequence_length"), fp8moe::error);
}

TEST_CASE("workspace_bytes(exec, balance_shape): none on the host, the loss runs with an empty workspace") {
  moe::router_config const c{.experts = 16, .k = 3};
  host_executor const ex;
  moe::sequence_balance_config const cfg{.alpha = 1e-2f, .sequence_length = 8};
  CHECK(moe::workspace_bytes(ex, moe::balance_shape{24, c.experts, c.k, cfg.sequence_length}) == 0);
  auto const logits = test::random_normal(24 * 16, 1.0f, 103);
  auto const lv = matrix_view<float const>(make_matrix(logits.data(), 24, 16));
  float out = NAN;
  moe::sequence_balance_loss(ex, c, lv, cfg, &out, moe::device_workspace{});
  CHECK(out > 0);
  std::vector<float> g(logits.size(), 0.0f);
  moe::sequence_balance_loss_backward(ex, c, lv, make_matrix(g.data(), 24, 16), cfg, 1.0f,
                                      moe::device_workspace{});
  CHECK(std::any_of(g.begin(), g.end(), [](float v) { return v != 0.0f; }));
  CHECK_THROWS_WITH_AS((void)moe::workspace_bytes(ex, moe::balance_shape{24, c.experts, c.k, 5}),
                       doctest::Contains("argument 'balance_shape'"), fp8moe::error);
  CHECK_THROWS_WITH_AS((void)moe::workspace_bytes(ex, moe::balance_shape{0, c.experts, c.k, 0}),
                       doctest::Contains("argument 'balance_shape'"), fp8moe::error);
}

#if FP8MOE_CUDA_COMPILER
#include "fp8moe/core/cuda/executor.hpp"

TEST_CASE("router (CUDA): device route matches the host path") {
  if (cuda_device_count() == 0) return;
  for (auto const& c :
       {moe::deepseek_v3_router,
        moe::router_config{.experts = 64, .k = 6, .score = moe::score::softmax, .normalize = false},
        // E = 512 > staged_max_experts: the unstaged kernel
        moe::router_config{.experts = 512, .groups = 8, .topk_groups = 3, .k = 8, .route_scale = 2.5f}}) {
    std::int64_t const T = 3000;
    auto const logits = test::random_normal(static_cast<std::size_t>(T * c.experts), 2.0f, 111);
    auto const bias = test::random_normal(static_cast<std::size_t>(c.experts), 0.05f, 112);
    auto const host = run_route(c, logits, bias);
    test::device_array<float> dl(logits.data(), logits.size()), db(bias.data(), bias.size());
    test::device_array<float> dw(host.weights.size());
    test::device_array<std::int32_t> di(host.ids.size()), dn(host.counts.size());
    dw.poison();
    di.poison();
    cuda_executor ex{nullptr};
    moe::route(ex, c, matrix_view<float const>(make_matrix(dl.p, T, c.experts)),
               vector_view<float const>{db.p, c.experts}, make_matrix(di.p, T, c.k),
               make_matrix(dw.p, T, c.k), make_vector(dn.p, c.experts));
    FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
    auto const ids = di.get(), n = dn.get();
    auto const w = dw.get();
    // device expf differs from glibc by <= 2 ulp: ids may differ only at near-ties (margin < 1e-5)
    int mismatched = 0;
    for (std::int64_t t = 0; t < T; ++t) {
      bool same = std::equal(ids.begin() + t * c.k, ids.begin() + (t + 1) * c.k, host.ids.begin() + t * c.k);
      if (!same) {
        ++mismatched;
        auto const ref = ref_gate(c, &logits[t * c.experts], bias.data());
        CHECK(std::min(ref.group_gap, ref.expert_gap) < 1e-5);
        continue;
      }
      for (int j = 0; j < c.k; ++j)
        CHECK(std::abs(w[t * c.k + j] - host.weights[t * c.k + j]) <= 1e-6f * 2.5f);
    }
    if (mismatched == 0) CHECK(n == host.counts);
    // backward on the device against the host
    auto const dwt = test::random_normal(host.weights.size(), 1.0f, 113);
    test::device_array<float> ddw(dwt.data(), dwt.size()), ddl(logits.size());
    FP8MOE_CUDA_CHECK(cudaMemcpy(di.p, host.ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
    moe::route_backward(ex, c, matrix_view<float const>(make_matrix(dl.p, T, c.experts)),
                        matrix_view<std::int32_t const>(make_matrix(di.p, T, c.k)),
                        matrix_view<float const>(make_matrix(ddw.p, T, c.k)),
                        make_matrix(ddl.p, T, c.experts));
    std::vector<float> const gd = ddl.get();
    std::vector<float> gh(logits.size());
    moe::route_backward(
        host_executor{}, c, matrix_view<float const>(make_matrix(logits.data(), T, c.experts)),
        matrix_view<std::int32_t const>(make_matrix(host.ids.data(), T, c.k)),
        matrix_view<float const>(make_matrix(dwt.data(), T, c.k)), make_matrix(gh.data(), T, c.experts));
    for (std::size_t i = 0; i < gd.size(); ++i)
      CHECK(std::abs(gd[i] - gh[i]) <= 1e-5f + 1e-5f * std::abs(gh[i]));
    // bias update on the device against the host rule
    std::vector<float> bh(bias);
    moe::update_bias(host_executor{}, make_vector(bh.data(), c.experts),
                     vector_view<std::int32_t const>{host.counts.data(), c.experts});
    FP8MOE_CUDA_CHECK(cudaMemcpy(dn.p, host.counts.data(), n.size() * 4, cudaMemcpyHostToDevice));
    moe::update_bias(ex, make_vector(db.p, c.experts), vector_view<std::int32_t const>{dn.p, c.experts});
    CHECK(db.get() == bh);
  }
}
TEST_CASE("balance (CUDA): sequence loss and its gradient match the host path") {
  if (cuda_device_count() == 0) return;
  for (auto sf : {moe::score::sigmoid, moe::score::softmax}) {
    moe::router_config const c{.experts = 64, .groups = 8, .topk_groups = 2, .k = 6, .score = sf};
    std::int64_t const T = 512, L = 128;
    moe::sequence_balance_config const cfg{.alpha = 1e-4f, .sequence_length = L};
    auto const logits = test::random_normal(static_cast<std::size_t>(T * c.experts), 1.0f, 121);
    double const lh =
        moe::sequence_balance_loss(host_executor{}, c, make_matrix(logits.data(), T, c.experts), cfg);
    std::vector<float> gh(logits.size(), 0.5f);
    moe::sequence_balance_loss_backward(host_executor{}, c,
                                        matrix_view<float const>(make_matrix(logits.data(), T, c.experts)),
                                        make_matrix(gh.data(), T, c.experts), cfg, 3.0f);
    cuda_executor ex{nullptr};
    std::size_t const wsb =
        moe::workspace_bytes(ex, moe::balance_shape{T, c.experts, c.k, cfg.sequence_length});
    std::vector<float> const half(logits.size(), 0.5f);
    test::device_array<float> dl(logits.data(), logits.size()), dg(half.data(), half.size()), dloss(1);
    test::device_array<unsigned char> ws(wsb);
    auto const lv = matrix_view<float const>(make_matrix(dl.p, T, c.experts));
    moe::sequence_balance_loss(ex, c, lv, cfg, dloss.p, moe::device_workspace{ws.p, wsb});
    moe::sequence_balance_loss_backward(ex, c, lv, make_matrix(dg.p, T, c.experts), cfg, 3.0f,
                                        moe::device_workspace{ws.p, wsb});
    // one byte less than the query is refused on the host, before anything is enqueued
    CHECK_THROWS_WITH_AS(
        moe::sequence_balance_loss(ex, c, lv, cfg, dloss.p, moe::device_workspace{ws.p, wsb - 1}),
        doctest::Contains("argument 'workspace'"), fp8moe::error);
    CHECK_THROWS_WITH_AS(moe::sequence_balance_loss_backward(ex, c, lv, make_matrix(dg.p, T, c.experts), cfg,
                                                             3.0f, moe::device_workspace{ws.p, wsb - 1}),
                         doctest::Contains("argument 'workspace'"), fp8moe::error);
    FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
    float const ld = dloss.get()[0];
    std::vector<float> const gd = dg.get();
    CHECK(std::abs(ld - lh) <= 1e-5 * lh);  // FP32 scores (device expf within 2 ulp), float result
    double gmax = 0;
    for (float g : gh) gmax = std::max(gmax, std::abs(g - 0.5));
    for (std::size_t i = 0; i < gd.size(); ++i) REQUIRE(std::abs(gd[i] - gh[i]) <= 1e-5 * gmax + 1e-7);
  }
}

TEST_CASE("router (CUDA): NaN logits order as -inf, as the host's route_token") {
  // The host op rejects NaN logits; the device never checks (router.cuh) and orders NaN scores as
  // -inf. Compared with the shared route_token run on the host, token by token. Logits on a 1/8
  // grid with a per-expert bias of 1e-3*sqrt(e+1): no near-ties, so device expf (<= 2 ulp from
  // glibc) cannot flip a selection and ids must match exactly.
  moe::router_config const c{.experts = 64, .groups = 8, .topk_groups = 4, .k = 6, .route_scale = 2.5f};
  std::int64_t const T = 1000;
  auto const u = test::random_uniform(static_cast<std::size_t>(T * c.experts), -4.0f, 4.0f, 131);
  std::vector<float> logits(u.size()), bias(static_cast<std::size_t>(c.experts));
  for (std::size_t i = 0; i < u.size(); ++i) logits[i] = std::round(u[i] * 8.0f) / 8.0f;
  for (int e = 0; e < c.experts; ++e) bias[static_cast<std::size_t>(e)] = 1e-3f * std::sqrt(e + 1.0f);
  float const nan = std::numeric_limits<float>::quiet_NaN();
  for (int e = 0; e < c.experts; ++e) logits[static_cast<std::size_t>(e)] = nan;  // token 0: all NaN
  for (std::int64_t t = 1; t < T; t += 7)                                         // others: 1..5 NaN experts
    for (int j = 0; j <= static_cast<int>(t % 5); ++j)
      logits[static_cast<std::size_t>(t * c.experts + (t * 13 + j * 29) % c.experts)] = nan;
  std::vector<std::int32_t> hid(static_cast<std::size_t>(T * c.k));
  std::vector<float> hw(hid.size());
  for (std::int64_t t = 0; t < T; ++t)
    moe::route_token(c, &logits[static_cast<std::size_t>(t * c.experts)], 1, bias.data(), &hid[t * c.k], 1,
                     &hw[t * c.k], 1);
  test::device_array<float> dl(logits.data(), logits.size()), db(bias.data(), bias.size());
  test::device_array<float> dw(hw.size());
  test::device_array<std::int32_t> di(hid.size()), dn(static_cast<std::size_t>(c.experts));
  dw.poison();
  di.poison();
  dn.poison();
  moe::route(cuda_executor{nullptr}, c, matrix_view<float const>(make_matrix(dl.p, T, c.experts)),
             vector_view<float const>{db.p, c.experts}, make_matrix(di.p, T, c.k), make_matrix(dw.p, T, c.k),
             make_vector(dn.p, c.experts));
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  auto const ids = di.get(), counts = dn.get();
  auto const w = dw.get();
  CHECK(ids == hid);
  std::vector<std::int32_t> hcounts(static_cast<std::size_t>(c.experts), 0);
  for (auto id : hid) ++hcounts[static_cast<std::size_t>(id)];
  CHECK(counts == hcounts);
  int nan_selected = 0, weight_bad = 0;
  for (std::int64_t t = 1; t < T; ++t)  // a NaN expert is never chosen while finite ones remain
    for (int j = 0; j < c.k; ++j) nan_selected += std::isnan(logits[t * c.experts + ids[t * c.k + j]]);
  CHECK(nan_selected == 0);
  for (int j = 0; j < c.k; ++j) CHECK(ids[j] == j);  // token 0: all -inf, ties to the lowest ids
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (std::isnan(hw[i]) != std::isnan(w[i]))
      ++weight_bad;
    else if (!std::isnan(hw[i]) && !(std::abs(w[i] - hw[i]) <= 1e-6f * 2.5f))
      ++weight_bad;
  }
  CHECK(weight_bad == 0);
}

TEST_CASE(
    "permute (CUDA): a masked count above max_m drops the extra slots (slot_row -1), keeping (token, slot) "
    "order") {
  // The host plan throws on overflow; the device drops (permute.cuh). Expected from the host plan
  // with room for every slot (max_m = T): slot v of expert e at rank r keeps row e*max_m + r when
  // r < max_m, else -1; counts are clamped to max_m.
  std::int64_t const T = 700;
  int const k = 4, E = 8, max_m = 150;  // ~350 slots per expert: every expert overflows
  auto const u = test::random_uniform(static_cast<std::size_t>(T * k), 0.0f, 1.0f, 141);
  std::vector<std::int32_t> ids(u.size());
  for (std::size_t i = 0; i < u.size(); ++i)
    ids[i] = u[i] < 0.05f ? -1 : static_cast<std::int32_t>(u[i] * E) % E;  // some remote (-1) slots
  moe::host_permute_plan full(moe::masked{.max_m = T}, T, k, E);
  moe::build_permute_plan(host_executor{}, make_matrix(ids.data(), T, k), full.view());
  cuda_executor ex{nullptr};
  moe::cuda_permute_plan dev(ex, moe::masked{.max_m = max_m}, T, k, E);
  test::device_array<std::int32_t> did(ids.data(), ids.size());
  FP8MOE_CUDA_CHECK(cudaMemset(dev.view().slot_row, 0x7F, ids.size() * 4));  // poison
  moe::build_permute_plan(ex, matrix_view<std::int32_t const>(make_matrix(did.p, T, k)), dev.view(),
                          dev.workspace());
  FP8MOE_CUDA_CHECK(cudaStreamSynchronize(ex.stream));
  auto const& dp = dev.view();
  auto const slot_row = test::to_host(dp.slot_row, ids.size());
  auto const counts = test::to_host(dp.counts, static_cast<std::size_t>(E));
  auto const row_token = test::to_host(dp.row_token, static_cast<std::size_t>(E * max_m));
  auto const row_slot = test::to_host(dp.row_slot, static_cast<std::size_t>(E * max_m));
  int dropped = 0, bad = 0;
  for (std::size_t v = 0; v < ids.size(); ++v) {
    std::int32_t const hr = full.slot_row()[v];
    std::int32_t want = -1;
    if (hr >= 0) {
      std::int32_t const e = hr / static_cast<std::int32_t>(T), r = hr % static_cast<std::int32_t>(T);
      if (r < max_m)
        want = e * max_m + r;
      else
        ++dropped;
    }
    if (slot_row[v] != want) ++bad;
    if (want >= 0 && (row_token[want] != static_cast<std::int32_t>(v / k) ||
                      row_slot[want] != static_cast<std::int32_t>(v % k)))
      ++bad;
  }
  CHECK(bad == 0);
  CHECK(dropped > 0);  // the case really overflows
  for (int e = 0; e < E; ++e) CHECK(counts[e] == std::min(full.counts()[e], max_m));
}
#endif
