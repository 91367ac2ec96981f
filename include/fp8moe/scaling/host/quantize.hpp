// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host implementation of quantize and dequantize (quantize.hpp holds the public entry points and
// the argument checks): portable loops (auto-vectorised, cloned for AVX2 / AVX-512 at load time),
// batched tile scales, the row-tile / tile-block / per-tensor drivers (OpenMP over rows or work
// items) and the dequantize rows, with the kernel families of host/simd.hpp where they apply.
// Outputs are overwritten; callers validate every argument first.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/host/simd.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "fp8moe/scaling/scale_math.hpp"

namespace fp8moe::scaling::detail {

/// Host work item widths (columns): at namespace scope, as nvcc rejects constexpr locals used
/// inside OpenMP regions.
inline constexpr std::int64_t max_chunk = 64;

/// TE block scaling replaces an infinite scale by the input type's max; per-tensor by FLT_MAX.
template <class In>
constexpr float value_for_inf(tensor_recipe const& r) {
  if (std::is_same_v<std::remove_cv_t<In>, bfloat16_t> && r.tile != per_tensor)
    return 3.38953139e38f;  // bf16 max
  return 3.40282347e38f;
}

template <class In>
FP8MOE_SCALING_FORCE_INLINE FP8MOE_HOST_DEVICE float load_float(In x) {
  if constexpr (std::is_same_v<std::remove_cv_t<In>, float>)
    return x;
  else
    return x.to_float();
}

// The quantize loop vectorises from plain C++ (float_to_fp8_bits_select); on x86-64 Linux with
// GCC it is also cloned for AVX2 and AVX-512 and picked at load time (ifunc), ~3x faster than SSE2.
// Not under TSan: it instruments the load-time (ifunc) resolver, which runs before TSan is set up.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !FP8MOE_CUDA_COMPILER && !defined(__SANITIZE_THREAD__)
#define FP8MOE_SCALING_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define FP8MOE_SCALING_CLONES
#endif

/// Raw bits of float / bf16 elements read through a may_alias type (the contiguous loops below
/// work on bits so they vectorise as plain integer SIMD).
#if defined(__GNUC__) || defined(__clang__)
#define FP8MOE_SCALING_MAY_ALIAS __attribute__((may_alias))
#else
#define FP8MOE_SCALING_MAY_ALIAS
#endif
using alias_u16 = std::uint16_t FP8MOE_SCALING_MAY_ALIAS;
using alias_i16 = std::int16_t FP8MOE_SCALING_MAY_ALIAS;
using alias_i32 = std::int32_t FP8MOE_SCALING_MAY_ALIAS;

/// Element i of a contiguous float / bf16 array as float (bf16: bits << 16, exact).
template <class In>
FP8MOE_SCALING_FORCE_INLINE inline float load_contig(In const* src, std::int64_t i) {
  if constexpr (std::is_same_v<In, float>) {
    return src[i];
  } else {
    auto const b = static_cast<std::uint32_t>(reinterpret_cast<alias_u16 const*>(src)[i]) << 16;
    return fp8moe::bit_cast<float>(b);
  }
}

/// Quantizes n contiguous elements with one tile scale (`Divide`: x / sf, else x * multiplier).
template <class T, bool Divide, saturation Sat, class In>
FP8MOE_SCALING_FORCE_INLINE inline void encode_contig(In const* src, std::uint8_t* d, std::int64_t n,
                                                      tile_scale s) {
  using F = typename T::format;
  float const k = Divide ? s.sf : s.multiplier;
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    float const x = load_contig(src, i);
    d[i] = float_to_fp8_bits_select<F>(Divide ? x / k : x * k, Sat);
  }
}

