// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Helpers for fp8moe tests: seeded random fills (never zeros only), output poisoning, and
// comparison metrics (max abs/rel error, DeepGEMM's calc_diff).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace fp8moe::test {

/// The larger of a and b, NaN when either is (std::max drops a NaN second argument, so an error
/// maximum built with it would let a NaN pass).
inline double worse(double a, double b) {
  return std::isnan(a) || std::isnan(b) ? std::nan("") : std::max(a, b);
}

/// Deterministic generator: every test seeds its own so failures reproduce.
inline std::mt19937_64& rng(std::uint64_t seed = 0) {
  static thread_local std::mt19937_64 g{0x5eed};
  if (seed) g.seed(seed);
  return g;
}

/// Normal(0, sigma) values.
inline std::vector<float> random_normal(std::size_t n, float sigma = 1.0f, std::uint64_t seed = 1) {
  std::mt19937_64 g{seed};
  std::normal_distribution<float> d{0.0f, sigma};
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

/// Uniform(lo, hi) values.
inline std::vector<float> random_uniform(std::size_t n, float lo, float hi, std::uint64_t seed = 1) {
  std::mt19937_64 g{seed};
  std::uniform_real_distribution<float> d{lo, hi};
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

/// A recognisable NaN payload written into outputs before an op runs, so an unwritten element
/// fails every comparison.
inline constexpr std::uint32_t poison_bits = 0x7FC0DEADu;
inline float poison_float() {
  float f;
  std::memcpy(&f, &poison_bits, 4);
  return f;
}
template <class T>
void poison(std::vector<T>& v) {
  std::memset(v.data(), 0xFF, v.size() * sizeof(T));  // 0xFF.. is NaN in float, bf16, fp8 and e8m0
}

/// DeepGEMM's calc_diff: 1 - 2*sum(x*y) / sum(x*x + y*y), computed in double.
template <class A, class B>
double calc_diff(A const& x, B const& y) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    double const a = static_cast<double>(x[i]), b = static_cast<double>(y[i]);
    num += a * b;
    den += a * a + b * b;
  }
  return den == 0 ? 0.0 : 1.0 - 2.0 * num / den;
}

}  // namespace fp8moe::test
