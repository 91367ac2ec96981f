// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Runs a check on every one of the 2^32 float32 bit patterns (OpenMP over 4096 chunks of 2^20
// consecutive patterns, ascending within a chunk), counts mismatches, prints the first few.
// Shared by the cuda_fp8.h oracle test and the float64-model test of tests/numeric.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace fp8moe::test {

inline float as_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// make_check(first_pattern) returns a callable check(u, got, want) -> bool for the chunk that
/// starts at first_pattern (patterns then come in ascending order), so a check may keep state.
template <class MakeCheck>
std::uint64_t sweep_chunks(char const* what, MakeCheck make_check) {
  auto const t0 = std::chrono::steady_clock::now();
  std::atomic<std::uint64_t> bad{0};
  std::atomic<int> printed{0};
  constexpr std::int64_t chunks = 1 << 12;
#pragma omp parallel for schedule(dynamic, 4)
  for (std::int64_t c = 0; c < chunks; ++c) {
    std::uint64_t local = 0;
    std::uint64_t const begin = static_cast<std::uint64_t>(c) << 20;
    auto check = make_check(static_cast<std::uint32_t>(begin));
    for (std::uint64_t i = begin; i < begin + (1u << 20); ++i) {
      std::uint32_t const u = static_cast<std::uint32_t>(i);
      std::uint32_t got = 0, want = 0;
      if (!check(u, got, want)) {
        ++local;
        if (printed.fetch_add(1) < 8)
          std::printf("  %s mismatch: input 0x%08x got 0x%x want 0x%x\n", what, u, got, want);
      }
    }
    bad += local;
  }
  double const s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[exhaustive] %-28s 2^32 inputs, %llu mismatches, %.1f s\n", what,
              static_cast<unsigned long long>(bad.load()), s);
  return bad.load();
}

/// A stateless check(u, got, want) for every pattern.
template <class Check>
std::uint64_t sweep(char const* what, Check check) {
  return sweep_chunks(what, [&](std::uint32_t) { return check; });
}

}  // namespace fp8moe::test
