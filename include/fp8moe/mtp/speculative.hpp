// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::verify_greedy / verify_stochastic: the verification rule of speculative decoding for n
// drafted tokens against the main model's n+1 rows (Leviathan, Kalman, Matias, ICML 2023; Chen et
// al., arXiv 2302.01318), returning how many drafts are accepted and the next token; and
// mtp::speculative_stats (acceptance rate, tokens per main-model forward). Host path in host/speculative.hpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/mtp/sampling.hpp"

namespace fp8moe::mtp {

/// The outcome of one verification: drafts [0, accepted) are kept, then `next` is emitted (the
/// main model's token at the first rejection, or the bonus token when every draft is accepted), so
/// accepted + 1 tokens come out of one main-model forward.
struct verify_result {
  std::int64_t accepted = 0;
  std::int32_t next = -1;
};

/// The stochastic rule for one draft x: accept with probability min(1, p(x) / q(x)), i.e. when
/// u * q(x) < p(x) for u uniform in [0, 1) (host and device; q(x) > 0).
FP8MOE_HOST_DEVICE bool accept_draft(float p_x, float q_x, double u) {
  return u * static_cast<double>(q_x) < static_cast<double>(p_x);
}

/// Running totals over a generation.
struct speculative_stats {
  std::int64_t drafted = 0;   ///< draft tokens proposed
  std::int64_t accepted = 0;  ///< of them accepted
  std::int64_t forwards = 0;  ///< main-model (verification) forwards
  std::int64_t emitted = 0;   ///< tokens emitted: accepted + 1 per forward

