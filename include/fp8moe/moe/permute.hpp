// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Local dispatch / combine: a permute plan (expert-major, stable within an expert) in the grouped
// GEMM layouts (contiguous: segments padded to m_align with -1 row ids; masked: [E, max_m] + counts),
// permute of BF16/FP32/FP8(+1x128 scales) rows, weighted combine with FP32 accumulation in slot order
// (bit-reproducible, no atomics), and both backwards. Outputs are overwritten. One entry template per
// op on the `executor` concept, forwarding to permute_dispatch<Exec> (host: moe/host/permute.hpp,
// included below; CUDA: moe/cuda/permute.cuh).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/core/dispatch.hpp"
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

namespace detail {

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

/// Per-executor implementations of the plan / permute / combine ops: permute_dispatch<host_executor>
/// in moe/host/permute.hpp, permute_dispatch<cuda_executor> in moe/cuda/permute.cuh.
template <class Exec>
struct permute_dispatch;

/// The layouts a plan can have.
template <class Layout>
concept permute_layout = std::same_as<Layout, contiguous> || std::same_as<Layout, masked>;

/// The shape of a plan build, the argument of its workspace query: T tokens x k slots over E experts.
struct plan_shape {
  std::int64_t tokens = 0;   ///< T
  std::int64_t k = 0;        ///< slots per token
  std::int64_t experts = 0;  ///< E
};

/// Bytes of scratch build_permute_plan needs on `exec` for this shape (the `ws` it takes): 0 on the
/// host (it needs none); on the device the CUB radix-sort and scan scratch.
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, plan_shape const& s) {
  using D = permute_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::workspace_bytes: this executor has no permute path; for cuda_executor include "
                "\"fp8moe/moe/cuda/permute.cuh\" (nvcc)");
  require(s.tokens >= 0 && s.k >= 1 && s.experts >= 1, "fp8moe::moe::workspace_bytes", "plan_shape",
          "tokens >= 0, k >= 1, experts >= 1", detail::concat(s.tokens, ", ", s.k, ", ", s.experts));
  if constexpr (has_dispatch<D>)
    return D::workspace_bytes(exec, s);
  else
    return 0;
}

