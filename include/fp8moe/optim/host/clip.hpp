// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::clip_dispatch<host_executor>: the host gradient norm and clip. The grad_norm_slices slices
// of the concatenated gradients are split over the OpenMP team in contiguous runs; each slice sums
// g^2 in double over grad_norm_lanes lanes (vectorisable), the lanes and then the slices are added in
// order, so the norm is bit-identical for every thread count. Nothing allocates.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "fp8moe/config.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/optim/clip.hpp"

namespace fp8moe::optim {

namespace host_detail {

/// First element of slice s of N elements cut into S slices.
constexpr std::int64_t slice_begin(std::int64_t N, std::int64_t S, std::int64_t s) {
  return s * (N / S) + std::min(s, N % S);
}

/// sum of x[j]^2 over a piece of a slice into the lanes (lane j % grad_norm_lanes).
template <class G>
void accumulate_squares(G const* x, std::int64_t len, double* acc) {
  constexpr int L = grad_norm_lanes;
  std::int64_t j = 0;
  for (; j + L <= len; j += L)
    for (int l = 0; l < L; ++l) {
      double const d = static_cast<double>(x[j + l]);
      acc[l] += d * d;
    }
  for (; j < len; ++j) {
    double const d = static_cast<double>(x[j]);
    acc[j % L] += d * d;
  }
}

}  // namespace host_detail

template <>
struct clip_dispatch<host_executor> {
  template <class G>
  static void grad_norm(host_executor const& exec, std::span<std::span<G> const> grads, grad_norm_result* out,
                        std::span<std::byte>) {
    constexpr int S = grad_norm_slices;
    std::int64_t N = 0;
    for (auto const& g : grads) N += static_cast<std::int64_t>(g.size());
    std::array<double, S> sums{};
    std::array<std::int64_t, S> first_bad{};  // global index of the slice's first NaN/Inf, or -1
    int const runs = std::clamp(exec.num_threads(), 1, S);
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(runs) schedule(static, 1)
#endif
    for (int r = 0; r < runs; ++r) {
      int const s0 = r * S / runs, s1 = (r + 1) * S / runs;
      // cursor: tensor t, element off of the slice start
      std::int64_t begin = host_detail::slice_begin(N, S, s0);
      std::size_t t = 0;
      std::int64_t off = begin;
      while (t < grads.size() && off >= static_cast<std::int64_t>(grads[t].size()) && off > 0) {
        off -= static_cast<std::int64_t>(grads[t].size());
        ++t;
      }
      for (int s = s0; s < s1; ++s) {
        std::int64_t const end = host_detail::slice_begin(N, S, s + 1);
        std::array<double, grad_norm_lanes> acc{};
        std::size_t const t_start = t;
        std::int64_t const off_start = off;
        for (std::int64_t left = end - begin; left > 0;) {
          auto const size = static_cast<std::int64_t>(grads[t].size());
          std::int64_t const len = std::min(left, size - off);
          host_detail::accumulate_squares(grads[t].data() + off, len, acc.data());
          left -= len;
          off += len;
          if (off == size) {
            off = 0;
            ++t;
          }
        }
        double sum = 0.0;
        for (double a : acc) sum += a;
        sums[static_cast<std::size_t>(s)] = sum;
        first_bad[static_cast<std::size_t>(s)] = -1;
        if (!std::isfinite(sum)) {  // rare: rescan the slice for its first NaN/Inf
          std::size_t tt = t_start;
          std::int64_t o = off_start;
          for (std::int64_t i = begin; i < end; ++i) {
            while (o == static_cast<std::int64_t>(grads[tt].size())) {
              o = 0;
              ++tt;
            }
            if (!std::isfinite(static_cast<double>(grads[tt][static_cast<std::size_t>(o)]))) {
              first_bad[static_cast<std::size_t>(s)] = i;
              break;
            }
            ++o;
          }
        }
        begin = end;
      }
    }
    grad_norm_result r;
    double total = 0.0;
    for (double s : sums) total += s;
    r.norm = std::sqrt(total);
    for (std::int64_t bad : first_bad) {
      if (bad < 0) continue;
      std::int64_t t = 0;
      while (bad >= static_cast<std::int64_t>(grads[static_cast<std::size_t>(t)].size())) {
        bad -= static_cast<std::int64_t>(grads[static_cast<std::size_t>(t)].size());
        ++t;
      }
      r.nonfinite_tensor = t;
      r.nonfinite_element = bad;
      break;
    }
    *out = r;
  }

  static void clip(host_executor const& exec, std::span<std::span<float> const> grads, float max_norm,
                   grad_norm_result const* result) {
    if (!result->finite()) return;
    float const c = clip_coefficient(result->norm, max_norm);
    if (c == 1.0f) return;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel num_threads(exec.num_threads())
#endif
    for (std::span<float> const& g : grads) {
      float* const x = g.data();
      auto const n = static_cast<std::int64_t>(g.size());
#if FP8MOE_HAS_OPENMP
#pragma omp for simd schedule(static) nowait
#endif
      for (std::int64_t i = 0; i < n; ++i) x[i] *= c;
    }
    (void)exec;
  }
};

}  // namespace fp8moe::optim
