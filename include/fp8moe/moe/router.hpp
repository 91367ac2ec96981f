// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// MoE router: FP32 sigmoid/softmax scores, aux-loss-free bias for selection only, group-limited
// top-k (ties toward the lower index), unbiased normalized and scaled weights; its backward.
// The per-token functions here are shared by the host path (moe/host/router.hpp) and the CUDA path
// (moe/cuda/router.cuh); each entry point is one template on the `executor` concept that forwards to
// router_dispatch<Exec>. All outputs are overwritten; the host path validates everything (including
// finite logits) first.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/score.hpp"

namespace fp8moe::moe {

/// Router configuration (DeepSeek-V3: experts 256, groups 8, topk_groups 4, k 8, sigmoid, 2.5).
struct router_config {
  int experts = 256;    ///< E routed experts
  int groups = 1;       ///< G expert groups (nodes); E % G == 0; 1 disables group limiting
  int topk_groups = 1;  ///< groups kept per token (M in the paper's node-limited routing)
  int k = 8;            ///< experts per token
  score_function score = score_function::sigmoid;
  float route_scale = 1.0f;  ///< routed scaling factor applied after normalization (V3: 2.5)
  bool normalize = true;     ///< divide the k selected scores by their sum (V3: true; V2 softmax: false)
  int group_top = 2;         ///< group score = sum of the top `group_top` biased scores (V3: 2; 1 = max, V2)

  friend constexpr bool operator==(router_config const&, router_config const&) = default;
};

/// DeepSeek-V3 (config_671B.json): 256 experts, 8 groups, keep 4, top-8, sigmoid, x2.5.
inline constexpr router_config deepseek_v3_router{.experts = 256,
                                                  .groups = 8,
                                                  .topk_groups = 4,
                                                  .k = 8,
                                                  .score = score_function::sigmoid,
                                                  .route_scale = 2.5f};

/// Compile-time limits of the per-token selection (register arrays on the device).
inline constexpr int max_k = 32;
inline constexpr int max_groups = 64;
inline constexpr int max_group_top = 8;

/// Checks a router configuration; throws fp8moe::error naming the field.
inline void check_router_config(router_config const& c, std::string_view where) {
  using std::to_string;
  require(c.experts >= 1, where, "config.experts", ">= 1", to_string(c.experts));
  require(c.k >= 1 && c.k <= max_k, where, "config.k", "1 <= k <= " + to_string(max_k), to_string(c.k));
  require(c.k <= c.experts, where, "config.k", "k <= experts (" + to_string(c.experts) + ")", to_string(c.k));
  require(c.groups >= 1 && c.groups <= max_groups, where, "config.groups",
          "1 <= groups <= " + to_string(max_groups), to_string(c.groups));
  require(c.experts % c.groups == 0, where, "config.groups",
          "a divisor of experts (" + to_string(c.experts) + ")", to_string(c.groups));
  require(c.topk_groups >= 1 && c.topk_groups <= c.groups, where, "config.topk_groups",
          "1 <= topk_groups <= groups (" + to_string(c.groups) + ")", to_string(c.topk_groups));
  require(static_cast<long long>(c.topk_groups) * (c.experts / c.groups) >= c.k, where, "config.topk_groups",
          "topk_groups * experts/groups >= k (" + to_string(c.k) + ")",
          to_string(c.topk_groups) + " * " + to_string(c.experts / c.groups));
  require(c.group_top >= 1 && c.group_top <= max_group_top && c.group_top <= c.experts / c.groups, where,
          "config.group_top", "1 <= group_top <= min(" + to_string(max_group_top) + ", experts/groups)",
          to_string(c.group_top));
  require(std::isfinite(c.route_scale), where, "config.route_scale", "a finite value");
  check_score_function(c.score, where, "config.score");
}

namespace detail {

using ::fp8moe::detail::concat;
using ::fp8moe::detail::shape_string;
using ::fp8moe::detail::throw_argument;

/// "a beats b": larger value, ties toward the lower index. NaN is ordered as -inf.
FP8MOE_HOST_DEVICE bool beats(float a, int ia, float b, int ib) {
  if (is_nan_f32(a)) a = neg_inf_f32();
  if (is_nan_f32(b)) b = neg_inf_f32();
  return a > b || (a == b && ia < ib);
}

/// Fixed-capacity sorted list of the best `n` (value, index) pairs, best first.
template <int Capacity>
struct top_list {
  float value[Capacity];
  int index[Capacity];
  int size = 0;

