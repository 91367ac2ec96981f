// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host nn layers against OpenBLAS sgemm of the same M, N, K in the same run (2MNK FLOP each):
// nn::matmul's portable blocked kernel (float and bf16 inputs) and fp8_linear forward / dgrad /
// wgrad (DeepSeek-V3 recipe, quantization of the activations included, caller workspace).
// Counter x_sgemm = sgemm wall time / ours (> 1: ours is faster), best of 5 alternating runs.
// Run (OpenBLAS must pick its own kernel; the same thread count for both):
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
//   build/bench/bench_nn
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#if defined(FP8MOE_HAVE_BLAS)
#include <cblas.h>
#endif

#include "bench_support.hpp"
#include "fp8moe/nn/nn.hpp"
#include "test_support.hpp"

namespace fm = fp8moe;
namespace nn = fp8moe::nn;

namespace {

/// Times `ours` for the benchmark loop, sets FLOP/s, and x_sgemm against sgemm of (m, n, k).
template <class F>
void measure(benchmark::State& st, F&& ours, std::int64_t m, std::int64_t n, std::int64_t k) {
  for (auto _ : st) ours();
  st.counters["FLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k),
                         benchmark::Counter::kIsIterationInvariantRate);
#if defined(FP8MOE_HAVE_BLAS)
  auto const a = fm::test::random_normal(static_cast<std::size_t>(m * k), 1.0f, 11);
  auto const b = fm::test::random_normal(static_cast<std::size_t>(n * k), 1.0f, 12);
  std::vector<float> c(static_cast<std::size_t>(m * n));
  auto const sgemm = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), 1.0f, a.data(), static_cast<int>(k), b.data(), static_cast<int>(k), 0.0f,
                c.data(), static_cast<int>(n));
    benchmark::DoNotOptimize(c.data());
  };
  auto const [t_ours, t_sgemm] = fm::test::interleaved_best(ours, sgemm);
  st.counters["x_sgemm"] = t_sgemm / t_ours;
#endif
}

/// nn::matmul's portable kernel, D (M,N) = A (M,K) * B^T with B stored (N,K), inputs T.
template <class T>
void BM_matmul_portable(benchmark::State& st) {
  std::int64_t const m = st.range(0), n = st.range(1), k = st.range(2);
  auto const af = fm::test::random_normal(static_cast<std::size_t>(m * k), 1.0f, 1);
  auto const bf = fm::test::random_normal(static_cast<std::size_t>(n * k), 1.0f, 2);
  std::vector<T> a(af.size()), b(bf.size());
  std::transform(af.begin(), af.end(), a.begin(), [](float v) { return static_cast<T>(v); });
  std::transform(bf.begin(), bf.end(), b.begin(), [](float v) { return static_cast<T>(v); });
  std::vector<float> d(static_cast<std::size_t>(m * n));
  fm::host_executor const ex;
  std::vector<std::byte> ws(nn::dispatch<fm::host_executor>::matmul_workspace_bytes(ex, {m, n, k}));
  auto const av = fm::matrix_view<T const>(fm::make_matrix(a.data(), m, k));
  auto const bv = nn::transposed(fm::matrix_view<T const>(fm::make_matrix(b.data(), n, k)));
  measure(
      st,
      [&] {
        nn::host::matmul_blocked(ex, av, bv, fm::make_matrix(d.data(), m, n), {},
                                 reinterpret_cast<float*>(ws.data()));
        benchmark::DoNotOptimize(d.data());
      },
      m, n, k);
}

/// nn::matmul (the entry: CBLAS sgemm where this build has FP8MOE_HAVE_BLAS, else the portable kernel).
void BM_matmul_entry(benchmark::State& st) {
  std::int64_t const m = st.range(0), n = st.range(1), k = st.range(2);
  auto const a = fm::test::random_normal(static_cast<std::size_t>(m * k), 1.0f, 1);
  auto const b = fm::test::random_normal(static_cast<std::size_t>(n * k), 1.0f, 2);
  std::vector<float> d(static_cast<std::size_t>(m * n));
  fm::host_executor const ex;
  std::vector<std::byte> ws(nn::workspace_bytes(ex, nn::matmul_shape{m, n, k}));
  measure(
      st,
      [&] {
        nn::matmul(ex, fm::make_matrix(a.data(), m, k), nn::transposed(fm::make_matrix(b.data(), n, k)),
                   fm::make_matrix(d.data(), m, n), {}, std::span(ws));
        benchmark::DoNotOptimize(d.data());
      },
      m, n, k);
}

/// fp8_linear pass 0 forward Y = X W^T, 1 dgrad dX = dY W, 2 wgrad dW = dY^T X (M tokens, N out, K in).
void BM_fp8_linear(benchmark::State& st) {
  int const pass = static_cast<int>(st.range(0));
  std::int64_t const m = st.range(1), n = st.range(2), k = st.range(3);
  auto const& r = fm::scaling::deepseek_v3;
  auto const x = fm::test::random_normal(static_cast<std::size_t>(m * k), 1.0f, 3);
  auto const dy = fm::test::random_normal(static_cast<std::size_t>(m * n), 1.0f, 4);
  auto const wm = fm::test::random_normal(static_cast<std::size_t>(n * k), 0.05f, 5);
  fm::host_executor const ex;
  fm::scaling::quantized_matrix<fm::float8_e4m3_t> w(n, k, r.weight.tile), wt(k, n, r.weight.tile);
  nn::quantize_weight(ex, fm::make_matrix(wm.data(), n, k), w.view(), wt.view(), r.weight);
  nn::fp8_weight<fm::float8_e4m3_t> const wv{w.view(), wt.view()};
  std::vector<std::byte> ws(nn::workspace_bytes(ex, nn::linear_shape{m, n, k}, r));
  std::vector<float> out(static_cast<std::size_t>(std::max({m * n, m * k, n * k})));
  auto const X = fm::make_matrix(x.data(), m, k);
  auto const DY = fm::make_matrix(dy.data(), m, n);
  measure(
      st,
      [&] {
        if (pass == 0) nn::fp8_linear(ex, X, wv, fm::make_matrix(out.data(), m, n), std::span(ws), r);
        if (pass == 1) nn::fp8_linear_dgrad(ex, DY, wv, fm::make_matrix(out.data(), m, k), std::span(ws), r);
        if (pass == 2)
          nn::fp8_linear_wgrad(ex, DY, X, fm::make_matrix(out.data(), n, k), false, std::span(ws), r);
        benchmark::DoNotOptimize(out.data());
      },
      m, n, k);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({512, 1024, 1024})->Args({1024, 2048, 1024})->Unit(benchmark::kMillisecond)->Iterations(3);
}
void linear_shapes(benchmark::internal::Benchmark* b) {
  for (int pass : {0, 1, 2}) b->Args({pass, 512, 1024, 1024})->Args({pass, 1024, 2048, 1024});
  b->ArgNames({"pass", "m", "n", "k"})->Unit(benchmark::kMillisecond)->Iterations(3);
}

}  // namespace

BENCHMARK(BM_matmul_portable<float>)->Apply(shapes)->ArgNames({"m", "n", "k"});
BENCHMARK(BM_matmul_portable<fm::bfloat16_t>)->Apply(shapes)->ArgNames({"m", "n", "k"});
BENCHMARK(BM_matmul_entry)->Apply(shapes)->ArgNames({"m", "n", "k"});
BENCHMARK(BM_fp8_linear)->Apply(linear_shapes);

BENCHMARK_MAIN();
