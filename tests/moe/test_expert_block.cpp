// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// moe/expert_block: the FP8 grouped SwiGLU block (+ shared expert) and its backward against a
// float64 dense reference (per token, per selected expert, dequantized weights); the reference
// backward itself is checked by central finite differences of the reference forward.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fp8moe/moe/expert_block.hpp"
#include "fp8moe/moe/gemm_layouts.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "test_support.hpp"
#if FP8MOE_CUDA_COMPILER
#include "device_memory.hpp"
#include "fp8moe/moe/cuda/expert_block.cuh"
#endif

// Everything in a namespace instead of `using namespace fp8moe`: with CUB in the same nvcc
// translation unit, a global using-directive makes `cuda::` (libcu++ vs fp8moe::cuda) ambiguous.
namespace fp8moe::test_moe_expert_block {
using fp8 = float8_e4m3_t;

namespace {

struct problem {
  std::int64_t T = 48, H = 256, I = 128, E = 4, k = 2, Is = 128;
  scaling::quantized_matrix<fp8> w13, w2, s13, s2;  // stacked (E*2I, H), (E*H, I); shared (2Is, H), (H, Is)
  std::vector<double> w13d, w2d, s13d, s2d;         // dequantized, double
  std::vector<float> x, weights;
  std::vector<std::int32_t> ids;

