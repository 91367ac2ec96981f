// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::fp8_linear (forward, dgrad, wgrad), quantize_weight, swiglu / swiglu_backward and
// nn::swiglu_mlp (forward + backward) on the host; the _cuda variant compiles the same calls for
// cuda_executor and compares them with the host where a GPU is visible.
//
// Finite differences. fp8_linear is checked in a mode whose quantization is fixed: every operand
// holds multiples of 1/4 in [-2, 2] plus a +-7 on the diagonal of every 128-tile, so every 1x128,
// 128x1 and 128x128 tile has amax 7, every scale is a power of two (7/448 = 2^-6 for E4M3,
// 7/57344 = 2^-13 for E5M2) and quantization is lossless; with |products| <= 49 in steps of 2^-4
// and K <= 384 every FP32 sum is exact. Central differences of OUR forward with step 1/4 (which
// keeps the perturbed value on that grid) are then exact, and dgrad/wgrad must equal them.
// The SwiGLU MLP is nonlinear, so its FD runs on the float64 model over the dequantized weights
// (which validates the float64 backward), and our FP8 backward is compared with that backward
// within the quantization error (tolerance derived at the check).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "fp8moe/nn/nn.hpp"
#include "test_support.hpp"
#if FP8MOE_TEST_GPU
#include "device_memory.hpp"
#include "fp8moe/gemm/cuda/gemm.hpp"
#include "fp8moe/nn/cuda/dispatch.cuh"
#include "fp8moe/scaling/cuda/quantize.cuh"
#endif

using namespace fp8moe;

namespace {

/// An (R,C) matrix on the lossless grid: multiples of 1/4 in [-2, 2], +-7 where r % 128 == c % 128.
std::vector<float> grid_matrix(std::int64_t R, std::int64_t C, std::uint64_t seed) {
  std::mt19937_64 g{seed};
  std::uniform_int_distribution<int> q(-8, 8);
  std::vector<float> v(static_cast<std::size_t>(R * C));
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t c = 0; c < C; ++c)
      v[static_cast<std::size_t>(r * C + c)] = r % 128 == c % 128 ? (q(g) < 0 ? -7.0f : 7.0f) : 0.25f * q(g);
  return v;
}

/// Owning host weight: W (N,K) and W^T, built by quantize_weight.
template <class W>
struct host_weight {
  scaling::quantized_matrix<W> w, wt;
  host_weight(std::vector<float> const& master, std::int64_t N, std::int64_t K,
              scaling::tensor_recipe const& r)
      : w(N, K, r.tile), wt(K, N, r.tile) {
    nn::quantize_weight(host_executor{}, make_matrix(master.data(), N, K), w.view(), wt.view(), r);
  }
  nn::fp8_weight<W> view() const { return {w.view(), wt.view()}; }
};

