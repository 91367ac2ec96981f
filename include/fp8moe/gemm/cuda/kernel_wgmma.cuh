// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Hopper (sm_90a) block-scaled FP8 GEMM: persistent, warp-specialized. Warpgroup 0 is the
// producer (one thread issues TMA loads of 128B-swizzled A/B K-blocks into a Stages-deep
// mbarrier pipeline, then idles at 40 registers); warpgroups 1-2 are consumers (232 registers):
// 4 x wgmma m64nNk32 e4m3 per K block, then the FP32 promotion with the 1x128 A / 128x128 B
// scales on CUDA cores while the other warpgroup's wgmmas run. BF16/F32 epilogue via shared memory.
// Every layout; B scales 128x128 (BScaleRows = 128) or 1x128 per row (BScaleRows = 1, the
// weight gradient: per-column scales staged in shared memory once per K block).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/gemm/cuda/layout.hpp"
#include "fp8moe/gemm/cuda/params.hpp"
#include "fp8moe/gemm/cuda/ptx.cuh"
#include "fp8moe/gemm/cuda/tile.cuh"
#include "fp8moe/gemm/cuda/wgmma.cuh"

namespace fp8moe::gemm::cuda {

template <int BlockM, int BlockN, int Stages, int BScaleRows = b_scale_block_n>
struct wgmma_shape {
  static constexpr int threads = 384;  // producer warpgroup + 2 consumer warpgroups
  static constexpr int consumers = 2;
  // BlockM 128: each consumer owns 64 rows x BlockN; BlockM 64: each owns 64 rows x BlockN/2
  static constexpr int wg_n = BlockM == 128 ? BlockN : BlockN / 2;
  static constexpr int a_bytes = BlockM * block_k, b_bytes = BlockN * block_k;
  static constexpr int stage_bytes = a_bytes + b_bytes;
  static constexpr int smem_bytes = wgmma_smem_bytes(BlockM, BlockN, Stages);
  static_assert(BlockM == 64 || BlockM == 128,
                "wgmma tile: BlockM must be 64 or 128 (two m64 consumer warpgroups)");
  static_assert(wg_n == 32 || wg_n == 64 || wg_n == 128, "wgmma tile: per-warpgroup N must be 32, 64 or 128");
  static_assert(128 % BlockN == 0 || BlockN == 128,
                "wgmma tile: BlockN must not straddle a 128-wide B scale block");
  static_assert(Stages >= 2 && smem_bytes <= 227 * 1024,
                "wgmma tile: pipeline does not fit in 227 KB of shared memory");
  static_assert(BScaleRows == b_scale_block_n || BScaleRows == 1, "B scales: 128x128 blocks or 1x128 rows");
  // per-column B scales: 2 buffers x 2 consumer warpgroups x wg_n floats after the mbarriers
  static_assert(BScaleRows == b_scale_block_n || 256 + 2 * consumers * wg_n * 4 <= smem_header_bytes,
                "wgmma tile: per-column B scales do not fit in the shared-memory header");
};

template <int BlockM, int BlockN, int Stages, int BScaleRows>
__global__ void __launch_bounds__(384, 1)
    wgmma_gemm_kernel(kernel_params const p, __grid_constant__ CUtensorMap const tma_a,
                      __grid_constant__ CUtensorMap const tma_b, __grid_constant__ k_group_table const kt) {
#if FP8MOE_ARCH_SM90A
  using S = wgmma_shape<BlockM, BlockN, Stages, BScaleRows>;
  using mma = ptx::wgmma_e4m3<S::wg_n>;
  constexpr int acc_regs = mma::registers;
  constexpr int pitch = staging_pitch(BlockN);

  extern __shared__ std::uint8_t smem_raw[];
  std::uint32_t const raw_addr = ptx::smem_addr(smem_raw);
  std::uint32_t const pad = ((raw_addr + 1023u) & ~1023u) - raw_addr;
  std::uint8_t* const smem = smem_raw + pad;
  std::uint32_t const base = raw_addr + pad;
  std::uint32_t const full_bar = base;                             // Stages x 8 bytes
  std::uint32_t const empty_bar = base + 8 * Stages;               // Stages x 8 bytes
  float* const col_scales = reinterpret_cast<float*>(smem + 256);  // [2][consumers][wg_n] (BScaleRows 1)
  std::uint32_t const stages_addr = base + smem_header_bytes;
  float* const staging = reinterpret_cast<float*>(smem + smem_header_bytes + Stages * S::stage_bytes);

  int const tid = static_cast<int>(threadIdx.x);
  int const warpgroup = tid / 128;
  if (tid == 0) {
    ptx::prefetch_tensor_map(&tma_a);
    ptx::prefetch_tensor_map(&tma_b);
    for (int s = 0; s < Stages; ++s) {
      ptx::mbarrier_init(full_bar + 8 * s, 1);
      ptx::mbarrier_init(empty_bar + 8 * s, S::consumers * 4);  // one arrive per consumer warp
    }
    ptx::fence_barrier_init();
  }
  __syncthreads();

  tile_scheduler sched(make_schedule(p, BlockM, BlockN));
  tile_coord t{};
  if (warpgroup == 0) {
    // ---------------- producer ----------------
    ptx::setmaxnreg_dec<40>();
    if (tid == 0) {
      int iter = 0;
      for (std::int64_t ti = blockIdx.x; sched.get(ti, t); ti += gridDim.x) {
        tile_geometry const g = make_tile_geometry(p, t, BlockM, BlockN, kt.offsets);
        if (g.rows_valid == 0) continue;
        int const a_batch = p.layout == layout_kind::grouped_masked ? t.group : 0;
        int const b_batch =
            (p.layout == layout_kind::grouped_contiguous || p.layout == layout_kind::grouped_masked) ? t.group
                                                                                                     : 0;
        for (int kb = 0; kb < g.k_blocks; ++kb, ++iter) {
          int const s = iter % Stages;
          std::uint32_t const phase = (iter / Stages) & 1;
          ptx::mbarrier_wait(empty_bar + 8 * s, phase ^ 1u);
          ptx::mbarrier_arrive_expect_tx(full_bar + 8 * s, S::stage_bytes);
          std::uint32_t const a_dst = stages_addr + s * S::stage_bytes;
          int const k = (g.kb0 + kb) * block_k;
          ptx::tma_load_3d(a_dst, &tma_a, full_bar + 8 * s, k, g.m0, a_batch);
          ptx::tma_load_3d(a_dst + S::a_bytes, &tma_b, full_bar + 8 * s, k, g.n0, b_batch);
        }
      }
    }
  } else {
    // ---------------- consumers ----------------
    ptx::setmaxnreg_inc<232>();
    int const cw = warpgroup - 1;  // consumer warpgroup 0/1
    int const ct = tid - 128;      // 0..255 over both consumers
    int const wt = tid & 127;      // thread inside the warpgroup
    int const wg_m0 = BlockM == 128 ? cw * 64 : 0;
    int const wg_n0 = BlockM == 128 ? 0 : cw * S::wg_n;
    int const row0 = wg_m0 + (wt >> 5) * 16 + ((wt & 31) >> 2);  // this thread's rows: row0, row0 + 8
    int iter = 0;
    for (std::int64_t ti = blockIdx.x; sched.get(ti, t); ti += gridDim.x) {
      tile_geometry const g = make_tile_geometry(p, t, BlockM, BlockN, kt.offsets);
      if (g.rows_valid == 0) continue;
      float fin[acc_regs];
      FP8MOE_UNROLL
      for (int i = 0; i < acc_regs; ++i) fin[i] = 0.0f;
      float acc[acc_regs];
      for (int kb = 0; kb < g.k_blocks; ++kb, ++iter) {
        int const s = iter % Stages;
        std::uint32_t const phase = (iter / Stages) & 1;
        int const kbg = g.kb0 + kb;
        // scales first: their latency hides behind the barrier wait and the MMAs
        float const sa0 =
            row0 < g.rows_loadable ? __ldg(p.sfa + p.sfa_layout(g.sfa_group, g.m0 + row0, kbg)) : 0.0f;
        float const sa1 = row0 + 8 < g.rows_loadable
                              ? __ldg(p.sfa + p.sfa_layout(g.sfa_group, g.m0 + row0 + 8, kbg))
                              : 0.0f;
        float sb = 1.0f;
        float* const sbuf = col_scales + ((iter & 1) * S::consumers + cw) * S::wg_n;
        if constexpr (BScaleRows == 1) {
          // this warpgroup's wg_n column scales into a double buffer (a thread rewrites a buffer
          // only after every thread of the warpgroup passed the barrier of the K block that last used it)
          if (wt < S::wg_n) {
            int const col = wg_n0 + wt;
            sbuf[wt] = col < g.cols_valid ? __ldg(p.sfb + p.sfb_layout(g.sfb_group, g.n0 + col, kbg)) : 0.0f;
          }
          if (cw == 0) {
            ptx::named_barrier_sync<2, 128>();
          } else {
            ptx::named_barrier_sync<3, 128>();
          }
        } else {
          sb = __ldg(p.sfb + p.sfb_layout(g.sfb_group, (g.n0 + wg_n0) / b_scale_block_n, kbg));
        }

        ptx::mbarrier_wait(full_bar + 8 * s, phase);
        std::uint32_t const a_tile = stages_addr + s * S::stage_bytes + wg_m0 * block_k;
        std::uint32_t const b_tile = stages_addr + s * S::stage_bytes + S::a_bytes + wg_n0 * block_k;
        FP8MOE_UNROLL
        for (int i = 0; i < acc_regs; ++i) ptx::fence_operand(acc[i]);
        ptx::wgmma_fence();
        FP8MOE_UNROLL
        for (int kk = 0; kk < block_k / 32; ++kk) {
          mma::mma(acc, wgmma_desc_k_major_sw128(a_tile + kk * 32),
                   wgmma_desc_k_major_sw128(b_tile + kk * 32), kk > 0 ? 1 : 0);
        }
        ptx::wgmma_commit();
        ptx::wgmma_wait<0>();
        // after the wait: no read of acc may be scheduled above it
        FP8MOE_UNROLL
        for (int i = 0; i < acc_regs; ++i) ptx::fence_operand(acc[i]);
        // the stage's bytes are consumed: hand it back to the producer before promoting
        if ((tid & 31) == 0) ptx::mbarrier_arrive(empty_bar + 8 * s);
        if constexpr (BScaleRows == 1) {
          FP8MOE_UNROLL
          for (int i = 0; i < acc_regs; ++i) {
            coord const c = wgmma_m64_acc(wt, i);
            fin[i] += acc[i] * (((i & 2) ? sa1 : sa0) * sbuf[c.col]);
          }
        } else {
          float const s0 = sa0 * sb, s1 = sa1 * sb;
          FP8MOE_UNROLL
          for (int i = 0; i < acc_regs; ++i) fin[i] += acc[i] * ((i & 2) ? s1 : s0);
        }
      }
      // epilogue: registers -> FP32 staging tile -> 16-byte stores
      FP8MOE_UNROLL
      for (int i = 0; i < acc_regs; i += 2) {
        coord const c = wgmma_m64_acc(wt, i);
        *reinterpret_cast<float2*>(staging + (wg_m0 + c.row) * pitch + wg_n0 + c.col) =
            make_float2(fin[i], fin[i + 1]);
      }
      ptx::named_barrier_sync<1, 256>();
      store_tile<BlockM, BlockN>(p, g, staging, pitch, ct, 256);
      ptx::named_barrier_sync<1, 256>();
    }
  }
#else
  (void)p, (void)tma_a, (void)tma_b, (void)kt;
  __trap();
#endif
}

// ------------------------------------------------------------------------------------------------
// Host side: tensor maps (cuTensorMapEncodeTiled through the runtime's driver entry point, so no
// libcuda link is needed) and the launch.

namespace detail {
using encode_tiled_fn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, cuuint64_t const*,
                                     cuuint64_t const*, cuuint32_t const*, cuuint32_t const*,
                                     CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
                                     CUtensorMapFloatOOBfill);

inline encode_tiled_fn get_encode_tiled() {
  static encode_tiled_fn fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    FP8MOE_CUDA_CHECK(
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
    if (q != cudaDriverEntryPointSuccess || f == nullptr) {
      throw error(errc::cuda, "fp8moe::gemm: cuTensorMapEncodeTiled is not available from the driver");
    }
    return reinterpret_cast<encode_tiled_fn>(f);
  }();
  return fn;
}

/// 3-D (K, rows, batch) map over a K-major FP8 operand, box (128, box_rows, 1), 128B swizzle;
/// out-of-range rows are zero-filled by the copy engine. K = 0 (also a K-grouped problem whose
/// groups are all empty): the kernel issues no copy (D = C or 0), but the driver rejects zero
/// extents and strides, so a never-used map of one 16-byte column is encoded instead.
inline CUtensorMap make_operand_map(std::uint8_t const* data, std::int64_t k, std::int64_t rows,
                                    std::int64_t batches, std::int64_t row_stride, std::int64_t batch_stride,
                                    int box_rows) {
  CUtensorMap map{};
  if (k == 0) {
    k = 16;
    row_stride = row_stride < 16 ? 16 : row_stride;
    batch_stride = row_stride * rows;
  }
  cuuint64_t const dims[3] = {static_cast<cuuint64_t>(k), static_cast<cuuint64_t>(rows),
                              static_cast<cuuint64_t>(batches)};
  cuuint64_t const strides[2] = {static_cast<cuuint64_t>(row_stride),
                                 static_cast<cuuint64_t>(batches > 1 ? batch_stride : row_stride * rows)};
  cuuint32_t const box[3] = {static_cast<cuuint32_t>(block_k), static_cast<cuuint32_t>(box_rows), 1};
  cuuint32_t const elem_strides[3] = {1, 1, 1};
  CUresult const r = get_encode_tiled()(
      &map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, const_cast<std::uint8_t*>(data), dims, strides, box,
      elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    throw error(errc::cuda,
                fp8moe::detail::concat("fp8moe::gemm: cuTensorMapEncodeTiled failed with CUresult ",
                                       static_cast<int>(r)));
  }
  return map;
}
}  // namespace detail

