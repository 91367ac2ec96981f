// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host quantize / dequantize / transpose_requantize (OpenMP over rows or tiles). Outputs are
// overwritten (data and scales); inputs are read-only; everything is validated before any output
// is written. Per-tile math is scale_math.hpp, shared with the CUDA path (scaling/cuda/).
// Partial tiles at the right/bottom edges get their own amax over the elements that exist.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/host_simd.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "fp8moe/scaling/scale_math.hpp"

namespace fp8moe::scaling {

namespace detail {

inline constexpr char const* quantize_where = "fp8moe::scaling::quantize";
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

inline char const* format_name(element_format f) {
  return f == element_format::e4m3 ? "e4m3" : "e5m2";
}

inline void check_recipe(tensor_recipe const& r, std::string_view where) {
  std::string_view const p = recipe_problem(r);
  require(p.empty(), where, "recipe", "a valid recipe", p);
}

template <class T>
void check_format(tensor_recipe const& r, std::string_view where, std::string_view arg) {
  require(format_of<T>() == r.format, where, arg,
          std::string("element type ") + format_name(r.format) + " (recipe.format)",
          format_name(format_of<T>()));
}

/// Checks a quantized view: data shape, tile, and a scale matrix of the matching shape.
template <class T>
void check_quantized(quantized_matrix_view<T> const& q, std::int64_t rows, std::int64_t cols, tile_shape tile,
                     std::string_view where, std::string_view arg) {
  std::string const a(arg);
  check_matrix(q.data, where, a + ".data");
  check_shape(q.data, rows, cols, where, a + ".data");
  require(q.tile.rows >= 0 && q.tile.cols >= 0, where, a + ".tile", "non-negative tile extents");
  require(q.tile == tile, where, a + ".tile",
          "tile " + std::to_string(tile.rows) + "x" + std::to_string(tile.cols) + " (recipe.tile)",
          std::to_string(q.tile.rows) + "x" + std::to_string(q.tile.cols));
  check_matrix(q.scales, where, a + ".scales");
  check_shape(q.scales, scale_rows(tile, rows), scale_cols(tile, cols), where, a + ".scales");
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

template <class In, class T>
void validate_quantize(matrix_view<In const> x, tensor_recipe const& r, quantized_matrix_view<T> const& out,
                       std::string_view where) {
  check_recipe(r, where);
  require(r.source == amax_source::current, where, "recipe.source",
          "amax_source::current (for delayed scaling pass a delayed_scaling state: scaling/delayed.hpp)",
          "delayed");
  check_format<T>(r, where, "out.data");
  check_matrix(x, where, "x");
  check_quantized(out, x.rows, x.cols, r.tile, where, "out");
}

template <class In, class T>
void quantize_validated(host_executor const& exec, matrix_view<In const> x, tensor_recipe const& r,
                        quantized_matrix_view<T> out) {
  if (amax_ignores_nan(r.formula))
    quantize_host_impl<true>(exec, x, r, out);
  else
    quantize_host_impl<false>(exec, x, r, out);
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

/// Entry checks shared by the host and CUDA quantize overloads: element types at compile time,
/// then recipe, views and shapes (before anything is written). Returns x as a const view.
template <class In, class T>
matrix_view<std::remove_const_t<In> const> checked_quantize_args(matrix_view<In> x, tensor_recipe const& r,
                                                                 quantized_matrix_view<T> const& out) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::quantize: the output element type must be float8_e4m3_t or float8_e5m2_t");
  static_assert(wide_element<In>,
                "fp8moe::scaling::quantize: the input element type must be float or bfloat16_t");
  matrix_view<std::remove_const_t<In> const> const xc = x;
  validate_quantize(xc, r, out, quantize_where);
  return xc;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// quantize

/// Quantizes x (R,C) float or bf16 into out: FP8 data (R,C) + scales (ceil(R/tr), ceil(C/tc))
/// in any layout (row-major or mn_major_scale_layout). Overwrites out. Current-amax recipes only.
/// Throws fp8moe::error (before writing) on a bad recipe, element type, shape or stride.
template <class In, class T>
void quantize(host_executor const& exec, matrix_view<In> x, tensor_recipe const& r,
              quantized_matrix_view<T> out) {
  detail::quantize_validated(exec, detail::checked_quantize_args(x, r, out), r, out);
}

/// Allocating overload: returns a quantized_matrix<T> (row-major data and scales).
/// T defaults to float8_e4m3_t; pass quantize<float8_e5m2_t>(...) for E5M2 recipes.
template <class T = float8_e4m3_t, class In>
quantized_matrix<T> quantize(host_executor const& exec, matrix_view<In> x, tensor_recipe const& r) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::quantize: the output element type must be float8_e4m3_t or float8_e5m2_t");
  detail::check_recipe(r, detail::quantize_where);
  detail::check_format<T>(r, detail::quantize_where, "T (output element type)");
  check_matrix(x, detail::quantize_where, "x");
  quantized_matrix<T> q(x.rows, x.cols, r.tile);
  quantize(exec, x, r, q.view());
  return q;
}

// ---------------------------------------------------------------------------------------------
// dequantize

/// y(r,c) = float(q(r,c)) * sf(r/tr, c/tc), rounded to bf16 (RNE) when y is bf16. Overwrites y.
template <class T, class Out>
void dequantize(host_executor const& exec, quantized_matrix_view<T> q, matrix_view<Out> y) {
  using Q = std::remove_const_t<T>;
  static_assert(float8_type<Q>, "fp8moe::scaling::dequantize: q must hold float8_e4m3_t or float8_e5m2_t");
  static_assert(wide_element<Out> && !std::is_const_v<Out>,
                "fp8moe::scaling::dequantize: y must be a mutable float or bfloat16_t matrix");
  constexpr char const* where = "fp8moe::scaling::dequantize";
  quantized_matrix_view<Q const> const qc = q;
  check_matrix(qc.data, where, "q.data");
  require(qc.tile.rows >= 0 && qc.tile.cols >= 0, where, "q.tile", "non-negative tile extents");
  detail::check_quantized(qc, qc.data.rows, qc.data.cols, qc.tile, where, "q");
  check_matrix(y, where, "y");
  check_shape(y, qc.rows(), qc.cols(), where, "y");
  std::int64_t const R = qc.rows(), C = qc.cols();
  if (R == 0 || C == 0) return;
  std::int64_t const tr = qc.tile_rows(), tc = qc.tile_cols();
  auto const& lut = detail::decode_table_v<Q>.v;
  int const nt = exec.num_threads();
  (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t row = 0; row < R; ++row) {
    detail::dequantize_row<Q>(lut.data(), reinterpret_cast<std::uint8_t const*>(&qc.data(row, 0)),
                              qc.data.col_stride, &y(row, 0), y.col_stride, C, tc, &qc.scales(row / tr, 0),
                              qc.scales.col_stride);
  }
}

// ---------------------------------------------------------------------------------------------
// transpose_requantize

namespace detail {

#if (defined(__GNUC__) || defined(__clang__)) && !FP8MOE_CUDA_COMPILER
#define FP8MOE_SCALING_VECTOR_EXT 1
using v16u8 = std::uint8_t __attribute__((vector_size(16)));

/// dst row i (16 bytes) = column i of the 16x16 byte block at src (strides in bytes). Four rounds
/// of "out[2i] = interleave_lo(in[i], in[i+8]), out[2i+1] = interleave_hi(in[i], in[i+8])": each
/// round rotates the 8-bit (vector, byte) index left by one, so four rounds swap row and column.
FP8MOE_SCALING_FORCE_INLINE inline void transpose_16x16_bytes(std::uint8_t const* src,
                                                              std::int64_t src_stride, std::uint8_t* dst,
                                                              std::int64_t dst_stride) {
  v16u8 a[16], b[16];
  for (int i = 0; i < 16; ++i) std::memcpy(&a[i], src + i * src_stride, 16);
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 8; ++i) {
#if defined(__clang__)
      b[2 * i] =
          __builtin_shufflevector(a[i], a[i + 8], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      b[2 * i + 1] = __builtin_shufflevector(a[i], a[i + 8], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14,
                                             30, 15, 31);
#else
      b[2 * i] =
          __builtin_shuffle(a[i], a[i + 8], v16u8{0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23});
      b[2 * i + 1] = __builtin_shuffle(a[i], a[i + 8],
                                       v16u8{8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31});
#endif
    }
    for (int i = 0; i < 16; ++i) a[i] = b[i];
  }
  for (int i = 0; i < 16; ++i) std::memcpy(dst + i * dst_stride, &a[i], 16);
}
#else
#define FP8MOE_SCALING_VECTOR_EXT 0
#endif

/// Source rows staged per work item in the byte buffer that turns scattered transposed writes
/// into contiguous row writes (longer tiles write directly).
inline constexpr std::int64_t transpose_stage_rows = 256;
/// Source columns per transpose work item (= output rows it writes).
inline constexpr std::int64_t transpose_columns = 128;
/// Outputs of at least this many bytes are written with non-temporal stores (x86).
inline constexpr std::int64_t transpose_stream_min_bytes = std::int64_t{1} << 20;
static_assert(max_batch_tiles <= max_scale_batch && max_chunk <= max_scale_batch &&
              transpose_columns <= max_scale_batch);

/// One work item of the blocked transpose + quantize of (R,C) -> (C,R) with tiles {1,K} along
/// the output rows (= Kx1 column tiles of the source): source rows [r0, r0+nr) x columns
/// [c0, c0+nc), nc <= transpose_columns. `load_row(row, c0, nc, v)` writes the source elements
/// (row, c0..c0+nc) as float to v. The per-column loops are plain element-wise array code.
template <bool IgnoreNan, bool Divide, saturation Sat, class LoadRow, class T>
FP8MOE_SCALING_FORCE_INLINE inline void transpose_quantize_item(
    LoadRow const& load_row, tensor_recipe const& r, float vfi, quantized_matrix_view<T> out, std::int64_t b,
    std::int64_t r0, std::int64_t nr, std::int64_t c0, std::int64_t nc, std::int32_t const* raw_given,
    std::int32_t const* m_given) {
  using F = typename T::format;
  alignas(64) std::int32_t m[transpose_columns] = {};
  alignas(64) std::int32_t raw[transpose_columns] = {};  // amax with NaN counted (== m unless IgnoreNan)
  alignas(64) float v[transpose_columns] = {};
  alignas(64) float k[transpose_columns] = {};
  alignas(64) std::uint8_t q[transpose_columns] = {};
  if (raw_given) {  // column amax from the caller's whole-row pass
    std::copy_n(raw_given, nc, raw);
    std::copy_n(m_given, nc, m);
  }
  for (std::int64_t row = raw_given ? r0 + nr : r0; row < r0 + nr; ++row) {
    load_row(row, c0, nc, v);
#pragma omp simd
    for (std::int64_t c = 0; c < transpose_columns; ++c) {
      std::int32_t const a = fp8moe::bit_cast<std::int32_t>(v[c]) & 0x7FFFFFFF;
      raw[c] = a > raw[c] ? a : raw[c];
      if constexpr (IgnoreNan) {
        std::int32_t const f = a > 0x7F800000 ? 0 : a;
        m[c] = f > m[c] ? f : m[c];
      }
    }
  }
  // the AVX-512 encode runs when every column allows it (clamped if any column may overflow)
  alignas(64) tile_scale ts[transpose_columns];
  compute_tile_scales(r, reinterpret_cast<std::uint32_t const*>(IgnoreNan ? m : raw), nc, vfi, ts);
  simd_encode mode = simd_encode::plain;
  for (std::int64_t c = 0; c < nc; ++c) {
    k[c] = Divide ? ts[c].sf : ts[c].multiplier;
    out.scales(c0 + c, b) = ts[c].sf;
    mode = std::max(mode, simd_encode_mode<F>(static_cast<std::uint32_t>(raw[c]), ts[c]));
  }
  host_isa const isa = active_host_isa();
  if (isa == host_isa::portable) mode = simd_encode::portable;
  auto const quantize_row = [&](std::int64_t row) FP8MOE_SCALING_FORCE_INLINE {
#if FP8MOE_SCALING_X86
    if (mode != simd_encode::portable) {
      if constexpr (requires { load_row.row_data(row); }) {
        if (auto const* src = load_row.row_data(row)) {  // contiguous source row: read in place
          encode_columns<F, Divide>(isa, mode, src + c0, k, q, nc, Sat);
          return;
        }
      }
      load_row(row, c0, nc, v);
      encode_columns<F, Divide>(isa, mode, static_cast<float const*>(v), k, q, nc, Sat);
      return;
    }
#endif
    load_row(row, c0, nc, v);
#pragma omp simd
    for (std::int64_t c = 0; c < transpose_columns; ++c)
      q[c] = float_to_fp8_bits_select<F>(Divide ? v[c] / k[c] : v[c] * k[c], Sat);
  };
  if (nr <= transpose_stage_rows) {
    // quantized source rows, row-major [source row - r0][column - c0]; transposed on the way out
    alignas(64) std::uint8_t stage[transpose_stage_rows][transpose_columns];
    for (std::int64_t row = r0; row < r0 + nr; ++row) {
      quantize_row(row);
      std::memcpy(stage[row - r0], q, sizeof q);
    }
    std::int64_t c_done = 0, j_done = 0;  // extents written by 16x16 blocks
#if FP8MOE_SCALING_VECTOR_EXT
    if (out.data.col_stride == 1) {
      c_done = nc / 16 * 16;
      j_done = nr / 16 * 16;
      auto* const o0 = reinterpret_cast<std::uint8_t*>(&out.data(c0, r0));
      std::int64_t const os = out.data.row_stride;
#if FP8MOE_SCALING_X86
      // large outputs, 16-byte aligned rows: transposed into an L1 buffer, then whole output row
      // spans go out with non-temporal stores (no read-for-ownership of lines nobody re-reads soon)
      if (j_done == nr && os % 16 == 0 && reinterpret_cast<std::uintptr_t>(o0) % 16 == 0 &&
          out.data.rows * out.data.cols >= transpose_stream_min_bytes) {
        alignas(64) std::uint8_t ostage[transpose_columns][transpose_stage_rows];
        for (std::int64_t cb = 0; cb < c_done; cb += 16)
          for (std::int64_t jb = 0; jb < j_done; jb += 16)
            transpose_16x16_bytes(&stage[jb][cb], transpose_columns, &ostage[cb][jb], transpose_stage_rows);
        for (std::int64_t c = 0; c < c_done; ++c)
          for (std::int64_t j = 0; j < nr; j += 16)
            _mm_stream_si128(reinterpret_cast<__m128i*>(o0 + c * os + j),
                             _mm_load_si128(reinterpret_cast<__m128i const*>(&ostage[c][j])));
      } else
#endif
        for (std::int64_t cb = 0; cb < c_done; cb += 16)
          for (std::int64_t jb = 0; jb < j_done; jb += 16)
            transpose_16x16_bytes(&stage[jb][cb], transpose_columns, o0 + cb * os + jb, os);
    }
#endif
    for (std::int64_t c = 0; c < nc; ++c) {  // edges (and every element without vector extensions)
      for (std::int64_t j = c < c_done ? j_done : 0; j < nr; ++j)
        out.data(c0 + c, r0 + j) = T::from_bits(stage[j][c]);
    }
  } else {
    for (std::int64_t row = r0; row < r0 + nr; ++row) {
      quantize_row(row);
      for (std::int64_t c = 0; c < nc; ++c) out.data(c0 + c, row) = T::from_bits(q[c]);
    }
  }
}

/// Rows of a high-precision source for the transpose: operator() writes elements (row, c0..c0+nc)
/// as float; row_data(row) is the row in place when its elements are contiguous, else nullptr.
template <class I>
struct source_rows {
  matrix_view<I const> x;
  FP8MOE_SCALING_FORCE_INLINE void operator()(std::int64_t row, std::int64_t c0, std::int64_t nc,
                                              float* v) const {
    if (x.col_stride == 1) {
      I const* src = &x(row, c0);
#pragma omp simd
      for (std::int64_t c = 0; c < nc; ++c) v[c] = load_contig(src, c);
    } else {
      for (std::int64_t c = 0; c < nc; ++c) v[c] = load_float(x(row, c0 + c));
    }
  }
  I const* row_data(std::int64_t row) const {
    return x.col_stride == 1 ? &x(row, 0) : nullptr;
  }
};

/// Source columns of one transpose work item: 128 (one block) when the source is read through
/// load_row only; for sources with contiguous rows (`row_data`), whole rows when there are enough
/// bands for the threads (the amax pass then streams full rows), else >= 1024-column chunks.
template <class LoadRow>
std::int64_t transpose_item_columns(LoadRow const& load_row, std::int64_t bands, std::int64_t C,
                                    int threads) {
  if constexpr (requires { load_row.row_data(std::int64_t{0}); }) {
    if (load_row.row_data(0) != nullptr) {
      std::int64_t const chunks = std::clamp<std::int64_t>(ceil_div<std::int64_t>(4 * threads, bands), 1,
                                                           std::max<std::int64_t>(1, C / 1024));
      return ceil_div(ceil_div(C, chunks), transpose_columns) * transpose_columns;
    }
  }
  return transpose_columns;
}

/// Column amax (raw with NaN counted; m without NaN when IgnoreNan) of source rows [r0, r0+nr) x
/// columns [c0, c0+nc) read in place in the source's own width (bf16 as int16), whole row spans.
template <bool IgnoreNan, class Rows>
FP8MOE_SCALING_FORCE_INLINE inline void column_amax_native(Rows const& rows, std::int64_t r0, std::int64_t nr,
                                                           std::int64_t c0, std::int64_t nc,
                                                           std::int32_t* raw, std::int32_t* m,
                                                           std::int16_t* raw16, std::int16_t* m16) {
  using I = std::remove_cvref_t<decltype(*rows.row_data(0))>;
  if constexpr (std::is_same_v<I, float>) {
    std::fill_n(raw, nc, 0);
    std::fill_n(m, nc, 0);
    for (std::int64_t j = 0; j < nr; ++j) {
      alias_i32 const* p = reinterpret_cast<alias_i32 const*>(rows.row_data(r0 + j) + c0);
#pragma omp simd
      for (std::int64_t c = 0; c < nc; ++c) {
        std::int32_t const a = p[c] & 0x7FFFFFFF;
        raw[c] = a > raw[c] ? a : raw[c];
        if constexpr (IgnoreNan) {
          std::int32_t const f = a > 0x7F800000 ? 0 : a;
          m[c] = f > m[c] ? f : m[c];
        }
      }
    }
  } else {
    std::fill_n(raw16, nc, std::int16_t{0});
    std::fill_n(m16, nc, std::int16_t{0});
    for (std::int64_t j = 0; j < nr; ++j) {
      alias_i16 const* p = reinterpret_cast<alias_i16 const*>(rows.row_data(r0 + j) + c0);
#pragma omp simd
      for (std::int64_t c = 0; c < nc; ++c) {
        auto const a = static_cast<std::int16_t>(p[c] & 0x7FFF);
        raw16[c] = a > raw16[c] ? a : raw16[c];
        if constexpr (IgnoreNan) {
          auto const f = a > 0x7F80 ? std::int16_t{0} : a;
          m16[c] = f > m16[c] ? f : m16[c];
        }
      }
    }
    for (std::int64_t c = 0; c < nc; ++c) {
      raw[c] = static_cast<std::int32_t>(static_cast<std::uint16_t>(raw16[c])) << 16;
      m[c] = static_cast<std::int32_t>(static_cast<std::uint16_t>(m16[c])) << 16;
    }
  }
}

/// Work items [first, last) of the blocked transpose (cloned for AVX2 / AVX-512; the scale
/// direction and saturation are resolved once per call). Item = K source rows x `item_columns`
/// columns: a column amax pass over whole row spans (sources with contiguous rows), then blocks of
/// transpose_columns.
template <bool IgnoreNan, class LoadRow, class T>
FP8MOE_SCALING_CLONES void transpose_quantize_items(LoadRow const& load_row, std::int64_t R, std::int64_t C,
                                                    tensor_recipe const& r, float vfi,
                                                    quantized_matrix_view<T> out, std::int64_t item_columns,
                                                    std::int64_t first, std::int64_t last) {
  std::int64_t const k = resolve_tile(r.tile.cols, R);  // tile length along the source rows
  std::int64_t const chunks = ceil_div(C, item_columns);
  bool const divide = r.formula == scale_formula::deepseek_v3_inference;
  constexpr bool native = requires {
    load_row.row_data(std::int64_t{0});
  };
  // items wider than one block come with their column amax from the in-place pass
  bool const given = native && item_columns > transpose_columns;
  std::vector<std::int32_t> raw, m;
  std::vector<std::int16_t> raw16, m16;
  if (given) {
    raw.resize(static_cast<std::size_t>(item_columns));
    m.resize(raw.size());
    raw16.resize(raw.size());
    m16.resize(raw.size());
  }
  for (std::int64_t item = first; item < last; ++item) {
    std::int64_t const b = item / chunks, cc0 = (item % chunks) * item_columns;
    std::int64_t const ncc = std::min(item_columns, C - cc0), r0 = b * k, nr = std::min(k, R - r0);
    if constexpr (native) {
      if (given)
        column_amax_native<IgnoreNan>(load_row, r0, nr, cc0, ncc, raw.data(), m.data(), raw16.data(),
                                      m16.data());
    }
    for (std::int64_t c0 = cc0; c0 < cc0 + ncc; c0 += transpose_columns) {
      std::int64_t const nc = std::min(transpose_columns, cc0 + ncc - c0);
      std::int32_t const* rg = given ? raw.data() + (c0 - cc0) : nullptr;
      std::int32_t const* mg = given ? m.data() + (c0 - cc0) : nullptr;
      if (divide) {
        if (r.sat == saturation::finite)
          transpose_quantize_item<IgnoreNan, true, saturation::finite>(load_row, r, vfi, out, b, r0, nr, c0,
                                                                       nc, rg, mg);
        else
          transpose_quantize_item<IgnoreNan, true, saturation::none>(load_row, r, vfi, out, b, r0, nr, c0, nc,
                                                                     rg, mg);
      } else {
        if (r.sat == saturation::finite)
          transpose_quantize_item<IgnoreNan, false, saturation::finite>(load_row, r, vfi, out, b, r0, nr, c0,
                                                                        nc, rg, mg);
        else
          transpose_quantize_item<IgnoreNan, false, saturation::none>(load_row, r, vfi, out, b, r0, nr, c0,
                                                                      nc, rg, mg);
      }
    }
  }
}

/// Blocked transpose + quantize of (R,C) -> (C,R): work items of K source rows x
/// transpose_item_columns, static schedule over contiguous ranges of items.
template <bool IgnoreNan, class LoadRow, class T>
void transpose_quantize_host_impl(host_executor const& exec, std::int64_t R, std::int64_t C,
                                  LoadRow const& load_row, tensor_recipe const& r, float vfi,
                                  quantized_matrix_view<T> out) {
  if (R == 0 || C == 0) return;
  int const nt = exec.num_threads();
  std::int64_t const bands = ceil_div(R, resolve_tile(r.tile.cols, R));
  std::int64_t const item_columns = transpose_item_columns(load_row, bands, C, nt);
  std::int64_t const items = bands * ceil_div(C, item_columns);
#pragma omp parallel num_threads(nt)
  {
    std::int64_t first = 0, last = items;
#if defined(_OPENMP)
    std::int64_t const threads = omp_get_num_threads(), id = omp_get_thread_num();
    first = items * id / threads;
    last = items * (id + 1) / threads;
#endif
    if (first < last)
      transpose_quantize_items<IgnoreNan>(load_row, R, C, r, vfi, out, item_columns, first, last);
#if FP8MOE_SCALING_X86
    _mm_sfence();  // the non-temporal output stores are visible before the barrier
#endif
  }
}

template <class T>
void validate_transpose(std::int64_t R, std::int64_t C, tensor_recipe const& r,
                        quantized_matrix_view<T> const& out, std::string_view where) {
  check_recipe(r, where);
  require(r.source == amax_source::current, where, "recipe.source", "amax_source::current", "delayed");
  require(r.tile.rows == 1, where, "recipe.tile",
          "rows == 1 (tiles run along the rows of the transposed output, e.g. {1,128})",
          std::to_string(r.tile.rows) + "x" + std::to_string(r.tile.cols));
  check_format<T>(r, where, "out.data");
  check_quantized(out, C, R, r.tile, where, "out");
}

/// Entry checks shared by the host and CUDA transpose_requantize-from-source overloads.
template <class In, class T>
matrix_view<std::remove_const_t<In> const> checked_transpose_args(matrix_view<In> x, tensor_recipe const& r,
                                                                  quantized_matrix_view<T> const& out) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::transpose_requantize: the output element type must be float8_e4m3_t or "
                "float8_e5m2_t");
  static_assert(wide_element<In>, "fp8moe::scaling::transpose_requantize: x must be float or bfloat16_t");
  constexpr char const* where = "fp8moe::scaling::transpose_requantize";
  matrix_view<std::remove_const_t<In> const> const xc = x;
  check_matrix(xc, where, "x");
  validate_transpose(xc.rows, xc.cols, r, out, where);
  return xc;
}

/// Entry checks shared by the host and CUDA transpose_requantize-from-FP8 overloads.
template <class Q, class T>
quantized_matrix_view<std::remove_const_t<Q> const> checked_transpose_args(
    quantized_matrix_view<Q> xq, tensor_recipe const& r, quantized_matrix_view<T> const& out) {
  using QT = std::remove_const_t<Q>;
  static_assert(
      float8_type<QT> && float8_type<T>,
      "fp8moe::scaling::transpose_requantize: the element types must be float8_e4m3_t or float8_e5m2_t");
  constexpr char const* where = "fp8moe::scaling::transpose_requantize";
  quantized_matrix_view<QT const> const qc = xq;
  check_matrix(qc.data, where, "xq.data");
  check_quantized(qc, qc.data.rows, qc.data.cols, qc.tile, where, "xq");
  validate_transpose(qc.rows(), qc.cols(), r, out, where);
  return qc;
}

}  // namespace detail

