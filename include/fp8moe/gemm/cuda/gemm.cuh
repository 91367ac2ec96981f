// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// cuda_executor overloads of fp8_gemm / grouped_gemm (contract: gemm/problem.hpp). Validates on
// the host, translates the views into kernel_params and enqueues one persistent kernel on
// exec.stream: wgmma+TMA on sm_90a, the mma.sync kernel elsewhere and for K-grouped / 1x128 B.
// Never allocates device memory, never synchronizes. nvcc only; pointers are device pointers.
#pragma once

#include <cuda_runtime.h>

#include <concepts>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/gemm/cuda/kernel_mma_sync.cuh"
#include "fp8moe/gemm/cuda/kernel_wgmma.cuh"
#include "fp8moe/gemm/cuda/layout.hpp"
#include "fp8moe/gemm/cuda/params.hpp"
#include "fp8moe/gemm/problem.hpp"

namespace fp8moe::gemm::cuda {

/// Which kernel runs: chosen by select_tile (automatic) or forced (tests, benchmarks).
enum class family_choice : std::uint8_t { automatic, wgmma, mma_sync };

/// What the device path supports, stated once (checked at compile time on element types and at
/// run time on the recipe's tiles).
template <class TA, class TB, class TD>
constexpr void static_check_types() {
  static_assert(
      std::is_same_v<TA, float8_e4m3_t> && std::is_same_v<TB, float8_e4m3_t>,
      "fp8moe::gemm (cuda_executor): the device path supports E4M3 x E4M3 only (FP8 wgmma/mma.sync "
      "with FP32 1x128 A scales and 128x128 or 1x128 B scales); requantize E5M2 operands to E4M3 or use "
      "host_executor");
  static_assert(std::is_same_v<TD, float> || std::is_same_v<TD, bfloat16_t>,
                "fp8moe::gemm (cuda_executor): D must be bfloat16_t or float");
}

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
  FP8MOE_CUDA_CHECK(cudaFuncGetAttributes(&attr, &wgmma_gemm_kernel<128, 128, wgmma_stages_for(128, 128)>));
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

[[noreturn]] inline void unsupported(char const* where, char const* arg, std::string const& what) {
  throw error(errc::unsupported, fp8moe::detail::concat(where, ": argument '", arg, "': ", what));
}

inline void check_a_tile(tile_shape t, char const* where) {
  if (!(t.rows == 1 && t.cols == 128)) unsupported(where, "a.tile", "the device path needs 1x128 A scales");
}
inline int b_granularity(tile_shape t, char const* where) {
  if (t.rows == 128 && t.cols == 128) return 128;
  if (t.rows == 1 && t.cols == 128) return 1;
  unsupported(where, "b.tile", "the device path needs 128x128 or 1x128 B scales");
}
inline void check_common(std::int64_t k, gemm_options const& o, char const* where) {
  if (o.promotion_k != 128) unsupported(where, "options.promotion_k", "the device path promotes every 128 K");
  require(k % 16 == 0, where, "k", "K a multiple of 16 on the device path (16-byte TMA / cp.async granules)",
          std::to_string(k));
}
template <class T>
void check_k_major(matrix_view<T const> const& m, char const* where, char const* arg) {
  if (!(m.col_stride == 1 || m.rows <= 1)) {
    unsupported(where, arg, "K-major data (FP8 wgmma has no transpose): requantize transposed(W) K-major");
  }
}
template <class TD>
output_kind output_of() {
  return std::is_same_v<TD, float> ? output_kind::f32 : output_kind::bf16;
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
    if (!dev.sm90a || p.layout == layout_kind::k_grouped || p.b_scale_granularity == 1) {
      detail::unsupported(where, "choice",
                          "wgmma needs an sm_90a device, 128x128 B scales and no K-grouping");
    }
    if (cfg.family != kernel_family::wgmma_sm90a) cfg = {kernel_family::wgmma_sm90a, 128, 128, 0};
  }
  if (p.layout == layout_kind::grouped_contiguous) {
    require(m_align % 64 == 0, where, "m_align", "a multiple of 64 on the device path",
            std::to_string(m_align));
    if (cfg.block_m > m_align) cfg.block_m = m_align;  // one expert per M tile
  }
  if (cfg.family == kernel_family::mma_sync_sm89) {
    if (p.layout == layout_kind::grouped_contiguous && m_align % 128 != 0) {
      detail::unsupported(where, "m_align", "the mma.sync kernel needs 128-row aligned expert segments");
    }
    launch_mma_sync<128, 128, 3>(p, k_offsets, dev.sms, stream);
    return;
  }
  if (cfg.block_m == 128 && cfg.block_n == 128)
    return launch_wgmma<128, 128, wgmma_stages_for(128, 128)>(p, dev.sms, stream);
  if (cfg.block_m == 128) return launch_wgmma<128, 64, wgmma_stages_for(128, 64)>(p, dev.sms, stream);
  if (cfg.block_n == 128) return launch_wgmma<64, 128, wgmma_stages_for(64, 128)>(p, dev.sms, stream);
  return launch_wgmma<64, 64, wgmma_stages_for(64, 64)>(p, dev.sms, stream);
}