/// Quantizes n elements src[i*ss] -> dst[i*ds] with one tile scale (the host inner loop).
template <class T, bool Divide, saturation Sat, class In>
FP8MOE_SCALING_FORCE_INLINE inline void quantize_span(In const* src, std::int64_t ss, T* dst, std::int64_t ds,
                                                      std::int64_t n, tile_scale s) {
  using F = typename T::format;
  std::uint8_t* d = reinterpret_cast<std::uint8_t*>(dst);
  if (ss == 1 && ds == 1) {
    encode_contig<T, Divide, Sat>(src, d, n, s);
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      float const x = load_float(src[i * ss]);
      float const y = Divide ? x / s.sf : x * s.multiplier;
      d[i * ds] = float_to_fp8_bits_select<F>(y, Sat);
    }
  }
}

/// amax bits of n contiguous elements (NaN policy per IgnoreNan). |x| bits are non-negative
/// int32 (int16 for bf16: the top half of the float bits), so amax is a signed integer max
/// reduction (NaN bits sort above inf); IgnoreNan zeroes NaN bits first.
template <bool IgnoreNan, class In>
FP8MOE_SCALING_FORCE_INLINE inline std::uint32_t amax_contig(In const* src, std::int64_t n) {
  if constexpr (std::is_same_v<In, float>) {
    alias_i32 const* p = reinterpret_cast<alias_i32 const*>(src);
    std::int32_t m = 0;
#pragma omp simd reduction(max : m)
    for (std::int64_t i = 0; i < n; ++i) {
      std::int32_t a = p[i] & 0x7FFFFFFF;
      if constexpr (IgnoreNan) a = a > 0x7F800000 ? 0 : a;
      m = a > m ? a : m;
    }
    return static_cast<std::uint32_t>(m);
  } else {
    alias_i16 const* p = reinterpret_cast<alias_i16 const*>(src);
    std::int16_t m = 0;
#pragma omp simd reduction(max : m)
    for (std::int64_t i = 0; i < n; ++i) {
      auto a = static_cast<std::int16_t>(p[i] & 0x7FFF);
      if constexpr (IgnoreNan) a = a > 0x7F80 ? std::int16_t{0} : a;
      m = a > m ? a : m;
    }
    return static_cast<std::uint32_t>(static_cast<std::uint16_t>(m)) << 16;
  }
}

/// amax bits of n elements src[i*ss], combined into m (NaN policy per IgnoreNan).
template <bool IgnoreNan, class In>
FP8MOE_SCALING_FORCE_INLINE inline std::uint32_t amax_span(In const* src, std::int64_t ss, std::int64_t n,
                                                           std::uint32_t m) {
  if (ss == 1) return amax_combine(m, amax_contig<IgnoreNan>(src, n), false);
  for (std::int64_t i = 0; i < n; ++i) m = amax_combine(m, abs_bits(src[i * ss]), IgnoreNan);
  return m;
}

/// amax bits under the formula's NaN policy from the raw amax (NaN counted, sorting above inf):
/// equal unless the span holds a NaN and the policy ignores NaN, then recomputed without NaN.
template <bool IgnoreNan, class In>
FP8MOE_SCALING_FORCE_INLINE inline std::uint32_t policy_amax(std::uint32_t raw, In const* src,
                                                             std::int64_t ss, std::int64_t n,
                                                             std::uint32_t m) {
  if constexpr (IgnoreNan) {
    if (raw > 0x7F800000u) return amax_span<true>(src, ss, n, m);
  }
  return raw;
}

template <class T, class In>
FP8MOE_SCALING_FORCE_INLINE inline void quantize_span_select(In const* src, std::int64_t ss, T* dst,
                                                             std::int64_t ds, std::int64_t n, tile_scale s,
                                                             saturation sat) {
  if (s.divide) {
    if (sat == saturation::finite)
      quantize_span<T, true, saturation::finite>(src, ss, dst, ds, n, s);
    else
      quantize_span<T, true, saturation::none>(src, ss, dst, ds, n, s);
  } else {
    if (sat == saturation::finite)
      quantize_span<T, false, saturation::finite>(src, ss, dst, ds, n, s);
    else
      quantize_span<T, false, saturation::none>(src, ss, dst, ds, n, s);
  }
}

