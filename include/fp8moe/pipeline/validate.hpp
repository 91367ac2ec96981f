// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Schedule validation: placement and ranges, one F and one backward per (chunk, micro-batch), F before
// I/B, I before W, stage order across ranks (a transfer on both sides, receive before use), identical
// send/receive order for every rank pair, and deadlock freedom by simulation. check() reports,
// validate() throws fp8moe::error naming the first violated rule.
#pragma once

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/pipeline/schedule.hpp"

namespace fp8moe::pipeline {

namespace detail {

/// Where each half of the work of (chunk, mb) happens: the forward, the input-gradient half (B, I or
/// the backward of an FB) and the weight-gradient half (B, W or the backward of an FB).
struct work_index {
  struct place {
    int rank = -1, index = -1;
  };
  std::map<std::pair<int, int>, place> fwd, bwd_input, bwd_weight;
};

/// Data dependencies of one compute action: the producer (rank, index), whether it is on another
/// rank, and which transfer would carry it: an activation into `chunk`'s forward (via = recv_f), a
/// gradient into `chunk`'s backward (via = recv_b), or none (same-rank state, via = f).
struct dependency {
  int rank, index;
  bool remote;
  op via;
  int chunk, mb;
};

inline std::vector<dependency> dependencies(schedule const& s, work_index const& w, int r, action const& a) {
  std::vector<dependency> d;
  auto add = [&](auto const& map, int c, int j, op via, int cc) {
    auto it = map.find({c, j});
    if (it != map.end()) d.push_back({it->second.rank, it->second.index, it->second.rank != r, via, cc, j});
  };
  auto fwd_deps = [&](int c, int j) {
    int p = s.prev_chunk(c);
    if (p >= 0) add(w.fwd, p, j, op::recv_f, c);
  };
  auto bwd_deps = [&](int c, int j) {
    add(w.fwd, c, j, op::f, c);
    int n = s.next_chunk(c);
    if (n >= 0) add(w.bwd_input, n, j, op::recv_b, c);
  };
  switch (a.kind) {
    case op::f: fwd_deps(a.chunk, a.mb); break;
    case op::b:
    case op::i: bwd_deps(a.chunk, a.mb); break;
    case op::w: add(w.bwd_input, a.chunk, a.mb, op::f, a.chunk); break;
    case op::fb:
      fwd_deps(a.chunk, a.mb);
      bwd_deps(a.chunk2, a.mb2);
      break;
    default: break;
  }
  return d;
}

/// With transfers, a remote input is available once its SEND is posted: map each remote dependency to
/// the producer's SEND action (same rank, later index). Unchanged when no SEND is found.
inline void route_through_sends(schedule const& s, std::vector<dependency>& deps) {
  for (auto& d : deps) {
    if (!d.remote) continue;
    bool const forward = d.via == op::recv_f;
    int const producer = forward ? s.prev_chunk(d.chunk) : s.next_chunk(d.chunk);
    auto const& list = s.actions[d.rank];
    for (int x = d.index + 1; x < static_cast<int>(list.size()); ++x) {
      auto const& a = list[x];
      if (a.kind == (forward ? op::send_f : op::send_b) && a.chunk == producer && a.mb == d.mb) {
        d.index = x;
        break;
      }
    }
  }
}

inline bool has_transfers(schedule const& s) {
  for (auto const& v : s.actions)
    for (auto const& a : v)
      if (!is_compute(a.kind)) return true;
  return false;
}

}  // namespace detail

struct validation_report {
  bool ok = true;
  std::string error;  ///< the first violated rule, empty when ok
  explicit operator bool() const { return ok; }
};

/// Checks every rule; returns the first violation. Compute-only schedules (no transfer actions at
/// all) skip the transfer rules and are deadlock-checked as if every transfer were instantaneous.
inline validation_report check(schedule const& s) {
  validation_report rep;
  auto fail = [&](auto const&... parts) {
    rep.ok = false;
    rep.error = fp8moe::detail::concat(parts...);
    return rep;
  };
  int const R = s.ranks, C = s.chunks();
  if (R < 1) return fail("ranks must be >= 1, got ", R);
  if (static_cast<int>(s.actions.size()) != R) return fail("actions must have one list per rank (", R, ")");
  if (static_cast<int>(s.chunk_stage.size()) != C) return fail("chunk_stage and chunk_rank differ in size");
  for (int k = 0; k < C; ++k)
    if (s.chunk_rank[k] < 0 || s.chunk_rank[k] >= R) return fail("chunk ", k, " placed on invalid rank");
  std::vector<int> seen(C, 0);
  int total_mb = 0;
  for (auto const& ch : s.chains) {
    total_mb += ch.microbatches;
    for (int k : ch.chunks) {
      if (k < 0 || k >= C) return fail("chain names invalid chunk ", k);
      ++seen[k];
    }
  }
  for (int k = 0; k < C; ++k)
    if (seen[k] != 1) return fail("chunk ", k, " must be on exactly one chain");
  if (total_mb != s.microbatches) return fail("chains hold ", total_mb, " micro-batches, schedule says ", s.microbatches);

  bool const comm = detail::has_transfers(s);
  // Ranges, placement and the work index.
  detail::work_index w;
  auto in_range = [&](int c, int j) { return c >= 0 && c < C && j >= 0 && j < s.chain_microbatches(c); };
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < static_cast<int>(s.actions[r].size()); ++x) {
      auto const& a = s.actions[r][x];
      if (!in_range(a.chunk, a.mb)) return fail("rank ", r, " action ", x, " (", to_string(a), "): chunk/mb out of range");
      if (a.kind == op::fb && !in_range(a.chunk2, a.mb2))
        return fail("rank ", r, " action ", x, " (", to_string(a), "): backward chunk/mb out of range");
      if (!is_compute(a.kind)) {
        if (a.peer < 0 || a.peer >= R || a.peer == r)
          return fail("rank ", r, " action ", x, " (", to_string(a), "): invalid peer ", a.peer);
        continue;
      }
      if (s.chunk_rank[a.chunk] != r || (a.kind == op::fb && s.chunk_rank[a.chunk2] != r))
        return fail("rank ", r, " action ", x, " (", to_string(a), "): chunk not placed on this rank");
      auto put = [&](auto& map, int c, int j, char const* what) -> bool {
        if (!map.emplace(std::pair{c, j}, detail::work_index::place{r, x}).second) {
          fail("duplicate ", what, " for chunk ", c, " mb ", j, " (rank ", r, " action ", x, ")");
          return false;
        }
        return true;
      };
      bool okp = true;
      switch (a.kind) {
        case op::f: okp = put(w.fwd, a.chunk, a.mb, "forward"); break;
        case op::b:
          okp = put(w.bwd_input, a.chunk, a.mb, "backward") && put(w.bwd_weight, a.chunk, a.mb, "backward");
          break;
        case op::i: okp = put(w.bwd_input, a.chunk, a.mb, "input-gradient backward"); break;
        case op::w: okp = put(w.bwd_weight, a.chunk, a.mb, "weight-gradient backward"); break;
        case op::fb:
          okp = put(w.fwd, a.chunk, a.mb, "forward") && put(w.bwd_input, a.chunk2, a.mb2, "backward") &&
                put(w.bwd_weight, a.chunk2, a.mb2, "backward");
          break;
        default: break;
      }
      if (!okp) return rep;
    }
  for (int k = 0; k < C; ++k)
    for (int j = 0; j < s.chain_microbatches(k); ++j) {
      if (!w.fwd.count({k, j})) return fail("missing forward of chunk ", k, " mb ", j);
      if (!w.bwd_input.count({k, j})) return fail("missing backward (B or I) of chunk ", k, " mb ", j);
      if (!w.bwd_weight.count({k, j})) return fail("missing weight gradient (B or W) of chunk ", k, " mb ", j);
    }

