// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// gemm/ host path: the float64 reference against hand-computed values, then fp8_gemm and the
// three grouped layouts against that reference (tolerance from FP32 summation and BF16 output
// rounding, gemm_test_util.hpp) and against the unquantized product (DeepGEMM calc_diff < 1e-3).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fp8moe/gemm/cuda/translate.hpp"
#include "fp8moe/gemm/gemm.hpp"
#include "fp8moe/gemm/reference.hpp"
#include "gemm_test_util.hpp"
#include "test_support.hpp"

using namespace fp8moe;
using fp8moe::gemm::gemm_options;
using e4m3 = float8_e4m3_t;
using e5m2 = float8_e5m2_t;
using scaling::tile_shape;

namespace {

/// Runs a dense problem on the host with a given micro-kernel ISA (baseline or automatic).
template <class TA, class TB, class TD>
void run_dense(gemm::dense<TA, TB, TD> const& p, gemm::host::kernel_isa isa, gemm_options o = {}) {
  host_executor ex;
  gemm::validate(p, o);
  std::vector<std::byte> ws(gemm::workspace_bytes(ex, o));
  auto const jobs = gemm::host::make_jobs(p);
  gemm::host::run_jobs<TA, TB, TD>(ex, jobs, o, ws, isa);
}

/// Unquantized product of two generators: sum_k x(m, k0+k) * w(n, k0+k) in double.
template <class GA, class GB>
double unquantized(GA const& ga, std::int64_t m, GB const& gb, std::int64_t n, std::int64_t k0,
                   std::int64_t k) {
  double s = 0;
  for (std::int64_t kk = k0; kk < k0 + k; ++kk)
    s += static_cast<double>(ga(m, kk)) * static_cast<double>(gb(n, kk));
  return s;
}

/// Checks one output element against the exact-dequant value; returns nothing, counts failures.
struct checker {
  int failures = 0;
  double worst = 0;  // worst |err| / tol
  std::vector<double> got, exact_unq;
  void element(double got_v, double exact, double mag, int p, std::int64_t k, bool bf16, double unq) {
    double const tol = test::tolerance(exact, mag, p, k, bf16);
    double const err = std::fabs(got_v - exact);
    if (!(err <= tol)) ++failures;  // NaN counts as failure
    worst = std::max(worst, err / tol);
    got.push_back(got_v);
    exact_unq.push_back(unq);
  }
  double diff() const { return test::calc_diff(got, exact_unq); }
  /// Output (i, j) of a dense A (M,K) * B (N,K)^T against the float64 block-scaled dot with
  /// promotion every p (tolerance as element()), and against the unquantized sources ga / gb.
  template <class A, class B, class GA, class GB>
  void dense_element(double got_v, A const& a, B const& b, GA const& ga, GB const& gb, std::int64_t i,
                     std::int64_t j, std::int64_t k, int p, bool bf16) {
    double const exact = gemm::reference::block_scaled_dot(a, i, b, j, 0, k, p);
    element(got_v, exact, test::magnitude(a, i, b, j, 0, k), p, k, bf16, unquantized(ga, i, gb, j, 0, k));
  }
};

struct tile_pair {
  tile_shape a, b;
  bool pow2;
  char const* name;
};
constexpr tile_pair recipes[] = {
    {scaling::tile_1x128, scaling::block_128x128, false, "1x128 x 128x128 (DeepSeek-V3 forward)"},
    {scaling::tile_1x128, scaling::block_128x128, true, "1x128 x 128x128, UE8M0 (power-of-two) scales"},
    {scaling::tile_1x128, scaling::tile_1x128, false, "1x128 x 1x128 (weight-gradient recipe)"},
    {scaling::per_tensor, scaling::per_tensor, false, "per-tensor x per-tensor"},
    {scaling::per_row, scaling::block_128x128, false, "per-row x 128x128"},
    {scaling::block_128x128, scaling::tile_1x128, false, "128x128 x 1x128"},
};

/// One random dense case: all outputs compared with the reference; calc_diff with the source.
template <class TA, class TB, class TD>
void dense_case(std::int64_t m, std::int64_t n, std::int64_t k, tile_pair r, int c_mode,
                gemm::host::kernel_isa isa, std::uint64_t seed, double max_diff) {
  CAPTURE(m);
  CAPTURE(n);
  CAPTURE(k);
  CAPTURE(r.name);
  CAPTURE(c_mode);
  test::dense_source const gx(test::value_gen{seed, 1.0f}, m, k), gw(test::value_gen{seed + 1, 0.02f}, n, k);
  auto const a = test::quantize_gen<TA>(gx, m, k, r.a, r.pow2, static_cast<int>(seed % 2));
  auto const b = test::quantize_gen<TB>(gw, n, k, r.b, r.pow2);
  test::out_mat<TD> d(m, n);
  test::out_mat<float> c(m, n);
  test::value_gen const gc{seed + 2, 0.1f};
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) c.buf[static_cast<std::size_t>(i * c.ld + j)] = gc(i, j);
  matrix_view<float const> cv{};
  if (c_mode == 1) cv = c.cview();
  if constexpr (std::is_same_v<TD, float>) {
    if (c_mode == 2) {  // in place: C aliases D
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) d.buf[static_cast<std::size_t>(i * d.ld + j)] = gc(i, j);
      cv = d.cview();
    }
  }
  run_dense(gemm::dense<TA, TB, TD>{a.view(), b.view(), d.view(), cv}, isa);

  test::out_mat<double> ref(m, n);
  gemm::reference::fp8_gemm(gemm::dense<TA, TB, double>{a.view(), b.view(), ref.view(),
                                                        c_mode ? c.cview() : matrix_view<float const>{}});
  checker chk;
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double const c0 = c_mode ? static_cast<double>(gc(i, j)) : 0.0;
      chk.element(d.at(i, j), ref.at(i, j), test::magnitude(a.view(), i, b.view(), j, 0, k, c0), 128, k,
                  std::is_same_v<TD, bfloat16_t>, c0 + unquantized(gx, i, gw, j, 0, k));
    }
  }
  CHECK(chk.failures == 0);
  CHECK(chk.worst <= 1.0);
  CHECK(chk.diff() < max_diff);
}

}  // namespace

