// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::sample: one token from a logits row (V) by greedy, temperature, top-k and top-p (nucleus)
// sampling with a seeded mtp::rng (SplitMix64: integer-only, so a seed gives the same stream on every
// machine), writing the final probability vector (V) speculative sampling needs. probs is
// OVERWRITTEN; the workspace is caller-owned (workspace_bytes(exec, sampling_shape{V})). Host path in
// host/sampling.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/nn/workspace.hpp"

namespace fp8moe::mtp {

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014;
/// the generator Vigna's xoshiro seeds with): state += 0x9E3779B97F4A7C15, then two
/// xor-shift-multiply rounds. Seed 0 starts 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, ...
struct rng {
  std::uint64_t state = 0;

  constexpr FP8MOE_HOST_DEVICE explicit rng(std::uint64_t seed = 0) : state(seed) {}
  /// The next 64 random bits.
  constexpr FP8MOE_HOST_DEVICE std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1): the top 53 bits times 2^-53 (exact in double).
  constexpr FP8MOE_HOST_DEVICE double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

/// temperature 0 is greedy (argmax, lowest index on ties; no random number drawn); top_k 0 and
/// top_p 1 switch those filters off. Order: temperature, top-k, top-p, renormalize, draw.
struct sampling_options {
  float temperature = 1.0f;  ///< >= 0
  std::int32_t top_k = 0;    ///< >= 0: keep the k most probable tokens (lowest index first on ties)
  float top_p = 1.0f;        ///< in (0, 1]: keep the smallest most-probable set whose mass reaches top_p
};

/// Index of the first largest of x[0..n) (n >= 1), on host or device.
FP8MOE_HOST_DEVICE std::int64_t argmax(float const* x, std::int64_t n) {
  std::int64_t best = 0;
  for (std::int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

/// Inverse-CDF draw from the non-negative weights w(0..n) (normalized here, in double, in index
/// order): the first i with u * sum < w(0) + ... + w(i) and w(i) > 0; the last positive weight when
/// rounding leaves u past the end; -1 when every weight is 0. u in [0, 1).
template <class Weight>
FP8MOE_HOST_DEVICE std::int64_t inverse_cdf(Weight const& w, std::int64_t n, double u) {
  double total = 0.0;
  for (std::int64_t i = 0; i < n; ++i) total += static_cast<double>(w(i));
  double const target = u * total;
  double cum = 0.0;
  std::int64_t last = -1;
  for (std::int64_t i = 0; i < n; ++i) {
    double const wi = static_cast<double>(w(i));
    if (wi <= 0.0) continue;
    cum += wi;
    last = i;
    if (target < cum) return i;
  }
  return last;
}

/// Undefined primary template; mtp/host/sampling.hpp defines the host_executor specialisation.
template <class Exec>
struct sampling_dispatch;

namespace detail {
inline constexpr char const* sample_where = "fp8moe::mtp::sample";

inline void check_sampling_options(char const* where, sampling_options const& o) {
  require(std::isfinite(o.temperature) && o.temperature >= 0.0f, where, "options.temperature",
          "a finite value >= 0 (0: greedy)", std::to_string(o.temperature));
  require(o.top_k >= 0, where, "options.top_k", ">= 0 (0: off)", std::to_string(o.top_k));
  require(o.top_p > 0.0f && o.top_p <= 1.0f, where, "options.top_p", "a value in (0, 1] (1: off)",
          std::to_string(o.top_p));
}

/// A row the samplers accept: V >= 1 values, none NaN or +inf, at least one finite (-inf masks a token).
inline void check_logits_row(char const* where, char const* arg, std::span<float const> x) {
  require(!x.empty(), where, arg, "a non-empty row (V >= 1)", "an empty row");
  bool finite = false;
  for (std::size_t v = 0; v < x.size(); ++v) {
    if (std::isnan(x[v]) || x[v] == INFINITY)  // message built on failure only
      require(false, where, arg, "no NaN or +inf", std::to_string(x[v]) + " at " + std::to_string(v));
    finite = finite || std::isfinite(x[v]);
  }
  require(finite, where, arg, "at least one finite value", "every value -inf");
}
}  // namespace detail

/// The workspace query's shape of sample: one row of `vocab` logits.
/// workspace_bytes(exec, sampling_shape{V}).
struct sampling_shape {
  std::int64_t vocab;
};

/// Workspace bytes of sample (its `workspace`).
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, sampling_shape const& s) {
  static_assert(has_dispatch<sampling_dispatch<executor_t<Exec>>>,
                "fp8moe::mtp::workspace_bytes: this executor has no path here; include "
                "\"fp8moe/mtp/host/sampling.hpp\" (a CUDA path is not written yet)");
  require(s.vocab >= 0, "fp8moe::mtp::workspace_bytes(sampling_shape)", "shape.vocab", ">= 0",
          std::to_string(s.vocab));
  if constexpr (has_dispatch<sampling_dispatch<executor_t<Exec>>>)
    return sampling_dispatch<executor_t<Exec>>::workspace_bytes(exec, s.vocab);
  else
    return 0;
}

/// Draws one token from logits (V) under `options`, advancing `g` (by one draw unless greedy);
/// probs (V) receives the distribution it drew from (one-hot for greedy; 0 outside the kept set).
/// Rejects an empty row, NaN or +inf logits, temperature < 0, top_k < 0, top_p outside (0, 1].
template <executor Exec>
std::int32_t sample(Exec const& exec, std::span<float const> logits, sampling_options const& options, rng& g,
                    std::span<float> probs, std::span<std::byte> workspace) {
  static_assert(
      has_dispatch<sampling_dispatch<executor_t<Exec>>>,
      "fp8moe::mtp::sample: this executor has no path here; include \"fp8moe/mtp/host/sampling.hpp\" "
      "(a CUDA path is not written yet)");
  constexpr char const* where = detail::sample_where;
  detail::check_sampling_options(where, options);
  detail::check_logits_row(where, "logits", logits);
  require(probs.size() == logits.size(), where, "probs",
          "size V = logits.size() = " + std::to_string(logits.size()),
          "size " + std::to_string(probs.size()));
  if constexpr (has_dispatch<sampling_dispatch<executor_t<Exec>>>) {
    auto const V = static_cast<std::int64_t>(logits.size());
    nn::check_workspace(workspace, workspace_bytes(exec, sampling_shape{V}), where);
    require(reinterpret_cast<std::uintptr_t>(workspace.data()) % alignof(std::int32_t) == 0, where,
            "workspace", "4-byte aligned storage");
    return sampling_dispatch<executor_t<Exec>>::sample(exec, logits, options, g, probs, workspace);
  } else {
    return -1;
  }
}

/// As above, allocating the workspace.
template <executor Exec>
std::int32_t sample(Exec const& exec, std::span<float const> logits, sampling_options const& options, rng& g,
                    std::span<float> probs) {
  static_assert(
      has_dispatch<sampling_dispatch<executor_t<Exec>>>,
      "fp8moe::mtp::sample: this executor has no path here; include \"fp8moe/mtp/host/sampling.hpp\" "
      "(a CUDA path is not written yet)");
  if constexpr (has_dispatch<sampling_dispatch<executor_t<Exec>>>) {
    auto ws = sampling_dispatch<executor_t<Exec>>::allocate(
        exec, workspace_bytes(exec, sampling_shape{static_cast<std::int64_t>(logits.size())}));
    return sample(exec, logits, options, g, probs, std::span<std::byte>(ws));
  } else {
    return -1;
  }
}

}  // namespace fp8moe::mtp

#include "fp8moe/mtp/host/sampling.hpp"
