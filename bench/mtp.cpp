// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp benchmarks, each with its baseline measured in the same run:
//  - mtp_forward (and forward + loss + backward) of one MTP depth over tiny_block at the tiny shape
//    (T 512, C 256, F 512, V 4096) against OpenBLAS sgemm of the output head alone (T x V x C), the
//    step the forward cannot avoid: x_head_sgemm = t(head sgemm) / t(ours) (1 would be "free");
//  - mtp::sample of one logits row (V 4096 and 129280) against a plain argmax over the same row:
//    x_argmax = t(argmax) / t(sample).
// Times: best of 7 runs each, baseline and ours alternating. Run (one thread count for both):
//   OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 build/bench/bench_mtp
// (passive: spinning libgomp threads otherwise take the 2 cores from OpenBLAS's: 37 ms vs 11 ms here)
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
#include "fp8moe/mtp/block.hpp"
#include "fp8moe/mtp/mtp.hpp"
#include "fp8moe/mtp/sampling.hpp"
#include "test_support.hpp"

namespace fm = fp8moe;
namespace mtp = fp8moe::mtp;

namespace {

std::vector<float> normal(std::int64_t n, float sigma, std::uint64_t seed) {
  return fm::test::random_normal(static_cast<std::size_t>(n), sigma, seed);
}

/// The tiny MTP depth: parameters, gradients, block, module, inputs and workspace.
struct tiny_mtp {
  static constexpr std::int64_t T = 512, C = 256, F = 512, V = 4096;
  std::vector<float> embed = normal(V * C, 1.0f, 1), ones = std::vector<float>(C, 1.0f),
                     eh = normal(C * 2 * C, 0.05f, 2), head = normal(V * C, 0.06f, 3),
                     w1 = normal(F * C, 0.06f, 4), w2 = normal(C * F, 0.04f, 5);
  std::vector<float> d_embed = std::vector<float>(embed.size()), d_c = std::vector<float>(6 * C),
                     d_eh = std::vector<float>(eh.size()), d_head = std::vector<float>(head.size()),
                     d_w1 = std::vector<float>(w1.size()), d_w2 = std::vector<float>(w2.size());
  mtp::tiny_block block{
      {ones, fm::make_matrix<float const>(w1.data(), F, C), fm::make_matrix<float const>(w2.data(), C, F)},
      {std::span<float>(d_c).subspan(5 * C, C), fm::make_matrix(d_w1.data(), F, C),
       fm::make_matrix(d_w2.data(), C, F)}};
  mtp::mtp_module<mtp::tiny_block> m{.weights = {.embed = fm::make_matrix<float const>(embed.data(), V, C),
                                                 .final_norm = ones,
                                                 .enorm = ones,
                                                 .hnorm = ones,
                                                 .eh_proj = fm::make_matrix<float const>(eh.data(), C, 2 * C),
                                                 .head_norm = ones,
                                                 .head = fm::make_matrix<float const>(head.data(), V, C)},
                                     .grads = {.d_embed = fm::make_matrix(d_embed.data(), V, C),
                                               .d_final_norm = std::span<float>(d_c).subspan(0, C),
                                               .d_enorm = std::span<float>(d_c).subspan(C, C),
                                               .d_hnorm = std::span<float>(d_c).subspan(2 * C, C),
                                               .d_eh_proj = fm::make_matrix(d_eh.data(), C, 2 * C),
                                               .d_head_norm = std::span<float>(d_c).subspan(3 * C, C),
                                               .d_head = fm::make_matrix(d_head.data(), V, C)},
                                     .block = &block};
  std::vector<float> h = normal(T * C, 1.0f, 6), logits = std::vector<float>(T * V),
                     dh = std::vector<float>(T * C), losses = std::vector<float>(T);
  std::vector<std::int32_t> tokens, targets, positions;
  fm::host_executor exec;
  std::vector<std::byte> ws = std::vector<std::byte>(mtp::workspace_bytes(exec, m, T));