// ================================================================================================
TEST_CASE("reference: hand-computed promotion, partial K block, scale indexing") {
  // A (2,200) and B (3,200): two promotion blocks, [0,128) and the partial [128,200).
  std::int64_t const m = 2, n = 3, k = 200;
  test::aligned_buffer<e4m3> a(static_cast<std::size_t>(m * 208)), b(static_cast<std::size_t>(n * 208));
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t kk = 0; kk < k; ++kk)
      a[static_cast<std::size_t>(i * 208 + kk)] = e4m3(kk < 128 ? 1.0f : -0.5f);
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t kk = 0; kk < k; ++kk)
      b[static_cast<std::size_t>(j * 208 + kk)] = e4m3(static_cast<float>(j + 1));
  // 1x128 A scales (2 rows x 2 blocks), 128x128 B scales (1 x 2 blocks)
  std::vector<float> sa = {2.0f, 4.0f, 0.5f, 8.0f}, sb = {3.0f, 0.25f};
  scaling::quantized_matrix_view<e4m3 const> av{
      {a.data(), m, k, 208, 1}, {sa.data(), 2, 2, 2, 1}, scaling::tile_1x128};
  scaling::quantized_matrix_view<e4m3 const> bv{
      {b.data(), n, k, 208, 1}, {sb.data(), 1, 2, 2, 1}, scaling::block_128x128};
  test::out_mat<double> d(m, n);  // row stride 4 (16-byte multiple)
  test::out_mat<float> c(m, n);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      c.buf[static_cast<std::size_t>(i * c.ld + j)] = static_cast<float>(1 + i * n + j);
  gemm::reference::fp8_gemm(gemm::dense<e4m3, e4m3, double>{av, bv, d.view(), c.cview()});
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double const w = static_cast<double>(j + 1);
      // block 0: 128 * (1 * w) * sa[i][0] * 3;  block 1: 72 * (-0.5 * w) * sa[i][1] * 0.25
      double const expect = static_cast<double>(1 + i * n + j) +
                            128.0 * w * sa[static_cast<std::size_t>(2 * i)] * 3.0 +
                            72.0 * (-0.5 * w) * sa[static_cast<std::size_t>(2 * i + 1)] * 0.25;
      CHECK(d.at(i, j) == expect);
    }
  }
  // block_scaled_dot on its own, and the promotion interval as an option (P = 64: four blocks)
  CHECK(gemm::reference::block_scaled_dot(av, 1, bv, 2, 0, k, 128) ==
        128.0 * 3 * 0.5 * 3 + 72.0 * -1.5 * 8 * 0.25);
  CHECK(gemm::reference::block_scaled_dot(av, 0, bv, 0, 128, 72, 128) == 72.0 * -0.5 * 4 * 0.25);
}

TEST_CASE("fp8 -> float row conversion is exact for all 256 codes (vector and table paths)") {
  auto run = [](auto tag) {
    using T = decltype(tag);
    std::vector<std::uint8_t> codes(256 + 5);
    for (int i = 0; i < 261; ++i)
      codes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i * 37 + (i >> 8));
    for (int i = 0; i < 256; ++i) codes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
    std::vector<float> v(codes.size(), 0.0f), s(codes.size(), 0.0f);
    gemm::host::convert_row<T, true>(codes.data(), v.data(), static_cast<std::int64_t>(codes.size()));
    gemm::host::convert_row<T, false>(codes.data(), s.data(), static_cast<std::int64_t>(codes.size()));
    int bad = 0;
    for (std::size_t i = 0; i < codes.size(); ++i) {
      float const ref = T::from_bits(codes[i]).to_float();
      for (float got : {v[i], s[i]}) {
        bool const same =
            std::isnan(ref) ? std::isnan(got)
                            : (fp8moe::bit_cast<std::uint32_t>(got) == fp8moe::bit_cast<std::uint32_t>(ref));
        bad += same ? 0 : 1;
      }
    }
    CHECK(bad == 0);
  };
  run(e4m3{});
  run(e5m2{});
}

TEST_CASE("views: transposed, major_of, quantized_batched_view") {
  std::vector<float> s = {1, 2, 3, 4, 5, 6};  // (2,3) scales
  test::aligned_buffer<e4m3> d(32 * 2);
  scaling::quantized_matrix_view<e4m3 const> q{
      {d.data(), 2, 300, 320, 1}, {s.data(), 2, 3, 3, 1}, tile_shape{1, 128}};
  auto const t = gemm::transposed(q);
  CHECK(t.rows() == 300);
  CHECK(t.cols() == 2);
  CHECK(t.data.row_stride == 1);
  CHECK(t.data.col_stride == 320);
  CHECK(t.tile == tile_shape{128, 1});
  CHECK(t.scale_at(257, 1) == q.scale_at(1, 257));
  CHECK(&t.data(5, 1) == &q.data(1, 5));
  CHECK(gemm::major_of(q.data) == gemm::major::k);
  CHECK(gemm::major_of(t.data) == gemm::major::mn);
  // batched: (G=2, R=3, C=4)
  std::vector<float> bs = {10, 20};
  gemm::quantized_batched_view<e4m3 const> bq{
      {d.data(), 2, 3, 4, 16, 4, 1}, {bs.data(), 2, 1, 1, 1, 1, 1}, scaling::per_tensor};
  CHECK(bq.batches() == 2);
  CHECK(bq[1].data.data == d.data() + 16);
  CHECK(bq[1].scale_at(2, 3) == 20.0f);
  CHECK(bq[0].scale_at(0, 0) == 10.0f);
}

TEST_CASE("dense: random shapes x recipes x formats x outputs, both micro-kernel ISAs") {
  using isa = gemm::host::kernel_isa;
  std::mt19937_64 g{7};
  std::uniform_int_distribution<std::int64_t> dm(1, 100), dn(1, 300);
  std::int64_t const ks[] = {1, 100, 128, 200, 576};
  std::uint64_t seed = 100;
  int idx = 0;
  for (auto const& r : recipes) {
    for (std::int64_t k : ks) {
      std::int64_t const m = dm(g), n = dn(g);
      int const c_mode = idx % 3;
      isa const which = (idx / 2) % 2 ? isa::baseline : isa::automatic;
      // calc_diff bound: E4M3 rounding is <= 2^-4 relative, RMS ~ 2^-4/sqrt(12)*sqrt(2) per operand;
      // 1e-3 (DeepGEMM's gate) holds with a margin of ~2x for K >= 100. Tiny K (1) is one
      // product per output: the quantization error does not average, so the gate is 4e-3.
      double const gate = k < 16 ? 4e-3 : 1e-3;
      if (idx % 2) {
        dense_case<e4m3, e4m3, bfloat16_t>(m, n, k, r, c_mode == 2 ? 1 : c_mode, which, seed++, gate);
      } else {
        dense_case<e4m3, e4m3, float>(m, n, k, r, c_mode, which, seed++, gate);
      }
      ++idx;
    }
  }
  // E5M2 operands (2 mantissa bits: 4x the ulp, 16x the error variance of E4M3): gate 1.6e-2.
  for (std::int64_t k : {128, 333}) {
    dense_case<e5m2, e4m3, float>(37, 70, k, recipes[0], 1, isa::automatic, seed++, 1.6e-2);
    dense_case<e4m3, e5m2, bfloat16_t>(64, 129, k, recipes[2], 0, isa::baseline, seed++, 1.6e-2);
    dense_case<e5m2, e5m2, float>(5, 260, k, recipes[3], 2, isa::automatic, seed++, 1.6e-2);
  }
}

