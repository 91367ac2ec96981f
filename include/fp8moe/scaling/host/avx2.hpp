// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Hand-written x86-64 AVX2 kernels of the host quantize path, the same operations and bits as the
// AVX-512 ones (avx512.hpp): tile amax, encode, per-column encode for the transpose, dequantize into
// bf16 and float. 8 float lanes; no masked loads for 16-bit data, so tails go through a zero-padded
// copy. (F16C converts IEEE half, not bf16, and FMA would change the rounding: neither is used.)
// Compiled only where FP8MOE_SCALING_X86 (GCC/Clang on x86-64, not nvcc).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fp8moe/scaling/host/isa.hpp"

#if FP8MOE_SCALING_X86
namespace fp8moe::scaling::detail {

/// Codes of 8 non-NaN floats f * k (or f / k), f >= 0, k > 0 finite, one per 32-bit lane: the
/// integer round-to-nearest-even of encode16_avx512 with shifts, adds and one blend.
template <fp8_format F, bool Divide, bool Clamp>
FP8MOE_SCALING_AVX2_TARGET inline __m256i encode8_avx2(__m256 f, __m256 k, __m256i over) {
  using E = encode_constants<F>;
  __m256 const y = Divide ? _mm256_div_ps(f, k) : _mm256_mul_ps(f, k);
  __m256i const a = _mm256_castps_si256(y);
  __m256i const odd = _mm256_and_si256(_mm256_srli_epi32(a, E::shift), _mm256_set1_epi32(1));
  __m256i const t =
      _mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(static_cast<std::int32_t>(E::addend))), odd);
  __m256i normal = _mm256_srli_epi32(t, E::shift);
  if constexpr (Clamp) normal = _mm256_min_epu32(normal, over);
  __m256i const sub = _mm256_sub_epi32(
      _mm256_castps_si256(_mm256_add_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(E::magic_bits)))),
      _mm256_set1_epi32(E::magic_bits));
  return _mm256_blendv_epi8(normal, sub, _mm256_cmpgt_epi32(_mm256_set1_epi32(E::min_normal), a));
}

/// Codes (sign included) of 8 floats x, one per 32-bit lane, with per-lane scale k.
template <fp8_format F, bool Divide, bool Clamp>
FP8MOE_SCALING_AVX2_TARGET inline __m256i encode8_signed_avx2(__m256i x, __m256 k, __m256i over) {
  __m256i const f = _mm256_and_si256(x, _mm256_set1_epi32(0x7FFFFFFF));
  __m256i const c = encode8_avx2<F, Divide, Clamp>(_mm256_castsi256_ps(f), k, over);
  return _mm256_or_si256(c, _mm256_srli_epi32(_mm256_xor_si256(x, f), 24));
}

/// Codes of 16 bf16 (one 256-bit load): unpacking |x| with zero words gives two float vectors in
/// in-lane interleaved order (elements 0-3, 8-11 and 4-7, 12-15), scaled by k_lo and k_hi in that
/// order; packus_epi32 of their codes restores element order; the sign is bit 15 of each input
/// word. Returns 16 codes as 16-bit lanes in element order.
template <fp8_format F, bool Divide, bool Clamp>
FP8MOE_SCALING_AVX2_TARGET inline __m256i encode16_bf16_avx2(__m256i x, __m256 k_lo, __m256 k_hi,
                                                             __m256i over) {
  __m256i const a = _mm256_and_si256(x, _mm256_set1_epi16(0x7FFF));
  __m256i const z = _mm256_setzero_si256();
  __m256i const c0 =
      encode8_avx2<F, Divide, Clamp>(_mm256_castsi256_ps(_mm256_unpacklo_epi16(z, a)), k_lo, over);
  __m256i const c1 =
      encode8_avx2<F, Divide, Clamp>(_mm256_castsi256_ps(_mm256_unpackhi_epi16(z, a)), k_hi, over);
  __m256i const w = _mm256_packus_epi32(c0, c1);
  return _mm256_or_si256(w, _mm256_and_si256(_mm256_srli_epi16(x, 8), _mm256_set1_epi16(0x80)));
}

