// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::rmsnorm_forward / rmsnorm_backward: y (T,C) = x / sqrt(mean_c(x^2) + eps) * w, float math for
// float or bf16 x / w / y (one rounding, at the store; HF's DeepseekV3RMSNorm rounds x*rstd to the
// input dtype before the weight multiply, which differs by one bf16 rounding). The backward
// ACCUMULATES dx (T,C) and dw (C) (llm.c's layernorm_backward contract). Host path in nn/host/rmsnorm.hpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/bfloat16.hpp"

namespace fp8moe::nn {

/// Undefined primary template; nn/host/rmsnorm.hpp defines the host_executor specialisation.
template <class Exec>
struct rmsnorm_dispatch;

/// Element types the RMSNorm tensors take: float or bfloat16_t.
template <class T>
concept norm_element = std::same_as < std::remove_const_t<T>,
float > || std::same_as<std::remove_const_t<T>, bfloat16_t>;

/// rstd = 1 / sqrt(sum_sq / C + eps), the per-row factor (host and device).
FP8MOE_HOST_DEVICE float rmsnorm_rstd(float sum_sq, std::int64_t cols, float eps) {
#if FP8MOE_IS_DEVICE_CODE
  return ::rsqrtf(sum_sq / static_cast<float>(cols) + eps);
#else
  return 1.0f / std::sqrt(sum_sq / static_cast<float>(cols) + eps);
#endif
}

/// dx_c of one row: rstd * (g_c - x_c * rstd^2 * mean_c'(g_c' x_c')), with g = w * dy; `gx_mean` is
/// mean_c'(g_c' x_c') (host and device).
FP8MOE_HOST_DEVICE float rmsnorm_dx(float x, float g, float rstd, float gx_mean) {
  return rstd * (g - x * rstd * rstd * gx_mean);
}

namespace detail {
inline constexpr char const* rmsnorm_where = "fp8moe::nn::rmsnorm_forward";
inline constexpr char const* rmsnorm_bwd_where = "fp8moe::nn::rmsnorm_backward";

template <class X, class W>
void check_rmsnorm_common(char const* where, matrix_view<X> const& x, std::span<W> w, float eps) {
  check_matrix(x, where, "x");
  require(x.empty() || x.col_stride == 1, where, "x", "row-major (col_stride 1)");
  require(static_cast<std::int64_t>(w.size()) == x.cols, where, "w",
          "size C = x.cols = " + std::to_string(x.cols), "size " + std::to_string(w.size()));
  require(std::isfinite(eps) && eps > 0.0f, where, "eps", "a finite value > 0", std::to_string(eps));
}
}  // namespace detail

/// y (T,C) = rmsnorm(x (T,C)) * w (C); rstd (T) receives 1/sqrt(mean(x^2)+eps) when non-empty (the
/// backward reads it). y is overwritten; y may alias x.
template <executor Exec, class X, class W, class Y>
void rmsnorm_forward(Exec const& exec, matrix_view<X> x, std::span<W> w, matrix_view<Y> y,
                     std::span<float> rstd = {}, float eps = 1e-6f) {
  static_assert(norm_element<X> && norm_element<W> && norm_element<Y> && !std::is_const_v<Y>,
                "fp8moe::nn::rmsnorm_forward: x, w, y must be float or bfloat16_t (y writable)");
  static_assert(has_dispatch<rmsnorm_dispatch<executor_t<Exec>>>,
                "fp8moe::nn::rmsnorm_forward: this executor has no path here; include "
                "\"fp8moe/nn/host/rmsnorm.hpp\" (a CUDA path is not written yet)");
  constexpr char const* where = detail::rmsnorm_where;
  detail::check_rmsnorm_common(where, x, w, eps);
  check_matrix(y, where, "y");
  require(y.empty() || y.col_stride == 1, where, "y", "row-major (col_stride 1)");
  check_shape(y, x.rows, x.cols, where, "y");
  require(rstd.empty() || static_cast<std::int64_t>(rstd.size()) == x.rows, where, "rstd",
          "empty or size T = x.rows = " + std::to_string(x.rows), "size " + std::to_string(rstd.size()));
  if constexpr (has_dispatch<rmsnorm_dispatch<executor_t<Exec>>>) {
    using XC = std::remove_const_t<X>;
    using WC = std::remove_const_t<W>;
    rmsnorm_dispatch<executor_t<Exec>>::forward(exec, matrix_view<XC const>(x), std::span<WC const>(w), y,
                                                rstd, eps);
  }
}

/// dx (T,C) += d/dx, dw (C) += d/dw of sum(dy * rmsnorm_forward(x, w)), from x, w, rstd (T) of the
/// forward and dy (T,C). Both gradients accumulate (zero them first for a plain gradient).
template <executor Exec, class X, class W>
void rmsnorm_backward(Exec const& exec, matrix_view<X> x, std::span<W> w, std::span<float const> rstd,
                      matrix_view<float const> dy, matrix_view<float> dx, std::span<float> dw) {
  static_assert(norm_element<X> && norm_element<W>,
                "fp8moe::nn::rmsnorm_backward: x, w must be float or bfloat16_t");
  static_assert(has_dispatch<rmsnorm_dispatch<executor_t<Exec>>>,
                "fp8moe::nn::rmsnorm_backward: this executor has no path here; include "
                "\"fp8moe/nn/host/rmsnorm.hpp\" (a CUDA path is not written yet)");
  constexpr char const* where = detail::rmsnorm_bwd_where;
  detail::check_rmsnorm_common(where, x, w, 1.0f);
  require(static_cast<std::int64_t>(rstd.size()) == x.rows, where, "rstd",
          "size T = x.rows = " + std::to_string(x.rows), "size " + std::to_string(rstd.size()));
  for (auto const& [m, name] : {std::pair{dy, "dy"}, std::pair{matrix_view<float const>(dx), "dx"}}) {
    check_matrix(m, where, name);
    require(m.empty() || m.col_stride == 1, where, name, "row-major (col_stride 1)");
    check_shape(m, x.rows, x.cols, where, name);
  }
  require(dw.size() == w.size(), where, "dw", "size C = " + std::to_string(w.size()),
          "size " + std::to_string(dw.size()));
  if constexpr (has_dispatch<rmsnorm_dispatch<executor_t<Exec>>>) {
    using XC = std::remove_const_t<X>;
    using WC = std::remove_const_t<W>;
    rmsnorm_dispatch<executor_t<Exec>>::backward(exec, matrix_view<XC const>(x), std::span<WC const>(w), rstd,
                                                 dy, dx, dw);
  }
}

}  // namespace fp8moe::nn

#include "fp8moe/nn/host/rmsnorm.hpp"