TEST_CASE("dense: every DeepSeek-V3 N x K pair at M = 1, 64, 128 (sampled outputs)") {
  // fp8_gemm.md §1.10 (config_671B.json): MLA q_a+kv_a, kv_a, q_b, kv_b, o_proj, and the MoE
  // expert up/gate (4096 = 2 x moe_inter_dim, K = 7168) and down (7168, 2048) projections.
  struct nk {
    std::int64_t n, k;
  };
  constexpr nk pairs[] = {{2112, 7168},  {576, 7168},  {24576, 1536}, {32768, 512},
                          {7168, 16384}, {4096, 7168}, {7168, 2048}};
  host_executor ex;
  std::uint64_t seed = 900;
  for (auto const& pair : pairs) {
    std::int64_t const n = pair.n, k = pair.k;
    CAPTURE(n);
    CAPTURE(k);
    test::value_gen const gw{seed++, 0.02f};
    auto const b = test::quantize_gen<e4m3>(gw, n, k, scaling::block_128x128);
    for (std::int64_t m : {1, 64, 128}) {
      CAPTURE(m);
      test::value_gen const gx{seed++, 1.0f};
      auto const a = test::quantize_gen<e4m3>(gx, m, k, scaling::tile_1x128);
      test::out_mat<bfloat16_t> d(m, n);
      gemm::fp8_gemm(ex, a.view(), b.view(), d.view());
      // samples: the corners (partial M/N tiles) and 150 random elements
      std::mt19937_64 g{seed};
      std::vector<std::pair<std::int64_t, std::int64_t>> at = {
          {0, 0}, {m - 1, n - 1}, {0, n - 1}, {m - 1, 0}};
      for (int s = 0; s < 150; ++s)
        at.emplace_back(static_cast<std::int64_t>(g() % m), static_cast<std::int64_t>(g() % n));
      checker chk;
      for (auto [i, j] : at) chk.dense_element(d.at(i, j), a.view(), b.view(), gx, gw, i, j, k, 128, true);
      CHECK(chk.failures == 0);
      CHECK(chk.diff() < 1e-3);
    }
  }
}

TEST_CASE("dense: dX = dY * W on the same 128x128-scaled W (MN-major B, no re-quantization)") {
  // W (Nw, Kw) as stored for the forward Y = X W^T; dX (M, Kw) = dY (M, Nw) * W: K = Nw, N = Kw.
  struct shape {
    std::int64_t m, nw, kw;
  };
  for (auto const& sh : {shape{70, 448, 200}, shape{128, 576, 320}, shape{1, 300, 130}}) {
    std::int64_t const m = sh.m, nw = sh.nw, kw = sh.kw;
    CAPTURE(m);
    CAPTURE(nw);
    CAPTURE(kw);
    test::dense_source const gw(test::value_gen{static_cast<std::uint64_t>(31 + nw), 0.02f}, nw, kw);
    test::dense_source const gy(test::value_gen{static_cast<std::uint64_t>(47 + m), 1.0f}, m, nw);
    auto const w = test::quantize_gen<e4m3>(gw, nw, kw, scaling::block_128x128);
    auto const dy = test::quantize_gen<e4m3>(gy, m, nw, scaling::tile_1x128);
    auto const wt = gemm::transposed(w.view());  // (Kw, Nw) MN-major, tile 128x128
    REQUIRE(gemm::major_of(wt.data) == gemm::major::mn);
    for (auto isa : {gemm::host::kernel_isa::automatic, gemm::host::kernel_isa::baseline}) {
      test::out_mat<float> dx(m, kw);
      run_dense(gemm::dense<e4m3, e4m3, float>{dy.view(), wt, dx.view(), {}}, isa);
      test::out_mat<double> ref(m, kw);
      gemm::reference::fp8_gemm(gemm::dense<e4m3, e4m3, double>{dy.view(), wt, ref.view(), {}});
      checker chk;
      auto const wsrc = [&](std::int64_t n, std::int64_t kk) { return gw(kk, n); };  // W^T
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < kw; ++j)
          chk.element(dx.at(i, j), ref.at(i, j), test::magnitude(dy.view(), i, wt, j, 0, nw), 128, nw, false,
                      unquantized(gy, i, wsrc, j, 0, nw));
      CHECK(chk.failures == 0);
      CHECK(chk.diff() < 1e-3);
    }
  }
}

// ------------------------------------------------------------------------------------------------
namespace {
/// Per-expert weights (G, N, K), each expert quantized 128x128 on its own.
template <class T>
struct expert_weights {
  std::int64_t g = 0, n = 0, k = 0;
  std::vector<test::qmat<T>> w;
  std::vector<test::dense_source> src;
  test::aligned_buffer<T> data;  // (G, N, ld) copy of the experts
  std::vector<float> scales;     // (G, sr, sc)
  std::int64_t ld = 0, sr = 0, sc = 0;
  expert_weights(std::int64_t groups, std::int64_t n_, std::int64_t k_, std::uint64_t seed)
      : g(groups), n(n_), k(k_) {
    for (std::int64_t e = 0; e < g; ++e) {
      src.emplace_back(test::value_gen{seed + static_cast<std::uint64_t>(e), 0.02f}, n, k);
      w.push_back(test::quantize_gen<T>(src.back(), n, k, scaling::block_128x128));
    }
    ld = w[0].ld;
    sr = w[0].srows;
    sc = w[0].scols;
    data = test::aligned_buffer<T>(static_cast<std::size_t>(std::max<std::int64_t>(g * n * ld, 1)));
    scales.assign(static_cast<std::size_t>(std::max<std::int64_t>(g * sr * sc, 1)), 0.0f);
    for (std::int64_t e = 0; e < g; ++e) {
      std::copy_n(w[static_cast<std::size_t>(e)].data.data(), n * ld, data.data() + e * n * ld);
      std::copy_n(w[static_cast<std::size_t>(e)].scales.data(), sr * sc, scales.data() + e * sr * sc);
    }
  }
  gemm::quantized_batched_view<T const> view() const {
    return {{data.data(), g, n, k, n * ld, ld, 1},
            {scales.data(), g, sr, sc, sr * sc, sc, 1},
            scaling::block_128x128};
  }
};
}  // namespace

