// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Thin inline-PTX wrappers used by the FP8 GEMM kernels: cp.async, ldmatrix, mma.sync m16n8k32
// e4m3 (sm_89+), mbarrier, TMA (cp.async.bulk.tensor), wgmma m64nNk32 e4m3 and setmaxnreg
// (sm_90a). Each wrapper is one instruction; ordering and phases are the caller's business.
#pragma once

#include <cstdint>

#include "fp8moe/config.hpp"

// wgmma and setmaxnreg exist only in the arch-specific sm_90a target (not sm_90, not sm_100a).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FP8MOE_ARCH_SM90A 1
#else
#define FP8MOE_ARCH_SM90A 0
#endif

namespace fp8moe::gemm::cuda::ptx {

FP8MOE_DEVICE std::uint32_t smem_addr(void const* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

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

// ---- named barriers -----------------------------------------------------------------------------
/// Named barrier with a compile-time id (so ptxas counts exactly the barriers in use).
template <int Id, int Threads>
FP8MOE_DEVICE void named_barrier_sync() {
  static_assert(Id > 0 && Id < 16 && Threads % 32 == 0,
                "bar.sync: id 1..15 (0 is __syncthreads), whole warps");
  asm volatile("bar.sync %0, %1;\n" ::"n"(Id), "n"(Threads) : "memory");
}

// ---- mbarrier (sm_90) ---------------------------------------------------------------------------
FP8MOE_DEVICE void mbarrier_init(std::uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
FP8MOE_DEVICE void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
FP8MOE_DEVICE void mbarrier_arrive(std::uint32_t bar) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
FP8MOE_DEVICE void mbarrier_arrive_expect_tx(std::uint32_t bar, std::uint32_t bytes) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
}
/// Spins until the phase with parity `phase` of the barrier has completed.
FP8MOE_DEVICE void mbarrier_wait(std::uint32_t bar, std::uint32_t phase) {
  asm volatile(
      "{\n.reg .pred done;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n" ::"r"(bar),
      "r"(phase)
      : "memory");
}

// ---- TMA (sm_90) --------------------------------------------------------------------------------
/// 3-D tiled bulk tensor load (coordinates innermost first) completing on mbarrier `bar`.
FP8MOE_DEVICE void tma_load_3d(std::uint32_t dst, void const* tensor_map, std::uint32_t bar, int c0, int c1,
                               int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, "
      "%5}], "
      "[%2];\n" ::"r"(dst),
      "l"(tensor_map), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
FP8MOE_DEVICE void prefetch_tensor_map(void const* tensor_map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(tensor_map) : "memory");
}

// ---- wgmma / setmaxnreg (sm_90a) ------------------------------------------------------------------
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

template <int Regs>
FP8MOE_DEVICE void setmaxnreg_inc() {
#if FP8MOE_ARCH_SM90A
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Regs));
#endif
}
template <int Regs>
FP8MOE_DEVICE void setmaxnreg_dec() {
#if FP8MOE_ARCH_SM90A
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Regs));
#endif
}

FP8MOE_DEVICE void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

}  // namespace fp8moe::gemm::cuda::ptx
