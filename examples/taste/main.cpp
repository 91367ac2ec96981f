// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The README's "A taste", run: the `taste` function template is the README block itself (extracted
// from README.md at configure time into readme_taste.hpp), called here on the host executor, then the
// README's DualPipe lines. Prints the GEMM's calc_diff against the float product and exits non-zero
// when a promise does not hold. (tests/docs/test_taste.cpp runs the same block on cuda_executor too.)
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "readme_taste.hpp"  // namespace fm = fp8moe; template <fm::executor Exec> auto taste(...)

int main() {
  constexpr std::int64_t T = 256, H = 512, N = 384, E = 256;
  std::mt19937 g{7};
  std::normal_distribution<float> d{0.0f, 1.0f};
  std::vector<fm::bfloat16_t> xs(T * H);
  std::vector<float> ws(N * H), ys(T * N), ls(T * E), bs(E, 0.0f);
  for (auto& v : xs) v = fm::bfloat16_t(d(g));
  for (auto& v : ws) v = 0.05f * d(g);
  for (auto& v : ls) v = d(g);

  auto const [r, p] =
      taste(fm::host_executor{}, fm::make_matrix<fm::bfloat16_t const>(xs.data(), T, H),
            fm::make_matrix<float const>(ws.data(), N, H), fm::make_matrix(ys.data(), T, N),
            fm::make_matrix<float const>(ls.data(), T, E), fm::make_vector<float const>(bs.data(), E));

  // the README's pipeline lines
  auto s = fm::pipeline::dualpipe({.ranks = 8, .microbatches = 20});
  fm::pipeline::validate(s);
  auto t = fm::pipeline::simulate(s, {.f = 1, .b = 2, .w = 1, .fb = 3});
  fm::pipeline::write_svg(t, "dualpipe.svg");

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
  bool const ok = diff < 1e-3 && routed == T * 8 && p.plan.view().rows % 128 == 0 && t.makespan > 0;
  std::printf(
      "taste: gemm calc_diff %.2e, %lld routed slots, %lld permuted rows, DualPipe makespan %.0f: %s\n", diff,
      static_cast<long long>(routed), static_cast<long long>(p.plan.view().rows), t.makespan,
      ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
