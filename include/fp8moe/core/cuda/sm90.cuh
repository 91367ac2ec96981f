// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Inline-PTX wrappers of the sm_90 building blocks that every warp-specialised Hopper kernel (GEMM,
// attention) shares: mbarrier, TMA (cp.async.bulk.tensor), setmaxnreg (sm_90a), the async-proxy
// and barrier-init fences, named barriers and the shared-memory address they take. Each wrapper is
// one instruction; ordering and phases are the caller's business. nvcc only.
#pragma once

#include <cstdint>

#include "fp8moe/config.hpp"

// wgmma and setmaxnreg exist only in the arch-specific sm_90a target (not sm_90, not sm_100a).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FP8MOE_ARCH_SM90A 1
#else
#define FP8MOE_ARCH_SM90A 0
#endif

namespace fp8moe::cuda::sm90 {

/// The 32-bit shared-state-space address of a pointer into shared memory (the operand of the
/// instructions below).
FP8MOE_DEVICE std::uint32_t smem_addr(void const* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
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

// ---- setmaxnreg (sm_90a) / fences -----------------------------------------------------------------
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

}  // namespace fp8moe::cuda::sm90
