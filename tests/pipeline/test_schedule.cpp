// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Schedules: golden traces (DualPipe PP=4/M=8 and PP=8/M=20 from the reference report, DualPipeV 4 ranks /
// 10 micro-batches = PyTorch's dualpipev_4rank_10mb.csv), validation of every generator, the validator's
// error paths, the simulator against the published bubble formulas, printing and the SVG writer.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__)
#include <sys/resource.h>
#include <csignal>
#endif

#include "fp8moe/pipeline/pipeline.hpp"

namespace fp = fp8moe::pipeline;

namespace {

/// Translates the reference's DualPipe notation ("F0.3", "I1.0", "[F0.3+B1.1]", direction.micro-batch)
/// into this library's action strings for rank r of PP: direction 0 = chunk r, direction 1 = chunk
/// PP + (PP-1-r).
std::string from_reference(std::string const& trace, int r, int pp) {
  auto chunk_of = [&](char dir) { return dir == '0' ? r : pp + (pp - 1 - r); };
  std::istringstream in(trace);
  std::string tok, out;
  auto one = [&](std::string const& t) {  // "F0.3"
    auto const dot = t.find('.');
    return std::to_string(chunk_of(t[1])) + t[0] + t.substr(dot + 1);
  };
  while (in >> tok) {
    if (!out.empty()) out += ',';
    if (tok.front() == '[') {
      auto const plus = tok.find('+');
      std::string const f = tok.substr(1, plus - 1), b = tok.substr(plus + 1, tok.size() - plus - 2);
      out += "(" + one(f) + ";" + one(b) + ")OVERLAP_F_B";
    } else {
      out += one(tok);
    }
  }
  return out;
}

std::vector<std::string> lines(std::string const& table) {
  std::vector<std::string> v;
  std::istringstream in(table);
  for (std::string l; std::getline(in, l);) v.push_back(l);
  return v;
}

fp::schedule all_kinds(int kind, int pp, int m) {
  char const* names[] = {"gpipe", "1f1b", "zb-h1", "zb-h2", "dualpipe", "dualpipev"};
  return fp::make_schedule(names[kind], {.ranks = pp, .microbatches = m});
}

}  // namespace

TEST_CASE("golden: DualPipe PP=4, M=8 equals the reference trace") {
  // dualpipe.md §1.9 (re-run of deepseek-ai/DualPipe step()).
  std::vector<std::string> const ref = {
      "F0.0 F0.1 F0.2 F1.0 I1.0 W1.0 F1.1 [F0.3+B1.1] [F1.2+B0.0] B1.2 [F1.3+B0.1] B1.3 I0.2 W0.2 I0.3 W0.3",
      "F0.0 F1.0 F0.1 F1.1 F0.2 B1.0 [F1.2+B0.0] [F0.3+B1.1] [F1.3+B0.1] B1.2 B0.2 I1.3 I0.3 W1.3 W0.3",
      "F1.0 F0.0 F1.1 F0.1 F1.2 B0.0 [F0.2+B1.0] [F1.3+B0.1] [F0.3+B1.1] B0.2 B1.2 I0.3 I1.3 W0.3 W1.3",
      "F1.0 F1.1 F1.2 F0.0 I0.0 W0.0 F0.1 [F1.3+B0.1] [F0.2+B1.0] B0.2 [F0.3+B1.1] B0.3 I1.2 W1.2 I1.3 W1.3"};
  auto const s = fp::dualpipe({.ranks = 4, .microbatches = 8, .communication = false});
  auto const got = lines(fp::to_table(s));
  REQUIRE(got.size() == 4);
  for (int r = 0; r < 4; ++r) CHECK(got[r] == from_reference(ref[r], r, 4));
  // The lowered schedule has the same compute order.
  auto const lowered = fp::dualpipe({.ranks = 4, .microbatches = 8});
  for (int r = 0; r < 4; ++r) CHECK(fp::compute_actions(lowered, r) == s.actions[r]);
}

