// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Local dispatch / combine: a permute plan (expert-major, stable within an expert) in the grouped
// GEMM layouts (contiguous: segments padded to m_align with -1 row ids; masked: [E, max_m] + counts),
// permute of BF16/FP32/FP8(+1x128 scales) rows, weighted combine with FP32 accumulation in slot order
// (bit-reproducible, no atomics), and both backwards. Outputs are overwritten; host path here.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/scaling/quantized.hpp"

namespace fp8moe::moe {

/// Grouped-contiguous layout: expert segments back to back, each padded to a multiple of m_align
/// rows (DeepGEMM m_grouped_fp8_gemm_nt_contiguous: per-row expert id, -1 on padding rows).
struct contiguous {
  int m_align = 128;
};
/// Grouped-masked layout: (E, max_m, H), expert e's rows at [e*max_m, e*max_m + counts[e]).
struct masked {
  std::int64_t max_m = 0;
};

enum class layout_kind : std::uint8_t { contiguous, masked };

/// The permute plan: which source (token, slot) each permuted row holds and the inverse map.
/// Non-owning; the arrays live on the device that runs the ops (host or CUDA). int32 throughout.
struct permute_plan {
  layout_kind layout = layout_kind::contiguous;
  std::int64_t tokens = 0;                ///< T
  std::int64_t k = 0;                     ///< slots per token
  std::int64_t experts = 0;               ///< E (local experts)
  std::int64_t rows = 0;                  ///< M: row capacity (contiguous) or E * max_m (masked)
  std::int64_t align = 1;                 ///< m_align (contiguous) or max_m (masked)
  std::int32_t* row_token = nullptr;      ///< (M) source token of each row; -1 on padding
  std::int32_t* row_slot = nullptr;       ///< (M) top-k slot of each row; -1 on padding
  std::int32_t* row_expert = nullptr;     ///< (M) expert of each row; -1 on padding (DeepGEMM m_indices)
  std::int32_t* slot_row = nullptr;       ///< (T,k) permuted row of (token, slot); -1 if not routed here
  std::int32_t* expert_offset = nullptr;  ///< (E+1) first row of each segment; [E] = rows in use
  std::int32_t* counts = nullptr;         ///< (E) tokens per expert (masked_m for the masked layout)
};

/// Row capacity that fits any routing of T tokens x k slots over E experts.
constexpr std::int64_t plan_rows(contiguous l, std::int64_t T, std::int64_t k, std::int64_t E) {
  std::int64_t const a = l.m_align;
  return (T * k + E * (a - 1)) / a * a;  // sum_e round_up(c_e, a) <= T k + E (a-1), and a multiple of a
}
constexpr std::int64_t plan_rows(masked l, std::int64_t, std::int64_t, std::int64_t E) {
  return E * l.max_m;
}

/// Rows in use by a contiguous layout with these counts: sum_e round_up(counts[e], m_align).
template <class Count>
std::int64_t contiguous_rows(contiguous l, Count const* counts, std::int64_t E) {
  std::int64_t m = 0;
  for (std::int64_t e = 0; e < E; ++e) m += round_up<std::int64_t>(counts[e], l.m_align);
  return m;
}

/// Owning host plan; `view()` is the permute_plan.
class host_permute_plan {
 public:
  host_permute_plan() = default;
  template <class Layout>
  host_permute_plan(Layout l, std::int64_t T, std::int64_t k, std::int64_t E, std::int64_t rows = -1) {
    constexpr bool is_masked = std::is_same_v<Layout, masked>;
    check_layout(l, T, k, E);
    p_.layout = is_masked ? layout_kind::masked : layout_kind::contiguous;
    p_.tokens = T;
    p_.k = k;
    p_.experts = E;
    if constexpr (is_masked) {
      p_.align = l.max_m;
    } else {
      p_.align = l.m_align;
    }
    p_.rows = rows >= 0 ? rows : plan_rows(l, T, k, E);
    auto const M = static_cast<std::size_t>(p_.rows);
    row_token_.resize(M);
    row_slot_.resize(M);
    row_expert_.resize(M);
    slot_row_.resize(static_cast<std::size_t>(T * k));
    expert_offset_.resize(static_cast<std::size_t>(E + 1));
    counts_.resize(static_cast<std::size_t>(E));
    p_.row_token = row_token_.data();
    p_.row_slot = row_slot_.data();
    p_.row_expert = row_expert_.data();
    p_.slot_row = slot_row_.data();
    p_.expert_offset = expert_offset_.data();
    p_.counts = counts_.data();
  }
  host_permute_plan(host_permute_plan&&) = default;
  host_permute_plan& operator=(host_permute_plan&&) = default;
  host_permute_plan(host_permute_plan const&) = delete;

