// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The host FP8 GEMM as CBLAS sgemm (gemm_options::host = host_accumulation::sgemm, builds with
// FP8MOE_HAVE_BLAS): each dense job's operands are dequantized into float panels (code x scale, one
// FP32 rounding, exact for power-of-two scales) in the caller's workspace and multiplied by sgemm with
// FP32 accumulation over the whole K (instead of per-block promotion: only the summation order
// differs). Panels are cut to fit the workspace; sgemm runs on OpenBLAS's own threads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/gemm/host/kernels.hpp"
#include "fp8moe/gemm/problem.hpp"

#if FP8MOE_HAS_OPENMP
#include <omp.h>
#endif
#if defined(FP8MOE_HAVE_BLAS) && FP8MOE_HAVE_BLAS
#include <cblas.h>
#endif

namespace fp8moe::gemm::host {

/// True when this build has the sgemm path (else host_accumulation::sgemm runs the kernel).
inline constexpr bool has_sgemm =
#if defined(FP8MOE_HAVE_BLAS) && FP8MOE_HAVE_BLAS
    true;
#else
    false;
#endif

/// A dequantized float panel: `rows` operand rows x `k` elements, stored K-major (element (r, k) at
/// data[r * k_len + k]) or, for an MN-major operand, MN-major (at data[k * rows + r]).
struct float_panel {
  float* data = nullptr;
  bool mn_major = false;
};

/// Rows [row0, row0+rows) x K [k0, k0+kn) of q dequantized (code x its tile's scale) into out
/// (rows * kn floats), in q's own orientation (MN-major when q.data.row_stride == 1 != col_stride).
template <class T>
float_panel dequantize_panel(host_executor const& exec, quantized_matrix_view<T const> const& q,
                             std::int64_t row0, std::int64_t rows, std::int64_t k0, std::int64_t kn,
                             float* out) {
  constexpr bool simd = FP8MOE_GEMM_VECTOR_EXT != 0;
  auto const* base = reinterpret_cast<std::uint8_t const*>(q.data.data);
  std::int64_t const rs = q.data.row_stride, cs = q.data.col_stride, tr = q.tile_rows(), tc = q.tile_cols();
  bool const mn_major = cs != 1 && rs == 1;
  int const threads = rows * kn > 32768 ? exec.num_threads() : 1;
  (void)threads;
  if (mn_major) {  // K row k: `rows` contiguous codes, the scale changes every tr rows
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (std::int64_t k = 0; k < kn; ++k) {
      float* o = out + k * rows;
      convert_row<T, simd>(base + row0 + (k0 + k) * cs, o, rows);
      for (std::int64_t r = 0; r < rows;) {
        std::int64_t const end = std::min(rows, ((row0 + r) / tr + 1) * tr - row0);
        float const s = q.scales((row0 + r) / tr, (k0 + k) / tc);
        for (; r < end; ++r) o[r] *= s;
      }
    }
    return {out, true};
  }
  float const* lut = fp8_lut<T>.v;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
  for (std::int64_t r = 0; r < rows; ++r) {  // K-major: the scale changes every tc elements
    float* o = out + r * kn;
    std::uint8_t const* src = base + (row0 + r) * rs;
    if (cs == 1) {
      convert_row<T, simd>(src + k0, o, kn);
    } else {
      for (std::int64_t k = 0; k < kn; ++k) o[k] = lut[src[(k0 + k) * cs]];
    }
    for (std::int64_t k = 0; k < kn;) {
      std::int64_t const end = std::min(kn, ((k0 + k) / tc + 1) * tc - k0);
      float const s = q.scales((row0 + r) / tr, (k0 + k) / tc);
      for (; k < end; ++k) o[k] *= s;
    }
  }
  return {out, false};
}

/// Panel extents (mb rows of A, nb rows of B, kb of K) for one job whose floats fit `floats`:
/// A and B panels, plus an (mb,nb) float accumulator when D is not float.
struct sgemm_panels {
  std::int64_t mb = 0, nb = 0, kb = 0;
};
inline sgemm_panels panels_for(std::int64_t m, std::int64_t n, std::int64_t k, bool float_d,
                               std::int64_t floats) {
  sgemm_panels p{std::max<std::int64_t>(m, 1), std::max<std::int64_t>(n, 1), std::max<std::int64_t>(k, 1)};
  auto const need = [&] { return (p.mb + p.nb) * p.kb + (float_d ? 0 : p.mb * p.nb); };
  while (need() > floats) {  // halve the largest extent (K kept a multiple of 128 while it can be)
    if (p.kb >= p.mb && p.kb >= p.nb && p.kb > 128)
      p.kb = round_up<std::int64_t>(p.kb / 2, 128);
    else if (p.nb >= p.mb && p.nb > 16)
      p.nb = round_up<std::int64_t>(p.nb / 2, 16);
    else if (p.mb > 16)
      p.mb = round_up<std::int64_t>(p.mb / 2, 16);
    else
      p.kb = std::max<std::int64_t>(p.kb / 2, 1);
  }
  return p;
}

#if defined(FP8MOE_HAVE_BLAS) && FP8MOE_HAVE_BLAS
/// One dense job (host::job in gemm.hpp: D (m,n) = [C +] A[a_row0.., k0..k0+k) B[.., k0..)^T) through
/// sgemm in `floats` floats at ws.
template <class Job>
void run_job_sgemm(host_executor const& exec, Job const& jb, float* ws, std::int64_t floats) {
  using TD = std::remove_pointer_t<decltype(jb.d.data)>;
  constexpr bool float_d = std::is_same_v<TD, float>;
  if (jb.m == 0 || jb.n == 0) return;
  sgemm_panels const p = panels_for(jb.m, jb.n, jb.k, float_d, floats);
  float* const pa = ws;
  float* const pb = pa + p.mb * p.kb;
  float* const pd = pb + p.nb * p.kb;  // (mb, nb) accumulator (non-float D)
  for (std::int64_t m0 = 0; m0 < jb.m; m0 += p.mb) {
    std::int64_t const mb = std::min(p.mb, jb.m - m0);
    for (std::int64_t n0 = 0; n0 < jb.n; n0 += p.nb) {
      std::int64_t const nb = std::min(p.nb, jb.n - n0);
      float* dst = float_d ? reinterpret_cast<float*>(jb.d.data) + m0 * jb.d.row_stride + n0 : pd;
      std::int64_t const ldd = float_d ? jb.d.row_stride : nb;
      float beta = 0.0f;
      if (jb.c.data != nullptr) {  // D = C first (nothing to copy when C is D itself)
        for (std::int64_t i = 0; i < mb; ++i) {
          float const* crow = jb.c.data + (m0 + i) * jb.c.row_stride + n0;
          if (crow != dst + i * ldd) std::copy_n(crow, nb, dst + i * ldd);
        }
        beta = 1.0f;
      }
      if (jb.k == 0) {
        if (beta == 0.0f)
          for (std::int64_t i = 0; i < mb; ++i) std::fill_n(dst + i * ldd, nb, 0.0f);
      }
      for (std::int64_t k0 = 0; k0 < jb.k; k0 += p.kb) {
        std::int64_t const kb = std::min(p.kb, jb.k - k0);
        auto const a = dequantize_panel(exec, jb.a, jb.a_row0 + m0, mb, jb.k0 + k0, kb, pa);
        auto const b = dequantize_panel(exec, jb.b, n0, nb, jb.k0 + k0, kb, pb);
        // D (mb,nb) += A (mb,kb) B (nb,kb)^T: a K-major A panel is row-major A, a K-major B panel is B^T
        cblas_sgemm(CblasRowMajor, a.mn_major ? CblasTrans : CblasNoTrans,
                    b.mn_major ? CblasNoTrans : CblasTrans, static_cast<int>(mb), static_cast<int>(nb),
                    static_cast<int>(kb), 1.0f, a.data, static_cast<int>(a.mn_major ? mb : kb), b.data,
                    static_cast<int>(b.mn_major ? nb : kb), beta, dst, static_cast<int>(ldd));
        beta = 1.0f;
      }
      if constexpr (!float_d) {
        for (std::int64_t i = 0; i < mb; ++i) {
          TD* drow = jb.d.data + (m0 + i) * jb.d.row_stride + n0;
          for (std::int64_t j = 0; j < nb; ++j) drow[j] = TD(pd[i * nb + j]);
        }
      }
    }
  }
}
#endif

}  // namespace fp8moe::gemm::host
