// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Test helpers for the GEMM tests: per-tile quantization of float matrices into owned FP8 +
// scale buffers with 16-byte aligned, optionally padded strides (DeepGEMM's amax/fmax formula),
// float64 dequantized copies, and the error bound used by the exact-dequant comparisons.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fp8moe/gemm/problem.hpp"
#include "test_support.hpp"

namespace fp8moe::test {

/// 16-byte aligned owning buffer of T.
template <class T>
struct aligned_buffer {
  std::vector<unsigned char> raw;
  T* ptr = nullptr;
  std::size_t count = 0;
  aligned_buffer() = default;
  explicit aligned_buffer(std::size_t n) : raw(n * sizeof(T) + 64), count(n) {
    auto const a = reinterpret_cast<std::uintptr_t>(raw.data());
    ptr = reinterpret_cast<T*>(raw.data() + ((64 - a % 64) % 64));
  }
  aligned_buffer(aligned_buffer const&) = delete;
  aligned_buffer(aligned_buffer&&) = default;
  aligned_buffer& operator=(aligned_buffer&&) = default;
  T* data() const { return ptr; }
  std::size_t size() const { return count; }
  T& operator[](std::size_t i) const { return ptr[i]; }
};

/// An owned quantized (R,C) matrix: data row stride `ld` (multiple of 16), row-major scales.
template <class T>
struct qmat {
  std::int64_t rows = 0, cols = 0, ld = 0;
  scaling::tile_shape tile{};
  aligned_buffer<T> data;
  std::vector<float> scales;
  std::int64_t srows = 0, scols = 0;

  scaling::quantized_matrix_view<T const> view() const {
    return {matrix_view<T const>{data.data(), rows, cols, ld, 1},
            matrix_view<float const>{scales.data(), srows, scols, scols, 1}, tile};
  }
  /// Dequantized value (exact in double).
  double deq(std::int64_t r, std::int64_t c) const {
    std::int64_t const tr = scaling::resolve_tile(tile.rows, rows),
                       tc = scaling::resolve_tile(tile.cols, cols);
    return static_cast<double>(data[static_cast<std::size_t>(r * ld + c)].to_float()) *
           static_cast<double>(scales[static_cast<std::size_t>((r / tr) * scols + c / tc)]);
  }
};

/// Counter-based normal-ish generator: value(r, c) for any element without storing the matrix
/// (Irwin-Hall of four 16-bit uniforms from splitmix64, scaled to unit variance, never all zero).
struct value_gen {
  std::uint64_t seed = 1;
  float sigma = 1.0f;
  float operator()(std::int64_t r, std::int64_t c) const {
    std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(r) * 0xD1B54A32D192ED03ull +
                      static_cast<std::uint64_t>(c) * 0x8CB92BA72F3D8DD7ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    float s = 0.0f;
    for (int i = 0; i < 4; ++i) s += static_cast<float>((z >> (16 * i)) & 0xFFFFu) * (1.0f / 65536.0f);
    return (s - 2.0f) * 1.7320508f * sigma;  // variance of the sum of 4 U(0,1) is 1/3
  }
};

/// Quantizes gen(r, c) over (R,C) per tile: sf = max(amax, 1e-4) / fmax, q = x * (1/sf) (DeepGEMM);
/// pow2 rounds sf up to a power of two (UE8M0). Row stride: multiple of 16, plus pad16*16.
template <class T, class Gen>
qmat<T> quantize_gen(Gen const& gen, std::int64_t rows, std::int64_t cols, scaling::tile_shape tile,
                     bool pow2 = false, int pad16 = 0) {
  qmat<T> q;
  q.rows = rows;
  q.cols = cols;
  q.ld = ((cols + 15) / 16) * 16 + 16 * pad16;
  if (q.ld == 0) q.ld = 16;
  q.tile = tile;
  q.data = aligned_buffer<T>(static_cast<std::size_t>(std::max<std::int64_t>(rows, 1) * q.ld));
  std::fill_n(reinterpret_cast<unsigned char*>(q.data.data()), q.data.size(), 0x7F);  // NaN in unused bytes
  q.srows = scaling::scale_rows(tile, rows);
  q.scols = scaling::scale_cols(tile, cols);
  q.scales.assign(static_cast<std::size_t>(std::max<std::int64_t>(q.srows * q.scols, 1)), 0.0f);
  std::int64_t const tr = scaling::resolve_tile(tile.rows, rows), tc = scaling::resolve_tile(tile.cols, cols);
  float const fmax = T::format::max_value;
  std::int64_t const nblocks = q.srows * q.scols;
#pragma omp parallel for schedule(dynamic)
  for (std::int64_t blk = 0; blk < nblocks; ++blk) {
    std::int64_t const br = blk / q.scols, bc = blk % q.scols;
    std::int64_t const r0 = br * tr, c0 = bc * tc;
    std::int64_t const r1 = std::min(rows, r0 + tr), c1 = std::min(cols, c0 + tc);
    std::vector<float> v(static_cast<std::size_t>((r1 - r0) * (c1 - c0)));  // the tile's values
    float amax = 0.0f;
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t c = c0; c < c1; ++c) {
        float const x = gen(r, c);
        v[static_cast<std::size_t>((r - r0) * (c1 - c0) + (c - c0))] = x;
        amax = std::max(amax, std::fabs(x));
      }
    float sf = std::max(amax, 1e-4f) / fmax;
    if (pow2) sf = std::exp2(std::ceil(std::log2(sf)));
    float const inv = 1.0f / sf;
    q.scales[static_cast<std::size_t>(blk)] = sf;
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t c = c0; c < c1; ++c)
        q.data[static_cast<std::size_t>(r * q.ld + c)] =
            T(v[static_cast<std::size_t>((r - r0) * (c1 - c0) + (c - c0))] * inv);
  }
  return q;
}

