// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// OCP FP8 storage types float8_e4m3_t and float8_e5m2_t: 1 byte, trivially copyable, constexpr.
// float -> fp8 is round-to-nearest-even; saturation::finite (default) is bit-identical to
// cuda_fp8.h __NV_SATFINITE / PTX cvt.rn.satfinite, saturation::none to __NV_NOSAT (== ml_dtypes
// and PyTorch <= 2.11 for every non-NaN input). Every NaN encodes as 0x7F (the cuda float path).
#pragma once

#include <concepts>
#include <cstdint>
#include <limits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/math.hpp"

namespace fp8moe {

/// Overflow policy of a conversion into FP8.
enum class saturation : std::uint8_t {
  finite,  ///< |x| above max (after rounding) and ±inf become ±max (cvt.rn.satfinite)
  none     ///< overflow becomes NaN (E4M3) or ±inf (E5M2); ±inf likewise
};

/// Static description of an FP8 format. `fp8_format` is the concept over these.
struct e4m3_format {
  static constexpr int exponent_bits = 4;
  static constexpr int mantissa_bits = 3;
  static constexpr int bias = 7;
  static constexpr bool has_infinity = false;
  static constexpr std::uint8_t max_code = 0x7E;  // 448
  static constexpr std::uint8_t nan_code = 0x7F;
  static constexpr std::uint8_t overflow_code = 0x7F;  // non-saturating overflow: NaN
  static constexpr float max_value = 448.0f;
  static constexpr char const* name = "e4m3";
};

struct e5m2_format {
  static constexpr int exponent_bits = 5;
  static constexpr int mantissa_bits = 2;
  static constexpr int bias = 15;
  static constexpr bool has_infinity = true;
  static constexpr std::uint8_t max_code = 0x7B;  // 57344
  static constexpr std::uint8_t nan_code = 0x7F;
  static constexpr std::uint8_t overflow_code = 0x7C;  // non-saturating overflow: +inf
  static constexpr float max_value = 57344.0f;
  static constexpr char const* name = "e5m2";
};

template <class F>
concept fp8_format = requires {
  { F::exponent_bits } -> std::convertible_to<int>;
  { F::mantissa_bits } -> std::convertible_to<int>;
  { F::bias } -> std::convertible_to<int>;
  { F::max_code } -> std::convertible_to<std::uint8_t>;
  { F::max_value } -> std::convertible_to<float>;
}
&&(F::exponent_bits + F::mantissa_bits == 7);

namespace detail {

/// float -> FP8 code, RNE on the unbounded-exponent grid, then the overflow policy.
/// Integer-only, so it is constexpr and identical on host and device.
template <fp8_format F>
constexpr FP8MOE_HOST_DEVICE std::uint8_t float_to_fp8_bits(float x, saturation sat) {
  constexpr int M = F::mantissa_bits;
  constexpr int min_normal_exp = 1 - F::bias;  // unbiased exponent of the smallest normal
  std::uint32_t const u = fp8moe::bit_cast<std::uint32_t>(x);
  std::uint8_t const sign = static_cast<std::uint8_t>((u >> 24) & 0x80u);
  std::uint32_t const a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return F::nan_code;  // NaN: canonical, sign dropped (cuda float path)
  if (a == 0x7F800000u) {                   // ±inf behaves as overflow
    return static_cast<std::uint8_t>((sat == saturation::finite ? F::max_code : F::overflow_code) | sign);
  }
  if (a < 0x00800000u) return sign;  // float zero/subnormal: far below half the FP8 min subnormal
  int const e = static_cast<int>(a >> 23) - 127;
  std::uint32_t const m24 = (a & 0x007FFFFFu) | 0x00800000u;  // with the implicit 1
  std::uint32_t code;
  int drop;  // number of low bits of m24 shifted out
  if (e >= min_normal_exp) {
    drop = 23 - M;
    // exponent field and mantissa in one integer, so a rounding carry bumps the exponent
    code = (static_cast<std::uint32_t>(e + F::bias) << M) | ((m24 & 0x007FFFFFu) >> drop);
  } else {
    drop = 23 - M + (min_normal_exp - e);
    if (drop > 24) return sign;  // below half the smallest subnormal
    code = m24 >> drop;
  }
  std::uint32_t const rem = m24 & ((1u << drop) - 1u);
  std::uint32_t const half = 1u << (drop - 1);
  if (rem > half || (rem == half && (code & 1u))) ++code;
  if (code > F::max_code) {
    return static_cast<std::uint8_t>((sat == saturation::finite ? F::max_code : F::overflow_code) | sign);
  }
  return static_cast<std::uint8_t>(code | sign);
}

/// FP8 code -> float, exact. NaN codes decode to a positive quiet NaN (as cuda does).
template <fp8_format F>
constexpr FP8MOE_HOST_DEVICE float fp8_bits_to_float(std::uint8_t b) {
  constexpr int M = F::mantissa_bits;
  std::uint32_t const sign = static_cast<std::uint32_t>(b & 0x80u) << 24;
  std::uint32_t const mag = b & 0x7Fu;
  std::uint32_t const exp_field = mag >> M;
  std::uint32_t mant = mag & ((1u << M) - 1u);
  if constexpr (F::has_infinity) {
    if (exp_field == (1u << F::exponent_bits) - 1u) {
      return fp8moe::bit_cast<float>(mant == 0 ? (sign | 0x7F800000u) : 0x7FFFFFFFu);
    }
  } else {
    if (mag == 0x7Fu) return fp8moe::bit_cast<float>(0x7FFFFFFFu);
  }
  if (exp_field == 0) {
    if (mant == 0) return fp8moe::bit_cast<float>(sign);
    // subnormal: value = mant * 2^(1 - bias - M); normalise into a float
    int e = 1 - F::bias;
    while ((mant & (1u << M)) == 0) {
      mant <<= 1;
      --e;
    }
    mant &= (1u << M) - 1u;
    return fp8moe::bit_cast<float>(sign | (static_cast<std::uint32_t>(e + 127) << 23) | (mant << (23 - M)));
  }
  int const e = static_cast<int>(exp_field) - F::bias;
  return fp8moe::bit_cast<float>(sign | (static_cast<std::uint32_t>(e + 127) << 23) | (mant << (23 - M)));
}

}  // namespace detail

/// An 8-bit floating-point value of format F. Construction from float saturates (RNE);
/// use `from_float(x, saturation::none)` for the non-saturating conversion.
template <fp8_format F>
struct float8_t {
  using format = F;
  std::uint8_t bits_;  // public so the type stays an aggregate-compatible, trivially copyable byte

