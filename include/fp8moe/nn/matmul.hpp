// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::matmul: the BF16/FP32 GEMM for the products DeepSeek-V3 keeps out of FP8 (router gate, LM
// head, MTP projection, attention products): D (M,N) = alpha * A (M,K) * B (K,N) + beta * D, float
// accumulation. A and B: both float or both bf16, each row-major or column-major (a transposed
// view); D row-major, float (any input) or bf16 (bf16 input). Host: CBLAS sgemm for float where
// FP8MOE_HAVE_BLAS is defined, else the portable blocked kernel; CUDA: cuBLASLt (nn/cuda/dispatch.cuh).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/dispatch.hpp"
#include "fp8moe/nn/host/dispatch.hpp"
#include "fp8moe/nn/workspace.hpp"

namespace fp8moe::nn {

/// The (C,R) view of an (R,C) matrix view (no copy): pass transposed(b) for D = A * B^T.
template <class T>
constexpr FP8MOE_HOST_DEVICE matrix_view<T> transposed(matrix_view<T> const& m) {
  return {m.data, m.cols, m.rows, m.col_stride, m.row_stride};
}

namespace detail {

inline constexpr char const* matmul_where = "fp8moe::nn::matmul";

template <class T>
void check_unit_stride(matrix_view<T> const& m, char const* arg) {
  require(m.empty() || m.col_stride == 1 || m.row_stride == 1, matmul_where, arg,
          "row-major (col_stride 1) or column-major (row_stride 1)");
}

/// The checks both paths share, before anything is written.
template <class TI, class TD>
void check_matmul(matrix_view<TI const> const& a, matrix_view<TI const> const& b, matrix_view<TD> const& d,
                  matmul_options const& o) {
  constexpr char const* where = matmul_where;
  check_matrix(a, where, "a");
  check_matrix(b, where, "b");
  check_matrix(d, where, "d");
  check_unit_stride(a, "a");
  check_unit_stride(b, "b");
  require(d.empty() || d.col_stride == 1, where, "d", "row-major (col_stride 1)");
  require(b.rows == a.cols, where, "b", "(K, N) with K = a.cols = " + std::to_string(a.cols),
          fp8moe::detail::shape_string(b.rows, b.cols));
  check_shape(d, a.rows, b.cols, where, "d");
  require(std::isfinite(o.alpha) && std::isfinite(o.beta), where, "options", "finite alpha and beta");
}

template <class TA, class TB, class TD>
constexpr void check_matmul_types() {
  using A = std::remove_const_t<TA>;
  static_assert(matmul_input<A> && std::is_same_v<A, std::remove_const_t<TB>>,
                "fp8moe::nn::matmul: A and B must both be float or both be bfloat16_t");
  static_assert(
      std::is_same_v<TD, float> || (std::is_same_v<TD, bfloat16_t> && std::is_same_v<A, bfloat16_t>),
      "fp8moe::nn::matmul: D must be float, or bfloat16_t with bfloat16_t inputs (cuBLASLt's "
      "type table)");
}

}  // namespace detail

/// Workspace bytes matmul needs for this shape on this executor.
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, matmul_shape const& s) {
  static_assert(has_dispatch<dispatch<executor_t<Exec>>>,
                "fp8moe::nn::workspace_bytes: this executor has no nn path here; for cuda_executor include "
                "\"fp8moe/nn/cuda/dispatch.cuh\" (nvcc)");
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>)
    return dispatch<executor_t<Exec>>::matmul_workspace_bytes(exec, s);
  else
    return 0;
}

/// D (M,N) = alpha * A (M,K) * B (K,N) + beta * D; `workspace` holds workspace_bytes(exec, {M,N,K}).
template <executor Exec, class TA, class TB, class TD>
void matmul(Exec const& exec, matrix_view<TA> a, matrix_view<TB> b, matrix_view<TD> d,
            matmul_options const& o, std::span<std::byte> workspace) {
  static_assert(has_dispatch<dispatch<executor_t<Exec>>>,
                "fp8moe::nn::matmul: this executor has no path here; for cuda_executor include "
                "\"fp8moe/nn/cuda/dispatch.cuh\" (nvcc)");
  detail::check_matmul_types<TA, TB, TD>();
  using TI = std::remove_const_t<TA>;
  matrix_view<TI const> const ac = a, bc = b;
  detail::check_matmul(ac, bc, d, o);
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>) {
    check_workspace(workspace, workspace_bytes(exec, matmul_shape{d.rows, d.cols, ac.cols}),
                    detail::matmul_where);
    dispatch<executor_t<Exec>>::matmul(exec, ac, bc, d, o, workspace);
  }
}

/// As above, allocating the workspace (host memory, or stream-ordered device memory on exec.stream).
template <executor Exec, class TA, class TB, class TD>
void matmul(Exec const& exec, matrix_view<TA> a, matrix_view<TB> b, matrix_view<TD> d,
            matmul_options const& o = {}) {
  static_assert(has_dispatch<dispatch<executor_t<Exec>>>,
                "fp8moe::nn::matmul: this executor has no path here; for cuda_executor include "
                "\"fp8moe/nn/cuda/dispatch.cuh\" (nvcc)");
  if constexpr (has_dispatch<dispatch<executor_t<Exec>>>) {
    auto ws = dispatch<executor_t<Exec>>::allocate(
        exec, workspace_bytes(exec, matmul_shape{d.rows, d.cols, a.cols}));
    matmul(exec, a, b, d, o, ws.span());
  }
}

}  // namespace fp8moe::nn
