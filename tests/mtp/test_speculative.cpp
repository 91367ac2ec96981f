// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::verify_greedy / verify_stochastic / speculative_stats: greedy speculative decoding emits
// exactly what plain greedy decoding emits (drafts of depth 1..4 against a deterministic main model);
// the STATISTICAL test: the stochastic rule's emitted tokens are distributed as the main model's p
// (chi-square, seeded, so deterministic), its acceptance rate is sum_x min(p, q); bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/mtp/sampling.hpp"
#include "fp8moe/mtp/speculative.hpp"
#include "mtp_checks.hpp"
#include "test_support.hpp"

using namespace fp8moe;
using mtp_checks::error_of;

namespace {

constexpr std::int64_t V = 16;

std::uint64_t hash(std::vector<std::int32_t> const& s, std::uint64_t salt) {
  std::uint64_t h = 1469598103934665603ull ^ salt;  // FNV-1a over the prefix
  for (auto t : s) h = (h ^ static_cast<std::uint64_t>(t)) * 1099511628211ull;
  return h;
}

/// The "main model": a deterministic logits row for each prefix.
std::vector<float> main_logits(std::vector<std::int32_t> const& prefix) {
  mtp::rng g(hash(prefix, 1));
  std::vector<float> l(V);
  for (auto& v : l) v = static_cast<float>(g.uniform() * 4.0);
  return l;
}

/// The "draft model": the main model's argmax 70% of the time, another token otherwise.
std::int32_t draft_token(std::vector<std::int32_t> const& prefix) {
  auto const l = main_logits(prefix);
  auto const best = static_cast<std::int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  return hash(prefix, 2) % 10 < 7 ? best
                                  : static_cast<std::int32_t>((best + 1 + hash(prefix, 3) % (V - 1)) % V);
}

/// Pearson's chi-square of counts against probabilities p (cells with p = 0 must stay empty).
double chi_square(std::vector<std::int64_t> const& counts, std::vector<double> const& p) {
  std::int64_t n = 0;
  for (auto c : counts) n += c;
  double chi2 = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) {
      REQUIRE(counts[i] == 0);
      continue;
    }
    double const e = static_cast<double>(n) * p[i];
    chi2 += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
  }
  return chi2;
}

}  // namespace

TEST_CASE(
    "verify_greedy accepts while the draft is the argmax; the next token is the argmax of the stop row") {
  host_executor const exec;
  std::vector<float> const rows{0, 5, 1,   // argmax 1
                                2, 0, 1,   // argmax 0
                                0, 0, 3};  // argmax 2 (bonus)
  auto check = [&](std::vector<std::int32_t> d, std::int64_t acc, std::int32_t next) {
    auto const r =
        mtp::verify_greedy(exec, d, make_matrix(rows.data(), static_cast<std::int64_t>(d.size()) + 1, 3));
    CHECK(r.accepted == acc);
    CHECK(r.next == next);
  };
  check({1, 0}, 2, 2);  // all accepted: bonus
  check({1, 2}, 1, 0);  // second rejected: the main model's token there
  check({0, 0}, 0, 1);
  check({}, 0, 1);  // no draft: plain greedy decoding
}

TEST_CASE("greedy speculative decoding emits exactly the tokens plain greedy decoding emits (depths 1..4)") {
  host_executor const exec;
  for (std::vector<std::int32_t> const& prompt :
       {std::vector<std::int32_t>{3}, {1, 4, 1, 5}, {9, 2, 6, 5, 3, 5}}) {
    std::size_t const L = prompt.size() + 60;
    std::vector<std::int32_t> plain = prompt;
    while (plain.size() < L) {
      auto const l = main_logits(plain);
      plain.push_back(static_cast<std::int32_t>(std::max_element(l.begin(), l.end()) - l.begin()));
    }
    for (int n = 1; n <= 4; ++n) {
      std::vector<std::int32_t> seq = prompt;
      mtp::speculative_stats stats;
      while (seq.size() < L) {
        std::vector<std::int32_t> draft, ctx = seq;
        for (int i = 0; i < n; ++i) ctx.push_back(draft.emplace_back(draft_token(ctx)));
        std::vector<float> target;  // (n+1, V): the main model's rows after seq + draft[0..i)
        ctx = seq;
        for (int i = 0; i <= n; ++i) {
          auto const l = main_logits(ctx);
          target.insert(target.end(), l.begin(), l.end());
          if (i < n) ctx.push_back(draft[static_cast<std::size_t>(i)]);
        }
        auto const r = mtp::verify_greedy(exec, draft, make_matrix(target.data(), n + 1, V));
        seq.insert(seq.end(), draft.begin(), draft.begin() + r.accepted);
        seq.push_back(r.next);
        stats.add(r, n);
      }
      seq.resize(L);
      REQUIRE(seq == plain);
      // 70% of drafts agree: more than one token per main-model forward, fewer than n + 1
      CHECK(stats.tokens_per_forward() > 1.2);
      CHECK(stats.tokens_per_forward() < n + 1);
      CHECK(stats.acceptance_rate() > 0.25);  // accepted / drafted: drafts after a rejection count too
      CHECK(stats.acceptance_rate() < 0.95);
      CHECK(stats.emitted == stats.accepted + stats.forwards);
    }
  }
}

