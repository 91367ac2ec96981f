// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::rope_dispatch<host_executor>: the host path of rope_forward / rope_backward (in place, OpenMP
// over tokens; float math, one rounding per stored element).
#pragma once

#include <cstdint>
#include <span>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/host/elementwise.hpp"
#include "fp8moe/nn/rope.hpp"

namespace fp8moe::nn {

template <>
struct rope_dispatch<host_executor> {
  template <class E>
  static void apply(host_executor const& exec, rope_table const& tab, std::span<std::int64_t const> pos,
                    batched_matrix_view<E> x, float sign) {
    std::int64_t const half = x.cols / 2;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(host::elementwise_threads(exec, x.batches* x.rows* x.cols)) \
    schedule(static)
#endif
    for (std::int64_t t = 0; t < x.batches; ++t) {
      float const p = static_cast<float>(pos[static_cast<std::size_t>(t)]);
      for (std::int64_t h = 0; h < x.rows; ++h)
        for (std::int64_t i = 0; i < half; ++i) {
          float a = static_cast<float>(x(t, h, 2 * i)), b = static_cast<float>(x(t, h, 2 * i + 1));
          rope_rotate_pair(a, b, p * tab.inv_freq[static_cast<std::size_t>(i)], tab.attention_factor, sign);
          x(t, h, 2 * i) = static_cast<E>(a);
          x(t, h, 2 * i + 1) = static_cast<E>(b);
        }
    }
    (void)exec;
  }
};

}  // namespace fp8moe::nn
