// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Scaling recipes as constexpr aggregate values: element format, tile (granularity), scale
// encoding and the exact scale formula of a reference implementation, per tensor role.
// Named presets: deepseek_v3, deepseek_v3_ue8m0, te_delayed, te_current, te_blockwise, mxfp8,
// mxfp8_ocp, e5m2_weights. validate(r) checks a recipe at run time; checked(r) at compile time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fp8moe/numeric/numeric.hpp"

namespace fp8moe::scaling {

/// FP8 element format of one tensor role.
enum class element_format : std::uint8_t { e4m3, e5m2 };

constexpr float max_value(element_format f) {
  return f == element_format::e4m3 ? 448.0f : 57344.0f;
}
/// Exponent of the largest normal (OCP MX "emax_elem"): 8 for E4M3, 15 for E5M2.
constexpr int max_exponent(element_format f) {
  return f == element_format::e4m3 ? 8 : 15;
}

template <class T>
constexpr element_format format_of() {
  static_assert(float8_type<T>, "format_of<T>: T must be float8_e4m3_t or float8_e5m2_t");
  return T::format::mantissa_bits == 3 ? element_format::e4m3 : element_format::e5m2;
}

/// Granularity: one scale per tile of `rows` x `cols` elements; 0 means "the whole extent"
/// along that axis. {0,0} per-tensor, {1,0} per-row (per-token), {1,128} DeepSeek activation tiles
/// along K, {128,1} column tiles, {128,128} weight blocks, {1,32} MX blocks.
struct tile_shape {
  int rows = 1;
  int cols = 128;
  friend constexpr bool operator==(tile_shape, tile_shape) = default;
};

inline constexpr tile_shape per_tensor{0, 0};
inline constexpr tile_shape per_row{1, 0};
inline constexpr tile_shape tile_1x128{1, 128};
inline constexpr tile_shape tile_128x1{128, 1};
inline constexpr tile_shape block_128x128{128, 128};
inline constexpr tile_shape mx_block_32{1, 32};

/// How a scale is represented. All three are stored as float dequantization multipliers in the
/// scale matrix; power_of_two/ue8m0 guarantee an exact power of two (and ue8m0 can be packed to
/// bytes with pack_ue8m0).
enum class scale_encoding : std::uint8_t { fp32, power_of_two, ue8m0 };

/// The exact fp32 operation order of a reference implementation (fp8_numerics.md §5-§6).
/// Bit-exactness with a stack requires its formula; with power-of-two scales all coincide.
/// The full definitions (NaN/Inf policy included) are in scale_math.hpp and docs/scaling.md.
enum class scale_formula : std::uint8_t {
  deepgemm,  ///< sf = max(amax, floor) / fmax; q = x * (1/sf)            (DeepGEMM python, SGLang Triton)
  deepseek_v3_inference,  ///< s = max(amax, floor) / fmax; q = x / s                   (DeepSeek-V3
                          ///< kernel.py)
  transformer_engine,     ///< scale = fmax / amax (amax 0/inf/nan -> 1); q = x * scale; sf = 1/scale (TE)
  ocp_mx,                 ///< X = 2^(floor(log2 amax) - emax_elem); q = x / X, clamped      (OCP MX spec)
  deepep,   ///< scale = fmax / a; sf = a * (1/fmax); q = x * scale; fmaxf amax (DeepEP, SGLang CUDA)
  te_mxfp8  ///< e = ceil_e8m0(amax * (1/fmax)); q = x * 2^(127-e); sf = 2^(e-127) (TE MXFP8, cuBLAS RCEIL)
};

/// Where amax comes from: this tensor now (current), or an amax history of previous steps (delayed).
enum class amax_source : std::uint8_t { current, delayed };
/// Reduction over the amax history for delayed scaling (TE `amax_compute_algo`).
enum class amax_history_reduce : std::uint8_t { max, most_recent };

/// Everything needed to quantize one tensor role.
struct tensor_recipe {
  element_format format = element_format::e4m3;
  tile_shape tile = tile_1x128;
  scale_encoding encoding = scale_encoding::fp32;
  e8m0_rounding pow2_rounding = e8m0_rounding::toward_pos_inf;  ///< for power_of_two / ue8m0
  scale_formula formula = scale_formula::deepgemm;
  float amax_floor = 1e-4f;  ///< amax is raised to at least this (DeepSeek 1e-4, SGLang 1e-10, TE 0)
  int margin = 0;            ///< TE: scale /= 2^margin
  saturation sat = saturation::finite;
  amax_source source = amax_source::current;
  int amax_history_len = 1;  ///< delayed scaling only
  amax_history_reduce history_reduce = amax_history_reduce::max;

