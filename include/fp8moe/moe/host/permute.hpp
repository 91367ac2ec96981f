// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host path of the plan / permute / combine ops (permute_dispatch<host_executor>): a counting-sort
// plan build, memcpy row permute, the register-blocked FMA combine (detail::combine_tokens, shared
// with the expert-parallel combines) and both backwards, under OpenMP. Validated before writing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/nn/host/elementwise.hpp"
#include "fp8moe/scaling/quantized.hpp"

namespace fp8moe::moe {

namespace detail {

/// Builds the plan from ids (T,k): values in [0,E), or -1 for a slot not routed here (expert
/// parallelism). Stable: rows of one expert are in ascending (token, slot) order. Throws if the
/// routing does not fit (masked: a count above max_m; contiguous: more than plan.rows rows).
inline void build_permute_plan_host(matrix_view<std::int32_t const> ids, permute_plan const& p) {
  constexpr char const* where = "fp8moe::moe::build_permute_plan";
  detail::check_plan(p, where);
  check_matrix(ids, where, "ids");
  check_shape(ids, p.tokens, p.k, where, "ids");
  std::int64_t const T = p.tokens, k = p.k, E = p.experts;
  std::vector<std::int64_t> n(static_cast<std::size_t>(E), 0);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t j = 0; j < k; ++j) {
      std::int32_t const e = ids(t, j);
      if (e < -1 || e >= E)
        require(false, where, "ids", "values in [-1, E = " + std::to_string(E) + ")",
                detail::concat("ids(", t, ", ", j, ") = ", e));
      if (e >= 0) ++n[static_cast<std::size_t>(e)];
    }
  std::vector<std::int64_t> off(static_cast<std::size_t>(E + 1), 0);
  for (std::int64_t e = 0; e < E; ++e) {
    auto const c = n[static_cast<std::size_t>(e)];
    if (p.layout == layout_kind::masked) {
      if (c > p.align)
        require(false, where, "ids", "at most max_m = " + std::to_string(p.align) + " tokens per expert",
                detail::concat(c, " tokens for expert ", e));
      off[static_cast<std::size_t>(e + 1)] = (e + 1) * p.align;
    } else {
      off[static_cast<std::size_t>(e + 1)] = off[static_cast<std::size_t>(e)] + round_up(c, p.align);
    }
  }
  require(off[static_cast<std::size_t>(E)] <= p.rows, where, "plan.rows",
          ">= " + std::to_string(off[static_cast<std::size_t>(E)]) + " rows for this routing",
          std::to_string(p.rows));
  // validated: write
  std::fill_n(p.row_token, p.rows, -1);
  std::fill_n(p.row_slot, p.rows, -1);
  std::fill_n(p.row_expert, p.rows, -1);
  for (std::int64_t e = 0; e <= E; ++e)
    p.expert_offset[e] = static_cast<std::int32_t>(off[static_cast<std::size_t>(e)]);
  for (std::int64_t e = 0; e < E; ++e)
    p.counts[e] = static_cast<std::int32_t>(n[static_cast<std::size_t>(e)]);
  std::vector<std::int64_t> cursor(off.begin(), off.end() - 1);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t j = 0; j < k; ++j) {
      std::int32_t const e = ids(t, j);
      if (e < 0) {
        p.slot_row[t * k + j] = -1;
        continue;
      }
      auto const r = cursor[static_cast<std::size_t>(e)]++;
      p.row_token[r] = static_cast<std::int32_t>(t);
      p.row_slot[r] = static_cast<std::int32_t>(j);
      p.row_expert[r] = e;
      p.slot_row[t * k + j] = static_cast<std::int32_t>(r);
    }
}

template <class T>
void copy_row(T* dst, std::int64_t dst_stride, T const* src, std::int64_t src_stride, std::int64_t n) {
  if (dst_stride == 1 && src_stride == 1) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
  } else {
    for (std::int64_t c = 0; c < n; ++c) dst[c * dst_stride] = src[c * src_stride];
  }
}
template <class T>
void fill_row(T* dst, std::int64_t stride, std::int64_t n, T value) {
  for (std::int64_t c = 0; c < n; ++c) dst[c * stride] = value;
}

