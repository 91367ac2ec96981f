// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Thin inline-PTX wrappers of the FP8 GEMM kernels: cp.async, ldmatrix, mma.sync m16n8k32 e4m3
// (sm_89+) and the wgmma fences (sm_90a; the MMA itself is in wgmma.cuh). The general sm_90 pieces
// (mbarrier, TMA, setmaxnreg, fences, named barriers) live in core/cuda/sm90.cuh and are visible
// here under ptx:: too. Each wrapper is one instruction; ordering is the caller's business.
#pragma once

#include <cstdint>

#include "fp8moe/config.hpp"
#include "fp8moe/core/cuda/sm90.cuh"

namespace fp8moe::gemm::cuda::ptx {

using fp8moe::cuda::sm90::fence_barrier_init;
using fp8moe::cuda::sm90::fence_proxy_async_shared;
using fp8moe::cuda::sm90::mbarrier_arrive;
using fp8moe::cuda::sm90::mbarrier_arrive_expect_tx;
using fp8moe::cuda::sm90::mbarrier_init;
using fp8moe::cuda::sm90::mbarrier_wait;
using fp8moe::cuda::sm90::named_barrier_sync;
using fp8moe::cuda::sm90::prefetch_tensor_map;
using fp8moe::cuda::sm90::setmaxnreg_dec;
using fp8moe::cuda::sm90::setmaxnreg_inc;
using fp8moe::cuda::sm90::smem_addr;
using fp8moe::cuda::sm90::tma_load_3d;

// ---- cp.async (sm_80+) --------------------------------------------------------------------------
/// 16-byte global -> shared copy; `valid` false zero-fills the destination (src-size 0).
FP8MOE_DEVICE void cp_async_16(std::uint32_t dst, void const* src, bool valid) {
  int const n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
}
FP8MOE_DEVICE void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
FP8MOE_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---- ldmatrix / mma.sync ------------------------------------------------------------------------
FP8MOE_DEVICE void ldmatrix_x4(std::uint32_t addr, std::uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/// d = a . b + d, m16n8k32, E4M3 x E4M3 -> FP32 (sm_89+).
FP8MOE_DEVICE void mma_m16n8k32_e4m3(float (&d)[4], std::uint32_t const (&a)[4], std::uint32_t b0,
                                     std::uint32_t b1) {
#if FP8MOE_ARCH_FP8
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  (void)d, (void)a, (void)b0, (void)b1;
  __trap();
#endif
}

// ---- wgmma fences (sm_90a) ----------------------------------------------------------------------
FP8MOE_DEVICE void wgmma_fence() {
#if FP8MOE_ARCH_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
FP8MOE_DEVICE void wgmma_commit() {
#if FP8MOE_ARCH_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
FP8MOE_DEVICE void wgmma_wait() {
#if FP8MOE_ARCH_SM90A
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
/// Keeps the compiler from moving accumulator reads/writes across wgmma boundaries.
FP8MOE_DEVICE void fence_operand(float& r) {
  asm volatile("" : "+f"(r)::"memory");
}

}  // namespace fp8moe::gemm::cuda::ptx