TEST_CASE("grouped contiguous: padding rows, empty groups, one group, C") {
  host_executor ex;
  struct layout_case {
    std::vector<std::int64_t> rows;  // valid rows per expert (segments padded to m_align)
    std::int64_t n, k;
    bool with_c;
    int align = 128;
  };
  std::vector<layout_case> const cases = {
      {{5, 0, 130, 128, 1}, 200, 256, false},  // empty group, partial segments, exact 128
      {{300}, 96, 576, true},                  // all rows in one group
      {{0, 0, 0}, 64, 128, true},              // no rows at all (only the trailing padding)
      {{17, 64, 0, 200}, 300, 384, true},
      {{17, 64, 0, 70}, 136, 256, false, 64},  // 64-row alignment (DeepGEMM PR #350)
  };
  std::uint64_t seed = 5000;
  for (auto const& lc : cases) {
    std::int64_t const g = static_cast<std::int64_t>(lc.rows.size());
    std::vector<int> ids;
    for (std::int64_t e = 0; e < g; ++e) {
      std::int64_t const seg = round_up<std::int64_t>(lc.rows[static_cast<std::size_t>(e)], lc.align);
      for (std::int64_t r = 0; r < seg; ++r)
        ids.push_back(r < lc.rows[static_cast<std::size_t>(e)] ? static_cast<int>(e) : -1);
    }
    ids.insert(ids.end(), 3, -1);  // trailing padding rows in a partial window
    std::int64_t const m = static_cast<std::int64_t>(ids.size());
    CAPTURE(m);
    CAPTURE(lc.n);
    CAPTURE(lc.k);
    test::dense_source const gx(test::value_gen{seed++, 1.0f}, m, lc.k);
    auto a = test::quantize_gen<e4m3>(gx, m, lc.k, scaling::tile_1x128);
    // padding rows hold NaN data and NaN scales: they must never be read
    for (std::int64_t r = 0; r < m; ++r) {
      if (ids[static_cast<std::size_t>(r)] >= 0) continue;
      for (std::int64_t kk = 0; kk < lc.k; ++kk)
        a.data[static_cast<std::size_t>(r * a.ld + kk)] = e4m3::from_bits(0x7F);
      for (std::int64_t s = 0; s < a.scols; ++s)
        a.scales[static_cast<std::size_t>(r * a.scols + s)] = std::nanf("");
    }
    expert_weights<e4m3> const w(g, lc.n, lc.k, seed);
    seed += 100;
    test::out_mat<float> c(m, lc.n);
    test::value_gen const gc{seed++, 0.1f};
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < lc.n; ++j) c.buf[static_cast<std::size_t>(i * c.ld + j)] = gc(i, j);
    matrix_view<float const> const cv = lc.with_c ? c.cview() : matrix_view<float const>{};
    test::out_mat<bfloat16_t> d(m, lc.n);
    gemm::grouped_contiguous<e4m3, e4m3, bfloat16_t> p{a.view(), w.view(), {ids.data(), m, 1},
                                                       d.view(), cv,       lc.align};
    gemm::grouped_gemm(ex, p);
    test::out_mat<double> ref(m, lc.n);
    ref.poison();
    gemm::reference::grouped_gemm(gemm::grouped_contiguous<e4m3, e4m3, double>{
        a.view(), w.view(), {ids.data(), m, 1}, ref.view(), cv, lc.align});
    checker chk;
    int padding_bad = 0;
    for (std::int64_t i = 0; i < m; ++i) {
      int const e = ids[static_cast<std::size_t>(i)];
      for (std::int64_t j = 0; j < lc.n; ++j) {
        double const c0 = lc.with_c ? static_cast<double>(gc(i, j)) : 0.0;
        if (e < 0) {  // D = C or 0, exactly (up to the bf16 rounding of C)
          padding_bad +=
              d.at(i, j) == static_cast<double>(bfloat16_t(static_cast<float>(c0)).to_float()) ? 0 : 1;
          padding_bad += ref.at(i, j) == c0 ? 0 : 1;
          continue;
        }
        auto const bv = w.view()[e];
        chk.element(d.at(i, j), ref.at(i, j), test::magnitude(a.view(), i, bv, j, 0, lc.k, c0), 128, lc.k,
                    true, c0 + unquantized(gx, i, w.src[static_cast<std::size_t>(e)], j, 0, lc.k));
      }
    }
    CHECK(padding_bad == 0);
    CHECK(chk.failures == 0);
    if (!chk.got.empty()) CHECK(chk.diff() < 1e-3);
  }
}

TEST_CASE("grouped masked: valid rows computed, the others untouched") {
  host_executor ex;
  std::int64_t const g = 5, max_m = 100, n = 200, k = 384;
  std::vector<int> const masked = {0, 1, 100, 37, 64};
  test::dense_source const gx(test::value_gen{77, 1.0f}, g * max_m, k);
  // A (G, max_m, K): rows of all groups stacked, 1x128 scales per row
  auto const a = test::quantize_gen<e4m3>(gx, g * max_m, k, scaling::tile_1x128);
  gemm::quantized_batched_view<e4m3 const> const av{
      {a.data.data(), g, max_m, k, max_m * a.ld, a.ld, 1},
      {a.scales.data(), g, max_m, a.scols, max_m * a.scols, a.scols, 1},
      scaling::tile_1x128};
  expert_weights<e4m3> const w(g, n, k, 300);
  test::out_mat<float> d(g * max_m, n);
  batched_matrix_view<float> const dv{d.buf.data(), g, max_m, n, max_m * d.ld, d.ld, 1};
  gemm::grouped_masked<e4m3, e4m3, float> p{av, w.view(), {masked.data(), g, 1}, dv, {}, 48};
  gemm::grouped_gemm(ex, p);
  test::out_mat<double> ref(g * max_m, n);
  ref.poison();
  batched_matrix_view<double> const rv{ref.buf.data(), g, max_m, n, max_m * ref.ld, ref.ld, 1};
  gemm::reference::grouped_gemm(
      gemm::grouped_masked<e4m3, e4m3, double>{av, w.view(), {masked.data(), g, 1}, rv, {}, 48});
  checker chk;
  int untouched_bad = 0;
  for (std::int64_t e = 0; e < g; ++e) {
    for (std::int64_t i = 0; i < max_m; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        if (i >= masked[static_cast<std::size_t>(e)]) {
          untouched_bad += std::isnan(dv(e, i, j)) && std::isnan(rv(e, i, j)) ? 0 : 1;  // still poisoned
          continue;
        }
        chk.element(dv(e, i, j), rv(e, i, j), test::magnitude(av[e], i, w.view()[e], j, 0, k), 128, k, false,
                    unquantized(gx, e * max_m + i, w.src[static_cast<std::size_t>(e)], j, 0, k));
      }
    }
  }
  CHECK(untouched_bad == 0);
  CHECK(chk.failures == 0);
  CHECK(chk.diff() < 1e-3);
}