/// Rows a permute writes: every row of a contiguous plan below expert_offset[E] (padding zeroed),
/// or the first counts[e] rows of each masked segment (the others are left untouched).
inline bool row_is_written(permute_plan const& p, std::int64_t r) {
  return p.row_token[r] >= 0 || (p.layout == layout_kind::contiguous && r < p.expert_offset[p.experts]);
}

inline void check_slot_rows(permute_plan const& p, char const* where) {
  for (std::int64_t i = 0; i < p.tokens * p.k; ++i)
    if (p.slot_row[i] < -1 || p.slot_row[i] >= p.rows)
      require(false, where, "plan.slot_row", "values in [-1, rows = " + std::to_string(p.rows) + ")",
              concat("slot_row[", i, "] = ", p.slot_row[i]));
}

// The combine row kernel vectorises from plain C++ and is cloned for AVX-512 and AVX2+FMA
// (FP8MOE_HOST_SIMD_CLONES, nn/host/elementwise.hpp).
/// o[0..H) = sum_{j<n} w[j] * rows[j][0..H) (unit stride), acc = fma(w, y, acc) in FP32, j ascending,
/// rounded once to Out. Register-blocked: a block of 32 accumulators takes every row before it is
/// stored, so the accumulators never round-trip through memory.
template <class Y, class Out>
FP8MOE_HOST_SIMD_CLONES void combine_row(Y const* const* rows, float const* w, std::int64_t n, std::int64_t H,
                                         Out* o) {
  constexpr std::int64_t B = 32;
  std::int64_t h = 0;
  for (; h + B <= H; h += B) {
    float acc[B] = {};
    for (std::int64_t j = 0; j < n; ++j) {
      float const wj = w[j];
      Y const* yj = rows[j] + h;
      for (std::int64_t c = 0; c < B; ++c) acc[c] = std::fma(wj, static_cast<float>(yj[c]), acc[c]);
    }
    for (std::int64_t c = 0; c < B; ++c) o[h + c] = static_cast<Out>(acc[c]);
  }
  for (; h < H; ++h) {
    float a = 0.0f;
    for (std::int64_t j = 0; j < n; ++j) a = std::fma(w[j], static_cast<float>(rows[j][h]), a);
    o[h] = static_cast<Out>(a);
  }
}

/// The one host combine loop: out (T,H) token t = sum over j ascending of w(t,j) * row_of(t,j)
/// (nullptr = slot not routed; w = 1 when weights is empty), as combine_row. row_of returns rows
/// with column stride y_col_stride. moe::combine and the expert-parallel combines (whose rows live
/// in more than one buffer) all reduce through here.
template <class Out, class RowOf>
void combine_tokens(host_executor const& exec, std::int64_t T, std::int64_t k, std::int64_t H,
                    std::int64_t y_col_stride, RowOf const& row_of, matrix_view<float const> weights,
                    matrix_view<Out> out) {
  using Y = std::remove_const_t<
      std::remove_pointer_t<std::invoke_result_t<RowOf const&, std::int64_t, std::int64_t>>>;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(exec.num_threads()) if (T * H * k > 65536)
#endif
  {
    std::vector<Y const*> rows(static_cast<std::size_t>(k));
    std::vector<float> w(static_cast<std::size_t>(k)), acc;
#if FP8MOE_HAS_OPENMP
#pragma omp for schedule(static)
#endif
    for (std::int64_t t = 0; t < T; ++t) {
      std::int64_t n = 0;
      for (std::int64_t j = 0; j < k; ++j) {
        Y const* r = row_of(t, j);
        if (!r) continue;
        rows[static_cast<std::size_t>(n)] = r;
        w[static_cast<std::size_t>(n++)] = weights.rows ? weights(t, j) : 1.0f;
      }
      Out* o = out.row(t);
      if (y_col_stride == 1 && out.col_stride == 1) {
        combine_row(rows.data(), w.data(), n, H, o);
        continue;
      }
      acc.assign(static_cast<std::size_t>(H), 0.0f);  // strided views: the same arithmetic, plain loops
      for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t h = 0; h < H; ++h)
          acc[static_cast<std::size_t>(h)] =
              std::fma(w[static_cast<std::size_t>(j)],
                       static_cast<float>(rows[static_cast<std::size_t>(j)][h * y_col_stride]),
                       acc[static_cast<std::size_t>(h)]);
      for (std::int64_t h = 0; h < H; ++h)
        o[h * out.col_stride] = static_cast<Out>(acc[static_cast<std::size_t>(h)]);
    }
  }
  (void)exec;
}

