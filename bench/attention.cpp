// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The MLA layer (attention::mla_forward, float weights) on the tiny DeepSeek-V3 shape (hidden 256,
// 4 heads, nope 32, rope 16, v 32, kv_lora 128, q_lora 128): prefill of T = 64 / 512 tokens in the
// naive and the absorbed form, and one decode step over a cache of 512 / 2048 tokens. Baseline in
// the same run: OpenBLAS sgemm of the same matrix products (the projections and the core's products
// of that form, in one NoTrans x Trans layout), timed as their sum. x_sgemm = sgemm-sum time / ours
// (1 = no overhead beyond the products); best of 5 alternating runs. Run (OpenBLAS picks its own
// kernel; same threads for both; passive: libgomp's spinning workers otherwise take the 2 cores
// from OpenBLAS's threads, 2.5-5x slower here):
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2
//   OPENBLAS_NUM_THREADS=2 build/bench/bench_attention
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#if defined(FP8MOE_HAVE_BLAS)
#include <cblas.h>
#endif

#include "bench_support.hpp"
#include "fp8moe/attention/mla.hpp"
#include "test_support.hpp"

namespace fm = fp8moe;
namespace at = fp8moe::attention;
namespace nn = fp8moe::nn;

namespace {

constexpr std::int64_t C = 256, QL = 128;
constexpr at::mla_dims dims{4, 32, 16, 32, 128, 0.1f};

/// The matrix products (M, N, K) one mla_forward call of T queries over S keys runs.
std::vector<nn::matmul_shape> products(at::mla_form form, std::int64_t T, std::int64_t S) {
  std::int64_t const H = dims.heads, dn = dims.qk_nope_head_dim, dr = dims.qk_rope_head_dim;
  std::int64_t const dv = dims.v_head_dim, c = dims.kv_lora_rank;
  std::vector<nn::matmul_shape> p{
      {T, QL, C}, {T, dims.q_cols(), QL}, {T, c + dr, C}, {T, C, dims.out_cols()}};
  if (form == at::mla_form::naive) {
    p.push_back({S, dims.kv_cols(), c});
    for (std::int64_t h = 0; h < H; ++h) p.insert(p.end(), {{T, S, dn}, {T, S, dr}, {T, dv, S}});
  } else {
    for (std::int64_t h = 0; h < H; ++h) p.push_back({T, c, dn});
    p.insert(p.end(), {{T * H, S, c}, {T * H, S, dr}, {T * H, c, S}});
    for (std::int64_t h = 0; h < H; ++h) p.push_back({T, dv, c});
  }
  return p;
}

double flops(std::vector<nn::matmul_shape> const& ps) {
  double f = 0;
  for (auto const& s : ps) f += 2.0 * double(s.m) * double(s.n) * double(s.k);
  return f;
}

/// Random float weights of the tiny layer.
struct weights {
  std::vector<float> wq_a = fm::test::random_normal(QL * C, 0.06f, 1);
  std::vector<float> q_norm = fm::test::random_uniform(QL, 0.5f, 1.5f, 2);
  std::vector<float> wq_b = fm::test::random_normal(dims.q_cols() * QL, 0.09f, 3);
  std::vector<float> wkv_a =
      fm::test::random_normal((dims.kv_lora_rank + dims.qk_rope_head_dim) * C, 0.06f, 4);
  std::vector<float> kv_norm = fm::test::random_uniform(dims.kv_lora_rank, 0.5f, 1.5f, 5);
  std::vector<float> wkv_b = fm::test::random_normal(dims.kv_cols() * dims.kv_lora_rank, 0.09f, 6);
  std::vector<float> wo = fm::test::random_normal(C * dims.out_cols(), 0.09f, 7);
  at::mla_weights<float> view() const {
    at::mla_weights<float> w;
    w.wq_a = fm::make_matrix(wq_a.data(), QL, C);
    w.q_norm = q_norm;
    w.wq_b = fm::make_matrix(wq_b.data(), dims.q_cols(), QL);
    w.wkv_a = fm::make_matrix(wkv_a.data(), dims.kv_lora_rank + dims.qk_rope_head_dim, C);
    w.kv_norm = kv_norm;
    w.wkv_b = fm::make_matrix(wkv_b.data(), dims.kv_cols(), dims.kv_lora_rank);
    w.wo = fm::make_matrix(wo.data(), C, dims.out_cols());
    return w;
  }
};

struct rope_state {
  std::vector<float> inv = std::vector<float>(static_cast<std::size_t>(dims.qk_rope_head_dim / 2));
  rope_state() {
    nn::rope_config r;
    r.dim = dims.qk_rope_head_dim;
    r.factor = 4.0;
    r.original_max_position_embeddings = 128;
    r.mscale_all_dim = 1.0;
    nn::rope_frequencies(r, inv);
  }
  nn::rope_table table() const { return {inv, 1.0f}; }
};

/// Counters for `ours` (the timed loop body): tokens/s, FLOP/s of the products, and x_sgemm.
template <class F>
void measure(benchmark::State& st, F&& ours, std::vector<nn::matmul_shape> const& ps, std::int64_t tokens) {
  for (auto _ : st) ours();
  st.counters["tokens/s"] = benchmark::Counter(double(tokens), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["FLOP/s"] = benchmark::Counter(flops(ps), benchmark::Counter::kIsIterationInvariantRate);
#if defined(FP8MOE_HAVE_BLAS)
  struct operands {
    std::vector<float> a, b, c;
  };
  std::vector<operands> ops;
  for (auto const& s : ps)
    ops.push_back({fm::test::random_normal(static_cast<std::size_t>(s.m * s.k), 1.0f, 11),
                   fm::test::random_normal(static_cast<std::size_t>(s.n * s.k), 1.0f, 12),
                   std::vector<float>(static_cast<std::size_t>(s.m * s.n))});
  auto const sgemm = [&] {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      auto const& s = ps[i];
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(s.m), static_cast<int>(s.n),
                  static_cast<int>(s.k), 1.0f, ops[i].a.data(), static_cast<int>(s.k), ops[i].b.data(),
                  static_cast<int>(s.k), 0.0f, ops[i].c.data(), static_cast<int>(s.n));
      benchmark::DoNotOptimize(ops[i].c.data());
    }
  };
  auto const [t_ours, t_sgemm] = fm::test::interleaved_best(ours, sgemm);
  st.counters["x_sgemm"] = t_sgemm / t_ours;
  st.counters["sgemm_ms"] = t_sgemm * 1e3;
#endif
}