double dot(std::vector<float> const& a, std::vector<float> const& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

template <class W>
void check_linear_fd(scaling::recipe const& r) {
  std::int64_t const M = 256, N = 128, K = 384;
  auto x = grid_matrix(M, K, 1), wm = grid_matrix(N, K, 2);
  auto const dy = grid_matrix(M, N, 3);
  host_executor const ex{2};
  std::vector<std::byte> ws(nn::workspace_bytes(ex, nn::linear_shape{M, N, K}, r));
  auto forward_loss = [&](std::vector<float> const& xv, std::vector<float> const& wv) {
    host_weight<W> const hw(wv, N, K, r.weight);
    std::vector<float> y(static_cast<std::size_t>(M * N));
    nn::fp8_linear(ex, make_matrix(xv.data(), M, K), hw.view(), make_matrix(y.data(), M, N), std::span(ws),
                   r);
    return dot(y, dy);  // L = sum(dY o Y): dL/dY = dY
  };
  host_weight<W> const hw(wm, N, K, r.weight);
  std::vector<float> dx(static_cast<std::size_t>(M * K)), dw(static_cast<std::size_t>(N * K));
  test::poison(dx);
  test::poison(dw);
  nn::fp8_linear_dgrad(ex, make_matrix(dy.data(), M, N), hw.view(), make_matrix(dx.data(), M, K),
                       std::span(ws), r);
  nn::fp8_linear_wgrad(ex, make_matrix(dy.data(), M, N), make_matrix(x.data(), M, K),
                       make_matrix(dw.data(), N, K), false, std::span(ws), r);
  float const h = 0.25f;
  int checked = 0;
  // central difference of the loss in element u of v (x or the weight master) against grad[u]
  auto fd = [&](std::vector<float>& v, std::vector<float> const& grad, std::int64_t stride) {
    for (std::size_t u = 0; u < v.size(); u += static_cast<std::size_t>(stride)) {
      if (std::abs(v[u]) > 1.75f) continue;  // the +-7 tile maxima stay fixed
      float const v0 = v[u];
      v[u] = v0 + h;
      double const lp = forward_loss(x, wm);
      v[u] = v0 - h;
      double const lm = forward_loss(x, wm);
      v[u] = v0;
      CHECK(grad[u] == doctest::Approx((lp - lm) / (2 * h)).epsilon(1e-12));
      ++checked;
    }
  };
  fd(x, dx, 977);
  fd(wm, dw, 1231);
  CHECK(checked > 50);
  // wgrad accumulates on request: dW += dY^T X
  auto const before = dw;
  nn::fp8_linear_wgrad(ex, make_matrix(dy.data(), M, N), make_matrix(x.data(), M, K),
                       make_matrix(dw.data(), N, K), true, std::span(ws), r);
  for (std::size_t i = 0; i < dw.size(); i += 101) CHECK(dw[i] == 2 * before[i]);
}

}  // namespace

TEST_CASE("fp8_linear: dgrad and wgrad equal central differences of the forward (lossless-grid mode)") {
  SUBCASE("deepseek_v3 (E4M3 everywhere)") {
    check_linear_fd<float8_e4m3_t>(scaling::deepseek_v3);
  }
  SUBCASE("E5M2 gradients") {
    scaling::recipe r = scaling::deepseek_v3;
    r.gradient.format = scaling::element_format::e5m2;
    check_linear_fd<float8_e4m3_t>(r);
  }
  SUBCASE("e5m2_weights (E5M2 weights, E4M3 activations)") {
    check_linear_fd<float8_e5m2_t>(scaling::e5m2_weights);
  }
}

TEST_CASE("fp8_linear: forward equals the dequantized float64 product; the recipe's formats are used") {
  std::int64_t const M = 70, N = 256, K = 208;  // partial tiles (K: 16-byte rows)
  auto const x = test::random_normal(static_cast<std::size_t>(M * K), 1.0f, 7);
  auto const wm = test::random_normal(static_cast<std::size_t>(N * K), 0.05f, 8);
  for (auto fmt : {scaling::element_format::e4m3, scaling::element_format::e5m2}) {
    scaling::recipe r = scaling::deepseek_v3;
    r.activation.format = fmt;
    host_weight<float8_e4m3_t> const hw(wm, N, K, r.weight);
    std::vector<float> y(static_cast<std::size_t>(M * N));
    test::poison(y);
    nn::fp8_linear(host_executor{}, make_matrix(x.data(), M, K), hw.view(), make_matrix(y.data(), M, N), r);
    // reference: dequantize X with the activation recipe (its format) and W, multiply in float64
    std::vector<float> xd(x.size()), wd(wm.size());
    nn::with_format(fmt, [&]<class A>(A) {
      auto const xq = scaling::quantize<A>(host_executor{}, make_matrix(x.data(), M, K), r.activation);
      scaling::dequantize(host_executor{}, xq.view(), make_matrix(xd.data(), M, K));
    });
    scaling::dequantize(host_executor{}, hw.w.view(), make_matrix(wd.data(), N, K));
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t n = 0; n < N; ++n) {
        double s = 0, a = 0;
        for (std::int64_t k = 0; k < K; ++k) {
          double const p = static_cast<double>(xd[static_cast<std::size_t>(m * K + k)]) *
                           wd[static_cast<std::size_t>(n * K + k)];
          s += p;
          a += std::abs(p);
        }
        // FP32 accumulation of K exact products (promotion every 128): |err| <= (K + 2) 2^-24 sum|p|
        double const tol = (K + 2) * std::ldexp(1.0, -24) * a;
        double const got = y[static_cast<std::size_t>(m * N + n)];
        if (!(std::abs(got - s) <= tol)) {
          FAIL_CHECK("y(" << m << "," << n << ") = " << got << " want " << s);
          return;
        }
      }
    CHECK(y[0] == y[0]);
  }
  // W^T of quantize_weight is the exact transpose
  host_weight<float8_e4m3_t> const hw(wm, N, K, scaling::deepseek_v3.weight);
  for (std::int64_t n = 0; n < N; n += 13)
    for (std::int64_t k = 0; k < K; k += 7) CHECK(hw.wt.data(k, n).bits() == hw.w.data(n, k).bits());
  CHECK(hw.wt.scales(1, 0) == hw.w.scales(0, 1));
}

