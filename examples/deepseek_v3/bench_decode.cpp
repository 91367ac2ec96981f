// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Decoding of the tiny DeepSeek-V3 (a random f32 checkpoint written by init; max_position_embeddings
// raised to 4096 so 2048 fits) at contexts 64, 512, 2048 in fp32: one new token per step with the
// latent cache (dsv3::decoder, absorbed MLA over one mla_cache per layer; the step is rolled back with
// truncate so every iteration runs at the same context) against recomputing the full forward over
// context + 1 tokens for that token (the baseline, timed in the same run, best of 3). Counters: tok_s
// (latent cache), recompute_tok_s, x_recompute (speed-up), and bytes per cached token over all layers
// in fp32: latent_B (kv_lora_rank + rope dim per layer) and mha_B (H*(dn+dr) + H*dv per layer).
// Run: OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 build/examples/deepseek_v3/bench_decode
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "config.hpp"
#include "decode.hpp"
#include "init.hpp"
#include "model.hpp"

namespace fs = std::filesystem;

namespace {

/// The checkpoint every benchmark loads: written once per process, removed at exit.
fs::path const& checkpoint_dir() {
  static dsv3::bench_checkpoint const ck(
      "dsv3_bench_decode",
      [] {
        auto c = dsv3::preset("tiny");
        c.max_position_embeddings = 4096;  // the rope table does not depend on it (YaRN factor 4 from 128)
        return c;
      }(),
      "f32");
  return ck.dir();
}

std::vector<std::int32_t> tokens_for(std::int64_t vocab, std::int64_t T) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i)
    t[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 37 + 11) % vocab);
  return t;
}

double seconds_of(auto&& f) {
  double const t0 = dsv3::now_seconds();
  f();
  return dsv3::now_seconds() - t0;
}

void BM_decode(benchmark::State& state) {
  std::int64_t const ctx = state.range(0);
  static dsv3::model full(checkpoint_dir(), dsv3::precision::fp32);  // naive form, no cache
  auto const& p = full.parameters();
  auto const tokens = tokens_for(p.cfg.vocab_size, ctx + 1);
  // baseline: the whole forward over context + 1 tokens for one new token (best of 3)
  double recompute = std::numeric_limits<double>::infinity();
  for (int r = 0; r < 3; ++r)
    recompute = std::min(recompute, seconds_of([&] { benchmark::DoNotOptimize(full.forward(tokens).data); }));
  dsv3::decoder dec(p, ctx + 1);
  dec.step(std::span(tokens).first(static_cast<std::size_t>(ctx)));
  dec.release_activations_above(1);
  auto const next = std::span(tokens).subspan(static_cast<std::size_t>(ctx), 1);
  double best = std::numeric_limits<double>::infinity();
  for (auto _ : state) {
    double const s = seconds_of([&] { benchmark::DoNotOptimize(dec.step(next).data); });
    best = std::min(best, s);
    dec.truncate(ctx);
  }
  auto const f = dsv3::cache_footprint_of(p.cfg);
  state.counters["tok_s"] = 1.0 / best;
  state.counters["recompute_tok_s"] = 1.0 / recompute;
  state.counters["x_recompute"] = recompute / best;
  state.counters["latent_B"] = static_cast<double>(f.latent_bytes(4));
  state.counters["mha_B"] = static_cast<double>(f.mha_bytes(4));
}
BENCHMARK(BM_decode)->Arg(64)->Arg(512)->Arg(2048)->Unit(benchmark::kMillisecond)->MinTime(0.5);

}  // namespace

BENCHMARK_MAIN();
