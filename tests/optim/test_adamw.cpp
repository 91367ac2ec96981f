// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::adamw_step against a float64 AdamW written here (PyTorch's torch.optim.AdamW formulas):
// one and several steps with float moments (tight, derived float bounds), BF16 moments (within the
// bf16 rounding of the stored moments), the per-tensor decay flag, bias correction at step 1,
// grad_scale, thread-count independence, bad input (fp8moe::error naming the argument, nothing
// written). The _cuda variant runs the same steps on the device and compares with the host.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fp8moe/optim/adamw.hpp"
#include "test_support.hpp"
#if FP8MOE_TEST_GPU
#include "device_memory.hpp"
#include "fp8moe/optim/cuda/adamw.cuh"
#endif

using namespace fp8moe;
using optim::adamw_config;
using optim::adamw_tensor;

namespace {

constexpr double u32 = 1.0 / (1 << 24);  // unit roundoff of float (2^-24)
constexpr double u16 = 1.0 / (1 << 8);   // unit roundoff of bfloat16 (2^-8, 8 significand bits)

template <class M>
double to_d(M x) {
  return static_cast<double>(x);
}

/// One tensor's state in float64, with the bound the float computation of the library must meet.
struct ref_tensor {
  std::vector<double> p, m, v;
  std::vector<double> tol_p, tol_m, tol_v;  // absolute bounds of |library - reference|
};

/// One float64 AdamW step (PyTorch torch.optim.AdamW, decoupled decay p *= 1 - lr wd first) from the
/// state r, updating r and its bounds. Bounds: each float operation of adamw_update rounds once
/// (relative u32); m = b1 m + (1-b1) g takes 3 roundings of terms of size a = b1|m| + (1-b1)|g| (plus
/// the roundings of 1-b1 and of g*scale); v likewise (5 roundings of b = b2 v + (1-b2) g^2); the
/// update u = m^ / (sqrt(v^) + eps) picks up the error of m over the denominator, half the relative
/// error of v, and 6 roundings; p = p (1 - lr wd) - lr/bc1 * m/(...) 4 more. Errors carry over to the
/// next step through beta1, beta2 and 1 - lr wd; check_against allows a factor 2 of slack on top.
void ref_step(ref_tensor& r, std::vector<float> const& g, adamw_config const& c, std::int64_t t, bool decay,
              double scale = 1.0) {
  double const b1 = c.beta1, b2 = c.beta2, lr = c.lr, eps = c.eps;
  double const wd = decay ? c.weight_decay : 0.0;
  double const bc1 = 1.0 - std::pow(b1, static_cast<double>(t)),
               bc2 = 1.0 - std::pow(b2, static_cast<double>(t));
  for (std::size_t i = 0; i < g.size(); ++i) {
    double const gi = static_cast<double>(g[i]) * scale;
    double const a = b1 * std::fabs(r.m[i]) + (1 - b1) * std::fabs(gi);
    double const m = b1 * r.m[i] + (1 - b1) * gi;
    double const v = b2 * r.v[i] + (1 - b2) * gi * gi;
    double const em = b1 * r.tol_m[i] + 5 * u32 * a;
    double const ev = b2 * r.tol_v[i] + 7 * u32 * v;
    double const den = std::sqrt(v / bc2) + eps;
    double const den_lo = std::sqrt(std::max(0.0, v - ev) / bc2) + eps;
    double const upd = (m / bc1) / den;
    double const e_upd =
        (em / bc1) / den_lo + std::fabs(m / bc1) * (1 / den_lo - 1 / den) + 8 * u32 * std::fabs(upd);
    double const p = r.p[i] * (1 - lr * wd) - lr * upd;
    r.tol_p[i] =
        r.tol_p[i] * (1 - lr * wd) + lr * e_upd + 6 * u32 * (std::fabs(r.p[i]) + lr * std::fabs(upd));
    r.tol_m[i] = em;
    r.tol_v[i] = ev;
    r.m[i] = m;
    r.v[i] = v;
    r.p[i] = p;
  }
}

/// A random state: p ~ N(0, 0.5), m ~ N(0, 0.01), v ~ U(1e-6, 1e-3) (or zero moments).
struct state {
  std::vector<float> p, g;
  std::vector<float> mf, vf;
  state(std::size_t n, std::uint64_t seed, bool zero_moments) {
    p = test::random_normal(n, 0.5f, seed);
    g = test::random_normal(n, 1.0f, seed + 1);
    mf = zero_moments ? std::vector<float>(n, 0.0f) : test::random_normal(n, 0.01f, seed + 2);
    vf = zero_moments ? std::vector<float>(n, 0.0f) : test::random_uniform(n, 1e-6f, 1e-3f, seed + 3);
  }
};

template <class M>
std::vector<M> cast(std::vector<float> const& x) {
  std::vector<M> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = static_cast<M>(x[i]);
  return r;
}

template <class M>
ref_tensor ref_from(std::vector<float> const& p, std::vector<M> const& m, std::vector<M> const& v) {
  ref_tensor r;
  for (std::size_t i = 0; i < p.size(); ++i) {
    r.p.push_back(p[i]);
    r.m.push_back(to_d(m[i]));
    r.v.push_back(to_d(v[i]));
  }
  r.tol_p.assign(p.size(), 0.0);
  r.tol_m.assign(p.size(), 0.0);
  r.tol_v.assign(p.size(), 0.0);
  return r;
}

/// |library - reference| within the float bound for p; for the moments the float bound plus, with
/// BF16 storage, the rounding of the store: half a bf16 ulp, u16 |x| (round to nearest even).
template <class M>
void check_against(ref_tensor const& r, std::vector<float> const& p, std::vector<M> const& m,
                   std::vector<M> const& v) {
  double const store = std::is_same_v<M, float> ? 0.0 : u16;
  int bad = 0;
  for (std::size_t i = 0; i < p.size() && bad < 5; ++i) {
    bool const ok_p = std::fabs(p[i] - r.p[i]) <= 2 * r.tol_p[i];
    bool const ok_m = std::fabs(to_d(m[i]) - r.m[i]) <= 2 * r.tol_m[i] + store * std::fabs(r.m[i]);
    bool const ok_v = std::fabs(to_d(v[i]) - r.v[i]) <= 2 * r.tol_v[i] + store * std::fabs(r.v[i]);
    if (!(ok_p && ok_m && ok_v)) {
      ++bad;
      INFO("element " << i << ": p " << p[i] << " vs " << r.p[i] << " (tol " << r.tol_p[i] << "), m "
                      << to_d(m[i]) << " vs " << r.m[i] << ", v " << to_d(v[i]) << " vs " << r.v[i]);
      CHECK(false);
    }
  }
  CHECK(bad == 0);
}

constexpr adamw_config cfg_test{
    .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};

template <class M>
void one_step_case(bool decay, float grad_scale) {
  state s(1037, 11, false);
  auto m = cast<M>(s.mf), v = cast<M>(s.vf);
  auto p = s.p;
  ref_tensor r = ref_from(p, m, v);  // the reference starts from the stored (possibly bf16) moments
  optim::adamw_step(host_executor{}, cfg_test, 7,
                    adamw_tensor<M>{.param = p, .grad = s.g, .m = m, .v = v, .decay = decay}, grad_scale);
  ref_step(r, s.g, cfg_test, 7, decay, grad_scale);
  check_against(r, p, m, v);
}

}  // namespace

