// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::rng and mtp::sample: SplitMix64 against its published first outputs; greedy = argmax; top-k
// never leaves the top k; the top-p set at its exact boundary; draws against an inverse-CDF oracle
// written here (same seed, same tokens); the temperature -> 0 limit; the sampled frequencies against
// softmax(l / T) (chi-square); bad input names the argument.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/mtp/sampling.hpp"
#include "mtp_checks.hpp"
#include "test_support.hpp"

using namespace fp8moe;
using mtp_checks::error_of;

namespace {

/// softmax(l / T) in float64.
std::vector<double> softmax(std::vector<float> const& l, double T) {
  double mx = -INFINITY;
  for (float v : l) mx = std::max(mx, static_cast<double>(v));
  std::vector<double> p(l.size());
  double s = 0;
  for (std::size_t i = 0; i < l.size(); ++i) s += p[i] = std::exp((l[i] - mx) / T);
  for (auto& v : p) v /= s;
  return p;
}

std::set<std::int32_t> support(std::vector<float> const& probs) {
  std::set<std::int32_t> s;
  for (std::size_t i = 0; i < probs.size(); ++i)
    if (probs[i] > 0.0f) s.insert(static_cast<std::int32_t>(i));
  return s;
}

/// Indices of the k largest (lowest index first on ties).
std::set<std::int32_t> top(std::vector<float> const& l, std::size_t k) {
  std::vector<std::int32_t> idx(l.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::int32_t a, std::int32_t b) { return l[a] > l[b]; });
  return {idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k)};
}

}  // namespace

TEST_CASE("rng is SplitMix64: the reference implementation's first outputs for seed 0, uniform in [0,1)") {
  // Vigna's splitmix64.c with x = 0 returns 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f
  mtp::rng g(0);
  CHECK(g.next() == 0xE220A8397B1DCDAFull);
  CHECK(g.next() == 0x6E789E6AA1B965F4ull);
  CHECK(g.next() == 0x06C45D188009454Full);
  static_assert(mtp::rng(7).next() == mtp::rng(7).next(), "constexpr and deterministic");
  mtp::rng u(12345);
  double mean = 0;
  for (int i = 0; i < 100000; ++i) {
    double const x = u.uniform();
    REQUIRE((x >= 0.0 && x < 1.0));
    mean += x / 100000;
  }
  CHECK(std::abs(mean - 0.5) < 0.005);  // sd of the mean: 0.29 / sqrt(1e5) = 9e-4; 5.5 sd
}

TEST_CASE("greedy (temperature 0) is argmax with the lowest index on ties, one-hot probs, no draw") {
  host_executor const exec;
  std::vector<float> const l{0.5f, 3.0f, -1.0f, 3.0f, -INFINITY};
  std::vector<float> probs(l.size(), -1.0f);
  mtp::rng g(9);
  auto const before = g.state;
  CHECK(mtp::sample(exec, l, {.temperature = 0.0f}, g, probs) == 1);
  CHECK(g.state == before);
  CHECK(probs == std::vector<float>{0, 1, 0, 0, 0});
  auto const r = test::random_normal(1000, 3.0f, 77);
  std::vector<float> pr(r.size());
  CHECK(mtp::sample(exec, r, {.temperature = 0.0f, .top_k = 5, .top_p = 0.5f}, g, pr) ==
        std::max_element(r.begin(), r.end()) - r.begin());
}

TEST_CASE("draws follow an independent inverse-CDF oracle: same seed, same tokens, on every machine") {
  host_executor const exec;
  auto const l = test::random_normal(300, 0.5f, 5);
  std::vector<float> probs(l.size());
  for (float T : {1.0f, 0.6f}) {
    auto const p = softmax(l, T);
    mtp::rng g(2026), oracle(2026);
    std::vector<std::int32_t> a;
    for (int i = 0; i < 500; ++i) {
      auto const t = mtp::sample(exec, l, {.temperature = T}, g, probs);
      a.push_back(t);
      // oracle: the first token whose float64 CDF exceeds u (the integer stream is the same everywhere;
      // a token can differ only when u lands within float rounding (~1e-7) of a CDF step)
      double const u = oracle.uniform(), cdf_t = std::accumulate(p.begin(), p.begin() + t + 1, 0.0);
      REQUIRE(u < cdf_t + 1e-6);
      REQUIRE(u >= cdf_t - p[static_cast<std::size_t>(t)] - 1e-6);
    }
    mtp::rng again(2026);
    for (std::size_t i = 0; i < a.size(); ++i)
      REQUIRE(mtp::sample(exec, l, {.temperature = T}, again, probs) == a[i]);
    mtp::rng other(2027);
    int same = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
      same += mtp::sample(exec, l, {.temperature = T}, other, probs) == a[i];
    CHECK(same < 250);  // another seed gives another sequence
    // the returned vector is the distribution drawn from
    for (std::size_t v = 0; v < l.size(); ++v)
      REQUIRE(probs[v] == doctest::Approx(p[v]).epsilon(1e-5).scale(1e-7));
  }
}