/// Builds the plan from ids (T,k): values in [0,E), or -1 for a slot not routed here (expert
/// parallelism). Stable: rows of one expert are in ascending (token, slot) order. Host: throws if the
/// routing does not fit (masked: a count above max_m; contiguous: more than plan.rows rows).
/// Device: ids and the plan's arrays in device memory, `ws` of workspace_bytes(exec, plan_shape{T, k, E}),
/// p.rows >= plan_rows(layout, T, k, E) for contiguous, a masked count above max_m drops the extra
/// slots (slot_row = -1); the same arrays as the host, bit for bit.
template <executor Exec>
void build_permute_plan(Exec const& exec, matrix_view<std::int32_t const> ids, permute_plan const& p,
                        device_workspace ws = {}) {
  using D = permute_dispatch<executor_t<Exec>>;
  static_assert(
      has_dispatch<D>,
      "fp8moe::moe::build_permute_plan: this executor has no permute path; for cuda_executor include "
      "\"fp8moe/moe/cuda/permute.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::build_permute_plan(exec, ids, p, ws);
}

/// out (M,H) row r = x (T,H) row row_token[r]; contiguous padding rows below expert_offset[E] are
/// set to `pad` (default zero); masked rows past counts[e] are not written.
template <executor Exec, class S, class T>
requires std::same_as<std::remove_const_t<S>, T>
void permute(Exec const& exec, permute_plan const& p, matrix_view<S> x, matrix_view<T> out, T pad = T{}) {
  using D = permute_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::permute: this executor has no permute path; for cuda_executor include "
                "\"fp8moe/moe/cuda/permute.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::permute(exec, p, matrix_view<T const>(x), out, pad);
}

/// FP8 rows with per-token (1 x tile) scales: data (T,H) and scales (T,H/128) follow the same plan.
/// Padding rows get zero data and scale 1.
template <executor Exec, class FS, class F>
requires std::same_as<std::remove_const_t<FS>, F>
void permute(Exec const& exec, permute_plan const& p, scaling::quantized_matrix_view<FS> x,
             scaling::quantized_matrix_view<F> out) {
  using D = permute_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::permute: this executor has no permute path; for cuda_executor include "
                "\"fp8moe/moe/cuda/permute.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::permute(exec, p, scaling::quantized_matrix_view<F const>(x), out);
}

/// Per-row routing weight: out (M) row r = weights(row_token[r], row_slot[r]); 0 on padding rows.
template <executor Exec>
void permute_weights(Exec const& exec, permute_plan const& p, matrix_view<float const> weights,
                     vector_view<float> out) {
  using D = permute_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::permute_weights: this executor has no permute path; for cuda_executor include "
                "\"fp8moe/moe/cuda/permute.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::permute_weights(exec, p, weights, out);
}

/// Combine (unpermute): out (T,H) token t = sum_{j=0..k-1, slot_row[t,j] >= 0} w(t,j) * y(slot_row[t,j]),
/// in FP32, j ascending, each term fused (acc = fma(w, y, acc): one rounding per term, the same bits on
/// the host, on the GPU and under any -ffp-contract), bit-reproducible. weights (T,k) empty = unweighted
/// sum (w = 1, so each term is an exact add). y any float-convertible type; out float or bfloat16_t
/// (rounded once at the end). Reads only plan.slot_row, so any producer of rows (local permute,
/// expert-parallel receive buffers) can use it.
template <executor Exec, class Y, class Out>
void combine(Exec const& exec, permute_plan const& p, matrix_view<Y> y, matrix_view<float const> weights,
             matrix_view<Out> out) {
  using D = permute_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::combine: this executor has no permute path; for cuda_executor include "
                "\"fp8moe/moe/cuda/permute.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::combine(exec, p, y, weights, out);
}

/// Backward of permute: dx (T,H) = sum over the slots of token t of dout (M,H) row slot_row[t,j]
/// (the unweighted combine).
template <executor Exec, class G, class Out>
void permute_backward(Exec const& exec, permute_plan const& p, matrix_view<G> dout, matrix_view<Out> dx) {
  using D = permute_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::permute_backward: this executor has no permute path; for cuda_executor include "
                "\"fp8moe/moe/cuda/permute.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::permute_backward(exec, p, dout, dx);
}

/// Backward of combine: dy (M,H) row r = w(t,j) * dout(t) for r = slot_row[t,j] (0 on padding rows);
/// dweights (T,k) = <dout(t), y(slot_row[t,j])> in FP32 (0 where slot_row = -1). Both overwritten.
/// With weights empty (unweighted combine) dy = dout rows and dweights may be empty.
template <executor Exec, class Y, class G, class DY>
void combine_backward(Exec const& exec, permute_plan const& p, matrix_view<Y> y,
                      matrix_view<float const> weights, matrix_view<G> dout, matrix_view<DY> dy,
                      matrix_view<float> dweights) {
  using D = permute_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::combine_backward: this executor has no permute path; for cuda_executor include "
                "\"fp8moe/moe/cuda/permute.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::combine_backward(exec, p, y, weights, dout, dy, dweights);
}

/// Owning result of the allocating permute() on the host: the plan, the permuted rows (host_matrix or
/// scaling::quantized_matrix) and the routing weight of each row. (On the device: device_permuted,
/// moe/cuda/permute.cuh.)
template <class Rows>
struct permuted {
  host_permute_plan plan;
  Rows x;                      // (M,H) permuted rows (host_matrix or scaling::quantized_matrix)
  std::vector<float> weights;  // (M) routing weight of each row, 0 on padding
};

/// Allocating permute: permute(exec, x, route(exec, ...), contiguous{.m_align = 128}) returns the plan,
/// the permuted rows of x (a matrix_view, or a quantized_matrix_view with per-row scale tiles) and each
/// row's routing weight, owned in the executor's memory. `r` is the allocating route's result of the
/// same executor. Host: a contiguous plan has exactly contiguous_rows(counts) rows. Device: everything
/// enqueued on exec.stream without a sync, so a contiguous plan has the capacity plan_rows(layout, T, k, E).
template <executor Exec, class X, class Routing, permute_layout Layout>
auto permute(Exec const& exec, X const& x, Routing const& r, Layout l) {
  using D = permute_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::permute: this executor has no permute path; for cuda_executor include "
                "\"fp8moe/moe/cuda/permute.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) return D::permute(exec, x, r, l);
}

}  // namespace fp8moe::moe

#include "fp8moe/moe/host/permute.hpp"  // permute_dispatch<host_executor>
