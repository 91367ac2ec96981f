// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// add_communication(): lowers a compute-only schedule by inserting SEND/RECV so that every rank
// pair's send order equals its receive order (three placements, `lowering`), and the stream-group
// repair of the default placement (an incremental replay of validate.hpp's group simulation).
// Pure functions of their arguments; invalid schedules throw fp8moe::error naming the problem.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/pipeline/schedule.hpp"
#include "fp8moe/pipeline/validate.hpp"

namespace fp8moe::pipeline {

namespace detail {
/// The stream-groups simulation (validate.hpp's simulate_groups: the same rules reach the same state)
/// kept alive across the receive moves of repair_for_stream_groups, which used to rebuild every table
/// and re-run the whole schedule after each of its O(PP) moves. Every rule only turns a flag on, and
/// a move only takes receives from later groups of one rank into the group that rank is at, so the
/// state reached before a move is still reachable after it: the simulation renumbers that rank's
/// tables and resumes from there. Per rank the state is three numbers: the computes before `cpc` ran,
/// the groups before `gp` finished, and group `gp` started iff `open`.
class group_replay {
 public:
  explicit group_replay(schedule& s) : s_(s), R_(s.ranks) {
    links_.link(s);
    auto const R = static_cast<std::size_t>(R_);
    groups_.resize(R);
    group_of_.resize(R);
    producer_.resize(R);
    recv_of_.resize(R);
    partner_.resize(R);
    for (int r = 0; r < R_; ++r) index_rank(r);
    pair_transfers();
    cpc_.assign(R, 0);
    gp_.assign(R, 0);
    open_.assign(R, 0);
    queued_.assign(R, 0);
    run();
  }

  bool done() const {
    for (int r = 0; r < R_; ++r)
      if (gp_[r] < groups(r) || cpc_[r] < static_cast<int>(s_.actions[r].size())) return false;
    return true;
  }

  /// The first rank (in rank order) whose started group holds a SEND to a peer that has not started
  /// the matching RECV's group: that RECV, and the peer's earlier-ordered receives from the same rank,
  /// move to the end of the peer's current group. Returns false when there is none.
  bool repair_one() {
    for (int r = 0; r < R_; ++r) {
      int const g = gp_[r];
      if (g >= groups(r) || !open_[r]) continue;
      for (int x : groups_[r][g]) {
        auto const [p, px] = partner_[r][x];
        if (!is_send(s_.actions[r][x].kind) || p < 0) continue;
        int const pg = group_of_[p][px];
        if (started(p, pg) || gp_[p] >= pg) continue;
        hoist(p, r, gp_[p], pg);
        return true;
      }
    }
    return false;
  }

 private:
  int groups(int r) const { return static_cast<int>(groups_[r].size()); }
  bool started(int r, int g) const { return g < gp_[r] || (g == gp_[r] && open_[r]); }

  /// Transfer groups, producing computes of the sends, and the RECVs each compute waits for.
  void index_rank(int r) {
    auto const& list = s_.actions[r];
    int const n = static_cast<int>(list.size());
    auto& groups = groups_[r];
    auto& group_of = group_of_[r];
    groups.clear();
    group_of.assign(list.size(), -1);
    for (int x = 0; x < n; ++x) {
      if (is_compute(list[x].kind)) continue;
      if (x == 0 || is_compute(list[x - 1].kind)) groups.push_back({x, x});
      groups.back().last = x + 1;
      group_of[x] = static_cast<int>(groups.size()) - 1;
    }
    rank_inputs(s_, links_, r, producer_[r], recv_of_[r]);
  }

  /// The k-th SEND from i to j is the k-th RECV on j from i; unmatched transfers keep (-1, -1).
  void pair_transfers() {
    std::vector<std::vector<std::vector<int>>> recvs(static_cast<std::size_t>(R_));  // (dst, src) -> RECVs
    for (int r = 0; r < R_; ++r) {
      recvs[r].resize(static_cast<std::size_t>(R_));
      partner_[r].assign(s_.actions[r].size(), {-1, -1});
      for (int x = 0; x < static_cast<int>(s_.actions[r].size()); ++x) {
        auto const& a = s_.actions[r][x];
        if (is_recv(a.kind) && a.peer >= 0 && a.peer < R_) recvs[r][a.peer].push_back(x);
      }
    }
    std::vector<int> seen(static_cast<std::size_t>(R_));
    for (int i = 0; i < R_; ++i) {
      std::fill(seen.begin(), seen.end(), 0);
      for (int xs = 0; xs < static_cast<int>(s_.actions[i].size()); ++xs) {
        auto const& a = s_.actions[i][xs];
        if (!is_send(a.kind) || a.peer < 0 || a.peer >= R_) continue;
        int const j = a.peer, k = seen[j]++;
        if (k >= static_cast<int>(recvs[j][i].size())) continue;
        int const xr = recvs[j][i][k];
        partner_[i][xs] = {j, xr};
        partner_[j][xr] = {i, xs};
      }
    }
  }