/// Launches the wgmma kernel persistently on min(tiles, SMs) CTAs of 384 threads. K-grouped
/// problems pass their prefix sums in `k_offsets` (host memory, G+1 entries).
template <int BlockM, int BlockN, int Stages, int BScaleRows = b_scale_block_n>
void launch_wgmma(kernel_params const& p, int const* k_offsets, int num_sms, cudaStream_t stream) {
  using S = wgmma_shape<BlockM, BlockN, Stages, BScaleRows>;
  auto kernel = &wgmma_gemm_kernel<BlockM, BlockN, Stages, BScaleRows>;
  FP8MOE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, S::smem_bytes));
  bool const masked = p.layout == layout_kind::grouped_masked;
  bool const grouped_b = p.layout == layout_kind::grouped_contiguous || masked;
  CUtensorMap const ma = detail::make_operand_map(p.a, p.k, p.m, masked ? p.groups : 1, p.a_row_stride,
                                                  p.a_group_stride, BlockM);
  CUtensorMap const mb = detail::make_operand_map(p.b, p.k, p.n, grouped_b ? p.groups : 1, p.b_row_stride,
                                                  p.b_group_stride, BlockN);
  for_each_launch_chunk(p, k_offsets, [&](kernel_params const& q, k_group_table const& kt) {
    tile_scheduler const sched(make_schedule(q, BlockM, BlockN));
    std::int64_t const tiles = sched.max_tiles();
    if (tiles == 0) return;
    int const grid = static_cast<int>(tiles < num_sms ? tiles : num_sms);
    kernel<<<grid, S::threads, S::smem_bytes, stream>>>(q, ma, mb, kt);
    FP8MOE_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace fp8moe::gemm::cuda