TEST_CASE(
    "adamw_step: one step from a non-zero state equals the float64 reference (float and BF16 moments)") {
  SUBCASE("float moments") {
    one_step_case<float>(true, 1.0f);
  }
  SUBCASE("bf16 moments") {
    one_step_case<bfloat16_t>(true, 1.0f);
  }
  SUBCASE("float moments, no decay, grad_scale 0.25") {
    one_step_case<float>(false, 0.25f);
  }
  SUBCASE("bf16 moments, no decay, grad_scale 0.25") {
    one_step_case<bfloat16_t>(false, 0.25f);
  }
}

TEST_CASE(
    "adamw_step: twenty steps with float moments track the float64 reference within the derived bound") {
  std::size_t const n = 777;
  state s(n, 21, true);
  std::vector<float> p = s.p, m(n, 0.0f), v(n, 0.0f);
  ref_tensor r = ref_from(p, m, v);
  double max_tol = 0, max_err = 0;
  for (std::int64_t t = 1; t <= 20; ++t) {
    auto const g =
        test::random_normal(n, 1.0f + 0.1f * static_cast<float>(t), 100 + static_cast<std::uint64_t>(t));
    optim::adamw_step(host_executor{}, cfg_test, t, adamw_tensor<float>{p, g, m, v});
    ref_step(r, g, cfg_test, t, true);
    check_against(r, p, m, v);
  }
  for (std::size_t i = 0; i < n; ++i) {
    max_tol = std::max(max_tol, r.tol_p[i]);
    max_err = std::max(max_err, std::fabs(p[i] - r.p[i]));
  }
  MESSAGE("20 float-moment steps: max |p - p_ref| = " << max_err << ", max bound " << max_tol);
  // the bound is not vacuous: within 20 steps x 8 roundings of (|p| <= 2.5 + lr |u| with |u| <= 3)
  CHECK(max_tol < 20 * 8 * u32 * (2.5 + cfg_test.lr * 3));
}

