// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::generate: a prompt -> new tokens, streamed to a callback as they are produced (reference §1.9:
// prefill, then incremental decoding by positions): plain decoding over the compressed cache
// (decode.hpp) or MTP speculative decoding (speculative_decode.hpp); sampling greedy / temperature /
// top-k / top-p with a seed (fp8moe::mtp::sample); stops at the EOS id, max_new tokens or the context
// (max_position_embeddings). Arguments are checked before any forward, naming the one at fault.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "decode.hpp"
#include "model.hpp"
#include "mtp_layer.hpp"
#include "params.hpp"
#include "speculative_decode.hpp"

namespace dsv3 {

struct generate_options {
  fm::mtp::sampling_options sampling{.temperature = 0.0f};  // temperature 0: greedy
  std::uint64_t seed = 0;
  std::int64_t max_new = 64;  // >= 1
  std::optional<std::int32_t> eos{};
  bool speculative = false;      // MTP speculative decoding (needs an MTP layer)
  std::int64_t draft_depth = 1;  // drafts per main-model forward (1..16; > 1: the MTP layer chained)
  draft_hook hook{};             // tests only (speculative, greedy): may replace each round's drafts
};

struct generate_result {
  std::vector<std::int32_t> tokens;  // the new tokens (the prompt excluded)
  enum class stop { max_new, eos, context } why = stop::max_new;
  fm::mtp::speculative_stats stats;  // decode phase: main-model forwards after the prefill's
  double prefill_seconds = 0;        // the prompt's forward and the first token
  double decode_seconds = 0;         // every later token
  /// Tokens per second of the decode phase (the tokens after the first).
  double decode_tokens_per_second() const {
    return decode_seconds > 0 ? static_cast<double>(tokens.size() - 1) / decode_seconds : 0.0;
  }
};

inline char const* to_string(generate_result::stop s) {
  return s == generate_result::stop::eos       ? "eos"
         : s == generate_result::stop::context ? "context"
                                               : "max-new";
}

/// The longest sequence the model takes: max_position_embeddings.
inline std::int64_t context_of(fm::io::deepseek_v3_config const& c) {
  return c.max_position_embeddings;
}

/// Throws fp8moe::error naming the argument at fault: an empty prompt, one longer than the context,
/// a token id outside [0, vocab), max_new < 1, temperature < 0, top_k < 0, top_p outside (0, 1], an
/// eos id outside [0, vocab), speculative decoding without an MTP layer or draft_depth outside 1..16.
inline void check_generate(fm::io::deepseek_v3_config const& c, std::span<std::int32_t const> prompt,
                           generate_options const& o) {
  constexpr char const* where = "dsv3::generate";
  auto const P = static_cast<std::int64_t>(prompt.size());
  fm::require(P >= 1, where, "prompt", "at least one token", "none");
  fm::require(P <= context_of(c), where, "prompt",
              "at most the context, max_position_embeddings = " + std::to_string(context_of(c)) + " tokens",
              std::to_string(P) + " tokens");
  for (std::size_t i = 0; i < prompt.size(); ++i)
    fm::require(prompt[i] >= 0 && prompt[i] < c.vocab_size, where, "prompt",
                "token ids in [0, vocab_size = " + std::to_string(c.vocab_size) + ")",
                std::to_string(prompt[i]) + " at position " + std::to_string(i));
  fm::require(o.max_new >= 1, where, "max_new", ">= 1", std::to_string(o.max_new));
  auto const& s = o.sampling;
  fm::require(std::isfinite(s.temperature) && s.temperature >= 0.0f, where, "temperature",
              "a finite value >= 0 (0: greedy)", std::to_string(s.temperature));
  fm::require(s.top_k >= 0, where, "top_k", ">= 0 (0: off)", std::to_string(s.top_k));
  fm::require(s.top_p > 0.0f && s.top_p <= 1.0f, where, "top_p", "a value in (0, 1] (1: off)",
              std::to_string(s.top_p));
  if (o.eos)
    fm::require(*o.eos >= 0 && *o.eos < c.vocab_size, where, "eos",
                "a token id in [0, vocab_size = " + std::to_string(c.vocab_size) + ")",
                std::to_string(*o.eos));
  if (o.speculative) {
    fm::require(c.num_nextn_predict_layers >= 1, where, "speculative",
                "a model with an MTP layer (num_nextn_predict_layers >= 1)", "none");
    fm::require(o.draft_depth >= 1 && o.draft_depth <= 16, where, "draft_depth", "1..16",
                std::to_string(o.draft_depth));
  }
}

/// Plain decoding: prefills `prompt` into dec (empty), then one main-model forward per token.
inline fm::mtp::speculative_stats plain_generate(decoder& dec, sampler& s,
                                                 std::span<std::int32_t const> prompt, token_stream& out,
                                                 std::int64_t context) {
  fm::mtp::speculative_stats stats;
  std::int32_t t = s.sample(last_row(dec.step(prompt)));
  dec.release_activations_above(1);
  if (out.emit(t)) return stats;
  while (dec.length() < context) {
    t = s.sample(last_row(dec.step(std::span(&t, 1))));
    stats.add({0, t}, 0);
    if (out.emit(t)) break;
  }
  return stats;
}

/// Generates from `prompt` with the parameters `p` (checked first; see check_generate); each new
/// token goes to `sink` as soon as it is chosen.
inline generate_result generate(params const& p, std::span<std::int32_t const> prompt,
                                generate_options const& o, std::function<void(std::int32_t)> sink = {},
                                model_options const& mo = {}) {
  check_generate(p.cfg, prompt, o);
  auto const P = static_cast<std::int64_t>(prompt.size()), context = context_of(p.cfg);
  std::int64_t const capacity = std::min(context, P + o.max_new);
  token_stream out{.max_new = o.max_new, .eos = o.eos, .sink = {}, .tokens = {}, .eos_seen = false};
  generate_result res;
  double const t0 = now_seconds();
  double t1 = t0;
  out.sink = [&](std::int32_t t) {
    if (out.tokens.size() == 1) t1 = now_seconds();
    if (sink) sink(t);
  };
  decoder dec(p, capacity, mo);
  sampler s(o.sampling, o.seed, p.cfg.vocab_size);
  if (o.speculative) {
    mtp_drafter mtp(p, capacity, mo);
    res.stats = speculative_generate(dec, mtp, s, prompt, out, o.draft_depth, context, o.hook);
  } else {
    res.stats = plain_generate(dec, s, prompt, out, context);
  }
  double const t2 = now_seconds();
  res.prefill_seconds = t1 - t0;
  res.decode_seconds = t2 - t1;
  res.tokens = std::move(out.tokens);
  res.why = out.eos_seen                                                ? generate_result::stop::eos
            : static_cast<std::int64_t>(res.tokens.size()) >= o.max_new ? generate_result::stop::max_new
                                                                        : generate_result::stop::context;
  return res;
}

}  // namespace dsv3
