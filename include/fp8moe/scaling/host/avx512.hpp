// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Hand-written x86-64 AVX-512 (F, BW, DQ, VL) kernels of the host quantize path: tile amax, encode
// (|x| * k per 16 lanes, the sign put back on the packed bytes), per-column encode for the
// transpose, dequantize into bf16 and float. Each is bit-identical to the portable loops of
// quantize.hpp on the inputs its caller hands it (simd_encode_mode); host/simd.hpp dispatches.
// Compiled only where FP8MOE_SCALING_X86 (GCC/Clang on x86-64, not nvcc).
#pragma once

#include <cstdint>
#include <type_traits>

#include "fp8moe/scaling/host/isa.hpp"

#if FP8MOE_SCALING_X86
namespace fp8moe::scaling::detail {

// GCC 12 reports its own intrinsics' _mm512_undefined_* sources as maybe-uninitialized once they
// are inlined (GCC PR 105593, fixed in 13); the warning is about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

/// Codes of 16 non-NaN floats f * k (or f / k), f >= 0, k > 0 finite, one per 32-bit lane:
/// normal codes by round-to-nearest-even at mantissa bit 23-M with the exponent rebias folded into
/// the addend (then min(code, over) when Clamp); below the smallest normal, f*k + magic rounds to
/// the subnormal step and its low bits are the code (the formulas of float_to_fp8_bits_select).
template <fp8_format F, bool Divide, bool Clamp>
FP8MOE_SCALING_AVX512_TARGET inline __m512i encode16_avx512(__m512 f, __m512 k, __m512i over) {
  using E = encode_constants<F>;
  __m512 const y = Divide ? _mm512_div_ps(f, k) : _mm512_mul_ps(f, k);
  __m512i const a = _mm512_castps_si512(y);
  __mmask16 const odd = _mm512_test_epi32_mask(a, _mm512_set1_epi32(1 << E::shift));
  __m512i t = _mm512_add_epi32(a, _mm512_set1_epi32(static_cast<std::int32_t>(E::addend)));
  t = _mm512_mask_add_epi32(t, odd, t, _mm512_set1_epi32(1));
  __m512i normal = _mm512_srli_epi32(t, E::shift);
  if constexpr (Clamp) normal = _mm512_min_epu32(normal, over);
  __m512 const sub = _mm512_add_ps(y, _mm512_castsi512_ps(_mm512_set1_epi32(E::magic_bits)));
  __mmask16 const small = _mm512_cmplt_epi32_mask(a, _mm512_set1_epi32(E::min_normal));
  return _mm512_mask_sub_epi32(normal, small, _mm512_castps_si512(sub), _mm512_set1_epi32(E::magic_bits));
}
/// |x| as floats (in-lane interleaved order for bf16: unpack low / high halves of each 128-bit
/// lane; packus_epi32 of the two codes restores the order) and the sign mask, for 32 elements.
template <class In>
FP8MOE_SCALING_AVX512_TARGET inline void load32_avx512(In const* src, __m512& f0, __m512& f1,
                                                       __mmask32& neg) {
  if constexpr (std::is_same_v<In, float>) {
    __m512i const x0 = _mm512_loadu_si512(src), x1 = _mm512_loadu_si512(src + 16);
    neg = _mm512_kunpackw(static_cast<__mmask32>(_mm512_movepi32_mask(x1)),
                          static_cast<__mmask32>(_mm512_movepi32_mask(x0)));
    f0 = _mm512_castsi512_ps(_mm512_and_si512(x0, _mm512_set1_epi32(0x7FFFFFFF)));
    f1 = _mm512_castsi512_ps(_mm512_and_si512(x1, _mm512_set1_epi32(0x7FFFFFFF)));
  } else {
    __m512i const x = _mm512_loadu_si512(src);
    neg = _mm512_movepi16_mask(x);
    __m512i const a = _mm512_and_si512(x, _mm512_set1_epi16(0x7FFF));
    __m512i const z = _mm512_setzero_si512();
    f0 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, a));
    f1 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, a));
  }
}

