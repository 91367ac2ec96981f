// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::dispatch<cuda_executor> (nvcc only): matmul through cuBLASLt (row-major D^T = B^T A^T in its
// column-major terms, FP32 compute, the caller's workspace as cuBLASLt's), grid-stride element-wise
// kernels sharing the per-element math of nn/activation.hpp, and the K-major FP8 weight the device
// dgrad GEMM needs (transposed into the workspace). Everything is enqueued on exec.stream; only
// copy_to_host synchronizes it.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "fp8moe/core/cuda/device_buffer.hpp"
#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/gemm/problem.hpp"
#include "fp8moe/nn/activation.hpp"
#include "fp8moe/nn/dispatch.hpp"
#include "fp8moe/nn/workspace.hpp"

namespace fp8moe::nn {

namespace cuda_detail {

inline void check_cublas(cublasStatus_t s, char const* call) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw error(errc::cuda, fp8moe::detail::concat(call, " failed: cublasStatus ", static_cast<int>(s)));
}
#define FP8MOE_CUBLAS_CHECK(call) ::fp8moe::nn::cuda_detail::check_cublas((call), #call)

/// One cuBLASLt handle per host thread, created on first use (never inside a stream capture's hot loop).
inline cublasLtHandle_t lt_handle() {
  struct holder {
    cublasLtHandle_t h = nullptr;
    holder() { FP8MOE_CUBLAS_CHECK(cublasLtCreate(&h)); }
    ~holder() { cublasLtDestroy(h); }
  };
  thread_local holder const h;
  return h.h;
}

/// cuBLASLt's bytes of the workspace (the NVIDIA-recommended size for Hopper).
inline constexpr std::size_t lt_workspace_bytes = std::size_t{32} << 20;

template <class T>
constexpr cudaDataType_t data_type() {
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}

/// The column-major description of the transpose of a row-/column-major view X (R,C): X^T (C,R).
struct lt_operand {
  cublasOperation_t op;
  std::uint64_t rows, cols;
  std::int64_t ld;
};
template <class T>
lt_operand transposed_operand(matrix_view<T> const& x) {
  auto const R = static_cast<std::uint64_t>(x.rows), C = static_cast<std::uint64_t>(x.cols);
  if (x.col_stride == 1 && (x.rows <= 1 || x.row_stride >= x.cols))  // X row-major = X^T column-major
    return {CUBLAS_OP_N, C, R, std::max<std::int64_t>({x.rows <= 1 ? x.cols : x.row_stride, 1})};
  // X column-major (ld col_stride): X^T = op T of it
  return {CUBLAS_OP_T, R, C, std::max<std::int64_t>({x.cols <= 1 ? x.rows : x.col_stride, 1})};
}

struct lt_layout {
  cublasLtMatrixLayout_t h = nullptr;
  lt_layout(cudaDataType_t t, std::uint64_t rows, std::uint64_t cols, std::int64_t ld) {
    FP8MOE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&h, t, rows, cols, ld));
  }
  ~lt_layout() { cublasLtMatrixLayoutDestroy(h); }
  lt_layout(lt_layout const&) = delete;
  lt_layout& operator=(lt_layout const&) = delete;
};

template <class TD>
__global__ void scale_kernel(matrix_view<TD> d, float beta) {
  std::int64_t const n = d.rows * d.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    TD& v = d(i / d.cols, i % d.cols);
    v = static_cast<TD>(beta == 0.0f ? 0.0f : beta * static_cast<float>(v));
  }
}

template <class Out>
__global__ void swiglu_kernel(matrix_view<float const> h, matrix_view<Out> act) {
  std::int64_t const n = act.rows * act.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const r = i / act.cols, c = i % act.cols;
    act(r, c) = static_cast<Out>(swiglu(h(r, c), h(r, act.cols + c)));
  }
}

__global__ void swiglu_backward_kernel(matrix_view<float const> h, matrix_view<float const> dact,
                                       matrix_view<float> dh) {
  std::int64_t const n = dact.rows * dact.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const r = i / dact.cols, c = i % dact.cols;
    swiglu_backward(h(r, c), h(r, dact.cols + c), dact(r, c), dh(r, c), dh(r, dact.cols + c));
  }
}

template <class Out>
__global__ void add_kernel(matrix_view<float const> a, matrix_view<float const> b, matrix_view<Out> out) {
  std::int64_t const n = out.rows * out.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const r = i / out.cols, c = i % out.cols;
    out(r, c) = static_cast<Out>(a(r, c) + b(r, c));
  }
}

