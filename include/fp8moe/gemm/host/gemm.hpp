// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host path of the FP8 GEMM (gemm::dispatch<host_executor>, reached through gemm/gemm.hpp): every
// layout becomes a list of dense jobs, cut into (mc x nc) output tiles that OpenMP threads take
// dynamically. Per tile: pack A and B K-chunks to float (one scale per row and promotion block),
// 3x4 dot-product micro-kernel, FP32 promotion per block, write D once.
// Caller-owned workspace (workspace_bytes); results equal the float64 reference up to FP32 rounding.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/gemm/host/kernels.hpp"
#include "fp8moe/gemm/host/sgemm.hpp"
#include "fp8moe/gemm/problem.hpp"

#if FP8MOE_HAS_OPENMP
#include <omp.h>
#endif

namespace fp8moe::gemm::host {

/// Cache blocking of the host path: output tile mc x nc, K chunk of about kc elements (a whole
/// number of promotion blocks). mc % mr == 0 and nc % nr == 0.
struct blocking {
  int mc = 192;
  int nc = 256;
  int kc = 256;
  friend constexpr bool operator==(blocking const&, blocking const&) = default;
};
inline constexpr blocking default_blocking{};
static_assert(default_blocking.mc % mr == 0 && default_blocking.nc % nr == 0);

/// Instruction set of the micro-kernel; `automatic` picks the best one the CPU supports.
enum class kernel_isa : std::uint8_t { automatic, baseline, avx2 };

/// True when this build and CPU can run the AVX2+FMA kernels.
inline bool cpu_has_avx2() {
#if FP8MOE_GEMM_X86_DISPATCH
  static bool const ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

/// Geometry of one K chunk: `blocks` promotion blocks of p elements, each packed as p8 floats.
struct chunk_geometry {
  int p = 128;
  int p8 = 128;
  int blocks = 2;
  constexpr std::int64_t k_chunk() const { return static_cast<std::int64_t>(p) * blocks; }
  constexpr std::int64_t packed() const { return static_cast<std::int64_t>(p8) * blocks; }
  /// Row stride of the packed buffers: 16 floats more than a chunk, so that the 7 rows the
  /// micro-kernel streams never sit a multiple of 4 KiB apart (cache-set aliasing).
  constexpr std::int64_t ld() const { return packed() + 16; }
};
constexpr chunk_geometry geometry(int promotion_k, blocking bl = default_blocking) {
  int const p = promotion_k > 0 ? promotion_k : 1;  // invalid values are rejected by validate()
  int const blocks = bl.kc / p > 0 ? bl.kc / p : 1;
  return {p, round_up(p, vec), blocks};
}

/// Floats of workspace one thread uses.
constexpr std::int64_t thread_workspace_floats(int promotion_k, blocking bl = default_blocking) {
  chunk_geometry const g = geometry(promotion_k, bl);
  std::int64_t const rows = bl.mc + bl.nc;
  return rows * g.ld() + rows * g.blocks + static_cast<std::int64_t>(bl.mc) * bl.nc + 16;
}

/// Bytes of workspace the host path needs with `threads` threads.
constexpr std::size_t workspace_bytes(int threads, int promotion_k, blocking bl = default_blocking) {
  return static_cast<std::size_t>(threads > 0 ? threads : 1) *
             static_cast<std::size_t>(thread_workspace_floats(promotion_k, bl)) * sizeof(float) +
         64;
}

/// One dense sub-GEMM: D (m,n) = [C +] A[a_row0 .., k0 .. k0+k) * B[0 .., k0 .. k0+k)^T.
template <class TA, class TB, class TD>
struct job {
  quantized_matrix_view<TA const> a;
  std::int64_t a_row0 = 0;
  quantized_matrix_view<TB const> b;
  std::int64_t m = 0, n = 0, k0 = 0, k = 0;
  matrix_view<TD> d;             // (m,n)
  matrix_view<float const> c{};  // (m,n) or empty
};

namespace detail {

/// Packs rows [row0, row0+rows) of q, K range [kb, ke), as `rows_pad` float rows of `ld` floats
/// (block b at offset b*p8, zero padded) and their scales at sc[b * rows_pad + r].
template <class T, bool Simd>
FP8MOE_GEMM_INLINE void pack_rows(quantized_matrix_view<T const> const& q, std::int64_t row0,
                                  std::int64_t rows, std::int64_t rows_pad, std::int64_t kb, std::int64_t ke,
                                  chunk_geometry g, float* dst, std::int64_t ld, float* sc) {
  std::int64_t const nblk = ceil_div(ke - kb, static_cast<std::int64_t>(g.p));
  auto const* base = reinterpret_cast<std::uint8_t const*>(q.data.data);
  bool const contiguous = q.data.col_stride == 1;
  bool const mn_major = !contiguous && q.data.row_stride == 1;
  float const* lut = fp8_lut<T>.v;
  if (mn_major) {  // rows are strided: convert (k, 8 rows) byte runs and transpose 8x8 blocks
    for (std::int64_t b = 0; b < nblk; ++b) {
      std::int64_t const k = kb + b * g.p;
      std::int64_t const len = std::min<std::int64_t>(g.p, ke - k);
      pack_transposed<T, Simd>(base + row0 + k * q.data.col_stride, q.data.col_stride, rows, len,
                               dst + b * g.p8, ld);
    }
  }
  // scales: one per (block, row), walking the scale matrix without a division per element
  std::int64_t const tr = q.tile_rows(), tc = q.tile_cols();
  for (std::int64_t b = 0; b < nblk; ++b) {
    float const* col = q.scales.data + ((kb + b * g.p) / tc) * q.scales.col_stride;
    float* out = sc + b * rows_pad;
    std::int64_t srow = row0 / tr, rem = row0 % tr;
    for (std::int64_t r = 0; r < rows; ++r) {
      out[r] = col[srow * q.scales.row_stride];
      if (++rem == tr) {
        rem = 0;
        ++srow;
      }
    }
    for (std::int64_t r = rows; r < rows_pad; ++r) out[r] = 0.0f;
  }
  for (std::int64_t r = 0; r < rows_pad; ++r) {
    float* out = dst + r * ld;
    if (r >= rows) {
      for (std::int64_t i = 0; i < nblk * g.p8; ++i) out[i] = 0.0f;
      continue;
    }
    std::int64_t const row = row0 + r;
    for (std::int64_t b = 0; b < nblk; ++b) {
      std::int64_t const k = kb + b * g.p;
      std::int64_t const len = std::min<std::int64_t>(g.p, ke - k);
      float* o = out + b * g.p8;
      if (contiguous) {
        convert_row<T, Simd>(base + row * q.data.row_stride + k, o, len);
      } else if (mn_major) {
        // packed above
      } else {
        std::uint8_t const* s = base + row * q.data.row_stride + k * q.data.col_stride;
        for (std::int64_t i = 0; i < len; ++i) o[i] = lut[s[i * q.data.col_stride]];
      }
      for (std::int64_t i = len; i < g.p8; ++i) o[i] = 0.0f;
    }
  }
}

/// Computes output tile [m_begin, +mc) x [n_begin, +nc) of job `jb` with workspace `ws`.
template <class TA, class TB, class TD, bool Simd>
FP8MOE_GEMM_INLINE void compute_tile(job<TA, TB, TD> const& jb, std::int64_t m_begin, std::int64_t n_begin,
                                     chunk_geometry g, blocking bl, float* ws) {
  std::int64_t const mt = std::min<std::int64_t>(bl.mc, jb.m - m_begin);
  std::int64_t const nt = std::min<std::int64_t>(bl.nc, jb.n - n_begin);
  std::int64_t const mtp = round_up<std::int64_t>(mt, mr);
  std::int64_t const ntp = round_up<std::int64_t>(nt, nr);
  std::int64_t const ld = g.ld();
  float* const pa = ws;                       // (mtp, ld)
  float* const psa = pa + bl.mc * ld;         // (blocks, mtp)
  float* const pb = psa + bl.mc * g.blocks;   // (ntp, ld)
  float* const psb = pb + bl.nc * ld;         // (blocks, ntp)
  float* const acc = psb + bl.nc * g.blocks;  // (mtp, ntp)
  std::int64_t const ldc = ntp;

  for (std::int64_t i = 0; i < mtp; ++i) {
    float* row = acc + i * ldc;
    if (jb.c.data != nullptr && i < mt) {
      float const* crow = jb.c.data + (m_begin + i) * jb.c.row_stride + n_begin;
      for (std::int64_t j = 0; j < nt; ++j) row[j] = crow[j];
      for (std::int64_t j = nt; j < ntp; ++j) row[j] = 0.0f;
    } else {
      for (std::int64_t j = 0; j < ntp; ++j) row[j] = 0.0f;
    }
  }

  for (std::int64_t kc = 0; kc < jb.k; kc += g.k_chunk()) {
    std::int64_t const kb = jb.k0 + kc;
    std::int64_t const ke = jb.k0 + std::min(jb.k, kc + g.k_chunk());
    std::int64_t const nblk = ceil_div(ke - kb, static_cast<std::int64_t>(g.p));
    pack_rows<TA, Simd>(jb.a, jb.a_row0 + m_begin, mt, mtp, kb, ke, g, pa, ld, psa);
    pack_rows<TB, Simd>(jb.b, n_begin, nt, ntp, kb, ke, g, pb, ld, psb);
    for (std::int64_t jp = 0; jp < ntp; jp += nr) {
      for (std::int64_t ip = 0; ip < mtp; ip += mr) {
        for (std::int64_t b = 0; b < nblk; ++b) {
          std::int64_t const len = std::min<std::int64_t>(g.p, ke - (kb + b * g.p));
          dot_block_3x4<Simd>(pa + ip * ld + b * g.p8, ld, pb + jp * ld + b * g.p8, ld,
                              ceil_div<std::int64_t>(len, vec), psa + b * mtp + ip, psb + b * ntp + jp,
                              acc + ip * ldc + jp, ldc);
        }
      }
    }
  }

  for (std::int64_t i = 0; i < mt; ++i) {
    TD* drow = jb.d.data + (m_begin + i) * jb.d.row_stride + n_begin;
    float const* row = acc + i * ldc;
    for (std::int64_t j = 0; j < nt; ++j) drow[j] = TD(row[j]);
  }
}

template <class TA, class TB, class TD>
void compute_tile_baseline(job<TA, TB, TD> const& jb, std::int64_t m0, std::int64_t n0, chunk_geometry g,
                           blocking bl, float* ws) {
  compute_tile<TA, TB, TD, FP8MOE_GEMM_VECTOR_EXT != 0>(jb, m0, n0, g, bl, ws);
}

#if FP8MOE_GEMM_X86_DISPATCH
template <class TA, class TB, class TD>
__attribute__((target("avx2,fma"))) void compute_tile_avx2(job<TA, TB, TD> const& jb, std::int64_t m0,
                                                           std::int64_t n0, chunk_geometry g, blocking bl,
                                                           float* ws) {
  compute_tile<TA, TB, TD, true>(jb, m0, n0, g, bl, ws);
}
#endif

}  // namespace detail

/// Runs dense jobs on the host executor. `workspace` holds at least workspace_bytes(threads, P).
template <class TA, class TB, class TD>
void run_jobs(host_executor const& exec, std::span<job<TA, TB, TD> const> jobs, gemm_options const& o,
              std::span<std::byte> workspace, kernel_isa isa = kernel_isa::automatic,
              blocking bl = default_blocking) {
  if (jobs.empty()) return;
  std::vector<std::int64_t> first_tile(jobs.size() + 1, 0);  // (jobs+1) prefix sums of tile counts
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    std::int64_t const t = jobs[j].m > 0 && jobs[j].n > 0 ? ceil_div<std::int64_t>(jobs[j].m, bl.mc) *
                                                                ceil_div<std::int64_t>(jobs[j].n, bl.nc)
                                                          : 0;
    first_tile[j + 1] = first_tile[j] + t;
  }
  std::int64_t const tiles = first_tile.back();
  if (tiles == 0) return;
  int const threads = static_cast<int>(std::min<std::int64_t>(exec.num_threads(), tiles));
  require(workspace.size() >= workspace_bytes(threads, o.promotion_k, bl), "fp8moe::gemm::host::run_jobs",
          "workspace", std::to_string(workspace_bytes(threads, o.promotion_k, bl)) + " bytes",
          std::to_string(workspace.size()));
  bool const use_avx2 = isa == kernel_isa::avx2 || (isa == kernel_isa::automatic && cpu_has_avx2());
  require(!use_avx2 || cpu_has_avx2(), "fp8moe::gemm::host::run_jobs", "isa", "an ISA this CPU supports",
          "avx2");
  auto const addr = reinterpret_cast<std::uintptr_t>(workspace.data());
  float* const base = reinterpret_cast<float*>(workspace.data() + ((64 - addr % 64) % 64));
  std::int64_t const per_thread = thread_workspace_floats(o.promotion_k, bl);
  chunk_geometry const g = geometry(o.promotion_k, bl);

  auto tile = [&](std::int64_t t, float* ws) {
    std::size_t const j = static_cast<std::size_t>(std::upper_bound(first_tile.begin(), first_tile.end(), t) -
                                                   first_tile.begin() - 1);
    job<TA, TB, TD> const& jb = jobs[j];
    std::int64_t const local = t - first_tile[j];
    std::int64_t const n_tiles = ceil_div<std::int64_t>(jb.n, bl.nc);
    std::int64_t const m0 = (local / n_tiles) * bl.mc, n0 = (local % n_tiles) * bl.nc;
#if FP8MOE_GEMM_X86_DISPATCH
    if (use_avx2) {
      detail::compute_tile_avx2(jb, m0, n0, g, bl, ws);
      return;
    }
#endif
    detail::compute_tile_baseline(jb, m0, n0, g, bl, ws);
  };
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(threads)
  {
    float* ws = base + per_thread * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < tiles; ++t) tile(t, ws);
  }
#else
  (void)per_thread;
  for (std::int64_t t = 0; t < tiles; ++t) tile(t, base);
#endif
}

