// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella + entry points of the block-scaled FP8 GEMM: fp8_gemm (dense) and grouped_gemm
// (contiguous, masked, K-grouped), executor first. Host overloads here (OpenMP, caller workspace or an
// allocating convenience); cuda_executor overloads live in gemm/cuda/. D is overwritten (or
// C + product when C is given); inputs are validated before any output is written.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "fp8moe/core/executor.hpp"
#include "fp8moe/gemm/host_gemm.hpp"
#include "fp8moe/gemm/problem.hpp"
#include "fp8moe/gemm/reference.hpp"

namespace fp8moe::gemm {

/// Workspace bytes the host path needs for any problem run with these options.
inline std::size_t workspace_bytes(host_executor const& exec, gemm_options const& o = {}) {
  return host::workspace_bytes(exec.num_threads(), o.promotion_k);
}

namespace detail {
/// The element types every host entry point accepts (compile-time diagnostics).
template <class TA, class TB, class TD>
constexpr void check_element_types() {
  static_assert(float8_type<TA> && float8_type<TB>,
                "fp8moe::gemm: A and B must be float8_e4m3_t or float8_e5m2_t");
  static_assert(output_element<TD>,
                "fp8moe::gemm: D must be float or bfloat16_t (FP8 output is not supported)");
}

template <class T>
std::span<std::byte> alloc_workspace(std::vector<std::byte>& buf, host_executor const& exec,
                                     gemm_options const& o) {
  buf.resize(workspace_bytes(exec, o));
  return {buf.data(), buf.size()};
}
}  // namespace detail

// ---- dense --------------------------------------------------------------------------------------

/// D (M,N) = [C +] A (M,K) * B (N,K)^T with FP32 promotion every options.promotion_k (host).
template <class TA, class TB, class TD>
void fp8_gemm(host_executor const& exec, dense<TA, TB, TD> const& p, gemm_options const& o,
              std::span<std::byte> workspace) {
  detail::check_element_types<TA, TB, TD>();
  validate(p, o);
  auto const jobs = host::make_jobs(p);
  host::run_jobs<TA, TB, TD>(exec, jobs, o, workspace);
}

/// As above, allocating the workspace.
template <class TA, class TB, class TD>
void fp8_gemm(host_executor const& exec, dense<TA, TB, TD> const& p, gemm_options const& o = {}) {
  std::vector<std::byte> buf;
  fp8_gemm(exec, p, o, detail::alloc_workspace<TD>(buf, exec, o));
}

/// Convenience: D = A * B^T. Operand views may be const or not (quantized_matrix::view()).
template <class TA, class TB, class TD>
void fp8_gemm(host_executor const& exec, quantized_matrix_view<TA> a, quantized_matrix_view<TB> b,
              matrix_view<TD> d, gemm_options const& o = {}) {
  using A = std::remove_const_t<TA>;
  using B = std::remove_const_t<TB>;
  fp8_gemm(exec, dense<A, B, TD>{quantized_matrix_view<A const>(a), quantized_matrix_view<B const>(b), d, {}},
           o);
}

/// Convenience: D = C + A * B^T.
template <class TA, class TB, class TD>
void fp8_gemm(host_executor const& exec, quantized_matrix_view<TA> a, quantized_matrix_view<TB> b,
              matrix_view<TD> d, matrix_view<float const> c, gemm_options const& o = {}) {
  using A = std::remove_const_t<TA>;
  using B = std::remove_const_t<TB>;
  fp8_gemm(exec, dense<A, B, TD>{quantized_matrix_view<A const>(a), quantized_matrix_view<B const>(b), d, c},
           o);
}

// ---- grouped ------------------------------------------------------------------------------------

/// Grouped contiguous (MoE training / prefill). Padding rows (-1): D = C or 0.
template <class TA, class TB, class TD>
void grouped_gemm(host_executor const& exec, grouped_contiguous<TA, TB, TD> const& p, gemm_options const& o,
                  std::span<std::byte> workspace) {
  detail::check_element_types<TA, TB, TD>();
  validate(p, o);
  check_indices(p);
  std::vector<std::int64_t> padding;
  auto const jobs = host::make_jobs(p, padding);
  host::run_jobs<TA, TB, TD>(exec, jobs, o, workspace);
  host::fill_rows(exec, p.d, p.c, padding);
}

/// Grouped masked (decoding). Rows >= masked_m[g] are not written.
template <class TA, class TB, class TD>
void grouped_gemm(host_executor const& exec, grouped_masked<TA, TB, TD> const& p, gemm_options const& o,
                  std::span<std::byte> workspace) {
  detail::check_element_types<TA, TB, TD>();
  validate(p, o);
  check_indices(p);
  auto const jobs = host::make_jobs(p);
  host::run_jobs<TA, TB, TD>(exec, jobs, o, workspace);
}

/// K-grouped (MoE weight gradient): D_g = [C_g +] A_g * B_g^T, FP32.
template <class TA, class TB>
void grouped_gemm(host_executor const& exec, k_grouped<TA, TB> const& p, gemm_options const& o,
                  std::span<std::byte> workspace) {
  detail::check_element_types<TA, TB, float>();
  validate(p, o);
  auto const jobs = host::make_jobs(p);
  host::run_jobs<TA, TB, float>(exec, jobs, o, workspace);
}

/// Allocating overloads of the three grouped layouts.
template <class Problem>
requires requires(Problem const& p) {
  validate(p);
}
void grouped_gemm(host_executor const& exec, Problem const& p, gemm_options const& o = {}) {
  std::vector<std::byte> buf;
  grouped_gemm(exec, p, o, detail::alloc_workspace<void>(buf, exec, o));
}

// ---- device executors without their overloads ----------------------------------------------------

/// Reached only when a device executor is passed but gemm/cuda/gemm.hpp was not included.
template <class Exec, class Problem, class... Rest>
requires device_executor_like<Exec>
void fp8_gemm(Exec const&, Problem const&, Rest&&...) {
  static_assert(fp8moe::detail::dependent_false<Exec>,
                "fp8moe::gemm::fp8_gemm: include \"fp8moe/gemm/cuda/gemm.hpp\" (nvcc) for cuda_executor");
}
template <class Exec, class Problem, class... Rest>
requires device_executor_like<Exec>
void grouped_gemm(Exec const&, Problem const&, Rest&&...) {
  static_assert(fp8moe::detail::dependent_false<Exec>,
                "fp8moe::gemm::grouped_gemm: include \"fp8moe/gemm/cuda/gemm.hpp\" (nvcc) for cuda_executor");
}

}  // namespace fp8moe::gemm