  explicit problem(std::uint64_t seed, std::int64_t tokens = 48) : T(tokens) {
    auto quant = [&](std::int64_t R, std::int64_t C, float sigma, std::uint64_t s,
                     scaling::quantized_matrix<fp8>& q, std::vector<double>& d) {
      auto const v = test::random_normal(static_cast<std::size_t>(R * C), sigma, s);
      q = scaling::quantize(host_executor{}, make_matrix(v.data(), R, C), scaling::deepseek_v3.weight);
      std::vector<float> f(v.size());
      scaling::dequantize(host_executor{}, q.view(), make_matrix(f.data(), R, C));
      d.assign(f.begin(), f.end());
    };
    quant(E * 2 * I, H, 1.0f / 16, seed + 1, w13, w13d);
    quant(E * H, I, 1.0f / 11, seed + 2, w2, w2d);
    quant(2 * Is, H, 1.0f / 16, seed + 3, s13, s13d);
    quant(H, Is, 1.0f / 11, seed + 4, s2, s2d);
    x = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, seed + 5);
    weights = test::random_uniform(static_cast<std::size_t>(T * k), 0.2f, 1.5f, seed + 6);
    std::mt19937_64 g{seed + 7};
    ids.resize(static_cast<std::size_t>(T * k));
    for (std::int64_t t = 0; t < T; ++t) {
      int const a = static_cast<int>(g() % E);
      int const b = static_cast<int>((a + 1 + g() % (E - 1)) % E);
      ids[t * k] = a;
      ids[t * k + 1] = (t % 7 == 3) ? -1 : b;  // some slots routed elsewhere (expert parallelism)
    }
  }
  moe::expert_weights<fp8> ew() const {
    auto batched = [](scaling::quantized_matrix<fp8> const& q, std::int64_t G, std::int64_t R,
                      std::int64_t C) {
      std::int64_t const sr = R / 128, sc = C / 128;
      return gemm::quantized_batched_view<fp8 const>{{q.data.data(), G, R, C, R * C, C, 1},
                                                     {q.scales.data(), G, sr, sc, sr * sc, sc, 1},
                                                     scaling::block_128x128};
    };
    return {batched(w13, E, 2 * I, H), batched(w2, E, H, I)};
  }
  moe::shared_expert_weights<fp8> sw() const { return {s13.view(), s2.view()}; }
};

// ---- float64 reference ----------------------------------------------------------------------
struct ref_grads {
  std::vector<double> out, dx, dw, dw13, dw2, ds13, ds2;
};

double silu(double g) {
  return g / (1.0 + std::exp(-g));
}

// One SwiGLU expert: y = W2 (silu(Wg x) * (Wu x)); with dy: accumulates dW13, dW2, dx.
void ref_expert(problem const& P, double const* w13, double const* w2, std::int64_t I, double const* x,
                double* y, double const* dy, double* dw13, double* dw2, double* dx) {
  std::int64_t const H = P.H;
  std::vector<double> g(2 * I), a(I);
  for (std::int64_t r = 0; r < 2 * I; ++r) {
    double s = 0;
    for (std::int64_t h = 0; h < H; ++h) s += w13[r * H + h] * x[h];
    g[r] = s;
  }
  for (std::int64_t i = 0; i < I; ++i) a[i] = silu(g[i]) * g[I + i];
  for (std::int64_t h = 0; h < H; ++h) {
    double s = 0;
    for (std::int64_t i = 0; i < I; ++i) s += w2[h * I + i] * a[i];
    y[h] = s;
  }
  if (!dy) return;
  std::vector<double> da(I, 0.0), dg(2 * I);
  for (std::int64_t h = 0; h < H; ++h)
    for (std::int64_t i = 0; i < I; ++i) {
      da[i] += w2[h * I + i] * dy[h];
      dw2[h * I + i] += dy[h] * a[i];
    }
  for (std::int64_t i = 0; i < I; ++i) {
    double const s = 1.0 / (1.0 + std::exp(-g[i]));
    dg[i] = da[i] * g[I + i] * s * (1 + g[i] * (1 - s));
    dg[I + i] = da[i] * silu(g[i]);
  }
  for (std::int64_t r = 0; r < 2 * I; ++r)
    for (std::int64_t h = 0; h < H; ++h) {
      dw13[r * H + h] += dg[r] * x[h];
      dx[h] += w13[r * H + h] * dg[r];
    }
}

/// Forward (and backward when dout is given) of the whole block in float64.
ref_grads reference(problem const& P, std::vector<double> const& x, std::vector<double> const& wts,
                    std::vector<double> const& w13, std::vector<double> const& w2,
                    std::vector<double> const& s13, std::vector<double> const& s2,
                    std::vector<float> const* dout) {
  std::int64_t const T = P.T, H = P.H, I = P.I, k = P.k;
  ref_grads r;
  r.out.assign(static_cast<std::size_t>(T * H), 0.0);
  if (dout) {
    r.dx.assign(static_cast<std::size_t>(T * H), 0.0);
    r.dw.assign(static_cast<std::size_t>(T * k), 0.0);
    r.dw13.assign(w13.size(), 0.0);
    r.dw2.assign(w2.size(), 0.0);
    r.ds13.assign(s13.size(), 0.0);
    r.ds2.assign(s2.size(), 0.0);
  }
  std::vector<double> y(H), dy(H);
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t j = 0; j < k; ++j) {
      int const e = P.ids[t * k + j];
      if (e < 0) continue;
      double const w = wts[t * k + j];
      double* dxt = dout ? &r.dx[t * H] : nullptr;
      if (dout)
        for (std::int64_t h = 0; h < H; ++h) dy[h] = w * (*dout)[t * H + h];
      ref_expert(P, &w13[e * 2 * I * H], &w2[e * H * I], I, &x[t * H], y.data(), dout ? dy.data() : nullptr,
                 dout ? &r.dw13[e * 2 * I * H] : nullptr, dout ? &r.dw2[e * H * I] : nullptr, dxt);
      for (std::int64_t h = 0; h < H; ++h) r.out[t * H + h] += w * y[h];
      if (dout)
        for (std::int64_t h = 0; h < H; ++h) r.dw[t * k + j] += (*dout)[t * H + h] * y[h];
    }
    std::vector<double> dys(H);
    if (dout)
      for (std::int64_t h = 0; h < H; ++h) dys[h] = (*dout)[t * H + h];
    ref_expert(P, s13.data(), s2.data(), P.Is, &x[t * H], y.data(), dout ? dys.data() : nullptr,
               dout ? r.ds13.data() : nullptr, dout ? r.ds2.data() : nullptr, dout ? &r.dx[t * H] : nullptr);
    for (std::int64_t h = 0; h < H; ++h) r.out[t * H + h] += y[h];
  }
  return r;
}

template <class A, class B>
double rel_l2(A const& got, B const& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    double const d = static_cast<double>(got[i]) - static_cast<double>(ref[i]);
    num += d * d;
    den += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
  }
  return std::sqrt(num / den);
}

}  // namespace