TEST_CASE("top-k never emits outside the k most probable tokens; the kept probabilities keep their ratios") {
  host_executor const exec;
  auto const l = test::random_normal(64, 1.0f, 8);
  auto const p = softmax(l, 1.0);
  for (int k : {1, 5, 63}) {
    auto const allowed = top(l, static_cast<std::size_t>(k));
    std::vector<float> probs(l.size());
    mtp::rng g(static_cast<std::uint64_t>(k));
    std::set<std::int32_t> seen;
    for (int i = 0; i < 3000; ++i) {
      auto const t = mtp::sample(exec, l, {.top_k = k}, g, probs);
      REQUIRE(allowed.count(t) == 1);
      seen.insert(t);
    }
    CHECK(support(probs) == allowed);
    double mass = 0;
    for (auto t : allowed) mass += p[static_cast<std::size_t>(t)];
    for (auto t : allowed)
      REQUIRE(probs[static_cast<std::size_t>(t)] ==
              doctest::Approx(p[static_cast<std::size_t>(t)] / mass).epsilon(1e-5));
    if (k == 5) CHECK(seen.size() == 5);
  }
  // ties at the boundary keep the lower index
  std::vector<float> const tied{1.0f, 2.0f, 1.0f, 1.0f, 0.0f};
  std::vector<float> probs(5);
  mtp::rng g(1);
  mtp::sample(exec, tied, {.top_k = 2}, g, probs);
  CHECK(support(probs) == std::set<std::int32_t>{0, 1});
}

TEST_CASE("top-p keeps the smallest most-probable set whose mass reaches p: exact at the boundary") {
  host_executor const exec;
  mtp::rng g(3);
  std::vector<float> probs(4);
  std::vector<float> const flat{0.0f, 0.0f, 0.0f, 0.0f};  // probabilities exactly 0.25 each
  auto kept = [&](std::vector<float> const& l, float p) {
    mtp::sample(exec, l, {.top_p = p}, g, probs);
    return support(probs);
  };
  CHECK(kept(flat, 0.25f) == std::set<std::int32_t>{0});  // mass reached exactly by one token
  CHECK(kept(flat, 0.5f) == std::set<std::int32_t>{0, 1});
  CHECK(kept(flat, std::nextafter(0.5f, 1.0f)) == std::set<std::int32_t>{0, 1, 2});
  CHECK(kept(flat, std::nextafter(0.25f, 0.0f)) == std::set<std::int32_t>{0});
  CHECK(kept(flat, 1.0f) == std::set<std::int32_t>{0, 1, 2, 3});
  CHECK(probs[2] == 0.25f);
  // a random row: just below / above the mass of the top m the set has m / m+1 tokens
  auto const l = test::random_normal(40, 1.5f, 11);
  auto const p = softmax(l, 1.0);
  std::vector<std::size_t> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] > p[b]; });
  std::vector<float> pr(l.size());
  double cum = 0;
  for (std::size_t m = 1; m < 12; ++m) {
    cum += p[order[m - 1]];
    // margins of 1e-5 relative: far above the float rounding of the masses (~1e-7)
    for (auto const& [top_p, size] : {std::pair{cum * (1 - 1e-5), m}, std::pair{cum * (1 + 1e-5), m + 1}}) {
      mtp::sample(exec, l, {.top_p = static_cast<float>(top_p)}, g, pr);
      auto const s = support(pr);
      REQUIRE(s.size() == size);
      for (std::size_t j = 0; j < size; ++j) REQUIRE(s.count(static_cast<std::int32_t>(order[j])) == 1);
    }
  }
  // a long row, where the host path sorts a growing prefix (256, 1024, 4096 tokens): the set is the
  // same smallest most-probable prefix a full sort in float64 gives
  auto const wide = test::random_normal(5000, 0.3f, 12);
  auto const pw = softmax(wide, 1.0);
  std::vector<std::size_t> ow(wide.size());
  std::iota(ow.begin(), ow.end(), 0);
  std::sort(ow.begin(), ow.end(), [&](std::size_t a, std::size_t b) { return pw[a] > pw[b]; });
  std::vector<float> pwide(wide.size());
  for (float const top_p : {0.02f, 0.3f, 0.9f, 0.999f}) {
    std::set<std::int32_t> expect;
    double c = 0;
    for (std::size_t j = 0; j < ow.size() && c < top_p; ++j)
      c += pw[ow[j]], expect.insert(static_cast<std::int32_t>(ow[j]));
    mtp::sample(exec, wide, {.top_p = top_p}, g, pwide);
    INFO("top_p " << top_p << ": " << expect.size() << " tokens expected");
    CHECK(support(pwide) == expect);
  }
  // top-k then top-p on the renormalized top-k mass
  mtp::sample(exec, l, {.top_k = 3, .top_p = 0.999f}, g, pr);
  CHECK(support(pr).size() == 3);
}