  /// Counts one verification of `drafted_now` drafts.
  constexpr void add(verify_result const& r, std::int64_t drafted_now) {
    drafted += drafted_now;
    accepted += r.accepted;
    forwards += 1;
    emitted += r.accepted + 1;
  }
  /// accepted / drafted (0 before any draft).
  constexpr double acceptance_rate() const {
    return drafted ? static_cast<double>(accepted) / static_cast<double>(drafted) : 0.0;
  }
  /// emitted / forwards: 1 for plain decoding, up to n + 1 with n drafts (0 before any forward).
  constexpr double tokens_per_forward() const {
    return forwards ? static_cast<double>(emitted) / static_cast<double>(forwards) : 0.0;
  }
};

/// Undefined primary template; mtp/host/speculative.hpp defines the host_executor specialisation.
template <class Exec>
struct speculative_dispatch;

namespace detail {

template <class Exec>
constexpr bool check_speculative_dispatch() {
  static_assert(has_dispatch<speculative_dispatch<executor_t<Exec>>>,
                "fp8moe::mtp::verify_*: this executor has no path here; include "
                "\"fp8moe/mtp/host/speculative.hpp\" (a CUDA path is not written yet)");
  return has_dispatch<speculative_dispatch<executor_t<Exec>>>;
}

inline void check_draft(char const* where, std::span<std::int32_t const> draft, std::int64_t V) {
  for (std::size_t i = 0; i < draft.size(); ++i)
    if (draft[i] < 0 || draft[i] >= V)  // message built on failure only
      require(false, where, "draft", "token ids in [0, V = " + std::to_string(V) + ")",
              std::to_string(draft[i]) + " at " + std::to_string(i));
}

/// Rows of probability distributions: finite, >= 0, each summing to 1 within 1e-3 (in double).
inline void check_distributions(char const* where, char const* arg, matrix_view<float const> m) {
  check_matrix(m, where, arg);
  for (std::int64_t r = 0; r < m.rows; ++r) {
    double sum = 0;
    for (std::int64_t c = 0; c < m.cols; ++c) {
      float const v = m(r, c);
      if (!(std::isfinite(v) && v >= 0.0f))  // message built on failure only
        require(false, where, arg, "finite probabilities >= 0",
                std::to_string(v) + " at (" + std::to_string(r) + ", " + std::to_string(c) + ")");
      sum += v;
    }
    if (!(std::abs(sum - 1.0) <= 1e-3))
      require(false, where, arg, "rows summing to 1 (within 1e-3)",
              "row " + std::to_string(r) + " sums to " + std::to_string(sum));
  }
}

}  // namespace detail

/// Greedy verification: draft (n) against the main model's scores (n+1, V) (logits or
/// probabilities; row i scores the token after the prefix and drafts [0, i)). Drafts are accepted
/// while draft_i == argmax(row i); `next` is the argmax of the first mismatching row, or of row n
/// (the bonus token) when all n are accepted. Emits exactly what plain greedy decoding emits.
template <executor Exec>
verify_result verify_greedy(Exec const& exec, std::span<std::int32_t const> draft,
                            matrix_view<float const> target) {
  constexpr char const* where = "fp8moe::mtp::verify_greedy";
  auto const n = static_cast<std::int64_t>(draft.size());
  check_matrix(target, where, "target");
  require(target.rows == n + 1 && target.cols >= 1 && target.col_stride == 1, where, "target",
          "a row-major (n+1, V) matrix with n = draft.size() = " + std::to_string(n) + " and V >= 1",
          fp8moe::detail::shape_string(target.rows, target.cols));
  detail::check_draft(where, draft, target.cols);
  for (std::int64_t r = 0; r < target.rows; ++r)
    for (std::int64_t c = 0; c < target.cols; ++c)
      if (std::isnan(target(r, c)))
        require(false, where, "target", "no NaN",
                "NaN at (" + std::to_string(r) + ", " + std::to_string(c) + ")");
  if constexpr (detail::check_speculative_dispatch<Exec>())
    return speculative_dispatch<executor_t<Exec>>::verify_greedy(exec, draft, target);
  else
    return {};
}

/// Stochastic verification (speculative sampling): draft (n) drawn from the draft distributions
/// q (n, V); p (n+1, V) the main model's distributions at the same positions plus the bonus row
/// (both as sample() returns them, after temperature / top-k / top-p). For i = 0.. : accept
/// draft_i with probability min(1, p_i(x) / q_i(x)); at the first rejection draw `next` from
/// normalize(max(0, p_i - q_i)) (from p_i if that is all 0, which only rounding can cause); when all
/// are accepted draw `next` from p_n. The emitted tokens are distributed exactly as the main model's.
/// Draws one uniform per examined draft plus one for `next`. Needs q_i(draft_i) > 0.
template <executor Exec>
verify_result verify_stochastic(Exec const& exec, std::span<std::int32_t const> draft,
                                matrix_view<float const> p, matrix_view<float const> q, rng& g) {
  constexpr char const* where = "fp8moe::mtp::verify_stochastic";
  auto const n = static_cast<std::int64_t>(draft.size());
  check_matrix(p, where, "p");
  require(p.rows == n + 1 && p.cols >= 1, where, "p", "(n+1, V) with n = draft.size() = " + std::to_string(n),
          fp8moe::detail::shape_string(p.rows, p.cols));
  check_matrix(q, where, "q");
  require(q.rows == n && (n == 0 || q.cols == p.cols), where, "q",
          "(n, V) = " + fp8moe::detail::shape_string(n, p.cols),
          fp8moe::detail::shape_string(q.rows, q.cols));
  detail::check_draft(where, draft, p.cols);
  detail::check_distributions(where, "p", p);
  detail::check_distributions(where, "q", q);
  for (std::int64_t i = 0; i < n; ++i)
    if (!(q(i, draft[static_cast<std::size_t>(i)]) > 0.0f))
      require(false, where, "q", "q_i(draft_i) > 0 (the draft was drawn from q)",
              "0 at draft " + std::to_string(i));
  if constexpr (detail::check_speculative_dispatch<Exec>())
    return speculative_dispatch<executor_t<Exec>>::verify_stochastic(exec, draft, p, q, g);
  else
    return {};
}

}  // namespace fp8moe::mtp

#include "fp8moe/mtp/host/speculative.hpp"