  tiny_mtp() {
    for (std::int64_t i = 0; i < T; ++i) {
      tokens.push_back(static_cast<std::int32_t>((i * 2654435761u) % V));
      targets.push_back(static_cast<std::int32_t>((i * 40503u + 7) % V));
      positions.push_back(static_cast<std::int32_t>(i));
    }
  }
  mtp::mtp_state<mtp::tiny_block> forward() {
    return mtp::mtp_forward(exec, m, mtp::source::main_model, tokens,
                            fm::make_matrix<float const>(h.data(), T, C), positions,
                            fm::make_matrix(logits.data(), T, V), ws);
  }
  void train_step() {
    auto const st = forward();
    auto const lv = fm::make_matrix<float const>(logits.data(), T, V);
    mtp::mtp_loss(exec, m, lv, targets, losses);
    mtp::mtp_loss_backward(exec, m, lv, targets, fm::make_matrix(logits.data(), T, V));
    mtp::mtp_backward(exec, m, st, lv, fm::matrix_view<float const>{}, fm::make_matrix(dh.data(), T, C), ws);
  }
  /// The baseline: the output head alone, logits (T,V) = normed (T,C) head^T, by OpenBLAS sgemm.
  void head_sgemm(std::vector<float> const& a, std::vector<float>& out) const {
#if defined(FP8MOE_HAVE_BLAS)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, V, C, 1.0f, a.data(), C, head.data(), C, 0.0f,
                out.data(), V);
#else
    (void)a, (void)out;
#endif
    benchmark::DoNotOptimize(out.data());
  }
};

void BM_mtp_forward(benchmark::State& st) {
  tiny_mtp t;
  for (auto _ : st) {
    t.forward();
    benchmark::DoNotOptimize(t.logits.data());
  }
  st.counters["tokens/s"] = benchmark::Counter(tiny_mtp::T, benchmark::Counter::kIsIterationInvariantRate);
#if defined(FP8MOE_HAVE_BLAS)
  std::vector<float> out(t.logits.size());
  auto const [ours, base] =
      fm::test::interleaved_best([&] { t.forward(); }, [&] { t.head_sgemm(t.h, out); }, 7);
  st.counters["x_head_sgemm"] = base / ours;
#endif
}
BENCHMARK(BM_mtp_forward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_mtp_forward_backward(benchmark::State& st) {
  tiny_mtp t;
  for (auto _ : st) t.train_step();
  st.counters["tokens/s"] = benchmark::Counter(tiny_mtp::T, benchmark::Counter::kIsIterationInvariantRate);
#if defined(FP8MOE_HAVE_BLAS)
  std::vector<float> out(t.logits.size());
  auto const [ours, base] =
      fm::test::interleaved_best([&] { t.train_step(); }, [&] { t.head_sgemm(t.h, out); }, 7);
  st.counters["x_head_sgemm"] = base / ours;
#endif
}
BENCHMARK(BM_mtp_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();

/// sample() of one row with options picked by range(1): 0 greedy, 1 temperature, 2 top-k 50,
/// 3 top-p 0.9, 4 top-k 50 + top-p 0.9; x_argmax against std::max_element over the same row.
void BM_sample(benchmark::State& st) {
  std::int64_t const V = st.range(0);
  mtp::sampling_options const opts[] = {{.temperature = 0.0f},
                                        {.temperature = 0.7f},
                                        {.temperature = 0.7f, .top_k = 50},
                                        {.temperature = 0.7f, .top_p = 0.9f},
                                        {.temperature = 0.7f, .top_k = 50, .top_p = 0.9f}};
  auto const o = opts[st.range(1)];
  auto const logits = normal(V, 2.0f, 7);
  std::vector<float> probs(static_cast<std::size_t>(V));
  fm::host_executor const exec;
  std::vector<std::byte> ws(mtp::workspace_bytes(exec, mtp::sampling_shape{V}));
  mtp::rng g(1);
  auto const ours = [&] { benchmark::DoNotOptimize(mtp::sample(exec, logits, o, g, probs, ws)); };
  for (auto _ : st) ours();
  st.counters["tokens/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
  auto const [t_ours, t_base] = fm::test::interleaved_best(
      ours, [&] { benchmark::DoNotOptimize(std::max_element(logits.begin(), logits.end())); }, 21);
  st.counters["x_argmax"] = t_base / t_ours;
}
BENCHMARK(BM_sample)
    ->ArgNames({"V", "opts"})
    ->ArgsProduct({{4096, 129280}, {0, 1, 2, 3, 4}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
