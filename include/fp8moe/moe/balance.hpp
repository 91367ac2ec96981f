// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Load balancing for the router: the aux-loss-free bias update (integer counts, optional
// data-parallel sum through a callback) and the complementary sequence-wise balance loss with its
// gradient. update_bias updates `bias` in place; the loss backward ACCUMULATES into dlogits.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/router.hpp"

namespace fp8moe::moe {

/// Bias update speed (DeepSeek-V3: gamma = 0.001, then 0 for the last 500B tokens).
struct bias_update_config {
  float gamma = 1e-3f;
  bool recenter = false;  ///< subtract the mean of the updated bias (torchtitan #1506); selection unchanged
};

/// No reduction: the counts are already global.
struct no_count_reduce {
  void operator()(std::span<std::int64_t>) const {}
};

namespace detail {
/// One expert's aux-loss-free bias step gamma * sign(mean load - load), decided exactly in integers
/// as sign(total - E * load) (host update_bias and the device kernel).
constexpr FP8MOE_HOST_DEVICE float bias_step(std::int64_t total, std::int64_t experts, std::int64_t load,
                                             float gamma) {
  std::int64_t const d = total - experts * load;  // E * (mean - load)
  return gamma * (d > 0 ? 1.0f : (d < 0 ? -1.0f : 0.0f));
}
}  // namespace detail

/// bias_i += gamma * sign(mean load - load_i) (arXiv:2408.15664 Alg. 1; Megatron get_updated_expert_bias).
/// counts (E) integer tokens per expert of this rank; `reduce` sums them over data-parallel ranks in
/// place (e.g. a communicator's all-reduce), called once with E int64 values. sign(0) = 0. The sign is
/// decided exactly in integers: sign(total - E * load_i).
template <std::integral Count, class Reduce = no_count_reduce>
requires std::invocable<Reduce&, std::span<std::int64_t>>
void update_bias(host_executor const&, vector_view<float> bias, vector_view<Count const> counts,
                 bias_update_config cfg = {}, Reduce&& reduce = {}) {
  constexpr char const* where = "fp8moe::moe::update_bias";
  require(bias.size >= 1 && bias.data != nullptr, where, "bias", "E >= 1 entries");
  require(counts.size == bias.size, where, "counts", "bias.size = " + std::to_string(bias.size) + " entries",
          std::to_string(counts.size));
  require(std::isfinite(cfg.gamma) && cfg.gamma >= 0.0f, where, "cfg.gamma", "finite and >= 0");
  std::int64_t const E = bias.size;
  std::vector<std::int64_t> n(static_cast<std::size_t>(E));
  for (std::int64_t e = 0; e < E; ++e) {
    if (counts[e] < 0)
      require(false, where, "counts", "non-negative", detail::concat("counts[", e, "] = ", counts[e]));
    n[static_cast<std::size_t>(e)] = static_cast<std::int64_t>(counts[e]);
  }
  reduce(std::span<std::int64_t>(n));
  std::int64_t total = 0;
  for (auto v : n) total += v;
  double mean_bias = 0.0;
  for (std::int64_t e = 0; e < E; ++e) {
    bias[e] += detail::bias_step(total, E, n[static_cast<std::size_t>(e)], cfg.gamma);
    mean_bias += bias[e];
  }
  if (cfg.recenter) {
    float const m = static_cast<float>(mean_bias / static_cast<double>(E));
    for (std::int64_t e = 0; e < E; ++e) bias[e] -= m;
  }
}

/// As above, with the counts summed over the ranks of a host communicator (data-parallel group).
template <std::integral Count, comm::host_communicator C>
void update_bias(host_executor const& exec, vector_view<float> bias, vector_view<Count const> counts,
                 bias_update_config cfg, C& dp) {
  update_bias(exec, bias, counts, cfg, [&dp](std::span<std::int64_t> n) {
    std::vector<std::int64_t> const mine(n.begin(), n.end());
    dp.allreduce(std::span<std::int64_t const>(mine), n, comm::reduce_op::sum);
  });
}

/// Sequence-wise balance loss configuration (DeepSeek-V3 §2.1.2 Eq. 17-20, alpha = 1e-4).
struct sequence_balance_config {
  float alpha = 1e-4f;
  std::int64_t sequence_length = 0;  ///< tokens per sequence; 0 = all T tokens are one sequence
};

namespace detail {

inline void check_balance_args(router_config const& c, std::int64_t T, std::int64_t E,
                               sequence_balance_config const& b, char const* where) {
  check_router_config(c, where);
  require(E == c.experts, where, "logits", "E = " + std::to_string(c.experts) + " columns",
          std::to_string(E));
  require(T >= 1, where, "logits", "at least one token");
  std::int64_t const L = b.sequence_length ? b.sequence_length : T;
  require(L >= 1 && T % L == 0, where, "cfg.sequence_length", "a divisor of T = " + std::to_string(T),
          std::to_string(b.sequence_length));
}

/// Per-token unbiased scores s (E) and the plain top-k of s (the paper's Eq. 18: no bias, no groups).
template <class Logit>
void token_scores(router_config const& c, matrix_view<Logit> u, std::int64_t t, std::vector<float>& s,
                  int* top) {
  score_context const ctx = make_score_context(c.score, &u(t, 0), u.col_stride, c.experts);
  top_list<max_k> best;
  for (int e = 0; e < c.experts; ++e) {
    s[static_cast<std::size_t>(e)] = score_of(c.score, ctx, static_cast<float>(u(t, e)));
    best.offer(c.k, s[static_cast<std::size_t>(e)], e);
  }
  for (int j = 0; j < c.k; ++j) top[j] = best.index[j];
}

}  // namespace detail

/// L = alpha * mean over sequences of sum_i f_i P_i, with f_i = E/(k L) * #{t : i in TopK(s_t)} and
/// P_i = (1/L) sum_t s_{t,i} / sum_j s_{t,j} (s = unbiased scores of logits (T,E)). Returns L.
template <class Logit>
double sequence_balance_loss(host_executor const&, router_config const& c, matrix_view<Logit> logits,
                             sequence_balance_config b = {}) {
  constexpr char const* where = "fp8moe::moe::sequence_balance_loss";
  check_matrix(logits, where, "logits");
  detail::check_balance_args(c, logits.rows, logits.cols, b, where);
  detail::check_finite_host(logits, vector_view<float const>{}, where);
  std::int64_t const T = logits.rows, L = b.sequence_length ? b.sequence_length : T, B = T / L, E = c.experts;
  std::vector<float> s(static_cast<std::size_t>(E));
  std::vector<double> f(static_cast<std::size_t>(E)), P(static_cast<std::size_t>(E));
  int top[max_k];
  double loss = 0.0;
  for (std::int64_t q = 0; q < B; ++q) {
    std::fill(f.begin(), f.end(), 0.0);
    std::fill(P.begin(), P.end(), 0.0);
    for (std::int64_t t = q * L; t < (q + 1) * L; ++t) {
      detail::token_scores(c, logits, t, s, top);
      double sum = 0.0;
      for (auto v : s) sum += v;
      for (std::int64_t e = 0; e < E; ++e)
        P[static_cast<std::size_t>(e)] += s[static_cast<std::size_t>(e)] / sum;
      for (int j = 0; j < c.k; ++j) f[static_cast<std::size_t>(top[j])] += 1.0;
    }
    double seq = 0.0;
    for (std::int64_t e = 0; e < E; ++e)
      seq += (f[static_cast<std::size_t>(e)] * static_cast<double>(E) / (static_cast<double>(c.k) * L)) *
             (P[static_cast<std::size_t>(e)] / L);
    loss += seq;
  }
  return static_cast<double>(b.alpha) * loss / static_cast<double>(B);
}

/// Gradient of sequence_balance_loss w.r.t. logits (T,E), scaled by `dloss`, ACCUMULATED into
/// dlogits (T,E). f is piecewise constant (not differentiated); the gradient flows through P.
template <class Logit>
void sequence_balance_loss_backward(host_executor const& exec, router_config const& c,
                                    matrix_view<Logit> logits, matrix_view<float> dlogits,
                                    sequence_balance_config b = {}, float dloss = 1.0f) {
  constexpr char const* where = "fp8moe::moe::sequence_balance_loss_backward";
  check_matrix(logits, where, "logits");
  detail::check_balance_args(c, logits.rows, logits.cols, b, where);
  check_matrix(dlogits, where, "dlogits");
  check_shape(dlogits, logits.rows, logits.cols, where, "dlogits");
  detail::check_finite_host(logits, vector_view<float const>{}, where);
  std::int64_t const T = logits.rows, L = b.sequence_length ? b.sequence_length : T, B = T / L, E = c.experts;
  std::vector<float> s(static_cast<std::size_t>(E));
  std::vector<double> f(static_cast<std::size_t>(E));
  int top[max_k];
  for (std::int64_t q = 0; q < B; ++q) {
    std::fill(f.begin(), f.end(), 0.0);
    for (std::int64_t t = q * L; t < (q + 1) * L; ++t) {
      detail::token_scores(c, logits, t, s, top);
      for (int j = 0; j < c.k; ++j) f[static_cast<std::size_t>(top[j])] += 1.0;
    }
    // dL/ds'_{t,i} = g_i = dloss * alpha / B * f_i * E / (k L) / L  (same for every token of the sequence)
    double const scale = static_cast<double>(dloss) * b.alpha / static_cast<double>(B) *
                         static_cast<double>(E) / (static_cast<double>(c.k) * L * L);
    for (std::int64_t t = q * L; t < (q + 1) * L; ++t) {
      detail::token_scores(c, logits, t, s, top);
      double sum = 0.0;
      for (auto v : s) sum += v;
      double gs = 0.0;  // sum_i g_i s'_i
      for (std::int64_t e = 0; e < E; ++e)
        gs += scale * f[static_cast<std::size_t>(e)] * s[static_cast<std::size_t>(e)] / sum;
      // s' = s / sum s  ->  ds_j = (g_j - sum_i g_i s'_i) / sum s
      std::vector<double> ds(static_cast<std::size_t>(E));
      for (std::int64_t e = 0; e < E; ++e)
        ds[static_cast<std::size_t>(e)] = (scale * f[static_cast<std::size_t>(e)] - gs) / sum;
      if (c.score == score_function::sigmoid) {
        for (std::int64_t e = 0; e < E; ++e) {
          double const se = s[static_cast<std::size_t>(e)];
          dlogits(t, e) += static_cast<float>(ds[static_cast<std::size_t>(e)] * se * (1.0 - se));
        }
      } else {
        double sds = 0.0;
        for (std::int64_t e = 0; e < E; ++e)
          sds += ds[static_cast<std::size_t>(e)] * s[static_cast<std::size_t>(e)];
        for (std::int64_t e = 0; e < E; ++e)
          dlogits(t, e) +=
              static_cast<float>(s[static_cast<std::size_t>(e)] * (ds[static_cast<std::size_t>(e)] - sds));
      }
    }
  }
  (void)exec;
}

}  // namespace fp8moe::moe
