// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// bench_train: one training step of the tiny DeepSeek-V3 (B = 4 sequences of S = 64 tokens, the demo's
// shape) per recipe (fp32 / bf16 / fp8), tokens/s and the time split by phase (forward, backward,
// optimizer; routing and permute re-timed on the step's own MoE activations), against, in the same run,
// OpenBLAS sgemm of the step's matrix products, forward and backward (every projection, expert, router
// and head product at its shape, the attention core's score and value products; dgrad and wgrad of each
// as two more products of the same size; the MTP layer's too). Counter x_sgemm = step time / sgemm time
// (goal <= 2).
// Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=passive bench_train
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "fp8moe/moe/permute.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/nn/matmul.hpp"
#include "train.hpp"

namespace {

constexpr std::int64_t B = 4, S = 64;

dsv3::token_corpus bench_corpus() {
  dsv3::token_corpus c;
  for (int i = 0; i < 20000; ++i) c.train.push_back((i * 7 + i / 13) % 251);
  return c;
}

/// The (M, N, K) of every matrix product of one sequence's forward (T = S tokens, tiny): the decoder
/// layers, the LM head and, with an MTP layer, its eh_proj, its block and its head.
std::vector<std::array<std::int64_t, 3>> forward_products(dsv3::config const& c, std::int64_t T) {
  std::vector<std::array<std::int64_t, 3>> v;
  std::int64_t const H = c.hidden_size, nh = c.num_attention_heads, dn = c.qk_nope_head_dim,
                     dr = c.qk_rope_head_dim, dv = c.v_head_dim, kvr = c.kv_lora_rank, ql = *c.q_lora_rank,
                     E = c.n_routed_experts, k = c.num_experts_per_tok, Ie = c.moe_intermediate_size,
                     Is = c.n_shared_experts * Ie;
  auto const block = [&](std::int64_t l) {
    v.push_back({T, ql, H});
    v.push_back({T, nh * (dn + dr), ql});
    v.push_back({T, kvr + dr, H});
    v.push_back({T, nh * (dn + dv), kvr});
    for (std::int64_t h = 0; h < nh; ++h) v.push_back({T, T, dn + dr}), v.push_back({T, dv, T});
    v.push_back({T, H, nh * dv});
    if (!c.is_moe_layer(l)) {
      v.push_back({T, 2 * c.intermediate_size, H}), v.push_back({T, H, c.intermediate_size});
      return;
    }
    v.push_back({T, E, H});
    for (std::int64_t e = 0; e < E; ++e)  // balanced loads: T k / E rows each
      v.push_back({T * k / E, 2 * Ie, H}), v.push_back({T * k / E, H, Ie});
    v.push_back({T, 2 * Is, H}), v.push_back({T, H, Is});
  };
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) block(l);
  v.push_back({T, c.vocab_size, H});
  if (c.num_nextn_predict_layers > 0) {  // the MTP layer the trainer trains (depth 1)
    v.push_back({T, H, 2 * H});
    block(c.num_hidden_layers);
    v.push_back({T, c.vocab_size, H});
  }
  return v;
}

/// Seconds of OpenBLAS sgemm (nn::matmul, float) over the step's products: forward, dgrad, wgrad.
double sgemm_step_seconds(dsv3::config const& c) {
  auto const prods = forward_products(c, S);
  std::vector<std::array<std::int64_t, 3>> all;
  for (auto const& p : prods) {
    all.push_back(p);                   // y (M,N) = x (M,K) W^T
    all.push_back({p[0], p[2], p[1]});  // dx (M,K) = dy (M,N) W
    all.push_back({p[1], p[2], p[0]});  // dW (N,K) = dy^T x
  }
  std::int64_t big = 0;
  for (auto const& p : all) big = std::max({big, p[0] * p[1], p[1] * p[2], p[0] * p[2]});
  std::vector<float> a(static_cast<std::size_t>(big), 0.01f), b(a.size(), 0.02f), o(a.size());
  fp8moe::host_executor ex;
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    double const t0 = dsv3::now_seconds();
    for (std::int64_t s = 0; s < B; ++s)
      for (auto const& p : all)
        fp8moe::nn::matmul(ex, fp8moe::make_matrix<float const>(a.data(), p[0], p[2]),
                           fp8moe::nn::transposed(fp8moe::make_matrix<float const>(b.data(), p[1], p[2])),
                           fp8moe::make_matrix(o.data(), p[0], p[1]));
    best = std::min(best, dsv3::now_seconds() - t0);
  }
  return best;
}

void BM_train_step(benchmark::State& st, char const* recipe) {
  dsv3::train_options o;
  o.config = "tiny";
  o.steps = 1000000;
  o.batch = B;
  o.seq = S;
  o.recipe = dsv3::recipe_preset(recipe).with_steps(o.steps, 3e-3f);
  o.log = nullptr;
  o.eval_every = 0;
  dsv3::trainer tr(o, bench_corpus());
  (void)tr.step();  // warm-up (scratch grows)
  double fwd = 0, bwd = 0, opt = 0, route = 0, permute = 0;
  auto const& c = tr.master().cfg;
  auto const rc = dsv3::router_of(c);
  fp8moe::host_executor ex;
  for (auto _ : st) {
    auto const r = tr.step();
    fwd += r.forward_s, bwd += r.backward_s, opt += r.optimizer_s;
    // routing and permute of the last sequence's MoE layers, re-run on its activations (same values)
    st.PauseTiming();
    for (auto l : tr.moe_layers()) {
      auto const& a = tr.net().acts().layers[static_cast<std::size_t>(l)].moe;
      auto const& w = tr.net().parameters().layers[static_cast<std::size_t>(l)].moe;
      double const t0 = dsv3::now_seconds();
      fp8moe::moe::route(
          ex, rc, fp8moe::matrix_view<float const>(a.logits),
          fp8moe::vector_view<float const>{w.bias.data(), static_cast<std::int64_t>(w.bias.size())}, a.ids,
          a.weights,
          fp8moe::vector_view<std::int32_t>{a.counts.data(), static_cast<std::int64_t>(a.counts.size())});
      double const t1 = dsv3::now_seconds();
      fp8moe::moe::build_permute_plan(ex, fp8moe::matrix_view<std::int32_t const>(a.ids), a.plan);
      fp8moe::moe::permute(
          ex, a.plan,
          fp8moe::matrix_view<float const>(tr.net().acts().layers[static_cast<std::size_t>(l)].ffn_in), a.xp);
      double const t2 = dsv3::now_seconds();
      route += (t1 - t0) * B, permute += (t2 - t1) * B;  // per sequence, B sequences a step
    }
    st.ResumeTiming();
  }
  double const n = static_cast<double>(st.iterations());
  double const sg = sgemm_step_seconds(c);
  double const step = (fwd + bwd + opt) / n;
  st.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(B * S) * n, benchmark::Counter::kIsRate);
  st.counters["forward_ms"] = 1e3 * fwd / n;
  st.counters["backward_ms"] = 1e3 * bwd / n;
  st.counters["optimizer_ms"] = 1e3 * opt / n;
  st.counters["routing_ms"] = 1e3 * route / n;
  st.counters["permute_ms"] = 1e3 * permute / n;
  st.counters["sgemm_ms"] = 1e3 * sg;
  st.counters["x_sgemm"] = step / sg;
}

}  // namespace

BENCHMARK_CAPTURE(BM_train_step, fp32, "fp32")->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();
BENCHMARK_CAPTURE(BM_train_step, bf16, "bf16")->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();
BENCHMARK_CAPTURE(BM_train_step, fp8, "fp8")->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();

BENCHMARK_MAIN();