/// A generator materialized as a row-major (R,C) float matrix (fast repeated reads).
struct dense_source {
  std::int64_t rows = 0, cols = 0;
  std::vector<float> v;
  template <class Gen>
  dense_source(Gen const& gen, std::int64_t r, std::int64_t c)
      : rows(r), cols(c), v(static_cast<std::size_t>(r * c)) {
    for (std::int64_t i = 0; i < r; ++i)
      for (std::int64_t j = 0; j < c; ++j) v[static_cast<std::size_t>(i * c + j)] = gen(i, j);
  }
  float operator()(std::int64_t r, std::int64_t c) const { return v[static_cast<std::size_t>(r * cols + c)]; }
};

/// Quantizes x (R,C row-major) per tile (see quantize_gen).
template <class T>
qmat<T> quantize(std::vector<float> const& x, std::int64_t rows, std::int64_t cols, scaling::tile_shape tile,
                 bool pow2 = false, int pad16 = 0) {
  return quantize_gen<T>(
      [&](std::int64_t r, std::int64_t c) { return x[static_cast<std::size_t>(r * cols + c)]; }, rows, cols,
      tile, pow2, pad16);
}

/// Output buffer (R,C) with 16-byte aligned rows, poisoned.
template <class T>
struct out_mat {
  std::int64_t rows = 0, cols = 0, ld = 0;
  aligned_buffer<T> buf;
  out_mat(std::int64_t r, std::int64_t c)
      : rows(r), cols(c), ld(((c * (std::int64_t)sizeof(T) + 15) / 16) * 16 / (std::int64_t)sizeof(T)) {
    if (ld == 0) ld = 16;
    buf = aligned_buffer<T>(static_cast<std::size_t>(std::max<std::int64_t>(r, 1) * ld));
    poison();
  }
  void poison() { std::fill_n(reinterpret_cast<unsigned char*>(buf.data()), buf.size() * sizeof(T), 0xFF); }
  matrix_view<T> view() { return {buf.data(), rows, cols, ld, 1}; }
  matrix_view<T const> cview() const { return {buf.data(), rows, cols, ld, 1}; }
  double at(std::int64_t r, std::int64_t c) const {
    return static_cast<double>(buf[static_cast<std::size_t>(r * ld + c)]);
  }
};

/// mag = |c| + sum_k |a(ar,k) b(br,k)| sa sb over [k0, k0+k): the scale of the rounding errors.
template <class TA, class TB>
double magnitude(scaling::quantized_matrix_view<TA const> const& a, std::int64_t ar,
                 scaling::quantized_matrix_view<TB const> const& b, std::int64_t br, std::int64_t k0,
                 std::int64_t k, double c = 0.0) {
  double m = std::fabs(c);
  for (std::int64_t kk = k0; kk < k0 + k; ++kk) {
    m += std::fabs(static_cast<double>(a.data(ar, kk).to_float()) * a.scale_at(ar, kk) *
                   static_cast<double>(b.data(br, kk).to_float()) * b.scale_at(br, kk));
  }
  return m;
}

/// Allowed |fast - exact| for one output of the host path (u = 2^-24):
///  - each promotion block sums <= P exact FP8 products in FP32: 8 lanes of P/8 terms, then a
///    3-level tree: (P/8 + 3) u * sum|products|;
///  - per block sa*sb is rounded once and the FMA into the accumulator rounds once: 2 u per block
///    on top of the running sum, (2 * nblk + 2) u * mag in total;
///  - bf16 output rounds once more (RNE, 8 significant bits): 2^-8 * |exact| (+ 2^-8 of the above).
inline double tolerance(double exact, double mag, int p, std::int64_t k, bool bf16) {
  double const u = 0x1p-24;
  double const nblk = static_cast<double>((k + p - 1) / p);
  double const e32 = (p / 8.0 + 3.0 + 2.0 * nblk + 2.0) * u * mag + 1e-30;
  return bf16 ? 0x1p-8 * std::fabs(exact) + e32 * (1.0 + 0x1p-8) : e32;
}

}  // namespace fp8moe::test