/// One tile's elements with its scale (cloned for AVX2 / AVX-512 where available).
template <class T, class In>
FP8MOE_SCALING_CLONES void quantize_span_dispatch(In const* src, std::int64_t ss, T* dst, std::int64_t ds,
                                                  std::int64_t n, tile_scale s, saturation sat) {
  quantize_span_select(src, ss, dst, ds, n, s, sat);
}

/// amax bits of one row span (cloned; the per-tensor amax pass).
template <bool IgnoreNan, class In>
FP8MOE_SCALING_CLONES std::uint32_t amax_span_dispatch(In const* src, std::int64_t ss, std::int64_t n,
                                                       std::uint32_t m) {
  return amax_span<IgnoreNan>(src, ss, n, m);
}

/// Scales s[t] of tiles t in [0, n), n <= max_scale_batch, from their amax bits (NaN policy
/// already applied): one branch-free loop per scale kind (compute_tile_scale_as), vectorised in
/// the AVX2 / AVX-512 clones; the same bits as compute_tile_scale per tile.
inline constexpr std::int64_t max_scale_batch = 128;
template <class Recipe>
FP8MOE_SCALING_FORCE_INLINE inline void compute_tile_scales_body(Recipe const& r, std::uint32_t const* amax,
                                                                 std::int64_t n, float vfi, tile_scale* s) {
  alignas(64) float mult[max_scale_batch];
  alignas(64) float sf[max_scale_batch];
  visit_scale_kind(r, [&](auto kind) FP8MOE_SCALING_FORCE_INLINE {
#pragma omp simd
    for (std::int64_t t = 0; t < n; ++t) {
      tile_scale const x = compute_tile_scale_as<decltype(kind)>(r, amax_from_bits(amax[t]), vfi);
      mult[t] = x.multiplier;
      sf[t] = x.sf;
    }
  });
  bool const divide = r.formula == scale_formula::deepseek_v3_inference;
  for (std::int64_t t = 0; t < n; ++t) s[t] = {mult[t], sf[t], divide};
}
/// The body compiled for the portable path (load-time clones) and for each kernel family.
template <class Recipe>
FP8MOE_SCALING_CLONES void compute_tile_scales_portable(Recipe const& r, std::uint32_t const* amax,
                                                        std::int64_t n, float vfi, tile_scale* s) {
  compute_tile_scales_body(r, amax, n, vfi, s);
}
#if FP8MOE_SCALING_X86
template <class Recipe>
FP8MOE_SCALING_AVX2_TARGET void compute_tile_scales_avx2(Recipe const& r, std::uint32_t const* amax,
                                                         std::int64_t n, float vfi, tile_scale* s) {
  compute_tile_scales_body(r, amax, n, vfi, s);
}
template <class Recipe>
FP8MOE_SCALING_AVX512_TARGET void compute_tile_scales_avx512(Recipe const& r, std::uint32_t const* amax,
                                                             std::int64_t n, float vfi, tile_scale* s) {
  compute_tile_scales_body(r, amax, n, vfi, s);
}
#endif
template <class Recipe>
inline void compute_tile_scales(Recipe const& r, std::uint32_t const* amax, std::int64_t n, float vfi,
                                tile_scale* s) {
#if FP8MOE_SCALING_X86
  switch (active_host_isa()) {
    case host_isa::avx512:
      return compute_tile_scales_avx512(r, amax, n, vfi, s);
    case host_isa::avx2:
      return compute_tile_scales_avx2(r, amax, n, vfi, s);
    case host_isa::portable:
      break;
  }
#endif
  compute_tile_scales_portable(r, amax, n, vfi, s);
}

/// Row tiles are processed in batches of up to this many elements (and max_batch_tiles tiles):
/// amax of every tile of the batch, then all their scales (independent divisions overlap), then
/// the encode, while the batch is still in L1.
inline constexpr std::int64_t batch_elements = 4096;
inline constexpr std::int64_t max_batch_tiles = 128;