TEST_CASE("golden: DualPipe PP=8, M=20 equals the README figure trace (ranks 0, 3, 4, 7)") {
  std::string const r0 =
      "F0.0 F0.1 F0.2 F0.3 F0.4 F0.5 F0.6 F1.0 I1.0 W1.0 F1.1 I1.1 W1.1 F1.2 I1.2 W1.2 F1.3 [F0.7+B1.3] "
      "[F1.4+B0.0] [F0.8+B1.4] [F1.5+B0.1] [F0.9+B1.5] [F1.6+B0.2] B1.6 [F1.7+B0.3] B1.7 [F1.8+B0.4] B1.8 "
      "[F1.9+B0.5] B1.9 I0.6 W0.6 I0.7 W0.7 I0.8 W0.8 I0.9 W0.9";
  std::string const r3 =
      "F0.0 F1.0 F0.1 F1.1 F0.2 F1.2 F0.3 F1.3 F0.4 B1.0 [F1.4+B0.0] [F0.5+B1.1] [F1.5+B0.1] [F0.6+B1.2] "
      "[F1.6+B0.2] [F0.7+B1.3] [F1.7+B0.3] [F0.8+B1.4] [F1.8+B0.4] [F0.9+B1.5] [F1.9+B0.5] B1.6 B0.6 B1.7 "
      "B0.7 "
      "I1.8 I0.8 I1.9 I0.9 W1.8 W0.8 W1.9 W0.9";
  std::string const r4 =
      "F1.0 F0.0 F1.1 F0.1 F1.2 F0.2 F1.3 F0.3 F1.4 B0.0 [F0.4+B1.0] [F1.5+B0.1] [F0.5+B1.1] [F1.6+B0.2] "
      "[F0.6+B1.2] [F1.7+B0.3] [F0.7+B1.3] [F1.8+B0.4] [F0.8+B1.4] [F1.9+B0.5] [F0.9+B1.5] B0.6 B1.6 B0.7 "
      "B1.7 "
      "I0.8 I1.8 I0.9 I1.9 W0.8 W1.8 W0.9 W1.9";
  std::string const r7 =
      "F1.0 F1.1 F1.2 F1.3 F1.4 F1.5 F1.6 F0.0 I0.0 W0.0 F0.1 I0.1 W0.1 F0.2 I0.2 W0.2 F0.3 [F1.7+B0.3] "
      "[F0.4+B1.0] [F1.8+B0.4] [F0.5+B1.1] [F1.9+B0.5] [F0.6+B1.2] B0.6 [F0.7+B1.3] B0.7 [F0.8+B1.4] B0.8 "
      "[F0.9+B1.5] B0.9 I1.6 W1.6 I1.7 W1.7 I1.8 W1.8 I1.9 W1.9";
  auto const got =
      lines(fp::to_table(fp::dualpipe({.ranks = 8, .microbatches = 20, .communication = false})));
  REQUIRE(got.size() == 8);
  CHECK(got[0] == from_reference(r0, 0, 8));
  CHECK(got[3] == from_reference(r3, 3, 8));
  CHECK(got[4] == from_reference(r4, 4, 8));
  CHECK(got[7] == from_reference(r7, 7, 8));
}

TEST_CASE("golden: DualPipeV 4 ranks, 10 micro-batches equals PyTorch's dualpipev_4rank_10mb.csv") {
  // pytorch test/distributed/pipelining/artifacts/dualpipev_4rank_10mb.csv (stage ids: rank r holds r, 7-r).
  std::vector<std::string> const csv = {
      "0F0,0F1,0F2,0F3,0F4,0F5,0F6,7F0,7I0,7W0,7F1,7I1,7W1,7F2,7I2,7W2,7F3,(0F7;7B3)OVERLAP_F_B,(7F4;0B0)"
      "OVERLAP_F_B,"
      "(0F8;7B4)OVERLAP_F_B,(7F5;0B1)OVERLAP_F_B,(0F9;7B5)OVERLAP_F_B,(7F6;0B2)OVERLAP_F_B,7B6,(7F7;0B3)"
      "OVERLAP_F_B,"
      "7B7,(7F8;0B4)OVERLAP_F_B,7B8,(7F9;0B5)OVERLAP_F_B,7B9,0I6,0W6,0I7,0W7,0I8,0W8,0I9,0W9",
      "1F0,1F1,1F2,1F3,1F4,6F0,1F5,6F1,6I0,6W0,6F2,6I1,6W1,6F3,(1F6;6B2)OVERLAP_F_B,(6F4;1B0)OVERLAP_F_B,"
      "(1F7;6B3)OVERLAP_F_B,(6F5;1B1)OVERLAP_F_B,(1F8;6B4)OVERLAP_F_B,(6F6;1B2)OVERLAP_F_B,(1F9;6B5)OVERLAP_"
      "F_B,"
      "(6F7;1B3)OVERLAP_F_B,6B6,(6F8;1B4)OVERLAP_F_B,6B7,(6F9;1B5)OVERLAP_F_B,6B8,1B6,6I9,1I7,6W9,1I8,1W7,"
      "1I9,1W8,1W9",
      "2F0,2F1,2F2,5F0,2F3,5F1,2F4,5F2,5I0,5W0,5F3,(2F5;5B1)OVERLAP_F_B,(5F4;2B0)OVERLAP_F_B,(2F6;5B2)"
      "OVERLAP_F_B,"
      "(5F5;2B1)OVERLAP_F_B,(2F7;5B3)OVERLAP_F_B,(5F6;2B2)OVERLAP_F_B,(2F8;5B4)OVERLAP_F_B,(5F7;2B3)OVERLAP_"
      "F_B,"
      "(2F9;5B5)OVERLAP_F_B,(5F8;2B4)OVERLAP_F_B,5B6,(5F9;2B5)OVERLAP_F_B,5B7,2B6,5B8,2I7,5I9,2I8,2W7,2I9,"
      "5W9,2W8,2W9",
      "3F0,4F0,3F1,4F1,3F2,4F2,3F3,4F3,3F4,4B0,(4F4;3B0)OVERLAP_F_B,(3F5;4B1)OVERLAP_F_B,(4F5;3B1)OVERLAP_F_"
      "B,"
      "(3F6;4B2)OVERLAP_F_B,(4F6;3B2)OVERLAP_F_B,(3F7;4B3)OVERLAP_F_B,(4F7;3B3)OVERLAP_F_B,(3F8;4B4)OVERLAP_"
      "F_B,"
      "(4F8;3B4)OVERLAP_F_B,(3F9;4B5)OVERLAP_F_B,(4F9;3B5)OVERLAP_F_B,4B6,3B6,4B7,3B7,4I8,3I8,4I9,3I9,4W8,"
      "3W8,4W9,3W9"};
  auto const s = fp::dualpipe_v({.ranks = 4, .microbatches = 10});
  auto const got = lines(fp::to_table(s));
  REQUIRE(got.size() == 4);
  for (int r = 0; r < 4; ++r) CHECK(got[r] == csv[r]);
  CHECK(s.chunk_rank == std::vector<int>{0, 1, 2, 3, 3, 2, 1, 0});  // the V placement
}

