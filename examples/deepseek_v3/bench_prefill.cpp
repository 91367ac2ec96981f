// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Prefill of the tiny DeepSeek-V3 (a random fp8 checkpoint written by init) at T = 64, 512, 2048 in
// fp32, bf16 and fp8, against OpenBLAS sgemm of the same model's matrix products in the same run: every
// projection, the router, each expert on the rows routed to it in that forward, the shared expert, the
// LM head, and the attention scores and P.V of every head as full T x T products. Counters: tok_s
// (tokens/s), x_sgemm (model time / sgemm-sum time; goal for fp32 at T = 512: <= 1.5), and the time
// split per layer type in ms (embed, attn, dense, moe, head; core = the MLA core inside attn) and the
// sgemm sum's split the same way (sg_*). Best of 15 alternating runs (5 at T = 2048).
// Run (OpenBLAS must pick its own kernel; the same thread count for both):
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
//   build/examples/deepseek_v3/bench_prefill
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <cblas.h>

#include "bench_util.hpp"
#include "config.hpp"
#include "init.hpp"
#include "model.hpp"

namespace fs = std::filesystem;

namespace {

/// The checkpoint every benchmark loads: written once per process, removed at exit.
fs::path const& checkpoint_dir() {
  static dsv3::bench_checkpoint const ck("dsv3_bench_prefill", dsv3::preset("tiny"), "fp8");
  return ck.dir();
}

/// One model per precision, loaded once.
dsv3::model& model_for(dsv3::precision p) {
  static std::map<dsv3::precision, std::unique_ptr<dsv3::model>> models;
  auto& m = models[p];
  if (!m)
    m = std::make_unique<dsv3::model>(
        checkpoint_dir(), p,
        dsv3::model_options{
            .exec = {std::getenv("DSV3_THREADS") ? std::atoi(std::getenv("DSV3_THREADS")) : 0}});
  return *m;
}

/// Layer types of the time split: the sgemm baseline is split the same way.
enum category { attn_proj, attn_core, dense, moe, head, categories };
char const* const category_name[categories] = {"proj", "core", "dense", "moe", "head"};

struct gemm_shape {
  std::int64_t m, n, k;
  category cat;
};

/// Every matrix product of the forward the model just ran (its activations give T and the routing).
std::vector<gemm_shape> model_gemms(dsv3::model const& md) {
  auto const& c = md.config();
  auto const& a = md.acts();
  std::int64_t const T = a.tokens, H = c.hidden_size, nh = c.num_attention_heads, dn = c.qk_nope_head_dim,
                     dr = c.qk_rope_head_dim, dv = c.v_head_dim, kvr = c.kv_lora_rank;
  std::vector<gemm_shape> g;
  auto mlp = [&](std::int64_t rows, std::int64_t I, category cat) {
    if (rows == 0) return;
    g.push_back({rows, 2 * I, H, cat});  // [gate; up] in one product, as the model computes it
    g.push_back({rows, H, I, cat});
  };
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    if (c.q_lora_rank) {
      g.push_back({T, *c.q_lora_rank, H, attn_proj});
      g.push_back({T, nh * (dn + dr), *c.q_lora_rank, attn_proj});
    } else {
      g.push_back({T, nh * (dn + dr), H, attn_proj});
    }
    g.push_back({T, kvr + dr, H, attn_proj});
    g.push_back({T, nh * (dn + dv), kvr, attn_proj});
    for (std::int64_t h = 0; h < nh; ++h) {
      g.push_back({T, T, dn + dr, attn_core});  // scores
      g.push_back({T, dv, T, attn_core});       // P V
    }
    g.push_back({T, H, nh * dv, attn_proj});
    if (!c.is_moe_layer(static_cast<std::int64_t>(l))) {
      mlp(T, c.intermediate_size, dense);
      continue;
    }
    g.push_back({T, c.n_routed_experts, H, moe});  // router
    for (auto n : a.layers[l].moe.counts) mlp(n, c.moe_intermediate_size, moe);
    if (c.n_shared_experts > 0) mlp(T, c.n_shared_experts * c.moe_intermediate_size, moe);
  }
  g.push_back({T, c.vocab_size, H, head});  // LM head
  return g;
}