/// All 1 x tc tiles of one row: amax, scale, quantize per batch of tiles; one call per row, so
/// the per-tile work is inlined into the AVX2 / AVX-512 clones.
template <bool IgnoreNan, class In, class T>
FP8MOE_SCALING_CLONES void quantize_row_tiles(In const* src, std::int64_t xs, T* dst, std::int64_t os,
                                              std::int64_t C, std::int64_t tc, tensor_recipe const& r,
                                              float vfi, float* scales, std::int64_t scale_stride) {
  std::int64_t const bt = std::clamp<std::int64_t>(batch_elements / tc, 1, max_batch_tiles);
  std::uint32_t raw[max_batch_tiles];
  tile_scale s[max_batch_tiles];
  for (std::int64_t c0 = 0, t0 = 0; c0 < C; c0 += bt * tc, t0 += bt) {
    std::int64_t const nt = std::min(bt, ceil_div(C - c0, tc));
    std::uint32_t m[max_batch_tiles];
    if (xs != 1 || !amax_tiles(src + c0, std::min(nt * tc, C - c0), tc, raw)) {
      for (std::int64_t t = 0; t < nt; ++t) {
        std::int64_t const c = c0 + t * tc;
        raw[t] = amax_span<false>(src + c * xs, xs, std::min(tc, C - c), 0u);
      }
    }
    for (std::int64_t t = 0; t < nt; ++t) {
      std::int64_t const c = c0 + t * tc;
      m[t] = policy_amax<IgnoreNan>(raw[t], src + c * xs, xs, std::min(tc, C - c), 0u);
    }
    compute_tile_scales(r, m, nt, vfi, s);
    for (std::int64_t t = 0; t < nt; ++t) scales[(t0 + t) * scale_stride] = s[t].sf;
    auto const portable = [&](std::int64_t t) FP8MOE_SCALING_FORCE_INLINE {
      std::int64_t const c = c0 + t * tc;
      quantize_span_select(src + c * xs, xs, dst + c * os, os, std::min(tc, C - c), s[t], r.sat);
    };
    if (xs == 1 && os == 1)
      encode_tiles<typename T::format>(src + c0, reinterpret_cast<std::uint8_t*>(dst + c0),
                                       std::min(nt * tc, C - c0), tc, s, raw, nt, r.sat, portable);
    else
      for (std::int64_t t = 0; t < nt; ++t) portable(t);
  }
}

/// Fewest columns of one tr x tc work item when a band is split for load balance.
inline constexpr std::int64_t min_block_columns = 1024;

/// Tiles per work item of the tr x tc path: whole bands (long contiguous row streams: the amax
/// pass reads each row once from memory at full prefetch speed, the encode pass re-reads the band
/// from L2/L3; 128x1024-column items, whose rows are 2 KB streams, measured 1.8x slower), split
/// into chunks of at least min_block_columns only when there are too few bands for the threads.
constexpr std::int64_t tiles_per_work_item(std::int64_t bands, std::int64_t tiles, std::int64_t tc,
                                           int threads) {
  std::int64_t const want_items = 4 * static_cast<std::int64_t>(threads);
  std::int64_t const min_tiles = std::max<std::int64_t>(1, min_block_columns / tc);
  std::int64_t const chunks =
      std::clamp<std::int64_t>(ceil_div(want_items, bands), 1, std::max<std::int64_t>(1, tiles / min_tiles));
  return std::clamp<std::int64_t>(ceil_div(tiles, chunks), 1, max_chunk);
}