TEST_CASE("every generator's output validates (grid of PP and M)") {
  for (int kind = 0; kind < 6; ++kind)
    for (int pp : {1, 2, 3, 4, 6, 8}) {
      if (kind == 4 && pp % 2) continue;  // DualPipe: PP even
      for (int m : {2 * pp, 2 * pp + 2, 3 * pp + 1, 6 * pp, 20}) {
        if (kind == 4 && (m % 2 || m < 2 * pp)) continue;
        if (kind == 5 && m < 2 * pp) continue;
        CAPTURE(kind);
        CAPTURE(pp);
        CAPTURE(m);
        auto const s = all_kinds(kind, pp, m);
        auto const rep = fp::check(s);
        CHECK_MESSAGE(rep.ok, rep.error);
        // Counts: each chunk sees every micro-batch of its chain once forward and once backward.
        int fwd = 0, bwd = 0, in = 0, wt = 0;
        for (auto const& v : s.actions)
          for (auto const& a : v) {
            fwd += a.kind == fp::op::f || a.kind == fp::op::fb;
            bwd += a.kind == fp::op::b || a.kind == fp::op::fb;
            in += a.kind == fp::op::i;
            wt += a.kind == fp::op::w;
          }
        int expect = 0;
        for (auto const& c : s.chains) expect += static_cast<int>(c.chunks.size()) * c.microbatches;
        CHECK(fwd == expect);
        CHECK(bwd + in == expect);
        CHECK(in == wt);
        // The compute-only form validates too.
        auto const bare = fp::make_schedule(s.name, {.ranks = pp, .microbatches = m, .communication = false});
        CHECK(fp::check(bare).ok);
      }
    }
}

TEST_CASE("DualPipe (below 2·PP) and DualPipeV (below 2·ranks) reject with the failing constraint") {
  auto msg = [](auto&& f) -> std::string {
    try {
      f();
    } catch (fp8moe::error const& e) {
      CHECK(e.code() == fp8moe::errc::invalid_argument);
      return e.what();
    }
    return "no error";
  };
  CHECK(msg([] { fp::dualpipe({.ranks = 3, .microbatches = 12}); }).find("PP even") != std::string::npos);
  CHECK(msg([] { fp::dualpipe({.ranks = 4, .microbatches = 9}); }).find("an even number") !=
        std::string::npos);
  CHECK(msg([] { fp::dualpipe({.ranks = 4, .microbatches = 6}); }).find(">= 2*ranks = 8") !=
        std::string::npos);
  CHECK(msg([] { fp::dualpipe_v({.ranks = 4, .microbatches = 7}); }).find(">= 2*ranks = 8") !=
        std::string::npos);
  CHECK(msg([] { fp::one_f_one_b({.ranks = 0, .microbatches = 4}); }).find("'ranks'") != std::string::npos);
  CHECK(msg([] { fp::gpipe({.ranks = 2, .microbatches = 0}); }).find("'microbatches'") != std::string::npos);
  CHECK(msg([] { fp::zb_h1({.ranks = -1, .microbatches = 4}); }).find("'ranks'") != std::string::npos);
  CHECK(msg([] { fp::zb_h2({.ranks = 2, .microbatches = -3}); }).find("'microbatches'") != std::string::npos);
  CHECK(msg([] { fp::make_schedule("chimera", {.ranks = 2, .microbatches = 4}); }).find("'name'") !=
        std::string::npos);
  // One rank is allowed for DualPipeV; every transfer is then local.
  auto const one = fp::dualpipe_v({.ranks = 1, .microbatches = 2});
  CHECK(fp::check(one).ok);
  for (auto const& a : one.actions[0]) CHECK(fp::is_compute(a.kind));
}

