// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The router's score functions (sigmoid, softmax) as one FP8MOE_HOST_DEVICE trait: the value s = f(u)
// and its derivative (the vector-Jacobian product du = J^T ds), the only place either is written. The
// router, its backward and the balance loss use it on the host and the device. A value that names no
// function here is rejected by check_score_function (fp8moe::error), and a switch over the functions
// has no default, so a new enumerator without its formulas is a -Wswitch diagnostic.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "fp8moe/config.hpp"
#include "fp8moe/core/error.hpp"

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

/// True for the functions score_trait knows.
constexpr FP8MOE_HOST_DEVICE bool is_score_function(score_function f) {
  switch (f) {
    case score_function::sigmoid:
    case score_function::softmax:
      return true;
  }
  return false;
}

/// Throws fp8moe::error naming `arg` unless f is a known score function.
inline void check_score_function(score_function f, std::string_view where, std::string_view arg) {
  require(is_score_function(f), where, arg, "moe::score::sigmoid or moe::score::softmax",
          detail::concat("score_function(", static_cast<int>(f), ")"));
}

namespace detail {

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

}  // namespace detail

/// One token's score function: value(u) = s_e, and the derivative as du_e = J^T ds (FP32 or FP64).
/// sigmoid: s = 1/(1+exp(-u)), ds/du = s(1-s) (diagonal). softmax over the token's n logits:
/// s = exp(u - max) / sum, du_e = s_e (ds_e - sum_j ds_j s_j) (coupled through the sum).
/// Built from the token's logits (softmax needs their max and the sum of exp; sigmoid reads nothing).
class score_trait {
 public:
  template <class Logit>
  FP8MOE_HOST_DEVICE score_trait(score_function f, Logit const* u, std::int64_t stride, int n) : f_(f) {
    if (f == score_function::softmax) {
      float m = detail::neg_inf_f32();
      for (int e = 0; e < n; ++e) {
        float const x = static_cast<float>(u[e * stride]);
        m = x > m ? x : m;
      }
      float sum = 0.0f;
      for (int e = 0; e < n; ++e) sum += detail::exp_f32(static_cast<float>(u[e * stride]) - m);
      max_ = m;
      inv_sum_ = 1.0f / sum;
    }
  }

  FP8MOE_HOST_DEVICE score_function function() const { return f_; }

  /// s = f(u) for one logit of the token. (One branch per call, as hot as the router's inner loop
  /// needs: the switch has no default, so a new enumerator without a case here is a -Wswitch
  /// diagnostic, and check_score_function has rejected any other value before an op runs.)
  FP8MOE_HOST_DEVICE float value(float u) const {
    switch (f_) {
      case score_function::sigmoid:
        return 1.0f / (1.0f + detail::exp_f32(-u));
      case score_function::softmax:
        break;
    }
    return detail::exp_f32(u - max_) * inv_sum_;
  }

  /// True when du_e depends on every ds_j (softmax): pass sds = sum_j ds_j s_j to the functions below.
  FP8MOE_HOST_DEVICE bool coupled() const { return f_ == score_function::softmax; }

  /// du_e for a dense ds: sigmoid ds s (1-s); softmax s (ds - sds).
  template <class R>
  FP8MOE_HOST_DEVICE R grad(R s, R ds, R sds) const {
    switch (f_) {
      case score_function::sigmoid:
        return ds * s * (R(1) - s);
      case score_function::softmax:
        return s * (ds - sds);
    }
    return std::numeric_limits<R>::quiet_NaN();
  }

  /// The same derivative split for a ds that is zero outside a few entries (the router's k selected
  /// experts): du_e = coupling(s_e, sds) for every e, then du_j += diagonal(s_j, ds_j) for the selected.
  template <class R>
  FP8MOE_HOST_DEVICE R coupling(R s, R sds) const {
    return coupled() ? -s * sds : R(0);
  }
  template <class R>
  FP8MOE_HOST_DEVICE R diagonal(R s, R ds) const {
    switch (f_) {
      case score_function::sigmoid:
        return ds * s * (R(1) - s);
      case score_function::softmax:
        return s * ds;
    }
    return std::numeric_limits<R>::quiet_NaN();
  }

 private:
  score_function f_;
  float max_ = 0.0f;      // softmax: the row max
  float inv_sum_ = 1.0f;  // softmax: 1 / sum_e exp(u_e - max)
};

}  // namespace fp8moe::moe
