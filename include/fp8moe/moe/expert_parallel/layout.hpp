// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert parallelism, local part: the expert -> rank placement (uniform, uneven or explicit, with
// nodes of ranks_per_node ranks) and the dispatch layout of DeepEP's get_dispatch_layout: tokens per
// rank / per expert / per node and which ranks each token goes to. Deterministic counting, no
// atomics; outputs are overwritten. Host path (the layout is tiny next to the payload).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"

namespace fp8moe::moe {

namespace detail {
using ::fp8moe::detail::concat;
}

/// Where every expert lives: rank_of[e] and its id on that rank, local_of[e] (experts of one rank
/// are numbered in ascending global order). Ranks r*ranks_per_node .. +ranks_per_node-1 form node
/// r/ranks_per_node.
class expert_placement {
 public:
  expert_placement() = default;

  /// Contiguous blocks: rank r owns experts [r*E/R ...) with the first E % R ranks owning one more.
  static expert_placement uniform(int experts, int ranks, int ranks_per_node = 1) {
    constexpr char const* where = "fp8moe::moe::expert_placement::uniform";
    require(experts >= 1, where, "experts", ">= 1", std::to_string(experts));
    require(ranks >= 1, where, "ranks", ">= 1", std::to_string(ranks));
    std::vector<int> rank_of(static_cast<std::size_t>(experts));
    int const base = experts / ranks, extra = experts % ranks;
    int e = 0;
    for (int r = 0; r < ranks; ++r)
      for (int i = 0; i < base + (r < extra ? 1 : 0); ++i) rank_of[static_cast<std::size_t>(e++)] = r;
    return explicit_placement(std::move(rank_of), ranks, ranks_per_node);
  }

  /// Any placement: rank_of[e] in [0, ranks); ranks may own zero experts.
  static expert_placement explicit_placement(std::vector<int> rank_of, int ranks, int ranks_per_node = 1) {
    constexpr char const* where = "fp8moe::moe::expert_placement";
    require(!rank_of.empty(), where, "rank_of", "at least one expert");
    require(ranks >= 1, where, "ranks", ">= 1", std::to_string(ranks));
    require(ranks_per_node >= 1 && ranks % ranks_per_node == 0, where, "ranks_per_node",
            "a divisor of ranks = " + std::to_string(ranks), std::to_string(ranks_per_node));
    expert_placement p;
    p.ranks_ = ranks;
    p.ranks_per_node_ = ranks_per_node;
    p.local_count_.assign(static_cast<std::size_t>(ranks), 0);
    p.local_of_.resize(rank_of.size());
    for (std::size_t e = 0; e < rank_of.size(); ++e) {
      int const r = rank_of[e];
      if (r < 0 || r >= ranks)  // message built only on failure (require's arguments are eager)
        ::fp8moe::detail::throw_argument(where, "rank_of", "values in [0, " + std::to_string(ranks) + ")",
                                         detail::concat("rank_of[", e, "] = ", r));
      p.local_of_[e] = p.local_count_[static_cast<std::size_t>(r)]++;
    }
    p.rank_of_ = std::move(rank_of);
    return p;
  }

  int experts() const { return static_cast<int>(rank_of_.size()); }
  int ranks() const { return ranks_; }
  int ranks_per_node() const { return ranks_per_node_; }
  int nodes() const { return ranks_ / ranks_per_node_; }
  int rank_of(int e) const { return rank_of_[static_cast<std::size_t>(e)]; }
  int local_of(int e) const { return local_of_[static_cast<std::size_t>(e)]; }
  int node_of_rank(int r) const { return r / ranks_per_node_; }
  /// Experts rank r owns (E_local of that rank).
  int local_experts(int r) const { return local_count_[static_cast<std::size_t>(r)]; }
  /// Global id of local expert l of rank r.
  int global_id(int r, int l) const {
    for (int e = 0; e < experts(); ++e)
      if (rank_of(e) == r && local_of(e) == l) return e;
    return -1;
  }
  std::vector<int> const& rank_of() const { return rank_of_; }