TEST_CASE("validator: each rule fires on a broken schedule") {
  auto const good = fp::one_f_one_b({.ranks = 2, .microbatches = 3});
  REQUIRE(fp::check(good).ok);
  auto find = [](std::vector<fp::action> const& v, fp::op k, int mb) {
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i].kind == k && v[i].mb == mb) return static_cast<long>(i);
    return -1L;
  };
  auto err = [](fp::schedule const& s) { return fp::check(s).error; };

  {  // receives in the wrong order: hoist RECV_F1 ahead of RECV_F0 (both still precede their use)
    auto s = good;
    auto& v = s.actions[1];
    auto const b = find(v, fp::op::recv_f, 1);
    REQUIRE(b >= 0);
    auto const moved = v[b];
    v.erase(v.begin() + b);
    v.insert(v.begin(), moved);
    auto const e = err(s);
    CHECK(e.find("order differs") != std::string::npos);
    CHECK_THROWS_AS(fp::validate(s), fp8moe::error);
  }
  {  // a missing send
    auto s = good;
    auto& v = s.actions[0];
    v.erase(v.begin() + find(v, fp::op::send_f, 2));
    CHECK(err(s).find("receives") != std::string::npos);
  }
  {  // backward before its forward on the same rank
    auto s = good;
    auto& v = s.actions[1];  // last rank: F0 B0 F1 B1 ...
    std::swap(v[find(v, fp::op::f, 0)], v[find(v, fp::op::b, 0)]);
    CHECK(err(s).find("before its input") != std::string::npos);
  }
  {  // W before I
    auto s = fp::zb_h1({.ranks = 2, .microbatches = 3});
    auto& v = s.actions[1];
    std::swap(v[find(v, fp::op::i, 0)], v[find(v, fp::op::w, 0)]);
    CHECK(err(s).find("before its input") != std::string::npos);
  }
  {  // a compute with no receive before it
    auto s = good;
    auto& v = s.actions[1];
    v.erase(v.begin() + find(v, fp::op::recv_f, 0));
    CHECK(err(s).find("no earlier RECV_F") != std::string::npos);
  }
  {  // duplicate forward
    auto s = good;
    s.actions[0].push_back({fp::op::f, 0, 0});
    CHECK(err(s).find("duplicate forward") != std::string::npos);
  }
  {  // missing backward
    auto s = fp::one_f_one_b({.ranks = 1, .microbatches = 2});
    s.actions[0].pop_back();
    CHECK(err(s).find("missing backward") != std::string::npos);
  }
  {  // chunk on the wrong rank
    auto s = good;
    s.actions[0][0].chunk = 1;
    CHECK(err(s).find("not placed on this rank") != std::string::npos);
  }
  {  // deadlock: rank 0 sends its only activation after waiting for the gradient that needs it
    auto s = fp::one_f_one_b({.ranks = 2, .microbatches = 1});
    auto& v = s.actions[0];  // F0 SEND_F0 RECV_B0 B0
    REQUIRE(v.size() == 4);
    std::rotate(v.begin() + 1, v.begin() + 2, v.end());  // F0 RECV_B0 B0 SEND_F0
    CHECK(err(s).find("deadlock") != std::string::npos);
    CHECK_THROWS_AS(fp::simulate(s, {}), fp8moe::error);
  }
  {  // malformed structure
    auto s = good;
    s.actions.pop_back();
    CHECK(err(s).find("one list per rank") != std::string::npos);
    s = good;
    s.chunk_rank[1] = 5;
    CHECK(err(s).find("invalid rank") != std::string::npos);
    s = good;
    s.actions[1][0].peer = 1;  // a transfer to itself
    CHECK(err(s).find("invalid peer") != std::string::npos);
  }
}

TEST_CASE("add_communication: every pair's send and receive sequences agree; V turnaround stays local") {
  auto s = fp::dualpipe_v({.ranks = 3, .microbatches = 8, .communication = false});
  fp::add_communication(s);
  REQUIRE(fp::check(s).ok);
  // The last rank holds chunks 2 and 3: the hand-off between them has no transfer.
  for (auto const& a : s.actions[2])
    if (fp::is_send(a.kind)) CHECK(!(a.chunk == 2 && a.kind == fp::op::send_f));
  // Re-lowering is idempotent.
  auto again = s;
  fp::add_communication(again);
  CHECK(again.actions == s.actions);
}