  FP8MOE_HOST_DEVICE void offer(int n, float v, int i) {
    if (size == n && !beats(v, i, value[n - 1], index[n - 1])) return;
    int p = size < n ? size++ : n - 1;
    while (p > 0 && beats(v, i, value[p - 1], index[p - 1])) {
      value[p] = value[p - 1];
      index[p] = index[p - 1];
      --p;
    }
    value[p] = v;
    index[p] = i;
  }
};

}  // namespace detail

/// Routes one token: writes its k expert ids (best first) and weights. `u` = logits (E) with
/// stride `u_stride`; `bias` = E floats or nullptr. Selection uses s + bias, with groups outside the
/// best `topk_groups` masked to -inf; weights use the unbiased s. Ties go to the lower index; NaN
/// scores order as -inf. If the selected scores sum to 0 the weights are route_scale / k each.
/// `scratch` (E floats, optional) only changes speed, never results.
template <class Logit>
FP8MOE_HOST_DEVICE void route_token(router_config const& c, Logit const* u, std::int64_t u_stride,
                                    float const* bias, std::int32_t* ids, std::int64_t ids_stride,
                                    float* weights, std::int64_t w_stride, float* scratch = nullptr) {
  score_trait const f(c.score, u, u_stride, c.experts);
  if (scratch)  // optional (E) scratch: each score is computed once instead of once per pass
    for (int e = 0; e < c.experts; ++e) scratch[e] = f.value(static_cast<float>(u[e * u_stride]));
  auto biased = [&](int e) {
    float const s = scratch ? scratch[e] : f.value(static_cast<float>(u[e * u_stride]));
    return bias ? s + bias[e] : s;
  };
  int const per_group = c.experts / c.groups;
  std::uint64_t keep = ~std::uint64_t{0};
  if (c.topk_groups < c.groups) {
    float group_score[max_groups];
    for (int g = 0; g < c.groups; ++g) {
      detail::top_list<max_group_top> top;
      for (int e = g * per_group; e < (g + 1) * per_group; ++e) top.offer(c.group_top, biased(e), e);
      float sum = 0.0f;
      for (int i = 0; i < top.size; ++i)
        sum += detail::is_nan_f32(top.value[i]) ? detail::neg_inf_f32() : top.value[i];
      group_score[g] = sum;
    }
    detail::top_list<max_groups> best;
    for (int g = 0; g < c.groups; ++g) best.offer(c.topk_groups, group_score[g], g);
    keep = 0;
    for (int i = 0; i < best.size; ++i) keep |= std::uint64_t{1} << best.index[i];
  }
  detail::top_list<max_k> top;
  for (int g = 0; g < c.groups; ++g) {
    if (!((keep >> g) & 1u)) continue;  // a masked group: every score is -inf, never selected
    for (int e = g * per_group; e < (g + 1) * per_group; ++e) top.offer(c.k, biased(e), e);
  }
  float s[max_k];
  float sum = 0.0f;
  for (int j = 0; j < c.k; ++j) {
    s[j] = f.value(static_cast<float>(u[top.index[j] * u_stride]));
    sum += s[j];
  }
  for (int j = 0; j < c.k; ++j) {
    float w = s[j];
    if (c.normalize) w = sum > 0.0f ? s[j] / sum : 1.0f / static_cast<float>(c.k);
    ids[j * ids_stride] = top.index[j];
    weights[j * w_stride] = w * c.route_scale;
  }
}

/// Backward of one token's weights w.r.t. its logits, selection held fixed. `dw` (k) = dL/dweights;
/// writes dL/du (E) (overwrite). Through scaling, normalization over the selected experts, then the
/// score function's derivative (score_trait: sigmoid s(1-s), softmax s_e (ds_e - sum_j ds_j s_j)).
template <class Logit>
FP8MOE_HOST_DEVICE void route_token_backward(router_config const& c, Logit const* u, std::int64_t u_stride,
                                             std::int32_t const* ids, std::int64_t ids_stride,
                                             float const* dw, std::int64_t dw_stride, float* du,
                                             std::int64_t du_stride) {
  score_trait const f(c.score, u, u_stride, c.experts);
  float s[max_k], ds[max_k];
  float sum = 0.0f, dot = 0.0f;
  for (int j = 0; j < c.k; ++j) {
    s[j] = f.value(static_cast<float>(u[ids[j * ids_stride] * u_stride]));
    sum += s[j];
    dot += dw[j * dw_stride] * s[j];
  }
  for (int j = 0; j < c.k; ++j) {
    float const g = dw[j * dw_stride] * c.route_scale;
    if (!c.normalize) {
      ds[j] = g;
    } else if (sum > 0.0f) {
      ds[j] = (g - c.route_scale * dot / sum) / sum;  // d(s_j/S)/ds_i = (delta_ij - s_j/S)/S
    } else {
      ds[j] = 0.0f;  // the uniform fallback does not depend on s
    }
  }
  // du = J^T ds with ds zero outside the k selected experts (score_trait's sparse split)
  float sds = 0.0f;
  if (f.coupled())
    for (int j = 0; j < c.k; ++j) sds += ds[j] * s[j];
  for (int e = 0; e < c.experts; ++e)
    du[e * du_stride] = f.coupled() ? f.coupling(f.value(static_cast<float>(u[e * u_stride])), sds) : 0.0f;
  for (int j = 0; j < c.k; ++j) du[ids[j * ids_stride] * du_stride] += f.diagonal(s[j], ds[j]);
}

// ------------------------------------------------------------------------------------------------
// Entry points: one template per op, constrained on `executor`, forwarding to router_dispatch<Exec>.

/// Per-executor implementations of the router ops: router_dispatch<host_executor> in
/// moe/host/router.hpp (included below), router_dispatch<cuda_executor> in moe/cuda/router.cuh.
template <class Exec>
struct router_dispatch;

/// Caller-owned device scratch of the ops that need one (plan build, balance loss on the device):
/// `bytes` at `data`. The host paths take none (pass {}).
struct device_workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

namespace detail {

inline constexpr char const* route_where = "fp8moe::moe::route";

/// The argument checks of route shared by every executor (views only, no data read).
template <class Logit>
void check_route_args(router_config const& c, matrix_view<Logit> logits, vector_view<float const> bias,
                      matrix_view<std::int32_t> ids, matrix_view<float> weights,
                      vector_view<std::int32_t> counts, char const* where) {
  check_router_config(c, where);
  check_matrix(logits, where, "logits");
  require(logits.cols == c.experts, where, "logits", "E = " + std::to_string(c.experts) + " columns",
          std::to_string(logits.cols));
  require(bias.size == 0 || bias.size == c.experts, where, "bias",
          "empty or E = " + std::to_string(c.experts) + " entries", std::to_string(bias.size) + " entries");
  require(bias.size == 0 || bias.data != nullptr, where, "bias", "non-null data");
  check_matrix(ids, where, "ids");
  check_shape(ids, logits.rows, c.k, where, "ids");
  check_matrix(weights, where, "weights");
  check_shape(weights, logits.rows, c.k, where, "weights");
  require(counts.size == 0 || counts.size == c.experts, where, "counts",
          "empty or E = " + std::to_string(c.experts) + " entries", std::to_string(counts.size) + " entries");
  require(logits.rows * c.k <= std::numeric_limits<std::int32_t>::max(), where, "logits",
          "T * k < 2^31 (int32 counts)");
}

/// The argument checks of route_backward shared by every executor (views only, no data read).
template <class Logit>
void check_route_backward_args(router_config const& c, matrix_view<Logit> logits,
                               matrix_view<std::int32_t const> ids, matrix_view<float const> dweights,
                               matrix_view<float> dlogits, char const* where) {
  check_router_config(c, where);
  check_matrix(logits, where, "logits");
  require(logits.cols == c.experts, where, "logits", "E columns", std::to_string(logits.cols));
  check_matrix(ids, where, "ids");
  check_shape(ids, logits.rows, c.k, where, "ids");
  check_matrix(dweights, where, "dweights");
  check_shape(dweights, logits.rows, c.k, where, "dweights");
  check_matrix(dlogits, where, "dlogits");
  check_shape(dlogits, logits.rows, c.experts, where, "dlogits");
}

/// The bias of the allocating route as a view: a vector_view, or a std::vector (host memory).
inline vector_view<float const> bias_view(vector_view<float const> b) {
  return b;
}
inline vector_view<float const> bias_view(std::vector<float> const& b) {
  return {b.data(), static_cast<std::int64_t>(b.size()), 1};
}

}  // namespace detail

/// Routes T tokens. logits (T,E) any float-convertible type; bias (E) or empty; writes ids (T,k),
/// weights (T,k) FP32 and, if non-empty, counts (E) int32 = tokens per expert. Host: throws on
/// non-finite logits or bias (checked before any output is written). CUDA: enqueued on exec.stream,
/// all views device memory, NaN scores ordered as -inf (no data check without a sync).
template <executor Exec, class Logit>
void route(Exec const& exec, router_config const& c, matrix_view<Logit> logits, vector_view<float const> bias,
           matrix_view<std::int32_t> ids, matrix_view<float> weights, vector_view<std::int32_t> counts) {
  using D = router_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::route: this executor has no router path; for cuda_executor include "
                "\"fp8moe/moe/cuda/router.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::route(exec, c, logits, bias, ids, weights, counts);
}

/// Owning result of the allocating route() on the host: ids (T,k), weights (T,k), counts (E).
/// (On the device: device_route_result, moe/cuda/router.cuh.)
struct route_result {
  host_matrix<std::int32_t> ids;     // (T,k)
  host_matrix<float> weights;        // (T,k)
  std::vector<std::int32_t> counts;  // (E)
};

/// Allocating route: returns owned ids (T,k), weights (T,k) and counts (E) in the executor's memory
/// (host: route_result; CUDA: device_route_result allocated and filled on exec.stream). `bias` is a
/// vector_view (E) or empty, or on the host a std::vector<float>.
template <executor Exec, class Logit, class Bias = vector_view<float const>>
requires(std::convertible_to<Bias const&, vector_view<float const>> ||
         std::same_as<Bias, std::vector<float>>) auto route(Exec const& exec, router_config const& c,
                                                            matrix_view<Logit> logits,
                                                            Bias const& bias = {}) {
  using D = router_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::route: this executor has no router path; for cuda_executor include "
                "\"fp8moe/moe/cuda/router.cuh\" (nvcc)");
  static_assert(host_executor_like<Exec> || !std::same_as<Bias, std::vector<float>>,
                "fp8moe::moe::route: a std::vector bias is host memory; on a device executor pass a "
                "vector_view of device memory");
  if constexpr (has_dispatch<D>) return D::route(exec, c, logits, detail::bias_view(bias));
}