__global__ void zero_kernel(batched_matrix_view<float> v) {
  std::int64_t const n = v.batches * v.rows * v.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    v(i / (v.rows * v.cols), (i / v.cols) % v.rows, i % v.cols) = 0.0f;
}

/// dst (B, C, R) = src (B, R, C) transposed, element by element (FP8 data and scales alike).
template <class T>
__global__ void transpose_kernel(batched_matrix_view<T const> src, batched_matrix_view<T> dst) {
  std::int64_t const n = src.batches * src.rows * src.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const c = i % src.cols, r = (i / src.cols) % src.rows, b = i / (src.cols * src.rows);
    dst(b, c, r) = src(b, r, c);
  }
}

inline unsigned grid_for(std::int64_t n) {
  return static_cast<unsigned>(
      std::min<std::int64_t>(std::max<std::int64_t>(ceil_div<std::int64_t>(n, 256), 1), 65535));
}

template <class T>
batched_matrix_view<T> as_batched(matrix_view<T> const& m) {
  return {m.data, 1, m.rows, m.cols, m.rows * m.row_stride, m.row_stride, m.col_stride};
}

/// Exact transpose of FP8 weights with square blocks into row-major storage from `arena`.
template <class W>
gemm::quantized_batched_view<W const> transpose_weight(cudaStream_t s,
                                                       gemm::quantized_batched_view<W const> w,
                                                       workspace_arena& arena) {
  require(w.tile.rows == w.tile.cols, "fp8moe::nn::transposed_weight", "w.tile",
          "square blocks (128x128: the transpose is then exact)");
  std::int64_t const B = w.batches(), R = w.rows(), C = w.cols(), sr = w.scales.rows, sc = w.scales.cols;
  W* d = arena.take<W>(B * R * C);
  float* sp = arena.take<float>(B * sr * sc);
  gemm::quantized_batched_view<W> t{{d, B, C, R, C * R, R, 1}, {sp, B, sc, sr, sc * sr, sr, 1}, w.tile};
  if (arena.counting()) return t;
  if (B * R * C > 0) {
    transpose_kernel<W><<<grid_for(B * R * C), 256, 0, s>>>(w.data, t.data);
    FP8MOE_CUDA_CHECK_LAUNCH();
    transpose_kernel<float><<<grid_for(B * sr * sc), 256, 0, s>>>(w.scales, t.scales);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }
  return t;
}

}  // namespace cuda_detail

template <>
struct dispatch<cuda_executor> {
  /// Whether the FP8 GEMM of this executor takes E5M2 operands.
  static constexpr bool fp8_e5m2 = false;

