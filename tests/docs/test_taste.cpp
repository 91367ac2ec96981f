// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The README's taste, extracted from README.md at configure time (tests/docs/snippets.cmake), run
// as written on the host executor and (nvcc build, where a GPU is visible) on cuda_executor: one
// function template, both executors. Checked against independent references: the float64 product
// for the GEMM, the allocating quantize of x for the permuted rows, the route ids for the counts.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <fp8moe/fp8moe.hpp>
#if FP8MOE_CUDA_COMPILER
#include <fp8moe/cuda.hpp>

#include "device_memory.hpp"
#endif

#include "readme_taste.hpp"  // generated from README.md: `template <fm::executor Exec> auto taste(...)`

namespace {

constexpr std::int64_t T = 256, H = 512, N = 384, E = 256, K = 8;

struct inputs {
  std::vector<fm::bfloat16_t> xs = std::vector<fm::bfloat16_t>(T * H);  // (T,H)
  std::vector<float> ws = std::vector<float>(N * H);                    // (N,H)
  std::vector<float> ls = std::vector<float>(T * E);                    // (T,E)
  std::vector<float> bs = std::vector<float>(E);                        // (E)
  inputs() {
    std::mt19937 g{7};
    std::normal_distribution<float> d{0.0f, 1.0f};
    for (auto& v : xs) v = fm::bfloat16_t(d(g));
    for (auto& v : ws) v = 0.05f * d(g);
    for (auto& v : ls) v = d(g);
    for (auto& v : bs) v = 0.1f * d(g);
  }
};

/// The taste's results copied to the host, whatever executor produced them.
struct results {
  std::vector<float> y;                           // (T,N)
  std::vector<std::int32_t> ids, counts;          // (T,k), (E)
  std::vector<float> weights;                     // (T,k)
  std::int64_t rows = 0;                          // plan rows (host: in use; device: capacity)
  std::vector<std::int32_t> row_token, row_slot;  // (rows)
  std::vector<std::uint8_t> pdata;                // (rows,H) FP8 bits
  std::vector<float> pscales, pweights;           // (rows,H/128), (rows)
};

template <class Pair>
results host_results(Pair const& rp, std::vector<float> y) {
  auto const& [r, p] = rp;
  results o;
  o.y = std::move(y);
  o.ids = r.ids.storage();
  o.weights = r.weights.storage();
  o.counts = r.counts;
  fm::moe::permute_plan const& pl = p.plan.view();
  o.rows = pl.rows;
  o.row_token.assign(pl.row_token, pl.row_token + pl.rows);
  o.row_slot.assign(pl.row_slot, pl.row_slot + pl.rows);
  for (auto const& b : p.x.data.storage()) o.pdata.push_back(b.bits());
  o.pscales = p.x.scales.storage();
  o.pweights = p.weights;
  return o;
}

/// DeepGEMM's calc_diff of y against the float64 product x w^T: 1 - 2<ref,y> / (|ref|^2 + |y|^2).
double calc_diff(inputs const& in, std::vector<float> const& y) {
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < T; ++i)
    for (std::int64_t n = 0; n < N; ++n) {
      double ref = 0;
      for (std::int64_t h = 0; h < H; ++h)
        ref += static_cast<double>(in.xs[i * H + h].to_float()) * in.ws[n * H + h];
      double const v = y[i * N + n];
      num += ref * v;
      den += ref * ref + v * v;
    }
  return 1 - 2 * num / den;
}

