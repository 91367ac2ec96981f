// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host executor with threads as ranks (thread_communicator): a toy MLP trained one step under every
// schedule gives the same per-micro-batch losses (bitwise) and gradients (within the float reordering
// bound) as the one-process reference; no generated schedule deadlocks; error paths.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "fp8moe/comm/single_communicator.hpp"
#include "fp8moe/comm/thread_communicator.hpp"
#include "fp8moe/pipeline/pipeline.hpp"
#include "toy_mlp.hpp"

namespace fp = fp8moe::pipeline;

namespace {

struct pipelined_result {
  std::vector<float> losses;             // (M) by global micro-batch
  std::vector<std::vector<float>> grad;  // (S) after summing DualPipe's copies
  int fused = 0;
  fp::execution_stats stats0;
};

template <class Model>
pipelined_result run_threads(fp::schedule const& s, toy::problem const& p, fp::executor_options opt = {}) {
  fp8moe::comm::thread_world world(s.ranks);
  std::vector<std::unique_ptr<Model>> models;
  for (int r = 0; r < s.ranks; ++r) models.push_back(std::make_unique<Model>(p, s, r));
  std::vector<std::exception_ptr> errors(s.ranks);
  std::vector<fp::execution_stats> stats(s.ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < s.ranks; ++r)
    threads.emplace_back([&, r] {
      try {
        fp8moe::comm::thread_communicator comm(world, r);
        stats[r] = fp::execute(s, comm, *models[r], opt);
        fp::sum_replica_gradients(s, comm, *models[r]);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  pipelined_result out;
  out.losses.assign(p.microbatches, std::numeric_limits<float>::quiet_NaN());
  out.grad.assign(s.stages, {});
  for (int r = 0; r < s.ranks; ++r) {
    for (auto [mb, l] : models[r]->losses) out.losses[mb] = l;
    for (int k : s.rank_chunks(r)) {
      auto g = models[r]->weight_gradients(k);
      auto& dst = out.grad[s.chunk_stage[k]];
      if (dst.empty()) {
        dst.assign(g.begin(), g.end());
      } else {
        // The other copy of a DualPipe stage must hold the identical sum.
        for (std::size_t i = 0; i < g.size(); ++i) CHECK(dst[i] == g[i]);
      }
    }
    CHECK(models[r]->live_activations() == 0);
    if constexpr (requires { models[r]->fused; }) out.fused += models[r]->fused;
  }
  out.stats0 = stats[0];
  return out;
}

/// Per-micro-batch losses are computed by identical float operations: bitwise equal. Gradients are
/// sums of the same M float terms in another order: |a - b| <= 2 (M-1) u sum|terms|, u = 2^-24.
void compare(pipelined_result const& got, toy::problem const& p) {
  auto const ref = toy::reference<float>(p);
  auto const ref64 = toy::reference<double>(p);
  double const u = std::ldexp(1.0, -24);
  for (int mb = 0; mb < p.microbatches; ++mb) {
    CHECK(got.losses[mb] == ref.losses[mb]);
    // float vs float64 reference: 4 tanh layers of 8-term dot products, relative 1e-5 is ample.
    CHECK(got.losses[mb] == doctest::Approx(ref64.losses[mb]).epsilon(1e-5));
  }
  for (int s = 0; s < p.stages; ++s) {
    REQUIRE(got.grad[s].size() == p.grad_size());
    for (std::size_t i = 0; i < p.grad_size(); ++i) {
      double const bound = 2.0 * (p.microbatches - 1) * u * ref64.abs_grad[s][i] + 1e-30;
      CHECK(std::abs(double(got.grad[s][i]) - double(ref.grad[s][i])) <= bound);
    }
  }
}

}  // namespace

TEST_CASE("toy model: the reference backward matches central finite differences (float64)") {
  auto p = toy::problem::make(3, 4);
  auto const ref = toy::reference<double>(p);
  // Central differences with h = 1e-5: truncation O(h^2) ~ 1e-10, rounding ~ 1e-16/h ~ 1e-11.
  double const h = 1e-5;
  for (int s = 0; s < 3; ++s)
    for (int idx : {0, 9, 27, 63, 64 + 3}) {
      auto q = p;
      float& v = idx < 64 ? q.w[s][idx] : q.b[s][idx - 64];
      float const v0 = v;
      // Perturb through float parameters: use the exact float step actually applied.
      v = v0 + static_cast<float>(h);
      double const hp = double(v) - double(v0);
      double const lp = toy::reference<double>(q).loss;
      v = v0 - static_cast<float>(h);
      double const hm = double(v0) - double(v);
      double const lm = toy::reference<double>(q).loss;
      double const fd = (lp - lm) / (hp + hm);
      CHECK(ref.grad[s][idx] == doctest::Approx(fd).epsilon(1e-5));
    }
}

TEST_CASE("executor (threads as ranks): every schedule matches the one-process reference") {
  struct run_case {
    char const* name;
    int ranks, microbatches;
  };
  for (auto c : {run_case{"gpipe", 4, 6}, run_case{"1f1b", 4, 8}, run_case{"zb-h1", 4, 8},
                 run_case{"zb-h2", 3, 7}, run_case{"dualpipe", 4, 8}, run_case{"dualpipe", 2, 6},
                 run_case{"dualpipev", 2, 5}, run_case{"dualpipev", 1, 4}, run_case{"dualpipev", 3, 6}}) {
    CAPTURE(c.name);
    CAPTURE(c.ranks);
    auto const s = fp::make_schedule(c.name, {.ranks = c.ranks, .microbatches = c.microbatches});
    auto const p = toy::problem::make(s.stages, c.microbatches);
    auto const got = run_threads<toy::stage_model>(s, p);
    compare(got, p);
  }
}

TEST_CASE("executor: the rendezvous and hoist_receives lowerings run and match the reference too") {
  for (auto how : {fp::lowering::rendezvous, fp::lowering::hoist_receives}) {
    for (auto bare : {fp::dualpipe_v({.ranks = 4, .microbatches = 8, .communication = false}),
                      fp::dualpipe({.ranks = 4, .microbatches = 8, .communication = false}),
                      fp::zb_h2({.ranks = 3, .microbatches = 6, .communication = false})}) {
      CAPTURE(bare.name);
      fp::add_communication(bare, how);
      auto const p = toy::problem::make(bare.stages, bare.microbatches);
      compare(run_threads<toy::stage_model>(bare, p), p);
    }
  }
}

TEST_CASE("executor: fused forward/backward hook, and the non-threaded path, give the same results") {
  auto const s = fp::dualpipe({.ranks = 4, .microbatches = 10});
  auto const p = toy::problem::make(s.stages, 10);
  int pairs = 0;
  for (auto const& v : s.actions)
    for (auto const& a : v) pairs += a.kind == fp::op::fb;
  auto const fused = run_threads<toy::overlapped_stage_model>(s, p);
  CHECK(fused.fused == pairs);
  compare(fused, p);
  auto const plain = run_threads<toy::overlapped_stage_model>(
      s, p, fp::executor_options{.progress_thread = false, .use_overlapped = false});
  CHECK(plain.fused == 0);
  compare(plain, p);
  CHECK(fused.losses == plain.losses);
  CHECK(fused.stats0.sends == plain.stats0.sends);
  CHECK(fused.stats0.sends > 0);
}

TEST_CASE("executor: no deadlock on any valid generated schedule (grid, threads as ranks)") {
  char const* names[] = {"gpipe", "1f1b", "zb-h1", "zb-h2", "dualpipe", "dualpipev"};
  int runs = 0;
  for (auto name : names)
    for (int pp : {1, 2, 3, 4})
      for (int m : {2 * pp, 2 * pp + 1, 2 * pp + 2, 4 * pp}) {
        fp::schedule s;
        try {
          s = fp::make_schedule(name, {.ranks = pp, .microbatches = m});
        } catch (fp8moe::error const&) {
          continue;  // parameters the generator rejects (e.g. DualPipe with odd PP)
        }
        auto p = toy::problem::make(s.stages, m, 1, 4);
        auto const got =
            run_threads<toy::stage_model>(s, p, fp::executor_options{.progress_thread = (m % 2 == 0)});
        for (float l : got.losses) CHECK(std::isfinite(l));
        ++runs;
      }
  CHECK(runs > 60);
}

TEST_CASE("executor: DualPipeV on one rank through comm::single_communicator (a p2p_communicator)") {
  auto const s = fp::dualpipe_v({.ranks = 1, .microbatches = 4});
  auto const p = toy::problem::make(s.stages, 4);
  fp8moe::comm::single_communicator one;
  toy::stage_model m(p, s, 0);
  auto const st = fp::execute(s, one, m);
  CHECK(st.sends == 0);
  CHECK(st.local_handoffs == 2 * 4);  // per micro-batch: activation 0->1 and gradient 1->0, both local
  auto const ref = toy::reference<float>(p);
  for (int mb = 0; mb < 4; ++mb) CHECK(m.losses.at(mb) == ref.losses[mb]);
  // buffers are recycled: 8 hand-offs (plus the outputs of the chain's ends, which are empty)
  // need only as many buffers as are alive at once
  CHECK(st.buffers_allocated > 0);
  CHECK(st.buffers_allocated < st.local_handoffs);
  // a longer run allocates no more than a short one: the same buffers serve every micro-batch
  auto const s16 = fp::dualpipe_v({.ranks = 1, .microbatches = 16});
  auto const p16 = toy::problem::make(s16.stages, 16);
  toy::stage_model m16(p16, s16, 0);
  auto const st16 = fp::execute(s16, one, m16);
  CHECK(st16.local_handoffs == 2 * 16);
  CHECK(st16.buffers_allocated <= st.buffers_allocated + 2 * s16.ranks);
  auto const ref16 = toy::reference<float>(p16);
  for (int mb = 0; mb < 16; ++mb) CHECK(m16.losses.at(mb) == ref16.losses[mb]);
}

TEST_CASE("executor: error paths") {
  auto const s = fp::one_f_one_b({.ranks = 2, .microbatches = 2});
  auto const p = toy::problem::make(2, 2);
  fp8moe::comm::thread_world world(3);
  fp8moe::comm::thread_communicator comm(world, 0);
  toy::stage_model m(p, s, 0);
  CHECK_THROWS_AS(fp::execute(s, comm, m), fp8moe::error);  // world of 3 for a 2-rank schedule
  auto bad = s;
  bad.actions[0].pop_back();
  fp8moe::comm::thread_world w2(2);
  fp8moe::comm::thread_communicator c2(w2, 0);
  CHECK_THROWS_AS(fp::execute(bad, c2, m), fp8moe::error);  // validated before anything runs
  CHECK(m.forwards == 0);

  fp::weight_grad_fifo fifo;
  CHECK_THROWS_AS(fifo.pop_and_run(0, 0), fp8moe::error);
  int ran = 0;
  fifo.push(1, 2, [&] { ++ran; });
  CHECK_THROWS_AS(fifo.pop_and_run(1, 3), fp8moe::error);  // the FIFO and the schedule disagree
  fifo.push(1, 3, [&] { ran += 10; });
  fifo.pop_and_run(1, 3);
  CHECK(ran == 10);
  CHECK(fifo.empty());
}

TEST_CASE("executor: the model concepts") {
  static_assert(fp::stage_model<toy::stage_model>);
  static_assert(!fp::stage_model_overlapped<toy::stage_model>);
  static_assert(fp::stage_model_overlapped<toy::overlapped_stage_model>);
  static_assert(fp::stage_model_gradients<toy::stage_model>);
  // the host executor takes a p2p communicator over host memory; a collective-only one (none of
  // ours) or a device one would not do
  static_assert(fp8moe::comm::p2p_communicator<fp8moe::comm::thread_communicator>);
  static_assert(fp8moe::comm::p2p_communicator<fp8moe::comm::single_communicator>);
}
