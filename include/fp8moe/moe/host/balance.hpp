// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host path of the balance ops (balance_dispatch<host_executor>): the bias update in exact integers
// with an optional data-parallel count reduction, and the sequence-wise balance loss and its
// gradient in FP64 sums over FP32 scores (score_trait). Single-threaded; validated before writing.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/balance.hpp"
#include "fp8moe/moe/host/router.hpp"
#include "fp8moe/moe/router.hpp"

namespace fp8moe::moe {

namespace detail {

/// Per-token unbiased scores s (E) and the plain top-k of s (the paper's Eq. 18: no bias, no groups);
/// returns the token's score function (for its derivative).
template <class Logit>
score_trait token_scores(router_config const& c, matrix_view<Logit> u, std::int64_t t, std::vector<float>& s,
                         int* top) {
  score_trait const f(c.score, &u(t, 0), u.col_stride, c.experts);
  top_list<max_k> best;
  for (int e = 0; e < c.experts; ++e) {
    s[static_cast<std::size_t>(e)] = f.value(static_cast<float>(u(t, e)));
    best.offer(c.k, s[static_cast<std::size_t>(e)], e);
  }
  for (int j = 0; j < c.k; ++j) top[j] = best.index[j];
  return f;
}

}  // namespace detail

template <>
struct balance_dispatch<host_executor> {
  /// The host balance loss needs no caller scratch.
  static std::size_t workspace_bytes(host_executor const&, balance_shape const&) { return 0; }
  template <std::integral Count, class Reduce>
  static void update_bias(host_executor const& exec, vector_view<float> bias, vector_view<Count const> counts,
                          bias_update_config cfg, Reduce&& reduce) {
    if constexpr (comm::host_communicator<std::remove_cvref_t<Reduce>>) {
      update_bias(exec, bias, counts, cfg, [&reduce](std::span<std::int64_t> n) {
        std::vector<std::int64_t> const mine(n.begin(), n.end());
        reduce.allreduce(std::span<std::int64_t const>(mine), n, comm::reduce_op::sum);
      });
    } else {
      constexpr char const* where = "fp8moe::moe::update_bias";
      require(bias.size >= 1 && bias.data != nullptr, where, "bias", "E >= 1 entries");
      require(counts.size == bias.size, where, "counts",
              "bias.size = " + std::to_string(bias.size) + " entries", std::to_string(counts.size));
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
  }

  template <class Logit>
  static double sequence_balance_loss(host_executor const&, router_config const& c, matrix_view<Logit> logits,
                                      sequence_balance_config b) {
    constexpr char const* where = "fp8moe::moe::sequence_balance_loss";
    check_matrix(logits, where, "logits");
    detail::check_balance_args(c, logits.rows, logits.cols, b, where);
    detail::check_finite_host(logits, vector_view<float const>{}, where);
    std::int64_t const T = logits.rows, L = b.sequence_length ? b.sequence_length : T, B = T / L,
                       E = c.experts;
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

  /// The writing form: *loss = the loss rounded to float (the host needs no workspace).
  template <class Logit>
  static void sequence_balance_loss(host_executor const& exec, router_config const& c,
                                    matrix_view<Logit> logits, sequence_balance_config b, float* loss,
                                    device_workspace) {
    require(loss != nullptr, "fp8moe::moe::sequence_balance_loss", "loss", "a float to write");
    *loss = static_cast<float>(sequence_balance_loss(exec, c, logits, b));
  }

  template <class Logit>
  static void sequence_balance_loss_backward(host_executor const&, router_config const& c,
                                             matrix_view<Logit> logits, matrix_view<float> dlogits,
                                             sequence_balance_config b, float dloss, device_workspace) {
    constexpr char const* where = "fp8moe::moe::sequence_balance_loss_backward";
    check_matrix(logits, where, "logits");
    detail::check_balance_args(c, logits.rows, logits.cols, b, where);
    check_matrix(dlogits, where, "dlogits");
    check_shape(dlogits, logits.rows, logits.cols, where, "dlogits");
    detail::check_finite_host(logits, vector_view<float const>{}, where);
    std::int64_t const T = logits.rows, L = b.sequence_length ? b.sequence_length : T, B = T / L,
                       E = c.experts;
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
        score_trait const sf = detail::token_scores(c, logits, t, s, top);
        double sum = 0.0;
        for (auto v : s) sum += v;
        double gs = 0.0;  // sum_i g_i s'_i
        for (std::int64_t e = 0; e < E; ++e)
          gs += scale * f[static_cast<std::size_t>(e)] * s[static_cast<std::size_t>(e)] / sum;
        // s' = s / sum s  ->  ds_j = (g_j - sum_i g_i s'_i) / sum s
        std::vector<double> ds(static_cast<std::size_t>(E));
        for (std::int64_t e = 0; e < E; ++e)
          ds[static_cast<std::size_t>(e)] = (scale * f[static_cast<std::size_t>(e)] - gs) / sum;
        double sds = 0.0;  // the coupled (softmax) term: sum_e ds_e s_e
        if (sf.coupled())
          for (std::int64_t e = 0; e < E; ++e)
            sds += ds[static_cast<std::size_t>(e)] * s[static_cast<std::size_t>(e)];
        for (std::int64_t e = 0; e < E; ++e)
          dlogits(t, e) += static_cast<float>(
              sf.grad<double>(s[static_cast<std::size_t>(e)], ds[static_cast<std::size_t>(e)], sds));
      }
    }
  }
};

}  // namespace fp8moe::moe