  friend constexpr bool operator==(tensor_recipe const&, tensor_recipe const&) = default;
};

/// Formats and tiles per tensor role: forward activations, weights, and gradients.
struct recipe {
  tensor_recipe activation;
  tensor_recipe weight;
  tensor_recipe gradient;
  friend constexpr bool operator==(recipe const&, recipe const&) = default;
};

/// DeepSeek-V3 training (arXiv:2412.19437 §3.3; DeepGEMM op order): E4M3 everywhere, 1x128
/// activation/gradient tiles, 128x128 weight blocks, fp32 scales, amax floor 1e-4.
inline constexpr recipe deepseek_v3{
    .activation = {.tile = tile_1x128},
    .weight = {.tile = block_128x128},
    .gradient = {.tile = tile_1x128},
};

/// DeepSeek-V3.1 / DeepGEMM UE8M0: as deepseek_v3 with scales rounded up to powers of two.
inline constexpr recipe deepseek_v3_ue8m0{
    .activation = {.tile = tile_1x128, .encoding = scale_encoding::ue8m0},
    .weight = {.tile = block_128x128, .encoding = scale_encoding::ue8m0},
    .gradient = {.tile = tile_1x128, .encoding = scale_encoding::ue8m0},
};

/// Transformer Engine DelayedScaling (HYBRID: E4M3 forward, E5M2 backward), per tensor, history
/// 1024 reduced with max, margin 0.
inline constexpr tensor_recipe te_delayed_forward{.format = element_format::e4m3,
                                                  .tile = per_tensor,
                                                  .formula = scale_formula::transformer_engine,
                                                  .amax_floor = 0.0f,
                                                  .source = amax_source::delayed,
                                                  .amax_history_len = 1024};
inline constexpr recipe te_delayed{
    .activation = te_delayed_forward,
    .weight = te_delayed_forward,
    .gradient = {.format = element_format::e5m2,
                 .tile = per_tensor,
                 .formula = scale_formula::transformer_engine,
                 .amax_floor = 0.0f,
                 .source = amax_source::delayed,
                 .amax_history_len = 1024},
};

/// Transformer Engine Float8CurrentScaling (HYBRID), per tensor, current amax, epsilon 0.
inline constexpr recipe te_current{
    .activation = {.tile = per_tensor, .formula = scale_formula::transformer_engine, .amax_floor = 0.0f},
    .weight = {.tile = per_tensor, .formula = scale_formula::transformer_engine, .amax_floor = 0.0f},
    .gradient = {.format = element_format::e5m2,
                 .tile = per_tensor,
                 .formula = scale_formula::transformer_engine,
                 .amax_floor = 0.0f},
};

/// MXFP8 as NVIDIA implements it (TE/cuBLAS "RCEIL"): blocks of 32 along K, E4M3 elements,
/// UE8M0 scale = 2^ceil(log2(amax/448)) (TE quantize_mxfp8.cuh op order).
inline constexpr tensor_recipe mxfp8_tensor{.tile = mx_block_32,
                                            .encoding = scale_encoding::ue8m0,
                                            .formula = scale_formula::te_mxfp8,
                                            .amax_floor = 0.0f};
inline constexpr recipe mxfp8{.activation = mxfp8_tensor, .weight = mxfp8_tensor, .gradient = mxfp8_tensor};

/// MXFP8 as the OCP MX v1.0 spec (§6.3) defines it: X = 2^(floor(log2 amax) - 8), elements clamped.
inline constexpr tensor_recipe mxfp8_ocp_tensor{.tile = mx_block_32,
                                                .encoding = scale_encoding::ue8m0,
                                                .pow2_rounding = e8m0_rounding::toward_zero,
                                                .formula = scale_formula::ocp_mx,
                                                .amax_floor = 0.0f};
inline constexpr recipe mxfp8_ocp{
    .activation = mxfp8_ocp_tensor, .weight = mxfp8_ocp_tensor, .gradient = mxfp8_ocp_tensor};

/// Transformer Engine Float8BlockScaling (default: power-of-two scales, epsilon 0): 1x128
/// activations and gradients, 128x128 weights, E4M3, scale = 448/amax floored to a power of two.
inline constexpr tensor_recipe te_blockwise_tile{.tile = tile_1x128,
                                                 .encoding = scale_encoding::power_of_two,
                                                 .formula = scale_formula::transformer_engine,
                                                 .amax_floor = 0.0f};
inline constexpr recipe te_blockwise{
    .activation = te_blockwise_tile,
    .weight = {.tile = block_128x128,
               .encoding = scale_encoding::power_of_two,
               .formula = scale_formula::transformer_engine,
               .amax_floor = 0.0f},
    .gradient = te_blockwise_tile,
};

/// The hybrid some articles describe: E5M2 weights, E4M3 activations (DeepSeek tiles otherwise).
inline constexpr recipe e5m2_weights{
    .activation = {.tile = tile_1x128},
    .weight = {.format = element_format::e5m2, .tile = block_128x128},
    .gradient = {.tile = tile_1x128},
};

/// What is wrong with a tensor_recipe, or an empty view when it is valid. Rules: tile extents
/// >= 0 (0 = whole extent); MX formulas need 32-element blocks ({1,32}, {32,1} or {32,32});
/// amax_floor finite and >= 0 (>= 1e-35 where the formula divides by amax/fmax with fp32
/// scales); margin in [0, 126]; delayed scaling is per tensor with a history >= 1.
constexpr std::string_view recipe_problem(tensor_recipe const& r) {
  if (r.tile.rows < 0 || r.tile.cols < 0) return "tile extents must be >= 0 (0 means the whole extent)";
  bool const mx = r.formula == scale_formula::ocp_mx || r.formula == scale_formula::te_mxfp8;
  if (mx) {
    bool const ok_r = r.tile.rows == 1 || r.tile.rows == 32;
    bool const ok_c = r.tile.cols == 1 || r.tile.cols == 32;
    if (!ok_r || !ok_c || (r.tile.rows == 1 && r.tile.cols == 1))
      return "MX formulas need blocks of 32 ({1,32}, {32,1} or {32,32})";
  }
  if (!(r.amax_floor >= 0.0f) || r.amax_floor > 3.4028234e38f) return "amax_floor must be finite and >= 0";
  bool const sf_division = r.formula == scale_formula::deepgemm ||
                           r.formula == scale_formula::deepseek_v3_inference ||
                           r.formula == scale_formula::deepep;
  if (sf_division && r.encoding == scale_encoding::fp32 && !(r.amax_floor >= 1e-35f)) {
    return "amax_floor must be >= 1e-35 for fp32 deepgemm/deepseek_v3_inference/deepep scales (an all-zero "
           "tile would give 0 * inf)";
  }
  if (r.margin < 0 || r.margin > 126) return "margin must be in [0, 126]";
  if (r.source == amax_source::delayed) {
    if (r.tile != per_tensor) return "delayed scaling is per tensor (tile {0,0})";
    if (r.amax_history_len < 1) return "amax_history_len must be >= 1";
  }
  return {};
}

namespace detail {
// Called only from checked() when a recipe is invalid; not constexpr, so the compile error names it.
inline void invalid_recipe_negative_tile() {}
inline void invalid_recipe_mx_block_must_be_32() {}
inline void invalid_recipe_amax_floor() {}
inline void invalid_recipe_margin() {}
inline void invalid_recipe_delayed_scaling_needs_per_tensor_tile_and_history() {}
}  // namespace detail

/// Compile-time validation: `constexpr auto r = checked(tensor_recipe{...});` fails to compile,
/// naming the rule (e.g. invalid_recipe_negative_tile), when the recipe is invalid.
consteval tensor_recipe checked(tensor_recipe r) {
  std::string_view const p = recipe_problem(r);
  if (!p.empty()) {
    if (r.tile.rows < 0 || r.tile.cols < 0)
      detail::invalid_recipe_negative_tile();
    else if (p.starts_with("MX"))
      detail::invalid_recipe_mx_block_must_be_32();
    else if (p.starts_with("amax_floor"))
      detail::invalid_recipe_amax_floor();
    else if (p.starts_with("margin"))
      detail::invalid_recipe_margin();
    else
      detail::invalid_recipe_delayed_scaling_needs_per_tensor_tile_and_history();
  }
  return r;
}
consteval recipe checked(recipe r) {
  (void)checked(r.activation);
  (void)checked(r.weight);
  (void)checked(r.gradient);
  return r;
}

static_assert(recipe_problem(deepseek_v3.activation).empty() && recipe_problem(deepseek_v3.weight).empty());
static_assert(recipe_problem(te_delayed.gradient).empty() && recipe_problem(mxfp8_tensor).empty());
static_assert(recipe_problem(mxfp8_ocp_tensor).empty() && recipe_problem(te_blockwise.weight).empty());

}  // namespace fp8moe::scaling
