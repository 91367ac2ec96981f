// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Building blocks of the host FP8 GEMM: FP8 -> float row conversion (vectorised bit arithmetic,
// exact for every code incl. subnormals/NaN/inf, independent of FTZ/DAZ) and the 3x4 dot-product
// micro-kernel with FP32 promotion per K block. Pure functions on caller buffers; thread-safe.
// Compiled once for the baseline ISA and once (x86-64 GCC/Clang) for AVX2+FMA, picked at run time.
#pragma once

#include <cstdint>
#include <cstring>

#include "fp8moe/config.hpp"
#include "fp8moe/numeric/numeric.hpp"

#if !FP8MOE_CUDA_COMPILER && (defined(__GNUC__) || defined(__clang__))
#define FP8MOE_GEMM_VECTOR_EXT 1
#define FP8MOE_GEMM_INLINE __attribute__((always_inline)) inline
#else
#define FP8MOE_GEMM_VECTOR_EXT 0
#define FP8MOE_GEMM_INLINE inline
#endif
#if FP8MOE_GEMM_VECTOR_EXT && defined(__x86_64__)
#define FP8MOE_GEMM_X86_DISPATCH 1
#else
#define FP8MOE_GEMM_X86_DISPATCH 0
#endif

namespace fp8moe::gemm::host {

/// Micro-tile: MR rows of A x NR rows of B, 8-float vectors along K.
inline constexpr int mr = 3;
inline constexpr int nr = 4;
inline constexpr int vec = 8;

#if FP8MOE_GEMM_VECTOR_EXT
// The vector helpers are always inlined, so the ABI of 32-byte vector arguments never matters.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef std::uint32_t v8u __attribute__((vector_size(32)));
typedef std::int32_t v8i __attribute__((vector_size(32)));
typedef std::uint8_t v16b __attribute__((vector_size(16)));
typedef std::uint16_t v8s __attribute__((vector_size(16)));
typedef std::uint32_t v4u __attribute__((vector_size(16)));
typedef std::uint64_t v2q __attribute__((vector_size(16)));

// 32-byte vectors cross helper boundaries by reference only (no by-value vector ABI involved).
FP8MOE_GEMM_INLINE void load8(v8f& v, float const* p) {
  std::memcpy(&v, p, sizeof v);
}
FP8MOE_GEMM_INLINE v4f load4(float const* p) {
  v4f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
FP8MOE_GEMM_INLINE void store4(float* p, v4f v) {
  std::memcpy(p, &v, sizeof v);
}
FP8MOE_GEMM_INLINE void store8(float* p, v8f const& v) {
  std::memcpy(p, &v, sizeof v);
}

/// Horizontal sums of four vectors: {sum v0, sum v1, sum v2, sum v3}.
FP8MOE_GEMM_INLINE v4f hsum4(v8f const& v0, v8f const& v1, v8f const& v2, v8f const& v3) {
  v8f const s01 = __builtin_shufflevector(v0, v1, 0, 8, 2, 10, 4, 12, 6, 14) +
                  __builtin_shufflevector(v0, v1, 1, 9, 3, 11, 5, 13, 7, 15);
  v8f const s23 = __builtin_shufflevector(v2, v3, 0, 8, 2, 10, 4, 12, 6, 14) +
                  __builtin_shufflevector(v2, v3, 1, 9, 3, 11, 5, 13, 7, 15);
  v8f const u = __builtin_shufflevector(s01, s23, 0, 1, 8, 9, 4, 5, 12, 13) +
                __builtin_shufflevector(s01, s23, 2, 3, 10, 11, 6, 7, 14, 15);
  return __builtin_shufflevector(u, u, 0, 1, 2, 3) + __builtin_shufflevector(u, u, 4, 5, 6, 7);
}

/// Zero-extends 16 bytes to two vectors of eight 32-bit lanes (byte/word unpacks with zero;
/// the compiler emits pmovzx/punpck, no scalar extraction).
FP8MOE_GEMM_INLINE void widen16(v16b const& b, v8u& lo, v8u& hi) {
  v16b const z{};
  v8s const zw{};
  v8s const w0 = (v8s)__builtin_shufflevector(b, z, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  v8s const w1 =
      (v8s)__builtin_shufflevector(b, z, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  v4u const q0 = (v4u)__builtin_shufflevector(w0, zw, 0, 8, 1, 9, 2, 10, 3, 11);
  v4u const q1 = (v4u)__builtin_shufflevector(w0, zw, 4, 12, 5, 13, 6, 14, 7, 15);
  v4u const q2 = (v4u)__builtin_shufflevector(w1, zw, 0, 8, 1, 9, 2, 10, 3, 11);
  v4u const q3 = (v4u)__builtin_shufflevector(w1, zw, 4, 12, 5, 13, 6, 14, 7, 15);
  lo = __builtin_shufflevector(q0, q1, 0, 1, 2, 3, 4, 5, 6, 7);
  hi = __builtin_shufflevector(q2, q3, 0, 1, 2, 3, 4, 5, 6, 7);
}

/// Eight FP8 codes (in 32-bit lanes) -> eight exact floats at dst, by integer arithmetic on the
/// bit fields.
template <class T>
FP8MOE_GEMM_INLINE void fp8_lanes_to_float(v8u const& x, float* dst) {
  using F = typename T::format;
  constexpr int M = F::mantissa_bits;
  constexpr std::uint32_t exp_shift = 127u - static_cast<std::uint32_t>(F::bias);
  v8u const sign = (x & 0x80u) << 24;
  v8u const mag = x & 0x7Fu;
  // normal numbers: rebias the exponent field
  v8u const normal = sign | ((mag << (23 - M)) + (exp_shift << 23));
  // subnormals (exponent field 0): mantissa * 2^(1 - bias - M), exact in float arithmetic
  v8f const sub_mag =
      __builtin_convertvector((v8i)mag, v8f) * (1.0f / static_cast<float>(1u << (F::bias + M - 1)));
  v8u const sub = sign | (v8u)sub_mag;
  v8u bits = (mag < (1u << M)) ? sub : normal;
  if constexpr (F::has_infinity) {  // E5M2: exponent field all ones -> inf / NaN
    v8u const special = sign | 0x7F800000u | ((mag & 0x3u) << 21);
    bits = (mag >= 0x7Cu) ? special : bits;
  } else {  // E4M3: S.1111.111 -> NaN
    bits = (mag == 0x7Fu) ? v8u{} + 0x7FC00000u : bits;
  }
  v8f const f = (v8f)bits;
  store8(dst, f);
}

/// Eight FP8 codes at src -> eight floats at dst (reads exactly 8 bytes).
template <class T>
FP8MOE_GEMM_INLINE void fp8x8_to_float(std::uint8_t const* src, float* dst) {
  std::uint64_t w;
  std::memcpy(&w, src, 8);
  v2q const q{w, 0};
  v8u lo, hi;
  widen16((v16b)q, lo, hi);
  fp8_lanes_to_float<T>(lo, dst);
}

/// Sixteen FP8 codes at src -> sixteen floats at dst (reads exactly 16 bytes).
template <class T>
FP8MOE_GEMM_INLINE void fp8x16_to_float(std::uint8_t const* src, float* dst) {
  v16b b;
  std::memcpy(&b, src, 16);
  v8u lo, hi;
  widen16(b, lo, hi);
  fp8_lanes_to_float<T>(lo, dst);
  fp8_lanes_to_float<T>(hi, dst + 8);
}
#endif

/// 256-entry FP8 -> float table (exact), for strided reads and the portable path.
template <class T>
struct fp8_table {
  float v[256];
  constexpr fp8_table() : v{} {
    for (int i = 0; i < 256; ++i) v[i] = T::from_bits(static_cast<std::uint8_t>(i)).to_float();
  }
};
template <class T>
inline constexpr fp8_table<T> fp8_lut{};

/// n contiguous FP8 codes -> floats.
template <class T, bool Simd>
FP8MOE_GEMM_INLINE void convert_row(std::uint8_t const* src, float* dst, std::int64_t n) {
  std::int64_t i = 0;
#if FP8MOE_GEMM_VECTOR_EXT
  if constexpr (Simd) {
    for (; i + 16 <= n; i += 16) fp8x16_to_float<T>(src + i, dst + i);
    for (; i + 8 <= n; i += 8) fp8x8_to_float<T>(src + i, dst + i);
  }
#endif
  float const* lut = fp8_lut<T>.v;
  for (; i < n; ++i) dst[i] = lut[src[i]];
}

/// Packs a strided operand: dst[r * ld + k] = value at src[r + k * stride] for r < rows, k < len
/// (row r of the operand is a column of bytes). Full 8x8 blocks are converted eight bytes at a
/// time and transposed in registers; the edges go through the table.
template <class T, bool Simd>
FP8MOE_GEMM_INLINE void pack_transposed(std::uint8_t const* src, std::int64_t stride, std::int64_t rows,
                                        std::int64_t len, float* dst, std::int64_t ld) {
  float const* lut = fp8_lut<T>.v;
  std::int64_t r0 = 0;
#if FP8MOE_GEMM_VECTOR_EXT
  if constexpr (Simd) {
    for (; r0 + 8 <= rows; r0 += 8) {
      std::int64_t k0 = 0;
      for (; k0 + 8 <= len; k0 += 8) {
        alignas(32) float v[8][8];  // v[i] = rows r0..r0+7 at k0 + i
        for (int i = 0; i < 8; ++i) fp8x8_to_float<T>(src + r0 + (k0 + i) * stride, v[i]);
        v8f x0, x1, x2, x3, x4, x5, x6, x7;
        load8(x0, v[0]);
        load8(x1, v[1]);
        load8(x2, v[2]);
        load8(x3, v[3]);
        load8(x4, v[4]);
        load8(x5, v[5]);
        load8(x6, v[6]);
        load8(x7, v[7]);
        v8f const t0 = __builtin_shufflevector(x0, x1, 0, 8, 1, 9, 4, 12, 5, 13);
        v8f const t1 = __builtin_shufflevector(x0, x1, 2, 10, 3, 11, 6, 14, 7, 15);
        v8f const t2 = __builtin_shufflevector(x2, x3, 0, 8, 1, 9, 4, 12, 5, 13);
        v8f const t3 = __builtin_shufflevector(x2, x3, 2, 10, 3, 11, 6, 14, 7, 15);
        v8f const t4 = __builtin_shufflevector(x4, x5, 0, 8, 1, 9, 4, 12, 5, 13);
        v8f const t5 = __builtin_shufflevector(x4, x5, 2, 10, 3, 11, 6, 14, 7, 15);
        v8f const t6 = __builtin_shufflevector(x6, x7, 0, 8, 1, 9, 4, 12, 5, 13);
        v8f const t7 = __builtin_shufflevector(x6, x7, 2, 10, 3, 11, 6, 14, 7, 15);
        v8f const u0 = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
        v8f const u1 = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
        v8f const u2 = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
        v8f const u3 = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
        v8f const u4 = __builtin_shufflevector(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);
        v8f const u5 = __builtin_shufflevector(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
        v8f const u6 = __builtin_shufflevector(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);
        v8f const u7 = __builtin_shufflevector(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
        float* o = dst + r0 * ld + k0;
        store8(o + 0 * ld, __builtin_shufflevector(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11));
        store8(o + 1 * ld, __builtin_shufflevector(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11));
        store8(o + 2 * ld, __builtin_shufflevector(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11));
        store8(o + 3 * ld, __builtin_shufflevector(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11));
        store8(o + 4 * ld, __builtin_shufflevector(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15));
        store8(o + 5 * ld, __builtin_shufflevector(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15));
        store8(o + 6 * ld, __builtin_shufflevector(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15));
        store8(o + 7 * ld, __builtin_shufflevector(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15));
      }
      for (; k0 < len; ++k0)
        for (std::int64_t r = r0; r < r0 + 8; ++r) dst[r * ld + k0] = lut[src[r + k0 * stride]];
    }
  }
#endif
  for (std::int64_t k = 0; k < len; ++k)
    for (std::int64_t r = r0; r < rows; ++r) dst[r * ld + k] = lut[src[r + k * stride]];
}

/// Promotion micro-kernel: for one K block of `kv` 8-float vectors,
///   acc[i][j] += (sum_k a[i][k] * b[j][k]) * (sa[i] * sb[j])      i < MR, j < NR
/// a: MR rows with stride lda floats; b: NR rows with stride ldb; acc: MR rows with stride ldc.
template <bool Simd>
FP8MOE_GEMM_INLINE void dot_block_3x4(float const* a, std::int64_t lda, float const* b, std::int64_t ldb,
                                      std::int64_t kv, float const* sa, float const* sb, float* acc,
                                      std::int64_t ldc) {
#if FP8MOE_GEMM_VECTOR_EXT
  if constexpr (Simd) {
    v8f c00{}, c01{}, c02{}, c03{}, c10{}, c11{}, c12{}, c13{}, c20{}, c21{}, c22{}, c23{};
    float const* a0 = a;
    float const* a1 = a + lda;
    float const* a2 = a + 2 * lda;
    float const* b0 = b;
    float const* b1 = b + ldb;
    float const* b2 = b + 2 * ldb;
    float const* b3 = b + 3 * ldb;
    for (std::int64_t v = 0; v < kv; ++v) {
      std::int64_t const o = v * vec;
      v8f x0, x1, x2, y;
      load8(x0, a0 + o);
      load8(x1, a1 + o);
      load8(x2, a2 + o);
      load8(y, b0 + o);
      c00 += x0 * y;
      c10 += x1 * y;
      c20 += x2 * y;
      load8(y, b1 + o);
      c01 += x0 * y;
      c11 += x1 * y;
      c21 += x2 * y;
      load8(y, b2 + o);
      c02 += x0 * y;
      c12 += x1 * y;
      c22 += x2 * y;
      load8(y, b3 + o);
      c03 += x0 * y;
      c13 += x1 * y;
      c23 += x2 * y;
    }
    v4f const s_b = load4(sb);
    v4f const p0 = hsum4(c00, c01, c02, c03);
    v4f const p1 = hsum4(c10, c11, c12, c13);
    v4f const p2 = hsum4(c20, c21, c22, c23);
    store4(acc, load4(acc) + p0 * (sa[0] * s_b));
    store4(acc + ldc, load4(acc + ldc) + p1 * (sa[1] * s_b));
    store4(acc + 2 * ldc, load4(acc + 2 * ldc) + p2 * (sa[2] * s_b));
    return;
  }
#endif
  for (int i = 0; i < mr; ++i) {
    for (int j = 0; j < nr; ++j) {
      float lanes[vec] = {};
      for (std::int64_t v = 0; v < kv; ++v) {
        for (int l = 0; l < vec; ++l) lanes[l] += a[i * lda + v * vec + l] * b[j * ldb + v * vec + l];
      }
      float partial = 0.0f;
      for (int l = 0; l < vec; ++l) partial += lanes[l];
      acc[i * ldc + j] += partial * (sa[i] * sb[j]);
    }
  }
}

}  // namespace fp8moe::gemm::host

#if FP8MOE_GEMM_VECTOR_EXT && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
