// SPDX-License-Identifier: Apache-2.0
// float8_t requires a format satisfying fp8_format (exponent + mantissa bits = 7).
// EXPECT: fp8_format
#include <fp8moe/numeric/float8.hpp>

struct e4m4_format {
  static constexpr int exponent_bits = 4;
  static constexpr int mantissa_bits = 4;
  static constexpr int bias = 7;
  static constexpr std::uint8_t max_code = 0x7E;
  static constexpr float max_value = 448.0f;
};
fp8moe::float8_t<e4m4_format> x;
