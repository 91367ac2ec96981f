// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// moe/permute: the plan against brute force and vLLM's published moe_align_block_size trace,
// contiguous and masked layouts, FP32/BF16/FP8 rows, the 1/k round trip, combine against float64,
// bit-reproducibility, both backwards by finite differences, bad input; (nvcc) CUDA against host.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "fp8moe/moe/permute.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "test_support.hpp"
#if FP8MOE_CUDA_COMPILER
#include "fp8moe/moe/cuda/permute.cuh"
#endif

using namespace fp8moe;
namespace moe = fp8moe::moe;

namespace {

/// Central difference of loss(v) in element i with step h; the denominator is the step actually
/// taken in FP32, (v_i + h) - (v_i - h), so the rounding of v_i +- h adds no error.
template <class Loss>
double central_difference(std::vector<float> const& v, std::size_t i, float h, Loss&& loss) {
  auto vp = v, vm = v;
  vp[i] += h;
  vm[i] -= h;
  return (loss(vp) - loss(vm)) / (static_cast<double>(vp[i]) - vm[i]);
}

/// Random routing: k distinct experts per token; `drop` = probability of a -1 slot (EP: remote).
std::vector<std::int32_t> random_ids(std::int64_t T, int k, int E, std::uint64_t seed, float drop = 0.0f) {
  std::mt19937_64 g{seed};
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
  std::vector<int> perm(E);
  std::uniform_real_distribution<float> u{0.0f, 1.0f};
  for (std::int64_t t = 0; t < T; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), g);
    for (int j = 0; j < k; ++j) ids[t * k + j] = u(g) < drop ? -1 : perm[j];
  }
  return ids;
}

template <class Layout>
moe::host_permute_plan make_plan(Layout l, std::vector<std::int32_t> const& ids, std::int64_t T, int k,
                                 int E) {
  moe::host_permute_plan plan(l, T, k, E);
  moe::build_permute_plan(host_executor{}, make_matrix(ids.data(), T, k), plan.view());
  return plan;
}

matrix_view<float const> cview(std::vector<float> const& v, std::int64_t r, std::int64_t c) {
  return make_matrix(v.data(), r, c);
}

}  // namespace

TEST_CASE("permute plan: vLLM moe_align_block_size docstring trace (block 4)") {
  // topk_ids = [[2,3,4],[1,2,4],[1,3,4],[1,2,3]] -> sorted_token_ids (flat t*K+j, pad = 12):
  // [3,6,9,12, 0,4,10,12, 1,7,11,12, 2,5,8,12]; expert 0 is empty.
  std::vector<std::int32_t> const ids{2, 3, 4, 1, 2, 4, 1, 3, 4, 1, 2, 3};
  auto const plan = make_plan(moe::contiguous{.m_align = 4}, ids, 4, 3, 5);
  std::vector<int> const golden{3, 6, 9, 12, 0, 4, 10, 12, 1, 7, 11, 12, 2, 5, 8, 12};
  REQUIRE(plan.rows_in_use() == 16);
  for (int r = 0; r < 16; ++r) {
    int const flat = plan.row_token()[r] < 0 ? 12 : plan.row_token()[r] * 3 + plan.row_slot()[r];
    CHECK(flat == golden[r]);
    CHECK(plan.row_expert()[r] == (golden[r] == 12 ? -1 : r / 4 + 1));
  }
  CHECK(plan.counts() == std::vector<std::int32_t>{0, 3, 3, 3, 3});
  CHECK(plan.expert_offset() == std::vector<std::int32_t>{0, 0, 4, 8, 12, 16});
}

TEST_CASE("permute plan: contiguous and masked layouts against brute force, with -1 (remote) slots") {
  std::int64_t const T = 257;
  int const k = 6, E = 16;
  auto const ids = random_ids(T, k, E, 5, 0.2f);
  // brute force: per expert, the (t, j) pairs in ascending order
  std::vector<std::vector<std::pair<int, int>>> lists(E);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < k; ++j)
      if (ids[t * k + j] >= 0) lists[ids[t * k + j]].push_back({t, j});
  for (int align : {1, 64, 128}) {
    auto const plan = make_plan(moe::contiguous{.m_align = align}, ids, T, k, E);
    auto const& p = plan.view();
    CHECK(p.rows == moe::plan_rows(moe::contiguous{.m_align = align}, T, k, E));
    std::int64_t off = 0;
    for (int e = 0; e < E; ++e) {
      CHECK(plan.expert_offset()[e] == off);
      CHECK(plan.counts()[e] == static_cast<std::int32_t>(lists[e].size()));
      CHECK(off % align == 0);  // one expert per aligned window (DeepGEMM contiguous contract)
      for (std::size_t i = 0; i < lists[e].size(); ++i) {
        auto const r = off + static_cast<std::int64_t>(i);
        REQUIRE(plan.row_token()[r] == lists[e][i].first);
        CHECK(plan.row_slot()[r] == lists[e][i].second);
        CHECK(plan.row_expert()[r] == e);
        CHECK(plan.slot_row()[lists[e][i].first * k + lists[e][i].second] == r);
      }
      for (auto r = off + static_cast<std::int64_t>(lists[e].size());
           r < off + round_up<std::int64_t>(lists[e].size(), align); ++r)
        CHECK((plan.row_token()[r] == -1 && plan.row_slot()[r] == -1 && plan.row_expert()[r] == -1));
      off += round_up<std::int64_t>(static_cast<std::int64_t>(lists[e].size()), align);
    }
    CHECK(plan.rows_in_use() == off);
    CHECK(moe::contiguous_rows(moe::contiguous{.m_align = align}, plan.counts().data(), E) == off);
    for (auto r = off; r < p.rows; ++r) CHECK(plan.row_expert()[r] == -1);
    for (int i = 0; i < T * k; ++i)
      if (ids[i] < 0) CHECK(plan.slot_row()[i] == -1);
  }
  std::int64_t maxc = 0;
  for (auto const& l : lists) maxc = std::max<std::int64_t>(maxc, static_cast<std::int64_t>(l.size()));
  auto const plan = make_plan(moe::masked{.max_m = maxc + 3}, ids, T, k, E);
  for (int e = 0; e < E; ++e) {
    CHECK(plan.expert_offset()[e] == e * (maxc + 3));
    for (std::size_t i = 0; i < lists[e].size(); ++i)
      CHECK(plan.row_token()[e * (maxc + 3) + static_cast<std::int64_t>(i)] == lists[e][i].first);
  }
  // masked overflow: one row short -> error, plan untouched
  moe::host_permute_plan small(moe::masked{.max_m = maxc - 1}, T, k, E);
  std::memset(const_cast<std::int32_t*>(small.row_token().data()), 0x7F, small.row_token().size() * 4);
  CHECK_THROWS_WITH_AS(moe::build_permute_plan(host_executor{}, make_matrix(ids.data(), T, k), small.view()),
                       doctest::Contains("at most max_m"), fp8moe::error);
  CHECK(small.row_token()[0] == 0x7F7F7F7F);
  auto bad = ids;
  bad[7] = E;
  CHECK_THROWS_WITH_AS(make_plan(moe::contiguous{}, bad, T, k, E), doctest::Contains("ids(1, 1) = 16"),
                       fp8moe::error);
  CHECK_THROWS_AS(moe::host_permute_plan(moe::contiguous{.m_align = 0}, T, k, E), fp8moe::error);
  moe::host_permute_plan tight(moe::contiguous{.m_align = 128}, T, k, E, 128);
  CHECK_THROWS_WITH_AS(moe::build_permute_plan(host_executor{}, make_matrix(ids.data(), T, k), tight.view()),
                       doctest::Contains("plan.rows"), fp8moe::error);
}

