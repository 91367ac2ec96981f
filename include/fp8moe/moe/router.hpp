// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// MoE router: FP32 sigmoid/softmax scores, aux-loss-free bias for selection only, group-limited
// top-k (ties toward the lower index), unbiased normalized and scaled weights; its backward.
// The per-token functions are shared by the host path (here) and the CUDA path (moe/cuda/router.cuh).
// All outputs are overwritten; the host path validates everything (including finite logits) first.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fp8moe/config.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"

namespace fp8moe::moe {

/// Score function applied to the router logits (in FP32).
enum class score_function : std::uint8_t {
  sigmoid,  ///< s = 1 / (1 + exp(-u)) per expert (DeepSeek-V3, arXiv:2412.19437 Eq. 15)
  softmax   ///< s = softmax(u) over all E experts (DeepSeek-V2, Mixtral, ...)
};
/// `moe::score::sigmoid` / `moe::score::softmax`, for designated initializers `.score = ...`.
namespace score {
inline constexpr score_function sigmoid = score_function::sigmoid;
inline constexpr score_function softmax = score_function::softmax;
}  // namespace score

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
}

namespace detail {

using ::fp8moe::detail::concat;
using ::fp8moe::detail::shape_string;
using ::fp8moe::detail::throw_argument;

FP8MOE_HOST_DEVICE float exp_f32(float x) {
#if FP8MOE_IS_DEVICE_CODE
  return ::expf(x);
#else
  return std::exp(x);
#endif
}

FP8MOE_HOST_DEVICE bool is_nan_f32(float x) {
  return x != x;
}

constexpr FP8MOE_HOST_DEVICE float neg_inf_f32() {
  return -std::numeric_limits<float>::infinity();
}

/// Per-token score context: sigmoid needs nothing; softmax needs the row max and the sum of exp.
struct score_context {
  float max = 0.0f;
  float inv_sum = 1.0f;
};

template <class Logit>
FP8MOE_HOST_DEVICE score_context make_score_context(score_function f, Logit const* u, std::int64_t stride,
                                                    int n) {
  score_context ctx{};
  if (f == score_function::softmax) {
    float m = neg_inf_f32();
    for (int e = 0; e < n; ++e) {
      float const x = static_cast<float>(u[e * stride]);
      m = x > m ? x : m;
    }
    float sum = 0.0f;
    for (int e = 0; e < n; ++e) sum += exp_f32(static_cast<float>(u[e * stride]) - m);
    ctx.max = m;
    ctx.inv_sum = 1.0f / sum;
  }
  return ctx;
}

FP8MOE_HOST_DEVICE float score_of(score_function f, score_context ctx, float u) {
  return f == score_function::sigmoid ? 1.0f / (1.0f + exp_f32(-u)) : exp_f32(u - ctx.max) * ctx.inv_sum;
}

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
  detail::score_context const ctx = detail::make_score_context(c.score, u, u_stride, c.experts);
  if (scratch)  // optional (E) scratch: each score is computed once instead of once per pass
    for (int e = 0; e < c.experts; ++e)
      scratch[e] = detail::score_of(c.score, ctx, static_cast<float>(u[e * u_stride]));
  auto biased = [&](int e) {
    float const s =
        scratch ? scratch[e] : detail::score_of(c.score, ctx, static_cast<float>(u[e * u_stride]));
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
    s[j] = detail::score_of(c.score, ctx, static_cast<float>(u[top.index[j] * u_stride]));
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
/// writes dL/du (E) (overwrite). Through scaling, normalization over the selected experts, then
/// sigmoid (d s/du = s(1-s)) or softmax (du_e = s_e (ds_e - sum_j ds_j s_j)).
template <class Logit>
FP8MOE_HOST_DEVICE void route_token_backward(router_config const& c, Logit const* u, std::int64_t u_stride,
                                             std::int32_t const* ids, std::int64_t ids_stride,
                                             float const* dw, std::int64_t dw_stride, float* du,
                                             std::int64_t du_stride) {
  detail::score_context const ctx = detail::make_score_context(c.score, u, u_stride, c.experts);
  float s[max_k], ds[max_k];
  float sum = 0.0f, dot = 0.0f;
  for (int j = 0; j < c.k; ++j) {
    s[j] = detail::score_of(c.score, ctx, static_cast<float>(u[ids[j * ids_stride] * u_stride]));
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
  for (int e = 0; e < c.experts; ++e) du[e * du_stride] = 0.0f;
  if (c.score == score_function::sigmoid) {
    for (int j = 0; j < c.k; ++j) du[ids[j * ids_stride] * du_stride] += ds[j] * s[j] * (1.0f - s[j]);
  } else {
    float sds = 0.0f;
    for (int j = 0; j < c.k; ++j) sds += ds[j] * s[j];
    for (int e = 0; e < c.experts; ++e)
      du[e * du_stride] = -detail::score_of(c.score, ctx, static_cast<float>(u[e * u_stride])) * sds;
    for (int j = 0; j < c.k; ++j) du[ids[j * ids_stride] * du_stride] += s[j] * ds[j];
  }
}

// ------------------------------------------------------------------------------------------------
// Host entry points

namespace detail {

inline constexpr char const* route_where = "fp8moe::moe::route";

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

template <class Logit>
void check_finite_host(matrix_view<Logit> logits, vector_view<float const> bias, char const* where) {
  for (std::int64_t t = 0; t < logits.rows; ++t)
    for (std::int64_t e = 0; e < logits.cols; ++e)
      if (!std::isfinite(static_cast<float>(logits(t, e))))
        detail::throw_argument(where, "logits", "finite values",
                               concat("logits(", t, ", ", e, ") = ", static_cast<float>(logits(t, e))));
  for (std::int64_t e = 0; e < bias.size; ++e)
    if (!std::isfinite(bias[e]))
      detail::throw_argument(where, "bias", "finite values", concat("bias[", e, "] = ", bias[e]));
}

}  // namespace detail

/// Routes T tokens. logits (T,E) any float-convertible type; bias (E) or empty; writes ids (T,k),
/// weights (T,k) FP32 and, if non-empty, counts (E) int32 = tokens per expert. Throws on
/// non-finite logits or bias (checked before any output is written).
template <class Logit>
void route(host_executor const& exec, router_config const& c, matrix_view<Logit> logits,
           vector_view<float const> bias, matrix_view<std::int32_t> ids, matrix_view<float> weights,
           vector_view<std::int32_t> counts) {
  detail::check_route_args(c, logits, bias, ids, weights, counts, detail::route_where);
  detail::check_finite_host(logits, bias, detail::route_where);
  std::vector<float> bias_c(static_cast<std::size_t>(bias.size));
  for (std::int64_t e = 0; e < bias.size; ++e) bias_c[static_cast<std::size_t>(e)] = bias[e];
  float const* b = bias.size ? bias_c.data() : nullptr;
  std::int64_t const T = logits.rows;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(exec.num_threads())
#endif
  {
    std::vector<float> scratch(static_cast<std::size_t>(c.experts));
#if FP8MOE_HAS_OPENMP
#pragma omp for schedule(static)
#endif
    for (std::int64_t t = 0; t < T; ++t)
      route_token(c, &logits(t, 0), logits.col_stride, b, &ids(t, 0), ids.col_stride, &weights(t, 0),
                  weights.col_stride, scratch.data());
  }
  (void)exec;
  if (counts.size) {
    for (std::int64_t e = 0; e < c.experts; ++e) counts[e] = 0;
    for (std::int64_t t = 0; t < T; ++t)
      for (int j = 0; j < c.k; ++j) ++counts[ids(t, j)];
  }
}

/// Owning result of the allocating route(): ids (T,k), weights (T,k), counts (E).
struct route_result {
  host_matrix<std::int32_t> ids;     // (T,k)
  host_matrix<float> weights;        // (T,k)
  std::vector<std::int32_t> counts;  // (E)
};

template <class Logit>
route_result route(host_executor const& exec, router_config const& c, matrix_view<Logit> logits,
                   vector_view<float const> bias = {}) {
  check_router_config(c, detail::route_where);
  route_result r{host_matrix<std::int32_t>(logits.rows, c.k), host_matrix<float>(logits.rows, c.k),
                 std::vector<std::int32_t>(static_cast<std::size_t>(c.experts))};
  route(exec, c, logits, bias, r.ids.view(), r.weights.view(), make_vector(r.counts.data(), c.experts));
  return r;
}
template <class Logit>
route_result route(host_executor const& exec, router_config const& c, matrix_view<Logit> logits,
                   std::vector<float> const& bias) requires(!std::is_const_v<Logit>) {
  return route(exec, c, matrix_view<Logit>(logits),
               vector_view<float const>{bias.data(), static_cast<std::int64_t>(bias.size())});
}

/// Backward of route: dlogits (T,E) = dL/dlogits given dweights (T,k) = dL/dweights (overwrite).
/// The selection (ids) is not differentiated. The bias does not receive a gradient.
template <class Logit>
void route_backward(host_executor const& exec, router_config const& c, matrix_view<Logit> logits,
                    matrix_view<std::int32_t const> ids, matrix_view<float const> dweights,
                    matrix_view<float> dlogits) {
  constexpr char const* where = "fp8moe::moe::route_backward";
  check_router_config(c, where);
  check_matrix(logits, where, "logits");
  require(logits.cols == c.experts, where, "logits", "E columns", std::to_string(logits.cols));
  check_matrix(ids, where, "ids");
  check_shape(ids, logits.rows, c.k, where, "ids");
  check_matrix(dweights, where, "dweights");
  check_shape(dweights, logits.rows, c.k, where, "dweights");
  check_matrix(dlogits, where, "dlogits");
  check_shape(dlogits, logits.rows, c.experts, where, "dlogits");
  for (std::int64_t t = 0; t < ids.rows; ++t)
    for (int j = 0; j < c.k; ++j)
      if (ids(t, j) < 0 || ids(t, j) >= c.experts)
        require(false, where, "ids", "values in [0, E)",
                detail::concat("ids(", t, ", ", j, ") = ", ids(t, j)));
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
  for (std::int64_t t = 0; t < logits.rows; ++t)
    route_token_backward(c, &logits(t, 0), logits.col_stride, &ids(t, 0), ids.col_stride, &dweights(t, 0),
                         dweights.col_stride, &dlogits(t, 0), dlogits.col_stride);
  (void)exec;
}

/// Any router the MoE layer can use: routes (T,E) FP32 logits into ids/weights/counts views.
template <class R>
concept expert_router = requires(R const& r, host_executor const& ex, matrix_view<float const> logits,
                                 matrix_view<std::int32_t> ids, matrix_view<float> w,
                                 vector_view<std::int32_t> n) {
  { r.experts() } -> std::convertible_to<int>;
  { r.k() } -> std::convertible_to<int>;
  r.route(ex, logits, ids, w, n);
};

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
