// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Per-element SwiGLU math, written once for the host and the device paths:
// act = silu(g) * u with silu(g) = g * sigmoid(g), and its derivative.
#pragma once

#include <cmath>

#include "fp8moe/config.hpp"

namespace fp8moe::nn {

FP8MOE_HOST_DEVICE float sigmoid_f32(float g) {
#if FP8MOE_IS_DEVICE_CODE
  return 1.0f / (1.0f + ::expf(-g));
#else
  return 1.0f / (1.0f + std::exp(-g));
#endif
}
FP8MOE_HOST_DEVICE float swiglu(float g, float u) {
  return g * sigmoid_f32(g) * u;
}
/// d/dg = u * s (1 + g (1 - s)), d/du = g s, with s = sigmoid(g); `d` is dL/dact.
FP8MOE_HOST_DEVICE void swiglu_backward(float g, float u, float d, float& dg, float& du) {
  float const s = sigmoid_f32(g);
  dg = d * u * s * (1.0f + g * (1.0f - s));
  du = d * g * s;
}

}  // namespace fp8moe::nn