  // Same-rank order and, across ranks, the transfers.
  using key = std::tuple<int, int, int>;  // (forward?1:0, consumer chunk, mb)
  for (int r = 0; r < R; ++r) {
    std::map<key, int> recv_pos;
    for (int x = 0; x < static_cast<int>(s.actions[r].size()); ++x) {
      auto const& a = s.actions[r][x];
      if (is_recv(a.kind)) recv_pos[{a.kind == op::recv_f, a.chunk, a.mb}] = x;
      if (!is_compute(a.kind)) continue;
      for (auto const& d : detail::dependencies(s, w, r, a)) {
        if (!d.remote) {
          if (d.index >= x)
            return fail("rank ", r, " action ", x, " (", to_string(a), ") runs before its input (action ", d.index, ")");
          continue;
        }
        if (!comm) continue;
        bool const forward = d.via == op::recv_f;
        int const cc = d.chunk, mb = d.mb;
        auto it = recv_pos.find({forward, cc, mb});
        if (it == recv_pos.end())
          return fail("rank ", r, " action ", x, " (", to_string(a), ") has no earlier RECV_", forward ? 'F' : 'B',
                      " of its input from rank ", d.rank);
        if (s.actions[r][it->second].peer != d.rank)
          return fail("rank ", r, " RECV for ", to_string(a), " names peer ", s.actions[r][it->second].peer,
                      ", the producer is on rank ", d.rank);
      }
    }
  }
  if (comm) {
    // Every send follows its producer, and the per-pair sequences agree label for label.
    std::vector<std::vector<std::vector<key>>> sent(R, std::vector<std::vector<key>>(R)), got = sent;
    for (int r = 0; r < R; ++r) {
      std::map<key, bool> produced;
      for (int x = 0; x < static_cast<int>(s.actions[r].size()); ++x) {
        auto const& a = s.actions[r][x];
        if (a.kind == op::f || a.kind == op::fb) produced[{1, a.chunk, a.mb}] = true;
        if (a.kind == op::b || a.kind == op::i) produced[{0, a.chunk, a.mb}] = true;
        if (a.kind == op::fb) produced[{0, a.chunk2, a.mb2}] = true;
        if (is_send(a.kind)) {
          bool const f = a.kind == op::send_f;
          if (!produced.count({f, a.chunk, a.mb}))
            return fail("rank ", r, " action ", x, " (", to_string(a), ") sends before the compute producing it");
          int const to = f ? s.next_chunk(a.chunk) : s.prev_chunk(a.chunk);
          if (to < 0 || s.chunk_rank[to] != a.peer)
            return fail("rank ", r, " action ", x, " (", to_string(a), ") sends to rank ", a.peer,
                        " which does not hold the consumer");
          sent[r][a.peer].push_back({f, to, a.mb});
        }
        if (is_recv(a.kind)) got[a.peer][r].push_back({a.kind == op::recv_f, a.chunk, a.mb});
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < R; ++j) {
        auto const &a = sent[i][j], &b = got[i][j];
        if (a.size() != b.size())
          return fail("rank ", i, " sends ", a.size(), " tensors to rank ", j, ", which receives ", b.size());
        for (std::size_t k = 0; k < a.size(); ++k)
          if (a[k] != b[k])
            return fail("transfer ", k, " from rank ", i, " to rank ", j, ": sent ", std::get<0>(a[k]) ? "F" : "B",
                        " chunk ", std::get<1>(a[k]), " mb ", std::get<2>(a[k]), ", received ",
                        std::get<0>(b[k]) ? "F" : "B", " chunk ", std::get<1>(b[k]), " mb ", std::get<2>(b[k]),
                        " (order differs)");
      }
  }

  // Deadlock check: run every rank's list; a compute waits for its producers (for a remote input: for
  // the producer's SEND); transfers never block (they are posted asynchronously). No progress with
  // work left = deadlock.
  std::vector<int> pc(R, 0);
  std::vector<std::vector<char>> done(R);
  for (int r = 0; r < R; ++r) done[r].assign(s.actions[r].size(), 0);
  std::vector<std::vector<std::vector<detail::dependency>>> deps(R);
  for (int r = 0; r < R; ++r)
    for (auto const& a : s.actions[r]) {
      deps[r].push_back(detail::dependencies(s, w, r, a));
      if (comm) detail::route_through_sends(s, deps[r].back());
    }
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < R; ++r)
      while (pc[r] < static_cast<int>(s.actions[r].size())) {
        bool ready = true;
        for (auto const& d : deps[r][pc[r]]) ready = ready && done[d.rank][d.index];
        if (!ready) break;
        done[r][pc[r]++] = 1;
        progress = true;
      }
  }
  for (int r = 0; r < R; ++r)
    if (pc[r] < static_cast<int>(s.actions[r].size())) {
      std::string stuck;
      for (int q = 0; q < R; ++q)
        if (pc[q] < static_cast<int>(s.actions[q].size()))
          stuck += fp8moe::detail::concat(" rank ", q, " at ", to_string(s.actions[q][pc[q]]), ";");
      return fail("deadlock:", stuck);
    }
  return rep;
}

/// Throws fp8moe::error (invalid_argument) naming the violated rule.
inline void validate(schedule const& s) {
  auto rep = check(s);
  if (!rep.ok) throw error(errc::invalid_argument, "fp8moe::pipeline::validate: " + rep.error);
}

}  // namespace fp8moe::pipeline