/// 32 codes of load32_avx512's two vectors as 16-bit lanes in element order.
template <class In>
FP8MOE_SCALING_AVX512_TARGET inline __m512i pack32_avx512(__m512i c0, __m512i c1) {
  __m512i const w = _mm512_packus_epi32(c0, c1);  // per 128-bit lane: 4 of c0, 4 of c1
  if constexpr (std::is_same_v<In, float>)        // c0 = elements 0-15, c1 = 16-31: regroup lanes
    return _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), w);
  else  // bf16: unpack lo/hi then pack lo/hi is the identity on element order
    return w;
}

/// Codes (sign included) of 32 bf16 x under a power-of-two scale (e7 = e << 7 per 16-bit lane,
/// pow2_encode_shift) as 16-bit lanes in element order: the 16-bit encode of
/// pow2_encode_constants, valid where the tile is plain; `slow` gets the lanes it cannot encode
/// (below the FP8 normal range: encode them with encode16_avx512).
template <fp8_format F>
FP8MOE_SCALING_AVX512_TARGET inline __m512i encode32_pow2_avx512(__m512i x, __m512i e7, __mmask32& slow) {
  using P = pow2_encode_constants<F>;
  __m512i const a = _mm512_and_si512(x, _mm512_set1_epi16(0x7FFF));
  __m512i const y = _mm512_add_epi16(a, e7);
  __mmask32 const nonzero = _mm512_test_epi16_mask(a, a);
  slow = _mm512_mask_cmplt_epi16_mask(nonzero, y, _mm512_set1_epi16(P::min_normal));
  __mmask32 const odd = _mm512_test_epi16_mask(y, _mm512_set1_epi16(1 << P::shift));
  __m512i t = _mm512_add_epi16(y, _mm512_set1_epi16(P::addend));
  t = _mm512_mask_add_epi16(t, odd, t, _mm512_set1_epi16(1));
  __m512i const c = _mm512_maskz_srli_epi16(nonzero, t, P::shift);
  // c | (x >> 8 & 0x80)
  return _mm512_ternarylogic_epi32(c, _mm512_srli_epi16(x, 8), _mm512_set1_epi16(0x80), 0xF8);
}

/// 64 codes of bf16 src under power-of-two scales (e7 of elements 0-31 and 32-63) into dst;
/// false (nothing written) when a lane needs the 32-bit encode.
template <fp8_format F>
FP8MOE_SCALING_AVX512_TARGET inline bool encode64_pow2_avx512(void const* src, __m512i e7_0, __m512i e7_1,
                                                              std::uint8_t* dst) {
  __mmask32 s0, s1;
  __m512i const c0 = encode32_pow2_avx512<F>(_mm512_loadu_si512(src), e7_0, s0);
  __m512i const c1 =
      encode32_pow2_avx512<F>(_mm512_loadu_si512(static_cast<std::uint16_t const*>(src) + 32), e7_1, s1);
  if ((s0 | s1) != 0) return false;
  // packus_epi16 interleaves 8-byte groups of c0 and c1 per lane; vpermq puts them back
  _mm512_storeu_si512(
      dst, _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), _mm512_packus_epi16(c0, c1)));
  return true;
}

