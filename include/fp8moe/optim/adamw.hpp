// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::adamw_step: one AdamW step over a list of parameter tensors, in place, in PyTorch's decoupled
// form p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + wd * p), FP32 master weights and gradients,
// moments stored as float or bfloat16_t (round-to-nearest-even at the store). Caller-owned state
// (views); validated on the host before anything is written. Host path: optim/host/adamw.hpp
// (included below); CUDA path: optim/cuda/adamw.cuh (nvcc), enqueued on exec.stream.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/numeric/bfloat16.hpp"

namespace fp8moe::optim {

/// AdamW hyper-parameters. Defaults are DeepSeek-V3's (arXiv:2412.19437 §4.2: beta1 0.9, beta2 0.95,
/// weight decay 0.1; peak learning rate 2.2e-4) and PyTorch's eps (1e-8). The learning rate of a
/// step is usually a schedule's value (optim/schedule.hpp) written into `lr` before the call.
struct adamw_config {
  float lr = 2.2e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
  friend constexpr bool operator==(adamw_config const&, adamw_config const&) = default;
};

/// Moment storage: float, or bfloat16_t as DeepSeek-V3 trains (§3.3: "AdamW first and second moments
/// are BF16"); the new moment is computed in float and rounded to nearest even when stored.
template <class M>
concept moment_element = std::same_as<M, float> || std::same_as<M, bfloat16_t>;

/// One parameter tensor of n elements: FP32 master weights (updated in place), its FP32 gradient,
/// and its two moments (updated in place). `decay = false` exempts the tensor from weight decay (a
/// per-tensor parameter group: norms, biases, embeddings, as the caller chooses). The four views
/// must not overlap. Where they live (one allocation for the model or one per tensor) is the caller's.
template <moment_element M>
struct adamw_tensor {
  std::span<float> param;       // (n)
  std::span<float const> grad;  // (n)
  std::span<M> m;               // (n) first moment
  std::span<M> v;               // (n) second moment
  bool decay = true;
};

/// The per-step scalars of one tensor, computed once on the host in double and rounded to float.
struct adamw_coefficients {
  float beta1, one_minus_beta1;  // m <- beta1 m + (1 - beta1) g
  float beta2, one_minus_beta2;  // v <- beta2 v + (1 - beta2) g^2
  float step_size;               // lr / (1 - beta1^t)
  float inv_sqrt_bc2;            // 1 / sqrt(1 - beta2^t)
  float eps;
  float decay;       // 1 - lr * weight_decay, or 1 for a tensor without decay
  float grad_scale;  // the gradient is multiplied by it first (a clip coefficient)
};

/// The coefficients of step t >= 1 (bias corrections 1 - beta^t in double).
inline adamw_coefficients adamw_coefficients_for(adamw_config const& c, std::int64_t step, bool decay,
                                                 float grad_scale = 1.0f) {
  double const t = static_cast<double>(step);
  double const bc1 = 1.0 - std::pow(static_cast<double>(c.beta1), t);
  double const bc2 = 1.0 - std::pow(static_cast<double>(c.beta2), t);
  return {c.beta1,
          static_cast<float>(1.0 - static_cast<double>(c.beta1)),
          c.beta2,
          static_cast<float>(1.0 - static_cast<double>(c.beta2)),
          static_cast<float>(static_cast<double>(c.lr) / bc1),
          static_cast<float>(1.0 / std::sqrt(bc2)),
          c.eps,
          decay ? static_cast<float>(1.0 - static_cast<double>(c.lr) * static_cast<double>(c.weight_decay))
                : 1.0f,
          grad_scale};
}

namespace detail {
FP8MOE_HOST_DEVICE float moment_load(float x) {
  return x;
}
FP8MOE_HOST_DEVICE float moment_load(bfloat16_t x) {
  return x.to_float();
}
template <class M>
FP8MOE_HOST_DEVICE M moment_store(float x) {
  if constexpr (std::is_same_v<M, float>)
    return x;
  else
    return M(x);  // round to nearest even (numeric/bfloat16.hpp)
}
FP8MOE_HOST_DEVICE float adamw_sqrt(float x) {
#if FP8MOE_IS_DEVICE_CODE
  return ::sqrtf(x);
#else
  return std::sqrt(x);
#endif
}
}  // namespace detail

/// The moment half of one AdamW element (host and device): the new moments in float from the stored
/// ones and the gradient, g = grad * grad_scale, m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g^2,
/// stored into m, v (rounded to nearest even for bfloat16_t) and returned unrounded in mf, vf.
template <moment_element M>
FP8MOE_HOST_DEVICE void adamw_moments(adamw_coefficients const& c, float grad, M& m, M& v, float& mf,
                                      float& vf) {
  float const g = grad * c.grad_scale;
  mf = c.beta1 * detail::moment_load(m) + c.one_minus_beta1 * g;
  vf = c.beta2 * detail::moment_load(v) + c.one_minus_beta2 * (g * g);
  m = detail::moment_store<M>(mf);
  v = detail::moment_store<M>(vf);
}

/// The parameter half (host and device): p (1 - lr wd) - lr / (1 - beta1^t) * mf / (sqrt_vf / sqrt(1 -
/// beta2^t) + eps), with sqrt_vf = sqrt(vf) of the unrounded new second moment.
FP8MOE_HOST_DEVICE float adamw_param(adamw_coefficients const& c, float p, float mf, float sqrt_vf) {
  return p * c.decay - c.step_size * (mf / (sqrt_vf * c.inv_sqrt_bc2 + c.eps));
}

/// One element of an AdamW step (host and device), PyTorch's torch.optim.AdamW formulas:
///   g = grad * grad_scale;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
///   p = p (1 - lr wd) - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// The update reads the float m, v before the store rounds them (as Transformer Engine's fused Adam).
/// The host loop runs the same two halves in blocks (so GCC vectorises them around a scalar sqrt).
template <moment_element M>
FP8MOE_HOST_DEVICE void adamw_update(adamw_coefficients const& c, float& p, float grad, M& m, M& v) {
  float mf, vf;
  adamw_moments(c, grad, m, v, mf, vf);
  p = adamw_param(c, p, mf, detail::adamw_sqrt(vf));
}

/// Undefined primary template: optim/host/adamw.hpp and optim/cuda/adamw.cuh specialise it.
template <class Exec>
struct adamw_dispatch;

namespace detail {
inline constexpr char const* adamw_where = "fp8moe::optim::adamw_step";

template <class A, class B>
bool overlaps(std::span<A> a, std::span<B> b) {
  if (a.empty() || b.empty()) return false;
  auto const lo = [](auto const* p) { return reinterpret_cast<std::uintptr_t>(p); };
  std::less<std::uintptr_t> lt;
  return lt(lo(a.data()), lo(b.data() + b.size())) && lt(lo(b.data()), lo(a.data() + a.size()));
}

inline void check_adamw_config(adamw_config const& c, std::int64_t step, float grad_scale) {
  char const* where = adamw_where;
  require(std::isfinite(c.lr) && c.lr >= 0.0f, where, "cfg.lr", "a finite value >= 0", std::to_string(c.lr));
  require(c.beta1 >= 0.0f && c.beta1 < 1.0f, where, "cfg.beta1", "a value in [0, 1)",
          std::to_string(c.beta1));
  require(c.beta2 >= 0.0f && c.beta2 < 1.0f, where, "cfg.beta2", "a value in [0, 1)",
          std::to_string(c.beta2));
  require(std::isfinite(c.eps) && c.eps > 0.0f, where, "cfg.eps", "a finite value > 0",
          std::to_string(c.eps));
  require(std::isfinite(c.weight_decay) && c.weight_decay >= 0.0f, where, "cfg.weight_decay",
          "a finite value >= 0", std::to_string(c.weight_decay));
  require(step >= 1, where, "step", "the 1-based step count (>= 1)", std::to_string(step));
  require(std::isfinite(grad_scale) && grad_scale >= 0.0f, where, "grad_scale", "a finite value >= 0",
          std::to_string(grad_scale));
}

template <class M>
void check_adamw_tensors(std::span<adamw_tensor<M> const> ts) {
  char const* where = adamw_where;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    auto const& t = ts[i];
    std::string const arg = "tensors[" + std::to_string(i) + "]";
    std::size_t const n = t.param.size();
    auto const got = [&] {
      return "param " + std::to_string(n) + ", grad " + std::to_string(t.grad.size()) + ", m " +
             std::to_string(t.m.size()) + ", v " + std::to_string(t.v.size());
    };
    require(t.grad.size() == n && t.m.size() == n && t.v.size() == n, where, arg,
            "param, grad, m and v of one size", got());
    require(!overlaps(t.param, t.grad) && !overlaps(t.param, t.m) && !overlaps(t.param, t.v) &&
                !overlaps(t.grad, t.m) && !overlaps(t.grad, t.v) && !overlaps(t.m, t.v),
            where, arg, "param, grad, m and v not overlapping");
  }
}

template <class T>
struct adamw_list_traits {
  static constexpr bool ok = false;
};
template <class M>
struct adamw_list_traits<adamw_tensor<M>> {
  static constexpr bool ok = true;
  static std::span<adamw_tensor<M> const> span(adamw_tensor<M> const& t) { return {&t, 1}; }
};
template <class R>
requires std::ranges::contiguous_range<R const> && std::ranges::sized_range<R const>
struct adamw_list_traits<R> {
  using value = std::remove_cv_t<std::ranges::range_value_t<R const>>;
  static constexpr bool ok = adamw_list_traits<value>::ok;
  static std::span<value const> span(R const& r) { return {std::ranges::data(r), std::ranges::size(r)}; }
};
}  // namespace detail