/// Codes (sign included) of 16 bf16 x under a power-of-two scale (e7 = e << 7 per 16-bit lane)
/// as 16-bit lanes: encode32_pow2_avx512's 16-bit encode; `slow` gets all-ones in the lanes it
/// cannot encode (below the FP8 normal range).
template <fp8_format F>
FP8MOE_SCALING_AVX2_TARGET inline __m256i encode16_pow2_avx2(__m256i x, __m256i e7, __m256i& slow) {
  using P = pow2_encode_constants<F>;
  __m256i const a = _mm256_and_si256(x, _mm256_set1_epi16(0x7FFF));
  __m256i const y = _mm256_add_epi16(a, e7);
  __m256i const zero = _mm256_cmpeq_epi16(a, _mm256_setzero_si256());
  slow = _mm256_andnot_si256(zero, _mm256_cmpgt_epi16(_mm256_set1_epi16(P::min_normal), y));
  __m256i const odd = _mm256_and_si256(_mm256_srli_epi16(y, P::shift), _mm256_set1_epi16(1));
  __m256i const t = _mm256_add_epi16(_mm256_add_epi16(y, _mm256_set1_epi16(P::addend)), odd);
  __m256i const c = _mm256_andnot_si256(zero, _mm256_srli_epi16(t, P::shift));
  return _mm256_or_si256(c, _mm256_and_si256(_mm256_srli_epi16(x, 8), _mm256_set1_epi16(0x80)));
}

/// 32 codes of bf16 src under power-of-two scales (e7 of elements 0-15 and 16-31) into dst;
/// false (nothing written) when a lane needs the 32-bit encode.
template <fp8_format F>
FP8MOE_SCALING_AVX2_TARGET inline bool encode32_pow2_avx2(void const* src, __m256i e7_0, __m256i e7_1,
                                                          std::uint8_t* dst) {
  __m256i const* const p = static_cast<__m256i const*>(src);
  __m256i s0, s1;
  __m256i const c0 = encode16_pow2_avx2<F>(_mm256_loadu_si256(p), e7_0, s0);
  __m256i const c1 = encode16_pow2_avx2<F>(_mm256_loadu_si256(p + 1), e7_1, s1);
  __m256i const slow = _mm256_or_si256(s0, s1);
  if (!_mm256_testz_si256(slow, slow)) return false;
  // packus_epi16: qwords [0-7, 16-23 | 8-15, 24-31] -> element order
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                      _mm256_permute4x64_epi64(_mm256_packus_epi16(c0, c1), 0xD8));
  return true;
}

/// 32 codes of 32 elements at src into dst. Scales k[0..3]: float, per lane of the 8-element
/// groups; bf16, per lane of the two interleaved halves (encode16_bf16_avx2) of each 16.
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX2_TARGET inline void encode32_avx2(In const* src, __m256 const* k, __m256i over,
                                                     std::uint8_t* dst) {
  __m256i const* const p = reinterpret_cast<__m256i const*>(src);  // (lambdas lose the target)
  __m256i b;
  if constexpr (std::is_same_v<In, float>) {
    __m256i const a =
        _mm256_packus_epi32(encode8_signed_avx2<F, Divide, Clamp>(_mm256_loadu_si256(p + 0), k[0], over),
                            encode8_signed_avx2<F, Divide, Clamp>(_mm256_loadu_si256(p + 1), k[1], over));
    __m256i const c =
        _mm256_packus_epi32(encode8_signed_avx2<F, Divide, Clamp>(_mm256_loadu_si256(p + 2), k[2], over),
                            encode8_signed_avx2<F, Divide, Clamp>(_mm256_loadu_si256(p + 3), k[3], over));
    // dwords: [0-3, 8-11, 16-19, 24-27 | 4-7, 12-15, 20-23, 28-31]
    b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, c), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  } else {
    b = _mm256_packus_epi16(
        encode16_bf16_avx2<F, Divide, Clamp>(_mm256_loadu_si256(p + 0), k[0], k[1], over),
        encode16_bf16_avx2<F, Divide, Clamp>(_mm256_loadu_si256(p + 1), k[2], k[3], over));
    b = _mm256_permute4x64_epi64(b, 0xD8);  // qwords [0-7, 16-23 | 8-15, 24-31] -> element order
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), b);
}

