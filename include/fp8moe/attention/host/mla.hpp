// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// attention::mla_dispatch<host_executor>: the host path of the MLA core. The products go through
// nn::matmul (CBLAS sgemm where FP8MOE_HAVE_BLAS, else the portable kernel; float accumulation), the
// row softmax (float, OpenMP over rows) through mla_softmax_row. Only keys s < q_pos0 + T are read.
// Scratch is carved from the caller's workspace with nn::workspace_arena (an empty one: allocated).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "fp8moe/attention/mla_core.hpp"
#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/host/dispatch.hpp"
#include "fp8moe/nn/host/elementwise.hpp"
#include "fp8moe/nn/matmul.hpp"
#include "fp8moe/nn/workspace.hpp"

#if FP8MOE_HAS_OPENMP
#include <omp.h>
#endif

namespace fp8moe::attention {

namespace host_detail {

/// The (rows, cols) block of m starting at (r0, c0) (same strides).
template <class T>
matrix_view<T> block(matrix_view<T> const& m, std::int64_t r0, std::int64_t c0, std::int64_t rows,
                     std::int64_t cols) {
  return {m.data + r0 * m.row_stride + c0 * m.col_stride, rows, cols, m.row_stride, m.col_stride};
}

using nn::host::elementwise_threads;

/// Scratch bytes for the largest of the matmuls a kernel runs.
inline std::size_t matmul_bytes(host_executor const& exec, std::initializer_list<nn::matmul_shape> shapes) {
  std::size_t b = 0;
  for (auto const& s : shapes) b = std::max(b, nn::workspace_bytes(exec, s));
  return b;
}

/// Softmax in place over row[0, visible) of a row of n scaled scores; row[visible, n) becomes 0
/// (mla_softmax_row's contract) with 16 partial maxima and sums so the loops vectorise, and
/// nn::host::exp_range_reduced for exp (relative error < 1.5e-7 against std::exp).
inline void softmax_row(float* row, std::int64_t visible, std::int64_t n) {
  constexpr std::int64_t L = 16;
  float mx[L], sum[L] = {};
  for (std::int64_t l = 0; l < L; ++l) mx[l] = row[0];
  std::int64_t const vec = visible / L * L;
  for (std::int64_t s = 0; s < vec; s += L)
    for (std::int64_t l = 0; l < L; ++l) mx[l] = row[s + l] > mx[l] ? row[s + l] : mx[l];
  float m = mx[0];
  for (std::int64_t l = 1; l < L; ++l) m = mx[l] > m ? mx[l] : m;
  for (std::int64_t s = vec; s < visible; ++s) m = row[s] > m ? row[s] : m;
  for (std::int64_t s = 0; s < vec; s += L)
    for (std::int64_t l = 0; l < L; ++l) {
      float const e = nn::host::exp_range_reduced(row[s + l] - m);
      row[s + l] = e;
      sum[l] += e;
    }
  float total = 0.0f;
  for (std::int64_t s = vec; s < visible; ++s) {
    row[s] = nn::host::exp_range_reduced(row[s] - m);
    total += row[s];
  }
  for (std::int64_t l = 0; l < L; ++l) total += sum[l];
  float const inv = 1.0f / total;
  for (std::int64_t s = 0; s < visible; ++s) row[s] *= inv;
  for (std::int64_t s = visible; s < n; ++s) row[s] = 0.0f;
}

/// Row-wise causal softmax of scores (R, Su); row r is query t = r / rows_per_query.
FP8MOE_HOST_SIMD_CLONES inline void causal_softmax_rows(matrix_view<float> sc, std::int64_t r0,
                                                        std::int64_t r1, std::int64_t q_pos0,
                                                        std::int64_t rows_per_query) {
  for (std::int64_t r = r0; r < r1; ++r)
    softmax_row(sc.row(r), mla_visible_keys(q_pos0, r / rows_per_query), sc.cols);
}
inline void causal_softmax(host_executor const& exec, matrix_view<float> sc, std::int64_t q_pos0,
                           std::int64_t rows_per_query) {
  int const threads = elementwise_threads(exec, sc.rows * sc.cols);
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(threads)
  {
    std::int64_t const n = omp_get_num_threads(), me = omp_get_thread_num();
    causal_softmax_rows(sc, sc.rows * me / n, sc.rows * (me + 1) / n, q_pos0, rows_per_query);
  }
#else
  causal_softmax_rows(sc, 0, sc.rows, q_pos0, rows_per_query);
#endif
  (void)threads;
}

/// Columns and rows of the naive forward's micro tile (two AVX-512 vectors, four AVX2 vectors).
inline constexpr std::int64_t tile_rows = 4, tile_cols = 32;

/// The rows of a row-major block: row i at data + i * stride, `cols` values each.
struct row_block {
  float const* data;
  std::int64_t stride, rows, cols;
};

/// c (rows, cols) = alpha * a (rows, k) b (k, cols) for rows <= tile_rows, cols <= tile_cols: row i of
/// a at a[i] (the caller repeats the last row up to tile_rows), b with leading dimension ldb and
/// tile_cols readable columns; c with leading dimension ldc. Float accumulation, k ascending.
inline void tile_product(float const* const* a, std::int64_t k, float const* b, std::int64_t ldb, float alpha,
                         float* c, std::int64_t ldc, std::int64_t rows, std::int64_t cols) {
  float acc[tile_rows][tile_cols] = {};
  for (std::int64_t kk = 0; kk < k; ++kk) {
    float const* br = b + kk * ldb;
    for (std::int64_t i = 0; i < tile_rows; ++i) {
      float const ai = a[i][kk];
      for (std::int64_t j = 0; j < tile_cols; ++j) acc[i][j] += ai * br[j];
    }
  }
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) c[i * ldc + j] = alpha * acc[i][j];
}

/// K_h^T (dk, Su; leading dimension ldk, columns [Su, ldk) zero) = [k_nope_h | k_rope]^T and
/// V_h (Su, dv; leading dimension ldv, columns [dv, ldv) zero) of head h, from kv (S, H*(dn+dv)) and
/// kr (S, dr).
inline void pack_head(matrix_view<float const> kv, matrix_view<float const> kr, std::int64_t h,
                      std::int64_t dn, std::int64_t dr, std::int64_t dv, std::int64_t Su, float* kt,
                      std::int64_t ldk, float* vp, std::int64_t ldv) {
  for (std::int64_t s = 0; s < Su; ++s) {
    float const* kn = kv.row(s) + h * (dn + dv);
    float const* krs = kr.row(s);
    for (std::int64_t c = 0; c < dn; ++c) kt[c * ldk + s] = kn[c];
    for (std::int64_t c = 0; c < dr; ++c) kt[(dn + c) * ldk + s] = krs[c];
    std::copy_n(kn + dn, dv, vp + s * ldv);
    std::fill(vp + s * ldv + dv, vp + (s + 1) * ldv, 0.0f);
  }
  for (std::int64_t c = 0; c < dn + dr; ++c) std::fill(kt + c * ldk + Su, kt + (c + 1) * ldk, 0.0f);
}

/// One head's query block of the naive forward, tile_rows queries at a time: p rows = causal
/// softmax(scale * q K^T) over the keys the block's last row sees (n = visible0 + q.rows - 1; row i
/// sees visible0 + i keys, the rest of its n columns become 0), then out rows (q.rows, dv) = p V,
/// while the tile's probabilities are still in cache. kt (q.cols, >= n padded to tile_cols; ldk), vp
/// (n, dv padded to tile_cols; ldv) from pack_head.
FP8MOE_HOST_SIMD_CLONES inline void naive_block(row_block q, float const* kt, std::int64_t ldk,
                                                float const* vp, std::int64_t ldv, std::int64_t dv,
                                                std::int64_t visible0, float scale, float* p,
                                                std::int64_t p_stride, float* out, std::int64_t out_stride) {
  std::int64_t const n = visible0 + q.rows - 1;
  float const* a[tile_rows];
  for (std::int64_t i0 = 0; i0 < q.rows; i0 += tile_rows) {
    std::int64_t const rows = std::min(tile_rows, q.rows - i0), ni = visible0 + i0 + rows - 1;
    for (std::int64_t i = 0; i < tile_rows; ++i) a[i] = q.data + (i0 + std::min(i, rows - 1)) * q.stride;
    float* pt = p + i0 * p_stride;
    for (std::int64_t s0 = 0; s0 < ni; s0 += tile_cols)
      tile_product(a, q.cols, kt + s0, ldk, scale, pt + s0, p_stride, rows, std::min(tile_cols, ni - s0));
    for (std::int64_t i = 0; i < rows; ++i) softmax_row(pt + i * p_stride, visible0 + i0 + i, n);
    for (std::int64_t i = 0; i < tile_rows; ++i) a[i] = pt + std::min(i, rows - 1) * p_stride;
    for (std::int64_t j0 = 0; j0 < dv; j0 += tile_cols)
      tile_product(a, ni, vp + j0, ldv, 1.0f, out + i0 * out_stride + j0, out_stride, rows,
                   std::min(tile_cols, dv - j0));
  }
}

/// The caller's workspace `ws` checked to hold `need` bytes, or, when it is empty, `owned` sized so
/// and returned in its place.
inline std::span<std::byte> workspace_or_own(std::span<std::byte> ws, std::size_t need,
                                             nn::host_scratch& owned, char const* where) {
  if (ws.empty()) {
    owned.bytes.resize(need);
    ws = owned.span();
  }
  nn::check_workspace(ws, need, where);
  return ws;
}

/// Zeroes the columns [c0, m.cols) of every row.
inline void zero_cols(matrix_view<float> m, std::int64_t c0) {
  for (std::int64_t r = 0; r < m.rows; ++r) std::fill(m.row(r) + c0, m.row(r) + m.cols, 0.0f);
}

}  // namespace host_detail

