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

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/numeric.hpp"
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
  if (std::is_same_v<std::remove_cv_t<In>, bfloat16_t> && r.tile != per_tensor) return 3.38953139e38f;  // bf16 max
  return 3.40282347e38f;
}

inline char const* format_name(element_format f) { return f == element_format::e4m3 ? "e4m3" : "e5m2"; }

inline void check_recipe(tensor_recipe const& r, std::string_view where) {
  std::string_view const p = recipe_problem(r);
  require(p.empty(), where, "recipe", "a valid recipe", p);
}

template <class T>
void check_format(tensor_recipe const& r, std::string_view where, std::string_view arg) {
  require(format_of<T>() == r.format, where, arg, std::string("element type ") + format_name(r.format) + " (recipe.format)",
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
  if constexpr (std::is_same_v<std::remove_cv_t<In>, float>) return x;
  else return x.to_float();
}

// The quantize loop vectorises from plain C++ (float_to_fp8_bits_select); on x86-64 Linux with
// GCC it is also cloned for AVX2 and AVX-512 and picked at load time (ifunc), ~3x faster than SSE2.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !FP8MOE_CUDA_COMPILER
#define FP8MOE_SCALING_CLONES __attribute__((target_clones("arch=skylake-avx512", "avx2", "default")))
#else
#define FP8MOE_SCALING_CLONES
#endif

/// Quantizes n elements src[i*ss] -> dst[i*ds] with one tile scale (the host inner loop).
template <class T, bool Divide, saturation Sat, class In>
FP8MOE_SCALING_FORCE_INLINE inline void quantize_span(In const* src, std::int64_t ss, T* dst, std::int64_t ds, std::int64_t n, tile_scale s) {
  using F = typename T::format;
  std::uint8_t* d = reinterpret_cast<std::uint8_t*>(dst);
  if (ss == 1 && ds == 1) {
    for (std::int64_t i = 0; i < n; ++i) {
      float const x = load_float(src[i]);
      float const y = Divide ? x / s.sf : x * s.multiplier;
      d[i] = float_to_fp8_bits_select<F>(y, Sat);
    }
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      float const x = load_float(src[i * ss]);
      float const y = Divide ? x / s.sf : x * s.multiplier;
      d[i * ds] = float_to_fp8_bits_select<F>(y, Sat);
    }
  }
}

#if (defined(__GNUC__) || defined(__clang__)) && !FP8MOE_CUDA_COMPILER
#define FP8MOE_SCALING_VECTOR_EXT 1
// 128-bit GCC/Clang vector extensions: native compares on every x86-64 (SSE2) and AArch64,
// where the auto-vectoriser cannot form an unsigned/int32 max reduction without SSE4.1.
using v4i32 = std::int32_t __attribute__((vector_size(16)));
using v4u16 = std::uint16_t __attribute__((vector_size(8)));

template <class In>
FP8MOE_SCALING_FORCE_INLINE inline v4i32 load_abs_bits4(In const* p) {
  if constexpr (std::is_same_v<In, float>) {
    v4i32 v;
    std::memcpy(&v, p, 16);
    return v & 0x7FFFFFFF;
  } else {
    v4u16 h;
    std::memcpy(&h, p, 8);
    return (__builtin_convertvector(h, v4i32) & 0x7FFF) << 16;
  }
}
#else
#define FP8MOE_SCALING_VECTOR_EXT 0
#endif