/// From the high-precision source (TE style, no double quantization): x (R,C) -> out = quantized
/// x^T (C,R) with recipe.tile {1,K} along R, i.e. Kx1 column tiles of x (the layout the
/// weight-gradient GEMM needs). out.scales is (C, ceil(R/K)). Overwrites out.
template <class In, class T>
void transpose_requantize(host_executor const& exec, matrix_view<In> x, tensor_recipe const& r,
                          quantized_matrix_view<T> out) {
  using I = std::remove_const_t<In>;
  matrix_view<I const> const xc = detail::checked_transpose_args(x, r, out);
  detail::source_rows<I> const load_row{xc};
  float const vfi = detail::value_for_inf<I>(r);
  if (amax_ignores_nan(r.formula))
    detail::transpose_quantize_host_impl<true>(exec, xc.rows, xc.cols, load_row, r, vfi, out);
  else
    detail::transpose_quantize_host_impl<false>(exec, xc.rows, xc.cols, load_row, r, vfi, out);
}

/// From an already quantized x (R,C) (e.g. 1x128 row tiles): each element is dequantized
/// (float(q) * sf, exact in fp32) and requantized into 1xK tiles of x^T. With power-of-two scales
/// on both sides the requantization only rescales by a power of two, so it is exact for every
/// element that stays in the FP8 normal range (fp8_numerics.md §0.11); elements pushed below it are
/// rounded once (RNE), as a direct quantization of the dequantized values would. Overwrites out.
template <class Q, class T>
void transpose_requantize(host_executor const& exec, quantized_matrix_view<Q> xq, tensor_recipe const& r,
                          quantized_matrix_view<T> out) {
  using QT = std::remove_const_t<Q>;
  quantized_matrix_view<QT const> const qc = detail::checked_transpose_args(xq, r, out);
  std::int64_t const tr = qc.tile_rows(), tc = qc.tile_cols();
  auto const load_row = [qc, tr, tc](std::int64_t row, std::int64_t c0, std::int64_t nc, float* v)
                            FP8MOE_SCALING_FORCE_INLINE {
                              auto const& lut = detail::decode_table_v<QT>.v;
                              for (std::int64_t c = 0; c < nc; ++c)
                                v[c] = lut[qc.data(row, c0 + c).bits()] * qc.scales(row / tr, (c0 + c) / tc);
                            };
  if (amax_ignores_nan(r.formula))
    detail::transpose_quantize_host_impl<true>(exec, qc.rows(), qc.cols(), load_row, r, 3.40282347e38f, out);
  else
    detail::transpose_quantize_host_impl<false>(exec, qc.rows(), qc.cols(), load_row, r, 3.40282347e38f, out);
}

}  // namespace fp8moe::scaling
