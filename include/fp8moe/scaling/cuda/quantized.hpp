// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Owning device quantized matrix: FP8 data (R,C) and row-major float scales (scale_rows, scale_cols)
// in device memory allocated on the executor's stream (core/cuda/device_buffer.hpp) -- what the
// allocating quantize returns on a cuda_executor. view() is the quantized_matrix_view the entry
// points take; the view of a temporary does not compile. Host-compilable (CUDA runtime headers).
#pragma once

#include <cstdint>

#include "fp8moe/core/cuda/device_buffer.hpp"
#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/recipe.hpp"

namespace fp8moe::scaling {

template <class T>
struct device_quantized_matrix {
  device_matrix<T> data;        // (R, C) FP8
  device_matrix<float> scales;  // (scale_rows, scale_cols), row-major
  tile_shape tile{};

  device_quantized_matrix() = default;
  /// Allocates on exec.stream; contents uninitialized. Throws fp8moe::error on negative extents.
  device_quantized_matrix(std::int64_t rows, std::int64_t cols, tile_shape t, cuda_executor const& exec)
      : data(rows, cols, exec), scales(scale_rows(t, rows), scale_cols(t, cols), exec), tile(t) {}

  std::int64_t rows() const { return data.rows(); }
  std::int64_t cols() const { return data.cols(); }

  quantized_matrix_view<T> view() & { return {data.view(), scales.view(), tile}; }
  quantized_matrix_view<T const> view() const& { return {data.view(), scales.view(), tile}; }
  /// The view of a temporary would dangle once the statement ends (`auto v = quantize(...).view();`):
  /// keep the device_quantized_matrix in a variable first.
  void view() && = delete;
  void view() const&& = delete;
};

}  // namespace fp8moe::scaling