TEST_CASE("fp8_linear: bad input is rejected before outputs are written") {
  std::int64_t const M = 4, N = 256, K = 128;
  auto const x = test::random_normal(static_cast<std::size_t>(M * K), 1.0f, 1);
  auto const wm = test::random_normal(static_cast<std::size_t>(N * K), 1.0f, 2);
  host_weight<float8_e4m3_t> const hw(wm, N, K, scaling::deepseek_v3.weight);
  std::vector<float> y(static_cast<std::size_t>(M * N), 3.0f);
  auto const X = make_matrix(x.data(), M, K);
  CHECK_THROWS_WITH_AS(nn::fp8_linear(host_executor{}, make_matrix(x.data(), M, K - 1), hw.view(),
                                      make_matrix(y.data(), M, N)),
                       doctest::Contains("argument 'x': expected (M, K) with K = w.cols = 128"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(nn::fp8_linear(host_executor{}, X, hw.view(), make_matrix(y.data(), M, N - 1)),
                       doctest::Contains("argument 'y': expected 4x256"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      nn::fp8_linear(host_executor{}, X, hw.view(), make_matrix(y.data(), M, N), scaling::e5m2_weights),
      doctest::Contains("argument 'w': expected float8_e5m2_t elements"), fp8moe::error);
  nn::fp8_weight<float8_e4m3_t> bad = hw.view();
  bad.wt = bad.w;
  CHECK_THROWS_WITH_AS(
      nn::fp8_linear_dgrad(host_executor{}, make_matrix(y.data(), M, N), bad, make_matrix(y.data(), M, K)),
      doctest::Contains("argument 'w.wt'"), fp8moe::error);
  std::vector<std::byte> small(16);
  CHECK_THROWS_WITH_AS(
      nn::fp8_linear(host_executor{}, X, hw.view(), make_matrix(y.data(), M, N), std::span(small)),
      doctest::Contains("argument 'workspace'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      nn::fp8_linear_wgrad(host_executor{}, make_matrix(y.data(), M, N), make_matrix(x.data(), M - 1, K),
                           make_matrix(y.data(), N, K), false),
      doctest::Contains("argument 'x': expected (M, K) with M = dy.rows = 4"), fp8moe::error);
  for (float v : y) CHECK(v == 3.0f);
}

namespace {

/// The float64 SwiGLU MLP over dequantized weights: y = W2 (silu(g) u), [g|u] = W13 x.
struct mlp64 {
  std::int64_t T, H, I;
  std::vector<double> w13, w2;  // (2I,H), (H,I)
  std::vector<double> forward(std::vector<double> const& x) const {
    std::vector<double> y(static_cast<std::size_t>(T * H), 0.0), act(static_cast<std::size_t>(I));
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t i = 0; i < I; ++i) {
        double g = 0, u = 0;
        for (std::int64_t h = 0; h < H; ++h) {
          g += w13[static_cast<std::size_t>(i * H + h)] * x[static_cast<std::size_t>(t * H + h)];
          u += w13[static_cast<std::size_t>((I + i) * H + h)] * x[static_cast<std::size_t>(t * H + h)];
        }
        act[static_cast<std::size_t>(i)] = g / (1 + std::exp(-g)) * u;
      }
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t i = 0; i < I; ++i)
          y[static_cast<std::size_t>(t * H + h)] +=
              w2[static_cast<std::size_t>(h * I + i)] * act[static_cast<std::size_t>(i)];
    }
    return y;
  }
  double loss(std::vector<double> const& x, std::vector<double> const& dy) const {
    auto const y = forward(x);
    double L = 0;
    for (std::size_t i = 0; i < y.size(); ++i) L += y[i] * dy[i];
    return L;
  }
  /// dL/dx (T,H) analytically.
  std::vector<double> dx(std::vector<double> const& x, std::vector<double> const& dy) const {
    std::vector<double> out(x.size(), 0.0);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t i = 0; i < I; ++i) {
        double g = 0, u = 0, da = 0;
        for (std::int64_t h = 0; h < H; ++h) {
          g += w13[static_cast<std::size_t>(i * H + h)] * x[static_cast<std::size_t>(t * H + h)];
          u += w13[static_cast<std::size_t>((I + i) * H + h)] * x[static_cast<std::size_t>(t * H + h)];
          da += w2[static_cast<std::size_t>(h * I + i)] * dy[static_cast<std::size_t>(t * H + h)];
        }
        double const s = 1 / (1 + std::exp(-g));
        double const dg = da * u * s * (1 + g * (1 - s)), du = da * g * s;
        for (std::int64_t h = 0; h < H; ++h)
          out[static_cast<std::size_t>(t * H + h)] += dg * w13[static_cast<std::size_t>(i * H + h)] +
                                                      du * w13[static_cast<std::size_t>((I + i) * H + h)];
      }
    return out;
  }
};

