// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::softmax_forward (row softmax), nn::cross_entropy_forward (softmax cross-entropy of logits
// (T,V) against targets (T) with an ignore index; per-row losses, returns their mean over the valid
// rows) and nn::cross_entropy_backward (dlogits (T,V) = dloss * (softmax - onehot) / T_valid,
// OVERWRITTEN; ignored rows get 0). Max-subtracted, float math. Host path in nn/host/softmax.hpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"

namespace fp8moe::nn {

/// Undefined primary template; nn/host/softmax.hpp defines the host_executor specialisation.
template <class Exec>
struct softmax_dispatch;

/// Max and sum of exp(x - max) of one row of n floats (n >= 1), on host or device.
struct softmax_row_stats {
  float max;
  float sum;
};
FP8MOE_HOST_DEVICE softmax_row_stats softmax_stats(float const* x, std::int64_t n) {
  float m = x[0];
  for (std::int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  float s = 0.0f;
#if FP8MOE_IS_DEVICE_CODE
  for (std::int64_t i = 0; i < n; ++i) s += ::expf(x[i] - m);
#else
  for (std::int64_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
#endif
  return {m, s};
}
/// The softmax value of one element given its row's stats.
FP8MOE_HOST_DEVICE float softmax_value(float x, softmax_row_stats st) {
#if FP8MOE_IS_DEVICE_CODE
  return ::expf(x - st.max) / st.sum;
#else
  return std::exp(x - st.max) / st.sum;
#endif
}
/// -log softmax(x)[target] = log(sum) + max - x_target.
FP8MOE_HOST_DEVICE float cross_entropy_value(float x_target, softmax_row_stats st) {
#if FP8MOE_IS_DEVICE_CODE
  return ::logf(st.sum) + st.max - x_target;
#else
  return std::log(st.sum) + st.max - x_target;
#endif
}

namespace detail {
template <class M>
void check_logits_like(char const* where, char const* arg, M const& m) {
  check_matrix(m, where, arg);
  require(m.empty() || m.col_stride == 1, where, arg, "row-major (col_stride 1)");
}
inline void check_targets(char const* where, std::span<std::int32_t const> targets, std::int64_t T,
                          std::int64_t V, std::int32_t ignore_index) {
  require(static_cast<std::int64_t>(targets.size()) == T, where, "targets",
          "size T = logits.rows = " + std::to_string(T), "size " + std::to_string(targets.size()));
  for (std::size_t t = 0; t < targets.size(); ++t)
    require(targets[t] == ignore_index || (targets[t] >= 0 && targets[t] < V), where, "targets",
            "values in [0, " + std::to_string(V) + ") or ignore_index " + std::to_string(ignore_index),
            std::to_string(targets[t]) + " at row " + std::to_string(t));
}
}  // namespace detail

/// probs (T,V) = softmax over each row of logits (T,V); probs may alias logits.
template <executor Exec>
void softmax_forward(Exec const& exec, matrix_view<float const> logits, matrix_view<float> probs) {
  static_assert(
      has_dispatch<softmax_dispatch<executor_t<Exec>>>,
      "fp8moe::nn::softmax_forward: this executor has no path here; include \"fp8moe/nn/host/softmax.hpp\" "
      "(a CUDA path is not written yet)");
  constexpr char const* where = "fp8moe::nn::softmax_forward";
  detail::check_logits_like(where, "logits", logits);
  detail::check_logits_like(where, "probs", probs);
  check_shape(probs, logits.rows, logits.cols, where, "probs");
  if constexpr (has_dispatch<softmax_dispatch<executor_t<Exec>>>)
    softmax_dispatch<executor_t<Exec>>::softmax(exec, logits, probs);
}

/// losses (T) = -log softmax(logits (T,V))[targets (T)] (0 on rows whose target is ignore_index);
/// returns mean(losses over the valid rows), 0 when no row is valid.
template <executor Exec>
float cross_entropy_forward(Exec const& exec, matrix_view<float const> logits,
                            std::span<std::int32_t const> targets, std::span<float> losses,
                            std::int32_t ignore_index = -100) {
  static_assert(has_dispatch<softmax_dispatch<executor_t<Exec>>>,
                "fp8moe::nn::cross_entropy_forward: this executor has no path here; include "
                "\"fp8moe/nn/host/softmax.hpp\" (a CUDA path is not written yet)");
  constexpr char const* where = "fp8moe::nn::cross_entropy_forward";
  detail::check_logits_like(where, "logits", logits);
  require(logits.rows == 0 || logits.cols > 0, where, "logits", "V >= 1 columns");
  detail::check_targets(where, targets, logits.rows, logits.cols, ignore_index);
  require(static_cast<std::int64_t>(losses.size()) == logits.rows, where, "losses",
          "size T = " + std::to_string(logits.rows), "size " + std::to_string(losses.size()));
  if constexpr (has_dispatch<softmax_dispatch<executor_t<Exec>>>)
    return softmax_dispatch<executor_t<Exec>>::cross_entropy(exec, logits, targets, losses, ignore_index);
  else
    return 0.0f;
}

/// dlogits (T,V) = dloss * (softmax(logits) - onehot(targets)) / T_valid, the gradient of
/// dloss * cross_entropy_forward's mean; rows with ignore_index get 0. Overwrites dlogits (may alias logits).
template <executor Exec>
void cross_entropy_backward(Exec const& exec, matrix_view<float const> logits,
                            std::span<std::int32_t const> targets, matrix_view<float> dlogits,
                            float dloss = 1.0f, std::int32_t ignore_index = -100) {
  static_assert(has_dispatch<softmax_dispatch<executor_t<Exec>>>,
                "fp8moe::nn::cross_entropy_backward: this executor has no path here; include "
                "\"fp8moe/nn/host/softmax.hpp\" (a CUDA path is not written yet)");
  constexpr char const* where = "fp8moe::nn::cross_entropy_backward";
  detail::check_logits_like(where, "logits", logits);
  require(logits.rows == 0 || logits.cols > 0, where, "logits", "V >= 1 columns");
  detail::check_logits_like(where, "dlogits", dlogits);
  check_shape(dlogits, logits.rows, logits.cols, where, "dlogits");
  detail::check_targets(where, targets, logits.rows, logits.cols, ignore_index);
  require(std::isfinite(dloss), where, "dloss", "finite", std::to_string(dloss));
  if constexpr (has_dispatch<softmax_dispatch<executor_t<Exec>>>)
    softmax_dispatch<executor_t<Exec>>::cross_entropy_backward(exec, logits, targets, dlogits, dloss,
                                                               ignore_index);
}

}  // namespace fp8moe::nn

#include "fp8moe/nn/host/softmax.hpp"
