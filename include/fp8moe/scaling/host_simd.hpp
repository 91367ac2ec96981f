// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Hand-vectorised x86-64 AVX-512 (F, BW, DQ, VL) encode of the host quantize. It takes every tile
// without a NaN whose scale is finite and positive (`simd_encode_mode`): the sign comes from the
// input (x * k with k > 0 keeps it) and goes back on the packed bytes, so the lanes encode |x|*k;
// tiles whose scaled amax can reach the overflow threshold also get the overflow min(), the rest
// skip it. Bit-identical to float_to_fp8_bits_select there (tested exhaustively over bf16 inputs
// and on random floats). NaN tiles, other CPUs, nvcc and non-GCC/Clang compilers use the portable
// loops of quantize.hpp; `set_host_simd(false)` forces those (for tests and comparisons).
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/scale_math.hpp"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !FP8MOE_CUDA_COMPILER
#define FP8MOE_SCALING_AVX512 1
#include <immintrin.h>
#define FP8MOE_SCALING_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#else
#define FP8MOE_SCALING_AVX512 0
#endif

namespace fp8moe::scaling {

namespace detail {
inline std::atomic<bool>& host_simd_allowed() {
  static std::atomic<bool> allowed{true};
  return allowed;
}
inline bool cpu_has_avx512() {
#if FP8MOE_SCALING_AVX512
  static bool const has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return has;
#else
  return false;
#endif
}
/// The AVX-512 kernels run: the CPU has them and set_host_simd has not forbidden them.
inline bool host_simd_active() {
  return cpu_has_avx512() && host_simd_allowed().load(std::memory_order_relaxed);
}
}  // namespace detail

/// Name of the host quantize encode kernel in use: "avx512" or "portable".
inline char const* host_simd_kernel() {
  return detail::host_simd_active() ? "avx512" : "portable";
}

/// Allows (default) or forbids the hand-vectorised host kernels; forbidding them makes every CPU
/// run the portable loops (results are the same bits either way). Returns the previous setting.
inline bool set_host_simd(bool allowed) {
  return detail::host_simd_allowed().exchange(allowed);
}

namespace detail {

/// Smallest |y| that no longer rounds to F's largest finite value: max + half an ulp (464 for
/// E4M3, 61440 for E5M2; a tie there rounds away from max for E5M2, so the bound is strict).
template <fp8_format F>
constexpr std::uint32_t overflow_threshold_bits() {
  constexpr int M = F::mantissa_bits;
  constexpr std::uint32_t e =
      static_cast<std::uint32_t>(F::max_code >> M) + 127u - static_cast<std::uint32_t>(F::bias);
  constexpr std::uint32_t m = static_cast<std::uint32_t>(F::max_code) & ((1u << M) - 1u);
  return (e << 23) | (m << (23 - M)) | (1u << (22 - M));
}

/// How the AVX-512 kernel may encode a tile whose |x| maximum has bits `raw_amax_bits` (NaN
/// counted, sorting above inf, as the integer amax loops produce) with scale `s`.
enum class simd_encode : std::uint8_t {  // ordered: a group of tiles takes the max of its modes
  plain,                                 ///< |x| * k stays below max + half an ulp: no overflow select needed
  clamp,    ///< finite (or infinite) inputs that may overflow: the kernel applies min(code, over)
  portable  ///< a NaN in the tile, or a scale that is not finite and positive
};
template <fp8_format F>
FP8MOE_HOST_DEVICE simd_encode simd_encode_mode(std::uint32_t raw_amax_bits, tile_scale s) {
  float const k = s.divide ? s.sf : s.multiplier;
  if (raw_amax_bits > 0x7F800000u || !(k > 0.0f) || k > 3.40282347e38f) return simd_encode::portable;
  float const amax = fp8moe::bit_cast<float>(raw_amax_bits);
  float const bound = s.divide ? amax / k : amax * k;  // |x| * k <= bound (rounding is monotonic)
  return bound < fp8moe::bit_cast<float>(overflow_threshold_bits<F>()) ? simd_encode::plain
                                                                       : simd_encode::clamp;
}

#if FP8MOE_SCALING_AVX512
// GCC 12 reports its own intrinsics' _mm512_undefined_* sources as maybe-uninitialized once they
// are inlined (GCC PR 105593, fixed in 13); the warning is about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/// Codes of 16 non-NaN floats f * k (or f / k), f >= 0, k > 0 finite, one per 32-bit lane:
/// normal codes by round-to-nearest-even at mantissa bit 23-M with the exponent rebias folded into
/// the addend (then min(code, over) when Clamp); below the smallest normal, f*k + magic rounds to
/// the subnormal step and its low bits are the code (the formulas of float_to_fp8_bits_select).
template <fp8_format F, bool Divide, bool Clamp>
FP8MOE_SCALING_AVX512_TARGET inline __m512i encode16_avx512(__m512 f, __m512 k, __m512i over) {
  constexpr int M = F::mantissa_bits;
  constexpr int shift = 23 - M;
  constexpr std::uint32_t addend =
      ((1u << (shift - 1)) - 1u) - (static_cast<std::uint32_t>(127 - F::bias) << 23);
  constexpr std::int32_t min_normal = (127 + 1 - F::bias) << 23;
  constexpr std::int32_t magic_bits = (127 + 1 - F::bias - M + 23) << 23;
  __m512 const y = Divide ? _mm512_div_ps(f, k) : _mm512_mul_ps(f, k);
  __m512i const a = _mm512_castps_si512(y);
  __mmask16 const odd = _mm512_test_epi32_mask(a, _mm512_set1_epi32(1 << shift));
  __m512i t = _mm512_add_epi32(a, _mm512_set1_epi32(static_cast<std::int32_t>(addend)));
  t = _mm512_mask_add_epi32(t, odd, t, _mm512_set1_epi32(1));
  __m512i normal = _mm512_maskz_srli_epi32(static_cast<__mmask16>(0xFFFF), t, shift);
  if constexpr (Clamp) normal = _mm512_min_epu32(normal, over);
  __m512 const sub = _mm512_add_ps(y, _mm512_castsi512_ps(_mm512_set1_epi32(magic_bits)));
  __mmask16 const small = _mm512_cmplt_epi32_mask(a, _mm512_set1_epi32(min_normal));
  return _mm512_mask_sub_epi32(normal, small, _mm512_castps_si512(sub), _mm512_set1_epi32(magic_bits));
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

/// Scale of element i for the encode loops: the tile containing i (indices only grow), or one
/// scale for the whole span.
template <bool Divide>
struct tile_cursor {
  tile_scale const* s;
  std::int64_t tile, t = 0, next;
  FP8MOE_SCALING_AVX512_TARGET __m512 at(std::int64_t i) {
    while (i >= next) ++t, next += tile;
    return _mm512_set1_ps(Divide ? s[t].sf : s[t].multiplier);
  }
};
struct one_scale {
  __m512 k;
  FP8MOE_SCALING_AVX512_TARGET __m512 at(std::int64_t) const { return k; }
};

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
    __m512 f0, f1, f2, f3;
    __mmask32 n0, n1;
    load32_avx512(src + i, f0, f1, n0);
    load32_avx512(src + i + 32, f2, f3, n1);
    __m512 const k0 = scale.at(i), k1 = bf16 ? k0 : scale.at(i + 16);
    __m512 const k2 = scale.at(i + 32), k3 = bf16 ? k2 : scale.at(i + 48);
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
    __m512 const k0 = scale.at(i), k1 = bf16 ? k0 : scale.at(i + 16);
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
        _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF))), scale.at(i), over);
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
    one_scale k{_mm512_set1_ps(Divide ? s[t].sf : s[t].multiplier)};
    encode_span_avx512<F, Divide, Clamp>(src, dst, c0, c0 + tile < n ? c0 + tile : n, k, over);
  }
}