/// Prefill: mla_forward of T tokens (no cache), form 0 naive / 1 absorbed.
void BM_mla_prefill(benchmark::State& st) {
  auto const form = st.range(0) == 0 ? at::mla_form::naive : at::mla_form::absorbed;
  std::int64_t const T = st.range(1);
  weights const w;
  rope_state const rs;
  auto const x = fm::test::random_normal(static_cast<std::size_t>(T * C), 1.0f, 20);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(T));
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> out(static_cast<std::size_t>(T * C));
  fm::host_executor const ex;
  std::vector<std::byte> ws(at::workspace_bytes(ex, at::mla_layer_shape<float>{dims, QL, C, T, T, form}));
  auto const wv = w.view();
  measure(
      st,
      [&] {
        at::mla_forward(ex, dims, wv, rs.table(), pos, fm::make_matrix(x.data(), T, C),
                        fm::make_matrix(out.data(), T, C), form, nullptr, nullptr, ws);
        benchmark::DoNotOptimize(out.data());
      },
      products(form, T, T), T);
}

/// One decode step: mla_forward of 1 token over a cache of ctx - 1 tokens (rolled back after each
/// step), form 0 naive (re-expands the whole cache through wkv_b) / 1 absorbed.
void BM_mla_decode(benchmark::State& st) {
  auto const form = st.range(0) == 0 ? at::mla_form::naive : at::mla_form::absorbed;
  std::int64_t const ctx = st.range(1);
  weights const w;
  rope_state const rs;
  auto const wv = w.view();
  fm::host_executor const ex;
  at::mla_cache cache(dims, ctx);
  {  // fill ctx - 1 tokens by an absorbed prefill
    auto const xp = fm::test::random_normal(static_cast<std::size_t>((ctx - 1) * C), 1.0f, 30);
    std::vector<std::int64_t> pos(static_cast<std::size_t>(ctx - 1));
    std::iota(pos.begin(), pos.end(), 0);
    std::vector<float> o(xp.size());
    at::mla_forward(ex, dims, wv, rs.table(), pos, fm::make_matrix(xp.data(), ctx - 1, C),
                    fm::make_matrix(o.data(), ctx - 1, C), at::mla_form::absorbed, &cache);
  }
  auto const x = fm::test::random_normal(static_cast<std::size_t>(C), 1.0f, 31);
  std::vector<std::int64_t> const pos{ctx - 1};
  std::vector<float> out(static_cast<std::size_t>(C));
  std::vector<std::byte> ws(at::workspace_bytes(ex, at::mla_layer_shape<float>{dims, QL, C, 1, ctx, form}));
  measure(
      st,
      [&] {
        at::mla_forward(ex, dims, wv, rs.table(), pos, fm::make_matrix(x.data(), 1, C),
                        fm::make_matrix(out.data(), 1, C), form, &cache, nullptr, ws);
        cache.truncate(ctx - 1);
        benchmark::DoNotOptimize(out.data());
      },
      products(form, 1, ctx), 1);
}

}  // namespace

BENCHMARK(BM_mla_prefill)
    ->ArgsProduct({{0, 1}, {64, 512}})
    ->ArgNames({"absorbed", "T"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_mla_decode)
    ->ArgsProduct({{0, 1}, {512, 2048}})
    ->ArgNames({"absorbed", "ctx"})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