/// Encodes elements [begin, end) src -> dst; `scale.at(i)` gives the scale of the group of
/// elements starting at i (32 for bf16, whose two 16-lane halves interleave; 16 for float), so every
/// group must lie inside one tile.
template <fp8_format F, bool Divide, bool Clamp, class In, class Scale>
FP8MOE_SCALING_AVX512_TARGET inline void encode_span_avx512(In const* src, std::uint8_t* dst,
                                                            std::int64_t begin, std::int64_t end,
                                                            Scale& scale, __m512i over) {
  constexpr bool bf16 = !std::is_same_v<In, float>;
  __m512i const sign = _mm512_set1_epi8(static_cast<char>(0x80));
  std::int64_t i = begin;
  for (; i + 64 <= end; i += 64) {
    // scale.at is a forward cursor: each group's scale is read once, in order
    float const s0 = scale.at(i), s1 = bf16 ? s0 : scale.at(i + 16);
    float const s2 = scale.at(i + 32), s3 = bf16 ? s2 : scale.at(i + 48);
    if constexpr (bf16 && !Clamp) {  // power-of-two scales: the 16-bit encode where it applies
      std::int16_t e0, e1;
      if (pow2_encode_shift<F, Divide>(s0, e0) && pow2_encode_shift<F, Divide>(s2, e1) &&
          encode64_pow2_avx512<F>(src + i, _mm512_set1_epi16(e0), _mm512_set1_epi16(e1), dst + i))
        continue;
    }
    __m512 f0, f1, f2, f3;
    __mmask32 n0, n1;
    load32_avx512(src + i, f0, f1, n0);
    load32_avx512(src + i + 32, f2, f3, n1);
    __m512 const k0 = _mm512_set1_ps(s0), k1 = _mm512_set1_ps(s1);
    __m512 const k2 = _mm512_set1_ps(s2), k3 = _mm512_set1_ps(s3);
    __m512i const w0 = pack32_avx512<In>(encode16_avx512<F, Divide, Clamp>(f0, k0, over),
                                         encode16_avx512<F, Divide, Clamp>(f1, k1, over));
    __m512i const w1 = pack32_avx512<In>(encode16_avx512<F, Divide, Clamp>(f2, k2, over),
                                         encode16_avx512<F, Divide, Clamp>(f3, k3, over));
    // packus_epi16 interleaves 8-byte groups of w0 and w1 per lane; vpermq puts them back
    __m512i b =
        _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), _mm512_packus_epi16(w0, w1));
    b = _mm512_mask_blend_epi8(_mm512_kunpackd(n1, n0), b, _mm512_or_si512(b, sign));
    _mm512_storeu_si512(dst + i, b);
  }
  for (; i + 32 <= end; i += 32) {
    __m512 f0, f1;
    __mmask32 n0;
    load32_avx512(src + i, f0, f1, n0);
    __m512 const k0 = _mm512_set1_ps(scale.at(i)), k1 = bf16 ? k0 : _mm512_set1_ps(scale.at(i + 16));
    __m256i b = _mm512_cvtepi16_epi8(pack32_avx512<In>(encode16_avx512<F, Divide, Clamp>(f0, k0, over),
                                                       encode16_avx512<F, Divide, Clamp>(f1, k1, over)));
    b = _mm256_mask_blend_epi8(n0, b, _mm256_or_si256(b, _mm512_castsi512_si256(sign)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), b);
  }
  for (; i < end; i += 16) {
    std::int64_t const r = end - i < 16 ? end - i : 16;
    auto const m = static_cast<__mmask16>((1u << r) - 1u);
    __m512i x;
    if constexpr (bf16)
      x = _mm512_maskz_slli_epi32(m, _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src + i)), 16);
    else
      x = _mm512_maskz_loadu_epi32(m, src + i);
    __mmask16 const neg = _mm512_movepi32_mask(x);
    __m512i c = encode16_avx512<F, Divide, Clamp>(
        _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF))), _mm512_set1_ps(scale.at(i)),
        over);
    c = _mm512_mask_or_epi32(c, neg, c, _mm512_set1_epi32(0x80));
    _mm_mask_storeu_epi8(dst + i, m, _mm512_cvtepi32_epi8(c));
  }
}

/// Encodes n contiguous elements src -> dst (FP8 bits) in tiles of `tile` elements, tile t with
/// scale s[t]; every tile's simd_encode_mode must be plain (Clamp false) or not portable (Clamp
/// true). `sat` is the recipe's overflow policy. Tiles that are whole groups (32 bf16 / 16 float
/// elements) stream through one loop (MX 1x32 tiles: two tiles per 64-element step); others go
/// tile by tile.
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX512_TARGET void encode_tiles_avx512(In const* src, std::uint8_t* dst, std::int64_t n,
                                                      std::int64_t tile, tile_scale const* s,
                                                      saturation sat) {
  __m512i const over = _mm512_set1_epi32(sat == saturation::finite ? F::max_code : F::overflow_code);
  constexpr std::int64_t group = std::is_same_v<In, float> ? 16 : 32;
  if (tile % group == 0) {
    tile_cursor<Divide> k{s, tile, 0, tile};
    encode_span_avx512<F, Divide, Clamp>(src, dst, 0, n, k, over);
    return;
  }
  for (std::int64_t c0 = 0, t = 0; c0 < n; c0 += tile, ++t) {
    one_scale k{Divide ? s[t].sf : s[t].multiplier};
    encode_span_avx512<F, Divide, Clamp>(src, dst, c0, c0 + tile < n ? c0 + tile : n, k, over);
  }
}

