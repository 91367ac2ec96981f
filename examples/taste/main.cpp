// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The README's "A taste" snippet, compiled and run as a test so the README stays true: quantize,
// FP8 GEMM (checked against the float product), route, permute, and a DualPipe timeline.
#include <fp8moe/fp8moe.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace fm = fp8moe;

int main() {
  constexpr std::int64_t T = 256, H = 512, N = 384, E = 256;
  std::mt19937 g{7};
  std::normal_distribution<float> d{0.0f, 1.0f};
  std::vector<fm::bfloat16_t> xs(T * H);
  std::vector<float> ws(N * H), ys(T * N), ls(T * E), bs(E, 0.0f);
  for (auto& v : xs) v = fm::bfloat16_t(d(g));
  for (auto& v : ws) v = 0.05f * d(g);
  for (auto& v : ls) v = d(g);
  auto x = fm::matrix_view<fm::bfloat16_t const>(fm::make_matrix(xs.data(), T, H));  // (T,H)
  auto w = fm::matrix_view<float const>(fm::make_matrix(ws.data(), N, H));           // (N,H)
  auto y = fm::make_matrix(ys.data(), T, N);                                         // (T,N)
  auto logits = fm::matrix_view<float const>(fm::make_matrix(ls.data(), T, E));      // (T,E)
  auto bias = fm::vector_view<float const>(fm::make_vector(bs.data(), E));           // (E)

  // ---- README snippet begins
  fm::host_executor exec;                            // or fm::cuda_executor{stream} (nvcc; <fp8moe/cuda.hpp>)
  constexpr auto recipe = fm::scaling::deepseek_v3;  // 1x128 activations, 128x128 weights, fp32 scales
  auto xq = fm::scaling::quantize(exec, x,
                                  recipe.activation);  // x (T,H) bf16/float -> FP8 (T,H) + scales (T,H/128)
  auto wq = fm::scaling::quantize(exec, w,
                                  recipe.weight);  // w (N,H)            -> FP8 (N,H) + scales (N/128,H/128)
  fm::gemm::fp8_gemm(exec, xq.view(), wq.view(), y);  // y (T,N) bf16/float; FP32 promotion every 128 K

  constexpr fm::moe::router_config rc{.experts = 256,
                                      .groups = 8,
                                      .topk_groups = 4,
                                      .k = 8,
                                      .score = fm::moe::score::sigmoid,
                                      .route_scale = 2.5f};
  auto r = fm::moe::route(exec, rc, logits, bias);  // r.ids (T,k), r.weights (T,k), r.counts (E)
  auto p =
      fm::moe::permute(exec, xq.view(), r, fm::moe::contiguous{.m_align = 128});  // rows for grouped_gemm

  auto s = fm::pipeline::dualpipe({.ranks = 8, .microbatches = 20});
  fm::pipeline::validate(s);
  auto t = fm::pipeline::simulate(s, {.f = 1, .b = 2, .w = 1, .fb = 3});
  fm::pipeline::write_svg(t, "dualpipe.svg");
  // ---- README snippet ends

  double num = 0, den = 0;  // DeepGEMM calc_diff of the FP8 GEMM against the unquantized product
  for (std::int64_t i = 0; i < T; ++i)
    for (std::int64_t n = 0; n < N; ++n) {
      double ref = 0;
      for (std::int64_t h = 0; h < H; ++h)
        ref += static_cast<double>(xs[i * H + h].to_float()) * ws[n * H + h];
      num += ref * ys[i * N + n];
      den += ref * ref + static_cast<double>(ys[i * N + n]) * ys[i * N + n];
    }
  double const diff = 1 - 2 * num / den;
  std::int64_t routed = 0;
  for (auto c : r.counts) routed += c;
  bool const ok = diff < 1e-3 && routed == T * rc.k && p.plan.view().rows % 128 == 0 && t.makespan > 0;
  std::printf(
      "taste: gemm calc_diff %.2e, %lld routed slots, %lld permuted rows, DualPipe makespan %.0f: %s\n", diff,
      static_cast<long long>(routed), static_cast<long long>(p.plan.view().rows), t.makespan,
      ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
