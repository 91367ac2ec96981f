// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::speculative_dispatch<host_executor>: the greedy and stochastic verification rules on the
// calling thread (one row of V values per examined draft; residual masses summed in double).
#pragma once

#include <cstdint>
#include <span>

#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/mtp/sampling.hpp"
#include "fp8moe/mtp/speculative.hpp"

namespace fp8moe::mtp {

template <>
struct speculative_dispatch<host_executor> {
  static verify_result verify_greedy(host_executor const&, std::span<std::int32_t const> draft,
                                     matrix_view<float const> target) {
    auto const n = static_cast<std::int64_t>(draft.size());
    std::int64_t i = 0;
    for (; i < n; ++i) {
      auto const best = argmax(target.row(i), target.cols);
      if (best != draft[static_cast<std::size_t>(i)]) return {i, static_cast<std::int32_t>(best)};
    }
    return {n, static_cast<std::int32_t>(argmax(target.row(n), target.cols))};
  }

  static verify_result verify_stochastic(host_executor const&, std::span<std::int32_t const> draft,
                                         matrix_view<float const> p, matrix_view<float const> q, rng& g) {
    auto const n = static_cast<std::int64_t>(draft.size());
    std::int64_t const V = p.cols;
    for (std::int64_t i = 0; i < n; ++i) {
      std::int32_t const x = draft[static_cast<std::size_t>(i)];
      if (accept_draft(p(i, x), q(i, x), g.uniform())) continue;
      double const u = g.uniform();
      auto t = inverse_cdf(
          [&](std::int64_t v) {
            float const r = p(i, v) - q(i, v);
            return r > 0.0f ? r : 0.0f;
          },
          V, u);
      if (t < 0) t = inverse_cdf([&](std::int64_t v) { return p(i, v); }, V, u);
      return {i, static_cast<std::int32_t>(t)};
    }
    return {n,
            static_cast<std::int32_t>(inverse_cdf([&](std::int64_t v) { return p(n, v); }, V, g.uniform()))};
  }
};

}  // namespace fp8moe::mtp
