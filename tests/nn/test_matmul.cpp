// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::matmul against a float64 reference: float and bf16 inputs, row- and column-major operands,
// alpha/beta, edge shapes, the portable kernel on 1..4 threads (bitwise identical), bad input.
// Built twice: with CBLAS (FP8MOE_HAVE_BLAS, where found) and without (the portable kernel). Also the
// host FP8 GEMM's sgemm path (gemm_options::host = sgemm: dequantized panels through CBLAS sgemm), the
// one gemm path that needs CBLAS, against the float64 reference (the kernel itself: tests/gemm).
// The _cuda variant runs the same checks through cuBLASLt where a GPU is visible.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fp8moe/gemm/gemm.hpp"
#include "fp8moe/gemm/reference.hpp"
#include "fp8moe/nn/matmul.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "test_support.hpp"
#if FP8MOE_TEST_GPU
#include "device_memory.hpp"
#include "fp8moe/nn/cuda/dispatch.cuh"
#endif

using namespace fp8moe;

namespace {

/// A (M,K) and B (K,N) stored row-major, or column-major ("transposed" storage).
struct operands {
  std::int64_t M, N, K;
  bool a_col, b_col;
  std::vector<float> a, b;  // values; bf16 runs round them to bf16 first (exact inputs)
  operands(std::int64_t m, std::int64_t n, std::int64_t k, bool ac, bool bc, std::uint64_t seed)
      : M(m), N(n), K(k), a_col(ac), b_col(bc) {
    a = test::random_normal(static_cast<std::size_t>(M * K), 1.0f, seed);
    b = test::random_normal(static_cast<std::size_t>(K * N), 1.0f, seed + 1);
  }
  template <class T>
  matrix_view<T const> view_a(std::vector<T> const& s) const {
    return a_col ? nn::transposed(make_matrix(s.data(), K, M)) : make_matrix(s.data(), M, K);
  }
  template <class T>
  matrix_view<T const> view_b(std::vector<T> const& s) const {
    return b_col ? nn::transposed(make_matrix(s.data(), N, K)) : make_matrix(s.data(), K, N);
  }
};

template <class T>
std::vector<T> cast(std::vector<float> const& v) {
  std::vector<T> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = static_cast<T>(v[i]);
  return r;
}

/// D = alpha * A * B + beta * D0 in float64 from the stored (possibly bf16-rounded) inputs, and the
/// bound sum_k |a||b| used by the tolerance.
template <class T>
void reference(operands const& P, std::vector<T> const& sa, std::vector<T> const& sb,
               std::vector<float> const& d0, nn::matmul_options o, std::vector<double>& d,
               std::vector<double>& mag) {
  auto const a = P.view_a(sa);
  auto const b = P.view_b(sb);
  d.assign(static_cast<std::size_t>(P.M * P.N), 0.0);
  mag.assign(d.size(), 0.0);
  for (std::int64_t m = 0; m < P.M; ++m)
    for (std::int64_t n = 0; n < P.N; ++n) {
      double s = 0, g = 0;
      for (std::int64_t k = 0; k < P.K; ++k) {
        double const p = static_cast<double>(static_cast<float>(a(m, k))) * static_cast<float>(b(k, n));
        s += p;
        g += std::abs(p);
      }
      auto const i = static_cast<std::size_t>(m * P.N + n);
      d[i] = o.alpha * s + (o.beta != 0 ? o.beta * static_cast<double>(d0[i]) : 0.0);
      mag[i] = std::abs(o.alpha) * g + std::abs(o.beta * static_cast<double>(d0[i]));
    }
}

/// Float accumulation of K products in any order: |err| <= K * 2^-24 * sum|a b| (first order),
/// plus the beta term's rounding; a bf16 output adds its rounding 2^-8 |d|.
template <class TD>
void check_close(std::vector<TD> const& got, std::vector<double> const& want, std::vector<double> const& mag,
                 std::int64_t K) {
  double const acc = (static_cast<double>(K) + 2) * std::ldexp(1.0, -24);
  for (std::size_t i = 0; i < got.size(); ++i) {
    double const g = static_cast<double>(static_cast<float>(got[i]));
    double tol = acc * mag[i] + 1e-30;
    if constexpr (std::is_same_v<TD, bfloat16_t>)
      tol += std::ldexp(1.0, -8) * std::abs(want[i]) + acc * mag[i];
    if (!(std::abs(g - want[i]) <= tol)) {
      FAIL_CHECK("element " << i << ": got " << g << " want " << want[i] << " tol " << tol);
      return;
    }
  }
}

template <class TI, class TD, class Run>
void check_case(operands const& P, nn::matmul_options o, Run run) {
  auto const sa = cast<TI>(P.a), sb = cast<TI>(P.b);
  auto const d0 = test::random_normal(static_cast<std::size_t>(P.M * P.N), 1.0f, 77);
  std::vector<TD> d = cast<TD>(d0);
  // beta == 0: D is not read (poison it)
  if (o.beta == 0.0f) test::poison(d);
  std::vector<float> d0r(d0.size());
  for (std::size_t i = 0; i < d0.size(); ++i) d0r[i] = static_cast<float>(static_cast<TD>(d0[i]));
  run(P.view_a(sa), P.view_b(sb), make_matrix(d.data(), P.M, P.N), o);
  std::vector<double> want, mag;
  reference(P, sa, sb, d0r, o, want, mag);
  check_close(d, want, mag, P.K);
}

auto host_run() {
  return [](auto a, auto b, auto d, nn::matmul_options o) { nn::matmul(host_executor{}, a, b, d, o); };
}

}  // namespace

