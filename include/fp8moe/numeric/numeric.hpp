// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The numeric module: FP8 (e4m3, e5m2), UE8M0 scale and bfloat16 types, and a uniform
// to_float / from_float interface over them and float itself, used by generic kernels.
#pragma once

#include <concepts>
#include <type_traits>

#include "fp8moe/numeric/bfloat16.hpp"
#include "fp8moe/numeric/float8.hpp"
#include "fp8moe/numeric/float8_e8m0.hpp"

namespace fp8moe {

/// Element types that ops read and write as "high precision" rows: float and bfloat16_t.
template <class T>
concept wide_element = std::same_as < std::remove_cv_t<T>,
float > || std::same_as<std::remove_cv_t<T>, bfloat16_t>;

template <class T>
constexpr FP8MOE_HOST_DEVICE float to_float(T x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else if constexpr (std::is_same_v<T, double>)
    return static_cast<float>(x);
  else
    return x.to_float();
}

/// float -> T: RNE, saturating for FP8 types.
template <class T>
constexpr FP8MOE_HOST_DEVICE T from_float(float x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else
    return T(x);
}

/// Largest finite value of an FP8 element type, as float (448 for e4m3, 57344 for e5m2).
template <float8_type T>
inline constexpr float max_finite_v = T::format::max_value;

}  // namespace fp8moe