std::vector<double> widen(std::vector<float> const& v) {
  return {v.begin(), v.end()};
}

}  // namespace

TEST_CASE("swiglu_mlp: forward and backward against the float64 model; its FD validates the model") {
  std::int64_t const T = 128, H = 256, I = 128;
  auto const x = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 31);
  auto const w13m = test::random_normal(static_cast<std::size_t>(2 * I * H), 0.06f, 32);
  auto const w2m = test::random_normal(static_cast<std::size_t>(H * I), 0.08f, 33);
  auto const dy = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 34);
  auto const& r = scaling::deepseek_v3;
  host_weight<float8_e4m3_t> const w13(w13m, 2 * I, H, r.weight), w2(w2m, H, I, r.weight);
  nn::swiglu_mlp_weights<float8_e4m3_t> const w{w13.view(), w2.view()};
  host_executor const ex{2};
  std::vector<std::byte> ws(nn::workspace_bytes(ex, nn::mlp_shape{T, H, I}, r));
  std::vector<float> y(x.size()), dx(x.size()), dw13(w13m.size()), dw2(w2m.size());
  test::poison(y);
  test::poison(dx);
  auto const X = make_matrix(x.data(), T, H);
  auto const st = nn::swiglu_mlp(ex, X, w, make_matrix(y.data(), T, H), std::span(ws), r);
  nn::swiglu_mlp_backward(ex, X, st, w, make_matrix(dy.data(), T, H), make_matrix(dx.data(), T, H),
                          {make_matrix(dw13.data(), 2 * I, H), make_matrix(dw2.data(), H, I)}, false,
                          std::span(ws), r);
  // the float64 model over the dequantized weights
  std::vector<float> w13d(w13m.size()), w2d(w2m.size());
  scaling::dequantize(host_executor{}, w13.w.view(), make_matrix(w13d.data(), 2 * I, H));
  scaling::dequantize(host_executor{}, w2.w.view(), make_matrix(w2d.data(), H, I));
  mlp64 const m{T, H, I, widen(w13d), widen(w2d)};
  auto const x64 = widen(x), dy64 = widen(dy);
  auto const dx64 = m.dx(x64, dy64);
  // (1) central differences validate the float64 backward: O(h^2) truncation, h = 1e-3
  auto xp = x64;
  for (std::size_t i = 0; i < xp.size(); i += 2503) {
    double const v = xp[i], h = 1e-3;
    xp[i] = v + h;
    double const lp = m.loss(xp, dy64);
    xp[i] = v - h;
    double const lm = m.loss(xp, dy64);
    xp[i] = v;
    CHECK((lp - lm) / (2 * h) == doctest::Approx(dx64[i]).epsilon(1e-6).scale(1.0));
  }
  // (2) our FP8 dx against it. calc_diff = 1 - 2<a,b>/(|a|^2+|b|^2) ~ eps^2 / 2 for a relative RMS
  // error eps; each E4M3 quantization adds at most 2^-4 relative (RMS 2^-4/sqrt(3) = 0.036), and
  // dx passes through 4 (x, act, dy, dh13): eps <= 0.144, calc_diff <= 0.0104.
  double const diff = test::calc_diff(dx, dx64);
  CHECK(diff < 0.0104);
  CHECK(diff > 0.0);  // FP8 is not exact here: a bypassed quantizer would show as 0
  // the weight gradients equal fp8_linear_wgrad of the kept activations (bitwise: same calls)
  std::vector<float> dw2_ref(dw2.size());
  nn::fp8_linear_wgrad(ex, make_matrix(dy.data(), T, H), matrix_view<float const>(st.act),
                       make_matrix(dw2_ref.data(), H, I), false, r);
  CHECK(std::memcmp(dw2.data(), dw2_ref.data(), dw2.size() * 4) == 0);
  // forward: y against the float64 model; 2 quantizations (x, act): eps <= 0.072, calc_diff <= 0.0026
  double const ydiff = test::calc_diff(y, m.forward(x64));
  CHECK(ydiff < 0.0026);
  CHECK(ydiff > 0.0);
}

