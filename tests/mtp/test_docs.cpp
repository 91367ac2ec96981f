// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// docs/mtp.md's example, extracted at configure time (generated/mtp_docs.hpp) and run on the host:
// mtp_train_step's loss against the float64 reference and a gradient against central differences;
// speculative_step's first emitted token against the main model's distribution (chi-square).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mtp_checks.hpp"
#include "mtp_docs.hpp"  // generated from docs/mtp.md
#include "mtp_reference.hpp"
#include "test_support.hpp"

TEST_CASE("docs/mtp.md: mtp_train_step gives the float64 loss and gradient") {
  std::int64_t const T = 10, V = 30, C = 16, F = 12;
  auto p = mtp_ref::random_params(V, C, F, 7000);
  auto f = [](mtp_ref::vec const& v) { return mtp_ref::to_float(v); };
  auto embed = f(p.embed), fnorm = f(p.final_norm), enorm = f(p.enorm), hnorm = f(p.hnorm), eh = f(p.eh_proj),
       hd_norm = f(p.head_norm), head = f(p.head), g = f(p.blk.g), w1 = f(p.blk.w1), w2 = f(p.blk.w2);
  std::vector<float> d_embed(embed.size()), d_c(5 * C), d_eh(eh.size()), d_head(head.size()), d_w1(w1.size()),
      d_w2(w2.size());
  std::span<float> const dc(d_c);
  mtp::tiny_block blk(
      {g, fm::make_matrix<float const>(w1.data(), F, C), fm::make_matrix<float const>(w2.data(), C, F)},
      {dc.subspan(0, C), fm::make_matrix(d_w1.data(), F, C), fm::make_matrix(d_w2.data(), C, F)});
  mtp::mtp_module<mtp::tiny_block> const m{
      .weights = {.embed = fm::make_matrix<float const>(embed.data(), V, C),
                  .final_norm = fnorm,
                  .enorm = enorm,
                  .hnorm = hnorm,
                  .eh_proj = fm::make_matrix<float const>(eh.data(), C, 2 * C),
                  .head_norm = hd_norm,
                  .head = fm::make_matrix<float const>(head.data(), V, C)},
      .grads = {.d_embed = fm::make_matrix(d_embed.data(), V, C),
                .d_final_norm = dc.subspan(C, C),
                .d_enorm = dc.subspan(2 * C, C),
                .d_hnorm = dc.subspan(3 * C, C),
                .d_eh_proj = fm::make_matrix(d_eh.data(), C, 2 * C),
                .d_head_norm = dc.subspan(4 * C, C),
                .d_head = fm::make_matrix(d_head.data(), V, C)},
      .block = &blk};
  std::vector<std::int32_t> tokens, labels, pos;
  for (std::int64_t i = 0; i < T; ++i) {
    tokens.push_back(static_cast<std::int32_t>((5 * i + 1) % V));
    labels.push_back(static_cast<std::int32_t>((5 * i + 6) % V));
    pos.push_back(static_cast<std::int32_t>(i));
  }
  auto const h = mtp_ref::random_vec(static_cast<std::size_t>(T * C), 1.0, 7001);
  auto const hf = f(h);
  std::vector<float> dh(hf.size()), logits(static_cast<std::size_t>(T * V));
  float const loss = mtp_train_step(fm::host_executor{}, m, tokens, labels, pos,
                                    fm::make_matrix<float const>(hf.data(), T, C),
                                    fm::make_matrix(dh.data(), T, C), fm::make_matrix(logits.data(), T, V));
  std::vector<std::int32_t> emb(tokens.size()), targets(tokens.size());
  for (std::int64_t i = 0; i < T; ++i) {  // depth 1: emb_i = tokens_{i+1}, targets_i = labels_{i+1}
    emb[static_cast<std::size_t>(i)] = i + 1 < T ? tokens[static_cast<std::size_t>(i + 1)] : 0;
    targets[static_cast<std::size_t>(i)] = i + 1 < T ? labels[static_cast<std::size_t>(i + 1)] : -100;
  }
  auto ref = [&] {
    return 0.3 * mtp_ref::cross_entropy(mtp_ref::depth(p, emb, h, pos, true, 1e-6).logits, targets, V, -100);
  };
  CHECK(loss == doctest::Approx(ref()).epsilon(1e-5));
  mtp_checks::check_gradient(p.eh_proj, d_eh, "d_eh_proj", ref, 37);  // every 37th element
}

TEST_CASE("docs/mtp.md: speculative_step emits the main model's distribution (chi-square, 5 dof)") {
  std::vector<float> const target{0.3f, 1.2f, -0.4f, 0.8f, 0.0f, 0.5f,    // the draft position
                                  1.0f, 0.0f, 0.0f,  0.0f, 0.0f, -1.0f};  // the position after it
  std::vector<float> const draft_logits{1.5f, 0.2f, 0.0f, 0.9f, -0.5f, 0.1f};
  mtp::sampling_options const o{.temperature = 0.9f};
  mtp::rng g(31);
  mtp::speculative_stats stats;
  std::vector<std::int64_t> counts(6);
  int const N = 30000;
  std::vector<std::int32_t> out;
  for (int i = 0; i < N; ++i) {
    out.clear();
    speculative_step(fm::make_matrix(target.data(), 2, 6), draft_logits, o, g, stats, out);
    REQUIRE((out.size() == 1 || out.size() == 2));
    ++counts[static_cast<std::size_t>(out[0])];
  }
  double mx = -1e30, s = 0, chi2 = 0;
  for (int v = 0; v < 6; ++v) mx = std::max(mx, double(target[static_cast<std::size_t>(v)]));
  std::vector<double> pr(6);
  for (int v = 0; v < 6; ++v)
    s += pr[static_cast<std::size_t>(v)] = std::exp((target[static_cast<std::size_t>(v)] - mx) / 0.9);
  for (int v = 0; v < 6; ++v) {
    double const e = N * pr[static_cast<std::size_t>(v)] / s;
    chi2 += (counts[static_cast<std::size_t>(v)] - e) * (counts[static_cast<std::size_t>(v)] - e) / e;
  }
  INFO("chi2 = " << chi2 << " (5 dof, critical 20.515 at 0.999)");
  CHECK(chi2 < 20.515);
  CHECK(stats.forwards == N);
  CHECK(stats.tokens_per_forward() == doctest::Approx(1.0 + stats.acceptance_rate()));
  CHECK(stats.acceptance_rate() > 0.5);
}