TEST_CASE("permute: FP32, BF16 and FP8 (+1x128 scales) rows; padding rows zeroed; masked rows untouched") {
  std::int64_t const T = 70, H = 256;
  int const k = 4, E = 8;
  auto const ids = random_ids(T, k, E, 9);
  auto const x = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 10);
  for (bool is_masked : {false, true}) {
    auto const plan = is_masked ? make_plan(moe::masked{.max_m = T}, ids, T, k, E)
                                : make_plan(moe::contiguous{.m_align = 32}, ids, T, k, E);
    auto const& p = plan.view();
    std::vector<float> out(static_cast<std::size_t>(p.rows * H));
    test::poison(out);
    moe::permute(host_executor{}, p, cview(x, T, H), make_matrix(out.data(), p.rows, H));
    for (std::int64_t r = 0; r < p.rows; ++r) {
      int const t = plan.row_token()[r];
      for (std::int64_t h = 0; h < H; ++h) {
        float const v = out[r * H + h];
        if (t >= 0)
          REQUIRE(std::memcmp(&v, &x[t * H + h], 4) == 0);
        else if (!is_masked && r < plan.rows_in_use())
          REQUIRE(v == 0.0f);
        else
          REQUIRE(std::isnan(v));  // untouched
      }
    }
    // bf16 rows
    std::vector<bfloat16_t> xb;
    for (float v : x) xb.emplace_back(v);
    std::vector<bfloat16_t> ob(static_cast<std::size_t>(p.rows * H), bfloat16_t::from_bits(0x7FC1));
    moe::permute(host_executor{}, p, make_matrix(xb.data(), T, H), make_matrix(ob.data(), p.rows, H));
    for (std::int64_t r = 0; r < p.rows; ++r)
      if (plan.row_token()[r] >= 0) REQUIRE(ob[r * H + 5].bits() == xb[plan.row_token()[r] * H + 5].bits());
  }
  // FP8 with per-token 1x128 scales through the allocating overload
  scaling::quantized_matrix<float8_e4m3_t> xq(T, H, scaling::tile_1x128);
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t h = 0; h < H; ++h) xq.data(t, h) = float8_e4m3_t(x[t * H + h] * 16.0f);
    for (std::int64_t c = 0; c < 2; ++c) xq.scales(t, c) = 1.0f / 16.0f + static_cast<float>(t * 2 + c);
  }
  moe::route_result r{host_matrix<std::int32_t>(T, k), host_matrix<float>(T, k, 0.25f),
                      std::vector<std::int32_t>(E, 0)};
  std::copy(ids.begin(), ids.end(), r.ids.storage().begin());
  for (auto id : ids) ++r.counts[id];
  auto const pq = moe::permute(host_executor{}, xq.view(), r, moe::contiguous{.m_align = 16});
  CHECK(pq.x.data.rows() == pq.plan.rows_in_use());
  for (std::int64_t row = 0; row < pq.x.data.rows(); ++row) {
    int const t = pq.plan.row_token()[row];
    for (std::int64_t h = 0; h < H; ++h)
      REQUIRE(pq.x.data(row, h).bits() == (t >= 0 ? xq.data(t, h).bits() : 0));
    for (std::int64_t c = 0; c < 2; ++c) CHECK(pq.x.scales(row, c) == (t >= 0 ? xq.scales(t, c) : 1.0f));
    CHECK(pq.weights[static_cast<std::size_t>(row)] == (t >= 0 ? 0.25f : 0.0f));
  }
}

