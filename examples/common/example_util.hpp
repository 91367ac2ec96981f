// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Small helpers the examples share: a wall-clock timer, seeded normal data, and a stack of expert
// weight matrices quantized with the DeepSeek-V3 128x128 weight recipe.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

#include "fp8moe/fp8moe.hpp"

namespace fp8moe::examples {

using clock_type = std::chrono::steady_clock;
inline double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

/// n samples of N(0, sigma^2), reproducible from the seed.
inline std::vector<float> normal(std::size_t n, float sigma, std::uint64_t seed) {
  std::mt19937_64 g{seed};
  std::normal_distribution<float> d{0.0f, sigma};
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

/// E matrices (R,C) from w (E,R,C) quantized with 128x128 blocks, as one (E,R,C) batched view.
struct quantized_stack {
  std::vector<float8_e4m3_t> data;
  std::vector<float> scales;
  std::int64_t E, R, C, sr, sc;
  quantized_stack(host_executor const& exec, std::vector<float> const& w, std::int64_t e, std::int64_t r,
                  std::int64_t c)
      : data(static_cast<std::size_t>(e * r * c)), E(e), R(r), C(c) {
    namespace fs = fp8moe::scaling;
    sr = fs::scale_rows(fs::block_128x128, r);
    sc = fs::scale_cols(fs::block_128x128, c);
    scales.resize(static_cast<std::size_t>(e * sr * sc));
    for (std::int64_t i = 0; i < e; ++i)
      fs::quantize(exec, matrix_view<float const>(make_matrix(w.data() + i * r * c, r, c)),
                   fs::deepseek_v3.weight,
                   fs::quantized_matrix_view<float8_e4m3_t>{make_matrix(data.data() + i * r * c, r, c),
                                                            make_matrix(scales.data() + i * sr * sc, sr, sc),
                                                            fs::block_128x128});
  }
  /// Matrices [first, first + n) (default: all) as one batched view, e.g. a rank's local experts.
  gemm::quantized_batched_view<float8_e4m3_t const> view(std::int64_t first = 0, std::int64_t n = -1) const {
    if (n < 0) n = E - first;
    return {{data.data() + first * R * C, n, R, C, R * C, C, 1},
            {scales.data() + first * sr * sc, n, sr, sc, sr * sc, sc, 1},
            scaling::block_128x128};
  }
  scaling::quantized_matrix_view<float8_e4m3_t const> matrix(std::int64_t i) const { return view()[i]; }
};

}  // namespace fp8moe::examples
