// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Packed device conversions: 2 or 4 floats -> FP8 per instruction (cvt.rn.satfinite.{e4m3x2,e5m2x2}
// on sm_89+, the shared integer path elsewhere) and back (cvt.rn.f16x2.{e4m3x2,e5m2x2}).
// Element 0 is the LOW byte, as in cuda_fp8.h. Results equal fp8moe's saturating host conversion.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "fp8moe/numeric/numeric.hpp"

namespace fp8moe::cuda {

/// (x0, x1) -> two FP8 codes of format F in one 16-bit word, saturating RNE.
template <fp8_format F>
FP8MOE_DEVICE std::uint16_t cvt_float2_to_fp8x2(float x0, float x1) {
#if FP8MOE_ARCH_FP8
  std::uint16_t r;
  if constexpr (F::mantissa_bits == 3) {
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %2, %1;" : "=h"(r) : "f"(x0), "f"(x1));
  } else {
    asm("cvt.rn.satfinite.e5m2x2.f32 %0, %2, %1;" : "=h"(r) : "f"(x0), "f"(x1));
  }
  return r;
#else
  return static_cast<std::uint16_t>(detail::float_to_fp8_bits<F>(x0, saturation::finite) |
                                    (detail::float_to_fp8_bits<F>(x1, saturation::finite) << 8));
#endif
}

/// Four floats -> four FP8 codes in one 32-bit word (element 0 in the low byte).
template <fp8_format F>
FP8MOE_DEVICE std::uint32_t cvt_float4_to_fp8x4(float4 v) {
  return static_cast<std::uint32_t>(cvt_float2_to_fp8x2<F>(v.x, v.y)) |
         (static_cast<std::uint32_t>(cvt_float2_to_fp8x2<F>(v.z, v.w)) << 16);
}

/// Two FP8 codes (low byte = element 0) -> two floats, exact.
template <fp8_format F>
FP8MOE_DEVICE float2 cvt_fp8x2_to_float2(std::uint16_t packed) {
#if FP8MOE_ARCH_FP8
  std::uint32_t h2;
  if constexpr (F::mantissa_bits == 3) {
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(packed));
  } else {
    asm("cvt.rn.f16x2.e5m2x2 %0, %1;" : "=r"(h2) : "h"(packed));
  }
  __half2_raw raw;
  raw.x = static_cast<unsigned short>(h2 & 0xFFFFu);
  raw.y = static_cast<unsigned short>(h2 >> 16);
  return __half22float2(__half2(raw));
#else
  return make_float2(detail::fp8_bits_to_float<F>(static_cast<std::uint8_t>(packed & 0xFFu)),
                     detail::fp8_bits_to_float<F>(static_cast<std::uint8_t>(packed >> 8)));
#endif
}

template <fp8_format F>
FP8MOE_DEVICE float4 cvt_fp8x4_to_float4(std::uint32_t packed) {
  float2 const lo = cvt_fp8x2_to_float2<F>(static_cast<std::uint16_t>(packed & 0xFFFFu));
  float2 const hi = cvt_fp8x2_to_float2<F>(static_cast<std::uint16_t>(packed >> 16));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}

/// Two floats -> packed bf16x2 (element 0 low), RNE.
FP8MOE_DEVICE std::uint32_t cvt_float2_to_bf16x2(float x0, float x1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  std::uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %2, %1;" : "=r"(r) : "f"(x0), "f"(x1));
  return r;
#else
  return static_cast<std::uint32_t>(detail::float_to_bf16_bits(x0)) |
         (static_cast<std::uint32_t>(detail::float_to_bf16_bits(x1)) << 16);
#endif
}

}  // namespace fp8moe::cuda
