// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// GPU benchmarks of moe/ (cuda_executor): router tokens/s (DeepSeek-V3 256/8/4/8), permute plan
// build, BF16/FP8 row permute and BF16 combine GB/s, each against cudaMemcpyAsync device-to-device
// of the same bytes in the same run. CUDA-event timing (manual time); random inputs, never zeros.
// Run: build-*/bench/bench_gpu_moe --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <vector>

#include "fp8moe/moe/cuda/permute.cuh"
#include "fp8moe/moe/cuda/router.cuh"
#include "fp8moe/numeric/numeric.hpp"

namespace {

namespace fm = fp8moe;
namespace moe = fp8moe::moe;
constexpr auto cfg = moe::deepseek_v3_router;

template <class T>
struct dvec {
  T* p = nullptr;
  std::size_t n = 0;
  explicit dvec(std::size_t count) : n(count) {
    FP8MOE_CUDA_CHECK(cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(T)));
  }
  explicit dvec(std::vector<T> const& h) : dvec(h.size()) {
    FP8MOE_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~dvec() { cudaFree(p); }
  dvec(dvec const&) = delete;
};

std::vector<float> normal(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g{seed};
  std::normal_distribution<float> d{0.0f, 1.0f};
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

/// Times `body` with CUDA events around each iteration.
template <class F>
void timed(benchmark::State& st, F&& body) {
  cudaEvent_t a, b;
  FP8MOE_CUDA_CHECK(cudaEventCreate(&a));
  FP8MOE_CUDA_CHECK(cudaEventCreate(&b));
  body();  // warm-up
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  for (auto _ : st) {
    FP8MOE_CUDA_CHECK(cudaEventRecord(a));
    body();
    FP8MOE_CUDA_CHECK(cudaEventRecord(b));
    FP8MOE_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    FP8MOE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    st.SetIterationTime(ms / 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

void device_copy(benchmark::State& st, std::size_t bytes) {
  dvec<char> src(bytes), dst(bytes);
  FP8MOE_CUDA_CHECK(cudaMemset(src.p, 0x3C, bytes));
  timed(st, [&] { FP8MOE_CUDA_CHECK(cudaMemcpyAsync(dst.p, src.p, bytes, cudaMemcpyDeviceToDevice)); });
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * bytes * 2));  // read + write
}

std::vector<std::int32_t> v3_ids(std::int64_t T) {
  auto const logits = normal(static_cast<std::size_t>(T * cfg.experts), 3);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * cfg.k));
  std::vector<float> w(ids.size());
  moe::route(fm::host_executor{}, cfg, fm::make_matrix(logits.data(), T, cfg.experts), {},
             fm::make_matrix(ids.data(), T, cfg.k), fm::make_matrix(w.data(), T, cfg.k), {});
  return ids;
}

void BM_gpu_route_v3(benchmark::State& st) {
  std::int64_t const T = st.range(0);
  dvec<float> logits(normal(static_cast<std::size_t>(T * cfg.experts), 1)), bias(normal(cfg.experts, 2));
  dvec<std::int32_t> ids(static_cast<std::size_t>(T * cfg.k)), counts(cfg.experts);
  dvec<float> w(static_cast<std::size_t>(T * cfg.k));
  fm::cuda_executor ex{};
  timed(st, [&] {
    moe::route(ex, cfg, fm::matrix_view<float const>(fm::make_matrix(logits.p, T, cfg.experts)),
               fm::vector_view<float const>{bias.p, cfg.experts}, fm::make_matrix(ids.p, T, cfg.k),
               fm::make_matrix(w.p, T, cfg.k), fm::make_vector(counts.p, cfg.experts));
  });
  st.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(st.iterations() * T), benchmark::Counter::kIsRate);
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * T * (cfg.experts * 4 + cfg.k * 8)));
}
BENCHMARK(BM_gpu_route_v3)->Arg(16384)->UseManualTime()->Unit(benchmark::kMicrosecond);
void BM_gpu_copy_route_bytes(benchmark::State& st) {
  device_copy(st, static_cast<std::size_t>(st.range(0) * cfg.experts * 4));
}
BENCHMARK(BM_gpu_copy_route_bytes)->Arg(16384)->UseManualTime()->Unit(benchmark::kMicrosecond);