/// One work item of tr x tc tiles: rows [r0, r0+nr) x tiles [t0, t0+nt) (cloned).
template <bool IgnoreNan, class In, class T>
FP8MOE_SCALING_CLONES void quantize_tile_block(matrix_view<In const> x, tensor_recipe const& r, float vfi,
                                               quantized_matrix_view<T> out, std::int64_t b, std::int64_t r0,
                                               std::int64_t nr, std::int64_t t0, std::int64_t nt,
                                               std::int64_t tc) {
  std::int64_t const C = x.cols, xs = x.col_stride, os = out.data.col_stride;
  std::array<std::uint32_t, max_chunk> raw{};
  std::array<tile_scale, max_chunk> s{};
  std::array<std::uint32_t, max_chunk> row_raw{};
  for (std::int64_t row = r0; row < r0 + nr; ++row) {
    if (xs == 1 && amax_tiles(&x(row, t0 * tc), std::min(nt * tc, C - t0 * tc), tc, row_raw.data())) {
      for (std::int64_t t = 0; t < nt; ++t) raw[t] = std::max(raw[t], row_raw[t]);
      continue;
    }
    for (std::int64_t t = 0; t < nt; ++t) {
      std::int64_t const c0 = (t0 + t) * tc;
      raw[t] = amax_span<false>(&x(row, c0), xs, std::min(tc, C - c0), raw[t]);
    }
  }
  std::array<std::uint32_t, max_chunk> m{};
  for (std::int64_t t = 0; t < nt; ++t) {
    m[t] = raw[t];
    if (IgnoreNan && m[t] > 0x7F800000u) {  // a NaN in the tile: the amax the formula wants skips it
      m[t] = 0;
      std::int64_t const c0 = (t0 + t) * tc;
      for (std::int64_t row = r0; row < r0 + nr; ++row)
        m[t] = amax_span<true>(&x(row, c0), xs, std::min(tc, C - c0), m[t]);
    }
  }
  compute_tile_scales(r, m.data(), nt, vfi, s.data());
  for (std::int64_t t = 0; t < nt; ++t) out.scales(b, t0 + t) = s[t].sf;
  std::int64_t const c_begin = t0 * tc, n = std::min(nt * tc, C - c_begin);
  for (std::int64_t row = r0; row < r0 + nr; ++row) {
    auto const portable = [&](std::int64_t t) FP8MOE_SCALING_FORCE_INLINE {
      std::int64_t const c0 = (t0 + t) * tc;
      quantize_span_select(&x(row, c0), xs, &out.data(row, c0), os, std::min(tc, C - c0), s[t], r.sat);
    };
    if (xs == 1 && os == 1)
      encode_tiles<typename T::format>(&x(row, c_begin),
                                       reinterpret_cast<std::uint8_t*>(&out.data(row, c_begin)), n, tc,
                                       s.data(), raw.data(), nt, r.sat, portable);
    else
      for (std::int64_t t = 0; t < nt; ++t) portable(t);
  }
}

