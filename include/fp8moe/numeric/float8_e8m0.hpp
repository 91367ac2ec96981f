// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// float8_e8m0_t: the unsigned 8-bit power-of-two scale of OCP MX / UE8M0 (value 2^(code-127);
// 0x00 = 2^-127, 0xFF = NaN, no zero, no sign). Rounding toward zero and toward +inf are
// bit-identical to cuda_fp8.h __nv_cvt_float_to_e8m0 (cudaRoundZero / cudaRoundPosInf);
// nearest is bit-identical to PyTorch float8_e8m0fnu (sign ignored, 0 -> 0x00).
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/numeric/float8.hpp"

namespace fp8moe {

/// Rounding of a positive magnitude to a power of two.
enum class e8m0_rounding : std::uint8_t {
  toward_zero,     ///< floor: the float's biased exponent (cuda RZ, OCP MX scale algorithm)
  toward_pos_inf,  ///< ceil: next power of two >= |x| (cuda RP, TE MXFP8, DeepGEMM UE8M0)
  nearest          ///< nearest in the linear mantissa, |x| >= 1.5*2^e rounds up (ml_dtypes, PyTorch)
};

namespace detail {

constexpr FP8MOE_HOST_DEVICE std::uint8_t float_to_e8m0_bits(float x, e8m0_rounding rnd, saturation sat) {
  std::uint32_t const a = fp8moe::bit_cast<std::uint32_t>(x) & 0x7FFFFFFFu;  // sign ignored
  if (a > 0x7F800000u) return 0xFF;                                          // NaN
  std::uint8_t const overflow = sat == saturation::finite ? 0xFE : 0xFF;
  if (a == 0x7F800000u) return overflow;  // inf
  std::uint32_t const e = a >> 23;
  std::uint32_t const mant = a & 0x007FFFFFu;
  std::uint32_t r = e;
  switch (rnd) {
    case e8m0_rounding::toward_zero:
      break;
    case e8m0_rounding::toward_pos_inf:
      if (e == 0)
        r = a > 0x00400000u ? 1u : 0u;  // (2^-127, 2^-126) -> 2^-126; <= 2^-127 -> 0x00
      else if (mant != 0)
        r = e + 1;
      break;
    case e8m0_rounding::nearest: {
      bool const guard = (mant >> 22) & 1u;
      bool const sticky = (mant & 0x003FFFFFu) != 0;
      bool const lsb = e != 0;  // normals carry an implicit 1 that makes the tie round up
      if (guard && (sticky || lsb)) r = e + 1;
      break;
    }
  }
  if (r >= 0xFFu) return overflow;
  return static_cast<std::uint8_t>(r);
}

constexpr FP8MOE_HOST_DEVICE float e8m0_bits_to_float(std::uint8_t b) {
  if (b == 0xFF) return fp8moe::bit_cast<float>(0x7FFFFFFFu);
  if (b == 0x00) return fp8moe::bit_cast<float>(0x00400000u);  // 2^-127, a float subnormal (FTZ hazard)
  return fp8moe::bit_cast<float>(static_cast<std::uint32_t>(b) << 23);
}

}  // namespace detail

struct float8_e8m0_t {
  std::uint8_t bits_;

  float8_e8m0_t() = default;
  /// Same default as cuda's __nv_fp8_e8m0(float): round toward +inf, saturating.
  constexpr FP8MOE_HOST_DEVICE explicit float8_e8m0_t(float x)
      : bits_(detail::float_to_e8m0_bits(x, e8m0_rounding::toward_pos_inf, saturation::finite)) {}

  static constexpr FP8MOE_HOST_DEVICE float8_e8m0_t from_bits(std::uint8_t b) {
    float8_e8m0_t r{};
    r.bits_ = b;
    return r;
  }
  static constexpr FP8MOE_HOST_DEVICE float8_e8m0_t from_float(float x, e8m0_rounding rnd,
                                                               saturation sat = saturation::finite) {
    return from_bits(detail::float_to_e8m0_bits(x, rnd, sat));
  }
  /// 2^exponent; exponent outside [-127, 127] saturates.
  static constexpr FP8MOE_HOST_DEVICE float8_e8m0_t from_exponent(int exponent) {
    int const c = exponent + 127;
    return from_bits(static_cast<std::uint8_t>(c < 0 ? 0 : (c > 254 ? 254 : c)));
  }
  constexpr FP8MOE_HOST_DEVICE std::uint8_t bits() const { return bits_; }
  constexpr FP8MOE_HOST_DEVICE int exponent() const { return static_cast<int>(bits_) - 127; }
  constexpr FP8MOE_HOST_DEVICE bool is_nan() const { return bits_ == 0xFF; }
  constexpr FP8MOE_HOST_DEVICE float to_float() const { return detail::e8m0_bits_to_float(bits_); }
  constexpr FP8MOE_HOST_DEVICE explicit operator float() const { return to_float(); }
  constexpr FP8MOE_HOST_DEVICE explicit operator double() const { return static_cast<double>(to_float()); }

  friend constexpr FP8MOE_HOST_DEVICE bool operator==(float8_e8m0_t a, float8_e8m0_t b) {
    return !a.is_nan() && a.bits_ == b.bits_;
  }
  friend constexpr FP8MOE_HOST_DEVICE bool operator<(float8_e8m0_t a, float8_e8m0_t b) {
    return !a.is_nan() && !b.is_nan() && a.bits_ < b.bits_;
  }
};

static_assert(sizeof(float8_e8m0_t) == 1 && std::is_trivially_copyable_v<float8_e8m0_t>);

}  // namespace fp8moe

namespace std {
template <>
class numeric_limits<::fp8moe::float8_e8m0_t> {
  using T = ::fp8moe::float8_e8m0_t;

 public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = false;
  static constexpr bool is_integer = false;
  static constexpr bool is_exact = false;
  static constexpr bool has_infinity = false;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool has_signaling_NaN = false;
  static constexpr float_round_style round_style = round_toward_infinity;
  static constexpr bool is_iec559 = false;
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = 1;
  static constexpr int digits10 = 0;
  static constexpr int max_digits10 = 1;
  static constexpr int radix = 2;
  static constexpr int min_exponent = -126;
  static constexpr int min_exponent10 = -38;
  static constexpr int max_exponent = 128;
  static constexpr int max_exponent10 = 38;
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;
  static constexpr T min() noexcept { return T::from_bits(0x00); }
  static constexpr T lowest() noexcept { return T::from_bits(0x00); }
  static constexpr T max() noexcept { return T::from_bits(0xFE); }
  static constexpr T epsilon() noexcept { return T::from_bits(0x80); }  // 2: next value above 1
  static constexpr T round_error() noexcept { return T::from_bits(0x7F); }
  static constexpr T infinity() noexcept { return T::from_bits(0xFF); }
  static constexpr T quiet_NaN() noexcept { return T::from_bits(0xFF); }
  static constexpr T signaling_NaN() noexcept { return T::from_bits(0xFF); }
  static constexpr T denorm_min() noexcept { return T::from_bits(0x00); }
};
}  // namespace std
