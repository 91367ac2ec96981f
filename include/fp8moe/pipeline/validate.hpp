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
    case op::f:
      fwd_deps(a.chunk, a.mb);
      break;
    case op::b:
    case op::i:
      bwd_deps(a.chunk, a.mb);
      break;
    case op::w:
      add(w.bwd_input, a.chunk, a.mb, op::f, a.chunk);
      break;
    case op::fb:
      fwd_deps(a.chunk, a.mb);
      bwd_deps(a.chunk2, a.mb2);
      break;
    default:
      break;
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

/// State of the stream-groups simulation (transfer_model::stream_groups), see check().
struct group_state {
  std::vector<std::vector<std::vector<int>>> groups;      // (rank, group) -> action indices
  std::vector<std::vector<int>> group_of;                 // (rank, action) -> group or -1
  std::vector<std::vector<std::pair<int, int>>> partner;  // (rank, action) -> (peer, peer's group)
  std::vector<std::vector<char>> started, finished;       // (rank, group)
  std::vector<int> gp, cpc;                               // next group / next action per rank
  bool done(schedule const& s) const {
    for (std::size_t r = 0; r < gp.size(); ++r)
      if (gp[r] < static_cast<int>(groups[r].size()) || cpc[r] < static_cast<int>(s.actions[r].size()))
        return false;
    return true;
  }
};

inline group_state simulate_groups(schedule const& s, work_index const& w,
                                   std::vector<std::vector<std::vector<dependency>>> const& deps) {
  int const R = s.ranks;
  group_state st;
  auto& groups = st.groups;
  auto& group_of = st.group_of;
  auto& partner = st.partner;
  auto& started = st.started;
  auto& finished = st.finished;
  auto& gp = st.gp;
  auto& cpc = st.cpc;
  groups.resize(R);
  group_of.resize(R);
  partner.resize(R);
  // Groups, their counterparts and the producers of their sends.
  for (int r = 0; r < R; ++r) {
    group_of[r].assign(s.actions[r].size(), -1);
    bool open = false;
    for (int x = 0; x < static_cast<int>(s.actions[r].size()); ++x) {
      if (is_compute(s.actions[r][x].kind)) {
        open = false;
        continue;
      }
      if (!open) groups[r].emplace_back();
      open = true;
      groups[r].back().push_back(x);
      group_of[r][x] = static_cast<int>(groups[r].size()) - 1;
    }
  }
  // k-th send from i to j <-> k-th receive on j from i (orders were checked equal above).
  {
    std::vector<std::vector<std::vector<int>>> sends(R, std::vector<std::vector<int>>(R)), recvs = sends;
    for (int r = 0; r < R; ++r) {
      partner[r].assign(s.actions[r].size(), {-1, -1});
      for (int x = 0; x < static_cast<int>(s.actions[r].size()); ++x) {
        auto const& a = s.actions[r][x];
        if (is_send(a.kind)) sends[r][a.peer].push_back(x);
        if (is_recv(a.kind)) recvs[a.peer][r].push_back(x);
      }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < R; ++j)
        for (std::size_t k = 0; k < sends[i][j].size(); ++k) {
          int const xs = sends[i][j][k], xr = recvs[i][j][k];
          partner[i][xs] = {j, group_of[j][xr]};
          partner[j][xr] = {i, group_of[i][xs]};
        }
  }
  auto producer = [&](int r, action const& a) {
    auto const& map = a.kind == op::send_f ? w.fwd : w.bwd_input;
    auto it = map.find({a.chunk, a.mb});
    return it == map.end() || it->second.rank != r ? -1 : it->second.index;
  };
  started.resize(R);
  finished.resize(R);
  for (int r = 0; r < R; ++r) {
    started[r].assign(groups[r].size(), 0);
    finished[r].assign(groups[r].size(), 0);
  }
  cpc.assign(R, 0);
  std::vector<std::vector<char>> cdone(R);
  for (int r = 0; r < R; ++r) cdone[r].assign(s.actions[r].size(), 0);
  gp.assign(R, 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < R; ++r) {
      // Compute stream: in order; a compute waits for the groups holding its receives.
      while (cpc[r] < static_cast<int>(s.actions[r].size())) {
        auto const& a = s.actions[r][cpc[r]];
        if (!is_compute(a.kind)) {
          ++cpc[r];
          continue;
        }
        bool ready = true;
        for (auto const& d : deps[r][cpc[r]])
          if (d.remote) {
            // the RECV on this rank for this input
            for (int x = 0; x < cpc[r]; ++x) {
              auto const& q = s.actions[r][x];
              if (q.kind == d.via && q.chunk == d.chunk && q.mb == d.mb) {
                ready = ready && finished[r][group_of[r][x]];
                break;
              }
            }
          }
        if (!ready) break;
        cdone[r][cpc[r]++] = 1;
        progress = true;
      }
      // Communication stream: groups in order.
      while (gp[r] < static_cast<int>(groups[r].size())) {
        int const g = gp[r];
        if (!started[r][g]) {
          bool ok = g == 0 || finished[r][g - 1];
          for (int x : groups[r][g])
            if (is_send(s.actions[r][x].kind)) {
              int const pidx = producer(r, s.actions[r][x]);
              ok = ok && pidx >= 0 && cdone[r][pidx];
            }
          if (!ok) break;
          started[r][g] = 1;
          progress = true;
        }
        bool ok = true;
        for (int x : groups[r][g]) {
          auto [peer, pg] = partner[r][x];
          ok = ok && peer >= 0 && started[peer][pg];
        }
        if (!ok) break;
        finished[r][g] = 1;
        ++gp[r];
        progress = true;
      }
    }
  }
  return st;
}