/// The DeepSeek-V3 routing of T tokens on the device and its contiguous (m_align 128) plan, built.
struct v3_plan {
  std::int64_t tokens;
  dvec<std::int32_t> ids;
  moe::cuda_permute_plan plan;
  v3_plan(fm::cuda_executor const& ex, std::int64_t T)
      : tokens(T), ids(v3_ids(T)), plan(ex, moe::contiguous{.m_align = 128}, T, cfg.k, cfg.experts) {
    build(ex);
  }
  /// (Re)builds the plan from the ids on ex's stream.
  void build(fm::cuda_executor const& ex) {
    moe::build_permute_plan(ex, fm::matrix_view<std::int32_t const>(fm::make_matrix(ids.p, tokens, cfg.k)),
                            plan.view(), plan.workspace());
  }
};

void BM_gpu_build_plan(benchmark::State& st) {
  std::int64_t const T = st.range(0);
  fm::cuda_executor ex{};
  v3_plan vp(ex, T);
  timed(st, [&] { vp.build(ex); });
  st.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(st.iterations() * T), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_gpu_build_plan)->Arg(16384)->UseManualTime()->Unit(benchmark::kMicrosecond);

// T = 4096 tokens, top-8 of 256, H = 7168 (DeepSeek-V3 hidden)
template <class E>
void gpu_permute(benchmark::State& st) {
  std::int64_t const T = 4096, H = st.range(0);
  fm::cuda_executor ex{};
  v3_plan const vp(ex, T);
  auto const& p = vp.plan.view();
  dvec<E> x(static_cast<std::size_t>(T * H)), out(static_cast<std::size_t>(p.rows * H));
  FP8MOE_CUDA_CHECK(cudaMemset(x.p, 0x3C, x.n * sizeof(E)));
  timed(st, [&] {
    moe::permute(ex, p, fm::matrix_view<E const>(fm::make_matrix(x.p, T, H)),
                 fm::make_matrix(out.p, p.rows, H));
  });
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * T * cfg.k * H * sizeof(E) * 2));
}
void BM_gpu_permute_bf16(benchmark::State& st) {
  gpu_permute<fm::bfloat16_t>(st);
}
void BM_gpu_permute_fp8(benchmark::State& st) {
  gpu_permute<fm::float8_e4m3_t>(st);
}
BENCHMARK(BM_gpu_permute_bf16)->Arg(7168)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_gpu_permute_fp8)->Arg(7168)->UseManualTime()->Unit(benchmark::kMicrosecond);
void BM_gpu_copy_permute_bf16_bytes(benchmark::State& st) {
  device_copy(st, static_cast<std::size_t>(4096 * cfg.k * st.range(0) * 2));
}
BENCHMARK(BM_gpu_copy_permute_bf16_bytes)->Arg(7168)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_gpu_combine_bf16(benchmark::State& st) {
  std::int64_t const T = 4096, H = st.range(0);
  fm::cuda_executor ex{};
  v3_plan const vp(ex, T);
  auto const& p = vp.plan.view();
  dvec<fm::bfloat16_t> y(static_cast<std::size_t>(p.rows * H)), out(static_cast<std::size_t>(T * H));
  FP8MOE_CUDA_CHECK(cudaMemset(y.p, 0x3C, y.n * 2));
  dvec<float> w(std::vector<float>(static_cast<std::size_t>(T * cfg.k), 0.125f));
  timed(st, [&] {
    moe::combine(ex, p, fm::matrix_view<fm::bfloat16_t const>(fm::make_matrix(y.p, p.rows, H)),
                 fm::matrix_view<float const>(fm::make_matrix(w.p, T, cfg.k)), fm::make_matrix(out.p, T, H));
  });
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * T * (cfg.k + 1) * H * 2));
}
BENCHMARK(BM_gpu_combine_bf16)->Arg(7168)->UseManualTime()->Unit(benchmark::kMicrosecond);
void BM_gpu_copy_combine_bf16_bytes(benchmark::State& st) {
  device_copy(st, static_cast<std::size_t>(4096 * (cfg.k + 1) * st.range(0) * 2 / 2));
}
BENCHMARK(BM_gpu_copy_combine_bf16_bytes)->Arg(7168)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