/// Backward of route: dlogits (T,E) = dL/dlogits given dweights (T,k) = dL/dweights (overwrite).
/// The selection (ids) is not differentiated. The bias does not receive a gradient. The host checks
/// ids are in [0, E); the device trusts them.
template <executor Exec, class Logit>
void route_backward(Exec const& exec, router_config const& c, matrix_view<Logit> logits,
                    matrix_view<std::int32_t const> ids, matrix_view<float const> dweights,
                    matrix_view<float> dlogits) {
  using D = router_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::route_backward: this executor has no router path; for cuda_executor include "
                "\"fp8moe/moe/cuda/router.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::route_backward(exec, c, logits, ids, dweights, dlogits);
}

/// Any router the MoE layer can use on executor Exec: routes (T,E) FP32 logits into ids/weights/counts
/// views. The router form of moe::route is constrained on it.
template <class R, class Exec = host_executor>
concept expert_router = executor<Exec> &&
    requires(R const& r, Exec const& ex, matrix_view<float const> logits, matrix_view<std::int32_t> ids,
             matrix_view<float> w, vector_view<std::int32_t> n) {
  { r.experts() } -> std::convertible_to<int>;
  { r.k() } -> std::convertible_to<int>;
  r.route(ex, logits, ids, w, n);
};

/// Routes with a router value (any expert_router on this executor): router.route(exec, ...).
template <executor Exec, class Router, class Logit>
requires expert_router<Router, executor_t<Exec>>
void route(Exec const& exec, Router const& router, matrix_view<Logit> logits, matrix_view<std::int32_t> ids,
           matrix_view<float> weights, vector_view<std::int32_t> counts) {
  router.route(exec, logits, ids, weights, counts);
}

/// The DeepSeek-style router as a value: configuration + (optional) host-resident bias.
struct grouped_topk_router {
  router_config config{};
  std::vector<float> bias{};  // (E) or empty

  int experts() const { return config.experts; }
  int k() const { return config.k; }
  template <class Logit>
  void route(host_executor const& ex, matrix_view<Logit> logits, matrix_view<std::int32_t> ids,
             matrix_view<float> weights, vector_view<std::int32_t> counts) const {
    moe::route(ex, config, logits,
               vector_view<float const>{bias.data(), static_cast<std::int64_t>(bias.size())}, ids, weights,
               counts);
  }
};
static_assert(expert_router<grouped_topk_router>);

}  // namespace fp8moe::moe

#include "fp8moe/moe/host/router.hpp"  // router_dispatch<host_executor>