// ---- views -> kernel_params -------------------------------------------------------------------

template <class TA, class TB, class TD>
kernel_params to_params(dense<TA, TB, TD> const& p, gemm_options const& o = {}) {
  static_check_types<TA, TB, TD>();
  constexpr char const* where = "fp8moe::gemm::fp8_gemm";
  gemm::validate(p, o);
  detail::check_common(p.k(), o, where);
  detail::check_a_tile(p.a.tile, where);
  detail::check_k_major(p.b.data, where, "b");
  kernel_params q;
  q.layout = layout_kind::dense;
  q.m = static_cast<int>(p.m()), q.n = static_cast<int>(p.n()), q.k = static_cast<int>(p.k()), q.groups = 1;
  q.a = reinterpret_cast<std::uint8_t const*>(p.a.data.data), q.a_row_stride = p.a.data.row_stride;
  q.b = reinterpret_cast<std::uint8_t const*>(p.b.data.data), q.b_row_stride = p.b.data.row_stride;
  q.sfa = p.a.scales.data, q.sfa_layout = {p.a.scales.row_stride, p.a.scales.col_stride, 0};
  q.sfb = p.b.scales.data, q.sfb_layout = {p.b.scales.row_stride, p.b.scales.col_stride, 0};
  q.b_scale_granularity = detail::b_granularity(p.b.tile, where);
  q.d = p.d.data, q.d_row_stride = p.d.row_stride, q.out = detail::output_of<TD>();
  q.c = p.c.data, q.c_row_stride = p.c.row_stride;
  return q;
}

template <class TA, class TB, class TD>
kernel_params to_params(grouped_contiguous<TA, TB, TD> const& p, gemm_options const& o = {}) {
  static_check_types<TA, TB, TD>();
  constexpr char const* where = "fp8moe::gemm::grouped_gemm(contiguous)";
  gemm::validate(p, o);
  detail::check_common(p.k(), o, where);
  detail::check_a_tile(p.a.tile, where);
  require(p.m_indices.stride == 1, where, "m_indices", "a contiguous device array",
          std::to_string(p.m_indices.stride));
  kernel_params q;
  q.layout = layout_kind::grouped_contiguous;
  q.m = static_cast<int>(p.m()), q.n = static_cast<int>(p.n()), q.k = static_cast<int>(p.k());
  q.groups = static_cast<int>(p.groups());
  q.a = reinterpret_cast<std::uint8_t const*>(p.a.data.data), q.a_row_stride = p.a.data.row_stride;
  q.b = reinterpret_cast<std::uint8_t const*>(p.b.data.data), q.b_row_stride = p.b.data.row_stride;
  q.b_group_stride = p.b.data.batch_stride;
  if (p.b.data.col_stride != 1 && p.n() > 1) detail::unsupported(where, "b", "K-major expert weights");
  q.sfa = p.a.scales.data, q.sfa_layout = {p.a.scales.row_stride, p.a.scales.col_stride, 0};
  q.sfb = p.b.scales.data,
  q.sfb_layout = {p.b.scales.row_stride, p.b.scales.col_stride, p.b.scales.batch_stride};
  q.b_scale_granularity = detail::b_granularity(p.b.tile, where);
  q.d = p.d.data, q.d_row_stride = p.d.row_stride, q.out = detail::output_of<TD>();
  q.c = p.c.data, q.c_row_stride = p.c.row_stride;
  q.m_indices = p.m_indices.data;
  return q;
}