// Tolerances: E4M3 RNE has a relative rounding error uniform in +-2^-4 of the binade, rms about
// 2^-4/sqrt(3) = 0.036 at worst (0.027 averaged over the binade). The reference uses the dequantized
// weights, so only activations count. A result built from q independently quantized operands has a
// relative L2 error of about 0.036 sqrt(q): forward q = 2 (x, SwiGLU output) -> 0.051; backward
// q <= 4 (x or act, dY, dH13 and the re-quantized transposes) -> 0.072. FP32 accumulation adds < 1e-6.
TEST_CASE("expert_block: forward and backward against the float64 reference (with shared expert)") {
  problem const P(100);
  moe::expert_block_config const cfg{};
  moe::expert_block_state st;
  std::vector<float> out(static_cast<std::size_t>(P.T * P.H));
  test::poison(out);
  auto const ids = matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k));
  auto const wts = matrix_view<float const>(make_matrix(P.weights.data(), P.T, P.k));
  moe::expert_block(host_executor{}, cfg, make_matrix(P.x.data(), P.T, P.H), ids, wts, P.ew(), P.sw(),
                    make_matrix(out.data(), P.T, P.H), st);
  std::vector<double> const xd(P.x.begin(), P.x.end()), wd(P.weights.begin(), P.weights.end());
  auto const dout = test::random_normal(static_cast<std::size_t>(P.T * P.H), 1.0f, 200);
  auto const ref = reference(P, xd, wd, P.w13d, P.w2d, P.s13d, P.s2d, &dout);
  double const fwd_err = rel_l2(out, ref.out);
  MESSAGE("forward rel L2 error " << fwd_err);
  CHECK(fwd_err < 0.051);
  CHECK(fwd_err > 1e-4);  // FP8 activations really are in the path
  // bit-reproducible: a second run (other thread count) gives the same bits
  std::vector<float> out2(out.size());
  moe::expert_block_state st2;
  moe::expert_block(host_executor{.threads = 1}, cfg, make_matrix(P.x.data(), P.T, P.H), ids, wts, P.ew(),
                    P.sw(), make_matrix(out2.data(), P.T, P.H), st2);
  CHECK(std::memcmp(out.data(), out2.data(), out.size() * 4) == 0);
  // backward
  std::vector<float> dx(out.size()), dw(P.weights.size()), dw13(P.w13d.size()), dw2(P.w2d.size()),
      ds13(P.s13d.size()), ds2(P.s2d.size());
  for (auto* v : {&dx, &dw, &dw13, &dw2, &ds13, &ds2}) test::poison(*v);
  moe::expert_block_grads const g{{dw13.data(), P.E, 2 * P.I, P.H, 2 * P.I * P.H, P.H, 1},
                                  {dw2.data(), P.E, P.H, P.I, P.H * P.I, P.I, 1},
                                  make_matrix(ds13.data(), 2 * P.Is, P.H),
                                  make_matrix(ds2.data(), P.H, P.Is)};
  moe::expert_block_backward(host_executor{}, cfg, st, wts, P.ew(), P.sw(),
                             matrix_view<float const>(make_matrix(dout.data(), P.T, P.H)),
                             make_matrix(dx.data(), P.T, P.H), make_matrix(dw.data(), P.T, P.k), g);
  struct {
    char const* name;
    std::vector<float> const* got;
    std::vector<double> const* ref;
  } const checks[] = {{"dx", &dx, &ref.dx},    {"dweights", &dw, &ref.dw},      {"dw13", &dw13, &ref.dw13},
                      {"dw2", &dw2, &ref.dw2}, {"dshared13", &ds13, &ref.ds13}, {"dshared2", &ds2, &ref.ds2}};
  for (auto const& c : checks) {
    double const e = rel_l2(*c.got, *c.ref);
    MESSAGE(std::string(c.name) << " rel L2 error " << e);
    CHECK(e < 0.072);
  }
  for (std::int64_t i = 0; i < P.T * P.k; ++i)
    if (P.ids[i] < 0) CHECK(dw[i] == 0.0f);
}