TEST_CASE("permute -> combine with weights 1/k is the identity; combine matches float64; bit-reproducible") {
  std::int64_t const T = 129, H = 96;
  for (int k : {4, 8, 6}) {
    int const E = 16;
    auto const ids = random_ids(T, k, E, 20 + k);
    auto x = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 21);
    for (auto& v : x)
      v = static_cast<float>(bfloat16_t(v));  // 8-bit significands: j * x / k fits FP32 exactly
    auto const plan = make_plan(moe::contiguous{.m_align = 64}, ids, T, k, E);
    auto const& p = plan.view();
    std::vector<float> perm(static_cast<std::size_t>(p.rows * H)), back(static_cast<std::size_t>(T * H));
    moe::permute(host_executor{}, p, cview(x, T, H), make_matrix(perm.data(), p.rows, H));
    std::vector<float> w(static_cast<std::size_t>(T * k), 1.0f / static_cast<float>(k));
    test::poison(back);
    moe::combine(host_executor{}, p, cview(perm, p.rows, H), cview(w, T, k), make_matrix(back.data(), T, H));
    for (std::size_t i = 0; i < back.size(); ++i) {
      if (k == 4 || k == 8)
        REQUIRE(back[i] == x[i]);  // 1/k exact and partial sums j x/k need <= 8 + 3 bits: exact
      else
        REQUIRE(std::abs(back[i] - x[i]) <= 8 * 6e-8f * std::abs(x[i]));  // 1/6 rounded + 6 adds: < 8 ulp
    }
  }
  // combine against float64 with random weights, BF16 output and BF16 rows
  int const k = 8, E = 32;
  auto const ids = random_ids(T, k, E, 31, 0.1f);
  auto const plan = make_plan(moe::contiguous{.m_align = 128}, ids, T, k, E);
  auto const& p = plan.view();
  auto const y = test::random_normal(static_cast<std::size_t>(p.rows * H), 1.0f, 32);
  auto const w = test::random_uniform(static_cast<std::size_t>(T * k), 0.0f, 1.0f, 33);
  std::vector<float> out(static_cast<std::size_t>(T * H)), out2(out.size());
  test::poison(out);
  moe::combine(host_executor{}, p, cview(y, p.rows, H), cview(w, T, k), make_matrix(out.data(), T, H));
  moe::combine(host_executor{.threads = 1}, p, cview(y, p.rows, H), cview(w, T, k),
               make_matrix(out2.data(), T, H));
  CHECK(std::memcmp(out.data(), out2.data(), out.size() * 4) ==
        0);  // fixed order: same bits on any thread count
  std::vector<bfloat16_t> outb(out.size());
  moe::combine(host_executor{}, p, cview(y, p.rows, H), cview(w, T, k), make_matrix(outb.data(), T, H));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) {
      double ref = 0, mag = 0;
      for (int j = 0; j < k; ++j) {
        int const e = ids[t * k + j];
        if (e < 0) continue;
        double const term = static_cast<double>(w[t * k + j]) * y[plan.slot_row()[t * k + j] * H + h];
        ref += term;
        mag += std::abs(term);
      }
      // k FP32 products and adds: |err| <= 2k * 2^-24 * sum |terms|
      REQUIRE(std::abs(out[t * H + h] - ref) <= 2.0 * k * 6e-8 * mag + 1e-30);
      CHECK(outb[t * H + h].bits() == bfloat16_t(out[t * H + h]).bits());  // one rounding at the end
    }
}

namespace {
/// Independent of the plan: the row of slot (t, j) from the ids alone, by the layouts' definitions.
/// Contiguous: experts in order, each segment rounded up to m_align; masked: expert e at e * max_m.
/// Inside an expert, slots in flat order t * k + j (vLLM's moe_align_block_size order).
std::vector<std::int64_t> slot_rows_from_ids(std::vector<std::int32_t> const& ids, int E, bool masked,
                                             std::int64_t align) {
  std::vector<std::int64_t> count(static_cast<std::size_t>(E), 0), base(static_cast<std::size_t>(E), 0);
  for (auto e : ids)
    if (e >= 0) ++count[e];
  for (int e = 1; e < E; ++e)
    base[e] = masked ? e * align : base[e - 1] + (count[e - 1] + align - 1) / align * align;
  std::vector<std::int64_t> row(ids.size(), -1), next(static_cast<std::size_t>(E), 0);
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= 0) row[i] = base[ids[i]] + next[ids[i]]++;
  return row;
}
}  // namespace

TEST_CASE("permute_backward against an independent reference built from the ids (contiguous and masked)") {
  std::int64_t const T = 61, H = 40;
  int const k = 3, E = 7;
  auto const ids = random_ids(T, k, E, 51, 0.2f);
  for (bool masked : {false, true}) {
    CAPTURE(masked);
    std::int64_t const align = masked ? T : 16;
    auto const plan = masked ? make_plan(moe::masked{.max_m = T}, ids, T, k, E)
                             : make_plan(moe::contiguous{.m_align = 16}, ids, T, k, E);
    auto const& p = plan.view();
    auto const g = test::random_normal(static_cast<std::size_t>(p.rows * H), 1.0f, 52);  // dL/dpermuted
    auto const row = slot_rows_from_ids(ids, E, masked, align);
    // dx(t) = sum over the routed slots j of g(row(t, j)): summed in FP32 in slot order, as documented
    // (bit for bit), and checked against float64 with the k-term FP32 bound.
    std::vector<float> dx(static_cast<std::size_t>(T * H));
    test::poison(dx);
    moe::permute_backward(host_executor{}, p, cview(g, p.rows, H), make_matrix(dx.data(), T, H));
    std::vector<bfloat16_t> dxb(dx.size());
    moe::permute_backward(host_executor{.threads = 1}, p, cview(g, p.rows, H), make_matrix(dxb.data(), T, H));
    int wrong = 0;
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t h = 0; h < H; ++h) {
        float acc = 0.0f;
        double ref = 0, mag = 0;
        for (int j = 0; j < k; ++j) {
          auto const r = row[t * k + j];
          if (r < 0) continue;
          REQUIRE(r < p.rows);
          acc += g[r * H + h];
          ref += g[r * H + h];
          mag += std::abs(g[r * H + h]);
        }
        float const got = dx[t * H + h];
        wrong += std::memcmp(&got, &acc, 4) != 0;
        wrong += std::abs(got - ref) > k * 6e-8 * mag;  // k FP32 adds: |err| <= k 2^-24 sum |terms|
        wrong += dxb[t * H + h].bits() != bfloat16_t(acc).bits();  // one rounding at the end
      }
    CHECK(wrong == 0);
  }
}

