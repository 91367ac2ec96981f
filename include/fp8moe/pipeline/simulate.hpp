// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Timing simulation of a schedule: each rank runs its list in order; a compute starts when the rank
// is free and its inputs have arrived (producer end + `comm` latency across ranks). Reports per-rank
// timelines, the bubble (max over ranks of makespan - busy), peak live activations and parameter
// copies. Transfers cost nothing on the rank itself (posted asynchronously). Throws on invalid schedules.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/pipeline/schedule.hpp"
#include "fp8moe/pipeline/validate.hpp"

namespace fp8moe::pipeline {

/// Per-action costs (any time unit). b is the *full* backward; i (input-gradient only) defaults to
/// b - w; fb (an overlapped forward/backward pair) defaults to f + b (no overlap gain).
struct costs {
  double f = 1;
  double b = 2;
  double w = 1;
  double fb = -1;
  double i = -1;
  double comm = 0;  ///< latency of one point-to-point transfer

  constexpr double input_only() const { return i >= 0 ? i : b - w; }
  constexpr double overlapped() const { return fb >= 0 ? fb : f + b; }
  constexpr double of(op o) const {
    switch (o) {
      case op::f:
        return f;
      case op::b:
        return b;
      case op::i:
        return input_only();
      case op::w:
        return w;
      case op::fb:
        return overlapped();
      default:
        return 0;
    }
  }
};

struct timed_action {
  action a;
  double start = 0, end = 0;
};

/// The simulated run. `ranks[r]` holds rank r's compute actions with start/end times.
struct timeline {
  schedule sched;
  costs cost;
  std::vector<std::vector<timed_action>> ranks;
  double makespan = 0;
  std::vector<double> busy;           ///< (ranks) summed compute time
  std::vector<double> idle;           ///< (ranks) makespan - busy
  double bubble = 0;                  ///< max over ranks of idle
  std::vector<double> span_idle;      ///< (ranks) idle between the rank's own first start and last end
  double span_bubble = 0;             ///< max over ranks of span_idle (the "parallelogram" measure)
  std::vector<int> peak_activations;  ///< (ranks) peak live chunk-activations (F allocates, B/I frees)
  int max_peak_activations = 0;
  int parameter_copies = 0;  ///< max chunks (stage copies) held by one rank
};

/// Simulates `s` (validated first: an invalid or deadlocking schedule throws fp8moe::error, and so do
/// costs that are NaN, infinite or negative; fb < 0 and i < 0 select the defaults).
inline timeline simulate(schedule const& s, costs const& c) {
  constexpr auto where = "fp8moe::pipeline::simulate";
  // isfinite first: NaN fails every comparison, and an infinite cost would give makespan inf, bubble 0.
  auto const all_finite = std::isfinite(c.f) && std::isfinite(c.b) && std::isfinite(c.w) &&
                          std::isfinite(c.fb) && std::isfinite(c.i) && std::isfinite(c.comm);
  require(
      all_finite, where, "costs", "finite f, b, w, fb, i, comm",
      fp8moe::detail::concat("f=", c.f, " b=", c.b, " w=", c.w, " fb=", c.fb, " i=", c.i, " comm=", c.comm));
  require(c.f >= 0 && c.b >= 0 && c.w >= 0 && c.comm >= 0, where, "costs", "non-negative f, b, w, comm",
          fp8moe::detail::concat("f=", c.f, " b=", c.b, " w=", c.w, " comm=", c.comm));
  require(c.input_only() >= 0, where, "costs", "i = b - w >= 0 (or an explicit i)");
  validate(s);
  int const R = s.ranks;
  detail::work_index w;
  w.link(s);
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < static_cast<int>(s.actions[r].size()); ++x) {
      auto const& a = s.actions[r][x];
      if (a.kind == op::f || a.kind == op::fb) w.fwd.set(a.chunk, a.mb, {r, x});
      if (a.kind == op::b || a.kind == op::i) w.bwd_input.set(a.chunk, a.mb, {r, x});
      if (a.kind == op::fb) w.bwd_input.set(a.chunk2, a.mb2, {r, x});
    }
  std::vector<std::vector<double>> end(R);
  std::vector<std::vector<char>> done(R);
  for (int r = 0; r < R; ++r) {
    end[r].assign(s.actions[r].size(), 0);
    done[r].assign(s.actions[r].size(), 0);
  }
  timeline t;
  t.sched = s;
  t.cost = c;
  t.ranks.resize(R);
  t.busy.assign(R, 0);
  bool const comm = detail::has_transfers(s);
  std::vector<std::vector<std::vector<detail::dependency>>> all_deps(R);
  for (int r = 0; r < R; ++r)
    for (auto const& a : s.actions[r]) {
      all_deps[r].push_back(detail::dependencies(s, w, r, a));
      if (comm) detail::route_through_sends(s, w, all_deps[r].back());
    }
  std::vector<int> pc(R, 0);
  std::vector<double> clock(R, 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < R; ++r)
      while (pc[r] < static_cast<int>(s.actions[r].size())) {
        auto const& a = s.actions[r][pc[r]];
        double ready = clock[r];
        bool ok = true;
        for (auto const& d : all_deps[r][pc[r]]) {
          if (!done[d.rank][d.index]) {
            ok = false;
            break;
          }
          ready = std::max(ready, end[d.rank][d.index] + (d.remote ? c.comm : 0.0));
        }
        if (!ok) break;
        if (is_compute(a.kind)) {
          double const dt = c.of(a.kind);
          t.ranks[r].push_back({a, ready, ready + dt});
          clock[r] = ready + dt;
          t.busy[r] += dt;
        }
        end[r][pc[r]] = clock[r];
        done[r][pc[r]++] = 1;
        progress = true;
      }
  }
  for (int r = 0; r < R; ++r) t.makespan = std::max(t.makespan, clock[r]);
  t.idle.resize(R);
  t.peak_activations.assign(R, 0);
  for (int r = 0; r < R; ++r) {
    t.idle[r] = t.makespan - t.busy[r];
    t.bubble = std::max(t.bubble, t.idle[r]);
    double const first = t.ranks[r].empty() ? 0 : t.ranks[r].front().start;
    t.span_idle.push_back(clock[r] - first - t.busy[r]);
    t.span_bubble = std::max(t.span_bubble, t.span_idle.back());
    int live = 0;
    for (auto const& a : s.actions[r]) {
      if (a.kind == op::f || a.kind == op::fb)
        t.peak_activations[r] = std::max(t.peak_activations[r], ++live);
      if (a.kind == op::b || a.kind == op::i || a.kind == op::fb) --live;
    }
    t.max_peak_activations = std::max(t.max_peak_activations, t.peak_activations[r]);
    t.parameter_copies = std::max(t.parameter_copies, static_cast<int>(s.rank_chunks(r).size()));
  }
  return t;
}

/// Published bubble formulas (DeepSeek-V3 Table 2; deepseek-ai/DualPipe README), in the `costs` units.
/// They are exact only in the regimes docs/pipeline.md states; elsewhere they are bounds or estimates.
namespace formula {
constexpr double one_f_one_b(int pp, costs const& c) {
  return (pp - 1) * (c.f + c.b);
}
constexpr double zb1p(int pp, costs const& c) {
  return (pp - 1) * (c.f + c.b - 2 * c.w);
}
constexpr double zb2p(int pp, costs const& c) {
  return (pp - 1) * (c.f + c.b - 3 * c.w);
}
/// DualPipe with PP ranks (and DualPipeV with PP/2 ranks): (PP/2 - 1)(F&B + B - 3W).
constexpr double dualpipe(int pp, costs const& c) {
  return (pp / 2 - 1) * (c.overlapped() + c.b - 3 * c.w);
}
}  // namespace formula

}  // namespace fp8moe::pipeline