TEST_CASE("lowerings: all keep pair order and pass the async model; rendezvous also passes stream groups") {
  char const* names[] = {"gpipe", "1f1b", "zb-h1", "zb-h2", "dualpipe", "dualpipev"};
  int runs = 0, delay_ok = 0;
  for (auto name : names)
    for (int pp : {1, 2, 3, 4, 6, 8})
      for (int m : {2 * pp, 2 * pp + 1, 3 * pp + 1, 20}) {
        fp::schedule bare;
        try {
          bare = fp::make_schedule(name, {.ranks = pp, .microbatches = m, .communication = false});
        } catch (fp8moe::error const&) {
          continue;
        }
        CAPTURE(name);
        CAPTURE(pp);
        CAPTURE(m);
        for (auto how : {fp::lowering::delay_sends, fp::lowering::hoist_receives, fp::lowering::rendezvous}) {
          auto s = bare;
          fp::add_communication(s, how);
          auto const rep = fp::check(s);
          CHECK_MESSAGE(rep.ok, rep.error);
          for (int r = 0; r < s.ranks; ++r) CHECK(fp::compute_actions(s, r) == bare.actions[r]);
          if (how == fp::lowering::rendezvous) {
            auto const g = fp::check(s, fp::transfer_model::stream_groups);
            CHECK_MESSAGE(g.ok, g.error);
          }
          if (how == fp::lowering::delay_sends)
            delay_ok += fp::check(s, fp::transfer_model::stream_groups).ok;
        }
        ++runs;
      }
  CHECK(runs > 100);
  CHECK(delay_ok > runs * 3 / 4);  // the rest (DualPipe PP=8, DualPipeV >= 4 ranks) need rendezvous
  // Everything but DualPipe/DualPipeV is stream-group safe with the default lowering.
  for (auto name : {"gpipe", "1f1b", "zb-h1", "zb-h2"})
    CHECK(fp::check(fp::make_schedule(name, {.ranks = 8, .microbatches = 20}),
                    fp::transfer_model::stream_groups)
              .ok);
  CHECK(fp::check(fp::dualpipe({.ranks = 6, .microbatches = 12}), fp::transfer_model::stream_groups).ok);
}

TEST_CASE(
    "stream-group model: a cross-ordered pair hangs with serialized groups but not with async transfers") {
  // ZB-H2 on 2 ranks, PyTorch-style lowering (sends at once, receives hoisted): each rank's comm stream
  // reaches a transfer whose counterpart sits behind another transfer in the peer's stream, so both
  // serialized streams wait on each other; posted asynchronously they complete.
  auto s = fp::zb_h2({.ranks = 2, .microbatches = 6, .communication = false});
  fp::add_communication(s, fp::lowering::hoist_receives);
  CHECK(fp::check(s, fp::transfer_model::async).ok);
  auto const rep = fp::check(s, fp::transfer_model::stream_groups);
  CHECK(!rep.ok);
  CHECK(rep.error.find("deadlock with stream-ordered transfer groups") != std::string::npos);
  fp::add_communication(s, fp::lowering::rendezvous);
  CHECK(fp::check(s, fp::transfer_model::stream_groups).ok);
}

TEST_CASE("simulator: 1F1B bubble = (PP-1)(F+B) exactly, for any costs and M") {
  for (int pp : {2, 4, 8})
    for (int m : {pp, 2 * pp, 5 * pp})
      for (auto c : {fp::costs{.f = 1, .b = 2, .w = 1}, fp::costs{.f = 1.5, .b = 2.25, .w = 0.5},
                     fp::costs{.f = 2, .b = 3, .w = 1}}) {
        auto const t = fp::simulate(fp::one_f_one_b({.ranks = pp, .microbatches = m}), c);
        CHECK(t.bubble == doctest::Approx(fp::formula::one_f_one_b(pp, c)).epsilon(1e-12));
        CHECK(t.makespan == doctest::Approx((m + pp - 1) * (c.f + c.b)));
        CHECK(t.max_peak_activations == std::min(pp, m));  // 1F1B: PP activations
        CHECK(t.parameter_copies == 1);
      }
}

TEST_CASE("simulator: ZB-H1 bubble = (PP-1)(F+B-2W) (ZB1P), ZB-H2 per-rank = (PP-1)(F+B-3W)") {
  // Exact where the input-gradient part is not shorter than W: I = B - W >= W (here F >= I as well).
  for (int pp : {2, 4, 8})
    for (auto c : {fp::costs{.f = 1, .b = 2, .w = 1}, fp::costs{.f = 2, .b = 3, .w = 1},
                   fp::costs{.f = 1.5, .b = 2.5, .w = 1}}) {
      auto const h1 = fp::simulate(fp::zb_h1({.ranks = pp, .microbatches = 3 * pp}), c);
      CHECK(h1.bubble == doctest::Approx(fp::formula::zb1p(pp, c)));
      CHECK(h1.max_peak_activations == pp);  // same memory as 1F1B
      auto const h2 = fp::simulate(fp::zb_h2({.ranks = pp, .microbatches = 3 * pp}), c);
      // ZB-H2 is a parallelogram: each rank's own span has (PP-1)(F+B-3W) idle.
      CHECK(h2.span_bubble == doctest::Approx(fp::formula::zb2p(pp, c)));
      CHECK(h2.max_peak_activations == 2 * pp - 1);
    }
}

