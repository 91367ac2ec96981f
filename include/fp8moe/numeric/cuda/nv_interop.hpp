// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Bit-preserving conversions between fp8moe's types and NVIDIA's __nv_fp8_e4m3, __nv_fp8_e5m2,
// __nv_fp8_e8m0 and __nv_bfloat16. Layouts are identical (static_asserted), so arrays may also be
// reinterpreted. Host-compilable with the CUDA headers; part of fp8moe::cuda.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "fp8moe/numeric/numeric.hpp"

namespace fp8moe {

static_assert(sizeof(__nv_fp8_e4m3) == sizeof(float8_e4m3_t) &&
              alignof(__nv_fp8_e4m3) == alignof(float8_e4m3_t));
static_assert(sizeof(__nv_fp8_e5m2) == sizeof(float8_e5m2_t) &&
              alignof(__nv_fp8_e5m2) == alignof(float8_e5m2_t));
static_assert(sizeof(__nv_bfloat16) == sizeof(bfloat16_t));

FP8MOE_HOST_DEVICE __nv_fp8_e4m3 to_nv(float8_e4m3_t x) {
  __nv_fp8_e4m3 r;
  r.__x = x.bits();
  return r;
}
FP8MOE_HOST_DEVICE __nv_fp8_e5m2 to_nv(float8_e5m2_t x) {
  __nv_fp8_e5m2 r;
  r.__x = x.bits();
  return r;
}
FP8MOE_HOST_DEVICE __nv_fp8_e8m0 to_nv(float8_e8m0_t x) {
  __nv_fp8_e8m0 r;
  r.__x = x.bits();
  return r;
}
FP8MOE_HOST_DEVICE __nv_bfloat16 to_nv(bfloat16_t x) {
  __nv_bfloat16_raw r;
  r.x = x.bits();
  return __nv_bfloat16(r);
}
FP8MOE_HOST_DEVICE float8_e4m3_t from_nv(__nv_fp8_e4m3 x) {
  return float8_e4m3_t::from_bits(x.__x);
}
FP8MOE_HOST_DEVICE float8_e5m2_t from_nv(__nv_fp8_e5m2 x) {
  return float8_e5m2_t::from_bits(x.__x);
}
FP8MOE_HOST_DEVICE float8_e8m0_t from_nv(__nv_fp8_e8m0 x) {
  return float8_e8m0_t::from_bits(x.__x);
}
FP8MOE_HOST_DEVICE bfloat16_t from_nv(__nv_bfloat16 x) {
  __nv_bfloat16_raw r(x);
  return bfloat16_t::from_bits(r.x);
}

}  // namespace fp8moe
