// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host kernels of nn::matmul: the portable blocked kernel (always built; packs MCxKC panels of A
// and KCxNC panels of B as float into per-thread scratch, 4x16 register tiles, OpenMP over the
// MCxNC tiles of D; each element of D is summed by one thread in a fixed K order, so results do not
// depend on the thread count) and, where FP8MOE_HAVE_BLAS is defined, CBLAS sgemm: float directly,
// bf16 operands widened to float (exact) in the caller's workspace first (a BF16 GEMM with FP32
// accumulation is exactly sgemm of the widened operands; a bf16 D is rounded once at the end).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/dispatch.hpp"

#if FP8MOE_HAS_OPENMP
#include <omp.h>
#endif
#if defined(FP8MOE_HAVE_BLAS) && FP8MOE_HAVE_BLAS
#include <cblas.h>
#endif

namespace fp8moe::nn::host {

/// Blocking of the portable kernel: D tiles of mc x nc, K panels of kc, mr x nr register tiles.
struct matmul_blocking {
  static constexpr std::int64_t mc = 64, nc = 256, kc = 256, mr = 4, nr = 16;
};

/// The per-thread scratch extents for one shape (tiles shrink to small problems).
struct matmul_scratch {
  std::int64_t mc = 0, nc = 0, kc = 0, threads = 0;
  constexpr std::int64_t floats_per_thread() const { return mc * kc + kc * nc + mc * nc; }
  constexpr std::int64_t floats() const { return floats_per_thread() * threads; }
};

inline matmul_scratch scratch_for(matmul_shape s, int threads) {
  using B = matmul_blocking;
  matmul_scratch r;
  r.mc = std::min(B::mc, round_up<std::int64_t>(std::max<std::int64_t>(s.m, 1), B::mr));
  r.nc = std::min(B::nc, round_up<std::int64_t>(std::max<std::int64_t>(s.n, 1), B::nr));
  r.kc = std::min(B::kc, std::max<std::int64_t>(s.k, 1));
  std::int64_t const tiles = ceil_div<std::int64_t>(s.m, B::mc) * ceil_div<std::int64_t>(s.n, B::nc);
  r.threads = std::max<std::int64_t>(1, std::min<std::int64_t>(threads, tiles));
  return r;
}

/// c (mr x nr, leading dimension ldc) += packed A panel (kb x mr) * packed B panel (kb x nr).
inline void micro_kernel(std::int64_t kb, float const* __restrict ap, float const* __restrict bp,
                         float* __restrict c, std::int64_t ldc) {
  constexpr std::int64_t mr = matmul_blocking::mr, nr = matmul_blocking::nr;
  float acc[mr][nr] = {};
  for (std::int64_t k = 0; k < kb; ++k) {
    float const* b = bp + k * nr;
    for (std::int64_t i = 0; i < mr; ++i) {
      float const a = ap[k * mr + i];
      for (std::int64_t j = 0; j < nr; ++j) acc[i][j] += a * b[j];
    }
  }
  for (std::int64_t i = 0; i < mr; ++i)
    for (std::int64_t j = 0; j < nr; ++j) c[i * ldc + j] += acc[i][j];
}

/// D (M,N) = alpha * A (M,K) * B (K,N) + beta * D with float accumulation; `scratch` holds
/// scratch_for(shape, threads).floats() floats. D is read only when beta != 0.
template <class TA, class TB, class TD>
void matmul_blocked(host_executor const& exec, matrix_view<TA const> a, matrix_view<TB const> b,
                    matrix_view<TD> d, matmul_options const& o, float* scratch) {
  using B = matmul_blocking;
  std::int64_t const M = d.rows, N = d.cols, K = a.cols;
  if (M == 0 || N == 0) return;
  matmul_scratch const sc = scratch_for({M, N, K}, exec.num_threads());
  std::int64_t const tiles_n = ceil_div<std::int64_t>(N, B::nc);
  std::int64_t const tiles = ceil_div<std::int64_t>(M, B::mc) * tiles_n;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(static_cast <int>(sc.threads)) schedule(dynamic)
#endif
  for (std::int64_t t = 0; t < tiles; ++t) {
#if FP8MOE_HAS_OPENMP
    float* ws = scratch + sc.floats_per_thread() * omp_get_thread_num();
#else
    float* ws = scratch;
#endif
    float* ap = ws;
    float* bp = ap + sc.mc * sc.kc;
    float* c = bp + sc.kc * sc.nc;
    std::int64_t const m0 = (t / tiles_n) * B::mc, n0 = (t % tiles_n) * B::nc;
    std::int64_t const mb = std::min(B::mc, M - m0), nb = std::min(B::nc, N - n0);
    std::int64_t const mp = round_up(mb, B::mr), np = round_up(nb, B::nr);
    std::fill_n(c, sc.mc * sc.nc, 0.0f);
    for (std::int64_t k0 = 0; k0 < K; k0 += B::kc) {
      std::int64_t const kb = std::min(B::kc, K - k0);
      for (std::int64_t i = 0; i < mp; ++i) {  // A panels: ap[(i/mr)*kb*mr + k*mr + i%mr]
        float* dst = ap + (i / B::mr) * kb * B::mr + i % B::mr;
        if (i < mb) {
          for (std::int64_t k = 0; k < kb; ++k) dst[k * B::mr] = static_cast<float>(a(m0 + i, k0 + k));
        } else {
          for (std::int64_t k = 0; k < kb; ++k) dst[k * B::mr] = 0.0f;
        }
      }
      for (std::int64_t k = 0; k < kb; ++k) {  // B panels: bp[(j/nr)*kb*nr + k*nr + j%nr]
        for (std::int64_t j = 0; j < np; ++j)
          bp[(j / B::nr) * kb * B::nr + k * B::nr + j % B::nr] =
              j < nb ? static_cast<float>(b(k0 + k, n0 + j)) : 0.0f;
      }
      for (std::int64_t i = 0; i < mp; i += B::mr)
        for (std::int64_t j = 0; j < np; j += B::nr)
          micro_kernel(kb, ap + i * kb, bp + j * kb, c + i * sc.nc + j, sc.nc);
    }
    for (std::int64_t i = 0; i < mb; ++i)
      for (std::int64_t j = 0; j < nb; ++j) {
        float v = o.alpha * c[i * sc.nc + j];
        if (o.beta != 0.0f) v += o.beta * static_cast<float>(d(m0 + i, n0 + j));
        d(m0 + i, n0 + j) = static_cast<TD>(v);
      }
  }
}

/// True when this build routes matmul<float, float -> float> through CBLAS sgemm.
inline constexpr bool has_blas =
#if defined(FP8MOE_HAVE_BLAS) && FP8MOE_HAVE_BLAS
    true;
#else
    false;
#endif

#if defined(FP8MOE_HAVE_BLAS) && FP8MOE_HAVE_BLAS
/// BLAS operand description of a view with one unit stride (row-major: NoTrans, else Trans).
struct blas_operand {
  CBLAS_TRANSPOSE trans;
  int ld;
};
template <class T>
blas_operand blas_layout(matrix_view<T> const& v) {
  if (v.col_stride == 1 && (v.rows <= 1 || v.row_stride >= v.cols))
    return {CblasNoTrans, static_cast<int>(std::max<std::int64_t>({v.rows <= 1 ? v.cols : v.row_stride, 1}))};
  return {CblasTrans, static_cast<int>(std::max<std::int64_t>({v.cols <= 1 ? v.rows : v.col_stride, 1}))};
}

/// D (row-major) = alpha * A * B + beta * D through cblas_sgemm (its own thread pool).
inline void matmul_blas(matrix_view<float const> a, matrix_view<float const> b, matrix_view<float> d,
                        matmul_options const& o) {
  if (d.rows == 0 || d.cols == 0) return;
  auto const la = blas_layout(a), lb = blas_layout(b);
  cblas_sgemm(CblasRowMajor, la.trans, lb.trans, static_cast<int>(d.rows), static_cast<int>(d.cols),
              static_cast<int>(a.cols), o.alpha, a.data, la.ld, b.data, lb.ld, o.beta, d.data,
              static_cast<int>(std::max<std::int64_t>(d.rows <= 1 ? d.cols : d.row_stride, 1)));
}
#endif

/// Floats of workspace the BLAS path of a bf16 matmul needs: A, B and D widened to float.
constexpr std::int64_t widened_floats(matmul_shape s) {
  return s.m * s.k + s.k * s.n + s.m * s.n;
}

/// v (R,C) widened to float into buf (R*C floats), keeping its orientation: row-major stays
/// row-major (ld C), column-major stays column-major (ld R). Exact for bf16 and float.
template <class T>
matrix_view<float> widen_into(host_executor const& exec, matrix_view<T const> v, float* buf) {
  bool const row_major = v.col_stride == 1;
  std::int64_t const outer = row_major ? v.rows : v.cols, inner = row_major ? v.cols : v.rows;
  std::int64_t const so = row_major ? v.row_stride : v.col_stride;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static) if (outer * inner > 65536)
#endif
  for (std::int64_t i = 0; i < outer; ++i) {
    T const* src = v.data + i * so;
    float* dst = buf + i * inner;
    for (std::int64_t j = 0; j < inner; ++j) dst[j] = static_cast<float>(src[j]);
  }
  (void)exec;
  return row_major ? matrix_view<float>{buf, v.rows, v.cols, v.cols, 1}
                   : matrix_view<float>{buf, v.rows, v.cols, 1, v.rows};
}

}  // namespace fp8moe::nn::host
