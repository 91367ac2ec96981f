// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Views over quantized data beyond the single matrix of quantized.hpp: a stack of G quantized
// matrices with a common shape (expert weights, masked activations) and the zero-copy transpose of
// a quantized matrix view. Non-owning, trivially copyable, usable on the device.
#pragma once

#include <cstdint>
#include <type_traits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/recipe.hpp"

namespace fp8moe::scaling {

/// A stack of G quantized matrices with a common shape: the expert weights (G,N,K) and the masked
/// activations (G,max_m,K). Batch g is `(*this)[g]`, a quantized_matrix_view with its own scales.
template <class T>
struct quantized_batched_view {
  using scale_type = std::conditional_t<std::is_const_v<T>, float const, float>;
  batched_matrix_view<T> data;             // (G, R, C) FP8
  batched_matrix_view<scale_type> scales;  // (G, scale_rows(R), scale_cols(C))
  tile_shape tile{};

  FP8MOE_HOST_DEVICE std::int64_t batches() const { return data.batches; }
  FP8MOE_HOST_DEVICE std::int64_t rows() const { return data.rows; }
  FP8MOE_HOST_DEVICE std::int64_t cols() const { return data.cols; }
  FP8MOE_HOST_DEVICE quantized_matrix_view<T> operator[](std::int64_t g) const {
    return quantized_matrix_view<T>(data[g], scales[g], tile);
  }
  template <class U>
  requires(std::is_same_v<U, T const> && !std::is_const_v<T>) FP8MOE_HOST_DEVICE
  operator quantized_batched_view<U>() const {  // implicit T -> T const
    return {data, scales, tile};
  }
};

/// Zero-copy transpose of a quantized view: (R,C) data, scales and tile become (C,R). Turns a
/// weight stored (K,N) with 128x128 blocks into the MN-major B operand (N,K) of dX = dY * W.
template <class T>
FP8MOE_HOST_DEVICE quantized_matrix_view<T> transposed(quantized_matrix_view<T> const& q) {
  using S = std::conditional_t<std::is_const_v<T>, float const, float>;
  matrix_view<T> const d{q.data.data, q.data.cols, q.data.rows, q.data.col_stride, q.data.row_stride};
  matrix_view<S> const s{q.scales.data, q.scales.cols, q.scales.rows, q.scales.col_stride,
                         q.scales.row_stride};
  return quantized_matrix_view<T>(d, s, tile_shape{q.tile.cols, q.tile.rows});
}

}  // namespace fp8moe::scaling
