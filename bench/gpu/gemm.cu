// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// GPU benchmark of the block-scaled FP8 GEMM (cuda_executor) for DeepSeek-V3 shapes: dense at
// M = 64, 128, 4096, grouped contiguous, grouped masked and K-grouped, each with cuBLASLt's
// block-scaled FP8 GEMM (VEC128_32F x BLK128x128_32F, or VEC128 x VEC128) and a cuBLASLt BF16 GEMM
// of the same FLOPs in the same run. Counters: TFLOP/s and % of the 1979 TFLOP/s dense FP8 peak.
// Times with CUDA events around each launch (manual time); inputs random, never zeros.
#include <benchmark/benchmark.h>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "fp8moe/gemm/cuda/gemm.hpp"

namespace {

namespace fg = fp8moe::gemm;
namespace fc = fp8moe::gemm::cuda;
constexpr double fp8_peak_tflops = 1979.0;  // H100/H200 SXM dense FP8 (fp8_gemm.md §4)

#define BENCH_CUBLAS(call)                                                                       \
  do {                                                                                           \
    cublasStatus_t const s_ = (call);                                                            \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                           \
      state.SkipWithError((std::string(#call) + " failed: " + std::to_string(int(s_))).c_str()); \
      return;                                                                                    \
    }                                                                                            \
  } while (0)

/// Device buffer filled with random bytes (FP8/BF16 data: finite values chosen by `kind`).
struct dbuf {
  void* p = nullptr;
  std::size_t bytes = 0;
  explicit dbuf(std::size_t b) : bytes(b) { FP8MOE_CUDA_CHECK(cudaMalloc(&p, b ? b : 16)); }
  ~dbuf() { cudaFree(p); }
  dbuf(dbuf const&) = delete;
};

__global__ void fill_kernel(std::uint8_t* p, std::size_t n, int kind, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 0x9E3779B1u ^ seed;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    if (kind == 0) {  // E4M3: random sign/mantissa, exponent field 4..10 (finite, never NaN)
      p[i] = static_cast<std::uint8_t>((h & 0x87u) | ((4u + (h >> 8) % 7u) << 3));
    } else if (kind == 1) {  // BF16 pairs of bytes: values in +-[0.5, 2)
      if (i % 2 == 1)
        p[i] = static_cast<std::uint8_t>((h & 0x80u) | 0x3Fu);
      else
        p[i] = static_cast<std::uint8_t>(h);
    } else {  // FP32 scales: 4-byte words around 2^-7 (byte 3 = 0x3C)
      std::uint32_t const b = i % 4;
      p[i] = b == 3   ? 0x3C
             : b == 2 ? static_cast<std::uint8_t>(0x00 | (h & 0x7F))
                      : static_cast<std::uint8_t>(h);
    }
  }
}
void fill(dbuf& b, int kind, std::uint32_t seed) {
  fill_kernel<<<264, 256>>>(static_cast<std::uint8_t*>(b.p), b.bytes, kind, seed);
  FP8MOE_CUDA_CHECK_LAUNCH();
}

struct event_timer {
  cudaEvent_t a{}, b{};
  event_timer() {
    cudaEventCreate(&a);
    cudaEventCreate(&b);
  }
  ~event_timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
};

template <class F>
void time_loop(benchmark::State& state, double flops, F&& launch) {
  event_timer t;
  for (int i = 0; i < 3; ++i) launch();  // warm-up: module load, tensor maps, cuBLASLt plans
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  for (auto _ : state) {
    cudaEventRecord(t.a);
    launch();
    cudaEventRecord(t.b);
    cudaEventSynchronize(t.b);
    float ms = 0;
    cudaEventElapsedTime(&ms, t.a, t.b);
    state.SetIterationTime(ms / 1e3);
  }
  FP8MOE_CUDA_CHECK(cudaGetLastError());
  state.counters["TFLOP/s"] = benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pct_fp8_peak"] = benchmark::Counter(flops / 1e12 / fp8_peak_tflops * 100.0,
                                                      benchmark::Counter::kIsIterationInvariantRate);
}

/// Turns a thrown fp8moe::error (allocation, launch, validation) into a skipped benchmark.
template <class F>
void guarded(benchmark::State& state, F&& f) {
  try {
    f();
  } catch (fp8moe::error const& e) {
    state.SkipWithError(e.what());
  }
}

// ---- cuBLASLt baselines --------------------------------------------------------------------------
// Row-major D (M,N) = A (M,K) B (N,K)^T is column-major D^T (N,M) = B^T' ... i.e. cuBLASLt "TN":
// m' = N, n' = M, A' = B (op T, ld K), B' = A (op N, ld K), D' ld N.
enum class lt_kind { fp8_blockscaled_1d2d, fp8_blockscaled_1d1d, bf16 };

void cublaslt_gemm(benchmark::State& state, lt_kind kind, std::int64_t m, std::int64_t n, std::int64_t k) {
  bool const fp8 = kind != lt_kind::bf16;
  std::size_t const es = fp8 ? 1 : 2;
  dbuf a(m * k * es), b(n * k * es), d(m * n * (kind == lt_kind::fp8_blockscaled_1d1d ? 4 : 2));
  dbuf sa(m * ((k + 127) / 128) * 4 + 64),
      sb((kind == lt_kind::fp8_blockscaled_1d1d ? n : (n + 127) / 128 + 1) * (((k + 127) / 128 + 3) / 4 * 4) *
             4 +
         64);
  dbuf ws(64u << 20);
  fill(a, fp8 ? 0 : 1, 1);
  fill(b, fp8 ? 0 : 1, 2);
  fill(sa, 2, 3);
  fill(sb, 2, 4);
  cublasLtHandle_t h;
  BENCH_CUBLAS(cublasLtCreate(&h));
  cublasLtMatmulDesc_t op;
  BENCH_CUBLAS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t const ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  BENCH_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  BENCH_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  cudaDataType_t const in_t = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  cudaDataType_t const out_t = kind == lt_kind::fp8_blockscaled_1d1d ? CUDA_R_32F : CUDA_R_16BF;
  if (fp8) {
    // A' is our B (weights): 128x128 blocks (1D2D) or 1x128 (1D1D); B' is our A: 1x128
    cublasLtMatmulMatrixScale_t const ma = kind == lt_kind::fp8_blockscaled_1d2d
                                               ? CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F
                                               : CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    cublasLtMatmulMatrixScale_t const mb = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    BENCH_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &ma, sizeof(ma)));
    BENCH_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mb, sizeof(mb)));
    void const* pa = sb.p;  // A' scales = weight scales
    void const* pb = sa.p;
    BENCH_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &pa, sizeof(pa)));
    BENCH_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &pb, sizeof(pb)));
  }
  cublasLtMatrixLayout_t la, lb, ld;
  BENCH_CUBLAS(cublasLtMatrixLayoutCreate(&la, in_t, k, n, k));
  BENCH_CUBLAS(cublasLtMatrixLayoutCreate(&lb, in_t, k, m, k));
  BENCH_CUBLAS(cublasLtMatrixLayoutCreate(&ld, out_t, n, m, n));
  cublasLtMatmulPreference_t pref;
  BENCH_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
  std::size_t const wsb = ws.bytes;
  BENCH_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                                    sizeof(wsb)));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  BENCH_CUBLAS(cublasLtMatmulAlgoGetHeuristic(h, op, la, lb, ld, ld, pref, 1, &heur, &found));
  if (found == 0) {
    state.SkipWithError("cuBLASLt: no algorithm for this problem");
    return;
  }
  float const alpha = 1.0f, beta = 0.0f;
  cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
  time_loop(state, 2.0 * m * n * k, [&] {
    st = cublasLtMatmul(h, op, &alpha, b.p, la, a.p, lb, &beta, d.p, ld, d.p, ld, &heur.algo, ws.p, ws.bytes,
                        nullptr);
  });
  if (st != CUBLAS_STATUS_SUCCESS) state.SkipWithError("cublasLtMatmul failed");
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(ld);
  cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(h);
}

