// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::dispatch<host_executor>: the host path of every nn primitive (matmul, SwiGLU, add, the FP8
// weight in the layout the dgrad GEMM reads, scratch allocation). OpenMP over rows where it pays;
// outputs are overwritten; nothing here allocates except allocate().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/gemm/problem.hpp"
#include "fp8moe/nn/activation.hpp"
#include "fp8moe/nn/dispatch.hpp"
#include "fp8moe/nn/host/elementwise.hpp"
#include "fp8moe/nn/host/matmul.hpp"
#include "fp8moe/nn/workspace.hpp"

#if FP8MOE_HAS_OPENMP
#include <omp.h>
#endif

namespace fp8moe::nn {

namespace host {

/// act rows [r0, r1) = g sigmoid(g) u for g = h (r, i), u = h (r, I + i), sigmoid(g) = 1 / (1 +
/// exp_range_reduced(-g)).
template <class Out>
FP8MOE_HOST_SIMD_CLONES void swiglu_rows(matrix_view<float const> h, matrix_view<Out> act, std::int64_t r0,
                                         std::int64_t r1) {
  std::int64_t const I = act.cols;
  auto const value = [](float g, float u) { return g * (1.0f / (1.0f + exp_range_reduced(-g))) * u; };
  for (std::int64_t r = r0; r < r1; ++r) {
    if (h.col_stride == 1 && act.col_stride == 1) {
      float const* hr = h.row(r);
      Out* ar = act.row(r);
      for (std::int64_t i = 0; i < I; ++i) ar[i] = static_cast<Out>(value(hr[i], hr[I + i]));
    } else {
      for (std::int64_t i = 0; i < I; ++i) act(r, i) = static_cast<Out>(value(h(r, i), h(r, I + i)));
    }
  }
}

}  // namespace host

/// Owning host scratch returned by dispatch<host_executor>::allocate.
struct host_scratch {
  std::vector<std::byte> bytes;
  std::span<std::byte> span() & { return {bytes.data(), bytes.size()}; }
};

template <>
struct dispatch<host_executor> {
  /// Whether the FP8 GEMM of this executor takes E5M2 operands.
  static constexpr bool fp8_e5m2 = true;

  // ---- matmul
  /// The portable kernel's scratch; with FP8MOE_HAVE_BLAS at least room for the widened bf16 operands.
  static std::size_t matmul_workspace_bytes(host_executor const& exec, matmul_shape s) {
    std::int64_t floats = host::scratch_for(s, exec.num_threads()).floats();
    if constexpr (host::has_blas) floats = std::max(floats, host::widened_floats(s));
    return static_cast<std::size_t>(floats) * sizeof(float);
  }
  template <class TI, class TD>
  static void matmul(host_executor const& exec, matrix_view<TI const> a, matrix_view<TI const> b,
                     matrix_view<TD> d, matmul_options const& o, std::span<std::byte> ws) {
#if defined(FP8MOE_HAVE_BLAS) && FP8MOE_HAVE_BLAS
    if constexpr (std::is_same_v<TI, float> && std::is_same_v<TD, float>) {
      (void)exec, (void)ws;
      host::matmul_blas(a, b, d, o);
      return;
    } else {  // bf16: sgemm over the operands widened to float (exact) in ws; a bf16 D rounded once
      if (d.rows == 0 || d.cols == 0) return;
      float* buf = reinterpret_cast<float*>(ws.data());
      auto const af = host::widen_into(exec, a, buf);
      auto const bf = host::widen_into(exec, b, buf + a.rows * a.cols);
      float* const dbuf = buf + a.rows * a.cols + b.rows * b.cols;
      if constexpr (std::is_same_v<TD, float>) {
        host::matmul_blas(af, bf, d, o);
      } else {
        matrix_view<float> const df{dbuf, d.rows, d.cols, d.cols, 1};
        if (o.beta != 0.0f) host::widen_into(exec, matrix_view<TD const>(d), dbuf);
        host::matmul_blas(af, bf, df, o);
        for (std::int64_t r = 0; r < d.rows; ++r)
          for (std::int64_t c = 0; c < d.cols; ++c) d(r, c) = static_cast<TD>(df(r, c));
      }
      return;
    }
#endif
    host::matmul_blocked(exec, a, b, d, o, reinterpret_cast<float*>(ws.data()));
  }

