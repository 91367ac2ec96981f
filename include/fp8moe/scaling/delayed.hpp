// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Stateful delayed scaling (Transformer Engine DelayedScaling, fp8_numerics.md §5.2): a per-tensor
// scale computed from an amax history of previous steps. quantize() uses the current scale and
// records this step's amax; update() (once per step, after the quantizes) rolls the history and
// computes the next scale. Not thread-safe: one state per tensor role, updated by one thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "fp8moe/scaling/scale_math.hpp"

namespace fp8moe::scaling {

/// TE's new scale from an amax and the previous scale (delayed_scaling.cu):
/// scale = (fmax * 2^-margin) / amax when amax is finite and > 0, else the previous scale;
/// an infinite result becomes FLT_MAX; power_of_two/ue8m0 encodings then floor the scale to a
/// power of two (TE's mantissa mask) as the per-tensor current recipe does.
constexpr FP8MOE_HOST_DEVICE float delayed_scale_update(tensor_recipe const& r, float amax,
                                                        float previous_scale) {
  if (!(detail::is_finite_float(amax) && amax > 0.0f)) return previous_scale;
  float const scaled_max =
      max_value(r.format) * detail::pow2_of_code(static_cast<std::uint32_t>(127 - r.margin));
  float scale = scaled_max / amax;
  if (!detail::is_finite_float(scale)) scale = 3.40282347e38f;
  if (r.encoding != scale_encoding::fp32) scale = detail::te_pow2_scale(scale, r.pow2_rounding);
  return scale;
}

/// The state of one delayed-scaled tensor: amax history (row 0 = the current step) and scale.
class delayed_scaling {
 public:
  /// `r` must be a valid recipe with source == delayed (tile per_tensor); initial scale 1.
  explicit delayed_scaling(tensor_recipe const& r, float initial_scale = 1.0f)
      : recipe_(r), scale_(initial_scale) {
    constexpr char const* where = "fp8moe::scaling::delayed_scaling";
    detail::check_recipe(r, where);
    require(r.source == amax_source::delayed, where, "recipe.source", "amax_source::delayed", "current");
    require(initial_scale > 0.0f && detail::is_finite_float(initial_scale), where, "initial_scale",
            "a finite positive scale", std::to_string(initial_scale));
    history_.assign(static_cast<std::size_t>(r.amax_history_len), 0.0f);
  }

  tensor_recipe const& recipe() const { return recipe_; }
  /// Quantization multiplier used by the next quantize (TE `scale`).
  float scale() const { return scale_; }
  /// Dequantization multiplier written with data quantized now (TE `scale_inv` = 1/scale, RN).
  float scale_inv() const { return 1.0f / scale_; }
  /// The history, row 0 first (row 0 collects this step's amax).
  std::span<float const> amax_history() const { return history_; }

  /// history[0] = fmaxf(history[0], amax): NaN is ignored, as TE's atomic amax update does.
  void record_amax(float amax) {
    if (amax > history_[0]) history_[0] = amax;
  }

  /// End of step (TE fused_amax_and_scale_update): amax = fmaxf over the history (`max`) or
  /// history[0] (`most_recent`); history rolled by -1 (row 0 moves to the end) and row 0 zeroed;
  /// scale = delayed_scale_update(amax, scale). Returns the amax used.
  float update() {
    std::size_t const n = history_.size();
    float const last = history_[0];
    float amax = 0.0f;
    for (float a : history_) amax = a > amax ? a : amax;  // fmaxf semantics: NaN ignored
    if (recipe_.history_reduce == amax_history_reduce::most_recent) amax = last;
    for (std::size_t i = 0; i + 1 < n; ++i) history_[i] = history_[i + 1];
    history_[n - 1] = last;
    history_[0] = 0.0f;
    scale_ = delayed_scale_update(recipe_, amax, scale_);
    return amax;
  }

 private:
  tensor_recipe recipe_;
  float scale_ = 1.0f;
  std::vector<float> history_;  // (amax_history_len)
};

/// Quantizes x (R,C) with the state's current scale (per tensor): q = cast(x * scale), sf =
/// scale_inv, and records amax(x) (NaN ignored) into the state's history. Overwrites out.
/// Host path only: the amax history is host state, updated as the data is read.
template <executor Exec, class In, class T>
void quantize(Exec const& exec, matrix_view<In> x, delayed_scaling& state, quantized_matrix_view<T> out) {
  static_assert(host_executor_like<Exec>,
                "fp8moe::scaling::quantize(delayed_scaling): delayed scaling has a host path only (its amax "
                "history is host state); on a device executor use a current-amax recipe");
  static_assert(float8_type<T>,
                "fp8moe::scaling::quantize: the output element type must be float8_e4m3_t or float8_e5m2_t");
  static_assert(wide_element<std::remove_const_t<In>>,
                "fp8moe::scaling::quantize: the input element type must be float or bfloat16_t");
  constexpr char const* where = "fp8moe::scaling::quantize";
  using I = std::remove_const_t<In>;
  matrix_view<I const> const xc = x;
  tensor_recipe const& r = state.recipe();
  detail::check_format<T>(r, where, "out.data");
  check_matrix(xc, where, "x");
  detail::check_quantized(out, xc.rows, xc.cols, r.tile, where, "out");
  std::int64_t const R = xc.rows, C = xc.cols;
  if (R == 0 || C == 0) return;
  tile_scale const s{state.scale(), state.scale_inv(), false};
  std::uint32_t m = 0;
  int const nt = exec.num_threads();
  (void)nt;
#pragma omp parallel for schedule(static) reduction(max : m) num_threads(nt)
  for (std::int64_t row = 0; row < R; ++row) {
    m = detail::amax_span<true>(&xc(row, 0), xc.col_stride, C, m);
    detail::quantize_span_dispatch(&xc(row, 0), xc.col_stride, &out.data(row, 0), out.data.col_stride, C, s,
                                   r.sat);
  }
  out.scales(0, 0) = s.sf;
  state.record_amax(amax_from_bits(m));
}

}  // namespace fp8moe::scaling