/// What adamw_step accepts as its tensors: one adamw_tensor<M>, or a contiguous range of them
/// (std::vector, std::array, std::span).
template <class T>
concept adamw_tensor_list = detail::adamw_list_traits<std::remove_cvref_t<T>>::ok;

/// One AdamW step (the `step`-th, 1-based: the bias corrections use it) over every tensor of
/// `tensors`, each gradient multiplied by `grad_scale` first (clip_coefficient of optim/clip.hpp, or
/// 1). Throws fp8moe::error naming the argument (sizes, overlap, lr < 0, betas outside [0, 1),
/// eps <= 0, step < 1) before anything is written. On a device executor every span is device memory
/// and each tensor is one kernel on exec.stream. Deterministic: every element is independent.
template <executor Exec, class Tensors>
void adamw_step(Exec const& exec, adamw_config const& cfg, std::int64_t step, Tensors const& tensors,
                float grad_scale = 1.0f) {
  static_assert(adamw_tensor_list<Tensors>,
                "fp8moe::optim::adamw_step: pass one optim::adamw_tensor<M> or a contiguous range of them "
                "(M = float or bfloat16_t)");
  static_assert(has_dispatch<adamw_dispatch<executor_t<Exec>>>,
                "fp8moe::optim::adamw_step: this executor has no path here; for cuda_executor include "
                "\"fp8moe/optim/cuda/adamw.cuh\" (nvcc)");
  if constexpr (adamw_tensor_list<Tensors>) {
    auto const ts = detail::adamw_list_traits<std::remove_cvref_t<Tensors>>::span(tensors);
    detail::check_adamw_config(cfg, step, grad_scale);
    detail::check_adamw_tensors(ts);
    if constexpr (has_dispatch<adamw_dispatch<executor_t<Exec>>>)
      adamw_dispatch<executor_t<Exec>>::step(exec, cfg, step, ts, grad_scale);
  }
}

}  // namespace fp8moe::optim

#include "fp8moe/optim/host/adamw.hpp"  // adamw_dispatch<host_executor>