TEST_CASE(
    "simulator: DualPipe bubble = (PP/2-1)(F&B+B-3W) where exact, a bound where not; PP+1 activations") {
  // Exact regime: F = B - W and W <= F (dualpipe.md §1.11).
  for (int pp : {2, 4, 6, 8, 16})
    for (int m : {2 * pp, 2 * pp + 2, 6 * pp}) {
      if (pp == 16 && m == 6 * pp) continue;  // keep the test fast; M-independence is checked below
      auto const dp = fp::dualpipe({.ranks = pp, .microbatches = m});
      auto const dv = fp::dualpipe_v({.ranks = pp / 2, .microbatches = m / 2});
      for (auto c : {fp::costs{.f = 1, .b = 2, .w = 1, .fb = 3}, fp::costs{.f = 1, .b = 2, .w = 1, .fb = 2.5},
                     fp::costs{.f = 2, .b = 3, .w = 1, .fb = 4}}) {
        CAPTURE(pp);
        CAPTURE(m);
        auto const t = fp::simulate(dp, c);
        CHECK(t.bubble == doctest::Approx(fp::formula::dualpipe(pp, c)));
        CHECK(t.max_peak_activations == pp + 1);
        CHECK(t.parameter_copies == 2);
        // Cut in half: DualPipeV on PP/2 ranks with M/2 micro-batches has the same makespan and bubble.
        auto const v = fp::simulate(dv, c);
        CHECK(v.makespan == doctest::Approx(t.makespan));
        CHECK(v.bubble == doctest::Approx(t.bubble));
        CHECK(v.max_peak_activations == pp + 1);
      }
    }
  // Upper bound when W <= F < B - W: idle never exceeds the formula and is strictly below it here.
  fp::costs const c{.f = 1, .b = 3, .w = 1, .fb = 3.5};
  auto const t = fp::simulate(fp::dualpipe({.ranks = 8, .microbatches = 20}), c);
  CHECK(t.bubble <= fp::formula::dualpipe(8, c) + 1e-12);
  CHECK(t.bubble < fp::formula::dualpipe(8, c) - 0.5);
  // Outside the regime (W > F) the formula underestimates the idle time.
  fp::costs const d{.f = 1, .b = 3, .w = 2, .fb = 3.5};
  auto const u = fp::simulate(fp::dualpipe({.ranks = 8, .microbatches = 20}), d);
  CHECK(u.bubble > fp::formula::dualpipe(8, d));
  // Idle does not grow with M.
  auto const big = fp::simulate(fp::dualpipe({.ranks = 8, .microbatches = 64}),
                                fp::costs{.f = 1, .b = 2, .w = 1, .fb = 3});
  CHECK(big.bubble == doctest::Approx(6.0));
}

TEST_CASE("simulator: communication latency delays cross-rank inputs only") {
  fp::costs const c{.f = 1, .b = 2, .w = 1, .comm = 0.5};
  auto const t = fp::simulate(fp::one_f_one_b({.ranks = 4, .microbatches = 8}), c);
  // The first forward reaches the last rank after 3 hops: start = 3 (F) + 3 * 0.5.
  CHECK(t.ranks[3].front().start == doctest::Approx(4.5));
  // GPipe: the forward wave and the backward wave each cross PP-1 links, so the bubble is
  // (PP-1)(F+B+2·comm) (rank 0 idles while both waves travel).
  auto const g = fp::simulate(fp::gpipe({.ranks = 4, .microbatches = 8}), c);
  CHECK(g.bubble == doctest::Approx(3 * (3 + 2 * 0.5)));
  // 1F1B pays at least that; its steady state also waits on round trips, so it pays more.
  CHECK(t.bubble >= g.bubble - 1e-12);
  // DualPipeV on one rank has no transfers: latency changes nothing.
  auto const a = fp::simulate(fp::dualpipe_v({.ranks = 1, .microbatches = 4}), c);
  auto const b =
      fp::simulate(fp::dualpipe_v({.ranks = 1, .microbatches = 4}), fp::costs{.f = 1, .b = 2, .w = 1});
  CHECK(a.makespan == doctest::Approx(b.makespan));
  CHECK_THROWS_AS(fp::simulate(a.sched, fp::costs{.f = -1}), fp8moe::error);
  CHECK_THROWS_AS(fp::simulate(a.sched, fp::costs{.f = 1, .b = 1, .w = 2}), fp8moe::error);
}

