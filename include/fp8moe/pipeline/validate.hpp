// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Schedule validation: placement and ranges, one F and one backward per (chunk, micro-batch), F before
// I/B, I before W, stage order across ranks (a transfer on both sides, receive before use), identical
// send/receive order for every rank pair, and deadlock freedom by simulation. check() reports,
// validate() throws fp8moe::error naming the first violated rule.
#pragma once

#include <algorithm>
#include <array>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/pipeline/schedule.hpp"

namespace fp8moe::pipeline {

namespace detail {

/// Where each half of the work of (chunk, mb) happens: the forward, the input-gradient half (B, I or
/// the backward of an FB) and the weight-gradient half (B, W or the backward of an FB). Flat tables
/// (one vector per chunk, indexed by micro-batch) and the chain neighbours of every chunk, looked up
/// once: the validator and the lowering's repair loop index whole schedules many times.
struct work_index {
  struct place {
    int rank = -1, index = -1;
  };
  class place_map {
   public:
    place const* get(int c, int j) const {
      if (c < 0 || j < 0 || c >= static_cast<int>(v_.size()) || j >= static_cast<int>(v_[c].size()))
        return nullptr;
      return v_[c][j].rank >= 0 ? &v_[c][j] : nullptr;
    }
    bool contains(int c, int j) const { return get(c, j) != nullptr; }
    /// Sets (c, j); returns false, changing nothing, for negative keys or when set already and !overwrite.
    bool set(int c, int j, place p, bool overwrite = true) {
      if (c < 0 || j < 0) return false;
      if (c >= static_cast<int>(v_.size())) v_.resize(static_cast<std::size_t>(c) + 1);
      auto& row = v_[c];
      if (j >= static_cast<int>(row.size())) row.resize(static_cast<std::size_t>(j) + 1);
      if (row[j].rank >= 0 && !overwrite) return false;
      row[j] = p;
      return true;
    }

   private:
    std::vector<std::vector<place>> v_;
  };
  place_map fwd, bwd_input, bwd_weight;
  std::vector<int> next, prev;  ///< (chunks) chain neighbours, -1 at the ends; empty = ask the schedule