/// Work index and per-action dependencies (remote ones routed through their SENDs) of a schedule
/// that is structurally valid.
inline std::pair<work_index, std::vector<std::vector<std::vector<dependency>>>> index_schedule(
    schedule const& s) {
  work_index w;
  for (int r = 0; r < s.ranks; ++r)
    for (int x = 0; x < static_cast<int>(s.actions[r].size()); ++x) {
      auto const& a = s.actions[r][x];
      if (a.kind == op::f || a.kind == op::fb) w.fwd[{a.chunk, a.mb}] = {r, x};
      if (a.kind == op::b || a.kind == op::i) w.bwd_input[{a.chunk, a.mb}] = {r, x};
      if (a.kind == op::b || a.kind == op::w) w.bwd_weight[{a.chunk, a.mb}] = {r, x};
      if (a.kind == op::fb) {
        w.bwd_input[{a.chunk2, a.mb2}] = {r, x};
        w.bwd_weight[{a.chunk2, a.mb2}] = {r, x};
      }
    }
  std::vector<std::vector<std::vector<dependency>>> deps(s.ranks);
  for (int r = 0; r < s.ranks; ++r)
    for (auto const& a : s.actions[r]) {
      deps[r].push_back(dependencies(s, w, r, a));
      route_through_sends(s, deps[r].back());
    }
  return {std::move(w), std::move(deps)};
}

inline bool has_transfers(schedule const& s) {
  for (auto const& v : s.actions)
    for (auto const& a : v)
      if (!is_compute(a.kind)) return true;
  return false;
}

}  // namespace detail

/// How transfers progress, for the deadlock check.
///  async:         each transfer is posted without blocking and completes once its peer posts the other
///                 side (host MPI executor: MPI_Isend/MPI_Irecv).
///  stream_groups: each run of consecutive transfers is one group (ncclGroupStart/End) on one
///                 communication stream per rank; a group starts after the previous group finished
///                 and after the computes producing its sends, and finishes once every peer group
///                 holding a counterpart has started (CUDA executor with NCCL).
enum class transfer_model { async, stream_groups };

struct validation_report {
  bool ok = true;
  std::string error;  ///< the first violated rule, empty when ok
  explicit operator bool() const { return ok; }
};