TEST_CASE("permute gathers rows of an FP8 tensor past 2^31 elements (64-bit row offsets)") {
  // x (T,H) FP8 with T*H = 2^31 + 2H elements (2 GiB, calloc: untouched pages cost nothing). Only a
  // few tokens are routed here (the others are -1: on other EP ranks), so the plan has a handful of
  // rows and only those rows of x are read. With a 32-bit row offset, token t >= 2^23 would read
  // from (t * H) mod 2^32, i.e. the wrong row (or crash).
  std::int64_t const H = 256, T = (std::int64_t{1} << 23) + 2;
  REQUIRE(T * H > (std::int64_t{1} << 31));
  auto* raw = static_cast<float8_e4m3_t*>(std::calloc(static_cast<std::size_t>(T * H), 1));
  if (raw == nullptr) {
    MESSAGE("skipped: cannot reserve 2 GiB of address space");
    return;
  }
  std::vector<std::int64_t> const tokens{5, (std::int64_t{1} << 23) - 1, std::int64_t{1} << 23, T - 1};
  auto pattern = [](std::int64_t t, std::int64_t h) {
    return float8_e4m3_t::from_float(static_cast<float>((t % 13) + 1) * (h % 2 ? -0.5f : 0.25f) +
                                     static_cast<float>(h % 7));
  };
  for (auto t : tokens)
    for (std::int64_t h = 0; h < H; ++h) raw[t * H + h] = pattern(t, h);
  int const E = 2, k = 1;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T), -1);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    ids[static_cast<std::size_t>(tokens[i])] = static_cast<int>(i % 2);
  std::int32_t const counts[2] = {2, 2};
  moe::contiguous const layout{.m_align = 16};
  std::int64_t const M = moe::contiguous_rows(layout, counts, E);
  moe::host_permute_plan plan(layout, T, k, E, M);
  moe::build_permute_plan(host_executor{}, make_matrix(ids.data(), T, k), plan.view());
  std::vector<float8_e4m3_t> out(static_cast<std::size_t>(M * H));
  test::poison(out);
  moe::permute(host_executor{}, plan.view(), matrix_view<float8_e4m3_t const>(make_matrix(raw, T, H)),
               make_matrix(out.data(), M, H));
  int wrong = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    auto const t = tokens[i];
    auto const r = plan.slot_row()[static_cast<std::size_t>(t)];
    REQUIRE(r >= 0);
    CHECK(r == (i % 2) * 16 + static_cast<std::int64_t>(i / 2));  // expert segment, then token order
    for (std::int64_t h = 0; h < H; ++h) wrong += out[r * H + h].bits() != pattern(t, h).bits();
  }
  CHECK(wrong == 0);
  std::free(raw);
}

TEST_CASE("permute backward and combine backward match central finite differences") {
  std::int64_t const T = 20, H = 24;
  int const k = 3, E = 6;
  auto const ids = random_ids(T, k, E, 41, 0.15f);
  auto const plan = make_plan(moe::contiguous{.m_align = 8}, ids, T, k, E);
  auto const& p = plan.view();
  auto const x = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 42);
  auto const gp = test::random_normal(static_cast<std::size_t>(p.rows * H), 1.0f, 43);  // dL/dpermuted
  // L(x) = <gp, permute(x)>: dL/dx = permute_backward(gp)
  auto loss_perm = [&](std::vector<float> const& xx) {
    std::vector<float> o(static_cast<std::size_t>(p.rows * H));
    moe::permute(host_executor{}, p, cview(xx, T, H), make_matrix(o.data(), p.rows, H));
    double l = 0;
    for (std::size_t i = 0; i < o.size(); ++i) l += static_cast<double>(gp[i]) * o[i];
    return l;
  };
  std::vector<float> dx(static_cast<std::size_t>(T * H));
  test::poison(dx);
  moe::permute_backward(host_executor{}, p, cview(gp, p.rows, H), make_matrix(dx.data(), T, H));
  for (std::size_t i = 0; i < x.size(); ++i) {
    // L is linear: h = 0.5 has no truncation error; x +- 0.5 rounds by <= 2^-24 |x|
    double const fd = central_difference(x, i, 0.5f, loss_perm);
    REQUIRE(std::abs(dx[i] - fd) <= 1e-5 * (1 + std::abs(fd)));
  }
  // L(y, w) = <g, combine(y, w)>
  auto const y = test::random_normal(static_cast<std::size_t>(p.rows * H), 1.0f, 44);
  auto const w = test::random_uniform(static_cast<std::size_t>(T * k), 0.1f, 1.0f, 45);
  auto const g = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 46);
  auto loss_comb = [&](std::vector<float> const& yy, std::vector<float> const& ww) {
    std::vector<float> o(static_cast<std::size_t>(T * H));
    moe::combine(host_executor{}, p, cview(yy, p.rows, H), cview(ww, T, k), make_matrix(o.data(), T, H));
    double l = 0;
    for (std::size_t i = 0; i < o.size(); ++i) l += static_cast<double>(g[i]) * o[i];
    return l;
  };
  std::vector<float> dy(static_cast<std::size_t>(p.rows * H)), dw(static_cast<std::size_t>(T * k));
  test::poison(dy);
  test::poison(dw);
  moe::combine_backward(host_executor{}, p, cview(y, p.rows, H), cview(w, T, k), cview(g, T, H),
                        make_matrix(dy.data(), p.rows, H), make_matrix(dw.data(), T, k));
  // h = 1e-2: L is linear in each argument; the FP32 rounding of the H changed outputs (2^-24 each)
  // divided by 2h bounds the error: sqrt(H) * 6e-8 * 3 / 0.02 ~ 5e-5.
  for (std::size_t i = 0; i < y.size(); ++i) {
    double const fd =
        central_difference(y, i, 1e-2f, [&](std::vector<float> const& yy) { return loss_comb(yy, w); });
    REQUIRE(std::abs(dy[i] - fd) <= 2e-4 * (1 + std::abs(fd)));
  }
  for (std::size_t i = 0; i < w.size(); ++i) {
    double const fd =
        central_difference(w, i, 1e-2f, [&](std::vector<float> const& ww) { return loss_comb(y, ww); });
    REQUIRE(std::abs(dw[i] - fd) <= 2e-4 * (1 + std::abs(fd)));
    if (ids[i] < 0) CHECK(dw[i] == 0.0f);
  }
}