  float8_t() = default;
  constexpr FP8MOE_HOST_DEVICE explicit float8_t(float x)
      : bits_(detail::float_to_fp8_bits<F>(x, saturation::finite)) {}
  constexpr FP8MOE_HOST_DEVICE explicit float8_t(double x) : float8_t(static_cast<float>(x)) {}

  static constexpr FP8MOE_HOST_DEVICE float8_t from_bits(std::uint8_t b) {
    float8_t r{};
    r.bits_ = b;
    return r;
  }
  static constexpr FP8MOE_HOST_DEVICE float8_t from_float(float x, saturation sat = saturation::finite) {
    return from_bits(detail::float_to_fp8_bits<F>(x, sat));
  }
  constexpr FP8MOE_HOST_DEVICE std::uint8_t bits() const { return bits_; }
  constexpr FP8MOE_HOST_DEVICE float to_float() const { return detail::fp8_bits_to_float<F>(bits_); }
  constexpr FP8MOE_HOST_DEVICE explicit operator float() const { return to_float(); }
  constexpr FP8MOE_HOST_DEVICE explicit operator double() const { return static_cast<double>(to_float()); }

  constexpr FP8MOE_HOST_DEVICE bool is_nan() const {
    if constexpr (F::has_infinity)
      return (bits_ & 0x7Fu) > 0x7Cu;
    else
      return (bits_ & 0x7Fu) == 0x7Fu;
  }
  constexpr FP8MOE_HOST_DEVICE bool is_inf() const {
    if constexpr (F::has_infinity)
      return (bits_ & 0x7Fu) == 0x7Cu;
    else
      return false;
  }