  /// Runs every rank to the fixpoint from the current state (a rank is re-visited when a partner
  /// starts a group; its own progress is followed in place).
  void run() {
    for (int r = R_ - 1; r >= 0; --r)  // popped from the back: rank 0 first
      if (!queued_[r]) {
        queued_[r] = 1;
        work_.push_back(r);
      }
    while (!work_.empty()) {
      int const r = work_.back();
      work_.pop_back();
      queued_[r] = 0;
      advance(r);
    }
  }

  void advance(int r) {
    auto const& list = s_.actions[r];
    int const n = static_cast<int>(list.size());
    for (bool progress = true; progress;) {
      progress = false;
      // Compute stream: in order; a compute waits for the groups holding its (earlier) receives.
      while (cpc_[r] < n) {
        int const c = cpc_[r];
        bool ready = true;
        if (is_compute(list[c].kind))
          for (int x : recv_of_[r][c]) ready = ready && (x < 0 || x >= c || group_of_[r][x] < gp_[r]);
        if (!ready) break;
        ++cpc_[r];
        progress = true;
      }
      // Communication stream: groups in order; a group starts once its sends' producers ran and
      // finishes once every counterpart group has started.
      while (gp_[r] < groups(r)) {
        auto const& group = groups_[r][gp_[r]];
        if (!open_[r]) {
          bool ok = true;
          for (int x : group)
            if (is_send(list[x].kind)) ok = ok && producer_[r][x] >= 0 && producer_[r][x] < cpc_[r];
          if (!ok) break;
          open_[r] = 1;
          progress = true;
          for (int x : group) {
            int const peer = partner_[r][x].first;
            if (peer >= 0 && !queued_[peer]) {
              queued_[peer] = 1;
              work_.push_back(peer);
            }
          }
        }
        bool ok = true;
        for (int x : group) {
          auto const [peer, px] = partner_[r][x];
          ok = ok && peer >= 0 && started(peer, group_of_[peer][px]);
        }
        if (!ok) break;
        ++gp_[r];
        open_[r] = 0;
        progress = true;
      }
    }
  }

  /// Moves the receives on p from r in groups (cur, pg], in order, to the end of group `cur`, renumbers
  /// p's tables and the partners' references into p, and resumes the simulation.
  void hoist(int p, int r, int cur, int pg) {
    auto& v = s_.actions[p];
    int const n = static_cast<int>(v.size());
    std::vector<char> moved(v.size(), 0);
    std::vector<int> move;
    for (int q = cur + 1; q <= pg; ++q)
      for (int y : groups_[p][q])
        if (is_recv(v[y].kind) && v[y].peer == r) {
          move.push_back(y);
          moved[y] = 1;
        }
    int const insert_at = groups_[p][cur].back() + 1;
    std::vector<int> to(v.size());  // old index -> new index
    std::vector<action> out;
    out.reserve(v.size());
    auto put = [&](int x) {
      to[x] = static_cast<int>(out.size());
      out.push_back(v[x]);
    };
    for (int x = 0; x < insert_at; ++x) put(x);
    for (int y : move) put(y);
    for (int x = insert_at; x < n; ++x)
      if (!moved[x]) put(x);
    v = std::move(out);
    std::vector<std::pair<int, int>> partner(v.size(), {-1, -1});
    for (int x = 0; x < n; ++x) partner[to[x]] = partner_[p][x];
    for (int x = 0; x < n; ++x) {
      auto& [q, xq] = partner[x];
      if (q == p)
        xq = to[xq];
      else if (q >= 0)
        partner_[q][xq].second = x;
    }
    partner_[p] = std::move(partner);
    if (cpc_[p] < n) cpc_[p] = to[cpc_[p]];
    index_rank(p);  // groups before `cur` keep their numbers; gp and open stay
    run();
  }

