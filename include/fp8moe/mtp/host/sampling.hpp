// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::sampling_dispatch<host_executor>: sampling of one row on the calling thread. Weights
// exp((l - max) / temperature); top-k by nth_element and top-p by a partial sort of the kept indices,
// both ordered by (probability desc, index asc); masses summed in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "fp8moe/core/executor.hpp"
#include "fp8moe/mtp/sampling.hpp"

namespace fp8moe::mtp {

template <>
struct sampling_dispatch<host_executor> {
  static std::size_t workspace_bytes(host_executor const&, std::int64_t vocab) {
    return static_cast<std::size_t>(vocab) * sizeof(std::int32_t);
  }
  static std::vector<std::byte> allocate(host_executor const&, std::size_t bytes) {
    return std::vector<std::byte>(bytes);
  }

  static std::int32_t sample(host_executor const&, std::span<float const> logits, sampling_options const& o,
                             rng& g, std::span<float> probs, std::span<std::byte> ws) {
    auto const V = static_cast<std::int64_t>(logits.size());
    if (o.temperature == 0.0f) {
      auto const t = argmax(logits.data(), V);
      std::fill(probs.begin(), probs.end(), 0.0f);
      probs[static_cast<std::size_t>(t)] = 1.0f;
      return static_cast<std::int32_t>(t);
    }
    float mx = -INFINITY;
    for (float l : logits) mx = std::max(mx, l);
    for (std::size_t v = 0; v < logits.size(); ++v)
      probs[v] = logits[v] == -INFINITY ? 0.0f : std::exp((logits[v] - mx) / o.temperature);
    std::span<std::int32_t> idx(reinterpret_cast<std::int32_t*>(ws.data()), logits.size());
    std::iota(idx.begin(), idx.end(), 0);
    auto const more_probable = [&probs](std::int32_t a, std::int32_t b) {
      float const pa = probs[static_cast<std::size_t>(a)], pb = probs[static_cast<std::size_t>(b)];
      return pa > pb || (pa == pb && a < b);
    };
    std::int64_t kept = V;
    if (o.top_k > 0 && o.top_k < V) {
      kept = o.top_k;
      std::nth_element(idx.begin(), idx.begin() + kept, idx.end(), more_probable);
      for (std::int64_t j = kept; j < V; ++j)
        probs[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)])] = 0.0f;
    }
    if (o.top_p < 1.0f) {
      auto const at = [&](std::int64_t j) -> float& {
        return probs[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)])];
      };
      double total = 0.0;
      for (std::int64_t j = 0; j < kept; ++j) total += at(j);
      double const reach = static_cast<double>(o.top_p) * total;
      // Sort only a most-probable prefix, 4x longer until its mass reaches top_p * total: every token
      // past such a prefix is dropped, and the prefix is ordered as a full sort would order it.
      std::int64_t sorted = std::min<std::int64_t>(kept, 256);
      for (;;) {
        std::partial_sort(idx.begin(), idx.begin() + sorted, idx.begin() + kept, more_probable);
        double mass = 0.0;
        for (std::int64_t j = 0; j < sorted; ++j) mass += at(j);
        if (mass >= reach || sorted == kept) break;
        sorted = std::min(kept, 4 * sorted);
      }
      double cum = 0.0;
      for (std::int64_t j = 0; j < kept; ++j) {  // kept while the mass before it is < top_p * total
        if (j < sorted && cum < reach)
          cum += at(j);
        else
          at(j) = 0.0f;
      }
    }
    double total = 0.0;
    for (float p : probs) total += p;
    for (float& p : probs) p = static_cast<float>(p / total);
    auto const t =
        inverse_cdf([&probs](std::int64_t v) { return probs[static_cast<std::size_t>(v)]; }, V, g.uniform());
    return static_cast<std::int32_t>(t);
  }
};

}  // namespace fp8moe::mtp