TEST_CASE("expert_block: the float64 reference backward matches central finite differences") {
  problem const P(300);
  std::vector<double> x(P.x.begin(), P.x.end()), w(P.weights.begin(), P.weights.end());
  auto w13 = P.w13d, w2 = P.w2d, s13 = P.s13d, s2 = P.s2d;
  auto const dout = test::random_normal(static_cast<std::size_t>(P.T * P.H), 1.0f, 301);
  auto const r = reference(P, x, w, w13, w2, s13, s2, &dout);
  auto loss = [&]() {
    auto const f = reference(P, x, w, w13, w2, s13, s2, nullptr);
    double l = 0;
    for (std::size_t i = 0; i < f.out.size(); ++i) l += dout[i] * f.out[i];
    return l;
  };
  std::mt19937_64 gen{302};
  // h = 1e-4: truncation h^2 |f'''| ~ 1e-8 relative; double rounding of L (~1e3) ~ 1e-13 / h ~ 1e-9.
  auto fd_check = [&](std::vector<double>& v, std::vector<double> const& grad, char const* name) {
    for (int n = 0; n < 6; ++n) {
      std::size_t i = gen() % v.size();
      if (&v == &w && P.ids[i] < 0) i = 0;
      double const v0 = v[i], h = 1e-4;
      v[i] = v0 + h;
      double const lp = loss();
      v[i] = v0 - h;
      double const lm = loss();
      v[i] = v0;
      double const fd = (lp - lm) / (2 * h);
      INFO(name << "[" << i << "]");
      CHECK(std::abs(grad[i] - fd) <= 1e-6 * (1 + std::abs(fd)));
    }
  };
  fd_check(x, r.dx, "dx");
  fd_check(w, r.dw, "dweights");
  fd_check(w13, r.dw13, "dw13");
  fd_check(w2, r.dw2, "dw2");
  fd_check(s13, r.ds13, "ds13");
  fd_check(s2, r.ds2, "ds2");
}

TEST_CASE("expert_block: SwiGLU backward against finite differences; bad input") {
  for (float gv : {-3.0f, -0.5f, 0.0f, 0.7f, 4.0f})
    for (float u : {-1.25f, 0.5f, 2.0f}) {
      float dg, du;
      moe::swiglu_backward(gv, u, 1.0f, dg, du);
      double const h = 1e-3;
      auto f = [](double g, double uu) { return g / (1 + std::exp(-g)) * uu; };
      CHECK(std::abs(dg - (f(gv + h, u) - f(gv - h, u)) / (2 * h)) < 1e-5);
      CHECK(std::abs(du - (f(gv, u + h) - f(gv, u - h)) / (2 * h)) < 1e-5);
    }
  problem const P(400);
  moe::expert_block_state st;
  std::vector<float> out(static_cast<std::size_t>(P.T * P.H), 3.0f);
  auto bad_ids = P.ids;
  bad_ids[5] = static_cast<std::int32_t>(P.E);
  auto const wts = matrix_view<float const>(make_matrix(P.weights.data(), P.T, P.k));
  CHECK_THROWS_WITH_AS(
      moe::expert_block(host_executor{}, moe::expert_block_config{}, make_matrix(P.x.data(), P.T, P.H),
                        matrix_view<std::int32_t const>(make_matrix(bad_ids.data(), P.T, P.k)), wts, P.ew(),
                        P.sw(), make_matrix(out.data(), P.T, P.H), st),
      doctest::Contains("ids(2, 1) = 4"), fp8moe::error);
  CHECK_THROWS_WITH_AS(moe::expert_block(host_executor{}, moe::expert_block_config{.m_align = 64},
                                         make_matrix(P.x.data(), P.T, P.H),
                                         matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k)),
                                         wts, P.ew(), P.sw(), make_matrix(out.data(), P.T, P.H), st),
                       doctest::Contains("m_align"), fp8moe::error);
  auto ew = P.ew();
  ew.w2.data.rows = 128;
  CHECK_THROWS_WITH_AS(
      moe::expert_block(host_executor{}, moe::expert_block_config{}, make_matrix(P.x.data(), P.T, P.H),
                        matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k)), wts, ew, P.sw(),
                        make_matrix(out.data(), P.T, P.H), st),
      doctest::Contains("weights.w2"), fp8moe::error);
  for (float v : out) CHECK(v == 3.0f);
  // no shared expert: out = routed experts only (checked against the reference without shared)
  moe::expert_block(host_executor{}, moe::expert_block_config{}, make_matrix(P.x.data(), P.T, P.H),
                    matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k)), wts, P.ew(),
                    moe::shared_expert_weights<fp8>{}, make_matrix(out.data(), P.T, P.H), st);
  std::vector<double> const xd(P.x.begin(), P.x.end()), wd(P.weights.begin(), P.weights.end());
  std::vector<double> zero13(P.s13d.size(), 0.0), zero2(P.s2d.size(), 0.0);
  auto const ref = reference(P, xd, wd, P.w13d, P.w2d, zero13, zero2, nullptr);
  CHECK(rel_l2(out, ref.out) < 0.051);
}