template <class Layout>
host_permute_plan make_plan(route_result const& r, Layout l, std::int64_t E) {
  std::int64_t rows = 0;
  if constexpr (std::is_same_v<Layout, contiguous>) {
    host_permute_plan::check_layout(l, r.ids.rows(), r.ids.cols(), E);
    rows = contiguous_rows(l, r.counts.data(), E);
  } else {
    rows = plan_rows(l, r.ids.rows(), r.ids.cols(), E);
  }
  host_permute_plan plan(l, r.ids.rows(), r.ids.cols(), E, rows);
  build_permute_plan_host(r.ids.view(), plan.view());
  return plan;
}

}  // namespace detail

template <>
struct permute_dispatch<host_executor> {
  /// The host plan build needs no caller scratch.
  static std::size_t workspace_bytes(host_executor const&, plan_shape const&) { return 0; }
  static void build_permute_plan(host_executor const&, matrix_view<std::int32_t const> ids,
                                 permute_plan const& p, device_workspace) {
    detail::build_permute_plan_host(ids, p);
  }

  template <class T>
  static void permute(host_executor const& exec, permute_plan const& p, matrix_view<T const> x,
                      matrix_view<T> out, T pad) {
    constexpr char const* where = "fp8moe::moe::permute";
    detail::check_plan(p, where);
    check_matrix(x, where, "x");
    require(x.rows == p.tokens, where, "x", std::to_string(p.tokens) + " rows (T)", std::to_string(x.rows));
    check_matrix(out, where, "out");
    check_shape(out, p.rows, x.cols, where, "out");
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(nn::host::elementwise_threads(exec, p.rows* x.cols)) schedule(static)
#endif
    for (std::int64_t r = 0; r < p.rows; ++r) {
      std::int32_t const t = p.row_token[r];
      if (t >= 0)
        detail::copy_row(out.row(r), out.col_stride, x.row(t), x.col_stride, x.cols);
      else if (detail::row_is_written(p, r))
        detail::fill_row(out.row(r), out.col_stride, out.cols, pad);
    }
    (void)exec;
  }

  template <class F>
  static void permute(host_executor const& exec, permute_plan const& p,
                      scaling::quantized_matrix_view<F const> x, scaling::quantized_matrix_view<F> out) {
    constexpr char const* where = "fp8moe::moe::permute";
    require(x.tile_rows() == 1 && out.tile_rows() == 1, where, "x.tile / out.tile",
            "per-row (1 x n) scale tiles so rows can move independently");
    require(x.tile.cols == out.tile.cols, where, "out.tile", "the tile of x");
    check_shape(out.scales, p.rows, x.scales.cols, where, "out.scales");
    permute(exec, p, x.data, out.data, F{});
    for (std::int64_t r = 0; r < p.rows; ++r) {
      std::int32_t const t = p.row_token[r];
      if (t >= 0) {
        for (std::int64_t c = 0; c < x.scales.cols; ++c) out.scales(r, c) = x.scales(t, c);
      } else if (detail::row_is_written(p, r)) {
        for (std::int64_t c = 0; c < x.scales.cols; ++c) out.scales(r, c) = 1.0f;
      }
    }
  }

  static void permute_weights(host_executor const&, permute_plan const& p, matrix_view<float const> weights,
                              vector_view<float> out) {
    constexpr char const* where = "fp8moe::moe::permute_weights";
    detail::check_plan(p, where);
    check_matrix(weights, where, "weights");
    check_shape(weights, p.tokens, p.k, where, "weights");
    require(out.size == p.rows && (p.rows == 0 || out.data), where, "out",
            std::to_string(p.rows) + " entries", std::to_string(out.size));
    for (std::int64_t r = 0; r < p.rows; ++r)
      out[r] = p.row_token[r] >= 0 ? weights(p.row_token[r], p.row_slot[r]) : 0.0f;
  }

