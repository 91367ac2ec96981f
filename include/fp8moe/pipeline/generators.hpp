// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Schedule generators: GPipe, 1F1B, ZB-H1, ZB-H2, DualPipe and DualPipeV (the 8-step closed forms of
// deepseek-ai/DualPipe, step for step); with `communication` they are lowered by add_communication()
// (pipeline/lowering.hpp), which inserts SEND/RECV so that every rank pair's send order equals its
// receive order.
// Pure functions of their arguments; invalid parameters throw fp8moe::error naming the constraint.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/pipeline/lowering.hpp"
#include "fp8moe/pipeline/schedule.hpp"
#include "fp8moe/pipeline/validate.hpp"

namespace fp8moe::pipeline {

/// Generator parameters. `ranks` is the pipeline size (DualPipe: PP; DualPipeV: devices, holding
/// 2·ranks stages); `microbatches` counts all micro-batches (DualPipe: both directions together).
/// `communication` = false returns the compute-only lists (what published traces show).
struct schedule_config {
  int ranks = 1;
  int microbatches = 1;
  bool communication = true;
};

namespace detail {

inline std::string str(int v) {
  return std::to_string(v);
}

/// Size limits, checked before anything is sized or multiplied: every generator computes 2·ranks and
/// 2·microbatches in int, and builds O(ranks · microbatches) actions.
inline constexpr int max_ranks = 1 << 16;
inline constexpr int max_microbatches = 1 << 20;
inline constexpr std::int64_t max_work = std::int64_t{1} << 24;  ///< ranks · microbatches

inline void check_common(std::string_view where, schedule_config const& c) {
  require(c.ranks >= 1 && c.ranks <= max_ranks, where, "ranks", "in [1, 65536]", str(c.ranks));
  require(c.microbatches >= 1 && c.microbatches <= max_microbatches, where, "microbatches", "in [1, 1048576]",
          str(c.microbatches));
  require(std::int64_t{c.ranks} * c.microbatches <= max_work, where, "ranks * microbatches",
          "<= 2^24 (the schedule holds O(ranks * microbatches) actions)",
          fp8moe::detail::concat(std::int64_t{c.ranks} * c.microbatches));
}

/// A linear pipeline: chunk s = stage s on rank s, one chain of M micro-batches.
inline schedule linear_skeleton(std::string name, schedule_config const& c) {
  schedule s;
  s.name = std::move(name);
  s.ranks = c.ranks;
  s.microbatches = c.microbatches;
  s.stages = c.ranks;
  chain ch{{}, c.microbatches, 0};
  for (int k = 0; k < c.ranks; ++k) {
    s.chunk_rank.push_back(k);
    s.chunk_stage.push_back(k);
    ch.chunks.push_back(k);
  }
  s.chains.push_back(ch);
  s.actions.resize(c.ranks);
  return s;
}

/// Per-rank emitter shared by the zero-bubble style generators: tracks per-chunk forward/backward
/// micro-batch counters and the FIFO of deferred weight-gradient work (DualPipe's WeightGradStore).
struct emitter {
  std::vector<action>& out;
  std::map<int, int> fwd, bwd;
  std::deque<std::pair<int, int>> fifo;