template <class TA, class TB, class TD>
kernel_params to_params(grouped_masked<TA, TB, TD> const& p, gemm_options const& o = {}) {
  static_check_types<TA, TB, TD>();
  constexpr char const* where = "fp8moe::gemm::grouped_gemm(masked)";
  gemm::validate(p, o);
  detail::check_common(p.k(), o, where);
  detail::check_a_tile(p.a.tile, where);
  require(p.masked_m.stride == 1, where, "masked_m", "a contiguous device array",
          std::to_string(p.masked_m.stride));
  kernel_params q;
  q.layout = layout_kind::grouped_masked;
  q.m = static_cast<int>(p.max_m()), q.n = static_cast<int>(p.n()), q.k = static_cast<int>(p.k());
  q.groups = static_cast<int>(p.groups());
  q.a = reinterpret_cast<std::uint8_t const*>(p.a.data.data), q.a_row_stride = p.a.data.row_stride;
  q.a_group_stride = p.a.data.batch_stride;
  q.b = reinterpret_cast<std::uint8_t const*>(p.b.data.data), q.b_row_stride = p.b.data.row_stride;
  q.b_group_stride = p.b.data.batch_stride;
  if (p.b.data.col_stride != 1 && p.n() > 1) detail::unsupported(where, "b", "K-major expert weights");
  q.sfa = p.a.scales.data,
  q.sfa_layout = {p.a.scales.row_stride, p.a.scales.col_stride, p.a.scales.batch_stride};
  q.sfb = p.b.scales.data,
  q.sfb_layout = {p.b.scales.row_stride, p.b.scales.col_stride, p.b.scales.batch_stride};
  q.b_scale_granularity = detail::b_granularity(p.b.tile, where);
  q.d = p.d.data, q.d_row_stride = p.d.row_stride, q.d_group_stride = p.d.batch_stride;
  q.out = detail::output_of<TD>();
  q.c = p.c.data, q.c_row_stride = p.c.row_stride, q.c_group_stride = p.c.batch_stride;
  q.masked_m = p.masked_m.data;
  return q;
}

/// K-grouped: also fills `k_offsets` (G+1 host prefix sums) from the host array k_sizes.
template <class TA, class TB>
kernel_params to_params(k_grouped<TA, TB> const& p, std::vector<int>& k_offsets, gemm_options const& o = {}) {
  static_check_types<TA, TB, float>();
  constexpr char const* where = "fp8moe::gemm::grouped_gemm(k_grouped)";
  gemm::validate(p, o);
  detail::check_common(p.k_total(), o, where);
  detail::check_a_tile(p.a.tile, where);
  if (detail::b_granularity(p.b.tile, where) != 1)
    detail::unsupported(where, "b.tile", "1x128 B scales (weight gradient)");
  k_offsets.assign(static_cast<std::size_t>(p.groups()) + 1, 0);
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    require(p.k_sizes[g] % 128 == 0, where, "k_sizes", "multiples of 128 on the device path",
            "k_sizes[" + std::to_string(g) + "] = " + std::to_string(p.k_sizes[g]));
    k_offsets[g + 1] = k_offsets[g] + p.k_sizes[g];
  }
  kernel_params q;
  q.layout = layout_kind::k_grouped;
  q.m = static_cast<int>(p.m()), q.n = static_cast<int>(p.n()), q.k = static_cast<int>(p.k_total());
  q.groups = static_cast<int>(p.groups());
  q.a = reinterpret_cast<std::uint8_t const*>(p.a.data.data), q.a_row_stride = p.a.data.row_stride;
  q.b = reinterpret_cast<std::uint8_t const*>(p.b.data.data), q.b_row_stride = p.b.data.row_stride;
  q.sfa = p.a.scales.data, q.sfa_layout = {p.a.scales.row_stride, p.a.scales.col_stride, 0};
  q.sfb = p.b.scales.data, q.sfb_layout = {p.b.scales.row_stride, p.b.scales.col_stride, 0};
  q.b_scale_granularity = 1;
  q.d = p.d.data, q.d_row_stride = p.d.row_stride, q.d_group_stride = p.d.batch_stride,
  q.out = output_kind::f32;
  q.c = p.c.data, q.c_row_stride = p.c.row_stride, q.c_group_stride = p.c.batch_stride;
  return q;
}

}  // namespace fp8moe::gemm::cuda