  template <class Y, class Out>
  static void combine(host_executor const& exec, permute_plan const& p, matrix_view<Y> y,
                      matrix_view<float const> weights, matrix_view<Out> out) {
    constexpr char const* where = "fp8moe::moe::combine";
    detail::check_combine_args(p, y, weights, out, where);
    detail::check_slot_rows(p, where);
    std::int64_t const k = p.k;
    detail::combine_tokens(
        exec, p.tokens, k, y.cols, y.col_stride,
        [&](std::int64_t t, std::int64_t j) -> Y const* {
          std::int32_t const r = p.slot_row[t * k + j];
          return r < 0 ? nullptr : y.row(r);
        },
        weights, out);
  }

  template <class G, class Out>
  static void permute_backward(host_executor const& exec, permute_plan const& p, matrix_view<G> dout,
                               matrix_view<Out> dx) {
    combine(exec, p, dout, matrix_view<float const>{}, dx);
  }

  template <class Y, class G, class DY>
  static void combine_backward(host_executor const& exec, permute_plan const& p, matrix_view<Y> y,
                               matrix_view<float const> weights, matrix_view<G> dout, matrix_view<DY> dy,
                               matrix_view<float> dweights) {
    constexpr char const* where = "fp8moe::moe::combine_backward";
    detail::check_combine_backward_args(p, y, weights, dout, dy, dweights, where);
    detail::check_slot_rows(p, where);
    std::int64_t const H = y.cols, k = p.k;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t r = 0; r < p.rows; ++r) {
      std::int32_t const t = p.row_token[r];
      DY* d = dy.row(r);
      if (t < 0) {
        detail::fill_row(d, dy.col_stride, H, DY{});
        continue;
      }
      float const w = weights.rows ? weights(t, p.row_slot[r]) : 1.0f;
      G const* g = dout.row(t);
      for (std::int64_t h = 0; h < H; ++h)
        d[h * dy.col_stride] = static_cast<DY>(w * static_cast<float>(g[h * dout.col_stride]));
    }
    if (dweights.rows) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
      for (std::int64_t t = 0; t < p.tokens; ++t)
        for (std::int64_t j = 0; j < k; ++j) {
          std::int32_t const r = p.slot_row[t * k + j];
          float dot = 0.0f;
          if (r >= 0)
            for (std::int64_t h = 0; h < H; ++h)
              dot += static_cast<float>(dout(t, h)) * static_cast<float>(y(r, h));
          dweights(t, j) = dot;
        }
    }
    (void)exec;
  }

  /// Allocating permute of rows: plan sized exactly for this routing + permuted rows + row weights.
  template <class S, class Layout>
  static permuted<host_matrix<std::remove_const_t<S>>> permute(host_executor const& exec,
                                                               matrix_view<S> const& x, route_result const& r,
                                                               Layout l) {
    using T = std::remove_const_t<S>;
    auto const E = static_cast<std::int64_t>(r.counts.size());
    permuted<host_matrix<T>> out{detail::make_plan(r, l, E), {}, {}};
    out.x = host_matrix<T>(out.plan.view().rows, x.cols);
    out.weights.resize(static_cast<std::size_t>(out.plan.view().rows));
    permute(exec, out.plan.view(), matrix_view<T const>(x), out.x.view(), T{});
    permute_weights(exec, out.plan.view(), r.weights.view(),
                    make_vector(out.weights.data(), out.plan.view().rows));
    return out;
  }

  /// Allocating permute of FP8 rows with their per-row scales.
  template <class FS, class Layout>
  static permuted<scaling::quantized_matrix<std::remove_const_t<FS>>> permute(
      host_executor const& exec, scaling::quantized_matrix_view<FS> const& x, route_result const& r,
      Layout l) {
    using F = std::remove_const_t<FS>;
    auto const E = static_cast<std::int64_t>(r.counts.size());
    permuted<scaling::quantized_matrix<F>> out{detail::make_plan(r, l, E), {}, {}};
    out.x = scaling::quantized_matrix<F>(out.plan.view().rows, x.cols(), x.tile);
    out.weights.resize(static_cast<std::size_t>(out.plan.view().rows));
    permute(exec, out.plan.view(), scaling::quantized_matrix_view<F const>(x), out.x.view());
    permute_weights(exec, out.plan.view(), r.weights.view(),
                    make_vector(out.weights.data(), out.plan.view().rows));
    return out;
  }
};

}  // namespace fp8moe::moe
