// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Owning device memory on a stream: device_buffer<T> (n elements) and device_matrix<T> (rows x cols,
// row-major with a row stride). Allocated with cudaMallocAsync on the executor's stream and freed with
// cudaFreeAsync on that same stream (stream-ordered: neither waits for the device; work enqueued on
// the stream before the free may still use the memory). Move-only; contents start uninitialized; an
// empty one holds no allocation (data() == nullptr). Host-compilable (CUDA runtime headers only).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"

namespace fp8moe {

/// n elements of device memory, owned, ordered on one stream.
template <class T>
class device_buffer {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_reference_v<T>,
                "fp8moe::device_buffer: T must be a non-const trivially copyable type (bytes are copied)");

 public:
  device_buffer() = default;
  /// Allocates n elements on exec.stream (cudaMallocAsync); n = 0 allocates nothing.
  device_buffer(std::size_t n, cuda_executor const& exec) : stream_(exec.stream) {
    require(n <= std::numeric_limits<std::size_t>::max() / sizeof(T), "fp8moe::device_buffer", "n",
            "a size whose byte count fits std::size_t", std::to_string(n));
    if (n == 0) return;
    void* p = nullptr;
    FP8MOE_CUDA_CHECK(cudaMallocAsync(&p, n * sizeof(T), stream_));
    data_ = static_cast<T*>(p);
    size_ = n;
  }
  device_buffer(device_buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), stream_(o.stream_) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      stream_ = o.stream_;
    }
    return *this;
  }
  device_buffer(device_buffer const&) = delete;
  device_buffer& operator=(device_buffer const&) = delete;
  ~device_buffer() { reset(); }

  /// Frees the memory now, stream-ordered (cudaFreeAsync on stream()); the buffer becomes empty.
  void reset() noexcept {
    if (data_ != nullptr) (void)cudaFreeAsync(data_, stream_);  // a destructor cannot report it
    data_ = nullptr;
    size_ = 0;
  }

  T* data() { return data_; }
  T const* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return size_ * sizeof(T); }
  bool empty() const { return size_ == 0; }
  /// The stream the memory was allocated on and will be freed on.
  cudaStream_t stream() const { return stream_; }

  std::span<T> span() & { return {data_, size_}; }
  std::span<T const> span() const& { return {data_, size_}; }
  /// The span of a temporary would dangle once the statement ends: keep the buffer in a variable.
  void span() && = delete;
  void span() const&& = delete;

  /// Enqueues a copy of host[0, size()) into the buffer on stream(). `host` must stay valid until the
  /// stream is synchronized. Throws fp8moe::error (before copying) when the sizes differ.
  void copy_from_host(std::span<T const> host) {
    require(host.size() == size_, "fp8moe::device_buffer::copy_from_host", "host",
            std::to_string(size_) + " elements", std::to_string(host.size()));
    if (size_ != 0)
      FP8MOE_CUDA_CHECK(cudaMemcpyAsync(data_, host.data(), bytes(), cudaMemcpyHostToDevice, stream_));
  }
  /// Enqueues a copy of the buffer into host[0, size()) on stream(); read `host` after synchronizing.
  void copy_to_host(std::span<T> host) const {
    require(host.size() == size_, "fp8moe::device_buffer::copy_to_host", "host",
            std::to_string(size_) + " elements", std::to_string(host.size()));
    if (size_ != 0)
      FP8MOE_CUDA_CHECK(cudaMemcpyAsync(host.data(), data_, bytes(), cudaMemcpyDeviceToHost, stream_));
  }
  /// Enqueues setting every byte to `value` on stream() (0xFF poisons floats with NaN).
  void fill_bytes(unsigned char value) {
    if (size_ != 0) FP8MOE_CUDA_CHECK(cudaMemsetAsync(data_, value, bytes(), stream_));
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
  cudaStream_t stream_ = nullptr;
};

