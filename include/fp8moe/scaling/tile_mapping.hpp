// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Index math of the CUDA row-tile quantize kernel (scaling/cuda/quantize.cuh), host-testable:
// which 1xK tile and which 16-byte vector of it a (warp, lane) handles. Pure constexpr functions.
#pragma once

#include <cstdint>

#include "fp8moe/config.hpp"
#include "fp8moe/core/math.hpp"

namespace fp8moe::scaling {

/// Lanes that share one 1 x tile_cols tile when each lane loads one 16-byte vector of elements of
/// `elem_bytes` bytes (4 floats or 8 bf16): tile_cols / (16 / elem_bytes). 0 when that is not
/// 4, 8, 16 or 32 (the kernel then uses its one-CTA-per-tile path).
constexpr FP8MOE_HOST_DEVICE int lanes_per_row_tile(std::int64_t tile_cols, int elem_bytes) {
  std::int64_t const vec = 16 / elem_bytes;
  if (tile_cols <= 0 || tile_cols % vec != 0) return 0;
  std::int64_t const l = tile_cols / vec;
  return (l == 4 || l == 8 || l == 16 || l == 32) ? static_cast<int>(l) : 0;
}

/// Work of one lane: the tile (row, t) and the first of its `vec` columns; `live` false for the
/// lanes past the last tile (they still take part in the warp shuffles).
struct row_tile_lane {
  std::int64_t row = 0;
  std::int64_t tile = 0;  // tile index along the row (the scale column)
  std::int64_t col = 0;   // first element column of this lane's vector
  bool live = false;
};

/// Global warp `warp`, lane `lane`: groups of L = lanes_per_row_tile lanes take consecutive tiles
/// in row-major tile order; lane % L picks the vector inside the tile.
constexpr FP8MOE_HOST_DEVICE row_tile_lane row_tile_lane_of(std::int64_t warp, int lane, int lanes_per_tile,
                                                            int elem_bytes, std::int64_t rows,
                                                            std::int64_t cols) {
  std::int64_t const vec = 16 / elem_bytes;
  std::int64_t const tile_cols = lanes_per_tile * vec;
  std::int64_t const sc = ceil_div<std::int64_t>(cols, tile_cols);
  std::int64_t const tile = warp * (32 / lanes_per_tile) + lane / lanes_per_tile;
  row_tile_lane r;
  r.live = tile < rows * sc;
  if (!r.live) return r;
  r.row = tile / sc;
  r.tile = tile % sc;
  r.col = r.tile * tile_cols + (lane % lanes_per_tile) * vec;
  return r;
}

/// Warps the row-tile kernel needs for a rows x cols matrix.
constexpr FP8MOE_HOST_DEVICE std::int64_t row_tile_warps(std::int64_t rows, std::int64_t cols,
                                                         int lanes_per_tile, int elem_bytes) {
  std::int64_t const tile_cols = lanes_per_tile * (16 / elem_bytes);
  return ceil_div<std::int64_t>(rows * ceil_div<std::int64_t>(cols, tile_cols), 32 / lanes_per_tile);
}

}  // namespace fp8moe::scaling