TEST_CASE("permute/combine: bad shapes are rejected before writing") {
  std::vector<std::int32_t> const ids{0, 1, 1, 2};
  auto const plan = make_plan(moe::contiguous{.m_align = 4}, ids, 2, 2, 3);
  auto const& p = plan.view();
  std::vector<float> x(2 * 8, 1.0f), out(static_cast<std::size_t>(p.rows * 8), 7.0f), w(4, 0.5f), o(16, 7.0f);
  CHECK_THROWS_WITH_AS(
      moe::permute(host_executor{}, p, cview(x, 2, 8), make_matrix(out.data(), p.rows - 1, 8)),
      doctest::Contains("'out'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(moe::permute(host_executor{}, p, cview(x, 1, 8), make_matrix(out.data(), p.rows, 8)),
                       doctest::Contains("'x'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      moe::combine(host_executor{}, p, cview(out, p.rows, 8), cview(w, 2, 3), make_matrix(o.data(), 2, 8)),
      doctest::Contains("'weights'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      moe::combine(host_executor{}, p, cview(out, p.rows, 8), cview(w, 2, 2), make_matrix(o.data(), 2, 7)),
      doctest::Contains("'out'"), fp8moe::error);
  for (float v : out) CHECK(v == 7.0f);
  for (float v : o) CHECK(v == 7.0f);
  std::vector<float> pw(static_cast<std::size_t>(p.rows) + 1);
  CHECK_THROWS_AS(
      moe::permute_weights(host_executor{}, p, cview(w, 2, 2), make_vector(pw.data(), p.rows + 1)),
      fp8moe::error);
}

TEST_CASE("route / plan / permute / combine with zero tokens (an idle expert-parallel rank)") {
  moe::router_config const c{.experts = 8, .groups = 2, .topk_groups = 1, .k = 2};
  std::vector<float> logits;
  auto const r = moe::route(host_executor{}, c, make_matrix(logits.data(), 0, 8));
  CHECK(r.ids.rows() == 0);
  CHECK(r.counts == std::vector<std::int32_t>(8, 0));
  std::vector<float> x;
  auto const p =
      moe::permute(host_executor{}, make_matrix(x.data(), 0, 64), r, moe::contiguous{.m_align = 128});
  CHECK(p.plan.rows_in_use() == 0);
  CHECK(p.x.rows() == 0);
  std::vector<float> out;
  moe::combine(host_executor{}, p.plan.view(), p.x.view(), r.weights.view(), make_matrix(out.data(), 0, 64));
  auto const pm = moe::permute(host_executor{}, make_matrix(x.data(), 0, 64), r, moe::masked{.max_m = 4});
  CHECK(pm.plan.counts() == std::vector<std::int32_t>(8, 0));
}

TEST_CASE("permute: a pad value for the contiguous padding rows (default zero)") {
  std::int64_t const T = 40, H = 24;
  int const k = 2, E = 4;
  auto const ids = random_ids(T, k, E, 15);
  auto const plan = make_plan(moe::contiguous{.m_align = 16}, ids, T, k, E);
  auto const& p = plan.view();
  auto const x = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 16);
  std::vector<float> out(static_cast<std::size_t>(p.rows * H));
  test::poison(out);
  moe::permute(host_executor{}, p, cview(x, T, H), make_matrix(out.data(), p.rows, H), -3.5f);
  int padding = 0;
  for (std::int64_t r = 0; r < p.rows; ++r) {
    int const t = plan.row_token()[r];
    if (t >= 0)
      REQUIRE(std::memcmp(&out[r * H], &x[t * H], H * 4) == 0);
    else if (r < plan.rows_in_use())
      for (std::int64_t h = 0; h < H; ++h, ++padding) REQUIRE(out[r * H + h] == -3.5f);
    else
      for (std::int64_t h = 0; h < H; ++h) REQUIRE(std::isnan(out[r * H + h]));  // untouched
  }
  CHECK(padding > 0);
}

namespace {

/// The README's MoE lines written once for any executor (run here on the host; the nvcc build runs the
/// same template with cuda_executor): route the logits, then permute the FP8 rows and their scales.
template <class Exec>
auto route_then_permute(Exec const& exec, moe::router_config const& rc, matrix_view<float const> logits,
                        vector_view<float const> bias,
                        scaling::quantized_matrix_view<float8_e4m3_t const> xq) {
  auto r = moe::route(exec, rc, logits, bias);
  auto p = moe::permute(exec, xq, r, moe::contiguous{.m_align = 128});
  return std::pair{std::move(r), std::move(p)};
}

/// Logits on a 1/8 grid plus a per-expert bias of 1e-3 sqrt(e+1): no near-ties, so a device expf
/// within 2 ulp of glibc's cannot flip a selection (the ids must match exactly).
struct tie_free_routing {
  moe::router_config rc{.experts = 64, .groups = 8, .topk_groups = 4, .k = 6, .route_scale = 2.5f};
  std::int64_t T, H = 256;
  std::vector<float> logits, bias;
  scaling::quantized_matrix<float8_e4m3_t> xq;
  explicit tie_free_routing(std::int64_t tokens) : T(tokens), xq(tokens, 256, scaling::tile_1x128) {
    auto const u = test::random_uniform(static_cast<std::size_t>(T * rc.experts), -4.0f, 4.0f, 17);
    for (float v : u) logits.push_back(std::round(v * 8.0f) / 8.0f);
    for (int e = 0; e < rc.experts; ++e) bias.push_back(1e-3f * std::sqrt(e + 1.0f));
    for (std::int64_t i = 0; i < T * H; ++i)
      xq.data.storage()[static_cast<std::size_t>(i)] =
          float8_e4m3_t::from_bits(static_cast<std::uint8_t>((i * 29) % 126));
    for (std::size_t i = 0; i < xq.scales.storage().size(); ++i)
      xq.scales.storage()[i] = 0.25f + static_cast<float>(i);
  }
};

}  // namespace

TEST_CASE("route + permute written once for any executor: the allocating ops equal the hot path (host)") {
  tie_free_routing const in(300);
  auto const [r, p] =
      route_then_permute(host_executor{}, in.rc, cview(in.logits, in.T, in.rc.experts),
                         vector_view<float const>{in.bias.data(), in.rc.experts}, in.xq.view());
  // the hot path, step by step
  int const k = in.rc.k, E = in.rc.experts;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(in.T * k)), counts(static_cast<std::size_t>(E));
  std::vector<float> w(ids.size());
  moe::route(host_executor{}, in.rc, cview(in.logits, in.T, E), vector_view<float const>{in.bias.data(), E},
             make_matrix(ids.data(), in.T, k), make_matrix(w.data(), in.T, k), make_vector(counts.data(), E));
  CHECK(r.ids.storage() == ids);
  CHECK(r.weights.storage() == w);
  CHECK(r.counts == counts);
  moe::contiguous const layout{.m_align = 128};
  moe::host_permute_plan plan(layout, in.T, k, E, moe::contiguous_rows(layout, counts.data(), E));
  moe::build_permute_plan(host_executor{}, make_matrix(ids.data(), in.T, k), plan.view());
  CHECK(p.plan.row_token() == plan.row_token());
  CHECK(p.plan.slot_row() == plan.slot_row());
  CHECK(p.plan.expert_offset() == plan.expert_offset());
  scaling::quantized_matrix<float8_e4m3_t> xp(plan.view().rows, in.H, scaling::tile_1x128);
  moe::permute(host_executor{}, plan.view(), in.xq.view(), xp.view());
  CHECK(std::memcmp(p.x.data.storage().data(), xp.data.storage().data(), xp.data.storage().size()) == 0);
  CHECK(p.x.scales.storage() == xp.scales.storage());
  std::vector<float> pw(static_cast<std::size_t>(plan.view().rows));
  moe::permute_weights(host_executor{}, plan.view(), cview(w, in.T, k),
                       make_vector(pw.data(), plan.view().rows));
  CHECK(p.weights == pw);
}

TEST_CASE("workspace_bytes(exec, plan_shape): none on the host, the plan builds with an empty workspace") {
  std::int64_t const T = 300;
  int const k = 4, E = 8;
  auto const ids = random_ids(T, k, E, 61, 0.1f);
  host_executor const ex;
  CHECK(moe::workspace_bytes(ex, moe::plan_shape{T, k, E}) == 0);
  CHECK(moe::workspace_bytes(ex, moe::plan_shape{0, k, E}) == 0);
  moe::host_permute_plan plan(moe::contiguous{.m_align = 16}, T, k, E);
  moe::build_permute_plan(ex, make_matrix(ids.data(), T, k), plan.view(), moe::device_workspace{});
  CHECK(plan.rows_in_use() > 0);
  CHECK(plan.view().rows >= plan.rows_in_use());
  CHECK_THROWS_WITH_AS((void)moe::workspace_bytes(ex, moe::plan_shape{T, 0, E}),
                       doctest::Contains("argument 'plan_shape'"), fp8moe::error);
  CHECK_THROWS_WITH_AS((void)moe::workspace_bytes(ex, moe::plan_shape{-1, k, E}),
                       doctest::Contains("argument 'plan_shape'"), fp8moe::error);
}

#if FP8MOE_CUDA_COMPILER
#include "device_memory.hpp"
#include "fp8moe/core/cuda/executor.hpp"

namespace {
using fp8moe::test::to_host;

/// A device copy of v, owned (test::device_array: a device_buffer, freed at scope exit).
template <class T>
test::device_array<T> on_device(std::vector<T> const& v) {
  return test::device_array<T>(v.data(), v.size());
}
}  // namespace

TEST_CASE("permute (CUDA): plan, permute, combine and backwards match the host path bit for bit") {
  if (cuda_device_count() == 0) return;
  cuda_executor ex{nullptr};
  std::int64_t const T = 4099, H = 512;
  int const k = 8, E = 32;
  auto const ids = random_ids(T, k, E, 51, 0.05f);
  for (bool is_masked : {false, true}) {
    auto const host = is_masked ? make_plan(moe::masked{.max_m = T}, ids, T, k, E)
                                : make_plan(moe::contiguous{.m_align = 128}, ids, T, k, E);
    auto const& hp = host.view();
    moe::cuda_permute_plan dev = is_masked
                                     ? moe::cuda_permute_plan(ex, moe::masked{.max_m = T}, T, k, E)
                                     : moe::cuda_permute_plan(ex, moe::contiguous{.m_align = 128}, T, k, E);
    auto const did = on_device(ids);
    moe::build_permute_plan(ex, matrix_view<std::int32_t const>(make_matrix(did.p, T, k)), dev.view(),
                            dev.workspace());
    // the owning plan's scratch is exactly the query; one byte less is refused before any launch
    std::size_t const need = moe::workspace_bytes(ex, moe::plan_shape{T, k, E});
    CHECK(dev.workspace().bytes == need);
    CHECK_THROWS_WITH_AS(
        moe::build_permute_plan(ex, matrix_view<std::int32_t const>(make_matrix(did.p, T, k)), dev.view(),
                                moe::device_workspace{dev.workspace().data, need - 1}),
        doctest::Contains("argument 'workspace'"), fp8moe::error);
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(ex.stream));
    auto const& dp = dev.view();
    REQUIRE(dp.rows == hp.rows);
    CHECK(to_host(dp.row_token, hp.rows) == host.row_token());
    CHECK(to_host(dp.row_slot, hp.rows) == host.row_slot());
    CHECK(to_host(dp.row_expert, hp.rows) == host.row_expert());
    CHECK(to_host(dp.slot_row, T * k) == host.slot_row());
    CHECK(to_host(dp.expert_offset, E + 1) == host.expert_offset());
    CHECK(to_host(dp.counts, E) == host.counts());
    // permute BF16 rows
    std::vector<bfloat16_t> x;
    for (float v : test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 52)) x.emplace_back(v);
    std::vector<bfloat16_t> ph(static_cast<std::size_t>(hp.rows * H), bfloat16_t::from_bits(0xFFFF));
    moe::permute(host_executor{}, hp, make_matrix(x.data(), T, H), make_matrix(ph.data(), hp.rows, H));
    auto const dx = on_device(x);
    auto const dperm = on_device(std::vector<bfloat16_t>(ph.size(), bfloat16_t::from_bits(0xFFFF)));
    moe::permute(ex, dp, make_matrix(static_cast<bfloat16_t const*>(dx.p), T, H),
                 make_matrix(dperm.p, dp.rows, H));
    auto const pd = to_host(dperm.p, ph.size());
    CHECK(std::memcmp(pd.data(), ph.data(), ph.size() * 2) == 0);
    // FP8 rows with 1x128 scales, and the per-row weights
    {
      scaling::quantized_matrix<float8_e4m3_t> xq(T, H, scaling::tile_1x128);
      for (std::int64_t i = 0; i < T * H; ++i)
        xq.data.storage()[static_cast<std::size_t>(i)] =
            float8_e4m3_t::from_bits(static_cast<std::uint8_t>((i * 37) % 126));
      for (std::size_t i = 0; i < xq.scales.storage().size(); ++i)
        xq.scales.storage()[i] = 0.5f + static_cast<float>(i);
      scaling::quantized_matrix<float8_e4m3_t> oq(hp.rows, H, scaling::tile_1x128);
      std::fill(oq.scales.storage().begin(), oq.scales.storage().end(), NAN);
      moe::permute(host_executor{}, hp, xq.view(), oq.view());
      auto const dxd = on_device(xq.data.storage());
      auto const dxs = on_device(xq.scales.storage());
      auto const dod =
          on_device(std::vector<float8_e4m3_t>(oq.data.storage().size(), float8_e4m3_t::from_bits(0x7F)));
      auto const dos = on_device(std::vector<float>(oq.scales.storage().size(), NAN));
      scaling::quantized_matrix_view<float8_e4m3_t const> const xv(
          make_matrix(static_cast<float8_e4m3_t const*>(dxd.p), T, H),
          make_matrix(static_cast<float const*>(dxs.p), T, H / 128), scaling::tile_1x128);
      moe::permute(
          ex, dp, xv,
          scaling::quantized_matrix_view<float8_e4m3_t>{
              make_matrix(dod.p, dp.rows, H), make_matrix(dos.p, dp.rows, H / 128), scaling::tile_1x128});
      auto const od8 = to_host(dod.p, oq.data.storage().size());
      auto const ods = to_host(dos.p, oq.scales.storage().size());
      for (std::int64_t r = 0; r < hp.rows; ++r) {
        if (!(host.row_token()[r] >= 0 || (!is_masked && r < host.rows_in_use())))
          continue;  // untouched rows
        for (std::int64_t h = 0; h < H; ++h) REQUIRE(od8[r * H + h].bits() == oq.data(r, h).bits());
        for (std::int64_t c = 0; c < H / 128; ++c) REQUIRE(ods[r * (H / 128) + c] == oq.scales(r, c));
      }
      std::vector<float> const wr = test::random_uniform(static_cast<std::size_t>(T * k), 0.0f, 1.0f, 56);
      std::vector<float> pwh(static_cast<std::size_t>(hp.rows));
      moe::permute_weights(host_executor{}, hp, cview(wr, T, k), make_vector(pwh.data(), hp.rows));
      auto const dwr = on_device(wr);
      auto const dpw = on_device(std::vector<float>(pwh.size(), NAN));
      moe::permute_weights(ex, dp, make_matrix(static_cast<float const*>(dwr.p), T, k),
                           make_vector(dpw.p, dp.rows));
      CHECK(to_host(dpw.p, pwh.size()) == pwh);
    }
    // combine FP32 rows -> BF16, weighted; combine_backward
    auto const y = test::random_normal(static_cast<std::size_t>(hp.rows * H), 1.0f, 53);
    auto const w = test::random_uniform(static_cast<std::size_t>(T * k), 0.0f, 1.0f, 54);
    auto const g = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 55);
    std::vector<float> oh(static_cast<std::size_t>(T * H));
    moe::combine(host_executor{}, hp, cview(y, hp.rows, H), cview(w, T, k), make_matrix(oh.data(), T, H));
    auto const dy = on_device(y);
    auto const dw = on_device(w);
    auto const dg = on_device(g);
    auto const dout = on_device(std::vector<float>(oh.size(), NAN));
    moe::combine(ex, dp, make_matrix(static_cast<float const*>(dy.p), dp.rows, H),
                 make_matrix(static_cast<float const*>(dw.p), T, k), make_matrix(dout.p, T, H));
    auto const od = to_host(dout.p, oh.size());
    CHECK(od == oh);  // same order, each term one fma on both sides: bit for bit
    // the scalar kernel: H - 3 columns of the same rows (not a multiple of the 16-byte vector)
    {
      std::int64_t const Hs = H - 3;
      std::vector<float> os(static_cast<std::size_t>(T * Hs));
      moe::combine(host_executor{}, hp, make_matrix(y.data(), hp.rows, Hs, H), cview(w, T, k),
                   make_matrix(os.data(), T, Hs));
      auto const douts = on_device(std::vector<float>(os.size(), NAN));
      moe::combine(ex, dp, make_matrix(static_cast<float const*>(dy.p), dp.rows, Hs, H),
                   make_matrix(static_cast<float const*>(dw.p), T, k), make_matrix(douts.p, T, Hs));
      auto const ods = to_host(douts.p, os.size());
      CHECK(ods == os);
    }
    std::vector<float> dyh(static_cast<std::size_t>(hp.rows * H)), dwh(static_cast<std::size_t>(T * k));
    moe::combine_backward(host_executor{}, hp, cview(y, hp.rows, H), cview(w, T, k), cview(g, T, H),
                          make_matrix(dyh.data(), hp.rows, H), make_matrix(dwh.data(), T, k));
    auto const ddy = on_device(std::vector<float>(dyh.size(), NAN));
    auto const ddw = on_device(std::vector<float>(dwh.size(), NAN));
    moe::combine_backward(ex, dp, make_matrix(static_cast<float const*>(dy.p), dp.rows, H),
                          make_matrix(static_cast<float const*>(dw.p), T, k),
                          make_matrix(static_cast<float const*>(dg.p), T, H), make_matrix(ddy.p, dp.rows, H),
                          make_matrix(ddw.p, T, k));
    CHECK(to_host(ddy.p, dyh.size()) == dyh);  // one product per element: exact
    auto const dwd = to_host(ddw.p, dwh.size());
    for (std::size_t i = 0; i < dwd.size(); ++i)
      REQUIRE(std::abs(dwd[i] - dwh[i]) <= 1e-4f * (1 + std::abs(dwh[i])));  // H-term dot, tree order
  }
}

