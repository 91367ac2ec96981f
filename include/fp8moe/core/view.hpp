// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Non-owning views (pointer + extents + strides, in elements) used by every entry point, and
// small owning host containers for convenience overloads and tests. Views never allocate and
// are trivially copyable, so they can be passed by value into kernels.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/config.hpp"
#include "fp8moe/core/error.hpp"

namespace fp8moe {

/// 1-D view: `size` elements at `data[i * stride]`.
template <class T>
struct vector_view {
  T* data = nullptr;
  std::int64_t size = 0;
  std::int64_t stride = 1;

  FP8MOE_HOST_DEVICE T& operator[](std::int64_t i) const { return data[i * stride]; }
  FP8MOE_HOST_DEVICE bool empty() const { return size == 0; }
  template <class U>
  requires(std::is_same_v<U, T const> && !std::is_const_v<T>) FP8MOE_HOST_DEVICE operator vector_view<U>()
      const {  // implicit T -> T const
    return {data, size, stride};
  }
};

/// 2-D view: element (r, c) at `data[r * row_stride + c * col_stride]`.
/// Row-major contiguous: row_stride = cols (or more), col_stride = 1. "MN-major" scale layouts
/// (DeepGEMM) are col_stride = padded rows, row_stride = 1.
template <class T>
struct matrix_view {
  T* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = 0;
  std::int64_t col_stride = 1;

  FP8MOE_HOST_DEVICE T& operator()(std::int64_t r, std::int64_t c) const {
    return data[r * row_stride + c * col_stride];
  }
  FP8MOE_HOST_DEVICE T* row(std::int64_t r) const { return data + r * row_stride; }
  FP8MOE_HOST_DEVICE bool empty() const { return rows == 0 || cols == 0; }
  FP8MOE_HOST_DEVICE std::int64_t size() const { return rows * cols; }
  FP8MOE_HOST_DEVICE bool is_row_major() const { return col_stride == 1 && row_stride >= cols; }
  template <class U>
  requires(std::is_same_v<U, T const> && !std::is_const_v<T>) FP8MOE_HOST_DEVICE operator matrix_view<U>()
      const {  // implicit T -> T const
    return {data, rows, cols, row_stride, col_stride};
  }
};

/// 3-D view (batch, rows, cols), e.g. the masked grouped GEMM operand (G, max_m, K).
template <class T>
struct batched_matrix_view {
  T* data = nullptr;
  std::int64_t batches = 0;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t batch_stride = 0;
  std::int64_t row_stride = 0;
  std::int64_t col_stride = 1;

  FP8MOE_HOST_DEVICE T& operator()(std::int64_t b, std::int64_t r, std::int64_t c) const {
    return data[b * batch_stride + r * row_stride + c * col_stride];
  }
  FP8MOE_HOST_DEVICE matrix_view<T> operator[](std::int64_t b) const {
    return {data + b * batch_stride, rows, cols, row_stride, col_stride};
  }
  template <class U>
  requires(std::is_same_v<U, T const> && !std::is_const_v<T>) FP8MOE_HOST_DEVICE
  operator batched_matrix_view<U>() const {  // implicit T -> T const
    return {data, batches, rows, cols, batch_stride, row_stride, col_stride};
  }
};

/// Row-major contiguous matrix view over `data` (row stride defaults to `cols`).
template <class T>
constexpr FP8MOE_HOST_DEVICE matrix_view<T> make_matrix(T* data, std::int64_t rows, std::int64_t cols,
                                                        std::int64_t row_stride = -1) {
  return {data, rows, cols, row_stride < 0 ? cols : row_stride, 1};
}

template <class T>
constexpr FP8MOE_HOST_DEVICE vector_view<T> make_vector(T* data, std::int64_t size) {
  return {data, size, 1};
}

namespace detail {
inline std::string shape_string(std::int64_t r, std::int64_t c) {
  return std::to_string(r) + "x" + std::to_string(c);
}
}  // namespace detail

/// Validates a matrix view: non-negative extents, non-null data when non-empty, and strides that
/// do not make rows overlap. Throws fp8moe::error naming `arg`.
template <class T>
void check_matrix(matrix_view<T> const& m, std::string_view where, std::string_view arg) {
  require(m.rows >= 0 && m.cols >= 0, where, arg, "non-negative extents",
          detail::shape_string(m.rows, m.cols));
  if (m.rows == 0 || m.cols == 0) return;
  require(m.data != nullptr, where, arg, "non-null data for a non-empty matrix", "nullptr");
  if (m.col_stride == 1) {
    require(m.rows == 1 || m.row_stride >= m.cols, where, arg,
            "row_stride >= cols (" + std::to_string(m.cols) + ")",
            "row_stride = " + std::to_string(m.row_stride));
  } else if (m.row_stride == 1) {
    require(m.cols == 1 || m.col_stride >= m.rows, where, arg,
            "col_stride >= rows (" + std::to_string(m.rows) + ")",
            "col_stride = " + std::to_string(m.col_stride));
  } else {
    require(m.row_stride > 0 && m.col_stride > 0, where, arg, "positive strides");
  }
}

/// Requires an exact shape.
template <class T>
void check_shape(matrix_view<T> const& m, std::int64_t rows, std::int64_t cols, std::string_view where,
                 std::string_view arg) {
  require(m.rows == rows && m.cols == cols, where, arg, detail::shape_string(rows, cols),
          detail::shape_string(m.rows, m.cols));
}

/// Owning, row-major host matrix; `view()` gives the matrix_view.
template <class T>
class host_matrix {
 public:
  host_matrix() = default;
  host_matrix(std::int64_t rows, std::int64_t cols, T fill = T{})
      : rows_(rows), cols_(cols), data_(checked_size(rows, cols), fill) {}
  std::int64_t rows() const { return rows_; }
  std::int64_t cols() const { return cols_; }
  T* data() { return data_.data(); }
  T const* data() const { return data_.data(); }
  std::vector<T>& storage() { return data_; }
  std::vector<T> const& storage() const { return data_; }
  T& operator()(std::int64_t r, std::int64_t c) { return data_[static_cast<std::size_t>(r * cols_ + c)]; }
  T const& operator()(std::int64_t r, std::int64_t c) const {
    return data_[static_cast<std::size_t>(r * cols_ + c)];
  }
  matrix_view<T> view() & { return make_matrix(data_.data(), rows_, cols_); }
  matrix_view<T const> view() const& { return make_matrix(data_.data(), rows_, cols_); }
  /// The view of a temporary would dangle once the statement ends (`auto v = f().view();`): keep
  /// the owner in a variable first. (Passing `f().view()` straight into a call is refused too.)
  void view() && = delete;
  void view() const&& = delete;

 private:
  static std::size_t checked_size(std::int64_t rows, std::int64_t cols) {  // validates before allocating
    require(rows >= 0 && cols >= 0, "fp8moe::host_matrix", "rows/cols", "non-negative",
            detail::shape_string(rows, cols));
    return static_cast<std::size_t>(rows * cols);
  }
  std::int64_t rows_ = 0, cols_ = 0;
  std::vector<T> data_;
};

}  // namespace fp8moe