  void link(schedule const& s) {
    next.assign(static_cast<std::size_t>(s.chunks()), -1);
    prev.assign(static_cast<std::size_t>(s.chunks()), -1);
    for (auto const& ch : s.chains)
      for (std::size_t p = 0; p < ch.chunks.size(); ++p) {
        int const k = ch.chunks[p];
        if (k < 0 || k >= s.chunks()) continue;
        if (p + 1 < ch.chunks.size()) next[k] = ch.chunks[p + 1];
        if (p > 0) prev[k] = ch.chunks[p - 1];
      }
  }
  int next_chunk(schedule const& s, int c) const {
    return next.empty() ? s.next_chunk(c) : (c >= 0 && c < static_cast<int>(next.size()) ? next[c] : -1);
  }
  int prev_chunk(schedule const& s, int c) const {
    return prev.empty() ? s.prev_chunk(c) : (c >= 0 && c < static_cast<int>(prev.size()) ? prev[c] : -1);
  }
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
  auto add = [&](work_index::place_map const& map, int c, int j, op via, int cc) {
    if (auto const* p = map.get(c, j)) d.push_back({p->rank, p->index, p->rank != r, via, cc, j});
  };
  auto fwd_deps = [&](int c, int j) {
    int p = w.prev_chunk(s, c);
    if (p >= 0) add(w.fwd, p, j, op::recv_f, c);
  };
  auto bwd_deps = [&](int c, int j) {
    add(w.fwd, c, j, op::f, c);
    int n = w.next_chunk(s, c);
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
inline void route_through_sends(schedule const& s, work_index const& w, std::vector<dependency>& deps) {
  for (auto& d : deps) {
    if (!d.remote) continue;
    bool const forward = d.via == op::recv_f;
    int const producer = forward ? w.prev_chunk(s, d.chunk) : w.next_chunk(s, d.chunk);
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

/// Action indices [first, last) of one rank: a transfer group is a run of consecutive transfers.
struct index_range {
  int first = 0, last = 0;
  struct iterator {
    int v;
    int operator*() const { return v; }
    iterator& operator++() {
      ++v;
      return *this;
    }
    bool operator!=(iterator const& o) const { return v != o.v; }
  };
  iterator begin() const { return {first}; }
  iterator end() const { return {last}; }
  int back() const { return last - 1; }
  std::size_t size() const { return static_cast<std::size_t>(last - first); }
};

/// State of the stream-groups simulation (transfer_model::stream_groups), see check().
struct group_state {
  std::vector<std::vector<index_range>> groups;           // (rank, group) -> action indices
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

/// For rank r of a schedule: the producing compute of each SEND (-1: none on this rank), and for each
/// remote input of a compute the first RECV on r carrying it (-1: none). Also used by the lowering's
/// stream-group repair, which re-indexes one rank after moving its receives.
inline void rank_inputs(schedule const& s, work_index const& links, int r, std::vector<int>& producer,
                        std::vector<std::array<int, 2>>& recv_of) {
  auto const& list = s.actions[r];
  producer.assign(list.size(), -1);
  recv_of.assign(list.size(), {-1, -1});
  work_index::place_map first_recv[2], made[2];  // (F, B): first RECV of (chunk, mb); its producer here
  for (int x = 0; x < static_cast<int>(list.size()); ++x) {
    auto const& a = list[x];
    if (is_recv(a.kind)) first_recv[a.kind == op::recv_b].set(a.chunk, a.mb, {r, x}, false);
    if (a.kind == op::f || a.kind == op::fb) made[0].set(a.chunk, a.mb, {r, x});
    if (a.kind == op::b || a.kind == op::i) made[1].set(a.chunk, a.mb, {r, x});
    if (a.kind == op::fb) made[1].set(a.chunk2, a.mb2, {r, x});
  }
  auto remote = [&](int neighbour) { return neighbour >= 0 && s.chunk_rank[neighbour] != r; };
  auto recv = [&](int backward, int chunk, int mb) {
    auto const* p = first_recv[backward].get(chunk, mb);
    return p ? p->index : -1;
  };
  for (int x = 0; x < static_cast<int>(list.size()); ++x) {
    auto const& a = list[x];
    if (is_send(a.kind)) {
      auto const* p = made[a.kind == op::send_b].get(a.chunk, a.mb);
      producer[x] = p ? p->index : -1;
    }
    auto& in = recv_of[x];
    if ((a.kind == op::f || a.kind == op::fb) && remote(links.prev_chunk(s, a.chunk)))
      in[0] = recv(0, a.chunk, a.mb);
    if ((a.kind == op::b || a.kind == op::i) && remote(links.next_chunk(s, a.chunk)))
      in[1] = recv(1, a.chunk, a.mb);
    if (a.kind == op::fb && remote(links.next_chunk(s, a.chunk2))) in[1] = recv(1, a.chunk2, a.mb2);
  }
}

/// The stream-groups simulation of a structurally valid schedule (check()'s rules hold): O(actions),
/// everything it needs is looked up once from the action lists and the chunk placement.
inline group_state simulate_groups(schedule const& s) {
  int const R = s.ranks;
  work_index links;
  links.link(s);
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
      if (!open) groups[r].push_back({x, x});
      open = true;
      groups[r].back().last = x + 1;
      group_of[r][x] = static_cast<int>(groups[r].size()) - 1;
    }
  }
  // k-th send from i to j <-> k-th receive on j from i (orders were checked equal above).
  {
    // Flat: the receives of pair (i -> j) in order at recv_at[offset[i*R+j] ...].
    auto const RR = static_cast<std::size_t>(R) * static_cast<std::size_t>(R);
    std::vector<int> count(RR + 1, 0), seen(RR, 0);
    for (int r = 0; r < R; ++r)
      for (auto const& a : s.actions[r])
        if (is_recv(a.kind) && a.peer >= 0 && a.peer < R)
          ++count[static_cast<std::size_t>(a.peer) * R + r + 1];
    for (std::size_t p = 0; p < RR; ++p) count[p + 1] += count[p];
    std::vector<int> recv_at(static_cast<std::size_t>(count[RR]));
    for (int r = 0; r < R; ++r) {
      partner[r].assign(s.actions[r].size(), {-1, -1});
      for (int x = 0; x < static_cast<int>(s.actions[r].size()); ++x) {
        auto const& a = s.actions[r][x];
        if (!is_recv(a.kind) || a.peer < 0 || a.peer >= R) continue;
        std::size_t const pr = static_cast<std::size_t>(a.peer) * R + r;
        recv_at[static_cast<std::size_t>(count[pr] + seen[pr]++)] = x;
      }
    }
    std::fill(seen.begin(), seen.end(), 0);
    for (int i = 0; i < R; ++i)
      for (int xs = 0; xs < static_cast<int>(s.actions[i].size()); ++xs) {
        auto const& a = s.actions[i][xs];
        if (!is_send(a.kind) || a.peer < 0 || a.peer >= R) continue;
        int const j = a.peer;
        std::size_t const pr = static_cast<std::size_t>(i) * R + j;
        int const k = seen[pr]++;
        if (k >= count[pr + 1] - count[pr]) continue;  // unmatched (check() reports it earlier)
        int const xr = recv_at[static_cast<std::size_t>(count[pr] + k)];
        partner[i][xs] = {j, group_of[j][xr]};
        partner[j][xr] = {i, group_of[i][xs]};
      }
  }
  // Looked up once (not per simulation round).
  std::vector<std::vector<int>> producer(R);
  std::vector<std::vector<std::array<int, 2>>> recv_of(R);  // (rank, action) -> up to 2 RECVs, -1 = none
  for (int r = 0; r < R; ++r) rank_inputs(s, links, r, producer[r], recv_of[r]);
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
  // Every rule only ever turns a flag on, so the state reached is the same in any visiting order: a
  // worklist re-visits a rank only when one of its own flags or a partner group's `started` changed.
  std::vector<int> work(static_cast<std::size_t>(R));
  std::vector<char> queued(static_cast<std::size_t>(R), 1);
  for (int r = 0; r < R; ++r) work[r] = R - 1 - r;  // popped from the back: rank 0 first
  while (!work.empty()) {
    int const r = work.back();
    work.pop_back();
    queued[r] = 0;
    for (bool progress = true; progress;) {
      progress = false;
      // Compute stream: in order; a compute waits for the groups holding its receives.
      while (cpc[r] < static_cast<int>(s.actions[r].size())) {
        auto const& a = s.actions[r][cpc[r]];
        if (!is_compute(a.kind)) {
          ++cpc[r];
          continue;
        }
        bool ready = true;
        for (int x : recv_of[r][cpc[r]])  // the RECV on this rank for this input, if it comes earlier
          if (x >= 0 && x < cpc[r]) ready = ready && finished[r][group_of[r][x]];
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
              int const pidx = producer[r][x];
              ok = ok && pidx >= 0 && cdone[r][pidx];
            }
          if (!ok) break;
          started[r][g] = 1;
          progress = true;
          for (int x : groups[r][g]) {  // partners waiting for this group to start
            int const peer = partner[r][x].first;
            if (peer >= 0 && !queued[peer]) {
              queued[peer] = 1;
              work.push_back(peer);
            }
          }
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
  w.link(s);
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
      auto put = [&](detail::work_index::place_map& map, int c, int j, char const* what) -> bool {
        if (!map.set(c, j, {r, x}, false)) {
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
      if (!w.fwd.contains(k, j)) return fail("missing forward of chunk ", k, " mb ", j);
      if (!w.bwd_input.contains(k, j)) return fail("missing backward (B or I) of chunk ", k, " mb ", j);
      if (!w.bwd_weight.contains(k, j))
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
      if (comm) detail::route_through_sends(s, w, deps[r].back());
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
    auto const gs = detail::simulate_groups(s);
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