/// Jobs with fewer rows than this run the kernel even under host_accumulation::sgemm.
inline constexpr std::int64_t sgemm_min_rows = 64;

/// Runs dense jobs as o.host says: the kernel (run_jobs), or, for host_accumulation::sgemm in a build
/// with FP8MOE_HAVE_BLAS, sgemm over dequantized panels (sgemm.hpp) cut to fit `workspace`.
template <class TA, class TB, class TD>
void run_jobs_as(host_executor const& exec, std::span<job<TA, TB, TD> const> jobs, gemm_options const& o,
                 std::span<std::byte> workspace) {
  if (o.host != host_accumulation::sgemm || !has_sgemm) return run_jobs<TA, TB, TD>(exec, jobs, o, workspace);
#if defined(FP8MOE_HAVE_BLAS) && FP8MOE_HAVE_BLAS
  if (jobs.empty()) return;
  require(workspace.size() >= workspace_bytes(1, o.promotion_k), "fp8moe::gemm::host::run_jobs_as",
          "workspace", std::to_string(workspace_bytes(1, o.promotion_k)) + " bytes",
          std::to_string(workspace.size()));
  auto const addr = reinterpret_cast<std::uintptr_t>(workspace.data());
  std::size_t const skip = (64 - addr % 64) % 64;
  float* const base = reinterpret_cast<float*>(workspace.data() + skip);
  auto const floats = static_cast<std::int64_t>((workspace.size() - skip) / sizeof(float));
  // jobs of few rows (an expert's handful of tokens) stay on the kernel: sgemm's per-call cost (its
  // threads woken, a whole weight panel dequantized) outweighs their products
  std::vector<job<TA, TB, TD>> small;
  for (auto const& jb : jobs) {
    if (jb.m < sgemm_min_rows)
      small.push_back(jb);
    else
      run_job_sgemm(exec, jb, base, floats);
  }
  if (!small.empty()) run_jobs<TA, TB, TD>(exec, std::span<job<TA, TB, TD> const>(small), o, workspace);
#endif
}