  schedule& s_;
  int R_;
  work_index links_;
  std::vector<std::vector<index_range>> groups_;
  std::vector<std::vector<int>> group_of_, producer_;
  std::vector<std::vector<std::array<int, 2>>> recv_of_;
  std::vector<std::vector<std::pair<int, int>>> partner_;  ///< (rank, action) -> (peer, peer's action)
  std::vector<int> cpc_, gp_, work_;
  std::vector<char> open_, queued_;
};

/// Makes a lowered schedule safe for stream-ordered transfer groups (one NCCL group per run of
/// transfers, groups serialized on a stream): while the group simulation stalls with a started group
/// whose SEND waits for a peer that has not reached the matching RECV, that RECV (and the peer's
/// earlier-ordered receives from the same rank) move into the peer's current group — the hoisting
/// deepseek-ai/DualPipe does by hand (e.g. step 3 posts recv_forward before the W chunk). Receives
/// only move earlier, so the async model and the per-pair order are preserved. The simulation resumes
/// after each move (group_replay) rather than starting over.
inline void repair_for_stream_groups(schedule& s) {
  group_replay sim(s);
  for (int iter = 0; iter < 4 * static_cast<int>(s.actions.size()) * 64; ++iter)
    if (sim.done() || !sim.repair_one()) return;
}
}  // namespace detail

/// Lowers a compute-only schedule by inserting SEND/RECV so that for every (src, dst) pair the receives
/// come in the order of the sends (P2P matching is by order). Adjacent chunks on one rank (the V
/// turnaround) exchange locally, without transfers. Existing transfers are dropped first.
///  delay_sends (default): each RECV sits right before its consumer; a SEND follows its producer, or
///    a later compute when an earlier-consumed tensor to the same peer is produced later (the
///    deepseek-ai/DualPipe placement). Deadlock-free for every generator under the async model;
///    under stream_groups not for DualPipe with PP >= 8 or DualPipeV with >= 4 ranks (checked by
///    check(s, transfer_model::stream_groups); the CUDA executor re-lowers those with rendezvous).
///  hoist_receives: each SEND right after its producer; RECVs hoisted ahead of their consumer where
///    needed (PyTorch's _add_send_recv style). Deadlock-free only under transfer_model::async.
///  rendezvous: built by running the ranks jointly; a transfer is placed, on both sides at once, when
///    its consumer is waiting for it and its producer has run, into both ranks' current transfer
///    groups. Deadlock-free under both models whenever the compute order is (use it for the CUDA
///    executor); sends may sit later in the producer's list than with delay_sends.
enum class lowering { delay_sends, hoist_receives, rendezvous };

inline void add_communication(schedule& s, lowering how = lowering::delay_sends) {
  constexpr auto where = "fp8moe::pipeline::add_communication";
  int const R = s.ranks;
  std::vector<std::vector<action>> comp(R);
  for (int r = 0; r < R; ++r)
    for (auto const& a : s.actions[r])
      if (is_compute(a.kind)) comp[r].push_back(a);

  struct message {
    bool forward;
    int from_chunk, to_chunk, mb, src, dst;
  };
  detail::work_index links;  // chain neighbours, looked up once
  links.link(s);
  // Messages each compute emits, in emission order.
  auto emitted = [&](int r, action const& a) {
    std::vector<message> m;
    auto fwd_half = [&](int c, int j) {
      int n = links.next_chunk(s, c);
      if (n >= 0 && s.chunk_rank[n] != r) m.push_back({true, c, n, j, r, s.chunk_rank[n]});
    };
    auto bwd_half = [&](int c, int j) {
      int p = links.prev_chunk(s, c);
      if (p >= 0 && s.chunk_rank[p] != r) m.push_back({false, c, p, j, r, s.chunk_rank[p]});
    };
    if (a.kind == op::f) fwd_half(a.chunk, a.mb);
    if (a.kind == op::b || a.kind == op::i) bwd_half(a.chunk, a.mb);
    if (a.kind == op::fb) {
      fwd_half(a.chunk, a.mb);
      bwd_half(a.chunk2, a.mb2);
    }
    return m;
  };
  // Index of the compute on rank r consuming a message.
  // Index of the compute on rank r consuming a message: (forward?, chunk, mb) -> compute index.
  std::vector<std::map<std::tuple<bool, int, int>, int>> consumers(R);
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < static_cast<int>(comp[r].size()); ++x) {
      auto const& a = comp[r][x];
      if (a.kind == op::f || a.kind == op::fb) consumers[r].emplace(std::tuple{true, a.chunk, a.mb}, x);
      if (a.kind == op::b || a.kind == op::i) consumers[r].emplace(std::tuple{false, a.chunk, a.mb}, x);
      if (a.kind == op::fb) consumers[r].emplace(std::tuple{false, a.chunk2, a.mb2}, x);
    }
  auto consumer = [&](int r, message const& m) {
    auto it = consumers[r].find({m.forward, m.to_chunk, m.mb});
    return it == consumers[r].end() ? -1 : it->second;
  };

