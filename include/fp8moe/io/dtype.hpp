// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Element types of checkpoint files (safetensors dtype strings): the seven fp8moe::io reads and
// writes (F32 F16 BF16 F8_E4M3 F8_E5M2 I32 I64), their sizes, and the C++ element type of each
// where one exists (F16 has none in fp8moe: read it as bytes). Part of the optional fp8moe::io.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

#include "fp8moe/numeric/bfloat16.hpp"
#include "fp8moe/numeric/float8.hpp"

namespace fp8moe::io {

/// A tensor's element type as stored on disk (little-endian).
enum class dtype { f32, f16, bf16, f8_e4m3, f8_e5m2, i32, i64 };

/// The safetensors dtype string: "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I32", "I64".
constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::f32:
      return "F32";
    case dtype::f16:
      return "F16";
    case dtype::bf16:
      return "BF16";
    case dtype::f8_e4m3:
      return "F8_E4M3";
    case dtype::f8_e5m2:
      return "F8_E5M2";
    case dtype::i32:
      return "I32";
    case dtype::i64:
      return "I64";
  }
  return "?";
}

/// Bytes per element.
constexpr std::size_t size_of(dtype t) noexcept {
  switch (t) {
    case dtype::f8_e4m3:
    case dtype::f8_e5m2:
      return 1;
    case dtype::f16:
    case dtype::bf16:
      return 2;
    case dtype::f32:
    case dtype::i32:
      return 4;
    case dtype::i64:
      return 8;
  }
  return 0;
}

/// The dtype named by a safetensors dtype string, or nullopt for any other string (the format's
/// BOOL, U8, F64, F8_E8M0 ... are valid safetensors but not read by fp8moe::io).
constexpr std::optional<dtype> parse_dtype(std::string_view s) noexcept {
  for (dtype t :
       {dtype::f32, dtype::f16, dtype::bf16, dtype::f8_e4m3, dtype::f8_e5m2, dtype::i32, dtype::i64})
    if (to_string(t) == s) return t;
  return std::nullopt;
}

/// The list of accepted dtype strings, for error messages.
inline constexpr std::string_view supported_dtypes = "F32, F16, BF16, F8_E4M3, F8_E5M2, I32 or I64";

/// dtype_of<T>: the dtype of a C++ element type (float, bfloat16_t, float8_e4m3_t, float8_e5m2_t,
/// std::int32_t, std::int64_t). Undefined for other types.
template <class T>
struct dtype_traits;
template <>
struct dtype_traits<float> {
  static constexpr dtype value = dtype::f32;
};
template <>
struct dtype_traits<bfloat16_t> {
  static constexpr dtype value = dtype::bf16;
};
template <>
struct dtype_traits<float8_e4m3_t> {
  static constexpr dtype value = dtype::f8_e4m3;
};
template <>
struct dtype_traits<float8_e5m2_t> {
  static constexpr dtype value = dtype::f8_e5m2;
};
template <>
struct dtype_traits<std::int32_t> {
  static constexpr dtype value = dtype::i32;
};
template <>
struct dtype_traits<std::int64_t> {
  static constexpr dtype value = dtype::i64;
};

/// Element types with a dtype (the typed accessors of fp8moe::io accept these).
template <class T>
concept stored_element = requires {
  dtype_traits<std::remove_cv_t<T>>::value;
};

template <stored_element T>
inline constexpr dtype dtype_of = dtype_traits<std::remove_cv_t<T>>::value;

}  // namespace fp8moe::io