namespace fp8moe::gemm {

namespace cuda::detail {
/// At most one trailing gemm_options, taken as a forwarding pack so these overloads tie with the
/// generic device-executor fallback of gemm.hpp on conversions and win on partial ordering.
template <class... O>
concept options_pack = sizeof...(O) <= 1 && (std::same_as<std::remove_cvref_t<O>, gemm_options> && ...);
template <class... O>
gemm_options options_of(O&&... o) {
  if constexpr (sizeof...(O) == 0) {
    return {};
  } else {
    return (o, ...);
  }
}
}  // namespace cuda::detail

/// D (M,N) = [C +] A (M,K) * B (N,K)^T on the device (exec.stream).
template <class TA, class TB, class TD, class... O>
requires cuda::detail::options_pack<O...>
void fp8_gemm(cuda_executor const& exec, dense<TA, TB, TD> const& p, O&&... o) {
  cuda::run(exec.stream, cuda::to_params(p, cuda::detail::options_of(o...)), nullptr,
            "fp8moe::gemm::fp8_gemm");
}
template <class TA, class TB, class TD, class... O>
requires cuda::detail::options_pack<O...>
void fp8_gemm(cuda_executor const& exec, quantized_matrix_view<TA const> a, quantized_matrix_view<TB const> b,
              matrix_view<TD> d, O&&... o) {
  fp8_gemm(exec, dense<TA, TB, TD>{a, b, d, {}}, o...);
}
template <class TA, class TB, class TD, class... O>
requires cuda::detail::options_pack<O...>
void fp8_gemm(cuda_executor const& exec, quantized_matrix_view<TA const> a, quantized_matrix_view<TB const> b,
              matrix_view<TD> d, matrix_view<float const> c, O&&... o) {
  fp8_gemm(exec, dense<TA, TB, TD>{a, b, d, c}, o...);
}

/// Grouped contiguous on the device; m_indices is a device array; ids outside [0,G) are padding.
template <class TA, class TB, class TD, class... O>
requires cuda::detail::options_pack<O...>
void grouped_gemm(cuda_executor const& exec, grouped_contiguous<TA, TB, TD> const& p, O&&... o) {
  cuda::run(exec.stream, cuda::to_params(p, cuda::detail::options_of(o...)), nullptr,
            "fp8moe::gemm::grouped_gemm(contiguous)", cuda::family_choice::automatic, 0, p.m_align);
}
/// Grouped masked on the device; masked_m is a device array (counts clamped to max_m).
template <class TA, class TB, class TD, class... O>
requires cuda::detail::options_pack<O...>
void grouped_gemm(cuda_executor const& exec, grouped_masked<TA, TB, TD> const& p, O&&... o) {
  cuda::run(exec.stream, cuda::to_params(p, cuda::detail::options_of(o...)), nullptr,
            "fp8moe::gemm::grouped_gemm(masked)", cuda::family_choice::automatic, p.expected_m);
}
/// K-grouped weight gradient on the device; k_sizes stays in host memory.
template <class TA, class TB, class... O>
requires cuda::detail::options_pack<O...>
void grouped_gemm(cuda_executor const& exec, k_grouped<TA, TB> const& p, O&&... o) {
  std::vector<int> offsets;
  auto const q = cuda::to_params(p, offsets, cuda::detail::options_of(o...));
  cuda::run(exec.stream, q, offsets.data(), "fp8moe::gemm::grouped_gemm(k_grouped)");
}

}  // namespace fp8moe::gemm
