// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The nn module's per-executor dispatch (core/dispatch.hpp): `nn::dispatch<Exec>` is defined by
// nn/host/dispatch.hpp (host_executor) and nn/cuda/dispatch.cuh (cuda_executor, nvcc), one static
// member per primitive op; the layers (fp8_linear, swiglu_mlp) are written once on top of them.
// Also the small value types the entry points of both paths share (matmul_options, matmul_shape).
#pragma once

#include <concepts>
#include <cstdint>

#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/numeric/bfloat16.hpp"

namespace fp8moe::nn {

/// Undefined primary template: each path's header defines its specialisation.
template <class Exec>
struct dispatch;

/// D = alpha * A * B + beta * D (BLAS semantics: with beta == 0, D is not read).
struct matmul_options {
  float alpha = 1.0f;
  float beta = 0.0f;
  friend constexpr bool operator==(matmul_options const&, matmul_options const&) = default;
};

/// The extents of one matmul: A (M,K), B (K,N), D (M,N).
struct matmul_shape {
  std::int64_t m = 0, n = 0, k = 0;
};

/// Input elements of matmul: float or bfloat16_t (the same type for A and B).
template <class T>
concept matmul_input = std::same_as<T, float> || std::same_as<T, bfloat16_t>;

}  // namespace fp8moe::nn
