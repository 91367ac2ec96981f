// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// MTP speculative decoding (reference §3.2): the checkpoint's MTP layer drafts D tokens (D = 1 as
// DeepSeek serves it; D > 1 chains the same module on its own hidden state), the main model verifies
// the last token and every draft in ONE forward over its compressed cache, the accepted drafts and the
// main model's next token are emitted, and both caches are truncated past the first rejection.
// Verification is mtp::verify_greedy (temperature 0: exactly plain greedy's tokens) or
// mtp::verify_stochastic (the speculative-sampling rule: the output is distributed as the main model's).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "decode.hpp"
#include "fp8moe/mtp/sampling.hpp"
#include "fp8moe/mtp/speculative.hpp"
#include "mtp_layer.hpp"

namespace dsv3 {

/// The last row of a (n, V) matrix as a span.
inline std::span<float const> last_row(matrix_view<float const> m) {
  return {m.row(m.rows - 1), static_cast<std::size_t>(m.cols)};
}

/// Token choice under sampling options with one seeded fp8moe::mtp::rng: plain draws, drafts (with
/// their distribution q) and the verification of drafts against the main model's logits.
class sampler {
 public:
  sampler(fm::mtp::sampling_options const& o, std::uint64_t seed, std::int64_t vocab)
      : o_(o),
        g_(seed),
        V_(vocab),
        probs_(static_cast<std::size_t>(vocab)),
        ws_(fm::mtp::workspace_bytes(fm::host_executor{}, fm::mtp::sampling_shape{vocab})) {}

  bool greedy() const { return o_.temperature == 0.0f; }

  /// A token drawn from one logits row (V), advancing the generator (greedy: its argmax).
  std::int32_t sample(std::span<float const> logits) { return draft(logits, probs_); }
  /// The same, writing the distribution drawn from into q (V).
  std::int32_t draft(std::span<float const> logits, std::span<float> q) {
    return fm::mtp::sample(fm::host_executor{}, logits, o_, g_, q, ws_);
  }

  /// Verifies drafts (n) against the main model's logits (n+1, V) (row i: after the drafts before
  /// i); q (n, V): the drafts' distributions (read by the stochastic rule only).
  fm::mtp::verify_result verify(std::span<std::int32_t const> drafts, matrix_view<float const> logits,
                                matrix_view<float const> q) {
    if (drafts.empty()) return {0, sample(last_row(logits))};  // plain decoding
    if (greedy()) return fm::mtp::verify_greedy(fm::host_executor{}, drafts, logits);
    p_.resize(static_cast<std::size_t>(logits.rows * V_));
    auto const p = fm::make_matrix(p_.data(), logits.rows, V_);
    for (std::int64_t r = 0; r < logits.rows; ++r) {
      fm::mtp::rng unused(0);  // p's distributions only: the draws belong to verify_stochastic
      fm::mtp::sample(fm::host_executor{},
                      std::span<float const>(logits.row(r), static_cast<std::size_t>(V_)), o_, unused,
                      std::span<float>(p.row(r), static_cast<std::size_t>(V_)), ws_);
    }
    return fm::mtp::verify_stochastic(fm::host_executor{}, drafts, matrix_view<float const>(p), q, g_);
  }

 private:
  fm::mtp::sampling_options o_;
  fm::mtp::rng g_;
  std::int64_t V_;
  std::vector<float> probs_, p_;
  std::vector<std::byte> ws_;
};

/// The generated tokens as they come: each goes to `sink` at once (streaming); done() after `eos`
/// or max_new tokens.
struct token_stream {
  std::int64_t max_new = 0;
  std::optional<std::int32_t> eos;
  std::function<void(std::int32_t)> sink;
  std::vector<std::int32_t> tokens;
  bool eos_seen = false;

