// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Pipeline module costs. (1) Executor overhead: DualPipeV on one rank (2 stages, all hand-offs local)
// running the toy MLP (rows 16, H 128) through fp::execute, against the same callbacks called directly
// in a plain micro-batch loop (baseline, same run). (2) Planning: generate + validate + simulate.
//   build/bench/bench_pipeline --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <vector>

#include "../tests/pipeline/toy_mlp.hpp"
#include "fp8moe/comm/single_communicator.hpp"
#include "fp8moe/pipeline/pipeline.hpp"

namespace fp = fp8moe::pipeline;

namespace {

constexpr int M = 16, rows = 16, hidden = 128;

toy::problem const& problem() {
  static toy::problem const p = toy::problem::make(2, M, rows, hidden);
  return p;
}

/// Baseline: the same callbacks, micro-batch after micro-batch, no schedule, no executor.
void BM_callbacks_direct(benchmark::State& st) {
  auto const s = fp::dualpipe_v({.ranks = 1, .microbatches = M});
  std::vector<std::byte> act(static_cast<std::size_t>(rows * hidden) * 4), grad(act.size());
  for (auto _ : st) {
    toy::stage_model model(problem(), s, 0);
    for (int mb = 0; mb < M; ++mb) {
      fp::task t0{0, 0, mb, mb, true, false}, t1{1, 1, mb, mb, false, true};
      model.forward(t0, {}, act);
      model.forward(t1, act, {});
      model.backward_input(t1, {}, grad);
      model.backward_weight(t1);
      model.backward_input(t0, grad, {});
      model.backward_weight(t0);
    }
    benchmark::DoNotOptimize(model.weight_gradients(0).data());
  }
  st.SetItemsProcessed(st.iterations() * M * 6);  // callbacks
}

void BM_execute_dualpipev_1rank(benchmark::State& st) {
  auto const s = fp::dualpipe_v({.ranks = 1, .microbatches = M});
  fp::executor_options const opt{.validate_schedule = false, .progress_thread = st.range(0) != 0};
  fp8moe::comm::single_communicator comm;  // one rank: DualPipeV has no transfers
  for (auto _ : st) {
    toy::stage_model model(problem(), s, 0);
    auto const stats = fp::execute(s, comm, model, opt);
    benchmark::DoNotOptimize(stats.computes);
  }
  st.SetItemsProcessed(st.iterations() * M * 6);
  st.SetLabel(st.range(0) ? "compute on worker thread" : "compute on caller thread");
}

void BM_plan_dualpipe(benchmark::State& st) {
  int const pp = static_cast<int>(st.range(0)), m = static_cast<int>(st.range(1));
  std::int64_t actions = 0;
  for (auto _ : st) {
    auto const s = fp::dualpipe({.ranks = pp, .microbatches = m});
    fp::validate(s);
    auto const t = fp::simulate(s, {.f = 1, .b = 2, .w = 1, .fb = 3});
    benchmark::DoNotOptimize(t.bubble);
    actions = 0;
    for (auto const& v : s.actions) actions += static_cast<std::int64_t>(v.size());
  }
  st.SetItemsProcessed(st.iterations() * actions);
}

}  // namespace

BENCHMARK(BM_callbacks_direct)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_execute_dualpipev_1rank)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_plan_dualpipe)->Args({8, 20})->Args({16, 64})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
