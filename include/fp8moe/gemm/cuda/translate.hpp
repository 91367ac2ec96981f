// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Translation of the public problem views (gemm/problem.hpp) into the device kernels' argument
// block, with the device path's support checks: E4M3 x E4M3 (static_assert), 1x128 A scales,
// 128x128 or 1x128 B scales, promotion every 128 K, K-major B, M/N/K/groups <= INT_MAX
// (fp8moe::error otherwise).
// Host-compilable, so the translation is tested on the CPU through the kernels' host emulation.
#pragma once

#include <concepts>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/core/error.hpp"
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

[[noreturn]] inline void unsupported(char const* where, char const* arg, std::string const& what) {
  throw error(errc::unsupported, fp8moe::detail::concat(where, ": argument '", arg, "': ", what));
}

/// The kernels index rows, columns, K and groups with `int` (kernel_params): an extent past
/// INT_MAX (2^31 - 1) is rejected here, naming the dimension, instead of wrapping.
inline int device_extent(std::int64_t v, char const* where, char const* dim) {
  require(v >= 0 && v <= std::numeric_limits<int>::max(), where, dim,
          "at most 2147483647 (the device kernels index extents with int)", std::to_string(v));
  return static_cast<int>(v);
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

/// The expert weights B (G,N,K) of the grouped layouts and their per-expert scales: K-major data
/// (unless N = 1), 128x128 or 1x128 scale blocks.
template <class TB>
void set_expert_weights(kernel_params& q, quantized_batched_view<TB const> const& b, std::int64_t n,
                        char const* where) {
  q.b = reinterpret_cast<std::uint8_t const*>(b.data.data), q.b_row_stride = b.data.row_stride;
  q.b_group_stride = b.data.batch_stride;
  if (b.data.col_stride != 1 && n > 1) unsupported(where, "b", "K-major expert weights");
  q.sfb = b.scales.data, q.sfb_layout = {b.scales.row_stride, b.scales.col_stride, b.scales.batch_stride};
  q.b_scale_granularity = b_granularity(b.tile, where);
}

}  // namespace detail

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
  q.m = detail::device_extent(p.m(), where, "M"), q.n = detail::device_extent(p.n(), where, "N");
  q.k = detail::device_extent(p.k(), where, "K"), q.groups = 1;
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
  q.m = detail::device_extent(p.m(), where, "M"), q.n = detail::device_extent(p.n(), where, "N");
  q.k = detail::device_extent(p.k(), where, "K"),
  q.groups = detail::device_extent(p.groups(), where, "groups");
  q.a = reinterpret_cast<std::uint8_t const*>(p.a.data.data), q.a_row_stride = p.a.data.row_stride;
  q.sfa = p.a.scales.data, q.sfa_layout = {p.a.scales.row_stride, p.a.scales.col_stride, 0};
  detail::set_expert_weights(q, p.b, p.n(), where);
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
  q.m = detail::device_extent(p.max_m(), where, "max_m"), q.n = detail::device_extent(p.n(), where, "N");
  q.k = detail::device_extent(p.k(), where, "K"),
  q.groups = detail::device_extent(p.groups(), where, "groups");
  q.a = reinterpret_cast<std::uint8_t const*>(p.a.data.data), q.a_row_stride = p.a.data.row_stride;
  q.a_group_stride = p.a.data.batch_stride;
  q.sfa = p.a.scales.data,
  q.sfa_layout = {p.a.scales.row_stride, p.a.scales.col_stride, p.a.scales.batch_stride};
  detail::set_expert_weights(q, p.b, p.n(), where);
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
  detail::device_extent(p.k_total(), where, "K (sum of k_sizes)");  // before the int prefix sums
  k_offsets.assign(static_cast<std::size_t>(p.groups()) + 1, 0);
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    require(p.k_sizes[g] % 128 == 0, where, "k_sizes", "multiples of 128 on the device path",
            "k_sizes[" + std::to_string(g) + "] = " + std::to_string(p.k_sizes[g]));
    k_offsets[g + 1] = k_offsets[g] + p.k_sizes[g];
  }
  kernel_params q;
  q.layout = layout_kind::k_grouped;
  q.m = detail::device_extent(p.m(), where, "M"), q.n = detail::device_extent(p.n(), where, "N");
  q.k = detail::device_extent(p.k_total(), where, "K (sum of k_sizes)");
  q.groups = detail::device_extent(p.groups(), where, "groups");
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
