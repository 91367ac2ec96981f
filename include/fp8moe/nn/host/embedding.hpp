// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::embedding_dispatch<host_executor>: gather (OpenMP over tokens) and scatter-add (OpenMP over
// columns, tokens in order, so repeated ids never race and the sum order is fixed).
#pragma once

#include <cstdint>
#include <span>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/embedding.hpp"

namespace fp8moe::nn {

template <>
struct embedding_dispatch<host_executor> {
  template <class W, class O>
  static void forward(host_executor const& exec, std::span<std::int32_t const> ids, matrix_view<W const> wte,
                      matrix_view<O> out) {
    std::int64_t const T = static_cast<std::int64_t>(ids.size()), C = wte.cols;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t t = 0; t < T; ++t) {
      W const* src = wte.row(ids[static_cast<std::size_t>(t)]);
      O* dst = out.row(t);
      for (std::int64_t c = 0; c < C; ++c) dst[c] = static_cast<O>(static_cast<float>(src[c]));
    }
    (void)exec;
  }
  static void backward(host_executor const& exec, std::span<std::int32_t const> ids,
                       matrix_view<float const> dout, matrix_view<float> dwte) {
    std::int64_t const T = static_cast<std::int64_t>(ids.size()), C = dwte.cols;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t t = 0; t < T; ++t) dwte(ids[static_cast<std::size_t>(t)], c) += dout(t, c);
    (void)exec;
  }
};

}  // namespace fp8moe::nn
