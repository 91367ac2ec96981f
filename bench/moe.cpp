// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host benchmarks of moe/: router tokens/s (DeepSeek-V3 config) and permute / combine GB/s, each
// against a memcpy of the same bytes measured in the same run (the baseline the docs quote).
// Run: build-*/bench/bench_moe --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "fp8moe/moe/moe.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "test_support.hpp"

namespace fm = fp8moe;
namespace moe = fp8moe::moe;

namespace {

constexpr auto cfg = moe::deepseek_v3_router;

std::vector<std::int32_t> v3_ids(std::int64_t T) {
  auto const logits = fm::test::random_normal(static_cast<std::size_t>(T * cfg.experts), 1.0f, 7);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * cfg.k));
  std::vector<float> w(ids.size());
  moe::route(fm::host_executor{}, cfg, fm::make_matrix(logits.data(), T, cfg.experts), {},
             fm::make_matrix(ids.data(), T, cfg.k), fm::make_matrix(w.data(), T, cfg.k), {});
  return ids;
}

void bm_memcpy(benchmark::State& st, std::size_t bytes) {
  std::vector<char> a(bytes, 1), b(bytes);
  for (auto _ : st) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * bytes * 2));  // read + write
}

// ---- router: T tokens x 256 FP32 logits
void BM_route_v3(benchmark::State& st) {
  std::int64_t const T = st.range(0);
  auto const logits = fm::test::random_normal(static_cast<std::size_t>(T * cfg.experts), 1.0f, 1);
  auto const bias = fm::test::random_normal(cfg.experts, 0.01f, 2);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * cfg.k)), counts(cfg.experts);
  std::vector<float> w(ids.size());
  for (auto _ : st) {
    moe::route(fm::host_executor{}, cfg, fm::make_matrix(logits.data(), T, cfg.experts),
               fm::vector_view<float const>{bias.data(), cfg.experts}, fm::make_matrix(ids.data(), T, cfg.k),
               fm::make_matrix(w.data(), T, cfg.k), fm::make_vector(counts.data(), cfg.experts));
    benchmark::DoNotOptimize(ids.data());
  }
  st.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(st.iterations() * T), benchmark::Counter::kIsRate);
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * T * (cfg.experts * 4 + cfg.k * 8)));
}
BENCHMARK(BM_route_v3)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_memcpy_route_bytes(benchmark::State& st) {  // baseline: move the logits once
  bm_memcpy(st, static_cast<std::size_t>(st.range(0) * cfg.experts * 4));
}
BENCHMARK(BM_memcpy_route_bytes)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- plan build (T tokens, top-8 of 256, contiguous m_align 128)
void BM_build_plan(benchmark::State& st) {
  std::int64_t const T = st.range(0);
  auto const ids = v3_ids(T);
  moe::host_permute_plan plan(moe::contiguous{.m_align = 128}, T, cfg.k, cfg.experts);
  for (auto _ : st) {
    moe::build_permute_plan(fm::host_executor{}, fm::make_matrix(ids.data(), T, cfg.k), plan.view());
    benchmark::DoNotOptimize(plan.view().row_token);
  }
  st.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(st.iterations() * T), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_build_plan)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- permute BF16 rows (T=1024, H=2048, k=8): bytes = permuted rows read + written
template <class T>
void bm_permute(benchmark::State& st) {
  std::int64_t const Tn = st.range(0), H = st.range(1);
  auto const ids = v3_ids(Tn);
  moe::host_permute_plan plan(moe::contiguous{.m_align = 128}, Tn, cfg.k, cfg.experts);
  moe::build_permute_plan(fm::host_executor{}, fm::make_matrix(ids.data(), Tn, cfg.k), plan.view());
  auto const& p = plan.view();
  std::vector<T> x(static_cast<std::size_t>(Tn * H), T(0.5f)), out(static_cast<std::size_t>(p.rows * H));
  for (auto _ : st) {
    moe::permute(fm::host_executor{}, p, fm::make_matrix(x.data(), Tn, H),
                 fm::make_matrix(out.data(), p.rows, H));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * Tn * cfg.k * H * sizeof(T) * 2));
}
void BM_permute_bf16(benchmark::State& st) {
  bm_permute<fm::bfloat16_t>(st);
}
void BM_permute_fp8(benchmark::State& st) {
  bm_permute<fm::float8_e4m3_t>(st);
}
// {T, H} of the permute / combine benchmarks and their memcpy baselines: 1024 tokens leave ~32 rows
// per expert, so 3/4 of the 128-aligned rows are zeroed padding (not counted in bytes_per_second);
// 8192 tokens (~256 rows per expert) is the training case.
void token_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1024, 2048})->Args({8192, 1024})->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_permute_bf16)->Apply(token_shapes);
BENCHMARK(BM_permute_fp8)->Apply(token_shapes);

void BM_memcpy_permute_bf16_bytes(benchmark::State& st) {
  bm_memcpy(st, static_cast<std::size_t>(st.range(0) * cfg.k * st.range(1) * 2));
}
BENCHMARK(BM_memcpy_permute_bf16_bytes)->Apply(token_shapes);

// ---- combine (unpermute) BF16 rows -> BF16 tokens, weighted, FP32 accumulation
void BM_combine_bf16(benchmark::State& st) {
  std::int64_t const Tn = st.range(0), H = st.range(1);
  auto const ids = v3_ids(Tn);
  moe::host_permute_plan plan(moe::contiguous{.m_align = 128}, Tn, cfg.k, cfg.experts);
  moe::build_permute_plan(fm::host_executor{}, fm::make_matrix(ids.data(), Tn, cfg.k), plan.view());
  auto const& p = plan.view();
  std::vector<fm::bfloat16_t> y(static_cast<std::size_t>(p.rows * H), fm::bfloat16_t(0.25f)),
      out(static_cast<std::size_t>(Tn * H));
  std::vector<float> w(static_cast<std::size_t>(Tn * cfg.k), 0.125f);
  for (auto _ : st) {
    moe::combine(fm::host_executor{}, p, fm::make_matrix(y.data(), p.rows, H),
                 fm::make_matrix(w.data(), Tn, cfg.k), fm::make_matrix(out.data(), Tn, H));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  // bytes: k rows read per token + one row written
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * Tn * (cfg.k + 1) * H * 2));
}
BENCHMARK(BM_combine_bf16)->Apply(token_shapes);

void BM_memcpy_combine_bf16_bytes(
    benchmark::State& st) {  // half the bytes each way: read + write = same total
  bm_memcpy(st, static_cast<std::size_t>(st.range(0) * (cfg.k + 1) * st.range(1) * 2 / 2));
}
BENCHMARK(BM_memcpy_combine_bf16_bytes)->Apply(token_shapes);

}  // namespace

BENCHMARK_MAIN();
