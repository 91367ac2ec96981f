// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/nn.md's fp8_linear lines (statements in a function body): the FP32 master W (N,K)
// and the owning FP8 weight and its transpose to fill; x (M,K), y (M,N), dy (M,N), dx (M,K),
// dw (N,K), all float.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include <fp8moe/nn/fp8_linear.hpp>
namespace fm = fp8moe;
namespace nn = fp8moe::nn;
using fp8moe::float8_e4m3_t;
#define FP8MOE_SNIPPET_PARAMS                                                                                \
  fp8moe::host_executor const &exec, fp8moe::matrix_view<float const> w_master,                              \
      fp8moe::scaling::quantized_matrix<float8_e4m3_t>&wq,                                                   \
      fp8moe::scaling::quantized_matrix<float8_e4m3_t>&wtq, std::int64_t M, std::int64_t N, std::int64_t K,  \
      fp8moe::matrix_view<float const> x, fp8moe::matrix_view<float> y, fp8moe::matrix_view<float const> dy, \
      fp8moe::matrix_view<float> dx, fp8moe::matrix_view<float> dw