  // ---- element-wise
  /// act (R,I) = swiglu(h (R,0:I), h (R,I:2I)), the sigmoid's exp by host::exp_range_reduced
  /// (vectorised; within 5e-7 relative of nn::swiglu); one thread below 32K elements.
  template <class Out>
  static void swiglu(host_executor const& exec, matrix_view<float const> h, matrix_view<Out> act) {
    int const threads = host::elementwise_threads(exec, act.rows * act.cols);
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(threads)
    {
      std::int64_t const n = omp_get_num_threads(), me = omp_get_thread_num();
      host::swiglu_rows(h, act, act.rows * me / n, act.rows * (me + 1) / n);
    }
#else
    host::swiglu_rows(h, act, 0, act.rows);
#endif
    (void)threads;
  }
  /// dh (R,2I) = the gradient of swiglu at h (R,2I) given dact (R,I).
  static void swiglu_backward(host_executor const& exec, matrix_view<float const> h,
                              matrix_view<float const> dact, matrix_view<float> dh) {
    std::int64_t const I = dact.cols;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t r = 0; r < dact.rows; ++r)
      for (std::int64_t i = 0; i < I; ++i)
        nn::swiglu_backward(h(r, i), h(r, I + i), dact(r, i), dh(r, i), dh(r, I + i));
    (void)exec;
  }
  /// out = a + b (element-wise, rounded once to Out).
  template <class Out>
  static void add(host_executor const& exec, matrix_view<float const> a, matrix_view<float const> b,
                  matrix_view<Out> out) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t r = 0; r < out.rows; ++r)
      for (std::int64_t c = 0; c < out.cols; ++c) out(r, c) = static_cast<Out>(a(r, c) + b(r, c));
    (void)exec;
  }
  /// v = 0.
  static void fill_zero(host_executor const&, batched_matrix_view<float> v) {
    for (std::int64_t e = 0; e < v.batches; ++e)
      for (std::int64_t r = 0; r < v.rows; ++r)
        for (std::int64_t c = 0; c < v.cols; ++c) v(e, r, c) = 0.0f;
  }

  // ---- FP8 weights as the dgrad GEMM's B operand: W (R,C) read as W^T (C,R). The host GEMM reads
  // MN-major B, so this is a strided view of W itself (no copy, no workspace).
  template <class W>
  static scaling::quantized_matrix_view<W const> transposed_weight(host_executor const&,
                                                                   scaling::quantized_matrix_view<W const> w,
                                                                   workspace_arena&) {
    return gemm::transposed(w);
  }
  template <class W>
  static gemm::quantized_batched_view<W const> transposed_weight(host_executor const&,
                                                                 gemm::quantized_batched_view<W const> w,
                                                                 workspace_arena&) {
    auto const& d = w.data;
    auto const& s = w.scales;
    return {{d.data, d.batches, d.cols, d.rows, d.batch_stride, d.col_stride, d.row_stride},
            {s.data, s.batches, s.cols, s.rows, s.batch_stride, s.col_stride, s.row_stride},
            {w.tile.cols, w.tile.rows}};
  }

  /// dst (C,R) = src (R,C) transposed, FP8 data and scales alike (exact for square blocks).
  template <class W>
  static void transpose_into(host_executor const& exec, scaling::quantized_matrix_view<W const> src,
                             scaling::quantized_matrix_view<W> dst) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t r = 0; r < src.rows(); ++r)
      for (std::int64_t c = 0; c < src.cols(); ++c) dst.data(c, r) = src.data(r, c);
    for (std::int64_t r = 0; r < src.scales.rows; ++r)
      for (std::int64_t c = 0; c < src.scales.cols; ++c) dst.scales(c, r) = src.scales(r, c);
    (void)exec;
  }

  // ---- memory
  /// n int32 values from memory of this executor into host memory (here: a copy).
  static void copy_to_host(host_executor const&, std::int32_t const* src, std::int64_t n, std::int32_t* dst) {
    if (n > 0) std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(std::int32_t));
  }
  /// Owning scratch of `bytes` for the allocating conveniences.
  static host_scratch allocate(host_executor const&, std::size_t bytes) {
    return {std::vector<std::byte>(bytes)};
  }
};

}  // namespace fp8moe::nn
