// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/nn.md's matmul lines (statements in a function body): a (M,K), b (K,N), d (M,N),
// the caller's workspace; x (T,K), w (N,K), y (T,N). All float, host memory.
#pragma once
#include <cstddef>
#include <span>

#include <fp8moe/nn/matmul.hpp>
namespace nn = fp8moe::nn;
#define FP8MOE_SNIPPET_PARAMS                                                                                \
  fp8moe::host_executor const &exec, fp8moe::matrix_view<float const> a, fp8moe::matrix_view<float const> b, \
      fp8moe::matrix_view<float> d, std::span<std::byte> workspace, fp8moe::matrix_view<float const> x,      \
      fp8moe::matrix_view<float const> w, fp8moe::matrix_view<float> y