  // recv_at[dst][x] / send_after[src][x]: transfers inserted before / after compute x.
  std::vector<std::vector<std::vector<action>>> recv_at(R), send_after(R);
  for (int r = 0; r < R; ++r) {
    recv_at[r].resize(comp[r].size() + 1);
    send_after[r].resize(comp[r].size() + 1);
  }
  struct placed {
    message m;
    int producer, consumer;
  };
  std::vector<std::vector<std::vector<placed>>> pair(R, std::vector<std::vector<placed>>(R));
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < static_cast<int>(comp[r].size()); ++x)
      for (auto const& m : emitted(r, comp[r][x])) {
        int const c = consumer(m.dst, m);
        if (c < 0)  // the message is built only on failure: this runs once per transfer
          require(
              false, where, "schedule", "a consumer for every transfer",
              fp8moe::detail::concat("none on rank ", m.dst, " for ", m.forward ? "activation" : "gradient",
                                     " of chunk ", m.from_chunk, " mb ", m.mb));
        pair[m.src][m.dst].push_back({m, x, c});
      }
  auto recv_of = [](message const& m) {
    return action{m.forward ? op::recv_f : op::recv_b, m.to_chunk, m.mb, -1, -1, m.src};
  };
  auto send_of = [](message const& m) {
    return action{m.forward ? op::send_f : op::send_b, m.from_chunk, m.mb, -1, -1, m.dst};
  };
  if (how == lowering::rendezvous) {
    std::vector<placed const*> all;
    std::vector<std::vector<std::vector<int>>> needs(R), makes(R);  // (rank, compute) -> message ids
    for (int r = 0; r < R; ++r) {
      needs[r].resize(comp[r].size());
      makes[r].resize(comp[r].size());
    }
    for (int src = 0; src < R; ++src)
      for (int dst = 0; dst < R; ++dst)
        for (auto const& p : pair[src][dst]) {
          int const id = static_cast<int>(all.size());
          all.push_back(&p);
          needs[dst][p.consumer].push_back(id);
          makes[src][p.producer].push_back(id);
        }
    std::vector<char> produced(all.size(), 0), matched(all.size(), 0);
    std::vector<std::vector<action>> out(R);
    std::vector<std::size_t> pc(R, 0);
    // Rounds: first every rank claims the produced inputs of its next compute (placing the transfer
    // in both ranks' current groups), then every rank whose inputs are all here runs one compute.
    for (bool progress = true; progress;) {
      progress = false;
      for (int r = 0; r < R; ++r) {
        if (pc[r] >= comp[r].size()) continue;
        for (int id : needs[r][pc[r]])
          if (!matched[id] && produced[id]) {
            out[all[id]->m.src].push_back(send_of(all[id]->m));
            out[r].push_back(recv_of(all[id]->m));
            matched[id] = 1;
            progress = true;
          }
      }
      for (int r = 0; r < R; ++r) {
        if (pc[r] >= comp[r].size()) continue;
        bool ready = true;
        for (int id : needs[r][pc[r]]) ready = ready && matched[id];
        if (!ready) continue;
        out[r].push_back(comp[r][pc[r]]);
        for (int id : makes[r][pc[r]]) produced[id] = 1;
        ++pc[r];
        progress = true;
      }
    }
    for (int r = 0; r < R; ++r)
      if (pc[r] != comp[r].size())
        require(false, where, "schedule", "a compute order without deadlock",
                fp8moe::detail::concat("rank ", r, " cannot run ", to_string(comp[r][pc[r]])));
    s.actions = std::move(out);
    return;
  }
  for (int src = 0; src < R; ++src)
    for (int dst = 0; dst < R; ++dst) {
      auto msgs = pair[src][dst];  // in production order
      if (how == lowering::hoist_receives) {
        int limit = static_cast<int>(comp[dst].size());
        std::vector<int> pos(msgs.size());
        for (int k = static_cast<int>(msgs.size()) - 1; k >= 0; --k)
          pos[k] = limit = std::min(limit, msgs[k].consumer);
        for (std::size_t k = 0; k < msgs.size(); ++k) {
          recv_at[dst][pos[k]].push_back(recv_of(msgs[k].m));
          send_after[src][msgs[k].producer].push_back(send_of(msgs[k].m));
        }
      } else {
        // The receiver's consumption order (stable: production order breaks ties).
        std::stable_sort(msgs.begin(), msgs.end(),
                         [](auto const& a, auto const& b) { return a.consumer < b.consumer; });
        int at = -1;
        for (auto const& p : msgs) {
          at = std::max(at, p.producer);
          send_after[src][at].push_back(send_of(p.m));
          recv_at[dst][p.consumer].push_back(recv_of(p.m));
        }
      }
    }
  for (int r = 0; r < R; ++r) {
    std::vector<action> out;
    for (std::size_t x = 0; x < comp[r].size(); ++x) {
      for (auto const& a : recv_at[r][x]) out.push_back(a);
      out.push_back(comp[r][x]);
      for (auto const& a : send_after[r][x]) out.push_back(a);
    }
    s.actions[r] = std::move(out);
  }
  if (how == lowering::delay_sends) detail::repair_for_stream_groups(s);
}

}  // namespace fp8moe::pipeline