/// encode32_avx2 out of line (the fallback of the 16-bit power-of-two loops).
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX2_TARGET __attribute__((noinline)) void encode32_outline_avx2(In const* src,
                                                                                __m256 const* k, __m256i over,
                                                                                std::uint8_t* dst) {
  encode32_avx2<F, Divide, Clamp>(src, k, over, dst);
}

/// Encodes elements [begin, end) src -> dst, 32 per step; every group (16 bf16 / 8 floats) must
/// lie inside one tile. The tail (< 32) goes through a zero-padded copy.
template <fp8_format F, bool Divide, bool Clamp, class In, class Scale>
FP8MOE_SCALING_AVX2_TARGET inline void encode_span_avx2(In const* src, std::uint8_t* dst, std::int64_t begin,
                                                        std::int64_t end, Scale& scale, __m256i over) {
  // scale groups: 8 floats, or 16 bf16 (both halves of encode16_bf16_avx2 share the scale)
  constexpr int group = 8;
  __m256 k[4];
  std::int64_t i = begin;
  for (; i + 32 <= end; i += 32) {
    float s[4];  // scale.at is a forward cursor: each group's scale is read once, in order
    for (int g = 0; g < 4; ++g)
      s[g] = std::is_same_v<In, float> || g % 2 == 0 ? scale.at(i + g * group) : s[g - 1];
    if constexpr (!std::is_same_v<In, float> && !Clamp) {  // power-of-two scales: the 16-bit encode
      std::int16_t e0, e1;
      if (pow2_encode_shift<F, Divide>(s[0], e0) && pow2_encode_shift<F, Divide>(s[2], e1) &&
          encode32_pow2_avx2<F>(src + i, _mm256_set1_epi16(e0), _mm256_set1_epi16(e1), dst + i))
        continue;
    }
    for (int g = 0; g < 4; ++g) k[g] = _mm256_set1_ps(s[g]);
    encode32_avx2<F, Divide, Clamp>(src + i, k, over, dst + i);
  }
  if (i < end) {
    std::int64_t const r = end - i;
    alignas(32) In x[32] = {};
    alignas(32) std::uint8_t q[32];
    std::memcpy(x, src + i, static_cast<std::size_t>(r) * sizeof(In));
    for (int g = 0; g < 4; ++g) {
      bool const fresh = std::is_same_v<In, float> || g % 2 == 0;
      k[g] = !fresh ? k[g - 1] : g * group < r ? _mm256_set1_ps(scale.at(i + g * group)) : k[0];
    }
    encode32_avx2<F, Divide, Clamp>(x, k, over, q);
    std::memcpy(dst + i, q, static_cast<std::size_t>(r));
  }
}

