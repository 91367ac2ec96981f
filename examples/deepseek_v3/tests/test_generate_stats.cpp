// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Sampled MTP speculative decoding through the whole example (generate.hpp -> speculative_decode.hpp)
// emits tokens distributed as the main model's own: on a tiny model with a vocabulary of 8, N seeded
// runs of dsv3::speculative_generate (depth 1: the first token is drawn from the prefill, the second
// is the MTP draft accepted or replaced by the speculative-sampling rule) against the
// main model's softmax from the full forward (dsv3::model, naive MLA, no cache) in float64: a
// chi-square test of the joint (first, second) counts at confidence 0.999.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "config.hpp"
#include "generate.hpp"
#include "init.hpp"
#include "io_test_support.hpp"
#include "model.hpp"
#include "speculative_decode.hpp"
#include "test_util.hpp"

namespace {

/// softmax(logits / temperature) in float64.
std::vector<double> softmax(fp8moe::matrix_view<float const> logits, std::int64_t row, double temperature) {
  std::vector<double> p(static_cast<std::size_t>(logits.cols));
  double mx = -INFINITY, sum = 0;
  for (std::int64_t c = 0; c < logits.cols; ++c) mx = std::max(mx, logits(row, c) / temperature);
  for (std::int64_t c = 0; c < logits.cols; ++c)
    sum += p[static_cast<std::size_t>(c)] = std::exp(logits(row, c) / temperature - mx);
  for (auto& v : p) v /= sum;
  return p;
}

/// Upper quantile of the chi-square distribution with k degrees of freedom at the standard normal
/// quantile z (Wilson-Hilferty; within 1% of the exact value for k >= 3 at z = 3.09).
double chi2_critical(double k, double z) {
  double const a = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

}  // namespace

TEST_CASE("sampled speculative decoding (depth 1) emits the main model's distribution: chi-square at 0.999") {
  constexpr std::int64_t V = 8;        // small vocabulary: 64 joint cells, each well populated
  constexpr std::int64_t runs = 1200;  // seeds 0..runs-1
  constexpr double temperature = 1.0;  // every token keeps a visible probability
  constexpr double z_999 = 3.090232;   // standard normal quantile at 0.999
  auto cfg = dsv3::preset("tiny");
  cfg.vocab_size = V;
  cfg.num_hidden_layers = 1;  // one dense layer + the MoE MTP layer: each run costs 1/3 of tiny's
  fp8moe::test::scratch_dir dir;
  dsv3::write_random_checkpoint(cfg, dir / "ck", "f32", 11);
  auto const p = dsv3::load_params(dir / "ck", dsv3::precision::fp32);
  std::vector<std::int32_t> const prompt = dsv3::test::tokens_for(V, 5);

  // the main model's distributions: first token after the prompt, second after prompt + first
  dsv3::model full(dir / "ck", dsv3::precision::fp32);
  auto const p1 = softmax(full.forward(prompt), static_cast<std::int64_t>(prompt.size()) - 1, temperature);
  std::vector<std::vector<double>> p2(V);
  for (std::int32_t t = 0; t < V; ++t) {
    auto seq = prompt;
    seq.push_back(t);
    p2[static_cast<std::size_t>(t)] =
        softmax(full.forward(seq), static_cast<std::int64_t>(seq.size()) - 1, temperature);
  }

  // speculative_generate as dsv3::generate runs it (speculative, depth 1), with one decoder and MTP
  // layer emptied between runs (truncate(0)) instead of reallocated: max_new 3, so the second token
  // comes from the round that drafts (the first is the prefill's draw; a third, if any, is not used)
  std::vector<double> count(V * V, 0.0);
  std::int64_t drafted = 0, accepted = 0;
  fp8moe::mtp::sampling_options const so{.temperature = static_cast<float>(temperature)};
  std::int64_t const capacity = static_cast<std::int64_t>(prompt.size()) + 3;
  dsv3::decoder dec(p, capacity);
  dsv3::mtp_drafter mtp(p, capacity);
  for (std::int64_t s = 0; s < runs; ++s) {
    dec.truncate(0);
    mtp.truncate(0);
    dsv3::sampler smp(so, static_cast<std::uint64_t>(s), V);
    dsv3::token_stream out{.max_new = 3, .eos = {}, .sink = {}, .tokens = {}, .eos_seen = false};
    auto const st = dsv3::speculative_generate(dec, mtp, smp, prompt, out, 1, dsv3::context_of(p.cfg));
    REQUIRE(out.tokens.size() >= 2);
    count[static_cast<std::size_t>(out.tokens[0] * V + out.tokens[1])] += 1;
    drafted += st.drafted;
    accepted += st.accepted;
  }
  // every run drafted (once, or twice after an acceptance); both branches of the rule (accept,
  // reject + resample from the residual) were taken
  CHECK(drafted >= runs);
  CHECK(accepted > runs / 20);
  CHECK(accepted < runs - runs / 20);

  // chi-square over the joint cells; cells expecting fewer than 5 counts pooled into one
  double chi2 = 0, pooled_expect = 0, pooled_count = 0;
  std::int64_t cells = 0;
  for (std::int64_t a = 0; a < V; ++a)
    for (std::int64_t b = 0; b < V; ++b) {
      double const e = runs * p1[static_cast<std::size_t>(a)] *
                       p2[static_cast<std::size_t>(a)][static_cast<std::size_t>(b)];
      double const n = count[static_cast<std::size_t>(a * V + b)];
      if (e < 5.0) {
        pooled_expect += e;
        pooled_count += n;
        continue;
      }
      chi2 += (n - e) * (n - e) / e;
      ++cells;
    }
  if (pooled_expect > 0) {
    chi2 += (pooled_count - pooled_expect) * (pooled_count - pooled_expect) / pooled_expect;
    ++cells;
  }
  REQUIRE(cells >= 16);  // the test has power: the distribution is spread over many cells
  double const critical = chi2_critical(static_cast<double>(cells - 1), z_999);
  MESSAGE("runs ", runs, ", acceptance ", static_cast<double>(accepted) / static_cast<double>(drafted),
          ", cells ", cells, ", chi-square ", chi2, " (critical at 0.999: ", critical, ")");
  // a correct sampler fails this with probability 0.001 over seeds; the seeds here are fixed
  CHECK(chi2 < critical);
}
