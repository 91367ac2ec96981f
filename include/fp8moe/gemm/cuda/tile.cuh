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

FP8MOE_DEVICE row_action row_action_at(kernel_params const& p, tile_geometry const& g, int r) {
  int const id =
      (p.layout == layout_kind::grouped_contiguous && r < g.rows_valid) ? __ldg(p.m_indices + g.m0 + r) : 0;
  return epilogue_row_action(p, g, r, id);
}

/// Writes the FP32 staging tile (BlockM x pitch floats in shared memory) to D as round([C +] acc),
/// padding rows as round(C or 0), skipped rows untouched. Threads [0, threads) of the caller take
/// part; each moves 16 bytes of D per step (8 bf16 or 4 f32).
template <int BlockM, int BlockN>
FP8MOE_DEVICE void store_tile(kernel_params const& p, tile_geometry const& g, float const* staging, int pitch,
                              int tid, int threads) {
  int const vec = p.out == output_kind::bf16 ? 8 : 4;
  int const chunks = BlockN / vec;
  float const* c = p.c != nullptr ? p.c + g.c_offset : nullptr;
  for (int idx = tid; idx < BlockM * chunks; idx += threads) {
    int const r = idx / chunks, c0 = (idx % chunks) * vec;
    if (c0 >= g.cols_valid) continue;
    row_action const act = row_action_at(p, g, r);
    if (act == row_action::skip) continue;
    int const n = (g.cols_valid - c0) < vec ? (g.cols_valid - c0) : vec;
    float const* src = staging + r * pitch + c0;
    float const* cr = c ? c + static_cast<std::int64_t>(r) * p.c_row_stride + c0 : nullptr;
    bool const prod = act == row_action::product;
    std::int64_t const drow = g.d_offset + static_cast<std::int64_t>(r) * p.d_row_stride + c0;
    if (n < vec) {  // ragged last columns (N % 8 != 0): scalar
      for (int j = 0; j < n; ++j) {
        float const x = (prod ? src[j] : 0.0f) + (cr ? cr[j] : 0.0f);
        if (p.out == output_kind::bf16) {
          static_cast<std::uint16_t*>(p.d)[drow + j] = fp8moe::detail::float_to_bf16_bits(x);
        } else {
          static_cast<float*>(p.d)[drow + j] = x;
        }
      }
      continue;
    }
    auto load4 = [&](int j) {
      float4 x = prod ? *reinterpret_cast<float4 const*>(src + j) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (cr) {
        float4 const o = *reinterpret_cast<float4 const*>(cr + j);
        x.x += o.x, x.y += o.y, x.z += o.z, x.w += o.w;
      }
      return x;
    };
    if (p.out == output_kind::bf16) {
      float4 const lo = load4(0), hi = load4(4);
      uint4 w;
      w.x = fp8moe::cuda::cvt_float2_to_bf16x2(lo.x, lo.y);
      w.y = fp8moe::cuda::cvt_float2_to_bf16x2(lo.z, lo.w);
      w.z = fp8moe::cuda::cvt_float2_to_bf16x2(hi.x, hi.y);
      w.w = fp8moe::cuda::cvt_float2_to_bf16x2(hi.z, hi.w);
      *reinterpret_cast<uint4*>(static_cast<std::uint16_t*>(p.d) + drow) = w;
    } else {
      *reinterpret_cast<float4*>(static_cast<float*>(p.d) + drow) = load4(0);
    }
  }
}

}  // namespace fp8moe::gemm::cuda