TEST_CASE("nn::workspace_bytes: exactly the query runs fp8_linear and swiglu_mlp, one byte less is refused") {
  auto const& r = scaling::deepseek_v3;
  host_executor const ex{2};
  std::int64_t const M = 64, N = 128, K = 256, I = 128;
  auto const x = grid_matrix(M, K, 11), wm = grid_matrix(N, K, 12);
  auto const w13m = grid_matrix(2 * I, K, 13), w2m = grid_matrix(K, I, 14);
  host_weight<float8_e4m3_t> const hw(wm, N, K, r.weight), w13(w13m, 2 * I, K, r.weight),
      w2(w2m, K, I, r.weight);
  auto const X = make_matrix(x.data(), M, K);
  // fp8_linear
  std::vector<std::byte> ws(nn::workspace_bytes(ex, nn::linear_shape{M, N, K}, r));
  std::vector<float> y(static_cast<std::size_t>(M * N), 3.0f);
  nn::fp8_linear(ex, X, hw.view(), make_matrix(y.data(), M, N), std::span(ws), r);
  CHECK(std::any_of(y.begin(), y.end(), [](float v) { return v != 3.0f; }));
  ws.pop_back();
  std::fill(y.begin(), y.end(), 3.0f);
  CHECK_THROWS_WITH_AS(nn::fp8_linear(ex, X, hw.view(), make_matrix(y.data(), M, N), std::span(ws), r),
                       doctest::Contains("argument 'workspace'"), fp8moe::error);
  for (float v : y) REQUIRE(v == 3.0f);
  // swiglu_mlp (forward + backward share one workspace)
  nn::swiglu_mlp_weights<float8_e4m3_t> const w{w13.view(), w2.view()};
  std::vector<std::byte> wsm(nn::workspace_bytes(ex, nn::mlp_shape{M, K, I}, r));
  std::vector<float> ym(static_cast<std::size_t>(M * K), 3.0f);
  (void)nn::swiglu_mlp(ex, X, w, make_matrix(ym.data(), M, K), std::span(wsm), r);
  CHECK(std::any_of(ym.begin(), ym.end(), [](float v) { return v != 3.0f; }));
  wsm.pop_back();
  std::fill(ym.begin(), ym.end(), 3.0f);
  CHECK_THROWS_WITH_AS((void)nn::swiglu_mlp(ex, X, w, make_matrix(ym.data(), M, K), std::span(wsm), r),
                       doctest::Contains("argument 'workspace'"), fp8moe::error);
  for (float v : ym) REQUIRE(v == 3.0f);
}