/// Encodes 16*n16 contiguous elements v (float, or bf16 read in place from a source row) with
/// per-element scales k (the transpose path: one scale per source column) into dst; every
/// element's column must allow the kernel (Clamp as above). Reads and writes whole groups of 16.
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX512_TARGET void encode_columns_avx512(In const* v, float const* k, std::uint8_t* dst,
                                                        std::int64_t n16, saturation sat) {
  __m512i const over = _mm512_set1_epi32(sat == saturation::finite ? F::max_code : F::overflow_code);
  for (std::int64_t i = 0; i < 16 * n16; i += 16) {
    __m512i x;
    if constexpr (std::is_same_v<In, float>)
      x = _mm512_loadu_si512(v + i);
    else
      x = _mm512_slli_epi32(
          _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<__m256i const*>(v + i))), 16);
    __mmask16 const neg = _mm512_movepi32_mask(x);
    __m512i c = encode16_avx512<F, Divide, Clamp>(
        _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF))), _mm512_loadu_ps(k + i),
        over);
    c = _mm512_mask_or_epi32(c, neg, c, _mm512_set1_epi32(0x80));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm512_cvtepi32_epi8(c));
  }
}

/// encode_rows_avx512's 64-element step: codes of src[0..63] with the scales kc[0..3] in the lane
/// order of load32_avx512 into dst.
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX512_TARGET FP8MOE_SCALING_FORCE_INLINE inline void encode64_columns_avx512(
    In const* src, __m512 const* kc, __m512i over, std::uint8_t* dst) {
  __m512 f0, f1, f2, f3;
  __mmask32 n0, n1;
  load32_avx512(src, f0, f1, n0);
  load32_avx512(src + 32, f2, f3, n1);
  __m512i const w0 = pack32_avx512<In>(encode16_avx512<F, Divide, Clamp>(f0, kc[0], over),
                                       encode16_avx512<F, Divide, Clamp>(f1, kc[1], over));
  __m512i const w1 = pack32_avx512<In>(encode16_avx512<F, Divide, Clamp>(f2, kc[2], over),
                                       encode16_avx512<F, Divide, Clamp>(f3, kc[3], over));
  __m512i b =
      _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), _mm512_packus_epi16(w0, w1));
  b = _mm512_mask_blend_epi8(_mm512_kunpackd(n1, n0), b,
                             _mm512_or_si512(b, _mm512_set1_epi8(static_cast<char>(0x80))));
  _mm512_storeu_si512(dst, b);
}
/// The same step out of line: the rare fallback of the 16-bit power-of-two loop, which then keeps
/// its registers for itself.
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX512_TARGET __attribute__((noinline)) void encode64_columns_outline_avx512(
    In const* src, __m512 const* kc, __m512i over, std::uint8_t* dst) {
  encode64_columns_avx512<F, Divide, Clamp>(src, kc, over, dst);
}