  /// Emits t; true when generation is done.
  bool emit(std::int32_t t) {
    tokens.push_back(t);
    if (sink) sink(t);
    eos_seen = eos_seen || (eos && t == *eos);
    return done();
  }
  bool done() const { return eos_seen || left() <= 0; }
  std::int64_t left() const { return max_new - static_cast<std::int64_t>(tokens.size()); }
};

/// A test hook: sees the drafts of one round (the first at `position`) and may replace them (greedy
/// verification only; the stochastic rule needs the drafts drawn from their q).
using draft_hook = std::function<void(std::int64_t position, std::span<std::int32_t> drafts)>;

/// Prefills `prompt` into dec (empty) and mtp (empty), then generates into `out` with `depth` drafts per
/// main-model forward (fewer near max_new or the context end) until out.done() or the position
/// reaches `context`. Returns the decode-phase totals (the prefill's forward not counted).
inline fm::mtp::speculative_stats speculative_generate(decoder& dec, mtp_drafter& mtp, sampler& s,
                                                       std::span<std::int32_t const> prompt,
                                                       token_stream& out, std::int64_t depth,
                                                       std::int64_t context, draft_hook const& hook = {}) {
  fm::require(depth >= 1, "dsv3::speculative_generate", "depth", ">= 1", std::to_string(depth));
  fm::require(!hook || s.greedy(), "dsv3::speculative_generate", "hook", "greedy sampling (temperature 0)");
  std::int64_t const V = dec.parameters().cfg.vocab_size;
  fm::mtp::speculative_stats stats;
  auto const prefill = dec.step(prompt);
  std::int32_t t = s.sample(last_row(prefill));
  // the MTP layer's rows 0..P-1: the main model's state at i with the token at i+1
  std::vector<std::int32_t> mt(prompt.begin() + 1, prompt.end());
  mt.push_back(t);
  auto ml = mtp.forward(fm::mtp::source::main_model, mt, dec.acts().x_final);
  dec.release_activations_above(depth + 1);
  if (out.emit(t)) return stats;
  std::vector<std::int32_t> drafts, verify_tokens;
  std::vector<float> q;
  while (dec.length() < context) {
    std::int64_t const n = dec.length();  // t's position
    std::int64_t const d = std::min({depth, out.left() - 1, context - 1 - n});
    drafts.clear();
    q.assign(static_cast<std::size_t>(d * V), 0.0f);
    for (std::int64_t j = 0; j < d; ++j) {
      if (j > 0) {  // chained: the module again on its own hidden state and the last draft
        auto const h = mtp.hidden();
        ml = mtp.forward(fm::mtp::source::previous_depth, std::span(drafts).last(1),
                         fm::make_matrix<float const>(h.row(h.rows - 1), 1, h.cols));
      }
      drafts.push_back(s.draft(
          last_row(ml), std::span(q).subspan(static_cast<std::size_t>(j * V), static_cast<std::size_t>(V))));
    }
    if (hook && d > 0) hook(n + 1, drafts);
    verify_tokens.assign(1, t);
    verify_tokens.insert(verify_tokens.end(), drafts.begin(), drafts.end());
    auto const logits = dec.step(verify_tokens);  // one forward: t and every draft
    auto const r = s.verify(drafts, logits, fm::make_matrix<float const>(q.data(), d, V));
    stats.add(r, d);
    auto const a = r.accepted;
    dec.truncate(n + a + 1);  // keeps t and the accepted drafts
    mtp.truncate(n);          // drops the chained drafts' rows
    for (std::int64_t i = 0; i < a; ++i)
      if (out.emit(drafts[static_cast<std::size_t>(i)])) return stats;
    if (out.emit(r.next)) return stats;
    // the MTP layer's rows n..n+a from the verified states
    mt.assign(drafts.begin(), drafts.begin() + a);
    mt.push_back(r.next);
    auto const& x = dec.acts().x_final;
    ml = mtp.forward(fm::mtp::source::main_model, mt,
                     fm::make_matrix<float const>(x.data, a + 1, x.cols, x.row_stride));
    t = r.next;
  }
  return stats;
}

}  // namespace dsv3
