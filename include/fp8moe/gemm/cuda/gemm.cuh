// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The cuda_executor path of fp8_gemm / grouped_gemm (gemm::dispatch<cuda_executor>; contract:
// gemm/problem.hpp; include gemm/cuda/gemm.hpp). Validates on the host, translates the views into
// kernel_params and enqueues one persistent kernel on exec.stream: wgmma+TMA on sm_90a (every
// layout, 1x128 B scales included), the mma.sync kernel elsewhere.
// Never allocates device memory, never synchronizes. nvcc only; pointers are device pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/gemm/cuda/kernel_mma_sync.cuh"
#include "fp8moe/gemm/cuda/kernel_wgmma.cuh"
#include "fp8moe/gemm/cuda/layout.hpp"
#include "fp8moe/gemm/cuda/params.hpp"
#include "fp8moe/gemm/cuda/translate.hpp"
#include "fp8moe/gemm/gemm.hpp"
#include "fp8moe/gemm/problem.hpp"

namespace fp8moe::gemm::cuda {

namespace detail {

struct device_info {
  int sms = 0;
  bool sm90a = false;
};

inline device_info query_device(int dev) {
  device_info info;
  int major = 0, minor = 0;
  FP8MOE_CUDA_CHECK(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, dev));
  FP8MOE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  FP8MOE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  require(major * 10 + minor >= 89, "fp8moe::gemm (cuda_executor)", "device",
          "compute capability 8.9 or newer (FP8 tensor cores)",
          std::to_string(major) + "." + std::to_string(minor));
  // The wgmma kernel has a real body only in sm_90a machine code (built for plain sm_90 it is a
  // trap stub of a few registers): require both the 9.0 binary and the register footprint.
  cudaFuncAttributes attr{};
  FP8MOE_CUDA_CHECK(cudaFuncGetAttributes(
      &attr, &wgmma_gemm_kernel<128, 128, wgmma_stages_for(128, 128), b_scale_block_n>));
  info.sm90a = major == 9 && minor == 0 && attr.binaryVersion == 90 && attr.numRegs >= 64;
  return info;
}

/// The current device's properties, queried once per device and thread.
inline device_info current_device() {
  int dev = 0;
  FP8MOE_CUDA_CHECK(cudaGetDevice(&dev));
  thread_local int cached_dev = -1;
  thread_local device_info cached{};
  if (dev != cached_dev) {
    cached = query_device(dev);
    cached_dev = dev;
  }
  return cached;
}

}  // namespace detail

/// Runs one validated problem. `k_offsets` (host memory, G+1 entries) only for K-grouped.
inline void run(cudaStream_t stream, kernel_params const& p, int const* k_offsets, char const* where,
                family_choice choice = family_choice::automatic, int expected_m = 0, int m_align = 128) {
  validate(p, where);
  if (p.m == 0 || p.n == 0) return;
  detail::device_info const dev = detail::current_device();
  std::int64_t const m_hint =
      p.layout == layout_kind::grouped_masked ? (expected_m > 0 ? expected_m : p.m) : p.m;
  tile_config cfg =
      select_tile(p.layout, m_hint, p.n, p.groups, dev.sms, dev.sm90a, p.b_scale_granularity == 1);
  if (choice == family_choice::mma_sync) cfg.family = kernel_family::mma_sync_sm89;
  if (choice == family_choice::wgmma) {
    if (!dev.sm90a) detail::unsupported(where, "choice", "wgmma needs an sm_90a device and an sm_90a build");
    if (cfg.family != kernel_family::wgmma_sm90a) cfg = {kernel_family::wgmma_sm90a, 128, 128, 0};
  }
  bool const per_row_b = p.b_scale_granularity == 1;
  if (p.layout == layout_kind::grouped_contiguous) {
    require(m_align % 64 == 0, where, "m_align", "a multiple of 64 on the device path",
            std::to_string(m_align));
    // one expert per M tile: the tile height must divide m_align (m_align = 192 with 128-row tiles
    // would put rows of two experts in one tile); 64 always does here
    if (m_align % cfg.block_m != 0) cfg.block_m = 64;
  }
  bool const need_128_rows = cfg.family == kernel_family::mma_sync_sm89 || per_row_b;
  if (p.layout == layout_kind::grouped_contiguous && need_128_rows && m_align % 128 != 0) {
    detail::unsupported(where, "m_align", "128-row aligned expert segments for this kernel / B-scale recipe");
  }
  if (cfg.family == kernel_family::mma_sync_sm89) {
    launch_mma_sync<128, 128, 3>(p, k_offsets, dev.sms, stream);
    return;
  }
  constexpr int s128 = wgmma_stages_for(128, 128);
  if (per_row_b) return launch_wgmma<128, 128, s128, 1>(p, k_offsets, dev.sms, stream);
  if (cfg.block_m == 128 && cfg.block_n == 128)
    return launch_wgmma<128, 128, s128>(p, k_offsets, dev.sms, stream);
  if (cfg.block_m == 128)
    return launch_wgmma<128, 64, wgmma_stages_for(128, 64)>(p, k_offsets, dev.sms, stream);
  if (cfg.block_n == 128)
    return launch_wgmma<64, 128, wgmma_stages_for(64, 128)>(p, k_offsets, dev.sms, stream);
  return launch_wgmma<64, 64, wgmma_stages_for(64, 64)>(p, k_offsets, dev.sms, stream);
}

}  // namespace fp8moe::gemm::cuda