TEST_CASE("k_grouped: weight gradient dW_g = dY_g^T X_g, 1x128 along tokens, FP32 accumulated into C") {
  host_executor ex;
  std::int64_t const mo = 130, nh = 200;                    // dW_g is (mo, nh): output features x hidden
  std::vector<int> const tokens = {256, 0, 128, 384, 128};  // per-expert token counts (multiples of 128)
  std::int64_t total = 0;
  for (int t : tokens) total += t;
  std::int64_t const g = static_cast<std::int64_t>(tokens.size());
  // dY (T, mo) and X (T, nh) as token-major sources; A = dY^T (mo, T), B = X^T (nh, T), both
  // quantized 1x128 along T (the transposed 128x1 re-quantization)
  test::dense_source const gy(test::value_gen{11, 1.0f}, total, mo),
      gxs(test::value_gen{12, 1.0f}, total, nh);
  auto const dyt = [&](std::int64_t r, std::int64_t t) { return gy(t, r); };
  auto const xt = [&](std::int64_t r, std::int64_t t) { return gxs(t, r); };
  auto const a = test::quantize_gen<e4m3>(dyt, mo, total, scaling::tile_1x128);
  auto const b = test::quantize_gen<e4m3>(xt, nh, total, scaling::tile_1x128);
  test::out_mat<float> d(g * mo, nh);
  test::value_gen const gc{13, 0.5f};
  auto const fill_c = [&](test::out_mat<float>& m) {  // (G*mo, nh) = C
    for (std::int64_t i = 0; i < g * mo; ++i)
      for (std::int64_t j = 0; j < nh; ++j) m.buf[static_cast<std::size_t>(i * m.ld + j)] = gc(i, j);
  };
  // f(e, i, j, k0, kg, c0) for every output: group e reduces over K = [k0, k0 + kg), C(e, i, j) = c0
  auto const for_each_output = [&](auto&& f) {
    std::int64_t k0 = 0;
    for (std::int64_t e = 0; e < g; ++e) {
      std::int64_t const kg = tokens[static_cast<std::size_t>(e)];
      for (std::int64_t i = 0; i < mo; ++i)
        for (std::int64_t j = 0; j < nh; ++j) f(e, i, j, k0, kg, static_cast<double>(gc(e * mo + i, j)));
      k0 += kg;
    }
  };
  fill_c(d);  // C == D
  batched_matrix_view<float> const dv{d.buf.data(), g, mo, nh, mo * d.ld, d.ld, 1};
  gemm::k_grouped<e4m3, e4m3> p{a.view(), b.view(), {tokens.data(), g, 1}, dv, dv};
  for (auto isa : {gemm::host::kernel_isa::automatic, gemm::host::kernel_isa::baseline}) {
    fill_c(d);
    gemm::validate(p);
    std::vector<std::byte> ws(gemm::workspace_bytes(ex));
    auto const jobs = gemm::host::make_jobs(p);
    gemm::host::run_jobs<e4m3, e4m3, float>(ex, jobs, {}, ws, isa);
    checker chk;
    for_each_output(
        [&](std::int64_t e, std::int64_t i, std::int64_t j, std::int64_t k0, std::int64_t kg, double c0) {
          double const exact = gemm::reference::block_scaled_dot(a.view(), i, b.view(), j, k0, kg, 128, c0);
          chk.element(dv(e, i, j), exact, test::magnitude(a.view(), i, b.view(), j, k0, kg, c0), 128, kg,
                      false, c0 + unquantized(dyt, i, xt, j, k0, kg));
        });
    CHECK(chk.failures == 0);
    CHECK(chk.diff() < 1e-3);
  }
  // the reference entry point agrees with block_scaled_dot (and writes every group, empty ones = C)
  test::out_mat<float> r(g * mo, nh);
  fill_c(r);
  batched_matrix_view<float> const rv{r.buf.data(), g, mo, nh, mo * r.ld, r.ld, 1};
  gemm::reference::grouped_gemm(
      gemm::k_grouped<e4m3, e4m3>{a.view(), b.view(), {tokens.data(), g, 1}, rv, rv});
  // allocating overload of the host path, from D = C again: equal to the reference within the bound
  fill_c(d);
  gemm::grouped_gemm(ex, p);
  int bad = 0;
  for_each_output(
      [&](std::int64_t e, std::int64_t i, std::int64_t j, std::int64_t k0, std::int64_t kg, double c0) {
        double const exact = gemm::reference::block_scaled_dot(a.view(), i, b.view(), j, k0, kg, 128, c0);
        bad += rv(e, i, j) == static_cast<float>(exact) ? 0 : 1;  // reference = its own formula, rounded
        double const tol =
            test::tolerance(exact, test::magnitude(a.view(), i, b.view(), j, k0, kg, c0), 128, kg, false);
        bad += std::fabs(dv(e, i, j) - exact) <= tol ? 0 : 1;
      });
  for (std::int64_t j = 0; j < nh; ++j) {
    bad += rv(1, 7, j) == static_cast<float>(gc(mo + 7, j)) ? 0 : 1;  // empty group: D = C exactly
    bad += dv(1, 7, j) == static_cast<float>(gc(mo + 7, j)) ? 0 : 1;
  }
  CHECK(bad == 0);
}

// ------------------------------------------------------------------------------------------------
namespace {
/// Expects fp8moe::error whose message names `arg`, and D still fully poisoned.
template <class F>
void expect_error(F&& f, std::string const& arg, test::out_mat<float> const& d,
                  errc code = errc::invalid_argument) {
  CAPTURE(arg);
  bool thrown = false;
  try {
    f();
  } catch (fp8moe::error const& e) {
    thrown = true;
    std::string const what = e.what();
    CAPTURE(what);
    CHECK(what.find("'" + arg + "'") != std::string::npos);
    CHECK(e.code() == code);
  }
  CHECK(thrown);
  int touched = 0;
  for (std::int64_t i = 0; i < d.rows; ++i)
    for (std::int64_t j = 0; j < d.cols; ++j) touched += std::isnan(d.at(i, j)) ? 0 : 1;
  CHECK(touched == 0);
}
}  // namespace