// ---- fp8moe --------------------------------------------------------------------------------------
// kernel_params built directly (device buffers, DeepGEMM layouts: MN-major A scales padded to 4).

struct fp8moe_problem {
  fc::kernel_params p;
  std::vector<dbuf*> owned;
  std::vector<int> k_offsets;
  ~fp8moe_problem() {
    for (auto* b : owned) delete b;
  }
  dbuf& alloc(std::size_t bytes, int kind, std::uint32_t seed) {
    owned.push_back(new dbuf(bytes));
    fill(*owned.back(), kind, seed);
    return *owned.back();
  }
};

void run_fp8moe(benchmark::State& state, fp8moe_problem& f, double flops,
                fc::family_choice fam = fc::family_choice::automatic) {
  try {
    time_loop(state, flops, [&] {
      fc::run(nullptr, f.p, f.k_offsets.empty() ? nullptr : f.k_offsets.data(), "bench", fam, 0, 128);
    });
  } catch (fp8moe::error const& e) {
    state.SkipWithError(e.what());
  }
}

void setup_operands(fp8moe_problem& f, std::int64_t a_rows, std::int64_t n, std::int64_t k, int a_groups,
                    int b_groups, int b_scale_gran) {
  auto& p = f.p;
  std::int64_t const kb = k / 128, apad = (a_rows + 3) / 4 * 4;
  p.k = static_cast<int>(k), p.n = static_cast<int>(n);
  p.a = static_cast<std::uint8_t const*>(f.alloc(a_rows * k * a_groups, 0, 11).p);
  p.a_row_stride = k, p.a_group_stride = a_rows * k;
  p.b = static_cast<std::uint8_t const*>(f.alloc(n * k * b_groups, 0, 12).p);
  p.b_row_stride = k, p.b_group_stride = n * k;
  p.sfa = static_cast<float const*>(f.alloc(apad * kb * a_groups * 4, 2, 13).p);
  p.sfa_layout = {.row_stride = 1, .col_stride = apad, .group_stride = apad * kb};
  std::int64_t const brows = b_scale_gran == 1 ? n : (n + 127) / 128;
  p.sfb = static_cast<float const*>(f.alloc(brows * kb * b_groups * 4, 2, 14).p);
  p.sfb_layout = {.row_stride = kb, .col_stride = 1, .group_stride = brows * kb};
  p.b_scale_granularity = b_scale_gran;
}