template <>
struct mla_dispatch<host_executor> {
  // ---- the layer's primitives
  /// out (R,C) = in (R,C) converted element-wise (float <-> bf16, one rounding).
  template <class From, class To>
  static void convert(host_executor const& exec, matrix_view<From const> in, matrix_view<To> out) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(host_detail::elementwise_threads(exec, in.rows* in.cols)) \
    schedule(static)
#endif
    for (std::int64_t r = 0; r < in.rows; ++r)
      for (std::int64_t c = 0; c < in.cols; ++c) out(r, c) = static_cast<To>(static_cast<float>(in(r, c)));
    (void)exec;
  }
  static void fill_zero(host_executor const&, matrix_view<float> m) {
    host_detail::zero_cols(m, 0);
  }
  /// The executor for the layer's element-wise ops (norms, rope) over `elements` values.
  static host_executor elementwise(host_executor const& exec, std::int64_t elements) {
    return host_executor{host_detail::elementwise_threads(exec, elements)};
  }
  static nn::host_scratch allocate(host_executor const&, std::size_t bytes) {
    nn::host_scratch s;
    s.bytes.resize(bytes);
    return s;
  }

  // ---- naive forward: scratch = per head K^T (dn+dr, Su padded to tile_cols) and V (Su, dv padded)
  // packed once, + per thread one query block's scores (unless probs is given). One OpenMP region:
  // the (head, query block) items, costliest first, each computed by one thread (host_detail::
  // naive_block); no BLAS call, so no hand-off between OpenMP and BLAS threads.
  template <class Arena>
  struct naive_fwd_layout {
    std::int64_t su_pad, dv_pad;
    matrix_view<float> kt, vp, scores;  // (H*(dn+dr), su_pad), (H*Su, dv_pad), (threads*rows, Su)
    naive_fwd_layout(Arena& a, host_executor const& exec, mla_dims const& d, std::int64_t T, std::int64_t Su,
                     bool own_scores) {
      using host_detail::tile_cols;
      su_pad = round_up<std::int64_t>(Su, tile_cols);
      dv_pad = round_up<std::int64_t>(d.v_head_dim, tile_cols);
      kt = a.template matrix<float>(d.heads * d.qk_head_dim(), su_pad);
      vp = a.template matrix<float>(d.heads * Su, dv_pad);
      if (own_scores)
        scores = a.template matrix<float>(exec.num_threads() * std::min(naive_block_rows, T), Su);
    }
  };
  /// Query rows per causal block of the naive forward: the rows [r0, r1) of a block read only the
  /// keys [0, q_pos0 + r1), so a prefill of T tokens computes about (T + 64) / 2T of the full
  /// (T, Su) score and P.V products.
  static constexpr std::int64_t naive_block_rows = 64;
  static std::size_t naive_forward_workspace_bytes(host_executor const& exec, mla_dims const& d,
                                                   std::int64_t T, std::int64_t S) {
    nn::workspace_arena a;
    naive_fwd_layout<nn::workspace_arena> l(a, exec, d, T, S, true);
    return a.bytes();
  }

  static void naive_forward(host_executor const& exec, mla_dims const& d, matrix_view<float const> q,
                            matrix_view<float const> kv, matrix_view<float const> kr, std::int64_t q_pos0,
                            matrix_view<float> out, matrix_view<float> probs, std::span<std::byte> ws) {
    std::int64_t const T = q.rows, Su = q_pos0 + T, H = d.heads;
    std::int64_t const dn = d.qk_nope_head_dim, dr = d.qk_rope_head_dim, dv = d.v_head_dim, dk = dn + dr;
    if (T == 0) return;
    bool const own = probs.data == nullptr;
    nn::host_scratch owned;
    ws = host_detail::workspace_or_own(ws, naive_forward_workspace_bytes(exec, d, T, Su), owned,
                                       "fp8moe::attention::mla_naive_forward");
    nn::workspace_arena arena(ws);
    naive_fwd_layout<nn::workspace_arena> l(arena, exec, d, T, Su, own);
    std::int64_t const BR = std::min(naive_block_rows, T), blocks = ceil_div(T, BR), items = blocks * H;
    int const threads = static_cast<int>(std::min<std::int64_t>(exec.num_threads(), items));
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
#if FP8MOE_HAS_OPENMP
#pragma omp for schedule(static)
#endif
      for (std::int64_t h = 0; h < H; ++h)  // K_h^T = [k_nope_h | k_rope]^T (dk, Su); V_h (Su, dv)
        host_detail::pack_head(kv, kr, h, dn, dr, dv, Su, l.kt.row(h * dk), l.su_pad, l.vp.row(h * Su),
                               l.dv_pad);
#if FP8MOE_HAS_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (std::int64_t w = 0; w < items; ++w) {  // the last (widest) query blocks first
        std::int64_t const b = blocks - 1 - w / H, h = w % H, r0 = b * BR, rows = std::min(BR, T - r0);
#if FP8MOE_HAS_OPENMP
        std::int64_t const me = omp_get_thread_num();
#else
        std::int64_t const me = 0;
#endif
        float* p = own ? l.scores.row(me * BR) : probs.row(h * T + r0);
        std::int64_t const p_stride = own ? l.scores.row_stride : probs.row_stride;
        host_detail::naive_block({q.row(r0) + h * dk, q.row_stride, rows, dk}, l.kt.row(h * dk), l.su_pad,
                                 l.vp.row(h * Su), l.dv_pad, dv, q_pos0 + r0 + 1, d.softmax_scale, p,
                                 p_stride, out.row(r0) + h * dv, out.row_stride);
        if (!own)  // keys past the block's last visible one
          host_detail::zero_cols({p, rows, Su, p_stride, 1}, q_pos0 + r0 + rows);
      }
    }
    if (!own) host_detail::zero_cols(probs, Su);
    (void)threads;
  }

  // ---- naive backward: scratch = dP (T, Su) + matmul scratch
  template <class Arena>
  struct naive_bwd_layout {
    matrix_view<float> dp;
    std::span<std::byte> mm;
    naive_bwd_layout(Arena& a, host_executor const& exec, mla_dims const& d, std::int64_t T,
                     std::int64_t Su) {
      dp = a.template matrix<float>(T, Su);
      std::int64_t const dn = d.qk_nope_head_dim, dr = d.qk_rope_head_dim, dv = d.v_head_dim;
      mm = a.sub(host_detail::matmul_bytes(
          exec, {{Su, dv, T}, {T, Su, dv}, {T, dn, Su}, {T, dr, Su}, {Su, dn, T}, {Su, dr, T}}));
    }
  };
  static std::size_t naive_backward_workspace_bytes(host_executor const& exec, mla_dims const& d,
                                                    std::int64_t T, std::int64_t S) {
    nn::workspace_arena a;
    naive_bwd_layout<nn::workspace_arena> l(a, exec, d, T, S);
    return a.bytes();
  }

  static void naive_backward(host_executor const& exec, mla_dims const& d, matrix_view<float const> q,
                             matrix_view<float const> kv, matrix_view<float const> kr, std::int64_t q_pos0,
                             matrix_view<float const> probs, matrix_view<float const> dout,
                             matrix_view<float> dq, matrix_view<float> dkv, matrix_view<float> dkr,
                             std::span<std::byte> ws) {
    using host_detail::block;
    std::int64_t const T = q.rows, S = kv.rows, Su = q_pos0 + T, H = d.heads;
    std::int64_t const dn = d.qk_nope_head_dim, dr = d.qk_rope_head_dim, dv = d.v_head_dim;
    nn::host_scratch owned;
    ws = host_detail::workspace_or_own(ws, naive_backward_workspace_bytes(exec, d, T, Su), owned,
                                       "fp8moe::attention::mla_naive_backward");
    // keys no query attends (rows >= Su; every row when T = 0) get zero gradients
    for (std::int64_t s = T == 0 ? 0 : Su; s < S; ++s) {
      std::fill(dkv.row(s), dkv.row(s) + dkv.cols, 0.0f);
      std::fill(dkr.row(s), dkr.row(s) + dkr.cols, 0.0f);
    }
    if (T == 0) return;
    nn::workspace_arena arena(ws);
    naive_bwd_layout<nn::workspace_arena> l(arena, exec, d, T, Su);
    auto const kr_u = block(kr, 0, 0, Su, dr);  // (Su, dr)
    float const sc = d.softmax_scale;
    for (std::int64_t h = 0; h < H; ++h) {
      auto const p = block(probs, h * T, 0, T, Su);             // (T, Su)
      auto const go = block(dout, 0, h * dv, T, dv);            // (T, dv)
      auto const qn = block(q, 0, h * (dn + dr), T, dn);        // (T, dn)
      auto const qr = block(q, 0, h * (dn + dr) + dn, T, dr);   // (T, dr)
      auto const kn = block(kv, 0, h * (dn + dv), Su, dn);      // (Su, dn)
      auto const v = block(kv, 0, h * (dn + dv) + dn, Su, dv);  // (Su, dv)
      // dv_h (Su, dv) = P^T dout_h;  dP (T, Su) = dout_h v_h^T
      nn::matmul(exec, nn::transposed(p), go, block(dkv, 0, h * (dn + dv) + dn, Su, dv), {}, l.mm);
      nn::matmul(exec, go, nn::transposed(v), l.dp, {}, l.mm);
      // dScore (T, Su) = P * (dP - rowsum(P * dP)), in place in dp
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(host_detail::elementwise_threads(exec, T* Su)) schedule(static)
#endif
      for (std::int64_t t = 0; t < T; ++t) mla_softmax_row_backward(p.row(t), l.dp.row(t), Su);
      matrix_view<float const> const ds = l.dp;
      nn::matmul(exec, ds, kn, block(dq, 0, h * (dn + dr), T, dn), {sc, 0.0f}, l.mm);
      nn::matmul(exec, ds, kr_u, block(dq, 0, h * (dn + dr) + dn, T, dr), {sc, 0.0f}, l.mm);
      nn::matmul(exec, nn::transposed(ds), qn, block(dkv, 0, h * (dn + dv), Su, dn), {sc, 0.0f}, l.mm);
      nn::matmul(exec, nn::transposed(ds), qr, block(dkr, 0, 0, Su, dr), {sc, h == 0 ? 0.0f : 1.0f}, l.mm);
    }
  }

  // ---- absorbed forward: q_abs (H*T, c), q_rope (H*T, dr), scores (H*T, Su), o_lat (H*T, c); row
  // t*H + h, so every head reads the one latent row of a key in a single product.
  template <class Arena>
  struct absorbed_layout {
    matrix_view<float> q_abs, q_rope, scores, o_lat;
    std::span<std::byte> mm;
    absorbed_layout(Arena& a, host_executor const& exec, mla_dims const& d, std::int64_t T, std::int64_t Su) {
      std::int64_t const R = T * d.heads, c = d.kv_lora_rank;
      q_abs = a.template matrix<float>(R, c);
      q_rope = a.template matrix<float>(R, d.qk_rope_head_dim);
      scores = a.template matrix<float>(R, Su);
      o_lat = a.template matrix<float>(R, c);
      mm = a.sub(host_detail::matmul_bytes(exec, {{T, c, d.qk_nope_head_dim},
                                                  {R, Su, c},
                                                  {R, Su, d.qk_rope_head_dim},
                                                  {R, c, Su},
                                                  {T, d.v_head_dim, c}}));
    }
  };
  static std::size_t absorbed_forward_workspace_bytes(host_executor const& exec, mla_dims const& d,
                                                      std::int64_t T, std::int64_t S) {
    nn::workspace_arena a;
    absorbed_layout<nn::workspace_arena> l(a, exec, d, T, S);
    return a.bytes();
  }

  static void absorbed_forward(host_executor const& exec, mla_dims const& d, matrix_view<float const> q,
                               matrix_view<float const> wkv_b, matrix_view<float const> latent,
                               matrix_view<float const> kr, std::int64_t q_pos0, matrix_view<float> out,
                               std::span<std::byte> ws) {
    using host_detail::block;
    std::int64_t const T = q.rows, Su = q_pos0 + T, H = d.heads, c = d.kv_lora_rank;
    std::int64_t const dn = d.qk_nope_head_dim, dr = d.qk_rope_head_dim, dv = d.v_head_dim;
    if (T == 0) return;
    nn::host_scratch owned;
    ws = host_detail::workspace_or_own(ws, absorbed_forward_workspace_bytes(exec, d, T, Su), owned,
                                       "fp8moe::attention::mla_absorbed_forward");
    nn::workspace_arena arena(ws);
    absorbed_layout<nn::workspace_arena> l(arena, exec, d, T, Su);
    auto const head_rows = [&](matrix_view<float> m, std::int64_t h) {  // rows t*H + h, t < T
      return matrix_view<float>{m.data + h * m.row_stride, T, m.cols, H * m.row_stride, 1};
    };
    for (std::int64_t h = 0; h < H; ++h) {
      // q_abs_h (T, c) = q_nope_h (T, dn) W_UK_h (dn, c)
      auto const wuk = block(wkv_b, h * (dn + dv), 0, dn, c);
      nn::matmul(exec, block(q, 0, h * (dn + dr), T, dn), wuk, head_rows(l.q_abs, h), {}, l.mm);
      for (std::int64_t t = 0; t < T; ++t)
        std::copy_n(q.row(t) + h * (dn + dr) + dn, dr, l.q_rope.row(t * H + h));
    }
    auto const lat_u = block(latent, 0, 0, Su, c);  // (Su, c)
    auto const kr_u = block(kr, 0, 0, Su, dr);      // (Su, dr)
    matrix_view<float const> const qa = l.q_abs, qrp = l.q_rope;
    nn::matmul(exec, qa, nn::transposed(lat_u), l.scores, {d.softmax_scale, 0.0f}, l.mm);
    nn::matmul(exec, qrp, nn::transposed(kr_u), l.scores, {d.softmax_scale, 1.0f}, l.mm);
    host_detail::causal_softmax(exec, l.scores, q_pos0, H);
    nn::matmul(exec, matrix_view<float const>(l.scores), lat_u, l.o_lat, {}, l.mm);
    for (std::int64_t h = 0; h < H; ++h) {
      // out_h (T, dv) = o_lat_h (T, c) W_UV_h^T (c, dv)
      auto const wuv = block(wkv_b, h * (dn + dv) + dn, 0, dv, c);
      nn::matmul(exec, matrix_view<float const>(head_rows(l.o_lat, h)), nn::transposed(wuv),
                 block(out, 0, h * dv, T, dv), {}, l.mm);
    }
  }
};

}  // namespace fp8moe::attention