/// encode_tiles_avx512 for AVX2: n contiguous elements in tiles of `tile`, tile t with scale
/// s[t]; tiles that are whole groups stream through one loop, others go tile by tile.
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX2_TARGET void encode_tiles_avx2(In const* src, std::uint8_t* dst, std::int64_t n,
                                                  std::int64_t tile, tile_scale const* s, saturation sat) {
  __m256i const over = _mm256_set1_epi32(sat == saturation::finite ? F::max_code : F::overflow_code);
  constexpr std::int64_t group = std::is_same_v<In, float> ? 8 : 16;
  if constexpr (!std::is_same_v<In, float> && !Clamp) {
    if (tile % 32 == 0) {  // bf16, whole steps per tile: the scale and its e << 7 once per tile
      for (std::int64_t c0 = 0, t = 0; c0 < n; c0 += tile, ++t) {
        std::int64_t const end = c0 + tile < n ? c0 + tile : n;
        one_scale k{Divide ? s[t].sf : s[t].multiplier};
        std::int16_t e7;
        std::int64_t i = c0;
        if (pow2_encode_shift<F, Divide>(k.k, e7)) {
          __m256i const ev = _mm256_set1_epi16(e7);
          for (; i + 32 <= end; i += 32)
            if (!encode32_pow2_avx2<F>(src + i, ev, ev, dst + i)) {
              __m256 const kv[4] = {_mm256_set1_ps(k.k), _mm256_set1_ps(k.k), _mm256_set1_ps(k.k),
                                    _mm256_set1_ps(k.k)};
              encode32_outline_avx2<F, Divide, Clamp>(src + i, kv, over, dst + i);
            }
        }
        if (i < end) encode_span_avx2<F, Divide, Clamp>(src, dst, i, end, k, over);
      }
      return;
    }
  }
  if (tile % group == 0) {
    tile_cursor<Divide> k{s, tile, 0, tile};
    encode_span_avx2<F, Divide, Clamp>(src, dst, 0, n, k, over);
    return;
  }
  for (std::int64_t c0 = 0, t = 0; c0 < n; c0 += tile, ++t) {
    one_scale k{Divide ? s[t].sf : s[t].multiplier};
    encode_span_avx2<F, Divide, Clamp>(src, dst, c0, c0 + tile < n ? c0 + tile : n, k, over);
  }
}

/// Per-column scales k[c0 .. c0+32) as encode32_avx2 takes them for In.
template <class In>
FP8MOE_SCALING_AVX2_TARGET inline void column_scales32_avx2(float const* k, __m256* out) {
  for (int g = 0; g < 4; ++g) out[g] = _mm256_loadu_ps(k + 8 * g);
  if constexpr (!std::is_same_v<In, float>) {  // halves of each 16: elements 0-3, 8-11 | 4-7, 12-15
    for (int h = 0; h < 2; ++h) {
      __m256 const a = out[2 * h], b = out[2 * h + 1];
      out[2 * h] = _mm256_permute2f128_ps(a, b, 0x20);
      out[2 * h + 1] = _mm256_permute2f128_ps(a, b, 0x31);
    }
  }
}

/// Encodes the block of nr source rows x nc columns (row j at src + j * src_stride) with
/// per-column scales k into dst (row j at dst + j * dst_stride), nc <= 128: the scales are
/// arranged once per block (encode32_avx2 order), then each row streams through its columns (a
/// row outer loop: the source is read sequentially, rows 'src_stride' apart); the last nc % 32
/// columns go through a zero-padded copy.
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX2_TARGET void encode_rows_avx2(In const* src, std::int64_t src_stride, std::int64_t nr,
                                                 float const* k, std::int64_t nc, std::uint8_t* dst,
                                                 std::int64_t dst_stride, saturation sat) {
  __m256i const over = _mm256_set1_epi32(sat == saturation::finite ? F::max_code : F::overflow_code);
  alignas(32) float kk[128] = {};
  std::memcpy(kk, k, static_cast<std::size_t>(nc) * sizeof(float));
  __m256 kv[4][4];
  std::int64_t const full = nc / 32 * 32;
  for (std::int64_t c = 0; c < nc; c += 32) column_scales32_avx2<In>(kk + c, kv[c / 32]);
  // power-of-two scales on every whole-32 column (bf16, plain): the 16-bit encode, e << 7 per column
  __m256i ev[8];
  bool pow2 = !std::is_same_v<In, float> && !Clamp;
  if constexpr (!std::is_same_v<In, float> && !Clamp) {
    alignas(32) std::int16_t e7[128];
    for (std::int64_t c = 0; c < full && pow2; ++c) pow2 = pow2_encode_shift<F, Divide>(kk[c], e7[c]);
    if (pow2)
      for (std::int64_t g = 0; g < full / 16; ++g)
        ev[g] = _mm256_load_si256(reinterpret_cast<__m256i const*>(e7 + 16 * g));
  }
  for (std::int64_t j = 0; j < nr; ++j) {
    In const* const s = src + j * src_stride;
    std::uint8_t* const d = dst + j * dst_stride;
    if (pow2) {  // the rare fallback out of line: the 16-bit loop keeps its registers
      for (std::int64_t c = 0; c < full; c += 32)
        if (!encode32_pow2_avx2<F>(s + c, ev[c / 16], ev[c / 16 + 1], d + c))
          encode32_outline_avx2<F, Divide, Clamp>(s + c, kv[c / 32], over, d + c);
    } else {
      for (std::int64_t c = 0; c < full; c += 32)
        encode32_avx2<F, Divide, Clamp>(s + c, kv[c / 32], over, d + c);
    }
    if (full < nc) {
      alignas(32) In x[32] = {};
      alignas(32) std::uint8_t q[32];
      std::memcpy(x, s + full, static_cast<std::size_t>(nc - full) * sizeof(In));
      encode32_avx2<F, Divide, Clamp>(x, kv[full / 32], over, q);
      std::memcpy(d + full, q, static_cast<std::size_t>(nc - full));
    }
  }
}