// DeepSeek-V3 dense (N, K) pairs (fp8_gemm.md §1.10).
constexpr std::int64_t dense_nk[][2] = {{2112, 7168},  {24576, 1536}, {32768, 512},
                                        {7168, 16384}, {4096, 7168},  {7168, 2048}};

void BM_dense_fp8moe_body(benchmark::State& state) {
  std::int64_t const m = state.range(0), n = state.range(1), k = state.range(2);
  fp8moe_problem f;
  f.p.layout = fc::layout_kind::dense;
  f.p.m = static_cast<int>(m);
  setup_operands(f, m, n, k, 1, 1, 128);
  f.p.d = f.alloc(m * n * 2, 1, 15).p;
  f.p.d_row_stride = n;
  f.p.out = fc::output_kind::bf16;
  run_fp8moe(state, f, 2.0 * m * n * k, static_cast<fc::family_choice>(state.range(3)));
}
void BM_dense_fp8moe(benchmark::State& state) {
  guarded(state, [&] { BM_dense_fp8moe_body(state); });
}
void BM_dense_cublaslt_fp8_body(benchmark::State& state) {
  cublaslt_gemm(state, lt_kind::fp8_blockscaled_1d2d, state.range(0), state.range(1), state.range(2));
}
void BM_dense_cublaslt_fp8(benchmark::State& state) {
  guarded(state, [&] { BM_dense_cublaslt_fp8_body(state); });
}
void BM_dense_cublaslt_bf16_body(benchmark::State& state) {
  cublaslt_gemm(state, lt_kind::bf16, state.range(0), state.range(1), state.range(2));
}
void BM_dense_cublaslt_bf16(benchmark::State& state) {
  guarded(state, [&] { BM_dense_cublaslt_bf16_body(state); });
}

void dense_args(benchmark::internal::Benchmark* b, bool family) {
  for (std::int64_t m : {64, 128, 4096})
    for (auto const& nk : dense_nk) {
      if (family) {
        b->Args({m, nk[0], nk[1], static_cast<std::int64_t>(fc::family_choice::automatic)});
        // the portable mma.sync kernel, for reference, at the compute-bound size only
        if (m == 4096) b->Args({m, nk[0], nk[1], static_cast<std::int64_t>(fc::family_choice::mma_sync)});
      } else {
        b->Args({m, nk[0], nk[1]});
      }
    }
}
BENCHMARK(BM_dense_fp8moe)
    ->Apply([](auto* b) { dense_args(b, true); }) -> ArgNames({"M", "N", "K", "family"}) -> UseManualTime()
        -> Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dense_cublaslt_fp8)
    ->Apply([](auto* b) { dense_args(b, false); }) -> ArgNames({"M", "N", "K"}) -> UseManualTime()
        -> Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dense_cublaslt_bf16)
    ->Apply([](auto* b) { dense_args(b, false); }) -> ArgNames({"M", "N", "K"}) -> UseManualTime()
        -> Unit(benchmark::kMicrosecond);