TEST_CASE("bad input: fp8moe::error naming the argument, outputs untouched") {
  host_executor ex;
  std::int64_t const m = 40, n = 136, k = 256;
  test::value_gen const gx{1, 1.0f}, gw{2, 0.02f};
  auto const a = test::quantize_gen<e4m3>(gx, m, k, scaling::tile_1x128);
  auto const b = test::quantize_gen<e4m3>(gw, n, k, scaling::block_128x128);
  test::out_mat<float> d(m, n);
  using P = gemm::dense<e4m3, e4m3, float>;
  P const ok{a.view(), b.view(), d.view(), {}};

  SUBCASE("misaligned pointers and strides") {
    P p = ok;
    p.a.data.data = a.data.data() + 1;  // 1 byte off
    p.a.data.cols = k - 1;
    p.a.scales.cols = 2;
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "a", d);
    p = ok;
    p.b.data.row_stride = k + 8;  // 264 bytes: not a multiple of 16
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "b", d);
    p = ok;
    p.d.data = d.buf.data() + 1;  // 4 bytes off
    p.d.cols = n - 1;
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "d", d);
    p = ok;
    p.d.row_stride = n + 1;
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "d", d);
    p = ok;
    p.a.data.col_stride = 2;  // A must be K-major
    p.a.data.row_stride = 2 * k;
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "a", d);
  }
  SUBCASE("shapes and scale buffers") {
    P p = ok;
    p.b.data.cols = k - 128;  // K mismatch
    p.b.scales.cols = 1;
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "b", d);
    p = ok;
    p.a.scales.cols = 1;  // 1x128 over K=256 needs 2 scale columns
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "a.scales", d);
    p = ok;
    p.b.scales.rows = 1;  // 136 rows in 128-row blocks need 2 scale rows
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "b.scales", d);
    p = ok;
    p.d.rows = m - 1;
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "d", d);
    test::out_mat<float> c(m + 1, n);
    p = ok;
    p.c = c.cview();
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "c", d);
    p = ok;
    p.a.scales.data = nullptr;
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "a.scales", d);
  }
  SUBCASE("K tile vs promotion interval (unsupported recipe combinations)") {
    // 1x64 scales: the scale changes inside a 128-element promotion block
    auto const a64 = test::quantize_gen<e4m3>(gx, m, k, tile_shape{1, 64});
    P p = ok;
    p.a = a64.view();
    expect_error([&] { gemm::fp8_gemm(ex, p); }, "a.tile", d);
    expect_error([&] { gemm::fp8_gemm(ex, p, gemm_options{.promotion_k = 0}); }, "options.promotion_k", d);
    // ... and it is accepted (and correct) with promotion_k = 64 (MX-style blocks)
    gemm::fp8_gemm(ex, p, gemm_options{.promotion_k = 64});
    double const exact = gemm::reference::block_scaled_dot(a64.view(), 3, b.view(), 5, 0, k, 64);
    CHECK(std::fabs(d.at(3, 5) - exact) <=
          test::tolerance(exact, test::magnitude(a64.view(), 3, b.view(), 5, 0, k), 64, k, false));
  }
  SUBCASE("workspace too small") {
    std::vector<std::byte> small(64);
    expect_error([&] { gemm::fp8_gemm(ex, ok, {}, small); }, "workspace", d);
  }
  SUBCASE("grouped contiguous: expert ids") {
    expert_weights<e4m3> const w(2, n, k, 10);
    std::vector<int> ids(static_cast<std::size_t>(m), 0);
    gemm::grouped_contiguous<e4m3, e4m3, float> p{a.view(), w.view(), {ids.data(), m, 1}, d.view(), {}};
    ids[5] = 2;  // out of range
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "m_indices", d);
    ids[5] = 1;  // two experts inside one aligned 128-row window
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "m_indices", d);
    ids[5] = 0;
    p.m_indices.size = m - 1;
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "m_indices", d);
    p.m_indices.size = m;
    p.m_align = 0;
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "m_align", d);
    p.m_align = 100;  // rejected on the device, so on the host too (one rule for every executor)
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "m_align", d);
    p.m_align = 64;
    CHECK_NOTHROW(gemm::grouped_gemm(ex, p));
  }
  SUBCASE("overlapping scale rows") {
    // a's scales viewed with row_stride 2 < cols: rows would overlap; quantize rejects this
    // layout for its output, the GEMM for its inputs
    std::int64_t const sc = k / 128;
    REQUIRE(sc >= 2);
    gemm::dense<e4m3, e4m3, float> bad = ok;
    bad.a.scales.row_stride = 1;
    expect_error([&] { gemm::fp8_gemm(ex, bad); }, "a.scales", d);
    bad = ok;
    bad.b.scales.row_stride = bad.b.scales.cols - 1;
    expect_error([&] { gemm::fp8_gemm(ex, bad); }, "b.scales", d);
  }
  SUBCASE("grouped masked: counts") {
    expert_weights<e4m3> const w(2, n, k, 10);
    std::int64_t const max_m = m / 2;
    gemm::quantized_batched_view<e4m3 const> const av{
        {a.data.data(), 2, max_m, k, max_m * a.ld, a.ld, 1},
        {a.scales.data(), 2, max_m, a.scols, max_m * a.scols, a.scols, 1},
        scaling::tile_1x128};
    batched_matrix_view<float> const dv{d.buf.data(), 2, max_m, n, max_m * d.ld, d.ld, 1};
    std::vector<int> counts = {3, static_cast<int>(max_m) + 1};
    gemm::grouped_masked<e4m3, e4m3, float> p{av, w.view(), {counts.data(), 2, 1}, dv, {}, 0};
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "masked_m", d);
    counts[1] = 2;
    p.d.batches = 3;
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "d", d);
  }
  SUBCASE("k_grouped: group sizes") {
    std::vector<int> sizes = {100, 156};  // not multiples of the 128-token scale tile
    batched_matrix_view<float> const dv{d.buf.data(), 2, m / 2, n, (m / 2) * d.ld, d.ld, 1};
    auto const bt = test::quantize_gen<e4m3>(gw, n, k, scaling::tile_1x128);
    auto const av = a.view();
    scaling::quantized_matrix_view<e4m3 const> const ah{
        {av.data.data, m / 2, k, av.data.row_stride, 1},
        {av.scales.data, m / 2, av.scales.cols, av.scales.row_stride, 1},
        av.tile};
    gemm::k_grouped<e4m3, e4m3> p{ah, bt.view(), {sizes.data(), 2, 1}, dv, {}};
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "k_sizes", d);
    sizes = {128, 256};  // sum 384 != K 256
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "k_sizes", d);
    sizes = {-128, 384};
    expect_error([&] { gemm::grouped_gemm(ex, p); }, "k_sizes", d);
    sizes = {128, 128};
    gemm::grouped_gemm(ex, p);  // valid: runs
    CHECK(!std::isnan(dv(1, 0, 0)));
  }
}

TEST_CASE("options_for: promotion interval from the operands' tiles (MX blocks of 32)") {
  CHECK(gemm::options_for(scaling::tile_1x128, scaling::block_128x128) == gemm_options{});
  CHECK(gemm::options_for(scaling::tile_1x128, scaling::tile_1x128).promotion_k == 128);
  CHECK(gemm::options_for(scaling::per_tensor, scaling::per_tensor).promotion_k == 128);
  CHECK(gemm::options_for(scaling::mx_block_32, scaling::mx_block_32).promotion_k == 32);
  CHECK(gemm::options_for(tile_shape{1, 256}, scaling::block_128x128).promotion_k == 128);
  // MXFP8-like operands (1x32, UE8M0) through the whole host path
  std::int64_t const m = 20, n = 70, k = 160;
  test::dense_source const gx(test::value_gen{8, 1.0f}, m, k), gw(test::value_gen{9, 0.02f}, n, k);
  auto const a = test::quantize_gen<e4m3>(gx, m, k, scaling::mx_block_32, true);
  auto const b = test::quantize_gen<e4m3>(gw, n, k, scaling::mx_block_32, true);
  auto const o = gemm::options_for(a.tile, b.tile);
  test::out_mat<float> d(m, n);
  gemm::fp8_gemm(host_executor{}, a.view(), b.view(), d.view(), o);
  checker chk;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      chk.dense_element(d.at(i, j), a.view(), b.view(), gx, gw, i, j, k, 32, false);
  CHECK(chk.failures == 0);
  CHECK(chk.diff() < 1e-3);
}

TEST_CASE("workspace_bytes and the caller-workspace overloads") {
  host_executor const one{1}, two{2};
  CHECK(gemm::workspace_bytes(two) > gemm::workspace_bytes(one));
  CHECK(gemm::workspace_bytes(one, {.promotion_k = 512}) > gemm::workspace_bytes(one));
  std::int64_t const m = 9, n = 33, k = 130;
  test::dense_source const gx(test::value_gen{3, 1.0f}, m, k), gw(test::value_gen{4, 0.02f}, n, k);
  auto const a = test::quantize_gen<e4m3>(gx, m, k, scaling::tile_1x128);
  auto const b = test::quantize_gen<e4m3>(gw, n, k, scaling::block_128x128);
  test::out_mat<float> d1(m, n), d2(m, n);
  std::vector<std::byte> ws(gemm::workspace_bytes(two));
  gemm::fp8_gemm(two, gemm::dense<e4m3, e4m3, float>{a.view(), b.view(), d1.view(), {}}, {}, ws);
  // non-const operand views (quantized_matrix_view<T>) are accepted by the convenience overload
  scaling::quantized_matrix_view<e4m3> const a_mut{
      {a.data.data(), m, k, a.ld, 1},
      {const_cast<float*>(a.scales.data()), a.srows, a.scols, a.scols, 1},
      a.tile};
  gemm::fp8_gemm(one, a_mut, b.view(), d2.view());
  int differ = 0;  // same tiles, same order inside a tile: identical bits for any thread count
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) differ += d1.at(i, j) == d2.at(i, j) ? 0 : 1;
  CHECK(differ == 0);
  CHECK(d1.at(m - 1, n - 1) != 0.0);
  // exactly workspace_bytes(exec) runs (same bits); one byte less is refused, naming the workspace
  test::out_mat<float> d3(m, n);
  std::vector<std::byte> exact(gemm::workspace_bytes(one)), short_by_one(gemm::workspace_bytes(one) - 1);
  gemm::fp8_gemm(one, gemm::dense<e4m3, e4m3, float>{a.view(), b.view(), d3.view(), {}}, {}, exact);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) differ += d3.at(i, j) == d1.at(i, j) ? 0 : 1;
  CHECK(differ == 0);
  CHECK_THROWS_WITH_AS(gemm::fp8_gemm(one, gemm::dense<e4m3, e4m3, float>{a.view(), b.view(), d3.view(), {}},
                                      {}, short_by_one),
                       doctest::Contains("argument 'workspace'"), fp8moe::error);
}