/// D rows that get no product (contiguous padding rows): D = C or 0.
template <class TD>
void fill_rows(host_executor const& exec, matrix_view<TD> const& d, matrix_view<float const> const& c,
               std::vector<std::int64_t> const& rows) {
  std::int64_t const n = static_cast<std::int64_t>(rows.size());
  int const threads = exec.num_threads();
  (void)threads;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (n * d.cols > 65536)
#endif
  for (std::int64_t i = 0; i < n; ++i) {
    std::int64_t const r = rows[static_cast<std::size_t>(i)];
    for (std::int64_t j = 0; j < d.cols; ++j) d(r, j) = TD(c.data != nullptr ? c(r, j) : 0.0f);
  }
}

// ---- layouts -> jobs ---------------------------------------------------------------------------

template <class TA, class TB, class TD>
std::vector<job<TA, TB, TD>> make_jobs(dense<TA, TB, TD> const& p) {
  return {job<TA, TB, TD>{p.a, 0, p.b, p.m(), p.n(), 0, p.k(), p.d, p.c}};
}

/// Contiguous: one job per run of rows with the same expert; `padding` receives the -1 rows.
template <class TA, class TB, class TD>
std::vector<job<TA, TB, TD>> make_jobs(grouped_contiguous<TA, TB, TD> const& p,
                                       std::vector<std::int64_t>& padding) {
  std::vector<job<TA, TB, TD>> jobs;
  std::int64_t r = 0;
  while (r < p.m()) {
    int const e = p.m_indices[r];
    std::int64_t end = r + 1;
    while (end < p.m() && p.m_indices[end] == e) ++end;
    if (e < 0) {
      for (std::int64_t i = r; i < end; ++i) padding.push_back(i);
    } else {
      matrix_view<TD> const d{p.d.row(r), end - r, p.d.cols, p.d.row_stride, 1};
      matrix_view<float const> const c =
          p.c.data != nullptr ? matrix_view<float const>{p.c.row(r), end - r, p.c.cols, p.c.row_stride, 1}
                              : matrix_view<float const>{};
      jobs.push_back({p.a, r, p.b[e], end - r, p.n(), 0, p.k(), d, c});
    }
    r = end;
  }
  return jobs;
}