TEST_CASE("expert_block: zero tokens (an idle rank) runs forward and backward, gradients zero") {
  problem const P(700);
  moe::expert_block_state st;
  std::vector<float> x, out, wts, dout, dx, dw;
  std::vector<std::int32_t> ids;
  moe::expert_block(host_executor{}, moe::expert_block_config{}, make_matrix(x.data(), 0, P.H),
                    matrix_view<std::int32_t const>(make_matrix(ids.data(), 0, P.k)),
                    matrix_view<float const>(make_matrix(wts.data(), 0, P.k)), P.ew(), P.sw(),
                    make_matrix(out.data(), 0, P.H), st);
  std::vector<float> g13(static_cast<std::size_t>(P.E * 2 * P.I * P.H), NAN),
      g2(static_cast<std::size_t>(P.E * P.H * P.I), NAN), gs13(static_cast<std::size_t>(2 * P.Is * P.H), NAN),
      gs2(static_cast<std::size_t>(P.H * P.Is), NAN);
  moe::expert_block_backward(host_executor{}, moe::expert_block_config{}, st,
                             matrix_view<float const>(make_matrix(wts.data(), 0, P.k)), P.ew(), P.sw(),
                             matrix_view<float const>(make_matrix(dout.data(), 0, P.H)),
                             make_matrix(dx.data(), 0, P.H), make_matrix(dw.data(), 0, P.k),
                             {{g13.data(), P.E, 2 * P.I, P.H, 2 * P.I * P.H, P.H, 1},
                              {g2.data(), P.E, P.H, P.I, P.H * P.I, P.I, 1},
                              make_matrix(gs13.data(), 2 * P.Is, P.H),
                              make_matrix(gs2.data(), P.H, P.Is)});
  for (auto const* v : {&g13, &g2, &gs13, &gs2})
    for (float g : *v) REQUIRE(g == 0.0f);
}

TEST_CASE("gemm layouts: contiguous and masked problems built from plans compute the same rows") {
  problem const P(600);
  auto const xq =
      scaling::quantize(host_executor{}, make_matrix(P.x.data(), P.T, P.H), scaling::deepseek_v3.activation);
  auto const ids = matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k));
  moe::host_permute_plan cp(moe::contiguous{.m_align = 128}, P.T, P.k, P.E),
      mp(moe::masked{.max_m = P.T}, P.T, P.k, P.E);
  moe::build_permute_plan(host_executor{}, ids, cp.view());
  moe::build_permute_plan(host_executor{}, ids, mp.view());
  scaling::quantized_matrix<fp8> ac(cp.view().rows, P.H, scaling::tile_1x128),
      am(mp.view().rows, P.H, scaling::tile_1x128);
  moe::permute(host_executor{}, cp.view(), xq.view(), ac.view());
  moe::permute(host_executor{}, mp.view(), xq.view(), am.view());
  host_matrix<float> dc(cp.view().rows, 2 * P.I), dm(mp.view().rows, 2 * P.I, -7.0f);
  gemm::grouped_gemm(host_executor{},
                     moe::contiguous_problem<fp8, fp8, float>(cp.view(), ac.view(), P.ew().w13, dc.view()));
  gemm::grouped_gemm(host_executor{},
                     moe::masked_problem<fp8, fp8, float>(mp.view(), am.view(), P.ew().w13, dm.view()));
  // same FP8 operands and the same 128-K promotion; only the FP32 order inside a block may differ
  for (std::int64_t i = 0; i < P.T * P.k; ++i) {
    auto const rc = cp.slot_row()[i], rm = mp.slot_row()[i];
    REQUIRE((rc >= 0) == (rm >= 0));
    if (rc < 0) continue;
    for (std::int64_t n = 0; n < 2 * P.I; ++n)
      REQUIRE(std::abs(dc(rc, n) - dm(rm, n)) <= 1e-5f * (1 + std::abs(dc(rc, n))));
  }
  // masked rows past the counts stay untouched; contiguous padding rows are 0
  for (std::int64_t e = 0; e < P.E; ++e) {
    CHECK(dm(e * P.T + mp.counts()[e], 0) == -7.0f);
    if (cp.counts()[e] % 128) CHECK(dc(cp.expert_offset()[e] + cp.counts()[e], 0) == 0.0f);
  }
  auto wrong_layout = [&] {
    return moe::contiguous_problem<fp8, fp8, float>(mp.view(), am.view(), P.ew().w13, dm.view());
  };
  CHECK_THROWS_AS(wrong_layout(), fp8moe::error);
}

