// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host implementation of transpose_requantize (quantize.hpp holds the public entry points and the
// argument checks): band-wise work items (K source rows x whole rows or column chunks), a column
// amax pass in the source's width, per-block encode by the kernel family in use, 16x16 byte
// transposes, non-temporal output rows for large outputs. Overwrites the output; callers validate.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "fp8moe/scaling/host/quantize.hpp"

namespace fp8moe::scaling::detail {

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
    bool staged = false;
#if FP8MOE_SCALING_X86
    if constexpr (requires { load_row.row_data(r0); }) {
      if (mode != simd_encode::portable && load_row.row_data(r0) != nullptr) {  // whole block in one call
        auto const* src = load_row.row_data(r0);
        std::int64_t const ss = nr > 1 ? load_row.row_data(r0 + 1) - src : 0;
        encode_rows<F, Divide>(isa, mode, src + c0, ss, nr, k, nc, &stage[0][0], transpose_columns, Sat);
        staged = true;
      }
    }
#endif
    for (std::int64_t row = r0; row < r0 + nr && !staged; ++row) {
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
      // stage columns [0, c_done) x rows [0, j_done) -> dst rows (row stride ds): the kernel
      // family's wide ladders (64 or 32 columns per step), then 16x16 blocks
      auto const transpose_stage = [&](std::uint8_t* dst, std::int64_t ds) FP8MOE_SCALING_FORCE_INLINE {
        std::int64_t cb = 0;
#if FP8MOE_SCALING_X86
        if (isa == host_isa::avx512)
          for (; cb + 64 <= c_done; cb += 64)
            transpose_bytes_64_avx512(&stage[0][cb], transpose_columns, j_done / 16, dst + cb * ds, ds);
        else if (isa == host_isa::avx2)
          for (; cb + 32 <= c_done; cb += 32)
            transpose_bytes_32_avx2(&stage[0][cb], transpose_columns, j_done / 16, dst + cb * ds, ds);
#endif
        for (; cb < c_done; cb += 16)
          for (std::int64_t jb = 0; jb < j_done; jb += 16)
            transpose_16x16_bytes(&stage[jb][cb], transpose_columns, dst + cb * ds + jb, ds);
      };
#if FP8MOE_SCALING_X86
      // large outputs, 16-byte aligned rows: transposed into an L1 buffer, then whole output row
      // spans go out with non-temporal stores (no read-for-ownership of lines nobody re-reads soon)
      if (j_done == nr && os % 16 == 0 && reinterpret_cast<std::uintptr_t>(o0) % 16 == 0 &&
          out.data.rows * out.data.cols >= transpose_stream_min_bytes) {
        alignas(64) std::uint8_t ostage[transpose_columns][transpose_stage_rows];
        transpose_stage(&ostage[0][0], transpose_stage_rows);
        // only whole cache lines go out non-temporally: a line this row span shares with the
        // span of another work item (output not 64-byte aligned) is stored normally
        if (isa == host_isa::avx512 || isa == host_isa::avx2)
          stream_rows_avx2(&ostage[0][0], transpose_stage_rows, c_done, nr, o0, os);
        else  // the portable family: SSE2, 16 bytes per non-temporal store
          for (std::int64_t c = 0; c < c_done; ++c) {
            std::uint8_t* const d = o0 + c * os;
            auto const lead = static_cast<std::int64_t>((64 - reinterpret_cast<std::uintptr_t>(d) % 64) % 64);
            std::int64_t const line_begin = std::min(lead, nr);
            std::int64_t const line_end = line_begin + (nr - line_begin) / 64 * 64;
            for (std::int64_t j = 0; j < nr; j += 16) {
              __m128i const v = _mm_load_si128(reinterpret_cast<__m128i const*>(&ostage[c][j]));
              if (j >= line_begin && j < line_end)
                _mm_stream_si128(reinterpret_cast<__m128i*>(d + j), v);
              else
                _mm_storeu_si128(reinterpret_cast<__m128i*>(d + j), v);
            }
          }
      } else
#endif
        transpose_stage(o0, os);
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

}  // namespace fp8moe::scaling::detail