/// Encodes the block of nr source rows x nc64 * 64 columns (row j at src + j * src_stride) with
/// per-column scales k into dst (row j at dst + j * dst_stride): encode_span_avx512's 64-element
/// step with the scales arranged once per block in the lane order of load32_avx512 (bf16: the
/// unpacked halves hold elements 0-3, 8-11, 16-19, 24-27 and 4-7, 12-15, ...), at most 128
/// columns (8 scale vectors). bf16 under power-of-two scales on every column (not Clamp): the
/// 16-bit encode, its few fallback steps out of line. Every column must allow the kernel (Clamp).
template <fp8_format F, bool Divide, bool Clamp, class In>
FP8MOE_SCALING_AVX512_TARGET void encode_rows_avx512(In const* src, std::int64_t src_stride, std::int64_t nr,
                                                     float const* k, std::int64_t nc64, std::uint8_t* dst,
                                                     std::int64_t dst_stride, saturation sat) {
  __m512i const over = _mm512_set1_epi32(sat == saturation::finite ? F::max_code : F::overflow_code);
  __m512 kv[8];  // per 32 columns g: kv[2g] for f0, kv[2g+1] for f1 of load32_avx512
  for (std::int64_t g = 0; g < 2 * nc64; ++g) {
    __m512 const a = _mm512_loadu_ps(k + 32 * g), b = _mm512_loadu_ps(k + 32 * g + 16);
    if constexpr (std::is_same_v<In, float>) {
      kv[2 * g] = a;
      kv[2 * g + 1] = b;
    } else {
      __m512i const lo = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
      kv[2 * g] = _mm512_permutex2var_ps(a, lo, b);
      kv[2 * g + 1] = _mm512_permutex2var_ps(a, _mm512_add_epi32(lo, _mm512_set1_epi32(4)), b);
    }
  }
  if constexpr (!std::is_same_v<In, float> && !Clamp) {  // e << 7 per column
    alignas(64) std::int16_t e7[128];
    bool pow2 = true;
    for (std::int64_t c = 0; c < 64 * nc64 && pow2; ++c) pow2 = pow2_encode_shift<F, Divide>(k[c], e7[c]);
    if (pow2) {
      __m512i ev[4];
      for (std::int64_t g = 0; g < 2 * nc64; ++g) ev[g] = _mm512_load_si512(e7 + 32 * g);
      for (std::int64_t j = 0; j < nr; ++j) {
        In const* const s = src + j * src_stride;
        std::uint8_t* const d = dst + j * dst_stride;
        for (std::int64_t c = 0; c < 64 * nc64; c += 64)
          if (!encode64_pow2_avx512<F>(s + c, ev[c / 32], ev[c / 32 + 1], d + c))
            encode64_columns_outline_avx512<F, Divide, Clamp>(s + c, kv + c / 16, over, d + c);
      }
      return;
    }
  }
  for (std::int64_t j = 0; j < nr; ++j) {
    In const* const s = src + j * src_stride;
    std::uint8_t* const d = dst + j * dst_stride;
    for (std::int64_t c = 0; c < 64 * nc64; c += 64)
      encode64_columns_avx512<F, Divide, Clamp>(s + c, kv + c / 16, over, d + c);
  }
}

/// Transposes the byte block of nr16 * 16 rows x 64 columns at src (row stride ss) into dst
/// (64 rows of nr16 * 16 bytes, row stride ds): per 16 rows, the 16x16 unpack ladder of
/// transpose_16x16_bytes on 512-bit registers (four 16x16 blocks at once, one per 128-bit lane),
/// then lane L of register i is dst row 16 L + i.
FP8MOE_SCALING_AVX512_TARGET inline void transpose_bytes_64_avx512(std::uint8_t const* src, std::int64_t ss,
                                                                   std::int64_t nr16, std::uint8_t* dst,
                                                                   std::int64_t ds) {
  for (std::int64_t j0 = 0; j0 < 16 * nr16; j0 += 16) {
    __m512i a[16], b[16];
    for (int i = 0; i < 16; ++i) a[i] = _mm512_loadu_si512(src + (j0 + i) * ss);
    for (int round = 0; round < 4; ++round) {
      for (int i = 0; i < 8; ++i) {
        b[2 * i] = _mm512_unpacklo_epi8(a[i], a[i + 8]);
        b[2 * i + 1] = _mm512_unpackhi_epi8(a[i], a[i + 8]);
      }
      for (int i = 0; i < 16; ++i) a[i] = b[i];
    }
    for (int i = 0; i < 16; ++i) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i * ds + j0), _mm512_castsi512_si128(a[i]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (16 + i) * ds + j0),
                       _mm512_extracti32x4_epi32(a[i], 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (32 + i) * ds + j0),
                       _mm512_extracti32x4_epi32(a[i], 2));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (48 + i) * ds + j0),
                       _mm512_extracti32x4_epi32(a[i], 3));
    }
  }
}