TEST_CASE("route + permute written once for any executor: cuda_executor (allocating, on the stream) = host") {
  if (cuda_device_count() == 0) return;
  tie_free_routing const in(300);
  int const k = in.rc.k, E = in.rc.experts;
  auto const [hr, hp] = route_then_permute(host_executor{}, in.rc, cview(in.logits, in.T, E),
                                           vector_view<float const>{in.bias.data(), E}, in.xq.view());
  test::device_array<float> dl(in.logits.data(), in.logits.size()), db(in.bias.data(), in.bias.size());
  test::device_array<float8_e4m3_t> dxd(in.xq.data.storage().data(), in.xq.data.storage().size());
  test::device_array<float> dxs(in.xq.scales.storage().data(), in.xq.scales.storage().size());
  cuda_executor const ex{nullptr};
  scaling::quantized_matrix_view<float8_e4m3_t const> const xv(
      make_matrix(static_cast<float8_e4m3_t const*>(dxd.p), in.T, in.H),
      make_matrix(static_cast<float const*>(dxs.p), in.T, in.H / 128), scaling::tile_1x128);
  auto const [dr, dp] = route_then_permute(ex, in.rc, matrix_view<float const>(make_matrix(dl.p, in.T, E)),
                                           vector_view<float const>{db.p, E}, xv);
  FP8MOE_CUDA_CHECK(cudaStreamSynchronize(ex.stream));
  // routing: ids and counts exact (no near-ties), weights within the device expf's 2 ulp
  auto const ids = test::to_host(dr.ids.data(), hr.ids.storage().size());
  auto const w = test::to_host(dr.weights.data(), hr.weights.storage().size());
  auto const counts = test::to_host(dr.counts.data(), dr.counts.size());
  CHECK(ids == hr.ids.storage());
  CHECK(counts == hr.counts);
  for (std::size_t i = 0; i < w.size(); ++i)
    REQUIRE(std::abs(w[i] - hr.weights.storage()[i]) <= 1e-6f * 2.5f);
  // plan: the device's has the capacity plan_rows (no sync to learn the counts); the host's rows are its
  // prefix
  auto const& d = dp.plan.view();
  std::int64_t const M = hp.plan.view().rows;
  REQUIRE(d.rows == moe::plan_rows(moe::contiguous{.m_align = 128}, in.T, k, E));
  REQUIRE(d.rows >= M);
  auto const row_token = test::to_host(d.row_token, static_cast<std::size_t>(d.rows));
  CHECK(std::equal(hp.plan.row_token().begin(), hp.plan.row_token().end(), row_token.begin()));
  CHECK(std::all_of(row_token.begin() + M, row_token.end(), [](std::int32_t t) { return t == -1; }));
  CHECK(test::to_host(d.slot_row, static_cast<std::size_t>(in.T * k)) == hp.plan.slot_row());
  CHECK(test::to_host(d.expert_offset, static_cast<std::size_t>(E + 1)) == hp.plan.expert_offset());
  // rows in use: FP8 data and scales bit for bit; row weights as the routing weights
  auto const xd = test::to_host(dp.x.data.data(), static_cast<std::size_t>(M * in.H));
  auto const xs = test::to_host(dp.x.scales.data(), static_cast<std::size_t>(M * (in.H / 128)));
  CHECK(std::memcmp(xd.data(), hp.x.data.storage().data(), xd.size()) == 0);
  CHECK(xs == hp.x.scales.storage());
  auto const pw = test::to_host(dp.weights.data(), static_cast<std::size_t>(M));
  for (std::int64_t i = 0; i < M; ++i) REQUIRE(std::abs(pw[i] - hp.weights[i]) <= 1e-6f * 2.5f);
}
#endif
