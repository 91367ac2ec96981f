// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// bfloat16_t: 2-byte brain float (the top half of an IEEE float32). float -> bf16 is RNE and
// bit-identical to cuda_bf16.h __float2bfloat16_rn, including NaN -> 0x7FFF; bf16 -> float exact.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "fp8moe/config.hpp"
#include "fp8moe/core/math.hpp"

namespace fp8moe {

namespace detail {
constexpr FP8MOE_HOST_DEVICE std::uint16_t float_to_bf16_bits(float x) {
  std::uint32_t const u = fp8moe::bit_cast<std::uint32_t>(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFF;
  std::uint32_t const rounding_bias = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>((u + rounding_bias) >> 16);
}
constexpr FP8MOE_HOST_DEVICE float bf16_bits_to_float(std::uint16_t b) {
  return fp8moe::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}
}  // namespace detail

struct bfloat16_t {
  std::uint16_t bits_;

  bfloat16_t() = default;
  constexpr FP8MOE_HOST_DEVICE explicit bfloat16_t(float x) : bits_(detail::float_to_bf16_bits(x)) {}
  constexpr FP8MOE_HOST_DEVICE explicit bfloat16_t(double x) : bfloat16_t(static_cast<float>(x)) {}

  static constexpr FP8MOE_HOST_DEVICE bfloat16_t from_bits(std::uint16_t b) {
    bfloat16_t r{};
    r.bits_ = b;
    return r;
  }
  constexpr FP8MOE_HOST_DEVICE std::uint16_t bits() const { return bits_; }
  constexpr FP8MOE_HOST_DEVICE float to_float() const { return detail::bf16_bits_to_float(bits_); }
  constexpr FP8MOE_HOST_DEVICE explicit operator float() const { return to_float(); }
  constexpr FP8MOE_HOST_DEVICE explicit operator double() const { return static_cast<double>(to_float()); }
  constexpr FP8MOE_HOST_DEVICE bool is_nan() const { return (bits_ & 0x7FFFu) > 0x7F80u; }

  friend constexpr FP8MOE_HOST_DEVICE bool operator==(bfloat16_t a, bfloat16_t b) {
    return a.to_float() == b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE bool operator<(bfloat16_t a, bfloat16_t b) {
    return a.to_float() < b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE bool operator>(bfloat16_t a, bfloat16_t b) {
    return a.to_float() > b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE bool operator<=(bfloat16_t a, bfloat16_t b) {
    return a.to_float() <= b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE bool operator>=(bfloat16_t a, bfloat16_t b) {
    return a.to_float() >= b.to_float();
  }
  friend constexpr FP8MOE_HOST_DEVICE bfloat16_t operator-(bfloat16_t a) {
    return from_bits(static_cast<std::uint16_t>(a.bits_ ^ 0x8000u));
  }
};

static_assert(sizeof(bfloat16_t) == 2 && std::is_trivially_copyable_v<bfloat16_t>);

}  // namespace fp8moe

namespace std {
template <>
class numeric_limits<::fp8moe::bfloat16_t> {
  using T = ::fp8moe::bfloat16_t;

 public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_exact = false;
  static constexpr bool has_infinity = true;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool has_signaling_NaN = true;
  static constexpr float_round_style round_style = round_to_nearest;
  static constexpr bool is_iec559 = false;
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = 8;
  static constexpr int digits10 = 2;
  static constexpr int max_digits10 = 4;
  static constexpr int radix = 2;
  static constexpr int min_exponent = -125;
  static constexpr int min_exponent10 = -37;
  static constexpr int max_exponent = 128;
  static constexpr int max_exponent10 = 38;
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;
  static constexpr T min() noexcept { return T::from_bits(0x0080); }
  static constexpr T lowest() noexcept { return T::from_bits(0xFF7F); }
  static constexpr T max() noexcept { return T::from_bits(0x7F7F); }
  static constexpr T epsilon() noexcept { return T::from_bits(0x3C00); }
  static constexpr T round_error() noexcept { return T::from_bits(0x3F00); }
  static constexpr T infinity() noexcept { return T::from_bits(0x7F80); }
  static constexpr T quiet_NaN() noexcept { return T::from_bits(0x7FC0); }
  static constexpr T signaling_NaN() noexcept { return T::from_bits(0x7F81); }
  static constexpr T denorm_min() noexcept { return T::from_bits(0x0001); }
};
}  // namespace std
