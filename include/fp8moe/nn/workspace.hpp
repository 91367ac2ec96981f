// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// workspace_arena: carves 256-byte aligned pieces out of a caller-owned workspace (host or device
// memory: it never dereferences). Built without a workspace it only counts, so each op's
// workspace_bytes query runs the very carving its call runs and the two cannot disagree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/scaling/quantized.hpp"

namespace fp8moe::nn {

/// An FP8 matrix whose element format a recipe picks at run time: row-major bytes, scales, tile.
/// as<T>() views it with the element type of `format` (float8_e4m3_t or float8_e5m2_t).
struct fp8_matrix {
  scaling::element_format format = scaling::element_format::e4m3;
  std::uint8_t* data = nullptr;
  matrix_view<float> scales{};
  std::int64_t rows = 0, cols = 0;
  scaling::tile_shape tile{};

  template <class T>
  scaling::quantized_matrix_view<T> as() const {
    require(scaling::format_of<T>() == format, "fp8moe::nn::fp8_matrix", "T",
            "the element type of its format");
    return {make_matrix(reinterpret_cast<T*>(data), rows, cols), scales, tile};
  }
};

class workspace_arena {
 public:
  static constexpr std::size_t alignment = 256;

  /// Counting arena (workspace_bytes queries): every take() returns nullptr.
  workspace_arena() = default;
  /// Carving arena over `ws`; take() throws fp8moe::error when the workspace is too small.
  explicit workspace_arena(std::span<std::byte> ws)
      : base_(ws.data()), capacity_(ws.size()), counting_(false) {}

  /// n elements of T (n >= 0), aligned to 256 bytes.
  template <class T>
  T* take(std::int64_t n) {
    std::size_t const offset = round_up<std::size_t>(used_, alignment);
    used_ = offset + static_cast<std::size_t>(n > 0 ? n : 0) * sizeof(T);
    if (counting_) return nullptr;
    if (used_ > capacity_)
      require(false, "fp8moe::nn::workspace_arena", "workspace",
              "at least the bytes workspace_bytes() returns", std::to_string(capacity_) + " bytes");
    return reinterpret_cast<T*>(base_ + offset);
  }
  /// A row-major (rows, cols) matrix.
  template <class T>
  matrix_view<T> matrix(std::int64_t rows, std::int64_t cols) {
    return make_matrix(take<T>(rows * cols), rows, cols);
  }
  /// A row-major quantized (rows, cols) matrix with row-major scales for `tile`.
  template <class T>
  scaling::quantized_matrix_view<T> quantized(std::int64_t rows, std::int64_t cols,
                                              scaling::tile_shape tile) {
    auto d = matrix<T>(rows, cols);
    auto s = matrix<float>(scaling::scale_rows(tile, rows), scaling::scale_cols(tile, cols));
    return {d, s, tile};
  }
  /// An FP8 matrix of `rows` (<= capacity_rows, which sizes the storage) x cols for recipe r.
  fp8_matrix fp8(std::int64_t capacity_rows, std::int64_t rows, std::int64_t cols,
                 scaling::tensor_recipe const& r) {
    fp8_matrix m;
    m.format = r.format;
    m.data = take<std::uint8_t>(capacity_rows * cols);
    float* s = take<float>(scaling::scale_rows(r.tile, capacity_rows) * scaling::scale_cols(r.tile, cols));
    m.scales = make_matrix(s, scaling::scale_rows(r.tile, rows), scaling::scale_cols(r.tile, cols));
    m.rows = rows;
    m.cols = cols;
    m.tile = r.tile;
    return m;
  }
  /// The unused rest (aligned), for a nested op's own workspace; empty when counting.
  std::span<std::byte> rest() {
    std::size_t const offset = round_up<std::size_t>(used_, alignment);
    if (counting_ || offset >= capacity_) return {};
    return {base_ + offset, capacity_ - offset};
  }
  /// Reserves `bytes` for a nested op (what its workspace_bytes returned) and returns them.
  std::span<std::byte> sub(std::size_t bytes) {
    std::byte* p = take<std::byte>(static_cast<std::int64_t>(bytes));
    return counting_ ? std::span<std::byte>{} : std::span<std::byte>{p, bytes};
  }
  /// Bytes used so far (rounded up to the alignment, so arenas can be concatenated).
  std::size_t bytes() const { return round_up<std::size_t>(used_, alignment); }
  bool counting() const { return counting_; }

 private:
  std::byte* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
  bool counting_ = true;
};

/// Requires `ws` to hold `need` bytes (checked before any output is touched).
inline void check_workspace(std::span<std::byte> ws, std::size_t need, char const* where) {
  require(ws.size() >= need && (need == 0 || ws.data() != nullptr), where, "workspace",
          ">= " + std::to_string(need) + " bytes (workspace_bytes)", std::to_string(ws.size()) + " bytes");
}

}  // namespace fp8moe::nn
