// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/nn.md's swiglu_mlp lines (statements in a function body): the FP8 weights w13
// (2I,H) and w2 (H,I) with their transposes, the recipe r; x (T,H), y (T,H), dy (T,H), dx (T,H),
// dw13 (2I,H), dw2 (H,I), all float.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include <fp8moe/nn/swiglu_mlp.hpp>
namespace nn = fp8moe::nn;
using fp8moe::float8_e4m3_t;
#define FP8MOE_SNIPPET_PARAMS                                                                                \
  fp8moe::host_executor const &exec, nn::fp8_weight<float8_e4m3_t> w13, nn::fp8_weight<float8_e4m3_t> w2,    \
      fp8moe::scaling::recipe const &r, std::int64_t T, std::int64_t H, std::int64_t I,                      \
      fp8moe::matrix_view<float const> x, fp8moe::matrix_view<float> y, fp8moe::matrix_view<float const> dy, \
      fp8moe::matrix_view<float> dx, fp8moe::matrix_view<float> dw13, fp8moe::matrix_view<float> dw2