TEST_CASE("simulator: NaN, infinite and negative costs are rejected, naming the costs") {
  auto const s = fp::one_f_one_b({.ranks = 2, .microbatches = 4});
  double const inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  fp::costs const bad[] = {{.f = inf},    {.f = 1, .b = inf}, {.w = inf},     {.fb = inf},
                           {.i = inf},    {.comm = inf},      {.f = -inf},    {.f = nan},
                           {.b = nan},    {.w = nan},         {.fb = nan},    {.i = nan},
                           {.comm = nan}, {.f = -1},          {.comm = -0.5}, {.b = -2}};
  for (auto const& c : bad) {
    CAPTURE(c.f);
    CAPTURE(c.b);
    CAPTURE(c.w);
    CAPTURE(c.fb);
    CAPTURE(c.i);
    CAPTURE(c.comm);
    CHECK_THROWS_WITH_AS(fp::simulate(s, c), doctest::Contains("argument 'costs'"), fp8moe::error);
  }
  // the defaults (fb, i < 0) and large finite costs are fine
  CHECK(fp::simulate(s, {.f = 1e300, .b = 2e300, .w = 1e300}).makespan > 0);
  CHECK(std::isfinite(fp::simulate(s, {}).makespan));
}

TEST_CASE("printing: action strings, JSON and the table") {
  CHECK(fp::to_string(fp::action{fp::op::f, 2, 0}) == "2F0");
  CHECK(fp::to_string(fp::action{fp::op::fb, 0, 7, 7, 3}) == "(0F7;7B3)OVERLAP_F_B");
  CHECK(fp::to_string(fp::action{fp::op::send_b, 3, 1, -1, -1, 2}) == "3SEND_B1");
  CHECK(fp::to_string(fp::op::recv_f) == "RECV_F");
  auto const s = fp::one_f_one_b({.ranks = 2, .microbatches = 2});
  auto const j = fp::to_json(s);
  CHECK(j.find("\"name\":\"1f1b\"") != std::string::npos);
  CHECK(j.find("\"chunk_rank\":[0,1]") != std::string::npos);
  CHECK(j.find("{\"op\":\"SEND_F\",\"chunk\":0,\"mb\":0,\"peer\":1}") != std::string::npos);
  auto const tbl = fp::to_table(s, true, ' ');
  CHECK(lines(tbl)[0] == "0F0 0SEND_F0->1 0F1 0SEND_F1->1 0RECV_B0<-1 0B0 0RECV_B1<-1 0B1");
  CHECK(lines(tbl)[1] == "1RECV_F0<-0 1F0 1B0 1SEND_B0->0 1RECV_F1<-0 1F1 1B1 1SEND_B1->0");
  static_assert(fp::pipeline_schedule<fp::schedule>);
  static_assert(!fp::pipeline_schedule<int>);
}

TEST_CASE("printing: a schedule without one action list per rank is rejected, not read out of bounds") {
  auto s = fp::dualpipe({.ranks = 4, .microbatches = 8});
  auto fewer = s;
  fewer.actions.pop_back();  // 3 lists for 4 ranks
  CHECK_THROWS_WITH_AS(fp::to_table(fewer), doctest::Contains("one action list per rank (ranks = 4)"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(fp::to_json(fewer), doctest::Contains("3 lists"), fp8moe::error);
  auto more = s;
  more.actions.emplace_back();
  CHECK_THROWS_AS(fp::to_table(more, true), fp8moe::error);
  CHECK_THROWS_AS(fp::to_json(more), fp8moe::error);
  auto negative = s;
  negative.ranks = -1;
  CHECK_THROWS_AS(fp::to_table(negative), fp8moe::error);
  CHECK(lines(fp::to_table(s)).size() == 4u);  // the intact schedule still prints
}

TEST_CASE("SVG: well-formed document with one box per action half, written atomically") {
  auto const t =
      fp::simulate(fp::dualpipe({.ranks = 4, .microbatches = 8}), {.f = 1, .b = 2, .w = 1, .fb = 3});
  auto const svg = fp::to_svg(t);
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  int boxes = 0, expect = 0;
  for (std::size_t p = 0; (p = svg.find("<title>", p)) != std::string::npos; ++p) ++boxes;
  for (auto const& r : t.ranks)
    for (auto const& ta : r) expect += ta.a.kind == fp::op::fb ? 2 : 1;
  CHECK(boxes == expect);
  CHECK(svg.find("<title>(0F3;7B1)OVERLAP_F_B") != std::string::npos);
  std::string const path = "test_pipeline_timeline.svg";
  fp::write_svg(t, path);
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  CHECK(ss.str() == svg);
  CHECK(!std::ifstream(path + ".tmp").good());
  std::remove(path.c_str());
  CHECK_THROWS_AS(fp::write_svg(t, "no_such_dir/x/y.svg"), fp8moe::error);
}

namespace {
/// Names in `dir` (the SVG writer must leave no temporary file behind).
std::vector<std::string> entries(std::filesystem::path const& dir) {
  std::vector<std::string> v;
  for (auto const& e : std::filesystem::directory_iterator(dir)) v.push_back(e.path().filename().string());
  return v;
}
}  // namespace

TEST_CASE("SVG writer: concurrent writers to one path each use their own temporary file") {
  auto const dir = std::filesystem::path("test_svg_concurrent");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directory(dir);
  auto const path = (dir / "t.svg").string();
  fp::timeline const t[2] = {fp::simulate(fp::one_f_one_b({.ranks = 2, .microbatches = 4}), {}),
                             fp::simulate(fp::gpipe({.ranks = 3, .microbatches = 5}), {})};
  // With one shared temporary name, a writer renames (or truncates) another's half-written file and
  // the other's rename then fails, or the target ends up truncated.
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      for (int n = 0; n < 40; ++n) try {
          fp::write_svg(t[w % 2], path);
        } catch (fp8moe::error const&) {
          ++failures;
        }
    });
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  CHECK((ss.str() == fp::to_svg(t[0]) || ss.str() == fp::to_svg(t[1])));
  CHECK(entries(dir) == std::vector<std::string>{"t.svg"});
  std::filesystem::remove_all(dir);
}