TEST_CASE(
    "adamw_step: BF16 moments, every one of twenty steps within the bf16 store bound of the reference") {
  // Each step is checked against the float64 step from the library's own stored (bf16) state: the
  // stored moments within half a bf16 ulp (+ float bound) of the exact new moments, p as tight as float.
  std::size_t const n = 513;
  state s(n, 31, true);
  std::vector<float> p = s.p;
  std::vector<bfloat16_t> m(n, bfloat16_t(0.0f)), v(n, bfloat16_t(0.0f));
  std::vector<float> pf = s.p, mf(n, 0.0f), vf(n, 0.0f);  // the same run with float moments
  for (std::int64_t t = 1; t <= 20; ++t) {
    auto const g = test::random_normal(n, 1.0f, 200 + static_cast<std::uint64_t>(t));
    ref_tensor r = ref_from(p, m, v);
    optim::adamw_step(host_executor{}, cfg_test, t, adamw_tensor<bfloat16_t>{p, g, m, v});
    optim::adamw_step(host_executor{}, cfg_test, t, adamw_tensor<float>{pf, g, mf, vf});
    ref_step(r, g, cfg_test, t, true);
    check_against(r, p, m, v);
  }
  // Not a derived bound, a sanity check: the BF16 rounding is really there (the runs differ), and the
  // BF16 run stays close to the float run (within 5% of how far the weights moved at all).
  double worst = 0, moved = 0;
  for (std::size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(p[i]) - pf[i]));
    moved = std::max(moved, std::fabs(static_cast<double>(pf[i]) - s.p[i]));
  }
  MESSAGE("20 steps: max |p(bf16 moments) - p(float moments)| = " << worst << ", max |p - p0| = " << moved);
  CHECK(worst > 0.0);
  CHECK(worst < 0.05 * moved);
}

TEST_CASE("adamw_step: bias correction at step 1 gives p (1 - lr wd) - lr g / (|g| + eps)") {
  std::vector<float> p{0.5f, -1.0f, 2.0f, 0.0f, 3.0f}, g{1.0f, -3.0f, 1e-3f, 0.5f, 0.0f};
  std::vector<float> m(5, 0.0f), v(5, 0.0f);
  auto const p0 = p;
  optim::adamw_step(host_executor{}, cfg_test, 1, adamw_tensor<float>{p, g, m, v});
  for (std::size_t i = 0; i < p.size(); ++i) {
    // m^ = g, v^ = g^2 exactly after bias correction: the first step moves every weight by ~lr sign(g)
    double const expect = static_cast<double>(p0[i]) * (1.0 - 1e-2 * 0.1) -
                          1e-2 * static_cast<double>(g[i]) / (std::fabs(static_cast<double>(g[i])) + 1e-8);
    CHECK(std::fabs(p[i] - expect) <= 4e-7 * (std::fabs(expect) + 1e-2));
    CHECK(static_cast<double>(m[i]) == doctest::Approx(0.1 * g[i]).epsilon(1e-6));
    CHECK(static_cast<double>(v[i]) == doctest::Approx(0.05 * g[i] * g[i]).epsilon(1e-6));
  }
  CHECK(p[4] == static_cast<float>(3.0 * (1.0 - 1e-3)));  // g = 0: decay only
}