// Grouped contiguous: G experts x m_per rows (128-aligned), DeepSeek-V3 expert shapes. The
// baseline is one dense cuBLASLt GEMM of the same M_sum x N x K (same FLOPs, no grouping).
void BM_contiguous_fp8moe_body(benchmark::State& state) {
  std::int64_t const g = state.range(0), m_per = state.range(1), n = state.range(2), k = state.range(3);
  std::int64_t const m = g * m_per;
  fp8moe_problem f;
  f.p.layout = fc::layout_kind::grouped_contiguous;
  f.p.m = static_cast<int>(m), f.p.groups = static_cast<int>(g);
  setup_operands(f, m, n, k, 1, static_cast<int>(g), 128);
  std::vector<int> ids(m);
  for (std::int64_t r = 0; r < m; ++r) ids[r] = static_cast<int>(r / m_per);
  auto& dids = f.alloc(m * 4, 2, 0);
  FP8MOE_CUDA_CHECK(cudaMemcpy(dids.p, ids.data(), m * 4, cudaMemcpyHostToDevice));
  f.p.m_indices = static_cast<int const*>(dids.p);
  f.p.d = f.alloc(m * n * 2, 1, 15).p;
  f.p.d_row_stride = n;
  run_fp8moe(state, f, 2.0 * m * n * k);
}
void BM_contiguous_fp8moe(benchmark::State& state) {
  guarded(state, [&] { BM_contiguous_fp8moe_body(state); });
}
void BM_contiguous_cublaslt_fp8_same_flops_body(benchmark::State& state) {
  cublaslt_gemm(state, lt_kind::fp8_blockscaled_1d2d, state.range(0) * state.range(1), state.range(2),
                state.range(3));
}
void BM_contiguous_cublaslt_fp8_same_flops(benchmark::State& state) {
  guarded(state, [&] { BM_contiguous_cublaslt_fp8_same_flops_body(state); });
}
void BM_contiguous_cublaslt_bf16_same_flops_body(benchmark::State& state) {
  cublaslt_gemm(state, lt_kind::bf16, state.range(0) * state.range(1), state.range(2), state.range(3));
}
void BM_contiguous_cublaslt_bf16_same_flops(benchmark::State& state) {
  guarded(state, [&] { BM_contiguous_cublaslt_bf16_same_flops_body(state); });
}
/// {G, m_per, N, K} grid of the grouped benchmarks, timed by CUDA events (manual time, us).
void grouped_grid(benchmark::internal::Benchmark* b, std::initializer_list<std::pair<int, int>> gms) {
  for (auto const& gm : gms)
    for (auto const& nk : {std::pair<int, int>{4096, 7168}, {7168, 2048}})
      b->Args({gm.first, gm.second, nk.first, nk.second});
  b->ArgNames({"G", "m_per", "N", "K"})->UseManualTime()->Unit(benchmark::kMicrosecond);
}
void grouped_args(benchmark::internal::Benchmark* b) {
  grouped_grid(b, {{4, 8192}, {8, 4096}});
}
BENCHMARK(BM_contiguous_fp8moe)->Apply(grouped_args);
BENCHMARK(BM_contiguous_cublaslt_fp8_same_flops)->Apply(grouped_args);
BENCHMARK(BM_contiguous_cublaslt_bf16_same_flops)->Apply(grouped_args);

// Grouped masked (decoding): G groups, every group masked_m = m_per of max_m = 2*m_per.
void BM_masked_fp8moe_body(benchmark::State& state) {
  std::int64_t const g = state.range(0), m_per = state.range(1), n = state.range(2), k = state.range(3);
  std::int64_t const max_m = 2 * m_per;
  fp8moe_problem f;
  f.p.layout = fc::layout_kind::grouped_masked;
  f.p.m = static_cast<int>(max_m), f.p.groups = static_cast<int>(g);
  setup_operands(f, max_m, n, k, static_cast<int>(g), static_cast<int>(g), 128);
  std::vector<int> counts(g, static_cast<int>(m_per));
  auto& dc = f.alloc(g * 4, 2, 0);
  FP8MOE_CUDA_CHECK(cudaMemcpy(dc.p, counts.data(), g * 4, cudaMemcpyHostToDevice));
  f.p.masked_m = static_cast<int const*>(dc.p);
  f.p.d = f.alloc(g * max_m * n * 2, 1, 15).p;
  f.p.d_row_stride = n, f.p.d_group_stride = max_m * n;
  time_loop(state, 2.0 * g * m_per * n * k, [&] {
    fc::run(nullptr, f.p, nullptr, "bench", fc::family_choice::automatic, static_cast<int>(m_per));
  });
}
void BM_masked_fp8moe(benchmark::State& state) {
  guarded(state, [&] { BM_masked_fp8moe_body(state); });
}
void masked_args(benchmark::internal::Benchmark* b) {
  grouped_grid(b, {{1, 1024}, {2, 512}, {4, 256}});
}
BENCHMARK(BM_masked_fp8moe)->Apply(masked_args);
BENCHMARK(BM_contiguous_cublaslt_fp8_same_flops)
    ->Name("BM_masked_cublaslt_fp8_same_flops")
    ->Apply(masked_args);