TEST_CASE("temperature -> 0 tends to argmax; sampled frequencies follow softmax(l / T) (chi-square)") {
  host_executor const exec;
  std::vector<float> const l{0.1f, 0.9f, 0.5f, 0.8f, -0.3f, 0.2f};
  std::vector<float> probs(l.size());
  mtp::rng g(4);
  for (int i = 0; i < 2000; ++i) REQUIRE(mtp::sample(exec, l, {.temperature = 1e-3f}, g, probs) == 1);
  CHECK(probs[1] == doctest::Approx(1.0));  // gap 0.1 / 1e-3 = 100: exp(-100) elsewhere
  CHECK(probs[3] < 1e-30f);
  // chi-square with 5 degrees of freedom; critical value at 0.999 confidence: 20.515
  int const N = 60000;
  auto const p = softmax(l, 0.7);
  std::vector<int> counts(l.size());
  mtp::rng s(5);
  for (int i = 0; i < N; ++i)
    ++counts[static_cast<std::size_t>(mtp::sample(exec, l, {.temperature = 0.7f}, s, probs))];
  double chi2 = 0;
  for (std::size_t v = 0; v < l.size(); ++v) chi2 += std::pow(counts[v] - N * p[v], 2) / (N * p[v]);
  INFO("chi2 = " << chi2);
  CHECK(chi2 < 20.515);
}

TEST_CASE("sample rejects bad options and rows, naming the argument, before writing probs") {
  host_executor const exec;
  std::vector<float> l{1.0f, 2.0f, 3.0f}, probs(3, 7.0f);
  mtp::rng g(1);
  auto err = [&](mtp::sampling_options o, std::span<float const> row, std::span<float> pr) {
    return error_of([&] { mtp::sample(exec, row, o, g, pr); });
  };
  CHECK(err({.top_p = 0.0f}, l, probs).find("'options.top_p'") != std::string::npos);
  CHECK(err({.top_p = 1.5f}, l, probs).find("'options.top_p'") != std::string::npos);
  CHECK(err({.top_p = NAN}, l, probs).find("'options.top_p'") != std::string::npos);
  CHECK(err({.temperature = -0.5f}, l, probs).find("'options.temperature'") != std::string::npos);
  CHECK(err({.temperature = INFINITY}, l, probs).find("'options.temperature'") != std::string::npos);
  CHECK(err({.top_k = -1}, l, probs).find("'options.top_k'") != std::string::npos);
  CHECK(err({}, {}, {}).find("'logits'") != std::string::npos);
  std::vector<float> bad{1.0f, NAN, 0.0f};
  CHECK(err({}, bad, probs).find("'logits'") != std::string::npos);
  bad = {1.0f, INFINITY, 0.0f};
  CHECK(err({}, bad, probs).find("'logits'") != std::string::npos);
  bad = {-INFINITY, -INFINITY, -INFINITY};
  CHECK(err({}, bad, probs).find("'logits'") != std::string::npos);
  std::vector<float> short_probs(2);
  CHECK(err({}, l, short_probs).find("'probs'") != std::string::npos);
  std::vector<std::byte> ws(mtp::workspace_bytes(exec, mtp::sampling_shape{3}) - 1);
  CHECK(error_of([&] { mtp::sample(exec, l, {}, g, probs, ws); }).find("'workspace'") != std::string::npos);
  CHECK(std::all_of(probs.begin(), probs.end(), [](float v) { return v == 7.0f; }));
  // -inf masks a token: never drawn
  std::vector<float> const masked{0.0f, -INFINITY, 0.0f};
  for (int i = 0; i < 200; ++i) REQUIRE(mtp::sample(exec, masked, {}, g, probs) != 1);
}

TEST_CASE(
    "mtp::workspace_bytes(exec, sampling_shape): exactly that workspace samples, one byte less is refused") {
  host_executor const exec;
  std::int64_t const V = 1000;
  std::vector<float> logits(static_cast<std::size_t>(V));
  for (std::size_t v = 0; v < logits.size(); ++v) logits[v] = static_cast<float>((v * 37) % 101) * 0.05f;
  mtp::sampling_options const o{.temperature = 0.8f, .top_k = 50, .top_p = 0.9f};
  std::vector<float> ref(logits.size()), probs(logits.size(), 7.0f);
  mtp::rng g0(11), g1(11);
  std::int32_t const want = mtp::sample(exec, logits, o, g0, ref);  // allocating
  std::vector<std::int32_t> ws32(mtp::workspace_bytes(exec, mtp::sampling_shape{V}) / 4 +
                                 1);  // 4-byte aligned
  std::span<std::byte> ws(reinterpret_cast<std::byte*>(ws32.data()),
                          mtp::workspace_bytes(exec, mtp::sampling_shape{V}));
  REQUIRE(ws.size() > 4);
  CHECK(mtp::sample(exec, logits, o, g1, probs, ws) == want);
  CHECK(probs == ref);
  std::fill(probs.begin(), probs.end(), 7.0f);
  CHECK(error_of([&] {
          mtp::sample(exec, logits, o, g1, probs, ws.first(ws.size() - 1));
        }).find("'workspace'") != std::string::npos);
  CHECK(std::all_of(probs.begin(), probs.end(), [](float v) { return v == 7.0f; }));
  CHECK(error_of([&] { (void)mtp::workspace_bytes(exec, mtp::sampling_shape{-1}); }).find("'shape.vocab'") !=
        std::string::npos);
}