template <bool IgnoreNan, class In, class T>
void quantize_host_impl(host_executor const& exec, matrix_view<In const> x, tensor_recipe const& r,
                        quantized_matrix_view<T> out) {
  std::int64_t const R = x.rows, C = x.cols;
  if (R == 0 || C == 0) return;
  std::int64_t const tr = resolve_tile(r.tile.rows, R), tc = resolve_tile(r.tile.cols, C);
  std::int64_t const SR = scale_rows(r.tile, R), SC = scale_cols(r.tile, C);
  float const vfi = value_for_inf<In>(r);
  int const nt = exec.num_threads();
  (void)nt;
  std::int64_t const xs = x.col_stride, os = out.data.col_stride;

  if (tr == 1) {  // row tiles (1xK, MX, per-row): one pass per batch of tiles, batch stays in L1
#pragma omp parallel for schedule(static) num_threads(nt)
    for (std::int64_t row = 0; row < R; ++row) {
      quantize_row_tiles<IgnoreNan>(&x(row, 0), xs, &out.data(row, 0), os, C, tc, r, vfi, &out.scales(row, 0),
                                    out.scales.col_stride);
    }
    return;
  }
  if (SC == 1) {  // one scale per band of tr rows spanning all columns (per tensor, {K,0})
    for (std::int64_t b = 0; b < SR; ++b) {
      std::int64_t const r0 = b * tr, nr = std::min(tr, R - r0);
      std::uint32_t raw = 0;
#pragma omp parallel for schedule(static) reduction(max : raw) num_threads(nt)
      for (std::int64_t row = r0; row < r0 + nr; ++row)
        raw = amax_span_dispatch<false>(&x(row, 0), xs, C, raw);
      std::uint32_t m = raw;
      if (IgnoreNan && raw > 0x7F800000u) {  // a NaN in the band: the formula's amax skips it
        m = 0;
#pragma omp parallel for schedule(static) reduction(max : m) num_threads(nt)
        for (std::int64_t row = r0; row < r0 + nr; ++row) m = amax_span_dispatch<true>(&x(row, 0), xs, C, m);
      }
      tile_scale const s = compute_tile_scale(r, amax_from_bits(m), vfi);
      out.scales(b, 0) = s.sf;
#pragma omp parallel for schedule(static) num_threads(nt)
      for (std::int64_t row = r0; row < r0 + nr; ++row) {
        auto const portable = [&](std::int64_t) FP8MOE_SCALING_FORCE_INLINE {
          quantize_span_dispatch(&x(row, 0), xs, &out.data(row, 0), os, C, s, r.sat);
        };
        if (xs == 1 && os == 1)
          encode_tiles<typename T::format>(&x(row, 0), reinterpret_cast<std::uint8_t*>(&out.data(row, 0)), C,
                                           C, &s, &raw, 1, r.sat, portable);
        else
          portable(0);
      }
    }
    return;
  }
  // tr x tc tiles: work item = (band of tr rows) x (chunk of tiles, tiles_per_work_item)
  std::int64_t const tiles_per_chunk = tiles_per_work_item(SR, SC, tc, nt);
  std::int64_t const chunks = ceil_div(SC, tiles_per_chunk);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t item = 0; item < SR * chunks; ++item) {
    std::int64_t const b = item / chunks, t0 = (item % chunks) * tiles_per_chunk;
    std::int64_t const r0 = b * tr;
    quantize_tile_block<IgnoreNan>(x, r, vfi, out, b, r0, std::min(tr, R - r0), t0,
                                   std::min(tiles_per_chunk, SC - t0), tc);
  }
}

/// 256-entry decode table of an FP8 format (exact floats; NaN codes decode to NaN).
template <class T>
struct decode_table {
  std::array<float, 256> v{};
  constexpr decode_table() {
    for (int i = 0; i < 256; ++i)
      v[static_cast<std::size_t>(i)] = T::from_bits(static_cast<std::uint8_t>(i)).to_float();
  }
};
template <class T>
inline constexpr decode_table<T> decode_table_v{};

/// One row of dequantize: dst[c] = lut[src[c]] * scales[c / tc] (cloned; contiguous rows are
/// simd loops over a tile with one scale).
template <class Q, class Out>
FP8MOE_SCALING_CLONES void dequantize_row(float const* lut, std::uint8_t const* src, std::int64_t ss,
                                          Out* dst, std::int64_t ds, std::int64_t C, std::int64_t tc,
                                          float const* scales, std::int64_t scale_stride) {
  if (ss == 1 && ds == 1 && dequantize_tiles<Q>(src, dst, C, tc, scales, scale_stride)) return;
  for (std::int64_t c0 = 0, t = 0; c0 < C; c0 += tc, ++t) {
    float const sf = scales[t * scale_stride];
    std::int64_t const n = std::min(tc, C - c0);
    std::uint8_t const* s = src + c0 * ss;
    Out* d = dst + c0 * ds;
    if (ss == 1 && ds == 1) {
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) d[i] = from_float<Out>(lut[s[i]] * sf);
    } else {
      for (std::int64_t i = 0; i < n; ++i) d[i * ds] = from_float<Out>(lut[s[i * ss]] * sf);
    }
  }
}

}  // namespace fp8moe::scaling::detail