namespace fp8moe::gemm {

/// The cuda_executor path of the entry points in gemm/gemm.hpp: validate on the host, translate,
/// enqueue on exec.stream. The device path takes no workspace (workspace_bytes is 0, a caller's
/// workspace is ignored) and the allocating overloads allocate nothing.
template <>
struct dispatch<cuda_executor> {
  static std::size_t workspace_bytes(cuda_executor const&, gemm_options const&) { return 0; }

  template <class F>
  static void with_workspace(cuda_executor const&, gemm_options const&, F&& f) {
    f(std::span<std::byte>{});
  }

  /// D (M,N) = [C +] A (M,K) * B (N,K)^T on the device (exec.stream).
  template <class TA, class TB, class TD>
  static void fp8_gemm(cuda_executor const& exec, dense<TA, TB, TD> const& p, gemm_options const& o,
                       std::span<std::byte>) {
    cuda::run(exec.stream, cuda::to_params(p, o), nullptr, "fp8moe::gemm::fp8_gemm");
  }

  /// Grouped contiguous on the device; m_indices is a device array; ids outside [0,G) are padding.
  template <class TA, class TB, class TD>
  static void grouped_gemm(cuda_executor const& exec, grouped_contiguous<TA, TB, TD> const& p,
                           gemm_options const& o, std::span<std::byte>) {
    cuda::run(exec.stream, cuda::to_params(p, o), nullptr, "fp8moe::gemm::grouped_gemm(contiguous)",
              cuda::family_choice::automatic, 0, p.m_align);
  }

  /// Grouped masked on the device; masked_m is a device array (counts clamped to max_m).
  template <class TA, class TB, class TD>
  static void grouped_gemm(cuda_executor const& exec, grouped_masked<TA, TB, TD> const& p,
                           gemm_options const& o, std::span<std::byte>) {
    cuda::run(exec.stream, cuda::to_params(p, o), nullptr, "fp8moe::gemm::grouped_gemm(masked)",
              cuda::family_choice::automatic, p.expected_m);
  }

  /// K-grouped weight gradient on the device; k_sizes stays in host memory.
  template <class TA, class TB>
  static void grouped_gemm(cuda_executor const& exec, k_grouped<TA, TB> const& p, gemm_options const& o,
                           std::span<std::byte>) {
    std::vector<int> offsets;
    auto const q = cuda::to_params(p, offsets, o);
    cuda::run(exec.stream, q, offsets.data(), "fp8moe::gemm::grouped_gemm(k_grouped)");
  }
};

}  // namespace fp8moe::gemm