TEST_CASE("swiglu / swiglu_backward: the per-element math against float64 and finite differences") {
  std::int64_t const R = 3, I = 5;
  auto const h = test::random_normal(static_cast<std::size_t>(R * 2 * I), 2.0f, 41);
  auto const d = test::random_normal(static_cast<std::size_t>(R * I), 1.0f, 42);
  std::vector<float> act(static_cast<std::size_t>(R * I)), dh(h.size());
  nn::swiglu(host_executor{}, make_matrix(h.data(), R, 2 * I), make_matrix(act.data(), R, I));
  nn::swiglu_backward(host_executor{}, make_matrix(h.data(), R, 2 * I), make_matrix(d.data(), R, I),
                      make_matrix(dh.data(), R, 2 * I));
  auto f = [](double g, double u) { return g / (1 + std::exp(-g)) * u; };
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t i = 0; i < I; ++i) {
      double const g = h[static_cast<std::size_t>(r * 2 * I + i)],
                   u = h[static_cast<std::size_t>(r * 2 * I + I + i)];
      double const dd = d[static_cast<std::size_t>(r * I + i)], e = 1e-5;
      CHECK(act[static_cast<std::size_t>(r * I + i)] == doctest::Approx(f(g, u)).epsilon(1e-6));
      CHECK(dh[static_cast<std::size_t>(r * 2 * I + i)] ==
            doctest::Approx(dd * (f(g + e, u) - f(g - e, u)) / (2 * e)).epsilon(1e-4));
      CHECK(dh[static_cast<std::size_t>(r * 2 * I + I + i)] ==
            doctest::Approx(dd * (f(g, u + e) - f(g, u - e)) / (2 * e)).epsilon(1e-4));
    }
  CHECK_THROWS_WITH_AS(
      nn::swiglu(host_executor{}, make_matrix(h.data(), R, 2 * I), make_matrix(act.data(), R, I + 1)),
      doctest::Contains("argument 'h': expected 3x12"), fp8moe::error);
}

#if FP8MOE_TEST_GPU
namespace {
/// A device copy of a host quantized matrix (row-major data and scales).
template <class W>
struct device_quantized {
  test::device_array<W> data;
  test::device_array<float> scales;
  scaling::quantized_matrix_view<W> v;
  explicit device_quantized(scaling::quantized_matrix<W> const& h)
      : data(h.data.data(), h.data.storage().size()),
        scales(h.scales.data(), h.scales.storage().size()),
        v{make_matrix(data.p, h.data.rows(), h.data.cols()),
          make_matrix(scales.p, h.scales.rows(), h.scales.cols()), h.tile} {}
};
}  // namespace