/// transpose_bytes_64_avx512 for AVX2: the byte block of nr16 * 16 rows x 32 columns at src (row
/// stride ss) into dst (32 rows of nr16 * 16 bytes, row stride ds), two 16x16 blocks per ladder.
FP8MOE_SCALING_AVX2_TARGET inline void transpose_bytes_32_avx2(std::uint8_t const* src, std::int64_t ss,
                                                               std::int64_t nr16, std::uint8_t* dst,
                                                               std::int64_t ds) {
  for (std::int64_t j0 = 0; j0 < 16 * nr16; j0 += 16) {
    __m256i a[16], b[16];
    for (int i = 0; i < 16; ++i)
      a[i] = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(src + (j0 + i) * ss));
    for (int round = 0; round < 4; ++round) {
      for (int i = 0; i < 8; ++i) {
        b[2 * i] = _mm256_unpacklo_epi8(a[i], a[i + 8]);
        b[2 * i + 1] = _mm256_unpackhi_epi8(a[i], a[i + 8]);
      }
      for (int i = 0; i < 16; ++i) a[i] = b[i];
    }
    for (int i = 0; i < 16; ++i) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i * ds + j0), _mm256_castsi256_si128(a[i]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (16 + i) * ds + j0),
                       _mm256_extracti128_si256(a[i], 1));
    }
  }
}

/// Copies `rows` rows of n bytes (n a multiple of 16; rows 16-byte aligned) from src (row stride
/// ss) to dst (row stride ds): each dst row's whole 64-byte lines with two 32-byte non-temporal
/// stores per line, the bytes before its first and after its last whole line (lines it shares
/// with another writer's span) with plain 16-byte stores, as a partial non-temporal line costs
/// the memory system a read-modify-write. Serves the AVX-512 family too (a zmm store writes the
/// same line). The caller fences (_mm_sfence) before others read dst.
FP8MOE_SCALING_AVX2_TARGET inline void stream_rows_avx2(std::uint8_t const* src, std::int64_t ss,
                                                        std::int64_t rows, std::int64_t n, std::uint8_t* dst,
                                                        std::int64_t ds) {
  for (std::int64_t r = 0; r < rows; ++r) {
    std::uint8_t const* const s = src + r * ss;
    std::uint8_t* const d = dst + r * ds;
    auto const lead = static_cast<std::int64_t>((64 - reinterpret_cast<std::uintptr_t>(d) % 64) % 64);
    std::int64_t j = 0;
    for (; j < n && j < lead; j += 16)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + j),
                       _mm_loadu_si128(reinterpret_cast<__m128i const*>(s + j)));
    for (; j + 64 <= n; j += 64) {
      __m256i const a = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(s + j));
      __m256i const b = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(s + j + 32));
      _mm256_stream_si256(reinterpret_cast<__m256i*>(d + j), a);
      _mm256_stream_si256(reinterpret_cast<__m256i*>(d + j + 32), b);
    }
    for (; j < n; j += 16)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + j),
                       _mm_loadu_si128(reinterpret_cast<__m128i const*>(s + j)));
  }
}