TEST_CASE("STATISTICAL: the stochastic rule emits tokens distributed exactly as p (chi-square, 200k draws)") {
  // V = 8, fixed p and q with q(3) = 0 < p(3) (only the residual can emit 3) and q(0) > p(0). Seeded:
  // the test is deterministic. Chi-square with 7 degrees of freedom at 0.999 confidence: critical
  // value 24.322 (a correct rule fails it with probability 1e-3 over seeds; this seed passes).
  // Emitting the draft whenever it is drawn (distribution q) gives chi2 ~ 2e5; sampling the
  // rejection from p instead of normalize(max(0, p - q)) gives chi2 in the thousands.
  double constexpr critical_7dof_999 = 24.322;
  std::vector<double> const p{0.05, 0.20, 0.10, 0.15, 0.25, 0.05, 0.12, 0.08};
  std::vector<double> const q{0.30, 0.05, 0.20, 0.00, 0.10, 0.15, 0.10, 0.10};
  std::vector<float> const pf(p.begin(), p.end()), qf(q.begin(), q.end());
  host_executor const exec;
  mtp::rng g(20260101), draw(777);
  std::vector<std::int64_t> counts(8);
  mtp::speculative_stats stats;
  int const N = 200000;
  std::vector<float> prow(pf);  // the bonus row (reached on acceptance) is p as well
  prow.insert(prow.end(), pf.begin(), pf.end());
  for (int i = 0; i < N; ++i) {
    // one draft from q
    auto const x = static_cast<std::int32_t>(
        mtp::inverse_cdf([&](std::int64_t v) { return qf[static_cast<std::size_t>(v)]; }, 8, draw.uniform()));
    std::int32_t const d[1] = {x};
    auto const r = mtp::verify_stochastic(exec, d, make_matrix<float const>(prow.data(), 2, 8),
                                          make_matrix(qf.data(), 1, 8), g);
    ++counts[static_cast<std::size_t>(r.accepted == 1 ? x : r.next)];
    stats.add(r, 1);
  }
  double const chi2 = chi_square(counts, p);
  INFO("chi2 = " << chi2 << " (7 dof, critical " << critical_7dof_999 << ")");
  CHECK(chi2 < critical_7dof_999);
  // acceptance rate beta = sum_x min(p(x), q(x)) = 0.55; sd of the estimate sqrt(b(1-b)/N) = 1.1e-3
  double beta = 0;
  for (std::size_t v = 0; v < 8; ++v) beta += std::min(p[v], q[v]);
  CHECK(std::abs(stats.acceptance_rate() - beta) < 5 * std::sqrt(beta * (1 - beta) / N));
}

TEST_CASE("STATISTICAL: two drafts: each emitted position is distributed as its own p_i (chi-square)") {
  double constexpr critical_7dof_999 = 24.322;
  std::vector<std::vector<double>> const p{{0.05, 0.20, 0.10, 0.15, 0.25, 0.05, 0.12, 0.08},
                                           {0.30, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10},
                                           {0.01, 0.02, 0.03, 0.04, 0.10, 0.20, 0.25, 0.35}};
  std::vector<std::vector<double>> const q{{0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125},
                                           {0.05, 0.05, 0.40, 0.20, 0.05, 0.05, 0.10, 0.10}};
  std::vector<float> prow, qrow;
  for (auto const& r : p) prow.insert(prow.end(), r.begin(), r.end());
  for (auto const& r : q) qrow.insert(qrow.end(), r.begin(), r.end());
  host_executor const exec;
  mtp::rng g(99), draw(98);
  std::vector<std::vector<std::int64_t>> counts(3, std::vector<std::int64_t>(8));
  int const N = 200000;
  for (int i = 0; i < N; ++i) {
    std::int32_t d[2];
    for (int j = 0; j < 2; ++j)
      d[j] = static_cast<std::int32_t>(mtp::inverse_cdf(
          [&](std::int64_t v) { return qrow[static_cast<std::size_t>(j * 8 + v)]; }, 8, draw.uniform()));
    auto const r = mtp::verify_stochastic(exec, d, make_matrix<float const>(prow.data(), 3, 8),
                                          make_matrix<float const>(qrow.data(), 2, 8), g);
    for (std::int64_t j = 0; j <= r.accepted; ++j)  // position j holds a draft, or `next` at j = accepted
      ++counts[static_cast<std::size_t>(j)][static_cast<std::size_t>(j < r.accepted ? d[j] : r.next)];
  }
  for (std::size_t j = 0; j < 3; ++j) {
    double const chi2 = chi_square(counts[j], p[j]);
    INFO("position " << j << ": chi2 = " << chi2);
    CHECK(chi2 < critical_7dof_999);
  }
}

