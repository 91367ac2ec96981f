// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::softmax_dispatch<host_executor>: row softmax and softmax cross-entropy forward/backward on the
// host, OpenMP over rows; the loss mean is summed in double in row order (thread-count independent).
#pragma once

#include <cstdint>
#include <span>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/softmax.hpp"

namespace fp8moe::nn {

template <>
struct softmax_dispatch<host_executor> {
  static void softmax(host_executor const& exec, matrix_view<float const> x, matrix_view<float> p) {
    std::int64_t const V = x.cols;
    if (V == 0) return;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t t = 0; t < x.rows; ++t) {
      auto const st = softmax_stats(x.row(t), V);
      for (std::int64_t v = 0; v < V; ++v) p(t, v) = softmax_value(x(t, v), st);
    }
    (void)exec;
  }
  static float cross_entropy(host_executor const& exec, matrix_view<float const> x,
                             std::span<std::int32_t const> tg, std::span<float> losses, std::int32_t ignore) {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t t = 0; t < x.rows; ++t) {
      auto const i = static_cast<std::size_t>(t);
      losses[i] = tg[i] == ignore ? 0.0f : cross_entropy_value(x(t, tg[i]), softmax_stats(x.row(t), x.cols));
    }
    double sum = 0;
    std::int64_t valid = 0;
    for (std::size_t i = 0; i < tg.size(); ++i)
      if (tg[i] != ignore) sum += losses[i], ++valid;
    (void)exec;
    return valid ? static_cast<float>(sum / static_cast<double>(valid)) : 0.0f;
  }
  static void cross_entropy_backward(host_executor const& exec, matrix_view<float const> x,
                                     std::span<std::int32_t const> tg, matrix_view<float> d, float dloss,
                                     std::int32_t ignore) {
    std::int64_t valid = 0;
    for (auto v : tg) valid += v != ignore;
    float const scale = valid ? dloss / static_cast<float>(valid) : 0.0f;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static)
#endif
    for (std::int64_t t = 0; t < x.rows; ++t) {
      std::int32_t const target = tg[static_cast<std::size_t>(t)];
      if (target == ignore) {
        for (std::int64_t v = 0; v < x.cols; ++v) d(t, v) = 0.0f;
        continue;
      }
      auto const st = softmax_stats(x.row(t), x.cols);  // read the whole row before writing (alias)
      for (std::int64_t v = 0; v < x.cols; ++v)
        d(t, v) = scale * (softmax_value(x(t, v), st) - (v == target ? 1.0f : 0.0f));
    }
    (void)exec;
  }
};

}  // namespace fp8moe::nn