namespace {
/// True when fp8_gemm(e, a, b, d) is a well-formed call: the entry points are constrained on the
/// `executor` concept (tests/compile_fail/gemm_not_an_executor.cpp shows the diagnostic).
template <class E>
constexpr bool fp8_gemm_callable = requires(E const& e, scaling::quantized_matrix_view<e4m3 const> q,
                                            matrix_view<float> d) {
  gemm::fp8_gemm(e, q, q, d);
};
}  // namespace

TEST_CASE("entry points: one template per op, constrained on executor; both workspace overloads agree") {
  static_assert(fp8_gemm_callable<host_executor>);
  static_assert(!fp8_gemm_callable<int>);
  static_assert(!fp8_gemm_callable<std::vector<int>>);
  static_assert(has_dispatch<gemm::dispatch<host_executor>>);
  static_assert(gemm::grouped_layout<gemm::grouped_contiguous<e4m3, e4m3, float>>);
  static_assert(gemm::grouped_layout<gemm::grouped_masked<e4m3, e5m2, bfloat16_t>>);
  static_assert(gemm::grouped_layout<gemm::k_grouped<e5m2, e4m3>>);
  static_assert(!gemm::grouped_layout<gemm::dense<e4m3, e4m3, float>>);
  static_assert(!gemm::grouped_layout<int>);
  host_executor const ex{2};
  CHECK(gemm::workspace_bytes(ex) == gemm::host::workspace_bytes(2, 128));
  CHECK(gemm::workspace_bytes(ex, {.promotion_k = 32}) == gemm::host::workspace_bytes(2, 32));
  auto same_bits = [](auto const& x, auto const& y) {
    return x.buf.size() == y.buf.size() &&
           std::memcmp(x.buf.data(), y.buf.data(), x.buf.size() * sizeof(x.buf[0])) == 0;
  };
  std::vector<std::byte> ws(gemm::workspace_bytes(ex));
  std::int64_t const g = 3, rows = 128, n = 72, k = 256;  // (G * rows, K) activations
  test::dense_source const gx(test::value_gen{41, 1.0f}, g * rows, k);
  auto const a = test::quantize_gen<e4m3>(gx, g * rows, k, scaling::tile_1x128);
  expert_weights<e4m3> const w(g, n, k, 42);
  SUBCASE("contiguous") {
    std::vector<int> ids(static_cast<std::size_t>(g * rows));
    for (std::size_t r = 0; r < ids.size(); ++r) ids[r] = r % 128 < 100 ? static_cast<int>(r / 128) : -1;
    test::out_mat<bfloat16_t> d1(g * rows, n), d2(g * rows, n);
    gemm::grouped_contiguous<e4m3, e4m3, bfloat16_t> const p1{a.view(),  w.view(), {ids.data(), g * rows, 1},
                                                              d1.view(), {},       128};
    auto p2 = p1;
    p2.d = d2.view();
    gemm::grouped_gemm(ex, p1, {}, ws);
    gemm::grouped_gemm(ex, p2);
    CHECK(same_bits(d1, d2));
    CHECK(d1.at(g * rows - 1, n - 1) == 0.0);  // a padding row: no product, no C
    CHECK(d1.at(0, 0) != 0.0);
  }
  SUBCASE("masked") {
    std::vector<int> const masked = {5, 128, 0};
    gemm::quantized_batched_view<e4m3 const> const av{
        {a.data.data(), g, rows, k, rows * a.ld, a.ld, 1},
        {a.scales.data(), g, rows, a.scols, rows * a.scols, a.scols, 1},
        scaling::tile_1x128};
    test::out_mat<float> d1(g * rows, n), d2(g * rows, n);
    batched_matrix_view<float> const v1{d1.buf.data(), g, rows, n, rows * d1.ld, d1.ld, 1};
    batched_matrix_view<float> const v2{d2.buf.data(), g, rows, n, rows * d2.ld, d2.ld, 1};
    gemm::grouped_gemm(
        ex, gemm::grouped_masked<e4m3, e4m3, float>{av, w.view(), {masked.data(), g, 1}, v1, {}}, {}, ws);
    gemm::grouped_gemm(ex,
                       gemm::grouped_masked<e4m3, e4m3, float>{av, w.view(), {masked.data(), g, 1}, v2, {}});
    CHECK(same_bits(d1, d2));  // rows past masked_m stay NaN in both (memcmp of the same poison bits)
    CHECK(std::isnan(v1(0, 5, 0)));
    CHECK(!std::isnan(v1(1, 127, n - 1)));
  }
  SUBCASE("k_grouped") {
    std::vector<int> const toks = {128, 0, 256};  // K groups of the (rows, K) operands below
    test::dense_source const gy(test::value_gen{43, 1.0f}, 40, 384), gz(test::value_gen{44, 1.0f}, 24, 384);
    auto const y = test::quantize_gen<e4m3>(gy, 40, 384, scaling::tile_1x128);
    auto const z = test::quantize_gen<e4m3>(gz, 24, 384, scaling::tile_1x128);
    test::out_mat<float> d1(3 * 40, 24), d2(3 * 40, 24);
    batched_matrix_view<float> const v1{d1.buf.data(), 3, 40, 24, 40 * d1.ld, d1.ld, 1};
    batched_matrix_view<float> const v2{d2.buf.data(), 3, 40, 24, 40 * d2.ld, d2.ld, 1};
    gemm::grouped_gemm(ex, gemm::k_grouped<e4m3, e4m3>{y.view(), z.view(), {toks.data(), 3, 1}, v1, {}}, {},
                       ws);
    gemm::grouped_gemm(ex, gemm::k_grouped<e4m3, e4m3>{y.view(), z.view(), {toks.data(), 3, 1}, v2, {}});
    CHECK(same_bits(d1, d2));
    CHECK(v1(1, 39, 23) == 0.0f);  // the empty group writes 0
    CHECK(v1(2, 0, 0) != 0.0f);
  }
}