/// Encodes 16*n16 contiguous floats v with per-element scales k (the transpose path: one scale
/// per source column) into dst; every element's column must allow the kernel (Clamp as above).
template <fp8_format F, bool Divide, bool Clamp>
FP8MOE_SCALING_AVX512_TARGET void encode_columns_avx512(float const* v, float const* k, std::uint8_t* dst,
                                                        std::int64_t n16, saturation sat) {
  __m512i const over = _mm512_set1_epi32(sat == saturation::finite ? F::max_code : F::overflow_code);
  for (std::int64_t i = 0; i < 16 * n16; i += 16) {
    __m512i const x = _mm512_loadu_si512(v + i);
    __mmask16 const neg = _mm512_movepi32_mask(x);
    __m512i c = encode16_avx512<F, Divide, Clamp>(
        _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF))), _mm512_loadu_ps(k + i),
        over);
    c = _mm512_mask_or_epi32(c, neg, c, _mm512_set1_epi32(0x80));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm512_cvtepi32_epi8(c));
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

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // FP8MOE_SCALING_AVX512

/// Encodes tiles [0, nt) of a contiguous span (tile t = elements [t*tile, min((t+1)*tile, n)),
/// scale s[t], raw amax bits raw_amax[t]) with the AVX-512 kernel where the CPU has it and the
/// tile allows (runs of tiles with the same mode go in one call); calls `portable(t)` for every
/// other tile. Forced inline, so `portable` is compiled into the caller's ISA clone.
template <fp8_format F, class In, class Portable>
FP8MOE_SCALING_FORCE_INLINE inline void encode_tiles(In const* src, std::uint8_t* dst, std::int64_t n,
                                                     std::int64_t tile, tile_scale const* s,
                                                     std::uint32_t const* raw_amax, std::int64_t nt,
                                                     saturation sat, Portable&& portable) {
#if FP8MOE_SCALING_AVX512
  if (host_simd_active()) {
    for (std::int64_t t = 0; t < nt;) {
      simd_encode const mode = simd_encode_mode<F>(raw_amax[t], s[t]);
      if (mode == simd_encode::portable) {
        portable(t++);
        continue;
      }
      std::int64_t u = t + 1;  // run of tiles with the same mode and division
      while (u < nt && s[u].divide == s[t].divide && simd_encode_mode<F>(raw_amax[u], s[u]) == mode) ++u;
      std::int64_t const c0 = t * tile, len = (u * tile < n ? u * tile : n) - c0;
      bool const clamp = mode == simd_encode::clamp;
      if (s[t].divide)
        (clamp ? encode_tiles_avx512<F, true, true, In>
               : encode_tiles_avx512<F, true, false, In>)(src + c0, dst + c0, len, tile, s + t, sat);
      else
        (clamp ? encode_tiles_avx512<F, false, true, In>
               : encode_tiles_avx512<F, false, false, In>)(src + c0, dst + c0, len, tile, s + t, sat);
      t = u;
    }
    return;
  }
#else
  (void)src, (void)dst, (void)n, (void)tile, (void)s, (void)raw_amax, (void)sat;
#endif
  for (std::int64_t t = 0; t < nt; ++t) portable(t);
}

}  // namespace detail
}  // namespace fp8moe::scaling