template <class TA, class TB, class TD>
std::vector<job<TA, TB, TD>> make_jobs(grouped_masked<TA, TB, TD> const& p) {
  std::vector<job<TA, TB, TD>> jobs;
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    std::int64_t const m = p.masked_m[g];
    if (m == 0) continue;
    matrix_view<TD> const d{p.d[g].data, m, p.n(), p.d.row_stride, 1};
    matrix_view<float const> const c =
        p.c.data != nullptr ? matrix_view<float const>{p.c[g].data, m, p.n(), p.c.row_stride, 1}
                            : matrix_view<float const>{};
    jobs.push_back({p.a[g], 0, p.b[g], m, p.n(), 0, p.k(), d, c});
  }
  return jobs;
}

template <class TA, class TB>
std::vector<job<TA, TB, float>> make_jobs(k_grouped<TA, TB> const& p) {
  std::vector<job<TA, TB, float>> jobs;
  std::int64_t k0 = 0;
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    std::int64_t const kg = p.k_sizes[g];
    matrix_view<float const> const c = p.c.data != nullptr ? p.c[g] : matrix_view<float const>{};
    jobs.push_back({p.a, 0, p.b, p.m(), p.n(), k0, kg, p.d[g], c});
    k0 += kg;
  }
  return jobs;
}

}  // namespace fp8moe::gemm::host