/// Raw amax bits (|x| as float bits, NaN counted: above inf) of each tile of `tile` contiguous
/// elements in [0, n): raw[t] for t < ceil(n / tile). The same values as amax_contig<false>.
template <class In>
FP8MOE_SCALING_AVX512_TARGET void amax_tiles_avx512(In const* src, std::int64_t n, std::int64_t tile,
                                                    std::uint32_t* raw) {
  constexpr std::int64_t lanes = std::is_same_v<In, float> ? 16 : 32;
  for (std::int64_t c0 = 0, t = 0; c0 < n; c0 += tile, ++t) {
    std::int64_t const end = c0 + tile < n ? c0 + tile : n;
    __m512i m = _mm512_setzero_si512();
    for (std::int64_t i = c0; i < end; i += lanes) {
      std::int64_t const r = end - i < lanes ? end - i : lanes;
      if constexpr (std::is_same_v<In, float>) {
        auto const k = static_cast<__mmask16>(r == 16 ? 0xFFFFu : (1u << r) - 1u);
        m = _mm512_max_epi32(
            m, _mm512_and_si512(_mm512_maskz_loadu_epi32(k, src + i), _mm512_set1_epi32(0x7FFFFFFF)));
      } else {
        auto const k = static_cast<__mmask32>(r == 32 ? 0xFFFFFFFFu : (1u << r) - 1u);
        m = _mm512_max_epi16(
            m, _mm512_and_si512(_mm512_maskz_loadu_epi16(k, src + i), _mm512_set1_epi16(0x7FFF)));
      }
    }
    if constexpr (!std::is_same_v<In, float>)  // 32 int16 -> 16 int32 of the top halves of float bits
      m = _mm512_max_epi32(_mm512_slli_epi32(m, 16), _mm512_andnot_si512(_mm512_set1_epi32(0xFFFF), m));
    raw[t] = static_cast<std::uint32_t>(_mm512_reduce_max_epi32(m));
  }
}

/// bf16 bits of |value| of FP8 codes 0..127 of T (exact: every FP8 value is a bf16 value; the NaN
/// codes give a quiet NaN), as the four 32-word tables vpermt2w looks up.
template <class T>
struct bf16_magnitude_table {
  alignas(64) std::uint16_t v[128]{};
  constexpr bf16_magnitude_table() {
    for (int c = 0; c < 128; ++c) {
      float const f = T::from_bits(static_cast<std::uint8_t>(c)).to_float();
      v[c] = f != f ? std::uint16_t{0x7FC0}
                    : static_cast<std::uint16_t>(fp8moe::bit_cast<std::uint32_t>(f) >> 16);
    }
  }
};
template <class T>
inline constexpr bf16_magnitude_table<T> bf16_magnitude_table_v{};

/// bf16 bits (round to nearest even, NaN -> 0x7FFF: fp8moe::detail::float_to_bf16_bits) of 16
/// floats, one per 32-bit lane.
FP8MOE_SCALING_AVX512_TARGET inline __m512i float_to_bf16_avx512(__m512 p) {
  __m512i const u = _mm512_castps_si512(p);
  __mmask16 const odd = _mm512_test_epi32_mask(u, _mm512_set1_epi32(0x10000));
  __m512i t = _mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF));
  t = _mm512_mask_add_epi32(t, odd, t, _mm512_set1_epi32(1));
  t = _mm512_maskz_srli_epi32(static_cast<__mmask16>(0xFFFF), t, 16);
  return _mm512_mask_mov_epi32(t, _mm512_cmp_ps_mask(p, p, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FFF));
}

/// bf16 bits of the values of 32 FP8 codes (one per word of c): the magnitude from two vpermt2w
/// lookups (64 codes each: t0|t1, t2|t3) blended on code bit 6, the sign from code bit 7.
FP8MOE_SCALING_AVX512_TARGET inline __m512i decode32_bf16_avx512(__m512i c, __m512i t0, __m512i t1,
                                                                 __m512i t2, __m512i t3) {
  __m512i const lo = _mm512_permutex2var_epi16(t0, c, t1), hi = _mm512_permutex2var_epi16(t2, c, t3);
  __m512i const mag = _mm512_mask_blend_epi16(_mm512_test_epi16_mask(c, _mm512_set1_epi16(0x40)), lo, hi);
  // mag | ((c << 8) & 0x8000)
  return _mm512_ternarylogic_epi32(mag, _mm512_slli_epi16(c, 8),
                                   _mm512_set1_epi16(static_cast<short>(0x8000)), 0xF8);
}

