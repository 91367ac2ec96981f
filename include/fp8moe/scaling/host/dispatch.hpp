// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// scaling::dispatch<host_executor>: the host path of quantize / dequantize / transpose_requantize
// (scaling/quantize.hpp holds the entry points, which validate every argument before calling in
// here). Loops: host/quantize.hpp and host/transpose.hpp, OpenMP over rows, tiles or bands with
// exec.num_threads() threads. Outputs are overwritten.
#pragma once

#include <cstdint>
#include <type_traits>

#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/scaling/host/quantize.hpp"
#include "fp8moe/scaling/host/transpose.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "fp8moe/scaling/scale_math.hpp"

namespace fp8moe::scaling {

template <class Exec>
struct dispatch;

template <>
struct dispatch<host_executor> {
  /// The owning result of the allocating quantize.
  template <class T>
  static quantized_matrix<T> make_quantized(host_executor const&, std::int64_t rows, std::int64_t cols,
                                            tile_shape tile) {
    return quantized_matrix<T>(rows, cols, tile);
  }

  template <class In, class T>
  static void quantize(host_executor const& exec, matrix_view<In const> x, tensor_recipe const& r,
                       quantized_matrix_view<T> out) {
    if (amax_ignores_nan(r.formula))
      detail::quantize_host_impl<true>(exec, x, r, out);
    else
      detail::quantize_host_impl<false>(exec, x, r, out);
  }

  template <class Q, class Out>
  static void dequantize(host_executor const& exec, quantized_matrix_view<Q const> q, matrix_view<Out> y) {
    std::int64_t const R = q.rows(), C = q.cols();
    if (R == 0 || C == 0) return;
    std::int64_t const tr = q.tile_rows(), tc = q.tile_cols();
    auto const& lut = detail::decode_table_v<Q>.v;
    int const nt = exec.num_threads();
    (void)nt;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (std::int64_t row = 0; row < R; ++row) {
      detail::dequantize_row<Q>(lut.data(), reinterpret_cast<std::uint8_t const*>(&q.data(row, 0)),
                                q.data.col_stride, &y(row, 0), y.col_stride, C, tc, &q.scales(row / tr, 0),
                                q.scales.col_stride);
    }
  }

  template <class In, class T>
  static void transpose_requantize(host_executor const& exec, matrix_view<In const> x, tensor_recipe const& r,
                                   quantized_matrix_view<T> out) {
    detail::source_rows<In> const load_row{x};
    float const vfi = detail::value_for_inf<In>(r);
    if (amax_ignores_nan(r.formula))
      detail::transpose_quantize_host_impl<true>(exec, x.rows, x.cols, load_row, r, vfi, out);
    else
      detail::transpose_quantize_host_impl<false>(exec, x.rows, x.cols, load_row, r, vfi, out);
  }

  template <class Q, class T>
  static void transpose_requantize(host_executor const& exec, quantized_matrix_view<Q const> q,
                                   tensor_recipe const& r, quantized_matrix_view<T> out) {
    std::int64_t const tr = q.tile_rows(), tc = q.tile_cols();
    auto const load_row = [q, tr, tc](std::int64_t row, std::int64_t c0, std::int64_t nc, float* v)
                              FP8MOE_SCALING_FORCE_INLINE {
                                auto const& lut = detail::decode_table_v<Q>.v;
                                for (std::int64_t c = 0; c < nc; ++c)
                                  v[c] = lut[q.data(row, c0 + c).bits()] * q.scales(row / tr, (c0 + c) / tc);
                              };
    if (amax_ignores_nan(r.formula))
      detail::transpose_quantize_host_impl<true>(exec, q.rows(), q.cols(), load_row, r, 3.40282347e38f, out);
    else
      detail::transpose_quantize_host_impl<false>(exec, q.rows(), q.cols(), load_row, r, 3.40282347e38f, out);
  }
};

}  // namespace fp8moe::scaling