TEST_CASE("adamw_step: the decay flag is per tensor; a list updates every tensor as separate calls do") {
  state a(300, 41, false), b(129, 43, false);
  std::vector<float> pa = a.p, ma = a.mf, va = a.vf, pb = b.p, mb = b.mf, vb = b.vf;
  std::vector<float> pa2 = a.p, ma2 = a.mf, va2 = a.vf, pb2 = b.p, mb2 = b.mf, vb2 = b.vf;
  std::vector<adamw_tensor<float>> list{{pa, a.g, ma, va, true}, {pb, b.g, mb, vb, false}};
  optim::adamw_step(host_executor{}, cfg_test, 3, list);
  optim::adamw_step(host_executor{}, cfg_test, 3, adamw_tensor<float>{pa2, a.g, ma2, va2, true});
  optim::adamw_step(host_executor{}, cfg_test, 3, adamw_tensor<float>{pb2, b.g, mb2, vb2, false});
  CHECK(pa == pa2);
  CHECK(pb == pb2);
  CHECK(mb == mb2);
  // decay off equals decay on with weight_decay 0
  std::vector<float> pb3 = b.p, mb3 = b.mf, vb3 = b.vf;
  adamw_config no_wd = cfg_test;
  no_wd.weight_decay = 0.0f;
  optim::adamw_step(host_executor{}, no_wd, 3, adamw_tensor<float>{pb3, b.g, mb3, vb3, true});
  CHECK(pb == pb3);
  // and decay on really decays: with a zero gradient and zero moments p shrinks by exactly 1 - lr wd
  std::vector<float> p{1.0f, -2.0f}, z(2, 0.0f), m(2, 0.0f), v(2, 0.0f);
  optim::adamw_step(host_executor{}, cfg_test, 1, adamw_tensor<float>{p, z, m, v, true});
  CHECK(p[0] == static_cast<float>(1.0 - 1e-3));
  CHECK(p[1] == static_cast<float>(-2.0 * (1.0 - 1e-3)));
  p = {1.0f, -2.0f};
  optim::adamw_step(host_executor{}, cfg_test, 1, adamw_tensor<float>{p, z, m, v, false});
  CHECK(p == std::vector<float>{1.0f, -2.0f});
}

TEST_CASE("adamw_step: bit-identical for 1, 2 and 3 threads") {
  state s(40001, 51, false);
  auto run = [&](int threads) {
    std::vector<float> p = s.p;
    auto m = cast<bfloat16_t>(s.mf), v = cast<bfloat16_t>(s.vf);
    optim::adamw_step(host_executor{threads}, cfg_test, 5, adamw_tensor<bfloat16_t>{p, s.g, m, v});
    return p;
  };
  auto const p1 = run(1);
  CHECK(std::memcmp(p1.data(), run(2).data(), p1.size() * 4) == 0);
  CHECK(std::memcmp(p1.data(), run(3).data(), p1.size() * 4) == 0);
}

TEST_CASE("adamw_step: the host blocks equal optim::adamw_update element by element (bitwise)") {
  for (std::size_t n : {1u, 3u, 4u, 511u, 512u, 1029u}) {
    CAPTURE(n);
    state s(n, 71 + n, false);
    auto m = cast<bfloat16_t>(s.mf), v = cast<bfloat16_t>(s.vf), m2 = m, v2 = v;
    std::vector<float> p = s.p, p2 = s.p;
    optim::adamw_step(host_executor{}, cfg_test, 9, adamw_tensor<bfloat16_t>{p, s.g, m, v}, 0.75f);
    auto const c = optim::adamw_coefficients_for(cfg_test, 9, true, 0.75f);
    for (std::size_t i = 0; i < n; ++i) optim::adamw_update(c, p2[i], s.g[i], m2[i], v2[i]);
    CHECK(std::memcmp(p.data(), p2.data(), n * 4) == 0);
    CHECK(std::memcmp(m.data(), m2.data(), n * 2) == 0);
    CHECK(std::memcmp(v.data(), v2.data(), n * 2) == 0);
  }
}

