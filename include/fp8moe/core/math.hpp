// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Small constexpr integer and bit helpers shared by host and device code (ceil_div, round_up,
// bit_cast that also works under nvcc).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fp8moe/config.hpp"

namespace fp8moe {

template <class I>
constexpr FP8MOE_HOST_DEVICE I ceil_div(I a, I b) {
  return (a + b - 1) / b;
}

template <class I>
constexpr FP8MOE_HOST_DEVICE I round_up(I a, I b) {
  return ceil_div(a, b) * b;
}

/// std::bit_cast that is usable in constexpr host code and in device code.
template <class To, class From>
constexpr FP8MOE_HOST_DEVICE To bit_cast(From const& from) noexcept {
  static_assert(sizeof(To) == sizeof(From), "fp8moe::bit_cast: sizes must match");
  static_assert(std::is_trivially_copyable_v<To> && std::is_trivially_copyable_v<From>,
                "fp8moe::bit_cast: both types must be trivially copyable");
  return __builtin_bit_cast(To, from);
}

}  // namespace fp8moe
