// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// A quantized matrix = FP8 data + one float dequantization multiplier ("sf", TE's scale_inv) per
// tile: value(r, c) ~= float(data(r, c)) * scales(r / tile.rows, c / tile.cols).
// The scale matrix is (ceil(R / tile.rows), ceil(C / tile.cols)) with any strides: row-major, or
// DeepGEMM's MN-major TMA-aligned layout (row_stride 1, col_stride round_up(scale_rows, 4)).
#pragma once

#include <cstdint>

#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/scaling/recipe.hpp"

namespace fp8moe::scaling {

/// Tile extent along one axis: 0 ("whole extent") resolves to the matrix extent (at least 1).
constexpr FP8MOE_HOST_DEVICE std::int64_t resolve_tile(int tile, std::int64_t extent) {
  return tile > 0 ? tile : (extent > 0 ? extent : 1);
}
/// Scale-matrix shape for an R x C matrix quantized with `tile`.
constexpr FP8MOE_HOST_DEVICE std::int64_t scale_rows(tile_shape t, std::int64_t rows) {
  return rows == 0 ? 0 : ceil_div(rows, resolve_tile(t.rows, rows));
}
constexpr FP8MOE_HOST_DEVICE std::int64_t scale_cols(tile_shape t, std::int64_t cols) {
  return cols == 0 ? 0 : ceil_div(cols, resolve_tile(t.cols, cols));
}

/// Non-owning quantized matrix.
template <class T>
struct quantized_matrix_view {
  matrix_view<T> data;        // (R, C) FP8
  matrix_view<float> scales;  // (scale_rows, scale_cols) dequant multipliers; const-ness follows T
  tile_shape tile{};

  FP8MOE_HOST_DEVICE std::int64_t rows() const { return data.rows; }
  FP8MOE_HOST_DEVICE std::int64_t cols() const { return data.cols; }
  FP8MOE_HOST_DEVICE std::int64_t tile_rows() const { return resolve_tile(tile.rows, data.rows); }
  FP8MOE_HOST_DEVICE std::int64_t tile_cols() const { return resolve_tile(tile.cols, data.cols); }
  FP8MOE_HOST_DEVICE float scale_at(std::int64_t r, std::int64_t c) const {
    return scales(r / tile_rows(), c / tile_cols());
  }
};

template <class T>
struct quantized_matrix_view<T const> {
  matrix_view<T const> data;
  matrix_view<float const> scales;
  tile_shape tile{};

  quantized_matrix_view() = default;
  FP8MOE_HOST_DEVICE quantized_matrix_view(matrix_view<T const> d, matrix_view<float const> s, tile_shape t)
      : data(d), scales(s), tile(t) {}
  FP8MOE_HOST_DEVICE quantized_matrix_view(quantized_matrix_view<T> const& m)  // NOLINT: implicit to const
      : data(m.data), scales(m.scales), tile(m.tile) {}

  FP8MOE_HOST_DEVICE std::int64_t rows() const { return data.rows; }
  FP8MOE_HOST_DEVICE std::int64_t cols() const { return data.cols; }
  FP8MOE_HOST_DEVICE std::int64_t tile_rows() const { return resolve_tile(tile.rows, data.rows); }
  FP8MOE_HOST_DEVICE std::int64_t tile_cols() const { return resolve_tile(tile.cols, data.cols); }
  FP8MOE_HOST_DEVICE float scale_at(std::int64_t r, std::int64_t c) const {
    return scales(r / tile_rows(), c / tile_cols());
  }
};

/// Owning host quantized matrix (row-major data, row-major scales).
template <class T>
struct quantized_matrix {
  host_matrix<T> data;
  host_matrix<float> scales;
  tile_shape tile{};

  quantized_matrix() = default;
  quantized_matrix(std::int64_t rows, std::int64_t cols, tile_shape t)
      : data(rows, cols), scales(scale_rows(t, rows), scale_cols(t, cols)), tile(t) {}

  quantized_matrix_view<T> view() & { return {data.view(), scales.view(), tile}; }
  quantized_matrix_view<T const> view() const& { return {data.view(), scales.view(), tile}; }
  /// The view of a temporary would dangle once the statement ends (`auto v = quantize(...).view();`):
  /// keep the quantized_matrix in a variable first.
  void view() && = delete;
  void view() const&& = delete;
};

}  // namespace fp8moe::scaling