/// amax bits of n elements src[i*ss], combined into m (NaN policy per IgnoreNan).
template <bool IgnoreNan, class In>
FP8MOE_SCALING_FORCE_INLINE inline std::uint32_t amax_span(In const* src, std::int64_t ss, std::int64_t n, std::uint32_t m) {
  std::int64_t i = 0;
  if (ss == 1) {
#if FP8MOE_SCALING_VECTOR_EXT
    v4i32 a0 = {0, 0, 0, 0}, a1 = {0, 0, 0, 0};  // two accumulators: independent compare chains
    for (; i + 8 <= n; i += 8) {
      v4i32 v0 = load_abs_bits4(src + i), v1 = load_abs_bits4(src + i + 4);
      if constexpr (IgnoreNan) {
        v0 &= ~(v0 > 0x7F800000);
        v1 &= ~(v1 > 0x7F800000);
      }
      v4i32 const g0 = v0 > a0, g1 = v1 > a1;
      a0 = (v0 & g0) | (a0 & ~g0);
      a1 = (v1 & g1) | (a1 & ~g1);
    }
    for (int j = 0; j < 4; ++j) {
      m = amax_combine(m, static_cast<std::uint32_t>(a0[j]), false);
      m = amax_combine(m, static_cast<std::uint32_t>(a1[j]), false);
    }
#endif
    for (; i < n; ++i) m = amax_combine(m, abs_bits(src[i]), IgnoreNan);
  } else {
    for (; i < n; ++i) m = amax_combine(m, abs_bits(src[i * ss]), IgnoreNan);
  }
  return m;
}

template <class T, class In>
FP8MOE_SCALING_FORCE_INLINE inline void quantize_span_select(In const* src, std::int64_t ss, T* dst, std::int64_t ds, std::int64_t n, tile_scale s,
                                 saturation sat) {
  if (s.divide) {
    if (sat == saturation::finite) quantize_span<T, true, saturation::finite>(src, ss, dst, ds, n, s);
    else quantize_span<T, true, saturation::none>(src, ss, dst, ds, n, s);
  } else {
    if (sat == saturation::finite) quantize_span<T, false, saturation::finite>(src, ss, dst, ds, n, s);
    else quantize_span<T, false, saturation::none>(src, ss, dst, ds, n, s);
  }
}

/// One tile's elements with its scale (cloned for AVX2 / AVX-512 where available).
template <class T, class In>
FP8MOE_SCALING_CLONES void quantize_span_dispatch(In const* src, std::int64_t ss, T* dst, std::int64_t ds,
                                                  std::int64_t n, tile_scale s, saturation sat) {
  quantize_span_select(src, ss, dst, ds, n, s, sat);
}

/// All 1 x tc tiles of one row: amax, scale, quantize per tile; one call per row, so the
/// per-tile work is inlined into the AVX2 / AVX-512 clones.
template <bool IgnoreNan, class In, class T>
FP8MOE_SCALING_CLONES void quantize_row_tiles(In const* src, std::int64_t xs, T* dst, std::int64_t os, std::int64_t C,
                                              std::int64_t tc, tensor_recipe const& r, float vfi, float* scales,
                                              std::int64_t scale_stride) {
  for (std::int64_t c0 = 0, t = 0; c0 < C; c0 += tc, ++t) {
    std::int64_t const n = std::min(tc, C - c0);
    std::uint32_t const m = amax_span<IgnoreNan>(src + c0 * xs, xs, n, 0u);
    tile_scale const s = compute_tile_scale(r, amax_from_bits(m), vfi);
    scales[t * scale_stride] = s.sf;
    quantize_span_select(src + c0 * xs, xs, dst + c0 * os, os, n, s, r.sat);
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

  if (tr == 1) {  // row tiles (1xK, MX, per-row): one pass per tile segment, segment stays in L1
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
      std::uint32_t m = 0;
#pragma omp parallel for schedule(static) reduction(max : m) num_threads(nt)
      for (std::int64_t row = r0; row < r0 + nr; ++row) m = amax_span<IgnoreNan>(&x(row, 0), xs, C, m);
      tile_scale const s = compute_tile_scale(r, amax_from_bits(m), vfi);
      out.scales(b, 0) = s.sf;
#pragma omp parallel for schedule(static) num_threads(nt)
      for (std::int64_t row = r0; row < r0 + nr; ++row) {
        quantize_span_dispatch(&x(row, 0), xs, &out.data(row, 0), os, C, s, r.sat);
      }
    }
    return;
  }
  // tr x tc tiles: work item = (band of tr rows) x (chunk of tiles >= 64 columns wide)
  std::int64_t const tiles_per_chunk = tc >= max_chunk ? 1 : max_chunk / tc;
  std::int64_t const chunks = ceil_div(SC, tiles_per_chunk);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (std::int64_t item = 0; item < SR * chunks; ++item) {
    std::int64_t const b = item / chunks, t0 = (item % chunks) * tiles_per_chunk;
    std::int64_t const nt_chunk = std::min(tiles_per_chunk, SC - t0);
    std::int64_t const r0 = b * tr, nr = std::min(tr, R - r0);
    std::array<std::uint32_t, max_chunk> m{};
    std::array<tile_scale, max_chunk> s{};
    for (std::int64_t row = r0; row < r0 + nr; ++row) {
      for (std::int64_t t = 0; t < nt_chunk; ++t) {
        std::int64_t const c0 = (t0 + t) * tc;
        m[t] = amax_span<IgnoreNan>(&x(row, c0), xs, std::min(tc, C - c0), m[t]);
      }
    }
    for (std::int64_t t = 0; t < nt_chunk; ++t) {
      s[t] = compute_tile_scale(r, amax_from_bits(m[t]), vfi);
      out.scales(b, t0 + t) = s[t].sf;
    }
    for (std::int64_t row = r0; row < r0 + nr; ++row) {
      for (std::int64_t t = 0; t < nt_chunk; ++t) {
        std::int64_t const c0 = (t0 + t) * tc;
        quantize_span_dispatch(&x(row, c0), xs, &out.data(row, c0), os, std::min(tc, C - c0), s[t], r.sat);
      }
    }
  }
}