TEST_CASE(
    "speculative sampling with sample()'s distributions (top-k draft, temperature + top-p target) gives p") {
  double constexpr critical_5dof_999 = 20.515;  // the target keeps 6 of 8 tokens: 5 degrees of freedom
  host_executor const exec;
  std::vector<float> const draft_logits{1.0f, 0.2f, -0.5f, 0.8f, 0.1f, 0.3f, -1.0f, 0.6f};
  std::vector<float> const target_logits{0.9f, 0.5f, -2.0f, 1.1f, 0.4f, 0.0f, -3.0f, 0.7f};
  std::vector<float> q(8), p(16);
  mtp::rng g(5), ds(6), unused(7);
  mtp::sample(exec, target_logits, {.temperature = 0.8f, .top_p = 0.97f}, unused,
              std::span<float>(p).first(8));
  std::copy(p.begin(), p.begin() + 8, p.begin() + 8);
  std::vector<double> const pd(p.begin(), p.begin() + 8);
  REQUIRE(std::count(pd.begin(), pd.end(), 0.0) == 2);
  std::vector<std::int64_t> counts(8);
  int const N = 100000;
  for (int i = 0; i < N; ++i) {
    std::int32_t const d[1] = {mtp::sample(exec, draft_logits, {.top_k = 4}, ds, q)};  // draft and q together
    auto const r = mtp::verify_stochastic(exec, d, make_matrix<float const>(p.data(), 2, 8),
                                          make_matrix<float const>(q.data(), 1, 8), g);
    ++counts[static_cast<std::size_t>(r.accepted ? d[0] : r.next)];
  }
  double const chi2 = chi_square(counts, pd);
  INFO("chi2 = " << chi2);
  CHECK(chi2 < critical_5dof_999);
}

TEST_CASE("speculative_stats: acceptance rate and tokens per main-model forward") {
  mtp::speculative_stats s;
  CHECK(s.acceptance_rate() == 0.0);
  CHECK(s.tokens_per_forward() == 0.0);
  s.add({2, 5}, 2);
  s.add({0, 1}, 2);
  s.add({1, 3}, 2);
  CHECK(s.drafted == 6);
  CHECK(s.accepted == 3);
  CHECK(s.forwards == 3);
  CHECK(s.emitted == 6);
  CHECK(s.acceptance_rate() == 0.5);
  CHECK(s.tokens_per_forward() == 2.0);
}

TEST_CASE("verify_* reject bad input, naming the argument") {
  host_executor const exec;
  mtp::rng g(1);
  std::vector<float> const p{0.5f, 0.5f, 0.0f, 0.2f, 0.3f, 0.5f}, q{0.25f, 0.25f, 0.5f};
  auto const pv = make_matrix(p.data(), 2, 3);
  auto const qv = make_matrix(q.data(), 1, 3);
  std::vector<std::int32_t> d{1};
  auto stoch = [&](std::span<std::int32_t const> dr, matrix_view<float const> pp,
                   matrix_view<float const> qq) {
    return error_of([&] { mtp::verify_stochastic(exec, dr, pp, qq, g); });
  };
  CHECK(stoch(d, pv, qv) == "no error");
  std::vector<std::int32_t> bad_d{3};
  CHECK(stoch(bad_d, pv, qv).find("'draft'") != std::string::npos);
  CHECK(stoch(d, make_matrix(p.data(), 1, 3), qv).find("'p'") != std::string::npos);
  std::vector<float> unnorm{0.25f, 0.25f, 0.25f};
  CHECK(stoch(d, pv, make_matrix<float const>(unnorm.data(), 1, 3)).find("'q'") != std::string::npos);
  std::vector<float> neg{0.75f, -0.25f, 0.5f};
  CHECK(stoch(d, pv, make_matrix<float const>(neg.data(), 1, 3)).find("'q'") != std::string::npos);
  std::vector<float> zero_at_draft{0.5f, 0.0f, 0.5f};
  CHECK(stoch(d, pv, make_matrix<float const>(zero_at_draft.data(), 1, 3)).find("q_i(draft_i) > 0") !=
        std::string::npos);
  std::vector<float> nan_p{0.5f, NAN, 0.5f, 0.2f, 0.3f, 0.5f};
  CHECK(stoch(d, make_matrix<float const>(nan_p.data(), 2, 3), qv).find("'p'") != std::string::npos);
  CHECK(error_of([&] { mtp::verify_greedy(exec, d, make_matrix(p.data(), 1, 3)); }).find("'target'") !=
        std::string::npos);
  CHECK(error_of([&] { mtp::verify_greedy(exec, bad_d, pv); }).find("'draft'") != std::string::npos);
  CHECK(error_of([&] {
          mtp::verify_greedy(exec, d, make_matrix<float const>(nan_p.data(), 2, 3));
        }).find("'target'") != std::string::npos);
}