/// encode_columns_avx512 for AVX2: 16*n16 elements v (float, or bf16 in place) with per-element
/// scales k into dst, 16 per step.
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX2_TARGET void encode_columns_avx2(In const* v, float const* k, std::uint8_t* dst,
                                                    std::int64_t n16, saturation sat) {
  __m256i const over = _mm256_set1_epi32(sat == saturation::finite ? F::max_code : F::overflow_code);
  for (std::int64_t i = 0; i < 16 * n16; i += 16) {
    __m256i x0, x1;
    if constexpr (std::is_same_v<In, float>) {
      x0 = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(v + i));
      x1 = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(v + i + 8));
    } else {
      __m128i const lo = _mm_loadu_si128(reinterpret_cast<__m128i const*>(v + i));
      __m128i const hi = _mm_loadu_si128(reinterpret_cast<__m128i const*>(v + i + 8));
      x0 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(lo), 16);
      x1 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(hi), 16);
    }
    __m256i const w =
        _mm256_packus_epi32(encode8_signed_avx2<F, Divide, Clamp>(x0, _mm256_loadu_ps(k + i), over),
                            encode8_signed_avx2<F, Divide, Clamp>(x1, _mm256_loadu_ps(k + i + 8), over));
    __m256i const b =
        _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w, w), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_castsi256_si128(b));
  }
}

/// Raw amax bits (|x| as float bits, NaN counted: above inf) of each tile of `tile` contiguous
/// elements in [0, n): raw[t] for t < ceil(n / tile); the same values as amax_contig<false>.
/// bf16 stays 16-bit (signed int16 max); the 8-word reduction is one phminposuw on ~m.
template <bool Bf16>
FP8MOE_SCALING_AVX2_TARGET inline __m256i max_avx2(__m256i a, __m256i b) {
  return Bf16 ? _mm256_max_epi16(a, b) : _mm256_max_epi32(a, b);
}

template <class In>
FP8MOE_SCALING_AVX2_TARGET void amax_tiles_avx2(In const* src, std::int64_t n, std::int64_t tile,
                                                std::uint32_t* raw) {
  constexpr bool bf16 = !std::is_same_v<In, float>;
  constexpr std::int64_t lanes = bf16 ? 16 : 8;
  __m256i const abs_mask = bf16 ? _mm256_set1_epi16(0x7FFF) : _mm256_set1_epi32(0x7FFFFFFF);
  for (std::int64_t c0 = 0, t = 0; c0 < n; c0 += tile, ++t) {
    std::int64_t const end = c0 + tile < n ? c0 + tile : n;
    __m256i m0 = _mm256_setzero_si256(), m1 = m0;
    std::int64_t i = c0;
    for (; i + 2 * lanes <= end; i += 2 * lanes) {
      m0 = max_avx2<bf16>(
          m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<__m256i const*>(src + i)), abs_mask));
      m1 = max_avx2<bf16>(
          m1,
          _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<__m256i const*>(src + i + lanes)), abs_mask));
    }
    if (i < end) {
      alignas(32) In x[2 * lanes] = {};
      std::memcpy(x, src + i, static_cast<std::size_t>(end - i) * sizeof(In));
      m0 = max_avx2<bf16>(m0,
                          _mm256_and_si256(_mm256_load_si256(reinterpret_cast<__m256i const*>(x)), abs_mask));
      m1 = max_avx2<bf16>(
          m1, _mm256_and_si256(_mm256_load_si256(reinterpret_cast<__m256i const*>(x + lanes)), abs_mask));
    }
    m0 = max_avx2<bf16>(m0, m1);
    __m128i h = bf16 ? _mm_max_epi16(_mm256_castsi256_si128(m0), _mm256_extracti128_si256(m0, 1))
                     : _mm_max_epi32(_mm256_castsi256_si128(m0), _mm256_extracti128_si256(m0, 1));
    if constexpr (bf16) {  // |x| words are in [0, 0x7FFF]: max = ~min(~w) as unsigned words
      __m128i const ones = _mm_set1_epi32(-1);
      auto const w = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(h, ones))));
      raw[t] = (~w & 0xFFFFu) << 16;
    } else {
      h = _mm_max_epi32(h, _mm_shuffle_epi32(h, 0x4E));
      h = _mm_max_epi32(h, _mm_shuffle_epi32(h, 0xB1));
      raw[t] = static_cast<std::uint32_t>(_mm_cvtsi128_si32(h));
    }
  }
}