template <class In, class T>
void validate_quantize(matrix_view<In const> x, tensor_recipe const& r, quantized_matrix_view<T> const& out,
                       std::string_view where) {
  check_recipe(r, where);
  require(r.source == amax_source::current, where, "recipe.source",
          "amax_source::current (for delayed scaling pass a delayed_scaling state: scaling/delayed.hpp)", "delayed");
  check_format<T>(r, where, "out.data");
  check_matrix(x, where, "x");
  check_quantized(out, x.rows, x.cols, r.tile, where, "out");
}

template <class In, class T>
void quantize_validated(host_executor const& exec, matrix_view<In const> x, tensor_recipe const& r,
                        quantized_matrix_view<T> out) {
  if (amax_ignores_nan(r.formula)) quantize_host_impl<true>(exec, x, r, out);
  else quantize_host_impl<false>(exec, x, r, out);
}

/// 256-entry decode table of an FP8 format (exact floats; NaN codes decode to NaN).
template <class T>
struct decode_table {
  std::array<float, 256> v{};
  constexpr decode_table() {
    for (int i = 0; i < 256; ++i) v[static_cast<std::size_t>(i)] = T::from_bits(static_cast<std::uint8_t>(i)).to_float();
  }
};
template <class T>
inline constexpr decode_table<T> decode_table_v{};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// quantize

