// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Scale-matrix layouts: row-major, DeepGEMM's MN-major TMA-aligned layout (row_stride 1,
// col_stride round_up(scale_rows, 4): every column starts 16-byte aligned), UE8M0 packing (4
// exponent bytes per int32 along K, MN-major) and the cuBLAS/TE MXFP8 swizzled byte layout.
// Packing functions overwrite their outputs and validate (power-of-two scales) before writing.
#pragma once

#include <cstdint>
#include <string>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/float8_e8m0.hpp"
#include "fp8moe/scaling/quantized.hpp"

namespace fp8moe::scaling {

/// Shape and strides (in elements) of a scale matrix, and the elements its buffer must hold.
struct scale_layout {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = 0;
  std::int64_t col_stride = 1;
  constexpr FP8MOE_HOST_DEVICE std::int64_t required_elements() const {
    if (rows == 0 || cols == 0) return 0;
    if (row_stride == 1 && col_stride > 1 && col_stride >= rows) return col_stride * cols;  // padded MN-major
    return (rows - 1) * row_stride + (cols - 1) * col_stride + 1;
  }
  friend constexpr bool operator==(scale_layout const&, scale_layout const&) = default;
};

/// Row-major (scale_rows, scale_cols).
constexpr FP8MOE_HOST_DEVICE scale_layout row_major_scale_layout(std::int64_t scale_rows,
                                                                 std::int64_t scale_cols) {
  return {scale_rows, scale_cols, scale_cols, 1};
}

/// DeepGEMM `get_mn_major_tma_aligned_tensor`: (mn, sf_k) with strides (1, align(mn, 4)), so each
/// K-column of fp32 scales starts at a 16-byte boundary (TMA requirement). Buffer: align(mn,4)*sf_k.
constexpr FP8MOE_HOST_DEVICE scale_layout mn_major_scale_layout(std::int64_t scale_rows,
                                                                std::int64_t scale_cols) {
  return {scale_rows, scale_cols, 1, round_up<std::int64_t>(scale_rows, 4)};
}

/// Layout of the scales of an R x C matrix quantized with `tile`, MN-major TMA-aligned.
constexpr FP8MOE_HOST_DEVICE scale_layout mn_major_scale_layout(tile_shape tile, std::int64_t rows,
                                                                std::int64_t cols) {
  return mn_major_scale_layout(scale_rows(tile, rows), scale_cols(tile, cols));
}
constexpr FP8MOE_HOST_DEVICE scale_layout row_major_scale_layout(tile_shape tile, std::int64_t rows,
                                                                 std::int64_t cols) {
  return row_major_scale_layout(scale_rows(tile, rows), scale_cols(tile, cols));
}

/// A matrix_view over `data` with layout `l` (the caller owns l.required_elements() elements).
template <class T>
constexpr FP8MOE_HOST_DEVICE matrix_view<T> make_scale_view(T* data, scale_layout const& l) {
  return {data, l.rows, l.cols, l.row_stride, l.col_stride};
}

/// Packed UE8M0 layout (DeepGEMM SM100 / `pack_ue8m0_to_int`): int32 (mn, ceil(sf_k/4)), strides
/// (1, align(mn, 4)); byte j%4 (little-endian, low byte first) of word (m, j/4) is the E8M0
/// exponent of scale (m, j); K is padded with 0x00 bytes.
constexpr FP8MOE_HOST_DEVICE scale_layout packed_ue8m0_layout(std::int64_t scale_rows,
                                                              std::int64_t scale_cols) {
  return {scale_rows, ceil_div<std::int64_t>(scale_cols, 4), 1, round_up<std::int64_t>(scale_rows, 4)};
}

namespace detail {
/// E8M0 code of an exact power of two (2^-127 .. 2^127), or 0xFF when s is not one.
constexpr FP8MOE_HOST_DEVICE std::uint32_t exact_pow2_code(float s) {
  std::uint8_t const c = fp8moe::detail::float_to_e8m0_bits(s, e8m0_rounding::toward_zero, saturation::none);
  if (c == 0xFF || fp8moe::bit_cast<std::uint32_t>(fp8moe::detail::e8m0_bits_to_float(c)) !=
                       fp8moe::bit_cast<std::uint32_t>(s)) {
    return 0xFFu;
  }
  return c;
}

template <class T>
void check_pow2_scales(matrix_view<T> s, std::string_view where) {
  for (std::int64_t i = 0; i < s.rows; ++i) {
    for (std::int64_t j = 0; j < s.cols; ++j) {
      float const v = s(i, j);
      require(exact_pow2_code(v) != 0xFFu, where, "scales",
              "positive powers of two in [2^-127, 2^127] (a ue8m0 or power_of_two recipe)",
              "scales(" + std::to_string(i) + ", " + std::to_string(j) + ") = " + std::to_string(v));
    }
  }
}
}  // namespace detail

/// Packs power-of-two fp32 scales (mn, sf_k) into UE8M0 int32 words, MN-major (packed_ue8m0_layout).
/// Throws (before writing) if a scale is not an exact power of two or `out` has the wrong shape.
/// Host path only (the scales are checked on the host before anything is written).
template <executor Exec, class S>
void pack_ue8m0(Exec const&, matrix_view<S> scales, matrix_view<std::int32_t> out) {
  static_assert(host_executor_like<Exec>,
                "fp8moe::scaling::pack_ue8m0: host path only; copy device scales to the host first");
  constexpr char const* where = "fp8moe::scaling::pack_ue8m0";
  matrix_view<float const> const s = scales;
  check_matrix(s, where, "scales");
  check_matrix(out, where, "out");
  check_shape(out, s.rows, ceil_div<std::int64_t>(s.cols, 4), where, "out");
  detail::check_pow2_scales(s, where);
  for (std::int64_t m = 0; m < s.rows; ++m) {
    for (std::int64_t w = 0; w < out.cols; ++w) {
      std::uint32_t word = 0;
      for (std::int64_t b = 0; b < 4; ++b) {
        std::int64_t const j = 4 * w + b;
        std::uint32_t const code = j < s.cols ? detail::exact_pow2_code(s(m, j)) : 0u;
        word |= code << (8 * b);
      }
      out(m, w) = static_cast<std::int32_t>(word);
    }
  }
}

/// Byte offset of MXFP8 scale (i, j) (row i of the data, scale column j = K-block) in the
/// cuBLAS "1D block scaling factors" / TE swizzled layout: 128x4 tiles of 512 bytes,
/// idx = (i/128 * ceil(SC/4) + j/4) * 512 + (i%32) * 16 + (i%128/32) * 4 + j%4 (fp8_numerics.md §5.5).
constexpr FP8MOE_HOST_DEVICE std::int64_t mx_swizzled_offset(std::int64_t i, std::int64_t j,
                                                             std::int64_t scale_cols) {
  std::int64_t const tiles_x = ceil_div<std::int64_t>(scale_cols, 4);
  return (i / 128 * tiles_x + j / 4) * 512 + (i % 128 % 32) * 16 + (i % 128 / 32) * 4 + j % 4;
}
/// Bytes of the swizzled MX scale buffer: roundup(rows, 128) * roundup(scale_cols, 4).
constexpr FP8MOE_HOST_DEVICE std::int64_t mx_swizzled_bytes(std::int64_t scale_rows,
                                                            std::int64_t scale_cols) {
  return round_up<std::int64_t>(scale_rows, 128) * round_up<std::int64_t>(scale_cols, 4);
}

/// Writes power-of-two scales (rows, sf_k) as E8M0 bytes in the swizzled MX layout; padding bytes
/// are 0x00 (TE zero-fills padding). `out` must hold mx_swizzled_bytes(rows, sf_k) bytes.
/// Host path only (the scales are checked on the host before anything is written).
template <executor Exec, class S>
void pack_mx_swizzled(Exec const&, matrix_view<S> scales, vector_view<std::uint8_t> out) {
  static_assert(host_executor_like<Exec>,
                "fp8moe::scaling::pack_mx_swizzled: host path only; copy device scales to the host first");
  constexpr char const* where = "fp8moe::scaling::pack_mx_swizzled";
  matrix_view<float const> const s = scales;
  check_matrix(s, where, "scales");
  std::int64_t const need = mx_swizzled_bytes(s.rows, s.cols);
  require(out.size == need, where, "out", std::to_string(need) + " bytes", std::to_string(out.size));
  require(need == 0 || (out.data != nullptr && out.stride == 1), where, "out", "non-null contiguous bytes");
  detail::check_pow2_scales(s, where);
  for (std::int64_t k = 0; k < need; ++k) out[k] = 0;
  for (std::int64_t i = 0; i < s.rows; ++i) {
    for (std::int64_t j = 0; j < s.cols; ++j) {
      out[mx_swizzled_offset(i, j, s.cols)] = static_cast<std::uint8_t>(detail::exact_pow2_code(s(i, j)));
    }
  }
}

}  // namespace fp8moe::scaling