/// Operands of the sgemm baseline, allocated once per shape list.
struct sgemm_sum {
  std::vector<gemm_shape> shapes;
  std::vector<std::vector<float>> a, b, c;
  double flops = 0;
  explicit sgemm_sum(std::vector<gemm_shape> s) : shapes(std::move(s)) {
    for (auto const& x : shapes) {
      a.emplace_back(static_cast<std::size_t>(x.m * x.k), 0.01f);
      b.emplace_back(static_cast<std::size_t>(x.n * x.k), 0.02f);
      c.emplace_back(static_cast<std::size_t>(x.m * x.n), 0.0f);
      flops += 2.0 * static_cast<double>(x.m * x.n * x.k);
    }
  }
  /// Runs every product (or those of one category); returns the seconds per category.
  std::array<double, categories> run(int only = -1) {
    std::array<double, categories> sec{};
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      auto const& x = shapes[i];
      if (only >= 0 && x.cat != only) continue;
      auto const t0 = std::chrono::steady_clock::now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(x.m), static_cast<int>(x.n),
                  static_cast<int>(x.k), 1.0f, a[i].data(), static_cast<int>(x.k), b[i].data(),
                  static_cast<int>(x.k), 0.0f, c[i].data(), static_cast<int>(x.n));
      sec[x.cat] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    return sec;
  }
};

double seconds_of(auto&& fn) {
  auto const t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void BM_prefill(benchmark::State& state, dsv3::precision p) {
  std::int64_t const T = state.range(0);
  auto& md = model_for(p);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i)
    tokens[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 7919 + 13) % md.config().vocab_size);
  md.forward(tokens);  // warm-up, and the routing the sgemm baseline replays
  sgemm_sum base(model_gemms(md));
  base.run();
  int const reps = T <= 512 ? 15 : 5;
  double best = 1e30, best_base = 1e30;
  dsv3::layer_timings split{};
  std::array<double, categories> base_split{};
  for (auto _ : state) {
    for (int r = 0; r < reps; ++r) {  // alternate, keep the best of each (a load change hits both alike)
      double const t = seconds_of([&] { md.forward(tokens); });
      if (t < best) best = t, split = md.timings();
      std::array<double, categories> sp{};
      double const tb = seconds_of([&] { sp = base.run(); });
      if (tb < best_base) best_base = tb, base_split = sp;
    }
    state.SetIterationTime(best);
  }
  state.counters["tok_s"] = static_cast<double>(T) / best;
  state.counters["sgemm_ms"] = best_base * 1e3;
  state.counters["x_sgemm"] = best / best_base;
  state.counters["sgemm_GFLOPs"] = base.flops / best_base * 1e-9;
  state.counters["embed_ms"] = split.embedding * 1e3;
  state.counters["attn_ms"] = split.attention * 1e3;
  state.counters["core_ms"] = split.attention_core * 1e3;
  state.counters["dense_ms"] = split.dense_mlp * 1e3;
  state.counters["moe_ms"] = split.moe * 1e3;
  state.counters["head_ms"] = split.head * 1e3;
  for (int k = 0; k < categories; ++k)  // the sgemm baseline's split
    state.counters[std::string("sg_") + category_name[k] + "_ms"] =
        base_split[static_cast<std::size_t>(k)] * 1e3;
}

void register_all() {
  for (auto p : {dsv3::precision::fp32, dsv3::precision::bf16, dsv3::precision::fp8})
    benchmark::RegisterBenchmark(("prefill_tiny/" + std::string(dsv3::to_string(p))).c_str(), BM_prefill, p)
        ->Arg(64)
        ->Arg(512)
        ->Arg(2048)
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