/// Checks every rule; returns the first violation. Compute-only schedules (no transfer actions at
/// all) skip the transfer rules and are deadlock-checked as if every transfer were instantaneous.
inline validation_report check(schedule const& s, transfer_model model = transfer_model::async) {
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
  if (total_mb != s.microbatches)
    return fail("chains hold ", total_mb, " micro-batches, schedule says ", s.microbatches);

  bool const comm = detail::has_transfers(s);
  // Ranges, placement and the work index.
  detail::work_index w;
  auto in_range = [&](int c, int j) { return c >= 0 && c < C && j >= 0 && j < s.chain_microbatches(c); };
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < static_cast<int>(s.actions[r].size()); ++x) {
      auto const& a = s.actions[r][x];
      if (!in_range(a.chunk, a.mb))
        return fail("rank ", r, " action ", x, " (", to_string(a), "): chunk/mb out of range");
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
        case op::f:
          okp = put(w.fwd, a.chunk, a.mb, "forward");
          break;
        case op::b:
          okp = put(w.bwd_input, a.chunk, a.mb, "backward") && put(w.bwd_weight, a.chunk, a.mb, "backward");
          break;
        case op::i:
          okp = put(w.bwd_input, a.chunk, a.mb, "input-gradient backward");
          break;
        case op::w:
          okp = put(w.bwd_weight, a.chunk, a.mb, "weight-gradient backward");
          break;
        case op::fb:
          okp = put(w.fwd, a.chunk, a.mb, "forward") && put(w.bwd_input, a.chunk2, a.mb2, "backward") &&
                put(w.bwd_weight, a.chunk2, a.mb2, "backward");
          break;
        default:
          break;
      }
      if (!okp) return rep;
    }
  for (int k = 0; k < C; ++k)
    for (int j = 0; j < s.chain_microbatches(k); ++j) {
      if (!w.fwd.count({k, j})) return fail("missing forward of chunk ", k, " mb ", j);
      if (!w.bwd_input.count({k, j})) return fail("missing backward (B or I) of chunk ", k, " mb ", j);
      if (!w.bwd_weight.count({k, j}))
        return fail("missing weight gradient (B or W) of chunk ", k, " mb ", j);
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
            return fail("rank ", r, " action ", x, " (", to_string(a), ") runs before its input (action ",
                        d.index, ")");
          continue;
        }
        if (!comm) continue;
        bool const forward = d.via == op::recv_f;
        int const cc = d.chunk, mb = d.mb;
        auto it = recv_pos.find({forward, cc, mb});
        if (it == recv_pos.end())
          return fail("rank ", r, " action ", x, " (", to_string(a), ") has no earlier RECV_",
                      forward ? 'F' : 'B', " of its input from rank ", d.rank);
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
            return fail("rank ", r, " action ", x, " (", to_string(a),
                        ") sends before the compute producing it");
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
            return fail("transfer ", k, " from rank ", i, " to rank ", j, ": sent ",
                        std::get<0>(a[k]) ? "F" : "B", " chunk ", std::get<1>(a[k]), " mb ",
                        std::get<2>(a[k]), ", received ", std::get<0>(b[k]) ? "F" : "B", " chunk ",
                        std::get<1>(b[k]), " mb ", std::get<2>(b[k]), " (order differs)");
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
  if (comm && model == transfer_model::stream_groups) {
    auto const gs = detail::simulate_groups(s, w, deps);
    auto const& groups = gs.groups;
    auto const& gp = gs.gp;
    auto const& cpc = gs.cpc;
    std::string stuck;
    for (int r = 0; r < R; ++r)
      if (gp[r] < static_cast<int>(groups[r].size()) || cpc[r] < static_cast<int>(s.actions[r].size()))
        stuck += fp8moe::detail::concat(" rank ", r, " at group ", gp[r], " of ", groups[r].size(),
                                        ", action ", cpc[r], ";");
    if (!stuck.empty()) return fail("deadlock with stream-ordered transfer groups:", stuck);
  }
  return rep;
}

/// Throws fp8moe::error (invalid_argument) naming the violated rule.
inline void validate(schedule const& s) {
  auto rep = check(s);
  if (!rep.ok) throw error(errc::invalid_argument, "fp8moe::pipeline::validate: " + rep.error);
}

}  // namespace fp8moe::pipeline