#if FP8MOE_CUDA_COMPILER
namespace {
using fp8moe::test::to_device;
using fp8moe::test::to_host;
/// Device copy of a stacked (G*R, C) quantized matrix as a batched (G, R, C) view (128x128 blocks).
gemm::quantized_batched_view<fp8> upload_batched(scaling::quantized_matrix<fp8> const& q, std::int64_t G,
                                                 std::int64_t R, std::int64_t C, std::vector<void*>& owned) {
  auto* d = to_device(q.data.data(), q.data.storage().size());
  auto* s = to_device(q.scales.data(), q.scales.storage().size());
  owned.push_back(d);
  owned.push_back(s);
  return {{d, G, R, C, R * C, C, 1},
          {s, G, R / 128, C / 128, (R / 128) * (C / 128), C / 128, 1},
          scaling::block_128x128};
}
gemm::quantized_batched_view<fp8> alloc_batched(std::int64_t G, std::int64_t R, std::int64_t C,
                                                std::vector<void*>& owned) {
  fp8* d = nullptr;
  float* s = nullptr;
  FP8MOE_CUDA_CHECK(cudaMalloc(&d, static_cast<std::size_t>(G * R * C)));
  FP8MOE_CUDA_CHECK(cudaMalloc(&s, static_cast<std::size_t>(G * (R / 128) * (C / 128)) * 4));
  owned.push_back(d);
  owned.push_back(s);
  return {{d, G, R, C, R * C, C, 1},
          {s, G, R / 128, C / 128, (R / 128) * (C / 128), C / 128, 1},
          scaling::block_128x128};
}
scaling::quantized_matrix_view<fp8 const> single(gemm::quantized_batched_view<fp8> const& b) {
  return scaling::quantized_matrix_view<fp8 const>(b[0]);
}
}  // namespace