/// Everything the taste promises, checked on results of either executor.
void check_taste(inputs const& in, results const& o) {
  // FP8 GEMM with 1x128 / 128x128 scales: DeepGEMM's test accepts calc_diff < 1e-3 for these shapes
  CHECK(calc_diff(in, o.y) < 1e-3);
  // every token routed to k distinct experts; counts are the histogram of the ids
  std::vector<std::int32_t> hist(E, 0);
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<std::int32_t> row(o.ids.begin() + t * K, o.ids.begin() + (t + 1) * K);
    std::sort(row.begin(), row.end());
    CHECK(std::adjacent_find(row.begin(), row.end()) == row.end());
    for (auto e : row) {
      REQUIRE(e >= 0);
      REQUIRE(e < E);
      ++hist[static_cast<std::size_t>(e)];
    }
  }
  CHECK(hist == o.counts);
  // permuted rows: each in-use row holds token row_token's quantized row and its routing weight
  {
    auto const xq = fm::scaling::quantize(fm::host_executor{}, fm::make_matrix(in.xs.data(), T, H),
                                          fm::scaling::deepseek_v3.activation);
    std::int64_t used = 0, bad = 0;
    CHECK(o.rows % 128 == 0);
    for (std::int64_t i = 0; i < o.rows; ++i) {
      std::int32_t const t = o.row_token[static_cast<std::size_t>(i)];
      if (t < 0) {
        bad += o.pweights[static_cast<std::size_t>(i)] != 0.0f;  // padding carries weight 0
        continue;
      }
      ++used;
      std::int32_t const s = o.row_slot[static_cast<std::size_t>(i)];
      bad += o.pweights[static_cast<std::size_t>(i)] != o.weights[static_cast<std::size_t>(t * K + s)];
      for (std::int64_t h = 0; h < H; ++h)
        bad += o.pdata[static_cast<std::size_t>(i * H + h)] != xq.data(t, h).bits();
      for (std::int64_t j = 0; j < H / 128; ++j)
        bad += o.pscales[static_cast<std::size_t>(i * (H / 128) + j)] != xq.scales(t, j);
    }
    CHECK(used == T * K);
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE("README taste on host_executor: GEMM, routing and permuted FP8 rows as promised") {
  inputs const in;
  std::vector<float> y(T * N, std::numeric_limits<float>::quiet_NaN());  // poisoned
  auto const rp =
      taste(fm::host_executor{}, fm::make_matrix<fm::bfloat16_t const>(in.xs.data(), T, H),
            fm::make_matrix<float const>(in.ws.data(), N, H), fm::make_matrix(y.data(), T, N),
            fm::make_matrix<float const>(in.ls.data(), T, E), fm::make_vector<float const>(in.bs.data(), E));
  results const o = host_results(rp, y);
  // the host plan holds exactly the rows in use: sum_e round_up(counts[e], 128)
  std::int64_t want = 0;
  for (auto c : o.counts) want += (c + 127) / 128 * 128;
  CHECK(o.rows == want);
  check_taste(in, o);
}

#if FP8MOE_CUDA_COMPILER
TEST_CASE("README taste on cuda_executor: the same template, device memory, the same results") {
  namespace ft = fp8moe::test;
  inputs const in;
  ft::device_array<fm::bfloat16_t> dx(in.xs.data(), in.xs.size());
  ft::device_array<float> dw(in.ws.data(), in.ws.size()), dl(in.ls.data(), in.ls.size()),
      db(in.bs.data(), in.bs.size());
  cudaStream_t s = nullptr;
  FP8MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  fm::cuda_executor const exec{s};
  results o;
  {
    fm::device_matrix<float> dy(T, N, exec);
    dy.buffer().fill_bytes(0xFF);  // poisoned
    auto const rp = taste(exec, fm::make_matrix<fm::bfloat16_t const>(dx.p, T, H),
                          fm::make_matrix<float const>(dw.p, N, H), dy.view(),
                          fm::make_matrix<float const>(dl.p, T, E), fm::make_vector<float const>(db.p, E));
    auto const& [r, p] = rp;
    fm::moe::permute_plan const& pl = p.plan.view();
    o.rows = pl.rows;
    o.y.resize(T * N);
    o.ids.resize(T * K);
    o.weights.resize(T * K);
    o.counts.resize(E);
    o.row_token.resize(static_cast<std::size_t>(o.rows));
    o.row_slot.resize(static_cast<std::size_t>(o.rows));
    std::vector<fm::float8_e4m3_t> pd(static_cast<std::size_t>(o.rows * H));
    o.pscales.resize(static_cast<std::size_t>(o.rows * (H / 128)));
    o.pweights.resize(static_cast<std::size_t>(o.rows));
    dy.copy_to_host(fm::make_matrix(o.y.data(), T, N));
    r.ids.copy_to_host(fm::make_matrix(o.ids.data(), T, K));
    r.weights.copy_to_host(fm::make_matrix(o.weights.data(), T, K));
    r.counts.copy_to_host(o.counts);
    p.x.data.copy_to_host(fm::make_matrix(pd.data(), o.rows, H));
    p.x.scales.copy_to_host(fm::make_matrix(o.pscales.data(), o.rows, H / 128));
    p.weights.copy_to_host(o.pweights);
    FP8MOE_CUDA_CHECK(
        cudaMemcpyAsync(o.row_token.data(), pl.row_token, o.row_token.size() * 4, cudaMemcpyDeviceToHost, s));
    FP8MOE_CUDA_CHECK(
        cudaMemcpyAsync(o.row_slot.data(), pl.row_slot, o.row_slot.size() * 4, cudaMemcpyDeviceToHost, s));
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(s));
    for (auto const& b : pd) o.pdata.push_back(b.bits());
  }  // device results freed on s
  check_taste(in, o);
  // and the routing equals the host executor's (the same per-token code on both paths)
  std::vector<float> hy(T * N);
  auto const hrp =
      taste(fm::host_executor{}, fm::make_matrix<fm::bfloat16_t const>(in.xs.data(), T, H),
            fm::make_matrix<float const>(in.ws.data(), N, H), fm::make_matrix(hy.data(), T, N),
            fm::make_matrix<float const>(in.ls.data(), T, E), fm::make_vector<float const>(in.bs.data(), E));
  results const h = host_results(hrp, hy);
  CHECK(o.counts == h.counts);
  CHECK(o.ids == h.ids);
  CHECK(o.rows >= h.rows);  // the device plan has the capacity plan_rows(contiguous{128}, T, k, E)
  FP8MOE_CUDA_CHECK(cudaStreamSynchronize(s));
  FP8MOE_CUDA_CHECK(cudaStreamDestroy(s));
}
#endif
