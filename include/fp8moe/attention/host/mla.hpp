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
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/host/dispatch.hpp"
#include "fp8moe/nn/matmul.hpp"
#include "fp8moe/nn/workspace.hpp"

namespace fp8moe::attention {

namespace host_detail {

/// The (rows, cols) block of m starting at (r0, c0) (same strides).
template <class T>
matrix_view<T> block(matrix_view<T> const& m, std::int64_t r0, std::int64_t c0, std::int64_t rows,
                     std::int64_t cols) {
  return {m.data + r0 * m.row_stride + c0 * m.col_stride, rows, cols, m.row_stride, m.col_stride};
}

/// Threads for an element-wise pass over `elements` values: 1 below 32K (a team costs more than
/// the work, and libgomp's spinning workers then take the cores from OpenBLAS's threads).
inline int elementwise_threads(host_executor const& exec, std::int64_t elements) {
  return elements < (std::int64_t{1} << 15) ? 1 : exec.num_threads();
}

/// Scratch bytes for the largest of the matmuls a kernel runs.
inline std::size_t matmul_bytes(host_executor const& exec, std::initializer_list<nn::matmul_shape> shapes) {
  std::size_t b = 0;
  for (auto const& s : shapes) b = std::max(b, nn::workspace_bytes(exec, s));
  return b;
}

/// Row-wise causal softmax of scores (R, Su); row r is query t = r / rows_per_query.
inline void causal_softmax(host_executor const& exec, matrix_view<float> sc, std::int64_t q_pos0,
                           std::int64_t rows_per_query, std::int64_t t_offset_rows = 0) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(elementwise_threads(exec, sc.rows* sc.cols)) schedule(static)
#endif
  for (std::int64_t r = 0; r < sc.rows; ++r)
    mla_softmax_row(sc.row(r), mla_visible_keys(q_pos0, (r - t_offset_rows) / rows_per_query), sc.cols);
  (void)exec;
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

  // ---- naive forward: scratch = scores (T, Su) unless probs is given + one head's keys
  // [k_nope | k_rope] (Su, dn+dr) + matmul scratch
  template <class Arena>
  struct naive_fwd_layout {
    matrix_view<float> scores;
    matrix_view<float> keys;
    std::span<std::byte> mm;
    naive_fwd_layout(Arena& a, host_executor const& exec, mla_dims const& d, std::int64_t T, std::int64_t Su,
                     bool own_scores) {
      if (own_scores) scores = a.template matrix<float>(T, Su);
      keys = a.template matrix<float>(Su, d.qk_nope_head_dim + d.qk_rope_head_dim);
      mm = a.sub(host_detail::matmul_bytes(
          exec, {{T, Su, d.qk_nope_head_dim + d.qk_rope_head_dim}, {T, d.v_head_dim, Su}}));
    }
  };
  /// Query rows per causal block of the naive forward: the rows [r0, r1) of a block read only the
  /// keys [0, q_pos0 + r1), so a prefill of T tokens computes about (T + 128) / 2T of the full
  /// (T, Su) score and P.V products.
  static constexpr std::int64_t naive_block_rows = 128;
  static std::size_t naive_forward_workspace_bytes(host_executor const& exec, mla_dims const& d,
                                                   std::int64_t T, std::int64_t S) {
    nn::workspace_arena a;
    naive_fwd_layout<nn::workspace_arena> l(a, exec, d, T, S, true);
    return a.bytes();
  }

  static void naive_forward(host_executor const& exec, mla_dims const& d, matrix_view<float const> q,
                            matrix_view<float const> kv, matrix_view<float const> kr, std::int64_t q_pos0,
                            matrix_view<float> out, matrix_view<float> probs, std::span<std::byte> ws) {
    using host_detail::block;
    std::int64_t const T = q.rows, Su = q_pos0 + T, H = d.heads;
    std::int64_t const dn = d.qk_nope_head_dim, dr = d.qk_rope_head_dim, dv = d.v_head_dim;
    if (T == 0) return;
    bool const own = probs.data == nullptr;
    nn::host_scratch owned;
    ws = host_detail::workspace_or_own(ws, naive_forward_workspace_bytes(exec, d, T, Su), owned,
                                       "fp8moe::attention::mla_naive_forward");
    nn::workspace_arena arena(ws);
    naive_fwd_layout<nn::workspace_arena> l(arena, exec, d, T, Su, own);
    for (std::int64_t h = 0; h < H; ++h) {
      auto const p = own ? l.scores : block(probs, h * T, 0, T, Su);  // (T, Su)
      auto const qh = block(q, 0, h * (dn + dr), T, dn + dr);         // (T, dn+dr) [q_nope | q_rope]
      auto const v = block(kv, 0, h * (dn + dv) + dn, Su, dv);        // (Su, dv)
      // keys (Su, dn+dr) = [k_nope_h | k_rope]: one product for both parts of the score
      for (std::int64_t s = 0; s < Su; ++s) {
        float const* kn = kv.data + s * kv.row_stride + h * (dn + dv) * kv.col_stride;
        float const* krs = kr.data + s * kr.row_stride;
        float* dst = l.keys.row(s);
        for (std::int64_t c = 0; c < dn; ++c) dst[c] = kn[c * kv.col_stride];
        for (std::int64_t c = 0; c < dr; ++c) dst[dn + c] = krs[c * kr.col_stride];
      }
      for (std::int64_t r0 = 0; r0 < T; r0 += naive_block_rows) {
        std::int64_t const rows = std::min(naive_block_rows, T - r0), n = q_pos0 + r0 + rows;
        auto const pb = block(p, r0, 0, rows, n);  // (rows, n): the keys these queries can see
        nn::matmul(exec, block(qh, r0, 0, rows, dn + dr), nn::transposed(block(l.keys, 0, 0, n, dn + dr)), pb,
                   {d.softmax_scale, 0.0f}, l.mm);
        host_detail::causal_softmax(exec, pb, q_pos0 + r0, 1);
        nn::matmul(exec, matrix_view<float const>(pb), block(v, 0, 0, n, dv),
                   block(out, r0, h * dv, rows, dv), {}, l.mm);
        if (!own && n < Su) host_detail::zero_cols(block(p, r0, 0, rows, Su), n);
      }
    }
    if (!own) host_detail::zero_cols(probs, Su);
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