TEST_CASE("fp8_linear and swiglu_mlp (CUDA): the same calls as the host, results close to it") {
  if (cuda_device_count() == 0) return;
  std::int64_t const T = 256, H = 256, I = 128;
  auto const& r = scaling::deepseek_v3;
  auto const x = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 61);
  auto const dy = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 62);
  auto const w13m = test::random_normal(static_cast<std::size_t>(2 * I * H), 0.06f, 63);
  auto const w2m = test::random_normal(static_cast<std::size_t>(H * I), 0.08f, 64);
  host_weight<float8_e4m3_t> const w13(w13m, 2 * I, H, r.weight), w2(w2m, H, I, r.weight);
  nn::swiglu_mlp_weights<float8_e4m3_t> const hw{w13.view(), w2.view()};
  std::vector<float> y(x.size()), dx(x.size()), dw13(w13m.size()), dw2(w2m.size());
  // the device: quantize_weight builds w and w^T there; one workspace for forward and backward
  cuda_executor const ex{nullptr};
  test::device_array<float> dw13m(w13m.data(), w13m.size()), dw2m(w2m.data(), w2m.size());
  scaling::quantized_matrix<float8_e4m3_t> shape13(2 * I, H, r.weight.tile),
      shape13t(H, 2 * I, r.weight.tile), shape2(H, I, r.weight.tile), shape2t(I, H, r.weight.tile);
  device_quantized<float8_e4m3_t> d13(shape13), d13t(shape13t), d2(shape2), d2t(shape2t);
  nn::quantize_weight(ex, matrix_view<float const>(make_matrix(dw13m.p, 2 * I, H)), d13.v, d13t.v, r.weight);
  nn::quantize_weight(ex, matrix_view<float const>(make_matrix(dw2m.p, H, I)), d2.v, d2t.v, r.weight);
  nn::swiglu_mlp_weights<float8_e4m3_t> const dw{{d13.v, d13t.v}, {d2.v, d2t.v}};
  test::device_array<std::byte> ws(nn::workspace_bytes(ex, nn::mlp_shape{T, H, I}, r));
  test::device_array<float> dxin(x.data(), x.size()), ddy(dy.data(), dy.size()), dy_out(x.size()),
      ddx(x.size()), dg13(w13m.size()), dg2(w2m.size());
  auto const X = matrix_view<float const>(make_matrix(dxin.p, T, H));
  auto const dst = nn::swiglu_mlp(ex, X, dw, make_matrix(dy_out.p, T, H), std::span(ws.p, ws.n), r);
  nn::swiglu_mlp_backward(ex, X, dst, dw, matrix_view<float const>(make_matrix(ddy.p, T, H)),
                          make_matrix(ddx.p, T, H), {make_matrix(dg13.p, 2 * I, H), make_matrix(dg2.p, H, I)},
                          false, std::span(ws.p, ws.n), r);
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  // the host run with the same calls
  std::vector<std::byte> hws(nn::workspace_bytes(host_executor{}, nn::mlp_shape{T, H, I}, r));
  auto const hst = nn::swiglu_mlp(host_executor{}, make_matrix(x.data(), T, H), hw,
                                  make_matrix(y.data(), T, H), std::span(hws), r);
  nn::swiglu_mlp_backward(host_executor{}, make_matrix(x.data(), T, H), hst, hw, make_matrix(dy.data(), T, H),
                          make_matrix(dx.data(), T, H),
                          {make_matrix(dw13.data(), 2 * I, H), make_matrix(dw2.data(), H, I)}, false,
                          std::span(hws), r);
  // same quantizers, different FP32 summation order: an element may round to the neighbouring FP8
  // value (rare), so calc_diff 1e-4 is loose (FP8 vs float64 is ~1e-3)
  CHECK(test::calc_diff(dy_out.get(), y) < 1e-4);
  CHECK(test::calc_diff(ddx.get(), dx) < 1e-4);
  CHECK(test::calc_diff(dg13.get(), dw13) < 1e-4);
  CHECK(test::calc_diff(dg2.get(), dw2) < 1e-4);
  // E5M2 on the device: refused before anything is written (its FP8 GEMM is E4M3 x E4M3)
  scaling::recipe r5 = r;
  r5.gradient.format = scaling::element_format::e5m2;
  CHECK_THROWS_WITH_AS(nn::fp8_linear_dgrad(ex, matrix_view<float const>(make_matrix(ddy.p, T, H)), dw.w2,
                                            make_matrix(ddx.p, T, I), r5),
                       doctest::Contains("E4M3 operands on this executor"), fp8moe::error);
}
#endif