/// Values of 8 FP8 codes of T (one per 32-bit lane) as float bits: decode16_avx512's arithmetic.
template <class T>
FP8MOE_SCALING_AVX2_TARGET inline __m256i decode8_avx2(__m256i c) {
  using D = decode_constants<T>;
  __m256i const mag = _mm256_and_si256(c, _mm256_set1_epi32(0x7F));
  __m256i v = _mm256_add_epi32(_mm256_slli_epi32(mag, D::shift), _mm256_set1_epi32(D::rebias));
  __m256 const sub = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(D::sub_step));
  v = _mm256_blendv_epi8(v, _mm256_castps_si256(sub),
                         _mm256_cmpgt_epi32(_mm256_set1_epi32(D::min_normal_code), mag));
  if constexpr (D::inf_code > 0)
    v = _mm256_blendv_epi8(v, _mm256_set1_epi32(0x7F800000),
                           _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(D::inf_code)));
  v = _mm256_or_si256(v, _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24));
  return _mm256_blendv_epi8(v, _mm256_set1_epi32(0x7FFFFFFF),
                            _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(D::first_nan_code - 1)));
}

/// bf16 bits (round to nearest even, NaN -> 0x7FFF: fp8moe::detail::float_to_bf16_bits) of 8
/// floats, one per 32-bit lane.
FP8MOE_SCALING_AVX2_TARGET inline __m256i float_to_bf16_avx2(__m256 p) {
  __m256i const u = _mm256_castps_si256(p);
  __m256i const odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i const t =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), odd), 16);
  return _mm256_blendv_epi8(t, _mm256_set1_epi32(0x7FFF),
                            _mm256_castps_si256(_mm256_cmp_ps(p, p, _CMP_UNORD_Q)));
}

/// 16 codes at src -> 16 values * sf at dst (Out: float or bf16 bits).
template <class T, class Out>
FP8MOE_SCALING_AVX2_TARGET inline void dequantize16_avx2(std::uint8_t const* src, __m256 sf, void* dst) {
  __m128i const b = _mm_loadu_si128(reinterpret_cast<__m128i const*>(src));
  __m256 const lo = _mm256_mul_ps(_mm256_castsi256_ps(decode8_avx2<T>(_mm256_cvtepu8_epi32(b))), sf);
  __m256 const hi =
      _mm256_mul_ps(_mm256_castsi256_ps(decode8_avx2<T>(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)))), sf);
  if constexpr (std::is_same_v<Out, float>) {
    _mm256_storeu_ps(static_cast<float*>(dst), lo);
    _mm256_storeu_ps(static_cast<float*>(dst) + 8, hi);
  } else {
    __m256i const w = _mm256_packus_epi32(float_to_bf16_avx2(lo), float_to_bf16_avx2(hi));
    _mm256_storeu_si256(static_cast<__m256i*>(dst), _mm256_permute4x64_epi64(w, 0xD8));
  }
}