TEST_CASE("nn::matmul (host): float and bf16 against float64, row/column-major operands, alpha/beta") {
  struct shape {
    std::int64_t m, n, k;
  };
  for (shape s :
       {shape{1, 1, 1}, shape{3, 5, 7}, shape{70, 300, 260}, shape{129, 17, 513}, shape{64, 256, 256}}) {
    for (int layout = 0; layout < 4; ++layout) {
      operands const P(s.m, s.n, s.k, (layout & 1) != 0, (layout & 2) != 0,
                       11 + static_cast<std::uint64_t>(layout));
      CAPTURE(s.m);
      CAPTURE(s.n);
      CAPTURE(s.k);
      CAPTURE(layout);
      check_case<float, float>(P, {}, host_run());
      check_case<float, float>(P, {.alpha = -0.5f, .beta = 0.75f}, host_run());
      check_case<bfloat16_t, float>(P, {.alpha = 2.0f, .beta = 0.0f}, host_run());
      check_case<bfloat16_t, bfloat16_t>(P, {.alpha = 1.0f, .beta = 1.0f}, host_run());
    }
  }
}

TEST_CASE(
    "nn::matmul (host): the portable kernel is checked on its own and is bitwise identical on 1-4 threads") {
  operands const P(150, 333, 300, false, true, 5);
  std::vector<double> want, mag;
  reference(P, P.a, P.b, std::vector<float>(static_cast<std::size_t>(P.M * P.N), 0.0f), {}, want, mag);
  std::vector<float> first;
  for (int threads = 1; threads <= 4; ++threads) {
    host_executor const ex{threads};
    std::vector<std::byte> ws(nn::dispatch<host_executor>::matmul_workspace_bytes(ex, {P.M, P.N, P.K}));
    std::vector<float> d(static_cast<std::size_t>(P.M * P.N));
    test::poison(d);
    nn::host::matmul_blocked(ex, P.view_a(P.a), P.view_b(P.b), make_matrix(d.data(), P.M, P.N), {},
                             reinterpret_cast<float*>(ws.data()));
    check_close(d, want, mag, P.K);
    if (threads == 1) first = d;
    CHECK(std::memcmp(d.data(), first.data(), d.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("nn::matmul (host): K = 0 gives beta * D; empty M or N writes nothing; caller workspace") {
  std::vector<float> a(1), b(1), d{1.0f, 2.0f, 3.0f, 4.0f};
  nn::matmul(host_executor{}, make_matrix(a.data(), 2, 0), make_matrix(b.data(), 0, 2),
             make_matrix(d.data(), 2, 2), {.alpha = 1.0f, .beta = 0.5f});
  CHECK(d == std::vector<float>{0.5f, 1.0f, 1.5f, 2.0f});
  operands const P(33, 40, 50, false, false, 9);
  host_executor const ex{2};
  std::vector<std::byte> ws(nn::workspace_bytes(ex, nn::matmul_shape{P.M, P.N, P.K}));
  check_case<float, float>(P, {}, [&](auto av, auto bv, auto dv, nn::matmul_options o) {
    nn::matmul(ex, av, bv, dv, o, std::span<std::byte>(ws));
  });
}

TEST_CASE("nn::matmul (host): bf16 in exactly workspace_bytes (the bytes after it untouched), both layouts") {
  // With CBLAS the bf16 operands (and a bf16 D) are widened to float inside the workspace: a workspace
  // bound that is too small writes past it, which the canary catches.
  host_executor const ex{2};
  for (int layout = 0; layout < 4; ++layout) {
    operands const P(300, 300, 40, (layout & 1) != 0, (layout & 2) != 0,
                     31 + static_cast<std::uint64_t>(layout));
    CAPTURE(layout);
    std::size_t const need = nn::workspace_bytes(ex, nn::matmul_shape{P.M, P.N, P.K});
    std::vector<std::byte> ws(need + 256, std::byte{0xA5});
    auto const run = [&](auto av, auto bv, auto dv, nn::matmul_options o) {
      nn::matmul(ex, av, bv, dv, o, std::span<std::byte>(ws.data(), need));
    };
    check_case<bfloat16_t, float>(P, {.alpha = 0.5f, .beta = 0.0f}, run);
    check_case<bfloat16_t, bfloat16_t>(P, {.alpha = 1.0f, .beta = -1.0f}, run);
    CHECK(std::all_of(ws.begin() + static_cast<std::ptrdiff_t>(need), ws.end(),
                      [](std::byte b) { return b == std::byte{0xA5}; }));
  }
}

TEST_CASE("nn::matmul: bad input is rejected before D is written") {
  std::vector<float> a(12, 1.0f), b(12, 1.0f), d(16, 7.0f);
  auto const A = make_matrix(a.data(), 3, 4);
  auto const B = make_matrix(b.data(), 4, 3);
  CHECK_THROWS_WITH_AS(
      nn::matmul(host_executor{}, A, make_matrix(b.data(), 3, 4), make_matrix(d.data(), 3, 4)),
      doctest::Contains("argument 'b': expected (K, N) with K = a.cols = 4"), fp8moe::error);
  CHECK_THROWS_WITH_AS(nn::matmul(host_executor{}, A, B, make_matrix(d.data(), 3, 4)),
                       doctest::Contains("argument 'd': expected 3x3"), fp8moe::error);
  CHECK_THROWS_WITH_AS(nn::matmul(host_executor{}, A, B, nn::transposed(make_matrix(d.data(), 3, 3))),
                       doctest::Contains("argument 'd': expected row-major"), fp8moe::error);
  CHECK_THROWS_WITH_AS(nn::matmul(host_executor{}, matrix_view<float>{a.data(), 2, 2, 4, 2},
                                  make_matrix(b.data(), 2, 2), make_matrix(d.data(), 2, 2)),
                       doctest::Contains("argument 'a': expected row-major (col_stride 1) or column-major"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(nn::matmul(host_executor{}, A, B, make_matrix(d.data(), 3, 3), {.alpha = NAN}),
                       doctest::Contains("argument 'options': expected finite alpha and beta"),
                       fp8moe::error);
  std::vector<std::byte> small(8);
  CHECK_THROWS_WITH_AS(
      nn::matmul(host_executor{}, A, B, make_matrix(d.data(), 3, 3), {}, std::span<std::byte>(small)),
      doctest::Contains("argument 'workspace'"), fp8moe::error);
  for (float v : d) CHECK(v == 7.0f);
}

TEST_CASE("nn::workspace_bytes(exec, matmul_shape): exactly that workspace runs, one byte less is refused") {
  std::int64_t const M = 33, N = 40, K = 50;
  std::vector<float> a(static_cast<std::size_t>(M * K)), b(static_cast<std::size_t>(K * N));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 7) - 3.0f;
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 5) - 2.0f;
  std::vector<float> d(static_cast<std::size_t>(M * N), 7.0f), ref(d.size(), 7.0f);
  host_executor const ex{2};
  std::vector<std::byte> ws(nn::workspace_bytes(ex, nn::matmul_shape{M, N, K}));
  REQUIRE(!ws.empty());
  auto const A = make_matrix(a.data(), M, K);
  auto const B = make_matrix(b.data(), K, N);
  nn::matmul(ex, A, B, make_matrix(d.data(), M, N), {}, std::span<std::byte>(ws));
  nn::matmul(ex, A, B, make_matrix(ref.data(), M, N));
  CHECK(d == ref);
  ws.pop_back();
  std::fill(d.begin(), d.end(), 7.0f);
  CHECK_THROWS_WITH_AS(nn::matmul(ex, A, B, make_matrix(d.data(), M, N), {}, std::span<std::byte>(ws)),
                       doctest::Contains("argument 'workspace'"), fp8moe::error);
  for (float v : d) REQUIRE(v == 7.0f);
}

namespace sgemm_cases {

using e4m3 = float8_e4m3_t;

/// x (R,C) normal values quantized with tiles t (q = x * (1/sf), sf = amax / 448).
scaling::quantized_matrix<e4m3> random_q(std::int64_t rows, std::int64_t cols, scaling::tile_shape t,
                                         std::uint64_t seed) {
  auto const x = test::random_normal(static_cast<std::size_t>(rows * cols), 1.0f, seed);
  return scaling::quantize(host_executor{}, make_matrix(x.data(), rows, cols),
                           scaling::tensor_recipe{.tile = t});
}

/// |got - exact| <= (K + 8) 2^-24 mag (FP32 accumulation in any order, the dequantized operands rounded
/// once each, C added once), mag = |c| + sum_k |a b| over [k0, k0+k); a bf16 D adds 2^-8 |exact|.
template <class TD>
bool close(TD got, scaling::quantized_matrix_view<e4m3 const> const& a, std::int64_t i,
           scaling::quantized_matrix_view<e4m3 const> const& b, std::int64_t j, std::int64_t k0,
           std::int64_t k, double c) {
  double const exact = gemm::reference::block_scaled_dot(a, i, b, j, k0, k, 128, c);
  double mag = std::abs(c);
  for (std::int64_t kk = k0; kk < k0 + k; ++kk)
    mag += std::abs(static_cast<double>(a.data(i, kk).to_float()) * a.scale_at(i, kk) *
                    b.data(j, kk).to_float() * b.scale_at(j, kk));
  double tol = (static_cast<double>(k) + 8) * std::ldexp(1.0, -24) * mag + 1e-30;
  if constexpr (std::is_same_v<TD, bfloat16_t>) tol += std::ldexp(1.0, -8) * std::abs(exact);
  double const g = static_cast<float>(got);
  if (std::abs(g - exact) <= tol) return true;
  FAIL_CHECK("(" << i << "," << j << "): got " << g << " want " << exact << " tol " << tol);
  return false;
}

/// Dense D (M,N) = [C +] A B^T through the host GEMM with options o and exactly gemm::workspace_bytes.
template <class TD>
void dense_case(host_executor const& ex, std::int64_t M, std::int64_t N, std::int64_t K, bool b_mn_major,
                bool with_c, gemm::gemm_options o) {
  CAPTURE(M);
  CAPTURE(N);
  CAPTURE(K);
  CAPTURE(b_mn_major);
  CAPTURE(with_c);
  auto const a = random_q(M, K, scaling::tile_1x128, 3);
  auto const bs =
      b_mn_major ? random_q(K, N, scaling::block_128x128, 4) : random_q(N, K, scaling::block_128x128, 4);
  auto const bv = b_mn_major ? gemm::transposed(bs.view()) : bs.view();
  auto const c = test::random_normal(static_cast<std::size_t>(M * N), 4.0f, 5);
  std::vector<TD> d(static_cast<std::size_t>(M * N));
  test::poison(d);
  std::vector<std::byte> ws(gemm::workspace_bytes(ex, o));
  gemm::fp8_gemm(
      ex,
      gemm::dense<e4m3, e4m3, TD>{a.view(), bv, make_matrix(d.data(), M, N),
                                  with_c ? make_matrix(c.data(), M, N) : matrix_view<float const>{}},
      o, std::span<std::byte>(ws));
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t j = 0; j < N; ++j)
      if (!close(d[static_cast<std::size_t>(i * N + j)], a.view(), i, bv, j, 0, K,
                 with_c ? c[static_cast<std::size_t>(i * N + j)] : 0.0))
        return;
}

}  // namespace sgemm_cases

TEST_CASE(
    "gemm host_accumulation::sgemm: dense, K-major and MN-major B, float and bf16 D, with C; panels cut "
    "to a one-thread workspace") {
  using namespace sgemm_cases;
  static_assert(gemm::host::has_sgemm == nn::host::has_blas);
  gemm::gemm_options const o{.promotion_k = 128, .host = gemm::host_accumulation::sgemm};
  for (bool mn : {false, true})
    for (bool with_c : {false, true}) {
      dense_case<float>(host_executor{2}, 70, 256, 384, mn, with_c, o);
      dense_case<bfloat16_t>(host_executor{2}, 70, 256, 384, mn, with_c, o);
    }
  // (64 + 768) x 640 floats exceed one thread's workspace (~172K floats): M, N and K panels
  dense_case<float>(host_executor{1}, 200, 768, 640, true, true, o);
  dense_case<bfloat16_t>(host_executor{1}, 200, 768, 640, false, false, o);
  dense_case<float>(host_executor{1}, 3, 16, 128, false, true, o);  // one tiny job
}

TEST_CASE("gemm host_accumulation::sgemm: grouped contiguous (padding rows) and K-grouped (C aliasing D)") {
  using namespace sgemm_cases;
  gemm::gemm_options const o{.promotion_k = 128, .host = gemm::host_accumulation::sgemm};
  host_executor const ex{2};
  std::int64_t const G = 3, N = 256, K = 256, M = 192;
  {  // rows 0..63 expert 2 (40 rows, 24 padding), 64..127 expert 0, 128..191 expert 1
    auto const a = random_q(M, K, scaling::tile_1x128, 7);
    auto const w = random_q(G * N, K, scaling::block_128x128, 8);
    gemm::quantized_batched_view<e4m3 const> const wv{
        {w.data.data(), G, N, K, N * K, K, 1},
        {w.scales.data(), G, N / 128, K / 128, (N / 128) * (K / 128), K / 128, 1},
        scaling::block_128x128};
    std::vector<int> ids(static_cast<std::size_t>(M));
    for (std::int64_t r = 0; r < M; ++r)
      ids[static_cast<std::size_t>(r)] = r < 40 ? 2 : r < 64 ? -1 : r < 128 ? 0 : 1;
    auto const c = test::random_normal(static_cast<std::size_t>(M * N), 2.0f, 9);
    std::vector<float> d(static_cast<std::size_t>(M * N));
    test::poison(d);
    std::vector<std::byte> ws(gemm::workspace_bytes(ex, o));
    gemm::grouped_gemm(
        ex,
        gemm::grouped_contiguous<e4m3, e4m3, float>{
            a.view(), wv, {ids.data(), M, 1}, make_matrix(d.data(), M, N), make_matrix(c.data(), M, N), 64},
        o, std::span<std::byte>(ws));
    bool ok = true;
    for (std::int64_t i = 0; i < M && ok; ++i) {
      int const e = ids[static_cast<std::size_t>(i)];
      for (std::int64_t j = 0; j < N && ok; ++j) {
        auto const at = static_cast<std::size_t>(i * N + j);
        if (e < 0)
          ok = d[at] == c[at];
        else
          ok = close(d[at], a.view(), i, wv[e], j, 0, K, c[at]);
      }
    }
    CHECK(ok);
  }
  {  // K-grouped Wgrad: D_g (M2,N2) += dY_g^T X_g over the group's tokens, C = D
    std::int64_t const M2 = 128, N2 = 200;
    std::vector<int> const tokens{128, 0, 384};
    auto const a = random_q(M2, 512, scaling::tile_1x128, 10);
    auto const b = random_q(N2, 512, scaling::tile_1x128, 11);
    auto const c0 = test::random_normal(static_cast<std::size_t>(G * M2 * N2), 1.0f, 12);
    auto d = c0;
    batched_matrix_view<float> const dv{d.data(), G, M2, N2, M2 * N2, N2, 1};
    std::vector<std::byte> ws(gemm::workspace_bytes(ex, o));
    gemm::grouped_gemm(ex, gemm::k_grouped<e4m3, e4m3>{a.view(), b.view(), {tokens.data(), G, 1}, dv, dv}, o,
                       std::span<std::byte>(ws));
    bool ok = true;
    std::int64_t k0 = 0;
    for (std::int64_t g = 0; g < G; ++g) {
      for (std::int64_t i = 0; i < M2 && ok; ++i)
        for (std::int64_t j = 0; j < N2 && ok; ++j)
          ok = close(dv(g, i, j), a.view(), i, b.view(), j, k0, tokens[static_cast<std::size_t>(g)],
                     c0[static_cast<std::size_t>((g * M2 + i) * N2 + j)]);
      k0 += tokens[static_cast<std::size_t>(g)];
    }
    CHECK(ok);
  }
}

#if FP8MOE_TEST_GPU
TEST_CASE("nn::matmul (CUDA, cuBLASLt): float and bf16 against float64, row/column-major operands") {
  if (cuda_device_count() == 0) return;
  cuda_executor const ex{nullptr};
  auto device_run = [&](auto a, auto b, auto d, nn::matmul_options o) {
    using TI = std::remove_const_t<std::remove_pointer_t<decltype(a.data)>>;
    using TD = std::remove_pointer_t<decltype(d.data)>;
    // the operands' storage extents: (rows*row_stride) covers both layouts of a contiguous matrix
    std::size_t const na = static_cast<std::size_t>(a.rows * a.cols),
                      nb = static_cast<std::size_t>(b.rows * b.cols);
    test::device_array<TI> da(a.data, na), db(b.data, nb);
    test::device_array<TD> dd(d.data, static_cast<std::size_t>(d.rows * d.cols));
    matrix_view<TI const> const av{da.p, a.rows, a.cols, a.row_stride, a.col_stride};
    matrix_view<TI const> const bv{db.p, b.rows, b.cols, b.row_stride, b.col_stride};
    nn::matmul(ex, av, bv, make_matrix(dd.p, d.rows, d.cols), o);
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    auto const h = dd.get();
    std::memcpy(d.data, h.data(), h.size() * sizeof(TD));
  };
  for (int layout = 0; layout < 4; ++layout) {
    operands const P(130, 96, 200, (layout & 1) != 0, (layout & 2) != 0, 21);
    check_case<float, float>(P, {.alpha = 1.0f, .beta = 0.5f}, device_run);
    check_case<bfloat16_t, float>(P, {}, device_run);
    check_case<bfloat16_t, bfloat16_t>(P, {.alpha = -1.0f, .beta = 1.0f}, device_run);
  }
}
#endif
