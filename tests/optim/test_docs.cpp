// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// docs/optim.md's example, compiled as written (extracted at configure time into
// generated/optim_docs.hpp) and run on the host: the fused clip (grad_scale) equals clip_grad_norm
// followed by a plain step, bitwise; a NaN gradient skips the step with the weights, moments and
// gradients untouched and the report naming the tensor.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "optim_docs.hpp"
#include "test_support.hpp"

namespace {
/// Three tensors (a matrix, a norm weight without decay, an embedding) with gradients of norm > 1.
struct model {
  std::vector<std::vector<float>> w, g;
  std::vector<std::vector<fm::bfloat16_t>> m, v;
  std::vector<param_state> params;
  model() {
    std::vector<std::size_t> const sizes{3000, 64, 1029};
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      w.push_back(fm::test::random_normal(sizes[i], 0.02f, 10 + i));
      g.push_back(fm::test::random_normal(sizes[i], 0.1f, 20 + i));  // norm ~ 0.1 sqrt(4093) ~ 6.4: clipped
      m.emplace_back(sizes[i], fm::bfloat16_t(0.0f));
      v.emplace_back(sizes[i], fm::bfloat16_t(0.0f));
    }
    char const* names[] = {"model.layers.0.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
                           "model.embed_tokens.weight"};
    for (std::size_t i = 0; i < sizes.size(); ++i)
      params.push_back({names[i], w[i], g[i], m[i], v[i], i == 0});
  }
};
}  // namespace

TEST_CASE("docs/optim.md example: the fused clip equals clip_grad_norm + adamw_step; a NaN skips the step") {
  constexpr optim::warmup_cosine schedule{
      .peak_lr = 1e-3f, .floor_lr = 1e-4f, .warmup_steps = 10, .total_steps = 100};
  fm::host_executor const exec;
  model a, b;
  std::string report;
  for (std::int64_t step = 1; step <= 3; ++step) {
    REQUIRE(optimizer_step(exec, a.params, step, schedule, report));
    // the unfused way: clip the gradients in place, then a plain step
    std::vector<std::span<float>> grads;
    std::vector<optim::adamw_tensor<fm::bfloat16_t>> ts;
    for (std::size_t i = 0; i < b.w.size(); ++i) {
      grads.push_back(b.g[i]);
      ts.push_back({b.w[i], b.g[i], b.m[i], b.v[i], i == 0});
    }
    optim::grad_norm_result r;
    optim::clip_grad_norm(exec, grads, 1.0f, &r);
    CHECK(r.norm > 1.0);  // the clip is active
    optim::adamw_step(exec, optim::adamw_config{.lr = schedule.lr(step)}, step, ts);
    for (std::size_t i = 0; i < a.w.size(); ++i) {
      CHECK(std::memcmp(a.w[i].data(), b.w[i].data(), a.w[i].size() * 4) == 0);
      CHECK(std::memcmp(a.m[i].data(), b.m[i].data(), a.m[i].size() * 2) == 0);
    }
    for (std::size_t i = 0; i < a.g.size(); ++i)
      b.g[i] = a.g[i];  // the clip scaled b's; same gradients next step
  }
  CHECK(report.rfind("gradient norm ", 0) == 0);
  // the norm-weight tensor was not decayed: with wd = 0 and the same updates it would be identical
  // (covered in test_optim_adamw); here: a NaN in the norm weight's gradient skips the whole step
  a.g[1][17] = NAN;
  auto const w0 = a.w, g0 = a.g;
  auto const m0 = a.m;
  CHECK_FALSE(optimizer_step(exec, a.params, 4, schedule, report));
  CHECK(report ==
        "non-finite gradient (NaN or Inf) in tensor 1 'model.layers.0.input_layernorm.weight', element 17");
  CHECK(a.w == w0);
  for (std::size_t i = 0; i < a.m.size(); ++i)
    CHECK(std::memcmp(a.m[i].data(), m0[i].data(), a.m[i].size() * 2) == 0);
}