namespace fp8moe::gemm {

/// The host executor's path of the entry points in gemm/gemm.hpp (which check the element types):
/// validate, check the index arrays, cut into jobs, run them in the caller's workspace.
template <>
struct dispatch<host_executor> {
  static std::size_t workspace_bytes(host_executor const& exec, gemm_options const& o) {
    return host::workspace_bytes(exec.num_threads(), o.promotion_k);
  }

  /// f(workspace) with a host workspace of workspace_bytes(exec, o) (the allocating overloads).
  template <class F>
  static void with_workspace(host_executor const& exec, gemm_options const& o, F&& f) {
    std::vector<std::byte> buf(workspace_bytes(exec, o));
    f(std::span<std::byte>(buf.data(), buf.size()));
  }

  template <class TA, class TB, class TD>
  static void fp8_gemm(host_executor const& exec, dense<TA, TB, TD> const& p, gemm_options const& o,
                       std::span<std::byte> workspace) {
    validate(p, o);
    auto const jobs = host::make_jobs(p);
    host::run_jobs_as<TA, TB, TD>(exec, jobs, o, workspace);
  }

  template <class TA, class TB, class TD>
  static void grouped_gemm(host_executor const& exec, grouped_contiguous<TA, TB, TD> const& p,
                           gemm_options const& o, std::span<std::byte> workspace) {
    validate(p, o);
    check_indices(p);
    std::vector<std::int64_t> padding;
    auto const jobs = host::make_jobs(p, padding);
    host::run_jobs_as<TA, TB, TD>(exec, jobs, o, workspace);
    host::fill_rows(exec, p.d, p.c, padding);
  }

  template <class TA, class TB, class TD>
  static void grouped_gemm(host_executor const& exec, grouped_masked<TA, TB, TD> const& p,
                           gemm_options const& o, std::span<std::byte> workspace) {
    validate(p, o);
    check_indices(p);
    auto const jobs = host::make_jobs(p);
    host::run_jobs_as<TA, TB, TD>(exec, jobs, o, workspace);
  }

  template <class TA, class TB>
  static void grouped_gemm(host_executor const& exec, k_grouped<TA, TB> const& p, gemm_options const& o,
                           std::span<std::byte> workspace) {
    validate(p, o);
    auto const jobs = host::make_jobs(p);
    host::run_jobs_as<TA, TB, float>(exec, jobs, o, workspace);
  }
};

}  // namespace fp8moe::gemm
