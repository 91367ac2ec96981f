// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Helpers of the host element-wise loops: elementwise_threads (one thread for small passes),
// exp_range_reduced (exp by range reduction to [-ln2/2, ln2/2] and a degree-7 Taylor polynomial,
// branch-free so a loop over it vectorises; relative error < 1.5e-7 against std::exp, tested) and
// FP8MOE_HOST_SIMD_CLONES, which compiles a hot host loop for AVX-512 and AVX2+FMA besides the
// baseline (picked at load time; GCC on x86-64 Linux only).
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"

// GCC's -O3 unroll-and-jam of an outer loop defeats register blocking (measured 4-5x slower in the
// combine), so it is switched off for these functions. Not under TSan: it instruments the load-time
// (ifunc) resolver, which runs before TSan is set up. Not for nvcc's host pass.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !FP8MOE_CUDA_COMPILER && !defined(__SANITIZE_THREAD__)
#define FP8MOE_HOST_SIMD_CLONES                                                \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), \
                 optimize("no-loop-unroll-and-jam")))
#else
#define FP8MOE_HOST_SIMD_CLONES
#endif

namespace fp8moe::nn::host {

/// Threads for an element-wise pass over `elements` values: 1 below 32K (starting a team costs more
/// than the work, and its workers then take the cores from the BLAS threads), else the executor's.
inline int elementwise_threads(host_executor const& exec, std::int64_t elements) {
  return elements < (std::int64_t{1} << 15) ? 1 : exec.num_threads();
}

/// exp(x) in float without a libm call, for loops the compiler vectorises: x = k ln2 + r with
/// k = round(x / ln2) (two-part ln2, exact for |k| <= 128), e^r by its degree-7 Taylor polynomial
/// (truncation error < 6e-9 relative on |r| <= ln2/2), times 2^k built in the exponent bits.
/// Relative error < 1.5e-7 for x in [-87.3, 88.7] (tests/nn/test_host_elementwise.cpp). Below
/// -87.33 (where std::exp is subnormal or 0) it returns 0; above 88.72 +inf; NaN gives NaN.
inline float exp_range_reduced(float x) {
  constexpr float lo = -87.33654f, hi = 88.72283f;
  constexpr float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-6f;
  constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float const xc = x < lo ? lo : (x > hi ? hi : x);
  float const k = (xc * log2e + round_magic) - round_magic;
  float const r = (xc - k * ln2_hi) - k * ln2_lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^k for k in [-126, 128): k = 128 (x near hi) is split as 2 * 2^127
  auto const ki = static_cast<std::int32_t>(k);
  std::int32_t const k1 = ki > 127 ? 127 : ki;
  float const scale = std::bit_cast<float>(static_cast<std::uint32_t>(k1 + 127) << 23);
  float const y = p * scale * (ki > 127 ? 2.0f : 1.0f);
  return x < lo ? 0.0f : (x > hi ? std::numeric_limits<float>::infinity() : (x != x ? x : y));
}

}  // namespace fp8moe::nn::host