  void f(int chunk) { out.push_back({op::f, chunk, fwd[chunk]++}); }
  void b(int chunk, bool zero_bubble) {
    int const mb = bwd[chunk]++;
    out.push_back({zero_bubble ? op::i : op::b, chunk, mb});
    if (zero_bubble) fifo.emplace_back(chunk, mb);
  }
  void w() {
    require(!fifo.empty(), "fp8moe::pipeline", "weight-gradient FIFO", "non-empty at W", "empty");
    auto [chunk, mb] = fifo.front();
    fifo.pop_front();
    out.push_back({op::w, chunk, mb});
  }
  void fb(int fchunk, int bchunk) {
    int const fm = fwd[fchunk]++;
    int const bm = bwd[bchunk]++;
    out.push_back({op::fb, fchunk, fm, bchunk, bm});
  }
};

/// ZB-H1/ZB-H2 hand-crafted order for one rank: `warmup` forwards, then per micro-batch F (while any
/// left), I, and one deferred W whenever more than `defer` are pending; the tail drains the FIFO.
inline void zero_bubble_rank(std::vector<action>& out, int chunk, int m, int warmup, int defer) {
  emitter e{out, {}, {}, {}};
  warmup = std::min(warmup, m);
  for (int k = 0; k < warmup; ++k) e.f(chunk);
  for (int k = 0; k < m; ++k) {
    if (warmup + k < m) e.f(chunk);
    e.b(chunk, true);
    while (static_cast<int>(e.fifo.size()) > defer) e.w();
  }
  while (!e.fifo.empty()) e.w();
}

/// The 8-step DualPipe / DualPipeV control flow for one rank (deepseek-ai/DualPipe `step()`), with
/// phase 0 = the direction whose micro-batches reach this rank first.
///   h      = min(r, PP-1-r) (DualPipe) or r (V);  H = PP/2 (DualPipe) or ranks (V)
///   half_m = micro-batches per direction;  special = middle rank (DualPipe) or last rank (V)
inline void dualpipe_rank(std::vector<action>& out, int chunk0, int chunk1, int h, int H, int half_m,
                          bool special) {
  emitter e{out, {}, {}, {}};
  int const c[2] = {chunk0, chunk1};
  // Step 1: nF0
  for (int i = 0; i < 2 * (H - h - 1); ++i) e.f(c[0]);
  // Step 2: nF0F1
  for (int i = 0; i < h + 1; ++i) {
    e.f(c[0]);
    e.f(c[1]);
  }
  // Step 3: nB1W1F1 (zero bubble)
  for (int i = 0; i < H - h - 1; ++i) {
    e.b(c[1], true);
    e.w();
    e.f(c[1]);
  }
  // Step 4 (main): nF0B1F1B0. The special rank's first pair is not overlapped.
  int const step4 = half_m - 2 * H + h + 1;
  for (int i = 0; i < step4; ++i) {
    if (i == 0 && special) {
      e.f(c[0]);
      e.b(c[1], false);
    } else {
      e.fb(c[0], c[1]);
    }
    e.fb(c[1], c[0]);
  }
  // Step 5: nB1F1B0
  for (int i = 0; i < H - h - 1; ++i) {
    e.b(c[1], false);
    e.fb(c[1], c[0]);
  }
  // Step 6: nB1B0; the second half of the chunks use zero bubble
  int const step6 = h + 1;
  bool zb = false;
  for (int i = 0; i < step6; ++i) {
    if (i == step6 / 2 && h % 2 == 1) zb = true;
    e.b(c[1], zb);
    if (i == step6 / 2 && h % 2 == 0) zb = true;
    e.b(c[0], zb);
  }
  // Step 7: nWB0 (zero bubble)
  for (int i = 0; i < H - h - 1; ++i) {
    e.w();
    e.b(c[0], true);
  }
  // Step 8: nW
  for (int i = 0; i < h + 1; ++i) e.w();
  require(e.fifo.empty(), "fp8moe::pipeline::dualpipe", "weight-gradient FIFO", "empty after step 8",
          str(static_cast<int>(e.fifo.size())) + " left");
}

inline schedule finish(schedule s, bool communication);

}  // namespace detail

namespace detail {
inline schedule finish(schedule s, bool communication) {
  if (communication) add_communication(s);
  return s;
}
}  // namespace detail

/// GPipe: all forwards, then all (full) backwards in micro-batch order.
inline schedule gpipe(schedule_config const& c) {
  detail::check_common("fp8moe::pipeline::gpipe", c);
  auto s = detail::linear_skeleton("gpipe", c);
  for (int r = 0; r < c.ranks; ++r) {
    for (int j = 0; j < c.microbatches; ++j) s.actions[r].push_back({op::f, r, j});
    for (int j = 0; j < c.microbatches; ++j) s.actions[r].push_back({op::b, r, j});
  }
  return detail::finish(std::move(s), c.communication);
}

/// 1F1B (PipeDream-flush / Megatron): PP-1-r warm-up forwards, steady F,B pairs, cool-down backwards.
inline schedule one_f_one_b(schedule_config const& c) {
  detail::check_common("fp8moe::pipeline::one_f_one_b", c);
  auto s = detail::linear_skeleton("1f1b", c);
  int const m = c.microbatches;
  for (int r = 0; r < c.ranks; ++r) {
    int const warmup = std::min(c.ranks - 1 - r, m);
    auto& a = s.actions[r];
    for (int j = 0; j < warmup; ++j) a.push_back({op::f, r, j});
    for (int k = 0; k < m - warmup; ++k) {
      a.push_back({op::f, r, warmup + k});
      a.push_back({op::b, r, k});
    }
    for (int k = m - warmup; k < m; ++k) a.push_back({op::b, r, k});
  }
  return detail::finish(std::move(s), c.communication);
}

/// ZB-H1 (Qi et al., Zero Bubble PP, §3.1): the 1F1B order with the backward split into I and W; rank r
/// keeps up to r weight-gradient passes deferred, so input gradients travel back without waiting for
/// W, and the deferred W fill the cool-down where 1F1B idles. Same peak activations as 1F1B (PP).
inline schedule zb_h1(schedule_config const& c) {
  detail::check_common("fp8moe::pipeline::zb_h1", c);
  auto s = detail::linear_skeleton("zb-h1", c);
  for (int r = 0; r < c.ranks; ++r)
    detail::zero_bubble_rank(s.actions[r], r, c.microbatches, c.ranks - 1 - r, r);
  return detail::finish(std::move(s), c.communication);
}

/// ZB-H2 (Qi et al., §3.1): 2(PP-1-r)+1 forwards before the first I fill the bubble ahead of it,
/// and rank r defers up to 2r W passes to its tail (the "parallelogram"); peak activations 2PP-1.
inline schedule zb_h2(schedule_config const& c) {
  detail::check_common("fp8moe::pipeline::zb_h2", c);
  auto s = detail::linear_skeleton("zb-h2", c);
  for (int r = 0; r < c.ranks; ++r)
    detail::zero_bubble_rank(s.actions[r], r, c.microbatches, 2 * (c.ranks - 1 - r), 2 * r);
  return detail::finish(std::move(s), c.communication);
}

/// DualPipe (DeepSeek-V3 §3.2.1; deepseek-ai/DualPipe): PP ranks, micro-batches fed from both ends.
/// Chunk r = stage r on rank r (direction 0); chunk PP+k = stage k on rank PP-1-k (direction 1).
/// Requires PP even, M even and M >= 2·PP (the upstream asserts).
inline schedule dualpipe(schedule_config const& c) {
  constexpr auto where = "fp8moe::pipeline::dualpipe";
  detail::check_common(where, c);
  int const pp = c.ranks, m = c.microbatches;
  require(pp % 2 == 0, where, "ranks", "an even number of pipeline ranks (PP even)", detail::str(pp));
  require(m % 2 == 0, where, "microbatches", "an even number (half per direction)", detail::str(m));
  require(m >= 2 * pp, where, "microbatches", fp8moe::detail::concat(">= 2*ranks = ", 2 * pp),
          detail::str(m));
  schedule s;
  s.name = "dualpipe";
  s.ranks = pp;
  s.microbatches = m;
  s.stages = pp;
  s.chunk_rank.resize(2 * pp);
  s.chunk_stage.resize(2 * pp);
  chain d0{{}, m / 2, 0}, d1{{}, m / 2, m / 2};
  for (int k = 0; k < pp; ++k) {
    s.chunk_rank[k] = k;
    s.chunk_stage[k] = k;
    s.chunk_rank[pp + k] = pp - 1 - k;
    s.chunk_stage[pp + k] = k;
    d0.chunks.push_back(k);
    d1.chunks.push_back(pp + k);
  }
  s.chains = {d0, d1};
  s.actions.resize(pp);
  for (int r = 0; r < pp; ++r) {
    bool const second_half = r >= pp / 2;
    int const dir0 = r, dir1 = pp + (pp - 1 - r);  // this rank's chunk of direction 0 / 1
    int const h = std::min(r, pp - 1 - r);
    bool const middle = r == pp / 2 - 1 || r == pp / 2;
    detail::dualpipe_rank(s.actions[r], second_half ? dir1 : dir0, second_half ? dir0 : dir1, h, pp / 2,
                          m / 2, middle);
  }
  return detail::finish(std::move(s), c.communication);
}

/// DualPipeV ("cut-in-half" DualPipe): `ranks` devices hold 2·ranks stages in a V — rank r holds
/// stages r and 2·ranks-1-r; the turnaround on the last rank is local. Requires M >= 2·ranks.
/// One rank is allowed (all transfers local).
inline schedule dualpipe_v(schedule_config const& c) {
  constexpr auto where = "fp8moe::pipeline::dualpipe_v";
  detail::check_common(where, c);
  int const n = c.ranks, m = c.microbatches;
  require(m >= 2 * n, where, "microbatches",
          fp8moe::detail::concat(">= 2*ranks = ", 2 * n, " (the number of stages)"), detail::str(m));
  schedule s;
  s.name = "dualpipev";
  s.ranks = n;
  s.microbatches = m;
  s.stages = 2 * n;
  chain ch{{}, m, 0};
  for (int k = 0; k < 2 * n; ++k) {
    s.chunk_rank.push_back(k < n ? k : 2 * n - 1 - k);
    s.chunk_stage.push_back(k);
    ch.chunks.push_back(k);
  }
  s.chains = {ch};
  s.actions.resize(n);
  for (int r = 0; r < n; ++r) detail::dualpipe_rank(s.actions[r], r, 2 * n - 1 - r, r, n, m, r == n - 1);
  return detail::finish(std::move(s), c.communication);
}

/// Generator by name: "gpipe", "1f1b", "zb-h1", "zb-h2", "dualpipe", "dualpipev".
inline schedule make_schedule(std::string_view name, schedule_config const& c) {
  if (name == "gpipe") return gpipe(c);
  if (name == "1f1b") return one_f_one_b(c);
  if (name == "zb-h1" || name == "zb1p") return zb_h1(c);
  if (name == "zb-h2" || name == "zb2p") return zb_h2(c);
  if (name == "dualpipe") return dualpipe(c);
  if (name == "dualpipev" || name == "dualpipe-v") return dualpipe_v(c);
  require(false, "fp8moe::pipeline::make_schedule", "name",
          "gpipe, 1f1b, zb-h1, zb-h2, dualpipe or dualpipev", std::string(name));
  return {};
}

}  // namespace fp8moe::pipeline
