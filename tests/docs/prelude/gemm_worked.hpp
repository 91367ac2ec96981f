// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/gemm.md's worked example (statements in a function body; test_gemm_docs runs the
// same lines): the names of the include block above it, FP8 operands xq (T,H), wq (N,H), dyq (T,N),
// dy_t (N,128 k) and x_t (H,128 k), outputs y (T,N) bf16, dx (T,H) float and dw (E,N,H) float, and the
// tokens of each of the E experts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include <fp8moe/gemm/gemm.hpp>
namespace fg = fp8moe::gemm;
using e4m3 = fp8moe::float8_e4m3_t;
using bf16 = fp8moe::bfloat16_t;
#define FP8MOE_SNIPPET_PARAMS                                                                               \
  fp8moe::scaling::quantized_matrix<e4m3> const &xq, fp8moe::scaling::quantized_matrix<e4m3> const &wq,     \
      fp8moe::scaling::quantized_matrix<e4m3> const &dyq,                                                   \
      fp8moe::scaling::quantized_matrix<e4m3> const &dy_t,                                                  \
      fp8moe::scaling::quantized_matrix<e4m3> const &x_t, fp8moe::matrix_view<bf16> y,                      \
      fp8moe::matrix_view<float> dx, fp8moe::batched_matrix_view<float> dw, std::vector<int> const &tokens, \
      std::int64_t E
