// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Portable block-scaled FP8 GEMM (sm_89+; the second device reference on Hopper): cp.async
// multi-stage pipeline into 128B-swizzled shared memory, ldmatrix + mma.sync m16n8k32 e4m3,
// FP32 promotion of the tensor-core partial sum every 128 K, persistent tile scheduler, every
// layout and both B-scale granularities, epilogue through shared memory. One CTA = 8 warps.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/gemm/cuda/layout.hpp"
#include "fp8moe/gemm/cuda/params.hpp"
#include "fp8moe/gemm/cuda/ptx.cuh"
#include "fp8moe/gemm/cuda/tile.cuh"

namespace fp8moe::gemm::cuda {

/// Compile-time shape of the mma.sync kernel: 2 x 4 warps, each a (BlockM/2) x (BlockN/4) tile.
template <int BlockM, int BlockN, int Stages>
struct mma_sync_shape {
  static constexpr int threads = 256;
  static constexpr int warps_m = 2, warps_n = 4;
  static constexpr int warp_m = BlockM / warps_m, warp_n = BlockN / warps_n;
  static constexpr int m_tiles = warp_m / 16, n_tiles = warp_n / 8;
  static constexpr int a_bytes = BlockM * block_k, b_bytes = BlockN * block_k;
  static constexpr int stage_bytes = a_bytes + b_bytes;
  static constexpr int smem_bytes = mma_sync_smem_bytes(BlockM, BlockN, Stages);
  static_assert(BlockM % 32 == 0 && BlockN % 64 == 0, "mma.sync tile: BlockM % 32 == 0 and BlockN % 64 == 0");
  static_assert(n_tiles % 2 == 0, "mma.sync tile: ldmatrix.x4 loads B for two n8 tiles at once");
  static_assert(Stages >= 2, "mma.sync pipeline: at least 2 stages");
  static_assert(128 % BlockN == 0 || BlockN % 128 == 0,
                "BlockN must divide or be a multiple of the 128-wide B scale block");
};

/// cp.async of one Rows x 128-byte K block into a 128B-swizzled stage at `dst`, Threads threads
/// cooperating (Rows * 8 a multiple of Threads): 16-byte chunk c of row r comes from
/// src + r * row_stride + 16c when r < rows_ok and 16c < k_left, else it is zero-filled (the
/// address passed is `fallback`, always valid). Shared by the A and B operands.
template <int Rows, int Threads>
FP8MOE_DEVICE void load_block_async(std::uint32_t dst, std::uint8_t const* src, std::int64_t row_stride,
                                    int rows_ok, int k_left, std::uint8_t const* fallback, int tid) {
  static_assert(Rows * 8 % Threads == 0,
                "load_block_async: Rows * 8 chunks must split evenly over the threads");
  FP8MOE_UNROLL
  for (int i = 0; i < Rows * 8 / Threads; ++i) {
    int const idx = tid + i * Threads, r = idx >> 3, c = idx & 7;
    bool const ok = r < rows_ok && c * 16 < k_left;
    ptx::cp_async_16(dst + tile_offset_sw128(r, c * 16), ok ? src + r * row_stride + c * 16 : fallback, ok);
  }
}

template <int BlockM, int BlockN, int Stages, int BScaleRows>
__global__ void __launch_bounds__(256, 1)
    mma_sync_gemm_kernel(kernel_params const p, __grid_constant__ k_group_table const kt) {
#if FP8MOE_ARCH_FP8
  using S = mma_sync_shape<BlockM, BlockN, Stages>;
  extern __shared__ std::uint8_t smem_raw[];
  std::uint32_t const raw_addr = ptx::smem_addr(smem_raw);
  std::uint32_t const pad = ((raw_addr + 1023u) & ~1023u) - raw_addr;
  std::uint8_t* const smem = smem_raw + pad;
  std::uint32_t const smem_base = raw_addr + pad;
  float* const staging = reinterpret_cast<float*>(smem);  // reused after the main loop
  constexpr int pitch = staging_pitch(BlockN);

  int const tid = static_cast<int>(threadIdx.x);
  int const lane = tid & 31, warp = tid >> 5;
  int const wm = warp / S::warps_n, wn = warp % S::warps_n;
  int const group_id = lane >> 2, tig = lane & 3;

  tile_scheduler sched(make_schedule(p, BlockM, BlockN));
  tile_coord t{};
  for (std::int64_t ti = blockIdx.x; sched.get(ti, t); ti += gridDim.x) {
    tile_geometry const g = make_tile_geometry(p, t, BlockM, BlockN, kt.offsets);
    if (g.rows_valid == 0) continue;

    auto load_stage = [&](int slot, int kb) {
      std::uint32_t const a_dst = smem_base + slot * S::stage_bytes;
      std::uint32_t const b_dst = a_dst + S::a_bytes;
      std::uint8_t const* a_src = p.a + g.a_offset + static_cast<std::int64_t>(kb) * block_k;
      std::uint8_t const* b_src = p.b + g.b_offset + static_cast<std::int64_t>(kb) * block_k;
      int const k_left = g.k_len - kb * block_k;  // bytes of this K block that exist
      load_block_async<BlockM, S::threads>(a_dst, a_src, p.a_row_stride, g.rows_loadable, k_left, p.a, tid);
      load_block_async<BlockN, S::threads>(b_dst, b_src, p.b_row_stride, g.cols_valid, k_left, p.b, tid);
    };

    float fin[S::m_tiles][S::n_tiles][4];
    FP8MOE_UNROLL
    for (int i = 0; i < S::m_tiles; ++i) FP8MOE_UNROLL
    for (int j = 0; j < S::n_tiles; ++j) FP8MOE_UNROLL
    for (int e = 0; e < 4; ++e) fin[i][j][e] = 0.0f;

    FP8MOE_UNROLL
    for (int s = 0; s < Stages - 1; ++s) {
      if (s < g.k_blocks) load_stage(s, s);
      ptx::cp_async_commit();
    }

    for (int kb = 0; kb < g.k_blocks; ++kb) {
      int const kbg = g.kb0 + kb;
      ptx::cp_async_wait<Stages - 2>();
      __syncthreads();
      if (kb + Stages - 1 < g.k_blocks) load_stage((kb + Stages - 1) % Stages, kb + Stages - 1);
      ptx::cp_async_commit();

      std::uint32_t const a_tile = smem_base + (kb % Stages) * S::stage_bytes;
      std::uint32_t const b_tile = a_tile + S::a_bytes;
      float acc[S::m_tiles][S::n_tiles][4];
      FP8MOE_UNROLL
      for (int i = 0; i < S::m_tiles; ++i) FP8MOE_UNROLL
      for (int j = 0; j < S::n_tiles; ++j) FP8MOE_UNROLL
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

      // not unrolled: fragments of one k32 step live at a time (unrolling hoists all four steps'
      // ldmatrix results and spills)
      FP8MOE_PRAGMA(unroll 1)
      for (int kk = 0; kk < block_k / 32; ++kk) {
        std::uint32_t af[S::m_tiles][4];
        std::uint32_t bf[S::n_tiles / 2][4];
        coord const as = ldmatrix_a_src(lane, kk);
        coord const bs = ldmatrix_b_src(lane, kk);
        FP8MOE_UNROLL
        for (int i = 0; i < S::m_tiles; ++i)
          ptx::ldmatrix_x4(a_tile + tile_offset_sw128(wm * S::warp_m + i * 16 + as.row, as.col), af[i]);
        FP8MOE_UNROLL
        for (int j = 0; j < S::n_tiles / 2; ++j)
          ptx::ldmatrix_x4(b_tile + tile_offset_sw128(wn * S::warp_n + j * 16 + bs.row, bs.col), bf[j]);
        FP8MOE_UNROLL
        for (int i = 0; i < S::m_tiles; ++i) FP8MOE_UNROLL
        for (int j = 0; j < S::n_tiles; ++j)
          ptx::mma_m16n8k32_e4m3(acc[i][j], af[i], bf[j / 2][(j % 2) * 2], bf[j / 2][(j % 2) * 2 + 1]);
      }
      // scales of this K block (loaded after the MMAs are issued: short live ranges, L1/L2 hits)
      float sa[S::m_tiles][2];
      FP8MOE_UNROLL
      for (int i = 0; i < S::m_tiles; ++i) FP8MOE_UNROLL
      for (int h = 0; h < 2; ++h) {
        int const r = wm * S::warp_m + i * 16 + group_id + h * 8;
        sa[i][h] = r < g.rows_loadable ? __ldg(p.sfa + p.sfa_layout(g.sfa_group, g.m0 + r, kbg)) : 0.0f;
      }
      if constexpr (BScaleRows == 1) {
        FP8MOE_UNROLL
        for (int j = 0; j < S::n_tiles; ++j) {
          float sb[2];
          FP8MOE_UNROLL
          for (int h = 0; h < 2; ++h) {
            int const c = wn * S::warp_n + j * 8 + tig * 2 + h;
            sb[h] = c < g.cols_valid ? __ldg(p.sfb + p.sfb_layout(g.sfb_group, g.n0 + c, kbg)) : 0.0f;
          }
          FP8MOE_UNROLL
          for (int i = 0; i < S::m_tiles; ++i) FP8MOE_UNROLL
          for (int e = 0; e < 4; ++e) fin[i][j][e] += acc[i][j][e] * (sa[i][e >> 1] * sb[e & 1]);
        }
      } else {
        FP8MOE_UNROLL
        for (int j = 0; j < S::n_tiles; ++j) {
          int const c = wn * S::warp_n + j * 8;  // 8 columns never straddle a 128 block
          float const sb = __ldg(p.sfb + p.sfb_layout(g.sfb_group, (g.n0 + c) / b_scale_block_n, kbg));
          FP8MOE_UNROLL
          for (int i = 0; i < S::m_tiles; ++i) FP8MOE_UNROLL
          for (int e = 0; e < 4; ++e) fin[i][j][e] += acc[i][j][e] * (sa[i][e >> 1] * sb);
        }
      }
    }
    ptx::cp_async_wait<0>();
    __syncthreads();

    FP8MOE_UNROLL
    for (int i = 0; i < S::m_tiles; ++i) FP8MOE_UNROLL
    for (int j = 0; j < S::n_tiles; ++j) FP8MOE_UNROLL
    for (int e = 0; e < 4; e += 2) {
      coord const c = mma_m16n8_c(lane, e);
      int const row = wm * S::warp_m + i * 16 + c.row, col = wn * S::warp_n + j * 8 + c.col;
      *reinterpret_cast<float2*>(staging + row * pitch + col) = make_float2(fin[i][j][e], fin[i][j][e + 1]);
    }
    __syncthreads();
    store_tile<BlockM, BlockN>(p, g, staging, pitch, tid, S::threads);
    __syncthreads();
  }
#else
  (void)p, (void)kt;
  __trap();
#endif
}

/// Launches the mma.sync kernel persistently: min(tiles, SMs) CTAs of 256 threads. K-grouped
/// problems pass their prefix sums in `k_offsets` (host memory, G+1 entries).
template <int BlockM, int BlockN, int Stages>
void launch_mma_sync(kernel_params const& p, int const* k_offsets, int num_sms, cudaStream_t stream) {
  using S = mma_sync_shape<BlockM, BlockN, Stages>;
  auto kernel = p.b_scale_granularity == 1 ? &mma_sync_gemm_kernel<BlockM, BlockN, Stages, 1>
                                           : &mma_sync_gemm_kernel<BlockM, BlockN, Stages, b_scale_block_n>;
  FP8MOE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, S::smem_bytes));
  for_each_launch_chunk(p, k_offsets, [&](kernel_params const& q, k_group_table const& kt) {
    tile_scheduler const sched(make_schedule(q, BlockM, BlockN));
    std::int64_t const tiles = sched.max_tiles();
    if (tiles == 0) return;
    int const grid = static_cast<int>(tiles < num_sms ? tiles : num_sms);
    kernel<<<grid, S::threads, S::smem_bytes, stream>>>(q, kt);
    FP8MOE_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace fp8moe::gemm::cuda