TEST_CASE("adamw_step: bad input throws fp8moe::error naming the argument, nothing written") {
  std::vector<float> p(8, 1.0f), g(8, 0.5f), m(8, 0.0f), v(8, 0.0f), short_v(7, 0.0f);
  auto const p0 = p;
  adamw_tensor<float> const ok{p, g, m, v};
  auto bad_cfg = [&](adamw_config c, std::int64_t step, char const* what) {
    CHECK_THROWS_WITH_AS(optim::adamw_step(host_executor{}, c, step, ok), doctest::Contains(what),
                         fp8moe::error);
  };
  struct bad_field {
    void (*set)(adamw_config&);
    char const* what;
  };
  for (auto const& [set, what] :
       {bad_field{[](adamw_config& c) { c.lr = -1e-3f; }, "argument 'cfg.lr'"},
        bad_field{[](adamw_config& c) { c.lr = NAN; }, "argument 'cfg.lr'"},
        bad_field{[](adamw_config& c) { c.beta1 = 1.0f; },
                  "argument 'cfg.beta1': expected a value in [0, 1)"},
        bad_field{[](adamw_config& c) { c.beta2 = -0.1f; },
                  "argument 'cfg.beta2': expected a value in [0, 1)"},
        bad_field{[](adamw_config& c) { c.eps = 0.0f; }, "argument 'cfg.eps'"},
        bad_field{[](adamw_config& c) { c.weight_decay = -0.1f; }, "argument 'cfg.weight_decay'"}}) {
    adamw_config c = cfg_test;
    set(c);
    bad_cfg(c, 1, what);
  }
  bad_cfg(cfg_test, 0, "argument 'step': expected the 1-based step count (>= 1), got 0");
  CHECK_THROWS_WITH_AS(optim::adamw_step(host_executor{}, cfg_test, 1, ok, -1.0f),
                       doctest::Contains("argument 'grad_scale'"), fp8moe::error);
  std::vector<adamw_tensor<float>> list{ok, {p, g, m, short_v}};
  CHECK_THROWS_WITH_AS(
      optim::adamw_step(host_executor{}, cfg_test, 1, list),
      doctest::Contains("argument 'tensors[1]': expected param, grad, m and v of one size, got "
                        "param 8, grad 8, m 8, v 7"),
      fp8moe::error);
  CHECK_THROWS_WITH_AS(optim::adamw_step(host_executor{}, cfg_test, 1,
                                         adamw_tensor<float>{p, g, m, std::span<float>(m).subspan(4)}),
                       doctest::Contains("argument 'tensors[0]'"), fp8moe::error);  // sizes differ
  CHECK_THROWS_WITH_AS(
      optim::adamw_step(host_executor{}, cfg_test, 1, adamw_tensor<float>{p, g, m, m}),
      doctest::Contains("argument 'tensors[0]': expected param, grad, m and v not overlapping"),
      fp8moe::error);
  CHECK(p == p0);  // the list's first tensor was valid: still untouched (checks run before any write)
  CHECK(m == std::vector<float>(8, 0.0f));
}

#if FP8MOE_TEST_GPU
TEST_CASE("adamw_step (CUDA): float and BF16 moments match the host path") {
  if (cuda_device_count() == 0) return;
  auto device_case = [](auto tag) {
    using M = decltype(tag);
    state s(100003, 61, false);
    auto mh = cast<M>(s.mf), vh = cast<M>(s.vf);
    std::vector<float> ph = s.p;
    test::device_array<float> dp(s.p.data(), s.p.size()), dg(s.g.data(), s.g.size());
    test::device_array<M> dm(mh.data(), mh.size()), dv(vh.data(), vh.size());
    adamw_tensor<M> const dt{{dp.p, dp.n}, {dg.p, dg.n}, {dm.p, dm.n}, {dv.p, dv.n}};
    optim::adamw_step(cuda_executor{}, cfg_test, 4, dt, 0.5f);
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    optim::adamw_step(host_executor{}, cfg_test, 4, adamw_tensor<M>{ph, s.g, mh, vh}, 0.5f);
    auto const p = dp.get();
    auto const m = dm.get();
    // nvcc contracts multiply-adds into FMAs: a few float ulps of |p| + lr |update| apart, and the
    // stored moments at most one storage ulp apart
    for (std::size_t i = 0; i < p.size(); ++i) {
      REQUIRE(std::fabs(p[i] - ph[i]) <= 1e-6 * (std::fabs(ph[i]) + cfg_test.lr * 4));
      REQUIRE(std::fabs(to_d(m[i]) - to_d(mh[i])) <=
              (std::is_same_v<M, float> ? 1e-6 : 1.0 / 128) * std::fabs(to_d(mh[i])) + 1e-30);
    }
  };
  device_case(float{});
  device_case(bfloat16_t{});
}
#endif
