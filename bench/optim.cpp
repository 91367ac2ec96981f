// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host benchmarks of optim/: one AdamW step over the tiny DeepSeek-V3 model's 8.55M parameters (float
// and BF16 moments) and the global gradient norm, each against a memcpy moving the same bytes
// (read + write) in the same run, single-threaded and split over the same OpenMP threads. The docs
// quote time(memcpy, same threads) / time(step). Run:
//   build-*/bench/bench_optim --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "fp8moe/optim/optim.hpp"
#include "test_support.hpp"

namespace fm = fp8moe;
namespace optim = fp8moe::optim;

namespace {

constexpr std::int64_t params = 8'550'000;  // the tiny preset (reference §5: 6.59M main + 1.97M MTP)

/// The parameter tensors: 95 tensors of mixed sizes (a few large matrices, many small norms), in one
/// allocation per state, as a trainer would hold them.
std::vector<std::int64_t> tensor_sizes() {
  std::vector<std::int64_t> s;
  std::int64_t left = params;
  for (int i = 0; left > 0; ++i) {
    std::int64_t const n = std::min<std::int64_t>(left, i % 3 == 2 ? 256 : 131072 + 4096 * (i % 7));
    s.push_back(n);
    left -= n;
  }
  return s;
}

template <class M>
struct model_state {
  std::vector<float> p, g;
  std::vector<M> m, v;
  std::vector<optim::adamw_tensor<M>> tensors;
  std::vector<std::span<float const>> grads;
  model_state() : p(fm::test::random_normal(params, 0.02f, 1)), g(fm::test::random_normal(params, 1e-3f, 2)) {
    m.assign(params, M(0.0f));
    v.assign(params, M(0.0f));
    std::int64_t off = 0;
    for (std::int64_t n : tensor_sizes()) {
      auto const o = static_cast<std::size_t>(off), k = static_cast<std::size_t>(n);
      tensors.push_back({std::span(p).subspan(o, k), std::span<float const>(g).subspan(o, k),
                         std::span(m).subspan(o, k), std::span(v).subspan(o, k), n != 256});
      grads.push_back(std::span<float const>(g).subspan(o, k));
      off += n;
    }
  }
};

/// Bytes one AdamW step reads + writes per parameter: p, g, m, v read; p, m, v written.
template <class M>
constexpr std::int64_t step_bytes = 4 + 4 + 4 + 4 * static_cast<std::int64_t>(sizeof(M));

template <class M>
void BM_adamw_step(benchmark::State& st) {
  model_state<M> s;
  optim::adamw_config const cfg{.lr = 1e-4f};
  std::int64_t step = 1;
  for (auto _ : st) {
    optim::adamw_step(fm::host_executor{}, cfg, step++, s.tensors);
    benchmark::DoNotOptimize(s.p.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * params * step_bytes<M>);
  st.counters["params_per_s"] =
      benchmark::Counter(static_cast<double>(st.iterations() * params), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_adamw_step<float>)
    ->Name("BM_adamw_step/float_moments")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_adamw_step<fm::bfloat16_t>)
    ->Name("BM_adamw_step/bf16_moments")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_grad_norm(benchmark::State& st) {
  model_state<float> s;
  for (auto _ : st) {
    auto const r = optim::grad_norm(fm::host_executor{}, s.grads);
    benchmark::DoNotOptimize(r);
  }
  st.SetBytesProcessed(st.iterations() * params * 4);
}
BENCHMARK(BM_grad_norm)->Unit(benchmark::kMillisecond)->UseRealTime();

/// Baseline: memcpy of `bytes` / 2 bytes (so `bytes` are read + written), on one thread or split
/// over the OpenMP threads host_executor{} uses.
void memcpy_baseline(benchmark::State& st, std::int64_t bytes, bool threaded) {
  auto const half = static_cast<std::size_t>(bytes / 2);
  std::vector<char> a(half, 1), b(half, 2);
  int const threads = threaded ? fm::host_executor{}.num_threads() : 1;
  for (auto _ : st) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (int t = 0; t < threads; ++t) {
      std::size_t const lo = half * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads);
      std::size_t const hi = half * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads);
      std::memcpy(b.data() + lo, a.data() + lo, hi - lo);
    }
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(half) * 2);
  st.counters["threads"] = threads;
}
void BM_memcpy_step_bytes_float(benchmark::State& st) {
  memcpy_baseline(st, params * step_bytes<float>, st.range(0));
}
void BM_memcpy_step_bytes_bf16(benchmark::State& st) {
  memcpy_baseline(st, params * step_bytes<fm::bfloat16_t>, st.range(0));
}
void BM_memcpy_grad_norm_bytes(benchmark::State& st) {
  memcpy_baseline(st, params * 4, st.range(0));
}
BENCHMARK(BM_memcpy_step_bytes_float)
    ->ArgName("threaded")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_memcpy_step_bytes_bf16)
    ->ArgName("threaded")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_memcpy_grad_norm_bytes)
    ->ArgName("threaded")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
