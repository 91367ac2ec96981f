// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella + entry points of the block-scaled FP8 GEMM: fp8_gemm (dense), grouped_gemm (contiguous,
// masked, K-grouped) and workspace_bytes, one function template per op whose first parameter is an
// `executor`; each forwards to gemm::dispatch<Exec> (host: gemm/host/gemm.hpp, included here;
// cuda_executor: gemm/cuda/gemm.hpp). D is overwritten (or C + product when C is given); inputs are
// validated before any output is written; the same calls and argument types on every executor.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>

#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/gemm/host/gemm.hpp"
#include "fp8moe/gemm/problem.hpp"
#include "fp8moe/gemm/reference.hpp"

namespace fp8moe::gemm {

namespace detail {
/// The element types every executor accepts; false after a readable static_assert.
template <class TA, class TB, class TD>
constexpr bool check_element_types() {
  static_assert(float8_type<TA> && float8_type<TB>,
                "fp8moe::gemm: A and B must be float8_e4m3_t or float8_e5m2_t");
  static_assert(output_element<TD>,
                "fp8moe::gemm: D must be float or bfloat16_t (FP8 output is not supported)");
  return float8_type<TA> && float8_type<TB> && output_element<TD>;
}

/// True when Exec has a gemm path in this translation unit; false after a readable static_assert.
template <class Exec>
constexpr bool check_dispatch() {
  static_assert(has_dispatch<dispatch<executor_t<Exec>>>,
                "fp8moe::gemm: this executor has no gemm path here; for cuda_executor include "
                "\"fp8moe/gemm/cuda/gemm.hpp\" (nvcc)");
  return has_dispatch<dispatch<executor_t<Exec>>>;
}
}  // namespace detail

/// Bytes of workspace the caller-workspace overloads need on `exec` for any problem run with these
/// options (host: packing buffers per thread; cuda_executor: 0, the device path takes none).
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, gemm_options const& o = {}) {
  if constexpr (detail::check_dispatch<Exec>()) {
    return dispatch<executor_t<Exec>>::workspace_bytes(exec, o);
  } else {
    return 0;
  }
}

// ---- dense --------------------------------------------------------------------------------------

/// D (M,N) = [C +] A (M,K) * B (N,K)^T with FP32 promotion every options.promotion_k, in the
/// caller's workspace of at least workspace_bytes(exec, o) bytes (host memory).
template <executor Exec, class TA, class TB, class TD>
void fp8_gemm(Exec const& exec, dense<TA, TB, TD> const& p, gemm_options const& o,
              std::span<std::byte> workspace) {
  if constexpr (detail::check_element_types<TA, TB, TD>() && detail::check_dispatch<Exec>()) {
    dispatch<executor_t<Exec>>::fp8_gemm(exec, p, o, workspace);
  }
}

/// As above, with a workspace the executor provides (allocated on the host; none on the device).
template <executor Exec, class TA, class TB, class TD>
void fp8_gemm(Exec const& exec, dense<TA, TB, TD> const& p, gemm_options const& o = {}) {
  if constexpr (detail::check_element_types<TA, TB, TD>() && detail::check_dispatch<Exec>()) {
    dispatch<executor_t<Exec>>::with_workspace(
        exec, o, [&](std::span<std::byte> ws) { dispatch<executor_t<Exec>>::fp8_gemm(exec, p, o, ws); });
  }
}

/// Convenience: D = A * B^T. Operand views may be const or not (quantized_matrix::view()).
template <executor Exec, class TA, class TB, class TD>
void fp8_gemm(Exec const& exec, quantized_matrix_view<TA> a, quantized_matrix_view<TB> b, matrix_view<TD> d,
              gemm_options const& o = {}) {
  using A = std::remove_const_t<TA>;
  using B = std::remove_const_t<TB>;
  fp8_gemm(exec, dense<A, B, TD>{quantized_matrix_view<A const>(a), quantized_matrix_view<B const>(b), d, {}},
           o);
}

/// Convenience: D = C + A * B^T.
template <executor Exec, class TA, class TB, class TD>
void fp8_gemm(Exec const& exec, quantized_matrix_view<TA> a, quantized_matrix_view<TB> b, matrix_view<TD> d,
              matrix_view<float const> c, gemm_options const& o = {}) {
  using A = std::remove_const_t<TA>;
  using B = std::remove_const_t<TB>;
  fp8_gemm(exec, dense<A, B, TD>{quantized_matrix_view<A const>(a), quantized_matrix_view<B const>(b), d, c},
           o);
}

// ---- grouped ------------------------------------------------------------------------------------

/// Grouped contiguous (MoE training / prefill). Padding rows (-1): D = C or 0.
template <executor Exec, class TA, class TB, class TD>
void grouped_gemm(Exec const& exec, grouped_contiguous<TA, TB, TD> const& p, gemm_options const& o,
                  std::span<std::byte> workspace) {
  if constexpr (detail::check_element_types<TA, TB, TD>() && detail::check_dispatch<Exec>()) {
    dispatch<executor_t<Exec>>::grouped_gemm(exec, p, o, workspace);
  }
}

/// Grouped masked (decoding). Rows >= masked_m[g] are not written.
template <executor Exec, class TA, class TB, class TD>
void grouped_gemm(Exec const& exec, grouped_masked<TA, TB, TD> const& p, gemm_options const& o,
                  std::span<std::byte> workspace) {
  if constexpr (detail::check_element_types<TA, TB, TD>() && detail::check_dispatch<Exec>()) {
    dispatch<executor_t<Exec>>::grouped_gemm(exec, p, o, workspace);
  }
}

/// K-grouped (MoE weight gradient): D_g = [C_g +] A_g * B_g^T, FP32.
template <executor Exec, class TA, class TB>
void grouped_gemm(Exec const& exec, k_grouped<TA, TB> const& p, gemm_options const& o,
                  std::span<std::byte> workspace) {
  if constexpr (detail::check_element_types<TA, TB, float>() && detail::check_dispatch<Exec>()) {
    dispatch<executor_t<Exec>>::grouped_gemm(exec, p, o, workspace);
  }
}

/// The three grouped layouts with a workspace the executor provides.
template <executor Exec, grouped_layout Problem>
void grouped_gemm(Exec const& exec, Problem const& p, gemm_options const& o = {}) {
  if constexpr (detail::check_dispatch<Exec>()) {
    dispatch<executor_t<Exec>>::with_workspace(
        exec, o, [&](std::span<std::byte> ws) { grouped_gemm(exec, p, o, ws); });
  }
}

}  // namespace fp8moe::gemm