#if defined(__unix__)
TEST_CASE("SVG writer: a failed write throws and removes its temporary file; the old file stays") {
  auto const dir = std::filesystem::path("test_svg_failure");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directory(dir);
  auto const path = (dir / "t.svg").string();
  auto const small = fp::simulate(fp::one_f_one_b({.ranks = 2, .microbatches = 2}), {});
  auto const large = fp::simulate(fp::dualpipe({.ranks = 8, .microbatches = 40}), {.fb = 3});
  fp::write_svg(small, path);
  auto const old_text = fp::to_svg(small);
  REQUIRE(fp::to_svg(large).size() > old_text.size() + 4096);
  // A file-size limit makes write() fail with EFBIG part-way (SIGXFSZ ignored) after the
  // temporary file exists: the writer must remove it and keep the old picture.
  rlimit old_limit{};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto const old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit lim = old_limit;
  lim.rlim_cur = static_cast<rlim_t>(old_text.size() + 1024);
  REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
  bool threw = false;
  std::string what;
  try {
    fp::write_svg(large, path);
  } catch (fp8moe::error const& e) {
    threw = true;
    what = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  CHECK(threw);
  CHECK(what.find("write failed") != std::string::npos);
  CHECK(entries(dir) == std::vector<std::string>{"t.svg"});
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  CHECK(ss.str() == old_text);
  // a directory as the target is an argument error, not an in-place write
  CHECK_THROWS_WITH_AS(fp::write_svg(small, dir.string()), doctest::Contains("a directory"), fp8moe::error);
  std::filesystem::remove_all(dir);
}
#endif

TEST_CASE("generators: sizes beyond the limits are rejected up front with fp8moe::error") {
  // 2 * (1 << 30) overflows int: without the up-front check this threw std::length_error/bad_alloc.
  CHECK_THROWS_WITH_AS(fp::dualpipe({.ranks = 1 << 30, .microbatches = 2}), doctest::Contains("'ranks'"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(fp::dualpipe_v({.ranks = 1 << 30, .microbatches = 2}), doctest::Contains("'ranks'"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(fp::dualpipe({.ranks = 2, .microbatches = 1 << 30}),
                       doctest::Contains("'microbatches'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(fp::dualpipe({.ranks = 2, .microbatches = std::numeric_limits<int>::max()}),
                       doctest::Contains("'microbatches'"), fp8moe::error);
  for (int kind = 0; kind < 6; ++kind) {
    CAPTURE(kind);
    CHECK_THROWS_AS(all_kinds(kind, std::numeric_limits<int>::max(), 4), fp8moe::error);
    CHECK_THROWS_AS(all_kinds(kind, 2, std::numeric_limits<int>::max()), fp8moe::error);
    // each within its own limit, together too large
    CHECK_THROWS_WITH_AS(all_kinds(kind, 1 << 16, 1 << 16), doctest::Contains("ranks * microbatches"),
                         fp8moe::error);
  }
}

TEST_CASE("generators: DualPipe PP=64, M=128 (lowered, validated) takes well under a second") {
  auto const t0 = std::chrono::steady_clock::now();
  auto const s = fp::dualpipe({.ranks = 64, .microbatches = 128});
  double const gen_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fp::validate(s);
  MESSAGE("DualPipe PP=64 M=128 generated and lowered in " << gen_s << " s");
#ifdef NDEBUG
  CHECK(gen_s < 0.5);  // was 3.5-8.5 s (a full re-simulation per repaired receive)
#endif
  auto const v = fp::dualpipe_v({.ranks = 64, .microbatches = 128});
  fp::validate(v);
}