/// out[i] = bf16(decode(q[i]) * sf) for n contiguous codes in tiles of `tile`, tile t with scale
/// scales[t * scale_stride]: the same bits as the portable decode-table loop. The FP8 magnitude
/// is looked up as bf16 with two vpermt2w (64 codes each) and a blend on code bit 6, the sign is
/// the code's bit 7; unpacking with zero words makes floats, packus restores the element order.
template <class T>
FP8MOE_SCALING_AVX512_TARGET void dequantize_bf16_tiles_avx512(std::uint8_t const* q, void* out,
                                                               std::int64_t n, std::int64_t tile,
                                                               float const* scales,
                                                               std::int64_t scale_stride) {
  auto* const y = static_cast<std::uint16_t*>(out);  // written through intrinsic stores only
  auto const& tab = bf16_magnitude_table_v<T>.v;
  __m512i const t0 = _mm512_load_si512(tab), t1 = _mm512_load_si512(tab + 32);
  __m512i const t2 = _mm512_load_si512(tab + 64), t3 = _mm512_load_si512(tab + 96);
  __m512i const z = _mm512_setzero_si512();

  for (std::int64_t c0 = 0, t = 0; c0 < n; c0 += tile, ++t) {
    __m512 const sf = _mm512_set1_ps(scales[t * scale_stride]);
    std::int64_t const end = c0 + tile < n ? c0 + tile : n;
    for (std::int64_t i = c0; i < end; i += 32) {
      std::int64_t const r = end - i < 32 ? end - i : 32;
      auto const m = static_cast<__mmask32>(r == 32 ? 0xFFFFFFFFu : (1u << r) - 1u);
      __m512i const v =
          decode32_bf16_avx512(_mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, q + i)), t0, t1, t2, t3);
      __m512i const a =
          float_to_bf16_avx512(_mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(z, v)), sf));
      __m512i const b =
          float_to_bf16_avx512(_mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(z, v)), sf));
      _mm512_mask_storeu_epi16(y + i, m, _mm512_packus_epi32(a, b));
    }
  }
}

/// Values of 16 FP8 codes of T (one per 32-bit lane of c) as float bits, by arithmetic: normal
/// codes shift into the float exponent/mantissa with the bias folded in, subnormals are
/// int(code) * 2^(1-bias-M) (exact), the inf code gives inf and the NaN codes 0x7FFFFFFF, as the
/// decode table (T::to_float) has them.
template <class T>
FP8MOE_SCALING_AVX512_TARGET inline __m512i decode16_avx512(__m512i c) {
  using D = decode_constants<T>;
  __m512i const mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7F));
  __m512i v = _mm512_add_epi32(_mm512_slli_epi32(mag, D::shift), _mm512_set1_epi32(D::rebias));
  __m512 const sub = _mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(D::sub_step));
  v = _mm512_mask_mov_epi32(v, _mm512_cmplt_epi32_mask(mag, _mm512_set1_epi32(D::min_normal_code)),
                            _mm512_castps_si512(sub));
  if constexpr (D::inf_code > 0)
    v = _mm512_mask_mov_epi32(v, _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(D::inf_code)),
                              _mm512_set1_epi32(0x7F800000));
  v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24));
  return _mm512_mask_mov_epi32(v, _mm512_cmpge_epi32_mask(mag, _mm512_set1_epi32(D::first_nan_code)),
                               _mm512_set1_epi32(0x7FFFFFFF));
}

/// out[i] = decode(q[i]) * sf for n contiguous codes in tiles of `tile`, tile t with scale
/// scales[t * scale_stride]: the same bits as the portable loop (lut[q] * sf, same operand order).
template <class T>
FP8MOE_SCALING_AVX512_TARGET void dequantize_float_tiles_avx512(std::uint8_t const* q, float* y,
                                                                std::int64_t n, std::int64_t tile,
                                                                float const* scales,
                                                                std::int64_t scale_stride) {
  for (std::int64_t c0 = 0, t = 0; c0 < n; c0 += tile, ++t) {
    __m512 const sf = _mm512_set1_ps(scales[t * scale_stride]);
    std::int64_t const end = c0 + tile < n ? c0 + tile : n;
    for (std::int64_t i = c0; i < end; i += 16) {
      std::int64_t const r = end - i < 16 ? end - i : 16;
      auto const m = static_cast<__mmask16>(r == 16 ? 0xFFFFu : (1u << r) - 1u);
      __m512i const v = decode16_avx512<T>(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, q + i)));
      _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_castsi512_ps(v), sf));
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace fp8moe::scaling::detail
#endif  // FP8MOE_SCALING_X86
