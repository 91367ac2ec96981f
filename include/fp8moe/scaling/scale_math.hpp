// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Per-tile scale math shared by the host and CUDA paths: amax accumulation (with each reference's
// NaN policy), amax -> (quantization multiplier, dequantization scale sf) in the exact fp32 op
// order of each scale_formula x scale_encoding, and element quantization. Pure functions,
// constexpr, FP8MOE_HOST_DEVICE; no state, no allocation.
#pragma once

#include <cstdint>

#include "fp8moe/config.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/recipe.hpp"

// Host hot-loop helpers are forced inline so they are compiled into each caller's ISA clone
// (scaling/quantize.hpp clones its loops for AVX2 / AVX-512); a no-op for nvcc and others.
#if (defined(__GNUC__) || defined(__clang__)) && !FP8MOE_CUDA_COMPILER
#define FP8MOE_SCALING_FORCE_INLINE __attribute__((always_inline))
#else
#define FP8MOE_SCALING_FORCE_INLINE
#endif

namespace fp8moe::scaling {

/// The scale of one tile: q = cast(x * multiplier) (or cast(x / sf) when `divide`), and the
/// dequantization multiplier sf stored in the scale matrix: x ~= float(q) * sf.
struct tile_scale {
  float multiplier = 1.0f;  ///< quantization multiplier (TE "scale"; DeepGEMM 1/sf)
  float sf = 1.0f;          ///< dequantization multiplier (TE "scale_inv"; DeepGEMM "sf")
  bool divide = false;      ///< true for deepseek_v3_inference: q = cast(x / sf) (true division)
};

/// NaN policy of a formula's amax reduction. true: NaN elements are ignored (fmaxf reductions of
/// the TE, DeepEP and SGLang CUDA kernels); false: a NaN element makes amax NaN (torch.amax in
/// DeepGEMM's and DeepSeek-V3's references, OCP MX / torchao). +-Inf always counts as amax = inf.
constexpr FP8MOE_HOST_DEVICE bool amax_ignores_nan(scale_formula f) {
  return f == scale_formula::transformer_engine || f == scale_formula::deepep || f == scale_formula::te_mxfp8;
}

/// |x| as float bits: for non-negative floats (NaN included, which sort above +inf) unsigned
/// order equals numeric order, so amax is an integer max that vectorises and needs no branches.
FP8MOE_SCALING_FORCE_INLINE constexpr FP8MOE_HOST_DEVICE std::uint32_t abs_bits(float x) {
  return fp8moe::bit_cast<std::uint32_t>(x) & 0x7FFFFFFFu;
}
FP8MOE_SCALING_FORCE_INLINE constexpr FP8MOE_HOST_DEVICE std::uint32_t abs_bits(bfloat16_t x) {
  return static_cast<std::uint32_t>(x.bits() & 0x7FFFu) << 16;
}

/// One step of the amax reduction on |x| bits. `ignore_nan`: NaN contributes 0.
/// (Values are < 2^31, so the comparisons are done on int32: native SIMD compares on every x86.)
FP8MOE_SCALING_FORCE_INLINE constexpr FP8MOE_HOST_DEVICE std::uint32_t amax_combine(std::uint32_t m,
                                                                                    std::uint32_t abs_x,
                                                                                    bool ignore_nan) {
  auto const v = static_cast<std::int32_t>(abs_x), mm = static_cast<std::int32_t>(m);
  std::int32_t const keep = (ignore_nan && v > 0x7F800000) ? 0 : v;
  return static_cast<std::uint32_t>(keep > mm ? keep : mm);
}
constexpr FP8MOE_HOST_DEVICE float amax_from_bits(std::uint32_t m) {
  return fp8moe::bit_cast<float>(m);
}

namespace detail {

/// 2^(code - 127) for an E8M0 code (0 -> 2^-127 subnormal, 255 -> NaN).
constexpr FP8MOE_HOST_DEVICE float pow2_of_code(std::uint32_t code) {
  return fp8moe::detail::e8m0_bits_to_float(static_cast<std::uint8_t>(code));
}

/// DeepGEMM `ceil_to_ue8m0`, generalised to any rounding: E8M0 code of |x| clamped to
/// [1, 254] (0 -> 2^-126, NaN/Inf -> 2^127). With toward_pos_inf it is bit-exact with DeepGEMM.
constexpr FP8MOE_HOST_DEVICE std::uint32_t clamped_pow2_code(float x, e8m0_rounding rnd) {
  std::uint32_t const c = fp8moe::detail::float_to_e8m0_bits(x, rnd, saturation::finite);
  return c == 0xFFu ? 254u : (c == 0u ? 1u : c);
}

constexpr FP8MOE_HOST_DEVICE bool is_finite_float(float x) {
  return (abs_bits(x)) < 0x7F800000u;
}

/// fl32(1/fmax) as TE's Quantized_Limits<T>::max_norm_rcp.
constexpr FP8MOE_HOST_DEVICE float max_norm_rcp(element_format f) {
  return f == element_format::e4m3 ? static_cast<float>(1.0 / 448.0) : static_cast<float>(1.0 / 57344.0);
}

/// Power-of-two rounding of TE's quantization multiplier `scale`. `rnd` names the rounding of the
/// dequant scale sf = 1/scale: toward_pos_inf (sf up) = floor of scale = TE's mantissa mask.
constexpr FP8MOE_HOST_DEVICE float te_pow2_scale(float scale, e8m0_rounding rnd) {
  std::uint32_t const b = fp8moe::bit_cast<std::uint32_t>(scale);
  switch (rnd) {
    case e8m0_rounding::toward_pos_inf:
      return fp8moe::bit_cast<float>(b & 0xFF800000u);  // TE: keep sign+exponent
    case e8m0_rounding::toward_zero: {                  // sf down = scale up, capped at 2^127
      std::uint32_t const c =
          fp8moe::detail::float_to_e8m0_bits(scale, e8m0_rounding::toward_pos_inf, saturation::finite);
      return pow2_of_code(c);
    }
    case e8m0_rounding::nearest:
      break;
  }
  return pow2_of_code(fp8moe::detail::float_to_e8m0_bits(scale, e8m0_rounding::nearest, saturation::finite));
}

}  // namespace detail

/// What a recipe's scale computation depends on at compile time: formula, power-of-two encoding
/// and its rounding (runtime fields of tensor_recipe; visit_scale_kind turns them into this type).
template <scale_formula Formula, bool Pow2, e8m0_rounding Rounding>
struct scale_kind {
  static constexpr scale_formula formula = Formula;
  static constexpr bool pow2 = Pow2;
  static constexpr e8m0_rounding rounding = Rounding;
};

namespace detail {

template <scale_formula Fm, bool Pow2, class Fn>
FP8MOE_SCALING_FORCE_INLINE constexpr FP8MOE_HOST_DEVICE decltype(auto) visit_rounding(tensor_recipe const& r,
                                                                                       Fn&& fn) {
  if constexpr (!Pow2)
    return fn(scale_kind<Fm, false, e8m0_rounding::toward_pos_inf>{});  // rounding unused
  else {
    switch (r.pow2_rounding) {
      case e8m0_rounding::toward_zero:
        return fn(scale_kind<Fm, true, e8m0_rounding::toward_zero>{});
      case e8m0_rounding::nearest:
        return fn(scale_kind<Fm, true, e8m0_rounding::nearest>{});
      case e8m0_rounding::toward_pos_inf:
        break;
    }
    return fn(scale_kind<Fm, true, e8m0_rounding::toward_pos_inf>{});
  }
}

template <scale_formula Fm, class Fn>
FP8MOE_SCALING_FORCE_INLINE constexpr FP8MOE_HOST_DEVICE decltype(auto) visit_encoding(tensor_recipe const& r,
                                                                                       Fn&& fn) {
  if (r.encoding != scale_encoding::fp32) return visit_rounding<Fm, true>(r, fn);
  return visit_rounding<Fm, false>(r, fn);
}

}  // namespace detail

/// Calls fn(scale_kind<formula, pow2, rounding>{}) for recipe r (MX formulas are always
/// power-of-two; without power-of-two encoding the rounding is irrelevant and fixed).
template <class Fn>
FP8MOE_SCALING_FORCE_INLINE constexpr FP8MOE_HOST_DEVICE decltype(auto) visit_scale_kind(
    tensor_recipe const& r, Fn&& fn) {
  switch (r.formula) {
    case scale_formula::deepseek_v3_inference:
      return detail::visit_encoding<scale_formula::deepseek_v3_inference>(r, fn);
    case scale_formula::deepep:
      return detail::visit_encoding<scale_formula::deepep>(r, fn);
    case scale_formula::transformer_engine:
      return detail::visit_encoding<scale_formula::transformer_engine>(r, fn);
    case scale_formula::ocp_mx:
      return detail::visit_rounding<scale_formula::ocp_mx, true>(r, fn);
    case scale_formula::te_mxfp8:
      return detail::visit_rounding<scale_formula::te_mxfp8, true>(r, fn);
    case scale_formula::deepgemm:
      break;
  }
  return detail::visit_encoding<scale_formula::deepgemm>(r, fn);
}

/// compute_tile_scale with formula, encoding and rounding fixed by Kind (branch-free per kind,
/// so batched host loops over tiles vectorise); the same bits as compute_tile_scale.
template <class Kind>
FP8MOE_SCALING_FORCE_INLINE constexpr FP8MOE_HOST_DEVICE tile_scale
compute_tile_scale_as(tensor_recipe const& r, float amax, float value_for_inf) {
  constexpr scale_formula formula = Kind::formula;
  constexpr bool pow2 = Kind::pow2;
  constexpr e8m0_rounding rnd = Kind::rounding;
  float const fmax = max_value(r.format);
  float const a = amax < r.amax_floor ? r.amax_floor : amax;
  if constexpr (formula == scale_formula::deepgemm || formula == scale_formula::deepseek_v3_inference) {
    float sf = a / fmax;  // DeepGEMM: x_amax / 448; kernel.py: amax / 448.
    if constexpr (pow2) sf = detail::pow2_of_code(detail::clamped_pow2_code(sf, rnd));
    return {1.0f / sf, sf, formula == scale_formula::deepseek_v3_inference};
  } else if constexpr (formula == scale_formula::deepep) {
    if constexpr (!pow2) {
      return {fmax / a, a * detail::max_norm_rcp(r.format), false};
    } else {
      // round_scale: e = exponent of a * (1/fmax), rounded up; scale = 2^-e, scale_inv = 2^e
      std::uint32_t const c = detail::clamped_pow2_code(a * detail::max_norm_rcp(r.format), rnd);
      return {detail::pow2_of_code(254u - c), detail::pow2_of_code(c), false};
    }
  } else if constexpr (formula == scale_formula::transformer_engine) {
    // amax 0, inf or NaN -> 1 (compute_scale_from_amax)
    float const scaled_max = fmax * detail::pow2_of_code(static_cast<std::uint32_t>(127 - r.margin));
    float scale = scaled_max / a;
    if (!detail::is_finite_float(scale)) scale = value_for_inf;
    if (!detail::is_finite_float(a) || a == 0.0f) scale = 1.0f;
    if constexpr (pow2) scale = detail::te_pow2_scale(scale, rnd);
    return {scale, 1.0f / scale, false};
  } else if constexpr (formula == scale_formula::ocp_mx) {
    // shared_exp = floor(log2 amax) - emax_elem, by exponent bits; NaN/Inf amax -> NaN scale
    std::uint32_t const ca = fp8moe::detail::float_to_e8m0_bits(a, rnd, saturation::none);
    int const e = static_cast<int>(ca) - max_exponent(r.format);
    std::uint32_t const c = e < 0 ? 0u : static_cast<std::uint32_t>(e);
    float const nan = fp8moe::bit_cast<float>(0x7FFFFFFFu);
    return {ca == 0xFFu ? nan : detail::pow2_of_code(254u - c), ca == 0xFFu ? nan : detail::pow2_of_code(c),
            false};
  } else {  // te_mxfp8: biased_exp = float_to_e8m0(amax * max_norm_rcp); multiplier = exp2f_rcp(biased_exp)
    std::uint32_t const c =
        fp8moe::detail::float_to_e8m0_bits(a * detail::max_norm_rcp(r.format), rnd, saturation::finite);
    float const nan = fp8moe::bit_cast<float>(0x7FFFFFFFu);
    return {c == 0xFFu ? nan : detail::pow2_of_code(254u - c), c == 0xFFu ? nan : detail::pow2_of_code(c),
            false};
  }
}

namespace detail {
/// visit_scale_kind functor of compute_tile_scale (a class, not a lambda: also device code).
struct tile_scale_of {
  tensor_recipe const& r;
  float amax, value_for_inf;
  template <class Kind>
  FP8MOE_SCALING_FORCE_INLINE constexpr FP8MOE_HOST_DEVICE tile_scale operator()(Kind) const {
    return compute_tile_scale_as<Kind>(r, amax, value_for_inf);
  }
};
}  // namespace detail

/// amax -> tile_scale for recipe `r`, in the exact fp32 op order of its reference
/// (fp8_numerics.md §5-§6; docs/scaling.md has the table). `value_for_inf` replaces an infinite
/// TE scale: FLT_MAX (per-tensor, delayed) or the input type's max (TE block scaling).
/// amax is first raised to r.amax_floor (`a < floor ? floor : a`, so a NaN amax stays NaN).
constexpr FP8MOE_HOST_DEVICE tile_scale compute_tile_scale(tensor_recipe const& r, float amax,
                                                           float value_for_inf = 3.40282347e38f) {
  return visit_scale_kind(r, detail::tile_scale_of{r, amax, value_for_inf});
}

/// x -> FP8 under a tile scale: RNE, overflow per `sat` (NaN -> 0x7F).
template <float8_type T>
constexpr FP8MOE_HOST_DEVICE T quantize_value(float x, tile_scale const& s, saturation sat) {
  float const y = s.divide ? x / s.sf : x * s.multiplier;
  return T::from_float(y, sat);
}

/// Dequantization of one element: float(q) * sf.
template <float8_type T>
constexpr FP8MOE_HOST_DEVICE float dequantize_value(T q, float sf) {
  return q.to_float() * sf;
}

/// The float -> FP8 conversion written without branches (integer RNE for normals, the float
/// adder's RNE for subnormals, selects as bit masks / min on int32 so GCC vectorises it even with
/// SSE2 and -ftrapping-math). Overflow is one min(): the overflow code is max_code (saturating)
/// or max_code + 1 (E4M3 NaN, E5M2 inf), so "code > max_code ? over : code" == min(code, over).
/// Bit-identical to fp8moe::detail::float_to_fp8_bits<F> for every float (exhaustive 2^32
/// check: 0 mismatches, both formats, both saturation modes; CI runs a strided sweep).
template <fp8_format F>
FP8MOE_SCALING_FORCE_INLINE constexpr FP8MOE_HOST_DEVICE std::uint8_t float_to_fp8_bits_select(
    float x, saturation sat) {
  constexpr int M = F::mantissa_bits;
  constexpr int shift = 23 - M;
  static_assert(F::overflow_code == F::max_code + 1 && F::nan_code >= F::overflow_code,
                "float_to_fp8_bits_select: overflow as min() needs overflow_code == max_code + 1");
  // normal code = (RNE of a at bit `shift`) - rebias, with the rebias folded into the addend
  // (a multiple of 2^shift, so it commutes with the shift; a >= min_normal keeps it positive)
  constexpr std::uint32_t addend =
      ((1u << (shift - 1)) - 1u) - (static_cast<std::uint32_t>(127 - F::bias) << 23);
  constexpr std::int32_t min_normal = (127 + 1 - F::bias) << 23;
  // magic: a float whose ulp is the FP8 subnormal step 2^(1 - bias - M)
  constexpr std::int32_t magic_bits = (127 + 1 - F::bias - M + 23) << 23;
  constexpr float magic = fp8moe::bit_cast<float>(magic_bits);
  std::int32_t const u = fp8moe::bit_cast<std::int32_t>(x);
  std::int32_t const a = u & 0x7FFFFFFF;
  auto const ua =
      static_cast<std::uint32_t>(a);  // unsigned: NaN magnitudes must not overflow the rounding add
  // (unsigned wrap for a < min_normal is discarded by the select below)
  auto normal = static_cast<std::int32_t>((ua + addend + ((ua >> shift) & 1u)) >> shift);
  std::int32_t const over_code = sat == saturation::finite ? F::max_code : F::overflow_code;
  normal = normal < over_code ? normal : over_code;
  // subnormal: a + magic rounds a to the subnormal step; its low mantissa bits are the code
  // (<= 2^M, magic's low 23 bits are zero), the upper bits are dropped by the final uint8 cast
  std::int32_t const sub = fp8moe::bit_cast<std::int32_t>(fp8moe::bit_cast<float>(a) + magic);
  std::int32_t code = a < min_normal ? sub : normal;
  code |= (u >> 24) & 0x80;
  return static_cast<std::uint8_t>(a > 0x7F800000 ? std::int32_t{F::nan_code} : code);
}

}  // namespace fp8moe::scaling
