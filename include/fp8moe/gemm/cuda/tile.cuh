// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Per-tile pieces shared by the FP8 GEMM kernels: the tile's geometry for each layout (operand
// base rows, K range, valid rows) and the coalesced epilogue that writes an FP32 staging tile in
// shared memory to D as bf16 / f32 / C + acc with 16-byte stores and per-row validity.
#pragma once

#include <cstdint>

#include "fp8moe/gemm/cuda/layout.hpp"
#include "fp8moe/gemm/cuda/params.hpp"
#include "fp8moe/numeric/cuda/convert.cuh"

namespace fp8moe::gemm::cuda {

/// Whether row r (0-based in the tile) of the tile is written: it exists and, for the contiguous
/// layout, is tagged with the tile's expert (padding rows, id -1, are left untouched).
FP8MOE_DEVICE bool row_is_live(kernel_params const& p, tile_geometry const& g, int r) {
  if (r >= g.rows_valid) return false;
  if (p.layout == layout_kind::grouped_contiguous) return __ldg(p.m_indices + g.m0 + r) == g.group;
  return true;
}

/// Writes the FP32 staging tile (rows x pitch floats in shared memory) to D. Threads
/// [0, threads) of the caller take part; each moves 16 bytes of D per step (8 bf16 or 4 f32).
template <int BlockM, int BlockN>
FP8MOE_DEVICE void store_tile(kernel_params const& p, tile_geometry const& g, float const* staging, int pitch, int tid,
                              int threads) {
  if (p.out == output_kind::bf16) {
    constexpr int chunks = BlockN / 8;
    auto* d = static_cast<std::uint16_t*>(p.d) + g.d_offset;
    for (int idx = tid; idx < BlockM * chunks; idx += threads) {
      int const r = idx / chunks, c8 = (idx % chunks) * 8;
      if (c8 >= g.cols_valid || !row_is_live(p, g, r)) continue;
      float const* src = staging + r * pitch + c8;
      std::uint16_t* dst = d + static_cast<std::int64_t>(r) * p.d_row_stride + c8;
      if (c8 + 8 <= g.cols_valid) {
        uint4 v;
        v.x = fp8moe::cuda::cvt_float2_to_bf16x2(src[0], src[1]);
        v.y = fp8moe::cuda::cvt_float2_to_bf16x2(src[2], src[3]);
        v.z = fp8moe::cuda::cvt_float2_to_bf16x2(src[4], src[5]);
        v.w = fp8moe::cuda::cvt_float2_to_bf16x2(src[6], src[7]);
        *reinterpret_cast<uint4*>(dst) = v;
      } else {
        for (int j = 0; c8 + j < g.cols_valid; ++j) dst[j] = fp8moe::detail::float_to_bf16_bits(src[j]);
      }
    }
  } else {
    constexpr int chunks = BlockN / 4;
    float* d = static_cast<float*>(p.d) + g.d_offset;
    float const* c = p.out == output_kind::f32_accumulate ? p.c + g.c_offset : nullptr;
    for (int idx = tid; idx < BlockM * chunks; idx += threads) {
      int const r = idx / chunks, c4 = (idx % chunks) * 4;
      if (c4 >= g.cols_valid || !row_is_live(p, g, r)) continue;
      float const* src = staging + r * pitch + c4;
      float* dst = d + static_cast<std::int64_t>(r) * p.d_row_stride + c4;
      float const* cr = c ? c + static_cast<std::int64_t>(r) * p.c_row_stride + c4 : nullptr;
      if (c4 + 4 <= g.cols_valid) {
        float4 v = make_float4(src[0], src[1], src[2], src[3]);
        if (cr) {
          float4 const old = *reinterpret_cast<float4 const*>(cr);
          v.x += old.x, v.y += old.y, v.z += old.z, v.w += old.w;
        }
        *reinterpret_cast<float4*>(dst) = v;
      } else {
        for (int j = 0; c4 + j < g.cols_valid; ++j) dst[j] = src[j] + (cr ? cr[j] : 0.0f);
      }
    }
  }
}

}  // namespace fp8moe::gemm::cuda