TEST_CASE("determinism: 1, 2, 3 and 4 threads give the same bits on multi-tile dense, grouped, k-grouped") {
  // Host tiles are 192 x 256 with K chunks of 256 (host::default_blocking): every problem below has
  // several tiles in M and N and more than one K chunk, so a thread count changes which thread runs
  // which tile; the order inside a tile (and so every bit) must not change.
  static_assert(gemm::host::default_blocking.mc == 192 && gemm::host::default_blocking.nc == 256);
  auto same_bits = [](std::vector<float> const& x, std::vector<float> const& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
  auto read = [](test::out_mat<float> const& d) {
    std::vector<float> v(static_cast<std::size_t>(d.rows * d.cols));
    for (std::int64_t i = 0; i < d.rows; ++i)
      for (std::int64_t j = 0; j < d.cols; ++j)
        v[static_cast<std::size_t>(i * d.cols + j)] = d.buf[i * d.ld + j];
    return v;
  };
  // dense: 400 x 600 x 640 = 3 x 3 tiles, 5 promotion blocks, 3 K chunks
  std::int64_t const m = 400, n = 600, k = 640;
  test::dense_source const gx(test::value_gen{31, 1.0f}, m, k), gw(test::value_gen{32, 0.02f}, n, k);
  auto const a = test::quantize_gen<e4m3>(gx, m, k, scaling::tile_1x128);
  auto const b = test::quantize_gen<e4m3>(gw, n, k, scaling::block_128x128);
  // grouped contiguous: 4 experts of 256 rows (some padding), N = 520 (3 N tiles)
  std::int64_t const gm = 1024, gn = 520;
  std::vector<int> ids(static_cast<std::size_t>(gm));
  for (std::int64_t r = 0; r < gm; ++r)
    ids[static_cast<std::size_t>(r)] = (r % 256) < 200 ? static_cast<int>(r / 256) : -1;
  test::dense_source const ga(test::value_gen{33, 1.0f}, gm, k);
  auto const aq = test::quantize_gen<e4m3>(ga, gm, k, scaling::tile_1x128);
  expert_weights<e4m3> const w(4, gn, k, 34);
  // k-grouped: dW_g (300, 450) over token groups 256, 512, 128
  std::vector<int> const toks = {256, 512, 128};
  std::int64_t const mo = 300, nh = 450, kt = 896;
  test::dense_source const gy(test::value_gen{35, 1.0f}, mo, kt), gz(test::value_gen{36, 1.0f}, nh, kt);
  auto const ya = test::quantize_gen<e4m3>(gy, mo, kt, scaling::tile_1x128);
  auto const zb = test::quantize_gen<e4m3>(gz, nh, kt, scaling::tile_1x128);
  std::vector<float> dense_1, grouped_1, kgrouped_1;
  for (int threads : {1, 2, 3, 4}) {
    CAPTURE(threads);
    host_executor const ex{threads};
    REQUIRE(ex.num_threads() == threads);
    test::out_mat<float> d(m, n), dg(gm, gn), dk(3 * mo, nh);
    gemm::fp8_gemm(ex, a.view(), b.view(), d.view());
    gemm::grouped_gemm(ex, gemm::grouped_contiguous<e4m3, e4m3, float>{
                               aq.view(), w.view(), {ids.data(), gm, 1}, dg.view(), {}, 128});
    batched_matrix_view<float> const dkv{dk.buf.data(), 3, mo, nh, mo * dk.ld, dk.ld, 1};
    gemm::grouped_gemm(ex, gemm::k_grouped<e4m3, e4m3>{ya.view(), zb.view(), {toks.data(), 3, 1}, dkv, {}});
    if (threads == 1) {
      dense_1 = read(d), grouped_1 = read(dg), kgrouped_1 = read(dk);
      CHECK(d.at(m - 1, n - 1) != 0.0);
      continue;
    }
    CHECK(same_bits(read(d), dense_1));
    CHECK(same_bits(read(dg), grouped_1));
    CHECK(same_bits(read(dk), kgrouped_1));
  }
}

TEST_CASE("device translation (host): M, N, K, groups past INT_MAX are rejected naming the dimension") {
  // to_params reads views only: the extents below describe 2^31+ element operands that are never
  // touched (one real byte/float behind each pointer).
  static e4m3 byte[16];
  static float f[16];
  std::int64_t const big = std::int64_t{1} << 31, kk = 128;  // INT_MAX + 1
  auto a_of = [&](std::int64_t rows, std::int64_t cols) {
    return scaling::quantized_matrix_view<e4m3 const>{
        {byte, rows, cols, cols, 1}, {f, rows, cols / 128, cols / 128, 1}, scaling::tile_1x128};
  };
  auto b_of = [&](std::int64_t rows, std::int64_t cols) {
    return scaling::quantized_matrix_view<e4m3 const>{{byte, rows, cols, cols, 1},
                                                      {f, (rows + 127) / 128, cols / 128, cols / 128, 1},
                                                      scaling::block_128x128};
  };
  auto dense = [&](std::int64_t m, std::int64_t n, std::int64_t k) {
    return gemm::dense<e4m3, e4m3, float>{a_of(m, k), b_of(n, k), {f, m, n, n, 1}, {}};
  };
  CHECK_THROWS_WITH_AS(gemm::cuda::to_params(dense(big, 256, kk)), doctest::Contains("argument 'M'"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(gemm::cuda::to_params(dense(64, big, kk)), doctest::Contains("argument 'N'"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(gemm::cuda::to_params(dense(64, 256, big)), doctest::Contains("argument 'K'"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(gemm::cuda::to_params(dense(big, 256, kk)), doctest::Contains("got 2147483648"),
                       fp8moe::error);
  auto const q = gemm::cuda::to_params(dense(big - 1, 256, kk));  // INT_MAX itself fits
  CHECK(q.m == 2147483647);
  CHECK(q.n == 256);
  CHECK(q.k == 128);
  // grouped contiguous: M_sum past INT_MAX
  static int m_idx[1];
  gemm::quantized_batched_view<e4m3 const> const wb{
      {byte, 2, 256, kk, 256 * kk, kk, 1}, {f, 2, 2, 1, 2, 1, 1}, scaling::block_128x128};
  gemm::grouped_contiguous<e4m3, e4m3, float> const gc{a_of(big, kk),         wb, {m_idx, big, 1},
                                                       {f, big, 256, 256, 1}, {}, 128};
  CHECK_THROWS_WITH_AS(gemm::cuda::to_params(gc), doctest::Contains("argument 'M'"), fp8moe::error);
}

TEST_CASE("empty extents: M = 0, N = 0, and K = 0 (D = C or 0)") {
  host_executor ex;
  for (auto const& mnk : {std::array<std::int64_t, 3>{0, 64, 128}, {16, 0, 128}, {16, 40, 0}}) {
    std::int64_t const m = mnk[0], n = mnk[1], k = mnk[2];
    CAPTURE(m);
    CAPTURE(n);
    CAPTURE(k);
    test::dense_source const gx(test::value_gen{5, 1.0f}, m, k), gw(test::value_gen{6, 0.02f}, n, k);
    auto const a = test::quantize_gen<e4m3>(gx, m, k, scaling::tile_1x128);
    auto const b = test::quantize_gen<e4m3>(gw, n, k, scaling::block_128x128);
    test::out_mat<bfloat16_t> d(m, n), d0(m, n);
    test::out_mat<float> c(m, n);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        c.buf[static_cast<std::size_t>(i * c.ld + j)] = static_cast<float>(i - j);
    gemm::fp8_gemm(ex, a.view(), b.view(), d.view(), c.cview());
    gemm::fp8_gemm(ex, a.view(), b.view(), d0.view());
    int bad = 0;
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        bad += d.at(i, j) == static_cast<double>(i - j) ? 0 : 1;  // K = 0: D = C exactly
        bad += d0.at(i, j) == 0.0 ? 0 : 1;
      }
    CHECK(bad == 0);
  }
}