  permute_plan const& view() const& { return p_; }
  /// A plan view of a temporary would dangle once the statement ends: keep the owner first.
  void view() const&& = delete;
  std::int64_t rows_in_use() const { return expert_offset_.empty() ? 0 : expert_offset_.back(); }
  std::vector<std::int32_t> const& row_token() const { return row_token_; }
  std::vector<std::int32_t> const& row_slot() const { return row_slot_; }
  std::vector<std::int32_t> const& row_expert() const { return row_expert_; }
  std::vector<std::int32_t> const& slot_row() const { return slot_row_; }
  std::vector<std::int32_t> const& expert_offset() const { return expert_offset_; }
  std::vector<std::int32_t> const& counts() const { return counts_; }

  template <class Layout>
  static void check_layout(Layout l, std::int64_t T, std::int64_t k, std::int64_t E) {
    constexpr char const* where = "fp8moe::moe::permute_plan";
    require(T >= 0 && k >= 1 && E >= 1, where, "T, k, E", "T >= 0, k >= 1, E >= 1",
            detail::concat(T, ", ", k, ", ", E));
    if constexpr (std::is_same_v<Layout, masked>) {
      require(l.max_m >= 1, where, "masked.max_m", ">= 1", std::to_string(l.max_m));
    } else {
      require(l.m_align >= 1, where, "contiguous.m_align", ">= 1", std::to_string(l.m_align));
    }
    require(T * k + E * (plan_rows(l, 1, 1, 1) + 1) <= std::numeric_limits<std::int32_t>::max(), where,
            "T, k, E", "row indices that fit int32");
  }

