// SPDX-License-Identifier: Apache-2.0
// A consumer that builds with -Wconversion -Wsign-conversion -Wshadow -Werror: fp8moe fetched as a
// subproject is a SYSTEM dependency, so instantiating its templates here adds no warnings.
#include <fp8moe/fp8moe.hpp>

#include <cstddef>
#include <cstdio>
#include <vector>

namespace fm = fp8moe;

int main() {
  constexpr std::int64_t T = 256, H = 256, N = 128, E = 32;
  constexpr auto uz = [](std::int64_t v) { return static_cast<std::size_t>(v); };
  std::vector<fm::bfloat16_t> xs(uz(T * H));
  std::vector<float> ws(uz(N * H)), ys(uz(T * N)), ls(uz(T * E)), bs(uz(E), 0.0f);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = fm::bfloat16_t(static_cast<float>(i % 7) - 3.0f);
  for (std::size_t i = 0; i < ws.size(); ++i) ws[i] = 0.01f * static_cast<float>(i % 5);
  for (std::size_t i = 0; i < ls.size(); ++i) ls[i] = static_cast<float>(i % 11) * 0.1f;
  auto x = fm::matrix_view<fm::bfloat16_t const>(fm::make_matrix(xs.data(), T, H));
  auto w = fm::matrix_view<float const>(fm::make_matrix(ws.data(), N, H));
  auto y = fm::make_matrix(ys.data(), T, N);
  auto logits = fm::matrix_view<float const>(fm::make_matrix(ls.data(), T, E));
  auto bias = fm::vector_view<float const>(fm::make_vector(bs.data(), E));

  fm::host_executor exec;
  constexpr auto recipe = fm::scaling::deepseek_v3;
  auto xq = fm::scaling::quantize(exec, x, recipe.activation);
  auto wq = fm::scaling::quantize(exec, w, recipe.weight);
  fm::gemm::fp8_gemm(exec, xq.view(), wq.view(), y);
  constexpr fm::moe::router_config rc{.experts = 32,
                                      .groups = 4,
                                      .topk_groups = 2,
                                      .k = 4,
                                      .score = fm::moe::score::sigmoid,
                                      .route_scale = 2.5f};
  auto r = fm::moe::route(exec, rc, logits, bias);
  auto p = fm::moe::permute(exec, xq.view(), r, fm::moe::contiguous{.m_align = 128});
  auto s = fm::pipeline::dualpipe({.ranks = 4, .microbatches = 8});
  fm::pipeline::validate(s);
  auto t = fm::pipeline::simulate(s, {.f = 1, .b = 2, .w = 1, .fb = 3});
  bool const ok = p.plan.view().rows % 128 == 0 && t.makespan > 0;
  std::printf("strict consumer: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
