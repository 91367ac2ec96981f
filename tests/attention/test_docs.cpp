// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// docs/attention.md's example, extracted at configure time (generated/attention_docs.hpp) and run on
// the host: prefill_then_decode (naive prefill into an mla_cache, absorbed one-token decode steps)
// gives the outputs of one naive forward over all tokens, for several prefill lengths.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "attention_docs.hpp"  // generated from docs/attention.md
#include "test_support.hpp"

TEST_CASE("docs/attention.md: prefill_then_decode == one naive forward over all tokens") {
  constexpr std::int64_t C = 16, QL = 8, T = 10;
  constexpr at::mla_dims dims{2, 8, 4, 6, 12, 0.25f};
  auto const wq_a = fm::test::random_normal(QL * C, 0.4f, 1),
             q_norm = fm::test::random_uniform(QL, 0.5f, 1.5f, 2);
  auto const wq_b = fm::test::random_normal(dims.q_cols() * QL, 0.4f, 3);
  auto const wkv_a = fm::test::random_normal((dims.kv_lora_rank + dims.qk_rope_head_dim) * C, 0.4f, 4);
  auto const kv_norm = fm::test::random_uniform(dims.kv_lora_rank, 0.5f, 1.5f, 5);
  auto const wkv_b = fm::test::random_normal(dims.kv_cols() * dims.kv_lora_rank, 0.4f, 6);
  auto const wo = fm::test::random_normal(C * dims.out_cols(), 0.4f, 7);
  at::mla_weights<float> w;
  w.wq_a = fm::make_matrix(wq_a.data(), QL, C);
  w.q_norm = q_norm;
  w.wq_b = fm::make_matrix(wq_b.data(), dims.q_cols(), QL);
  w.wkv_a = fm::make_matrix(wkv_a.data(), dims.kv_lora_rank + dims.qk_rope_head_dim, C);
  w.kv_norm = kv_norm;
  w.wkv_b = fm::make_matrix(wkv_b.data(), dims.kv_cols(), dims.kv_lora_rank);
  w.wo = fm::make_matrix(wo.data(), C, dims.out_cols());
  std::vector<float> inv(2);
  fp8moe::nn::rope_frequencies({.dim = 4}, inv);
  fp8moe::nn::rope_table const rope{inv, 1.0f};
  auto const x = fm::test::random_normal(T * C, 1.0f, 8);
  std::vector<std::int64_t> pos(T);
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> full(T * C);
  at::mla_forward(fm::host_executor{}, dims, w, rope, pos, fm::make_matrix(x.data(), T, C),
                  fm::make_matrix(full.data(), T, C));
  double scale = 0;
  for (float v : full) scale = std::max(scale, double(std::abs(v)));
  REQUIRE(scale > 0.1);
  for (std::int64_t P : {1, 4, 9, 10}) {
    CAPTURE(P);
    std::vector<float> out(T * C);
    fm::test::poison(out);
    std::int64_t const cached =
        prefill_then_decode(fm::host_executor{}, dims, w, rope, fm::make_matrix(x.data(), T, C), P,
                            fm::make_matrix(out.data(), T, C));
    CHECK(cached == T);
    // Tolerance: naive and absorbed differ by float association only (test_mla_layer.cpp): 2e-6.
    for (std::int64_t i = 0; i < T * C; ++i) REQUIRE(std::abs(out[i] - full[i]) <= 2e-6 * scale);
  }
}
