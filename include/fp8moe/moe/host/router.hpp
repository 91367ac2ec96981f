// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host path of the router (router_dispatch<host_executor>): route_token per token under OpenMP,
// counts by a serial integer pass, route_token_backward per token. Everything is validated
// (shapes, config, finite logits and bias, ids in range) before any output is written.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/nn/host/elementwise.hpp"

namespace fp8moe::moe {

namespace detail {

/// Throws naming the first non-finite logit or bias entry (host data only).
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

template <>
struct router_dispatch<host_executor> {
  template <class Logit>
  static void route(host_executor const& exec, router_config const& c, matrix_view<Logit> logits,
                    vector_view<float const> bias, matrix_view<std::int32_t> ids, matrix_view<float> weights,
                    vector_view<std::int32_t> counts) {
    detail::check_route_args(c, logits, bias, ids, weights, counts, detail::route_where);
    detail::check_finite_host(logits, bias, detail::route_where);
    std::vector<float> bias_c(static_cast<std::size_t>(bias.size));
    for (std::int64_t e = 0; e < bias.size; ++e) bias_c[static_cast<std::size_t>(e)] = bias[e];
    float const* b = bias.size ? bias_c.data() : nullptr;
    std::int64_t const T = logits.rows;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(nn::host::elementwise_threads(exec, T* c.experts))
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

  template <class Logit>
  static route_result route(host_executor const& exec, router_config const& c, matrix_view<Logit> logits,
                            vector_view<float const> bias) {
    check_router_config(c, detail::route_where);
    route_result r{host_matrix<std::int32_t>(logits.rows, c.k), host_matrix<float>(logits.rows, c.k),
                   std::vector<std::int32_t>(static_cast<std::size_t>(c.experts))};
    route(exec, c, logits, bias, r.ids.view(), r.weights.view(), make_vector(r.counts.data(), c.experts));
    return r;
  }

  template <class Logit>
  static void route_backward(host_executor const& exec, router_config const& c, matrix_view<Logit> logits,
                             matrix_view<std::int32_t const> ids, matrix_view<float const> dweights,
                             matrix_view<float> dlogits) {
    constexpr char const* where = "fp8moe::moe::route_backward";
    detail::check_route_backward_args(c, logits, ids, dweights, dlogits, where);
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
};

}  // namespace fp8moe::moe