TEST_CASE("expert_block (CUDA): forward and backward match the host path") {
  if (cuda_device_count() == 0) return;
  problem const P(500, 256);  // T multiple of 128: the shared expert's device wgrad tiles tokens by 128
  cuda_executor ex{nullptr};
  std::vector<void*> owned;
  auto const w13 = upload_batched(P.w13, P.E, 2 * P.I, P.H, owned);
  auto const w2 = upload_batched(P.w2, P.E, P.H, P.I, owned);
  auto const s13 = upload_batched(P.s13, 1, 2 * P.Is, P.H, owned);
  auto const s2 = upload_batched(P.s2, 1, P.H, P.Is, owned);
  auto const w13t = alloc_batched(P.E, P.H, 2 * P.I, owned), w2t = alloc_batched(P.E, P.I, P.H, owned);
  auto const s13t = alloc_batched(1, P.H, 2 * P.Is, owned), s2t = alloc_batched(1, P.Is, P.H, owned);
  moe::transpose_expert_weights<fp8>(ex, w13, w13t);
  moe::transpose_expert_weights<fp8>(ex, w2, w2t);
  moe::transpose_expert_weights<fp8>(ex, s13, s13t);
  moe::transpose_expert_weights<fp8>(ex, s2, s2t);
  moe::expert_weights<fp8> const dw{w13, w2}, dwt{w13t, w2t};
  moe::shared_expert_weights<fp8> const dsw{single(s13), single(s2)}, dswt{single(s13t), single(s2t)};
  auto* dxin = to_device(P.x.data(), P.x.size());
  auto* dids = to_device(P.ids.data(), P.ids.size());
  auto* dwts = to_device(P.weights.data(), P.weights.size());
  auto const dout_h = test::random_normal(static_cast<std::size_t>(P.T * P.H), 1.0f, 501);
  auto* ddout = to_device(dout_h.data(), dout_h.size());
  float* dout_fwd = to_device(std::vector<float>(dout_h.size(), NAN));
  for (void* q : {(void*)dxin, (void*)dids, (void*)dwts, (void*)ddout, (void*)dout_fwd}) owned.push_back(q);
  moe::expert_block_config const cfg{};
  moe::cuda_expert_block_state st;
  auto const ids_v =
      matrix_view<std::int32_t const>(make_matrix(static_cast<std::int32_t const*>(dids), P.T, P.k));
  auto const w_v = matrix_view<float const>(make_matrix(static_cast<float const*>(dwts), P.T, P.k));
  moe::expert_block(ex, cfg, matrix_view<float const>(make_matrix(dxin, P.T, P.H)), ids_v, w_v, dw, dsw,
                    make_matrix(dout_fwd, P.T, P.H), st);
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  // host path on the same inputs
  moe::expert_block_state hs;
  std::vector<float> out_h(dout_h.size());
  auto const ids_h = matrix_view<std::int32_t const>(make_matrix(P.ids.data(), P.T, P.k));
  auto const w_h = matrix_view<float const>(make_matrix(P.weights.data(), P.T, P.k));
  moe::expert_block(host_executor{}, cfg, make_matrix(P.x.data(), P.T, P.H), ids_h, w_h, P.ew(), P.sw(),
                    make_matrix(out_h.data(), P.T, P.H), hs);
  // Same quantizers (bit-exact by contract) but a different FP32 summation order in the GEMMs: an
  // activation may round to the neighbouring FP8 value (1 in ~1e5), so 2e-3 relative L2 is loose.
  CHECK(rel_l2(to_host(dout_fwd, out_h.size()), out_h) < 2e-3);
  // backward
  std::vector<float> dx_h(out_h.size()), dwt_h(P.weights.size()), g13(P.w13d.size()), g2(P.w2d.size()),
      gs13(P.s13d.size()), gs2(P.s2d.size());
  moe::expert_block_backward(host_executor{}, cfg, hs, w_h, P.ew(), P.sw(),
                             matrix_view<float const>(make_matrix(dout_h.data(), P.T, P.H)),
                             make_matrix(dx_h.data(), P.T, P.H), make_matrix(dwt_h.data(), P.T, P.k),
                             {{g13.data(), P.E, 2 * P.I, P.H, 2 * P.I * P.H, P.H, 1},
                              {g2.data(), P.E, P.H, P.I, P.H * P.I, P.I, 1},
                              make_matrix(gs13.data(), 2 * P.Is, P.H),
                              make_matrix(gs2.data(), P.H, P.Is)});
  float *ddx, *ddw, *dg13, *dg2, *dgs13, *dgs2;
  for (auto [ptr, n] : {std::pair{&ddx, dx_h.size()},
                        {&ddw, dwt_h.size()},
                        {&dg13, g13.size()},
                        {&dg2, g2.size()},
                        {&dgs13, gs13.size()},
                        {&dgs2, gs2.size()}}) {
    FP8MOE_CUDA_CHECK(cudaMalloc(ptr, n * 4));
    FP8MOE_CUDA_CHECK(cudaMemset(*ptr, 0xFF, n * 4));
    owned.push_back(*ptr);
  }
  moe::expert_block_backward(ex, cfg, st, w_v, dwt, dswt,
                             matrix_view<float const>(make_matrix(ddout, P.T, P.H)),
                             make_matrix(ddx, P.T, P.H), make_matrix(ddw, P.T, P.k),
                             {{dg13, P.E, 2 * P.I, P.H, 2 * P.I * P.H, P.H, 1},
                              {dg2, P.E, P.H, P.I, P.H * P.I, P.I, 1},
                              make_matrix(dgs13, 2 * P.Is, P.H),
                              make_matrix(dgs2, P.H, P.Is)});
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(rel_l2(to_host(ddx, dx_h.size()), dx_h) < 5e-3);
  CHECK(rel_l2(to_host(ddw, dwt_h.size()), dwt_h) < 5e-3);
  CHECK(rel_l2(to_host(dg13, g13.size()), g13) < 5e-3);
  CHECK(rel_l2(to_host(dg2, g2.size()), g2) < 5e-3);
  CHECK(rel_l2(to_host(dgs13, gs13.size()), gs13) < 5e-3);
  CHECK(rel_l2(to_host(dgs2, gs2.size()), gs2) < 5e-3);
  for (void* q : owned) FP8MOE_CUDA_CHECK(cudaFree(q));
}
#endif

}  // namespace fp8moe::test_moe_expert_block