/// bf16 dequantize of 16 codes (bytes at src) in the 16-bit domain, for a tile whose scale sf is
/// finite and non-zero and whose k = sf * 2^(127-bias) is finite (exact: a power-of-two
/// multiple): the code's bits shifted (arithmetic) into a bf16 with the FP8 exponent field and
/// its sign, times k as float, is decode(code) * sf rounded once, as the portable loop (FP8
/// subnormals become float denormals here, exact under the default MXCSR). The inf code keeps
/// inf; NaN codes, the only NaN products with such an sf, give 0x7FFF after rounding.
template <class T>
FP8MOE_SCALING_AVX2_TARGET inline void dequantize16_bf16_direct_avx2(std::uint8_t const* src, __m256 k,
                                                                     std::uint16_t* dst) {
  using F = typename T::format;
  using D = decode_constants<T>;
  constexpr int E = 7 - F::mantissa_bits;  // exponent bits
  __m256i const w =
      _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<__m128i const*>(src))), 8);
  // (w >> (8 - E)) arithmetic copies the sign over the bf16 exponent bits above the FP8 ones
  __m256i v = _mm256_and_si256(_mm256_srai_epi16(w, 8 - E),
                               _mm256_set1_epi16(static_cast<short>(0x8000 | (0x7F00 >> (8 - E)))));
  __m256i const mag = _mm256_and_si256(w, _mm256_set1_epi16(0x7F00));
  if constexpr (D::inf_code > 0)
    v = _mm256_blendv_epi8(v,
                           _mm256_or_si256(_mm256_and_si256(w, _mm256_set1_epi16(static_cast<short>(0x8000))),
                                           _mm256_set1_epi16(0x7F80)),
                           _mm256_cmpeq_epi16(mag, _mm256_set1_epi16(static_cast<short>(D::inf_code << 8))));
  __m256i const nan =
      _mm256_cmpgt_epi16(mag, _mm256_set1_epi16(static_cast<short>((D::first_nan_code - 1) << 8)));
  __m256i const z = _mm256_setzero_si256();
  __m256i const lo = _mm256_castps_si256(_mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v)), k));
  __m256i const hi = _mm256_castps_si256(_mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v)), k));
  __m256i const one = _mm256_set1_epi32(1), half = _mm256_set1_epi32(0x7FFF);
  __m256i const rlo = _mm256_srli_epi32(
      _mm256_add_epi32(_mm256_add_epi32(lo, half), _mm256_and_si256(_mm256_srli_epi32(lo, 16), one)), 16);
  __m256i const rhi = _mm256_srli_epi32(
      _mm256_add_epi32(_mm256_add_epi32(hi, half), _mm256_and_si256(_mm256_srli_epi32(hi, 16), one)), 16);
  __m256i const b = _mm256_blendv_epi8(_mm256_packus_epi32(rlo, rhi), _mm256_set1_epi16(0x7FFF), nan);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), b);
}

/// out[i] = Out(decode(q[i]) * sf) (bf16 by RNE, or float) for n contiguous codes in tiles of
/// `tile`, tile t with scale scales[t * scale_stride]: the same bits as the portable loop
/// (lut[q] * sf). 16 codes per step, tails through a padded copy.
template <class T, class Out>
FP8MOE_SCALING_AVX2_TARGET void dequantize_tiles_avx2(std::uint8_t const* q, Out* y, std::int64_t n,
                                                      std::int64_t tile, float const* scales,
                                                      std::int64_t scale_stride) {
  for (std::int64_t c0 = 0, t = 0; c0 < n; c0 += tile, ++t) {
    __m256 const sf = _mm256_set1_ps(scales[t * scale_stride]);
    std::int64_t const end = c0 + tile < n ? c0 + tile : n;
    std::int64_t i = c0;
    if constexpr (!std::is_same_v<Out, float>) {
      float const sfs = scales[t * scale_stride];
      float const k = sfs * decode_constants<T>::unbias;
      if (sfs != 0.0f && k - k == 0.0f) {  // sf and k finite, sf non-zero
        for (; i + 16 <= end; i += 16)
          dequantize16_bf16_direct_avx2<T>(q + i, _mm256_set1_ps(k), reinterpret_cast<std::uint16_t*>(y + i));
      }
    }
    for (; i + 16 <= end; i += 16) dequantize16_avx2<T, Out>(q + i, sf, y + i);
    if (i < end) {
      alignas(16) std::uint8_t x[16] = {};
      alignas(32) Out o[16];
      std::memcpy(x, q + i, static_cast<std::size_t>(end - i));
      dequantize16_avx2<T, Out>(x, sf, o);
      std::memcpy(y + i, o, static_cast<std::size_t>(end - i) * sizeof(Out));
    }
  }
}

}  // namespace fp8moe::scaling::detail
#endif  // FP8MOE_SCALING_X86
