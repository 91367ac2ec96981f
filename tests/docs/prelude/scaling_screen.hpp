// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/scaling.md's "In one screen" (statements in a function body; x (T,H) bf16,
// w (N,H) float, y (T,H) float).
#pragma once
#include <cstdint>

#include <fp8moe/scaling/scaling.hpp>
#define FP8MOE_SNIPPET_PARAMS                                                          \
  fp8moe::matrix_view<fp8moe::bfloat16_t const> x, fp8moe::matrix_view<float const> w, \
      fp8moe::matrix_view<float> y, std::int64_t T, std::int64_t H