/// A rows x cols device matrix, row-major with row_stride >= cols elements, owned on one stream.
/// view() gives the matrix_view the entry points take; views of a temporary do not compile.
template <class T>
class device_matrix {
 public:
  device_matrix() = default;
  /// Allocates rows x row_stride elements on exec.stream (row_stride < 0: cols). Throws
  /// fp8moe::error (before allocating) on negative extents or row_stride < cols.
  device_matrix(std::int64_t rows, std::int64_t cols, cuda_executor const& exec, std::int64_t row_stride = -1)
      : rows_(rows),
        cols_(cols),
        row_stride_(row_stride < 0 ? cols : row_stride),
        buf_(checked_elements(rows, cols, row_stride < 0 ? cols : row_stride), exec) {}

  std::int64_t rows() const { return rows_; }
  std::int64_t cols() const { return cols_; }
  std::int64_t row_stride() const { return row_stride_; }
  T* data() { return buf_.data(); }
  T const* data() const { return buf_.data(); }
  cudaStream_t stream() const { return buf_.stream(); }
  /// The underlying allocation (rows * row_stride elements).
  device_buffer<T>& buffer() & { return buf_; }
  device_buffer<T> const& buffer() const& { return buf_; }

  matrix_view<T> view() & { return {buf_.data(), rows_, cols_, row_stride_, 1}; }
  matrix_view<T const> view() const& { return {buf_.data(), rows_, cols_, row_stride_, 1}; }
  /// The view of a temporary would dangle once the statement ends (`auto v = quantize(...).view();`):
  /// keep the device_matrix in a variable first.
  void view() && = delete;
  void view() const&& = delete;

  /// Enqueues a copy of the host matrix (rows x cols, col_stride 1) into this one on stream().
  /// `host` must stay valid until the stream is synchronized.
  void copy_from_host(matrix_view<T const> host) {
    check_host(host, "fp8moe::device_matrix::copy_from_host");
    if (rows_ != 0 && cols_ != 0)
      FP8MOE_CUDA_CHECK(cudaMemcpy2DAsync(buf_.data(), pitch(row_stride_), host.data, host_pitch(host),
                                          pitch(cols_), static_cast<std::size_t>(rows_),
                                          cudaMemcpyHostToDevice, buf_.stream()));
  }
  /// Enqueues a copy of this matrix into the host matrix (rows x cols, col_stride 1) on stream().
  void copy_to_host(matrix_view<T> host) const {
    check_host(host, "fp8moe::device_matrix::copy_to_host");
    if (rows_ != 0 && cols_ != 0)
      FP8MOE_CUDA_CHECK(cudaMemcpy2DAsync(host.data, host_pitch(host), buf_.data(), pitch(row_stride_),
                                          pitch(cols_), static_cast<std::size_t>(rows_),
                                          cudaMemcpyDeviceToHost, buf_.stream()));
  }

 private:
  static std::size_t checked_elements(std::int64_t rows, std::int64_t cols, std::int64_t row_stride) {
    constexpr char const* where = "fp8moe::device_matrix";
    require(rows >= 0 && cols >= 0, where, "rows/cols", "non-negative", detail::shape_string(rows, cols));
    require(row_stride >= cols, where, "row_stride", "row_stride >= cols (" + std::to_string(cols) + ")",
            std::to_string(row_stride));
    require(row_stride == 0 || rows <= std::numeric_limits<std::int64_t>::max() / row_stride, where, "rows",
            "rows * row_stride that fits int64", detail::shape_string(rows, row_stride));
    return static_cast<std::size_t>(rows * row_stride);
  }
  static std::size_t pitch(std::int64_t elements) { return static_cast<std::size_t>(elements) * sizeof(T); }
  /// A single-row host matrix may carry any row_stride (check_matrix): its pitch is then cols.
  template <class U>
  std::size_t host_pitch(matrix_view<U> const& host) const {
    return pitch(host.rows == 1 && host.row_stride < host.cols ? host.cols : host.row_stride);
  }
  template <class U>
  void check_host(matrix_view<U> const& host, std::string_view where) const {
    check_matrix(host, where, "host");
    check_shape(host, rows_, cols_, where, "host");
    require(host.col_stride == 1 || host.rows * host.cols <= 1, where, "host",
            "col_stride 1 (rows contiguous)", "col_stride = " + std::to_string(host.col_stride));
  }

  std::int64_t rows_ = 0, cols_ = 0, row_stride_ = 0;
  device_buffer<T> buf_;
};

}  // namespace fp8moe