  // ---- matmul
  static std::size_t matmul_workspace_bytes(cuda_executor const&, matmul_shape) {
    return cuda_detail::lt_workspace_bytes;
  }
  template <class TI, class TD>
  static void matmul(cuda_executor const& exec, matrix_view<TI const> a, matrix_view<TI const> b,
                     matrix_view<TD> d, matmul_options const& o, std::span<std::byte> ws) {
    using namespace cuda_detail;
    if (d.rows == 0 || d.cols == 0) return;
    if (a.cols == 0) {  // D = beta * D: cuBLASLt needs K >= 1
      scale_kernel<TD><<<grid_for(d.rows * d.cols), 256, 0, exec.stream>>>(d, o.beta);
      FP8MOE_CUDA_CHECK_LAUNCH();
      return;
    }
    // row-major D (M,N) is column-major D^T (N,M) = B^T (N,K) * A^T (K,M)
    lt_operand const bt = transposed_operand(b), at = transposed_operand(a);
    cublasLtMatmulDesc_t op = nullptr;
    FP8MOE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    struct desc_guard {
      cublasLtMatmulDesc_t d;
      ~desc_guard() { cublasLtMatmulDescDestroy(d); }
    } const guard{op};
    FP8MOE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &bt.op, sizeof(bt.op)));
    FP8MOE_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &at.op, sizeof(at.op)));
    lt_layout const la(data_type<TI>(), bt.rows, bt.cols, bt.ld);
    lt_layout const lb(data_type<TI>(), at.rows, at.cols, at.ld);
    lt_layout const ld(data_type<TD>(), static_cast<std::uint64_t>(d.cols),
                       static_cast<std::uint64_t>(d.rows),
                       std::max<std::int64_t>(d.rows <= 1 ? d.cols : d.row_stride, 1));
    cublasLtMatmulPreference_t pref = nullptr;
    FP8MOE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    struct pref_guard {
      cublasLtMatmulPreference_t p;
      ~pref_guard() { cublasLtMatmulPreferenceDestroy(p); }
    } const pguard{pref};
    std::size_t const bytes = ws.size();
    FP8MOE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                             &bytes, sizeof(bytes)));
    cublasLtMatmulHeuristicResult_t heur{};
    int found = 0;
    FP8MOE_CUBLAS_CHECK(
        cublasLtMatmulAlgoGetHeuristic(lt_handle(), op, la.h, lb.h, ld.h, ld.h, pref, 1, &heur, &found));
    require(found > 0, "fp8moe::nn::matmul", "a, b, d", "a layout cuBLASLt has an algorithm for",
            "none found");
    FP8MOE_CUBLAS_CHECK(cublasLtMatmul(lt_handle(), op, &o.alpha, b.data, la.h, a.data, lb.h, &o.beta, d.data,
                                       ld.h, d.data, ld.h, &heur.algo, ws.data(), bytes, exec.stream));
  }

  // ---- element-wise
  template <class Out>
  static void swiglu(cuda_executor const& exec, matrix_view<float const> h, matrix_view<Out> act) {
    if (act.empty()) return;
    cuda_detail::swiglu_kernel<Out><<<cuda_detail::grid_for(act.size()), 256, 0, exec.stream>>>(h, act);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }
  static void swiglu_backward(cuda_executor const& exec, matrix_view<float const> h,
                              matrix_view<float const> dact, matrix_view<float> dh) {
    if (dact.empty()) return;
    cuda_detail::swiglu_backward_kernel<<<cuda_detail::grid_for(dact.size()), 256, 0, exec.stream>>>(h, dact,
                                                                                                     dh);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }
  template <class Out>
  static void add(cuda_executor const& exec, matrix_view<float const> a, matrix_view<float const> b,
                  matrix_view<Out> out) {
    if (out.empty()) return;
    cuda_detail::add_kernel<Out><<<cuda_detail::grid_for(out.size()), 256, 0, exec.stream>>>(a, b, out);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }
  static void fill_zero(cuda_executor const& exec, batched_matrix_view<float> v) {
    std::int64_t const n = v.batches * v.rows * v.cols;
    if (n == 0) return;
    cuda_detail::zero_kernel<<<cuda_detail::grid_for(n), 256, 0, exec.stream>>>(v);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }

  // ---- FP8 weights as the dgrad GEMM's B operand: the device GEMM reads K-major B only, so W (R,C)
  // is transposed into (C,R) row-major storage carved from the workspace (exact for square blocks).
  template <class W>
  static scaling::quantized_matrix_view<W const> transposed_weight(cuda_executor const& exec,
                                                                   scaling::quantized_matrix_view<W const> w,
                                                                   workspace_arena& arena) {
    gemm::quantized_batched_view<W const> const b{cuda_detail::as_batched(w.data),
                                                  cuda_detail::as_batched(w.scales), w.tile};
    auto const t = cuda_detail::transpose_weight<W>(exec.stream, b, arena);
    return t[0];
  }
  template <class W>
  static gemm::quantized_batched_view<W const> transposed_weight(cuda_executor const& exec,
                                                                 gemm::quantized_batched_view<W const> w,
                                                                 workspace_arena& arena) {
    return cuda_detail::transpose_weight<W>(exec.stream, w, arena);
  }

  /// dst (C,R) = src (R,C) transposed, FP8 data and scales alike (exact for square blocks).
  template <class W>
  static void transpose_into(cuda_executor const& exec, scaling::quantized_matrix_view<W const> src,
                             scaling::quantized_matrix_view<W> dst) {
    using namespace cuda_detail;
    if (src.data.size() > 0) {
      transpose_kernel<W>
          <<<grid_for(src.data.size()), 256, 0, exec.stream>>>(as_batched(src.data), as_batched(dst.data));
      FP8MOE_CUDA_CHECK_LAUNCH();
      transpose_kernel<float><<<grid_for(src.scales.size()), 256, 0, exec.stream>>>(as_batched(src.scales),
                                                                                    as_batched(dst.scales));
      FP8MOE_CUDA_CHECK_LAUNCH();
    }
  }

  // ---- memory
  /// n int32 values from device memory into host memory; synchronizes exec.stream.
  static void copy_to_host(cuda_executor const& exec, std::int32_t const* src, std::int64_t n,
                           std::int32_t* dst) {
    if (n <= 0) return;
    FP8MOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * sizeof(std::int32_t),
                                      cudaMemcpyDeviceToHost, exec.stream));
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(exec.stream));
  }
  /// Stream-ordered device scratch on exec.stream.
  static device_buffer<std::byte> allocate(cuda_executor const& exec, std::size_t bytes) {
    return device_buffer<std::byte>(bytes, exec);
  }
};

}  // namespace fp8moe::nn