 private:
  std::vector<int> rank_of_, local_of_, local_count_;
  int ranks_ = 1, ranks_per_node_ = 1;
};

/// DeepEP's dispatch layout. Counts are exact int64. is_token_in_rank (T,R) is 0/1.
struct dispatch_layout {
  std::vector<std::int64_t> tokens_per_rank;    // (R) tokens sent to each rank (once per rank)
  std::vector<std::int64_t> slots_per_rank;     // (R) (token, slot) pairs whose expert is on each rank
  std::vector<std::int64_t> tokens_per_expert;  // (E)
  std::vector<std::int64_t> tokens_per_node;    // (nodes) tokens sent to each node (once per node)
  host_matrix<std::uint8_t> is_token_in_rank;   // (T,R)
};

namespace detail {
/// O(T*k) compares; the message is built only for the offending id (require() would format its
/// strings for every element: that cost 2.4 ms per call at T=1024, k=8, see docs/expert_parallel.md).
inline void check_ids(matrix_view<std::int32_t const> ids, expert_placement const& p, char const* where) {
  check_matrix(ids, where, "ids");
  require(p.experts() >= 1, where, "placement", "a placement with experts");
  std::int32_t const E = p.experts();
  for (std::int64_t t = 0; t < ids.rows; ++t)
    for (std::int64_t j = 0; j < ids.cols; ++j) {
      std::int32_t const e = ids(t, j);
      if (e < -1 || e >= E)
        ::fp8moe::detail::throw_argument(where, "ids", concat("values in [-1, E = ", E, ")"),
                                         concat("ids(", t, ", ", j, ") = ", e));
    }
}
}  // namespace detail

/// Computes the layout of ids (T,k) (-1 = slot not routed) under `placement`, into `out`
/// (resized; overwritten). Throws before writing on an id outside [-1, E).
inline void compute_dispatch_layout(host_executor const& exec, matrix_view<std::int32_t const> ids,
                                    expert_placement const& placement, dispatch_layout& out) {
  constexpr char const* where = "fp8moe::moe::compute_dispatch_layout";
  detail::check_ids(ids, placement, where);
  std::int64_t const T = ids.rows, k = ids.cols;
  int const R = placement.ranks(), E = placement.experts(), nodes = placement.nodes();
  out.tokens_per_rank.assign(static_cast<std::size_t>(R), 0);
  out.slots_per_rank.assign(static_cast<std::size_t>(R), 0);
  out.tokens_per_expert.assign(static_cast<std::size_t>(E), 0);
  out.tokens_per_node.assign(static_cast<std::size_t>(nodes), 0);
  out.is_token_in_rank = host_matrix<std::uint8_t>(T, R, 0);
  // per-token flags in parallel (each token owns its row), then serial exact column sums
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t j = 0; j < k; ++j) {
      std::int32_t const e = ids(t, j);
      if (e >= 0) out.is_token_in_rank(t, placement.rank_of(e)) = 1;
    }
  (void)exec;
  std::vector<std::uint8_t> node_hit(static_cast<std::size_t>(nodes));
  for (std::int64_t t = 0; t < T; ++t) {
    std::fill(node_hit.begin(), node_hit.end(), std::uint8_t{0});
    for (int r = 0; r < R; ++r)
      if (out.is_token_in_rank(t, r)) {
        ++out.tokens_per_rank[static_cast<std::size_t>(r)];
        node_hit[static_cast<std::size_t>(placement.node_of_rank(r))] = 1;
      }
    for (int n = 0; n < nodes; ++n)
      out.tokens_per_node[static_cast<std::size_t>(n)] += node_hit[static_cast<std::size_t>(n)];
    for (std::int64_t j = 0; j < k; ++j) {
      std::int32_t const e = ids(t, j);
      if (e < 0) continue;
      ++out.tokens_per_expert[static_cast<std::size_t>(e)];
      ++out.slots_per_rank[static_cast<std::size_t>(placement.rank_of(e))];
    }
  }
}

inline dispatch_layout compute_dispatch_layout(host_executor const& exec, matrix_view<std::int32_t const> ids,
                                               expert_placement const& placement) {
  dispatch_layout l;
  compute_dispatch_layout(exec, ids, placement, l);
  return l;
}

}  // namespace fp8moe::moe