 private:
  permute_plan p_{};
  std::vector<std::int32_t> row_token_, row_slot_, row_expert_, slot_row_, expert_offset_, counts_;
};

namespace detail {

inline void check_plan(permute_plan const& p, char const* where) {
  require(p.tokens >= 0 && p.k >= 1 && p.experts >= 1 && p.rows >= 0 && p.align >= 1, where, "plan",
          "T >= 0, k >= 1, E >= 1, rows >= 0, align >= 1");
  require(p.rows == 0 || (p.row_token && p.row_slot && p.row_expert), where, "plan", "non-null row arrays");
  require((p.tokens == 0 || p.slot_row) && p.expert_offset && p.counts, where, "plan",
          "non-null slot_row (T > 0), expert_offset and counts");
  if (p.layout == layout_kind::masked)
    require(p.rows == p.experts * p.align, where, "plan.rows", "E * max_m", std::to_string(p.rows));
}

}  // namespace detail

/// Builds the plan from ids (T,k): values in [0,E), or -1 for a slot not routed here (expert
/// parallelism). Stable: rows of one expert are in ascending (token, slot) order. Throws if the
/// routing does not fit (masked: a count above max_m; contiguous: more than plan.rows rows).
inline void build_permute_plan(host_executor const&, matrix_view<std::int32_t const> ids,
                               permute_plan const& p) {
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

namespace detail {

template <class T>
void copy_row(T* dst, std::int64_t dst_stride, T const* src, std::int64_t src_stride, std::int64_t n) {
  if (dst_stride == 1 && src_stride == 1) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
  } else {
    for (std::int64_t c = 0; c < n; ++c) dst[c * dst_stride] = src[c * src_stride];
  }
}
template <class T>
void zero_row(T* dst, std::int64_t stride, std::int64_t n) {
  for (std::int64_t c = 0; c < n; ++c) dst[c * stride] = T{};
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

// The combine row kernel vectorises from plain C++; on x86-64 Linux with GCC it is also cloned for
// AVX-512 and AVX2+FMA (picked at load time). GCC's -O3 unroll-and-jam of the slot loop defeats the
// register blocking (4-5x slower, measured), so it is switched off for this function only.
// Not under TSan: it instruments the load-time (ifunc) resolver, which runs before TSan is set up.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !FP8MOE_CUDA_COMPILER && !defined(__SANITIZE_THREAD__)
#define FP8MOE_COMBINE_CLONES                                                  \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), \
                 optimize("no-loop-unroll-and-jam")))
#else
#define FP8MOE_COMBINE_CLONES
#endif

/// o[0..H) = sum_{j<n} w[j] * rows[j][0..H) (unit stride), acc = fma(w, y, acc) in FP32, j ascending,
/// rounded once to Out. Register-blocked: a block of 32 accumulators takes every row before it is
/// stored, so the accumulators never round-trip through memory.
template <class Y, class Out>
FP8MOE_COMBINE_CLONES void combine_row(Y const* const* rows, float const* w, std::int64_t n, std::int64_t H,
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

/// The argument checks of combine shared by the host and device overloads (views only, no data
/// read): the plan's slot_row, y (M,H), weights empty or (T,k), out (T,H).
template <class Y, class Out>
void check_combine_args(permute_plan const& p, matrix_view<Y> const& y,
                        matrix_view<float const> const& weights, matrix_view<Out> const& out,
                        char const* where) {
  require(p.tokens >= 0 && p.k >= 1 && (p.tokens == 0 || p.slot_row != nullptr), where, "plan",
          "T >= 0, k >= 1, slot_row");
  check_matrix(y, where, "y");
  require(y.rows == p.rows, where, "y", std::to_string(p.rows) + " rows (M)", std::to_string(y.rows));
  require(weights.rows == 0 || (weights.rows == p.tokens && weights.cols == p.k), where, "weights",
          "empty or (T,k) = " + fp8moe::detail::shape_string(p.tokens, p.k),
          fp8moe::detail::shape_string(weights.rows, weights.cols));
  check_matrix(out, where, "out");
  check_shape(out, p.tokens, y.cols, where, "out");
}

/// The argument checks of combine_backward shared by the host and device overloads (views only):
/// the plan, y (M,H), weights and dweights empty or (T,k), dout (T,H), dy (M,H).
template <class Y, class G, class DY>
void check_combine_backward_args(permute_plan const& p, matrix_view<Y> const& y,
                                 matrix_view<float const> const& weights, matrix_view<G> const& dout,
                                 matrix_view<DY> const& dy, matrix_view<float> const& dweights,
                                 char const* where) {
  check_plan(p, where);
  check_matrix(y, where, "y");
  require(y.rows == p.rows, where, "y", std::to_string(p.rows) + " rows (M)", std::to_string(y.rows));
  require(weights.rows == 0 || (weights.rows == p.tokens && weights.cols == p.k), where, "weights",
          "empty or (T,k)");
  check_matrix(dout, where, "dout");
  check_shape(dout, p.tokens, y.cols, where, "dout");
  check_matrix(dy, where, "dy");
  check_shape(dy, p.rows, y.cols, where, "dy");
  require(dweights.rows == 0 || (dweights.rows == p.tokens && dweights.cols == p.k), where, "dweights",
          "empty or (T,k)");
}

}  // namespace detail

/// out (M,H) row r = x (T,H) row row_token[r]; contiguous padding rows below expert_offset[E] are
/// zeroed; masked rows past counts[e] are not written.
template <class S, class T>
requires std::same_as<std::remove_const_t<S>, T>
void permute(host_executor const& exec, permute_plan const& p, matrix_view<S> x, matrix_view<T> out) {
  constexpr char const* where = "fp8moe::moe::permute";
  detail::check_plan(p, where);
  check_matrix(x, where, "x");
  require(x.rows == p.tokens, where, "x", std::to_string(p.tokens) + " rows (T)", std::to_string(x.rows));
  check_matrix(out, where, "out");
  check_shape(out, p.rows, x.cols, where, "out");
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
  for (std::int64_t r = 0; r < p.rows; ++r) {
    std::int32_t const t = p.row_token[r];
    if (t >= 0)
      detail::copy_row(out.row(r), out.col_stride, x.row(t), x.col_stride, x.cols);
    else if (detail::row_is_written(p, r))
      detail::zero_row(out.row(r), out.col_stride, out.cols);
  }
  (void)exec;
}

/// FP8 rows with per-token (1 x tile) scales: data (T,H) and scales (T,H/128) follow the same plan.
/// Padding rows get zero data and scale 1.
template <class FS, class F>
requires std::same_as<std::remove_const_t<FS>, F>
void permute(host_executor const& exec, permute_plan const& p, scaling::quantized_matrix_view<FS> x,
             scaling::quantized_matrix_view<F> out) {
  scaling::quantized_matrix_view<F const> const xc = x;
  constexpr char const* where = "fp8moe::moe::permute";
  require(x.tile_rows() == 1 && out.tile_rows() == 1, where, "x.tile / out.tile",
          "per-row (1 x n) scale tiles so rows can move independently");
  require(x.tile.cols == out.tile.cols, where, "out.tile", "the tile of x");
  check_shape(out.scales, p.rows, x.scales.cols, where, "out.scales");
  permute(exec, p, xc.data, out.data);
  for (std::int64_t r = 0; r < p.rows; ++r) {
    std::int32_t const t = p.row_token[r];
    if (t >= 0) {
      for (std::int64_t c = 0; c < x.scales.cols; ++c) out.scales(r, c) = xc.scales(t, c);
    } else if (detail::row_is_written(p, r)) {
      for (std::int64_t c = 0; c < x.scales.cols; ++c) out.scales(r, c) = 1.0f;
    }
  }
}

/// Per-row routing weight: out (M) row r = weights(row_token[r], row_slot[r]); 0 on padding rows.
inline void permute_weights(host_executor const&, permute_plan const& p, matrix_view<float const> weights,
                            vector_view<float> out) {
  constexpr char const* where = "fp8moe::moe::permute_weights";
  detail::check_plan(p, where);
  check_matrix(weights, where, "weights");
  check_shape(weights, p.tokens, p.k, where, "weights");
  require(out.size == p.rows && (p.rows == 0 || out.data), where, "out", std::to_string(p.rows) + " entries",
          std::to_string(out.size));
  for (std::int64_t r = 0; r < p.rows; ++r)
    out[r] = p.row_token[r] >= 0 ? weights(p.row_token[r], p.row_slot[r]) : 0.0f;
}

/// Combine: out (T,H) token t = sum_{j=0..k-1, slot_row[t,j] >= 0} w(t,j) * y(slot_row[t,j]), in FP32,
/// j ascending, each term fused (acc = fma(w, y, acc): one rounding per term, the same bits on the
/// host, on the GPU and under any -ffp-contract), bit-reproducible. weights (T,k) empty = unweighted
/// sum (w = 1, so each term is an exact add). y any float-convertible type; out float or
/// bfloat16_t (rounded once at the end). Reads only plan.slot_row, so any producer of rows (local
/// permute, expert-parallel receive buffers) can use it.
template <class Y, class Out>
void combine(host_executor const& exec, permute_plan const& p, matrix_view<Y> y,
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

/// Backward of permute: dx (T,H) = sum over the slots of token t of dout (M,H) row slot_row[t,j].
template <class G, class Out>
void permute_backward(host_executor const& exec, permute_plan const& p, matrix_view<G> dout,
                      matrix_view<Out> dx) {
  combine(exec, p, dout, matrix_view<float const>{}, dx);
}

/// Backward of combine: dy (M,H) row r = w(t,j) * dout(t) for r = slot_row[t,j] (0 on padding rows);
/// dweights (T,k) = <dout(t), y(slot_row[t,j])> in FP32 (0 where slot_row = -1). Both overwritten.
/// With weights empty (unweighted combine) dy = dout rows and dweights may be empty.
template <class Y, class G, class DY>
void combine_backward(host_executor const& exec, permute_plan const& p, matrix_view<Y> y,
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
      detail::zero_row(d, dy.col_stride, H);
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

// ------------------------------------------------------------------------------------------------
// Allocating conveniences (host): plan sized exactly for this routing + permuted rows + row weights.

template <class Rows>
struct permuted {
  host_permute_plan plan;
  Rows x;                      // (M,H) permuted rows (host_matrix or scaling::quantized_matrix)
  std::vector<float> weights;  // (M) routing weight of each row, 0 on padding
};

namespace detail {
template <class Layout>
host_permute_plan make_plan(host_executor const& exec, route_result const& r, Layout l, std::int64_t E) {
  std::int64_t rows = 0;
  if constexpr (std::is_same_v<Layout, contiguous>) {
    host_permute_plan::check_layout(l, r.ids.rows(), r.ids.cols(), E);
    rows = contiguous_rows(l, r.counts.data(), E);
  } else {
    rows = plan_rows(l, r.ids.rows(), r.ids.cols(), E);
  }
  host_permute_plan plan(l, r.ids.rows(), r.ids.cols(), E, rows);
  build_permute_plan(exec, r.ids.view(), plan.view());
  return plan;
}
}  // namespace detail

/// permute(exec, x, route(...), contiguous{.m_align = 128}): plan + rows + row weights.
template <class S, class Layout, class T = std::remove_const_t<S>>
requires(std::is_same_v<Layout, contiguous> ||
         std::is_same_v<Layout, masked>) permuted<host_matrix<T>> permute(host_executor const& exec,
                                                                          matrix_view<S> x,
                                                                          route_result const& r, Layout l) {
  auto const E = static_cast<std::int64_t>(r.counts.size());
  permuted<host_matrix<T>> out{detail::make_plan(exec, r, l, E), {}, {}};
  out.x = host_matrix<T>(out.plan.view().rows, x.cols);
  out.weights.resize(static_cast<std::size_t>(out.plan.view().rows));
  permute(exec, out.plan.view(), x, out.x.view());
  permute_weights(exec, out.plan.view(), r.weights.view(),
                  make_vector(out.weights.data(), out.plan.view().rows));
  return out;
}

/// FP8 rows with their per-row scales.
template <class FS, class Layout, class F = std::remove_const_t<FS>>
requires(std::is_same_v<Layout, contiguous> || std::is_same_v<Layout, masked>)
    permuted<scaling::quantized_matrix<F>> permute(host_executor const& exec,
                                                   scaling::quantized_matrix_view<FS> x,
                                                   route_result const& r, Layout l) {
  auto const E = static_cast<std::int64_t>(r.counts.size());
  permuted<scaling::quantized_matrix<F>> out{detail::make_plan(exec, r, l, E), {}, {}};
  out.x = scaling::quantized_matrix<F>(out.plan.view().rows, x.cols(), x.tile);
  out.weights.resize(static_cast<std::size_t>(out.plan.view().rows));
  permute(exec, out.plan.view(), x, out.x.view());
  permute_weights(exec, out.plan.view(), r.weights.view(),
                  make_vector(out.weights.data(), out.plan.view().rows));
  return out;
}

}  // namespace fp8moe::moe