  // IEEE comparison semantics (NaN unordered, -0 == +0), evaluated exactly through float.
  friend constexpr FP8MOE_HOST_DEVICE bool operator==(float8_t a, float8_t b) {
    return a.to_float() == b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE bool operator<(float8_t a, float8_t b) {
    return a.to_float() < b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE bool operator>(float8_t a, float8_t b) {
    return a.to_float() > b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE bool operator<=(float8_t a, float8_t b) {
    return a.to_float() <= b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE bool operator>=(float8_t a, float8_t b) {
    return a.to_float() >= b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE float8_t operator-(float8_t a) { return from_bits(a.bits_ ^ 0x80u); }
};

using float8_e4m3_t = float8_t<e4m3_format>;
using float8_e5m2_t = float8_t<e5m2_format>;

/// True for float8_e4m3_t and float8_e5m2_t (the element types FP8 GEMM and quantize accept).
template <class T>
inline constexpr bool is_float8_v = false;
template <fp8_format F>
inline constexpr bool is_float8_v<float8_t<F>> = true;

template <class T>
concept float8_type = is_float8_v<T>;

static_assert(sizeof(float8_e4m3_t) == 1 && alignof(float8_e4m3_t) == 1);
static_assert(std::is_trivially_copyable_v<float8_e4m3_t> && std::is_trivially_copyable_v<float8_e5m2_t>);
static_assert(std::is_trivially_default_constructible_v<float8_e4m3_t>);

}  // namespace fp8moe

namespace std {
template <::fp8moe::fp8_format F>
class numeric_limits<::fp8moe::float8_t<F>> {
  using T = ::fp8moe::float8_t<F>;

 public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_exact = false;
  static constexpr bool has_infinity = F::has_infinity;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool has_signaling_NaN = false;
  static constexpr float_round_style round_style = round_to_nearest;
  static constexpr bool is_iec559 = false;
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = F::mantissa_bits + 1;
  static constexpr int digits10 = F::mantissa_bits == 3 ? 0 : 0;
  static constexpr int max_digits10 = F::mantissa_bits == 3 ? 3 : 2;
  static constexpr int radix = 2;
  static constexpr int min_exponent = 2 - F::bias;  // as std: 2^(min_exponent-1) is the min normal
  static constexpr int min_exponent10 = F::mantissa_bits == 3 ? -1 : -4;
  static constexpr int max_exponent = F::mantissa_bits == 3 ? 9 : 16;
  static constexpr int max_exponent10 = F::mantissa_bits == 3 ? 2 : 4;
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;

  static constexpr T min() noexcept { return T::from_bits(std::uint8_t{1} << F::mantissa_bits); }
  static constexpr T lowest() noexcept { return T::from_bits(F::max_code | 0x80u); }
  static constexpr T max() noexcept { return T::from_bits(F::max_code); }
  static constexpr T epsilon() noexcept {  // 2^-M
    return T::from_bits(static_cast<std::uint8_t>((F::bias - F::mantissa_bits) << F::mantissa_bits));
  }
  static constexpr T round_error() noexcept {  // 0.5
    return T::from_bits(static_cast<std::uint8_t>((F::bias - 1) << F::mantissa_bits));
  }
  static constexpr T infinity() noexcept { return T::from_bits(F::has_infinity ? 0x7C : 0x7F); }
  static constexpr T quiet_NaN() noexcept { return T::from_bits(F::has_infinity ? 0x7E : 0x7F); }
  static constexpr T signaling_NaN() noexcept { return quiet_NaN(); }
  static constexpr T denorm_min() noexcept { return T::from_bits(1); }
};
}  // namespace std