/// Quantizes x (R,C) float or bf16 into out: FP8 data (R,C) + scales (ceil(R/tr), ceil(C/tc))
/// in any layout (row-major or mn_major_scale_layout). Overwrites out. Current-amax recipes only.
/// Throws fp8moe::error (before writing) on a bad recipe, element type, shape or stride.
template <class In, class T>
void quantize(host_executor const& exec, matrix_view<In> x, tensor_recipe const& r, quantized_matrix_view<T> out) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::quantize: the output element type must be float8_e4m3_t or float8_e5m2_t");
  static_assert(wide_element<In>, "fp8moe::scaling::quantize: the input element type must be float or bfloat16_t");
  using I = std::remove_const_t<In>;
  matrix_view<I const> const xc = x;
  detail::validate_quantize(xc, r, out, detail::quantize_where);
  detail::quantize_validated(exec, xc, r, out);
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
  std::int64_t const tr = qc.tile_rows(), tc = qc.tile_cols(), SC = scale_cols(qc.tile, C);
  auto const& lut = detail::decode_table_v<Q>.v;
  int const nt = exec.num_threads();
  (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (std::int64_t row = 0; row < R; ++row) {
    for (std::int64_t t = 0; t < SC; ++t) {
      float const sf = qc.scales(row / tr, t);
      std::int64_t const c0 = t * tc, n = std::min(tc, C - c0);
      std::uint8_t const* src = reinterpret_cast<std::uint8_t const*>(&qc.data(row, c0));
      Out* dst = &y(row, c0);
      std::int64_t const ss = qc.data.col_stride, ds = y.col_stride;
      if (ss == 1 && ds == 1) {
        for (std::int64_t i = 0; i < n; ++i) dst[i] = from_float<Out>(lut[src[i]] * sf);
      } else {
        for (std::int64_t i = 0; i < n; ++i) dst[i * ds] = from_float<Out>(lut[src[i * ss]] * sf);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// transpose_requantize

namespace detail {

/// Blocked transpose + quantize of (R,C) -> (C,R) with tiles {1,K} along the output rows
/// (= Kx1 column tiles of the source). `load(r, c)` gives the source element as float.
/// Source rows staged per work item in the byte buffer that turns scattered transposed writes
/// into contiguous row writes (longer tiles write directly).
inline constexpr std::int64_t transpose_stage_rows = 256;

/// Blocked transpose + quantize of (R,C) -> (C,R) with tiles {1,K} along the output rows
/// (= Kx1 column tiles of the source). `load(r, c)` gives the source element as float.
/// Work item = K source rows x 64 source columns; the per-column loops are plain element-wise
/// array code (mask selects) so they vectorise.
template <bool IgnoreNan, class Load, class T>
void transpose_quantize_host_impl(host_executor const& exec, std::int64_t R, std::int64_t C, Load const& load,
                                  tensor_recipe const& r, float vfi, quantized_matrix_view<T> out) {
  using F = typename T::format;
  if (R == 0 || C == 0) return;
  std::int64_t const k = resolve_tile(r.tile.cols, R);  // tile length along the source rows
  std::int64_t const bands = ceil_div(R, k);
  std::int64_t const chunks = ceil_div(C, max_chunk);
  bool const divide = r.formula == scale_formula::deepseek_v3_inference;
  int const nt = exec.num_threads();
  (void)nt;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (std::int64_t item = 0; item < bands * chunks; ++item) {
    std::int64_t const b = item / chunks, c0 = (item % chunks) * max_chunk;
    std::int64_t const nc = std::min(max_chunk, C - c0), r0 = b * k, nr = std::min(k, R - r0);
    alignas(64) std::int32_t m[max_chunk] = {};
    alignas(64) float v[max_chunk] = {};
    alignas(64) float mult[max_chunk] = {}, sf[max_chunk] = {};
    alignas(64) std::uint8_t q[max_chunk] = {};
    for (std::int64_t row = r0; row < r0 + nr; ++row) {
      for (std::int64_t c = 0; c < nc; ++c) v[c] = load(row, c0 + c);
      for (std::int64_t c = 0; c < max_chunk; ++c) {
        auto a = static_cast<std::int32_t>(abs_bits(v[c]));
        if constexpr (IgnoreNan) a &= -static_cast<std::int32_t>(a <= 0x7F800000);
        std::int32_t const gt = -static_cast<std::int32_t>(a > m[c]);
        m[c] = (a & gt) | (m[c] & ~gt);
      }
    }
    for (std::int64_t c = 0; c < nc; ++c) {
      tile_scale const t = compute_tile_scale(r, amax_from_bits(static_cast<std::uint32_t>(m[c])), vfi);
      mult[c] = t.multiplier;
      sf[c] = t.sf;
      out.scales(c0 + c, b) = t.sf;
    }
    auto quantize_row = [&](std::int64_t row) {
      for (std::int64_t c = 0; c < nc; ++c) v[c] = load(row, c0 + c);
      if (divide) {
        for (std::int64_t c = 0; c < max_chunk; ++c) q[c] = float_to_fp8_bits_select<F>(v[c] / sf[c], r.sat);
      } else {
        for (std::int64_t c = 0; c < max_chunk; ++c) q[c] = float_to_fp8_bits_select<F>(v[c] * mult[c], r.sat);
      }
    };
    if (nr <= transpose_stage_rows) {
      alignas(64) std::uint8_t stage[max_chunk][transpose_stage_rows];  // [output row][output col - r0]
      for (std::int64_t row = r0; row < r0 + nr; ++row) {
        quantize_row(row);
        for (std::int64_t c = 0; c < nc; ++c) stage[c][row - r0] = q[c];
      }
      for (std::int64_t c = 0; c < nc; ++c) {
        if (out.data.col_stride == 1) {
          std::memcpy(&out.data(c0 + c, r0), stage[c], static_cast<std::size_t>(nr));
        } else {
          for (std::int64_t j = 0; j < nr; ++j) out.data(c0 + c, r0 + j) = T::from_bits(stage[c][j]);
        }
      }
    } else {
      for (std::int64_t row = r0; row < r0 + nr; ++row) {
        quantize_row(row);
        for (std::int64_t c = 0; c < nc; ++c) out.data(c0 + c, row) = T::from_bits(q[c]);
      }
    }
  }
}

template <class T>
void validate_transpose(std::int64_t R, std::int64_t C, tensor_recipe const& r, quantized_matrix_view<T> const& out,
                        std::string_view where) {
  check_recipe(r, where);
  require(r.source == amax_source::current, where, "recipe.source", "amax_source::current", "delayed");
  require(r.tile.rows == 1, where, "recipe.tile",
          "rows == 1 (tiles run along the rows of the transposed output, e.g. {1,128})",
          std::to_string(r.tile.rows) + "x" + std::to_string(r.tile.cols));
  check_format<T>(r, where, "out.data");
  check_quantized(out, C, R, r.tile, where, "out");
}

}  // namespace detail

/// From the high-precision source (TE style, no double quantization): x (R,C) -> out = quantized
/// x^T (C,R) with recipe.tile {1,K} along R, i.e. Kx1 column tiles of x (the layout the
/// weight-gradient GEMM needs). out.scales is (C, ceil(R/K)). Overwrites out.
template <class In, class T>
void transpose_requantize(host_executor const& exec, matrix_view<In> x, tensor_recipe const& r,
                          quantized_matrix_view<T> out) {
  static_assert(float8_type<T>,
                "fp8moe::scaling::transpose_requantize: the output element type must be float8_e4m3_t or float8_e5m2_t");
  static_assert(wide_element<In>, "fp8moe::scaling::transpose_requantize: x must be float or bfloat16_t");
  constexpr char const* where = "fp8moe::scaling::transpose_requantize";
  using I = std::remove_const_t<In>;
  matrix_view<I const> const xc = x;
  check_matrix(xc, where, "x");
  detail::validate_transpose(xc.rows, xc.cols, r, out, where);
  auto const load = [xc](std::int64_t row, std::int64_t c) { return detail::load_float(xc(row, c)); };
  float const vfi = detail::value_for_inf<I>(r);
  if (amax_ignores_nan(r.formula)) detail::transpose_quantize_host_impl<true>(exec, xc.rows, xc.cols, load, r, vfi, out);
  else detail::transpose_quantize_host_impl<false>(exec, xc.rows, xc.cols, load, r, vfi, out);
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
  static_assert(float8_type<QT> && float8_type<T>,
                "fp8moe::scaling::transpose_requantize: the element types must be float8_e4m3_t or float8_e5m2_t");
  constexpr char const* where = "fp8moe::scaling::transpose_requantize";
  quantized_matrix_view<QT const> const qc = xq;
  check_matrix(qc.data, where, "xq.data");
  detail::check_quantized(qc, qc.data.rows, qc.data.cols, qc.tile, where, "xq");
  detail::validate_transpose(qc.rows(), qc.cols(), r, out, where);
  std::int64_t const tr = qc.tile_rows(), tc = qc.tile_cols();
  auto const load = [qc, tr, tc](std::int64_t row, std::int64_t c) {
    return detail::decode_table_v<QT>.v[qc.data(row, c).bits()] * qc.scales(row / tr, c / tc);
  };
  if (amax_ignores_nan(r.formula)) detail::transpose_quantize_host_impl<true>(exec, qc.rows(), qc.cols(), load, r, 3.40282347e38f, out);
  else detail::transpose_quantize_host_impl<false>(exec, qc.rows(), qc.cols(), load, r, 3.40282347e38f, out);
}

}  // namespace fp8moe::scaling