BENCHMARK(BM_contiguous_cublaslt_bf16_same_flops)
    ->Name("BM_masked_cublaslt_bf16_same_flops")
    ->Apply(masked_args);

// K-grouped weight gradient: D_g (M,N) FP32 += A_g B_g^T over K_g tokens per group, 1x128 x 1x128
// scales. Baseline: one cuBLASLt 1D1D (VEC128 x VEC128) GEMM over all G*K_g tokens, FP32 out.
void BM_kgrouped_fp8moe_body(benchmark::State& state) {
  std::int64_t const g = state.range(0), m = state.range(1), n = state.range(2), kg = state.range(3);
  std::int64_t const k = g * kg;
  fp8moe_problem f;
  f.p.layout = fc::layout_kind::k_grouped;
  f.p.m = static_cast<int>(m), f.p.groups = static_cast<int>(g);
  setup_operands(f, m, n, k, 1, 1, 1);
  f.k_offsets.resize(g + 1);
  for (std::int64_t i = 0; i <= g; ++i) f.k_offsets[i] = static_cast<int>(i * kg);
  auto& d = f.alloc(g * m * n * 4, 2, 16);
  f.p.d = d.p, f.p.d_row_stride = n, f.p.d_group_stride = m * n, f.p.out = fc::output_kind::f32;
  f.p.c = static_cast<float const*>(d.p), f.p.c_row_stride = n, f.p.c_group_stride = m * n;  // in place
  run_fp8moe(state, f, 2.0 * m * n * k, static_cast<fc::family_choice>(state.range(4)));
}
void BM_kgrouped_fp8moe(benchmark::State& state) {
  guarded(state, [&] { BM_kgrouped_fp8moe_body(state); });
}
void BM_kgrouped_cublaslt_fp8_1d1d_body(benchmark::State& state) {
  cublaslt_gemm(state, lt_kind::fp8_blockscaled_1d1d, state.range(1), state.range(2),
                state.range(0) * state.range(3));
}
void BM_kgrouped_cublaslt_fp8_1d1d(benchmark::State& state) {
  guarded(state, [&] { BM_kgrouped_cublaslt_fp8_1d1d_body(state); });
}
void BM_kgrouped_cublaslt_bf16_body(benchmark::State& state) {
  cublaslt_gemm(state, lt_kind::bf16, state.range(1), state.range(2), state.range(0) * state.range(3));
}
void BM_kgrouped_cublaslt_bf16(benchmark::State& state) {
  guarded(state, [&] { BM_kgrouped_cublaslt_bf16_body(state); });
}
void kgrouped_args(benchmark::internal::Benchmark* b) {
  for (auto const& mn : {std::pair<int, int>{4096, 7168}, {7168, 2048}})
    b->Args({4, mn.first, mn.second, 8192, 0});
}
void kgrouped_family_args(benchmark::internal::Benchmark* b) {
  for (auto const& mn : {std::pair<int, int>{4096, 7168}, {7168, 2048}})
    for (auto fam : {fc::family_choice::automatic, fc::family_choice::mma_sync})
      b->Args({4, mn.first, mn.second, 8192, static_cast<std::int64_t>(fam)});
}
BENCHMARK(BM_kgrouped_fp8moe)
    ->Apply(kgrouped_family_args)
    ->ArgNames({"G", "M", "N", "K_g", "family"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_kgrouped_cublaslt_fp8_1d1d)
    ->Apply(kgrouped_args)
    ->ArgNames({"G", "M", "N", "K_g", "family"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_kgrouped_cublaslt_bf16)
    ->Apply(kgrouped_args)
    ->ArgNames({"G", "M", "N", "K_g", "family"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  if (fp8moe::cuda_device_count() == 0) {
    std::printf("no CUDA device visible: GPU benchmark skipped\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
