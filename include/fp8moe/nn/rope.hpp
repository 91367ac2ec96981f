// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::rope: rotary position embedding on INTERLEAVED pairs (x[2i], x[2i+1]) (DeepSeek's
// apply_rotary_emb, vLLM is_neox_style=False), with the YaRN frequency table of transformers'
// _compute_yarn_parameters (truncate = true; the same numbers as DeepSeek's precompute_freqs_cis)
// applied whenever factor > 1. rope_forward rotates x in place by +angle; rope_backward rotates the
// gradient in place by -angle (the transpose of a rotation). Host path in nn/host/rope.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <string>
#include <type_traits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/bfloat16.hpp"

namespace fp8moe::nn {

/// Undefined primary template; nn/host/rope.hpp defines the host_executor specialisation.
template <class Exec>
struct rope_dispatch;

/// The rope_scaling of an HF config plus the rope dimension (DeepSeek-V3: dim 64, theta 10000,
/// factor 40, original 4096, beta_fast 32, beta_slow 1, mscale 1, mscale_all_dim 1).
/// factor <= 1 means plain RoPE (no YaRN).
struct rope_config {
  std::int64_t dim = 64;  // d_rope, even
  double theta = 10000.0;
  double factor = 1.0;
  std::int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
  friend constexpr bool operator==(rope_config const&, rope_config const&) = default;
};

/// transformers' yarn_get_mscale: 1 for scale <= 1, else 0.1 * m * ln(scale) + 1.
inline double yarn_get_mscale(double scale, double m) {
  return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
}

/// The cos/sin multiplier (transformers' attention_factor): get_mscale(factor, mscale) /
/// get_mscale(factor, mscale_all_dim) with mscale_all_dim given, else get_mscale(factor) (m = 1).
/// DeepSeek-V3's config gives 1.0 (model.py never scales cos/sin).
inline double yarn_attention_factor(rope_config const& c) {
  if (c.factor <= 1.0) return 1.0;
  if (c.mscale_all_dim != 0.0)
    return yarn_get_mscale(c.factor, c.mscale) / yarn_get_mscale(c.factor, c.mscale_all_dim);
  return yarn_get_mscale(c.factor, 1.0);
}

/// The attention softmax scale: qk_head_dim^-0.5 * get_mscale(factor, mscale_all_dim)^2 (HF
/// DeepseekV3Attention; model.py's mscale^2 with args.mscale, equal for V3's config: 0.135234 at
/// qk_head_dim 192, factor 40, mscale_all_dim 1).
inline double yarn_softmax_scale(rope_config const& c, std::int64_t qk_head_dim) {
  double const m = c.mscale_all_dim != 0.0 ? yarn_get_mscale(c.factor, c.mscale_all_dim) : 1.0;
  return m * m / std::sqrt(static_cast<double>(qk_head_dim));
}

namespace detail {
inline constexpr char const* rope_where = "fp8moe::nn::rope_frequencies";
/// YaRN's correction dimension: dim * ln(orig / (n_rot * 2 pi)) / (2 ln theta).
inline double yarn_correction_dim(double n_rot, rope_config const& c) {
  return static_cast<double>(c.dim) *
         std::log(static_cast<double>(c.original_max_position_embeddings) /
                  (n_rot * 2.0 * std::numbers::pi)) /
         (2.0 * std::log(c.theta));
}
}  // namespace detail

/// inv_freq (dim/2): theta^(-2i/dim), blended with inv_freq/factor by YaRN's linear ramp between
/// low = max(floor(corr(beta_fast)), 0) and high = min(ceil(corr(beta_slow)), dim-1) when factor > 1.
/// Computed in float64, stored as float.
inline void rope_frequencies(rope_config const& c, std::span<float> inv_freq) {
  constexpr char const* where = detail::rope_where;
  require(c.dim > 0 && c.dim % 2 == 0, where, "config.dim", "an even value > 0", std::to_string(c.dim));
  require(c.theta > 1.0, where, "config.theta", "> 1", std::to_string(c.theta));
  require(std::isfinite(c.factor) && c.factor > 0.0, where, "config.factor", "a finite value > 0",
          std::to_string(c.factor));
  require(static_cast<std::int64_t>(inv_freq.size()) == c.dim / 2, where, "inv_freq",
          "size dim/2 = " + std::to_string(c.dim / 2), "size " + std::to_string(inv_freq.size()));
  bool const yarn = c.factor > 1.0;
  if (yarn) {
    require(c.original_max_position_embeddings > 0, where, "config.original_max_position_embeddings", "> 0");
    require(c.beta_fast > c.beta_slow && c.beta_slow > 0.0, where, "config.beta_fast/beta_slow",
            "beta_fast > beta_slow > 0");
  }
  double low = 0, high = 0;
  if (yarn) {
    low = std::max(std::floor(detail::yarn_correction_dim(c.beta_fast, c)), 0.0);
    high = std::min(std::ceil(detail::yarn_correction_dim(c.beta_slow, c)), static_cast<double>(c.dim - 1));
    if (low == high) high += 0.001;
  }
  for (std::int64_t i = 0; i < c.dim / 2; ++i) {
    double const f = std::pow(c.theta, -static_cast<double>(2 * i) / static_cast<double>(c.dim));
    double v = f;
    if (yarn) {
      double const ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
      double const extrapolation = 1.0 - ramp;  // 1 keeps the original frequency
      v = f / c.factor * (1.0 - extrapolation) + f * extrapolation;
    }
    inv_freq[static_cast<std::size_t>(i)] = static_cast<float>(v);
  }
}

/// One interleaved pair rotated by `sign` * angle, scaled by `attn`: (x0 c - x1 s, x0 s + x1 c).
FP8MOE_HOST_DEVICE void rope_rotate_pair(float& x0, float& x1, float angle, float attn, float sign) {
#if FP8MOE_IS_DEVICE_CODE
  float const c = ::cosf(angle) * attn, s = sign * ::sinf(angle) * attn;
#else
  float const c = std::cos(angle) * attn, s = sign * std::sin(angle) * attn;
#endif
  float const a = x0, b = x1;
  x0 = a * c - b * s;
  x1 = a * s + b * c;
}

/// The frequency table the apply functions read: inv_freq (dim/2) and the cos/sin multiplier.
struct rope_table {
  std::span<float const> inv_freq;  // (d_rope/2)
  float attention_factor = 1.0f;
};

namespace detail {
template <class E>
void check_rope_apply(char const* where, rope_table const& tab, std::span<std::int64_t const> pos,
                      batched_matrix_view<E> const& x) {
  require(x.batches >= 0 && x.rows >= 0 && x.cols >= 0, where, "x", "non-negative extents");
  require(x.cols == 2 * static_cast<std::int64_t>(tab.inv_freq.size()), where, "x",
          "(T, heads, d_rope) with d_rope = 2 * inv_freq.size() = " + std::to_string(2 * tab.inv_freq.size()),
          "d_rope = " + std::to_string(x.cols));
  require(x.col_stride == 1, where, "x", "unit col_stride (pairs adjacent)");
  require(static_cast<std::int64_t>(pos.size()) == x.batches, where, "positions",
          "size T = " + std::to_string(x.batches), "size " + std::to_string(pos.size()));
  require(x.batches * x.rows * x.cols == 0 || x.data != nullptr, where, "x", "non-null data");
  for (std::size_t t = 0; t < pos.size(); ++t)
    require(pos[t] >= 0, where, "positions", "values >= 0",
            std::to_string(pos[t]) + " at " + std::to_string(t));
  require(std::isfinite(tab.attention_factor), where, "table.attention_factor", "finite");
}
}  // namespace detail

/// x (T, heads, d_rope) rotated in place: pair i of token t by positions[t] * inv_freq[i]
/// (angle in float, as model.py's float32 torch.outer), times attention_factor. x may be a strided
/// view into q (T, H*(d_nope+d_rope)) or kv (T, d_c+d_rope); float or bf16 (float math).
template <executor Exec, class E>
void rope_forward(Exec const& exec, rope_table const& table, std::span<std::int64_t const> positions,
                  batched_matrix_view<E> x) {
  static_assert(std::same_as<E, float> || std::same_as<E, bfloat16_t>,
                "fp8moe::nn::rope_forward: x must be writable float or bfloat16_t");
  static_assert(
      has_dispatch<rope_dispatch<executor_t<Exec>>>,
      "fp8moe::nn::rope_forward: this executor has no path here; include \"fp8moe/nn/host/rope.hpp\" "
      "(a CUDA path is not written yet)");
  detail::check_rope_apply("fp8moe::nn::rope_forward", table, positions, x);
  if constexpr (has_dispatch<rope_dispatch<executor_t<Exec>>>)
    rope_dispatch<executor_t<Exec>>::apply(exec, table, positions, x, 1.0f);
}

/// The backward of rope_forward, in place: dx (T, heads, d_rope) = R(-angle) * attention_factor * dy
/// (the rotation's transpose); overwrites its input with the gradient.
template <executor Exec, class E>
void rope_backward(Exec const& exec, rope_table const& table, std::span<std::int64_t const> positions,
                   batched_matrix_view<E> d) {
  static_assert(std::same_as<E, float> || std::same_as<E, bfloat16_t>,
                "fp8moe::nn::rope_backward: d must be writable float or bfloat16_t");
  static_assert(
      has_dispatch<rope_dispatch<executor_t<Exec>>>,
      "fp8moe::nn::rope_backward: this executor has no path here; include \"fp8moe/nn/host/rope.hpp\" "
      "(a CUDA path is not written yet)");
  detail::check_rope_apply("fp8moe::nn::rope_backward", table, positions, d);
  if constexpr (has_dispatch<rope_dispatch<executor_t<Exec>>>)
    rope_dispatch<executor_t<Exec>>::apply(exec, table, positions, d, -1.0f);
}

}  // namespace fp8moe::nn

#include "fp8moe/nn/host/rope.hpp"
