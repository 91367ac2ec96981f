// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// attention: the whole MLA layer (mla_forward / mla_backward) against a float64 layer written here
// (q low rank and plain wq, float and bf16 weights, YaRN rope), naive == absorbed, prefill ==
// prefill + one-token absorbed decode steps over an mla_cache, the backward against float64
// central finite differences of every input and weight, a custom projection, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "fp8moe/attention/mla.hpp"
#include "test_support.hpp"

using namespace fp8moe;
namespace at = fp8moe::attention;

namespace {

using test::worse;
using dvec = std::vector<double>;

// H 2, nope 4, rope 4, v 3, latent 6; hidden 8; q_lora 5 (or 0).
constexpr std::int64_t C = 8, H = 2, DN = 4, DR = 4, DV = 3, CL = 6;

nn::rope_config rope_cfg() {
  nn::rope_config r;
  r.dim = DR;
  r.factor = 4.0;  // YaRN active
  r.original_max_position_embeddings = 8;
  r.mscale_all_dim = 1.0;
  return r;
}

at::mla_dims layer_dims() {
  return {H, DN, DR, DV, CL, static_cast<float>(nn::yarn_softmax_scale(rope_cfg(), DN + DR))};
}

/// Float64 parameters of the layer (as the float weights hold them).
struct params {
  std::int64_t ql;
  dvec wq, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo;
};

/// y (R, N) = x (R, K) W^T, W (N, K).
dvec linear(dvec const& x, dvec const& w, std::int64_t R, std::int64_t N, std::int64_t K) {
  dvec y(static_cast<std::size_t>(R * N), 0.0);
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t k = 0; k < K; ++k) y[r * N + n] += x[r * K + k] * w[n * K + k];
  return y;
}

/// Rows of x (R, ld) columns [c0, c0+n) RMS-normalized and scaled by g (n), in place.
void rmsnorm(dvec& x, std::int64_t R, std::int64_t ld, std::int64_t c0, std::int64_t n, dvec const& g) {
  for (std::int64_t r = 0; r < R; ++r) {
    double ss = 0;
    for (std::int64_t i = 0; i < n; ++i) ss += x[r * ld + c0 + i] * x[r * ld + c0 + i];
    double const k = 1.0 / std::sqrt(ss / static_cast<double>(n) + 1e-6);
    for (std::int64_t i = 0; i < n; ++i) x[r * ld + c0 + i] *= k * g[i];
  }
}

/// Interleaved-pair rotation of the DR values at x[r*ld + c0 + ...] by positions[r] * inv_freq.
void rope(dvec& x, std::int64_t R, std::int64_t ld, std::int64_t c0, std::vector<std::int64_t> const& pos,
          std::vector<float> const& inv_freq, double attn) {
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t i = 0; i < DR / 2; ++i) {
      double const a =
          static_cast<double>(static_cast<float>(pos[r]) * inv_freq[i]);  // float angle, as model.py
      double& x0 = x[r * ld + c0 + 2 * i];
      double& x1 = x[r * ld + c0 + 2 * i + 1];
      double const u = x0, v = x1;
      x0 = attn * (u * std::cos(a) - v * std::sin(a));
      x1 = attn * (u * std::sin(a) + v * std::cos(a));
    }
}

/// The whole layer in float64: out (T, C) from x (T, C), causal over the T rows.
dvec ref_layer(params const& p, dvec const& x, std::vector<std::int64_t> const& pos, std::int64_t T) {
  auto const d = layer_dims();
  std::vector<float> inv(DR / 2);
  nn::rope_frequencies(rope_cfg(), inv);
  double const attn = nn::yarn_attention_factor(rope_cfg());
  std::int64_t const qc = H * (DN + DR), kvc = H * (DN + DV);
  dvec q;
  if (p.ql > 0) {
    auto cq = linear(x, p.wq_a, T, p.ql, C);  // (T, ql)
    rmsnorm(cq, T, p.ql, 0, p.ql, p.q_norm);
    q = linear(cq, p.wq_b, T, qc, p.ql);  // (T, qc)
  } else {
    q = linear(x, p.wq, T, qc, C);
  }
  for (std::int64_t h = 0; h < H; ++h) rope(q, T, qc, h * (DN + DR) + DN, pos, inv, attn);
  auto kva = linear(x, p.wkv_a, T, CL + DR, C);  // (T, c + dr)
  rmsnorm(kva, T, CL + DR, 0, CL, p.kv_norm);
  rope(kva, T, CL + DR, CL, pos, inv, attn);
  dvec lat(static_cast<std::size_t>(T * CL));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t i = 0; i < CL; ++i) lat[t * CL + i] = kva[t * (CL + DR) + i];
  auto const kv = linear(lat, p.wkv_b, T, kvc, CL);   // (T, kvc)
  dvec o(static_cast<std::size_t>(T * H * DV), 0.0);  // (T, H*dv)
  for (std::int64_t h = 0; h < H; ++h)
    for (std::int64_t t = 0; t < T; ++t) {
      dvec sc(static_cast<std::size_t>(t + 1));
      double mx = -1e300, z = 0;
      for (std::int64_t s = 0; s <= t; ++s) {
        double a = 0;
        for (std::int64_t i = 0; i < DN; ++i)
          a += q[t * qc + h * (DN + DR) + i] * kv[s * kvc + h * (DN + DV) + i];
        for (std::int64_t i = 0; i < DR; ++i)
          a += q[t * qc + h * (DN + DR) + DN + i] * kva[s * (CL + DR) + CL + i];
        mx = std::max(mx, sc[s] = a * d.softmax_scale);
      }
      for (auto& v : sc) z += (v = std::exp(v - mx));
      for (std::int64_t s = 0; s <= t; ++s)
        for (std::int64_t j = 0; j < DV; ++j)
          o[t * H * DV + h * DV + j] += sc[s] / z * kv[s * kvc + h * (DN + DV) + DN + j];
    }
  return linear(o, p.wo, T, C, H * DV);
}

/// Float weights (random, seeded) and their float64 twin.
struct layer {
  std::int64_t ql;
  std::vector<float> wq, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo;
  explicit layer(std::int64_t ql_, std::uint64_t seed = 1) : ql(ql_) {
    std::int64_t const qc = H * (DN + DR);
    if (ql > 0) {
      wq_a = test::random_normal(ql * C, 0.5f, seed);
      q_norm = test::random_uniform(ql, 0.5f, 1.5f, seed + 1);
      wq_b = test::random_normal(qc * ql, 0.5f, seed + 2);
    } else {
      wq = test::random_normal(qc * C, 0.5f, seed + 3);
    }
    wkv_a = test::random_normal((CL + DR) * C, 0.5f, seed + 4);
    kv_norm = test::random_uniform(CL, 0.5f, 1.5f, seed + 5);
    wkv_b = test::random_normal(H * (DN + DV) * CL, 0.5f, seed + 6);
    wo = test::random_normal(C * H * DV, 0.5f, seed + 7);
  }
  at::mla_weights<float> weights() const {
    at::mla_weights<float> w;
    std::int64_t const qc = H * (DN + DR);
    if (ql > 0) {
      w.wq_a = make_matrix(wq_a.data(), ql, C);
      w.q_norm = q_norm;
      w.wq_b = make_matrix(wq_b.data(), qc, ql);
    } else {
      w.wq = make_matrix(wq.data(), qc, C);
    }
    w.wkv_a = make_matrix(wkv_a.data(), CL + DR, C);
    w.kv_norm = kv_norm;
    w.wkv_b = make_matrix(wkv_b.data(), H * (DN + DV), CL);
    w.wo = make_matrix(wo.data(), C, H * DV);
    return w;
  }
  params to_double() const {
    auto d = [](std::vector<float> const& v) { return dvec(v.begin(), v.end()); };
    return {ql, d(wq), d(wq_a), d(q_norm), d(wq_b), d(wkv_a), d(kv_norm), d(wkv_b), d(wo)};
  }
};

struct rope_holder {
  std::vector<float> inv = std::vector<float>(DR / 2);
  rope_holder() { nn::rope_frequencies(rope_cfg(), inv); }
  nn::rope_table table() const { return {inv, static_cast<float>(nn::yarn_attention_factor(rope_cfg()))}; }
};

std::vector<std::int64_t> positions(std::int64_t T, std::int64_t p0 = 0) {
  std::vector<std::int64_t> p(static_cast<std::size_t>(T));
  std::iota(p.begin(), p.end(), p0);
  return p;
}

double max_abs(std::vector<float> const& v) {
  double m = 0;
  for (float x : v) m = worse(m, double(std::abs(x)));
  return m;
}

}  // namespace

TEST_CASE("mla_forward (naive and absorbed) matches a float64 layer (q low rank and plain wq)") {
  std::int64_t const T = 11;  // positions 0..10 run past original_max_position_embeddings 8
  rope_holder rh;
  auto const d = layer_dims();
  auto const x = test::random_normal(T * C, 1.0f, 50);
  auto const pos = positions(T);
  for (std::int64_t ql : {5, 0}) {
    CAPTURE(ql);
    layer L(ql, 60 + ql);
    auto const ref = ref_layer(L.to_double(), dvec(x.begin(), x.end()), pos, T);
    double rm = 0;
    for (double v : ref) rm = std::max(rm, std::abs(v));
    for (auto form : {at::mla_form::naive, at::mla_form::absorbed})
      for (int threads : {1, 2}) {
        CAPTURE(int(form));
        std::vector<float> out(T * C);
        test::poison(out);
        at::mla_forward(host_executor{threads}, d, L.weights(), rh.table(), pos, make_matrix(x.data(), T, C),
                        make_matrix(out.data(), T, C), form);
        double e = 0;
        for (std::size_t i = 0; i < out.size(); ++i) e = worse(e, std::abs(out[i] - ref[i]));
        // Tolerance: float projections of <= 12 terms, two float norms, float rope and the float core
        // of <= 11 keys, each a few ulps of O(1) values: 1e-5 of the largest output.
        CHECK(e <= 1e-5 * rm);
      }
  }
}

TEST_CASE("mla_forward: naive == absorbed for the whole layer to float32 rounding") {
  std::int64_t const T = 16;
  rope_holder rh;
  auto const d = layer_dims();
  layer L(5, 70);
  auto const x = test::random_normal(T * C, 1.0f, 71);
  auto const pos = positions(T);
  std::vector<float> a(T * C), b(T * C);
  at::mla_forward(host_executor{}, d, L.weights(), rh.table(), pos, make_matrix(x.data(), T, C),
                  make_matrix(a.data(), T, C), at::mla_form::naive);
  at::mla_forward(host_executor{}, d, L.weights(), rh.table(), pos, make_matrix(x.data(), T, C),
                  make_matrix(b.data(), T, C), at::mla_form::absorbed);
  // The two forms sum the same products in a different association ((q W_UK) . c vs q . (W_UK c),
  // sum_s p_s (W_UV c_s) vs W_UV sum_s p_s c_s): float rounding of O(1) sums of <= 16 terms, i.e.
  // a few 1e-7 relative; 2e-6 of the largest output bounds it.
  double e = 0;
  for (std::size_t i = 0; i < a.size(); ++i) e = worse(e, double(std::abs(a[i] - b[i])));
  CHECK(e <= 2e-6 * max_abs(a));
  CHECK(e > 0.0);  // different association: not the same code path by accident
}

TEST_CASE("mla_forward: prefill of T == prefill of T-k then k one-token absorbed decode steps") {
  std::int64_t const T = 12, k = 4;
  rope_holder rh;
  auto const d = layer_dims();
  layer L(5, 80);
  auto const w = L.weights();
  auto const x = test::random_normal(T * C, 1.0f, 81);
  auto const pos = positions(T);
  std::vector<float> full(T * C);
  at::mla_forward(host_executor{}, d, w, rh.table(), pos, make_matrix(x.data(), T, C),
                  make_matrix(full.data(), T, C), at::mla_form::naive);
  for (auto prefill_form : {at::mla_form::naive, at::mla_form::absorbed}) {
    CAPTURE(int(prefill_form));
    at::mla_cache cache(d, T);
    std::vector<float> inc(T * C);
    test::poison(inc);
    at::mla_forward(host_executor{}, d, w, rh.table(), std::span(pos).first(T - k),
                    make_matrix(x.data(), T - k, C), make_matrix(inc.data(), T - k, C), prefill_form, &cache);
    CHECK(cache.length() == T - k);
    for (std::int64_t t = T - k; t < T; ++t)
      at::mla_forward(host_executor{}, d, w, rh.table(), std::span(pos).subspan(t, 1),
                      make_matrix(x.data() + t * C, 1, C), make_matrix(inc.data() + t * C, 1, C),
                      at::mla_form::absorbed, &cache);
    CHECK(cache.length() == T);
    // Tolerance: the same float math per row up to the naive/absorbed association (see above).
    double e = 0;
    for (std::size_t i = 0; i < full.size(); ++i) e = worse(e, double(std::abs(full[i] - inc[i])));
    CHECK(e <= 2e-6 * max_abs(full));
  }
  // absorbed prefill of T at once over a cache == the same prefill in steps, bit for bit? Rows see
  // the same keys in the same order, and masked keys add exact zeros: require it within 1 ulp-ish.
  at::mla_cache c1(d, T), c2(d, T);
  std::vector<float> one(T * C), steps(T * C);
  at::mla_forward(host_executor{1}, d, w, rh.table(), pos, make_matrix(x.data(), T, C),
                  make_matrix(one.data(), T, C), at::mla_form::absorbed, &c1);
  for (std::int64_t t = 0; t < T; ++t)
    at::mla_forward(host_executor{1}, d, w, rh.table(), std::span(pos).subspan(t, 1),
                    make_matrix(x.data() + t * C, 1, C), make_matrix(steps.data() + t * C, 1, C),
                    at::mla_form::absorbed, &c2);
  double e = 0;
  for (std::size_t i = 0; i < one.size(); ++i) e = worse(e, double(std::abs(one[i] - steps[i])));
  CHECK(e <= 1e-6 * max_abs(one));
  CHECK(std::memcmp(c1.latent_storage().data(), c2.latent_storage().data(),
                    c1.latent_storage().size_bytes()) == 0);
}

TEST_CASE("mla_forward with bf16 weights matches the float64 layer on the bf16-rounded weights") {
  std::int64_t const T = 9;
  rope_holder rh;
  auto const d = layer_dims();
  layer L(5, 90);
  auto round_v = [](std::vector<float>& v) {
    for (auto& f : v) f = static_cast<float>(bfloat16_t(f));
  };
  for (auto* v : {&L.wq_a, &L.q_norm, &L.wq_b, &L.wkv_a, &L.kv_norm, &L.wkv_b, &L.wo}) round_v(*v);
  auto to_bf = [](std::vector<float> const& v) {
    std::vector<bfloat16_t> r;
    for (float f : v) r.push_back(bfloat16_t(f));
    return r;
  };
  auto const wq_a = to_bf(L.wq_a), q_norm = to_bf(L.q_norm), wq_b = to_bf(L.wq_b), wkv_a = to_bf(L.wkv_a),
             kv_norm = to_bf(L.kv_norm), wkv_b = to_bf(L.wkv_b), wo = to_bf(L.wo);
  at::mla_weights<bfloat16_t> w;
  w.wq_a = make_matrix(wq_a.data(), 5, C);
  w.q_norm = q_norm;
  w.wq_b = make_matrix(wq_b.data(), H * (DN + DR), 5);
  w.wkv_a = make_matrix(wkv_a.data(), CL + DR, C);
  w.kv_norm = kv_norm;
  w.wkv_b = make_matrix(wkv_b.data(), H * (DN + DV), CL);
  w.wo = make_matrix(wo.data(), C, H * DV);
  auto const x = test::random_normal(T * C, 1.0f, 91);
  auto const pos = positions(T);
  auto const ref = ref_layer(L.to_double(), dvec(x.begin(), x.end()), pos, T);
  for (auto form : {at::mla_form::naive, at::mla_form::absorbed}) {
    std::vector<float> out(T * C);
    test::poison(out);
    at::mla_forward(host_executor{}, d, w, rh.table(), pos, make_matrix(x.data(), T, C),
                    make_matrix(out.data(), T, C), form);
    // Each projection input is rounded to bf16 (2^-9 relative) and the errors pass through a few
    // layers: DeepGEMM's calc_diff of a bf16 product is ~1e-5; 1e-4 allows the composition.
    CHECK(test::calc_diff(out, ref) < 1e-4);
    CHECK(test::calc_diff(out, ref) > 0.0);
  }
}

TEST_CASE("mla_forward: a custom projection computes what the default does") {
  std::int64_t const T = 5;
  rope_holder rh;
  auto const d = layer_dims();
  layer L(5, 95);
  auto const w = L.weights();
  auto const x = test::random_normal(T * C, 1.0f, 96);
  auto const pos = positions(T);
  std::vector<float> a(T * C), b(T * C);
  at::mla_forward(host_executor{}, d, w, rh.table(), pos, make_matrix(x.data(), T, C),
                  make_matrix(a.data(), T, C));
  int calls = 0;
  at::mla_weights<float> norms_only;  // the layer reads only the norms (and wkv_b when absorbed)
  norms_only.q_norm = w.q_norm;
  norms_only.kv_norm = w.kv_norm;
  auto proj = [&](at::mla_proj p, matrix_view<float const> in, matrix_view<float> out) {
    ++calls;
    nn::matmul(host_executor{}, in, nn::transposed(w[p]), out);
  };
  at::mla_forward(host_executor{}, d, norms_only, rh.table(), pos, make_matrix(x.data(), T, C),
                  make_matrix(b.data(), T, C), at::mla_form::naive, nullptr, nullptr, {}, proj);
  CHECK(calls == 5);  // q_a, q_b, kv_a, kv_b, o
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE("mla_backward matches float64 central finite differences of every input and weight") {
  std::int64_t const T = 5;
  rope_holder rh;
  auto const d = layer_dims();
  auto const pos = positions(T, 3);
  for (std::int64_t ql : {5, 0}) {
    CAPTURE(ql);
    layer L(ql, 100 + ql);
    auto const w = L.weights();
    auto const x = test::random_normal(T * C, 1.0f, 110);
    auto const dout = test::random_normal(T * C, 1.0f, 111);
    std::vector<std::byte> storage(at::mla_saved_bytes(d, ql, T), std::byte{0xFF});
    auto const saved = at::mla_saved_views(storage, d, ql, T);
    std::vector<float> out(T * C);
    std::vector<std::byte> fws(
        at::workspace_bytes(host_executor{}, at::mla_layer_shape<float>{d, ql, C, T, T, at::mla_form::naive}),
        std::byte{0xFF});
    at::mla_forward(host_executor{}, d, w, rh.table(), pos, make_matrix(x.data(), T, C),
                    make_matrix(out.data(), T, C), at::mla_form::naive, nullptr, &saved, fws);
    // gradients accumulate: start them at 1.0 and subtract it afterwards
    std::vector<float> dx(T * C, 1.0f), dwq(L.wq.size(), 1.0f), dwq_a(L.wq_a.size(), 1.0f),
        dq_norm(L.q_norm.size(), 1.0f), dwq_b(L.wq_b.size(), 1.0f), dwkv_a(L.wkv_a.size(), 1.0f),
        dkv_norm(L.kv_norm.size(), 1.0f), dwkv_b(L.wkv_b.size(), 1.0f), dwo(L.wo.size(), 1.0f);
    at::mla_grads g;
    std::int64_t const qc = H * (DN + DR);
    if (ql > 0) {
      g.dwq_a = make_matrix(dwq_a.data(), ql, C);
      g.dq_norm = dq_norm;
      g.dwq_b = make_matrix(dwq_b.data(), qc, ql);
    } else {
      g.dwq = make_matrix(dwq.data(), qc, C);
    }
    g.dwkv_a = make_matrix(dwkv_a.data(), CL + DR, C);
    g.dkv_norm = dkv_norm;
    g.dwkv_b = make_matrix(dwkv_b.data(), H * (DN + DV), CL);
    g.dwo = make_matrix(dwo.data(), C, H * DV);
    // a caller workspace full of NaN: the backward must not read scratch it did not write
    std::vector<std::byte> ws(
        at::workspace_bytes(host_executor{}, at::mla_layer_backward_shape<float>{d, ql, C, T}),
        std::byte{0xFF});
    at::mla_backward(host_executor{}, d, w, rh.table(), pos, make_matrix(x.data(), T, C), saved,
                     make_matrix(dout.data(), T, C), make_matrix(dx.data(), T, C), g, ws);
    params p = L.to_double();
    dvec xd(x.begin(), x.end());
    auto loss = [&] {
      auto const o = ref_layer(p, xd, pos, T);
      double l = 0;
      for (std::size_t i = 0; i < o.size(); ++i) l += o[i] * dout[i];
      return l;
    };
    auto check = [&](dvec& v, std::vector<float> const& grad, char const* name) {
      CAPTURE(name);
      REQUIRE(v.size() == grad.size());
      double worst = 0, gmax = 0;
      for (std::size_t i = 0; i < v.size(); ++i) {
        double const v0 = v[i], eps = 1e-5;
        v[i] = v0 + eps;
        double const lp = loss();
        v[i] = v0 - eps;
        double const lm = loss();
        v[i] = v0;
        double const fd = (lp - lm) / (2 * eps);
        worst = worse(worst, std::abs(fd - (double(grad[i]) - 1.0)));
        gmax = std::max(gmax, std::abs(fd));
      }
      // Tolerance: the float backward (~1e-6 relative per product chain), the float forward state it
      // reads, and the difference quotient's O(eps^2) truncation and 1e-16/eps cancellation, plus
      // the 1.0 offset's float rounding (6e-8): 5e-5 of the largest gradient.
      CHECK(gmax > 1e-2);
      CHECK(worst <= 5e-5 * gmax);
    };
    check(xd, dx, "dx");
    if (ql > 0) {
      check(p.wq_a, dwq_a, "dwq_a");
      check(p.q_norm, dq_norm, "dq_norm");
      check(p.wq_b, dwq_b, "dwq_b");
    } else {
      check(p.wq, dwq, "dwq");
    }
    check(p.wkv_a, dwkv_a, "dwkv_a");
    check(p.kv_norm, dkv_norm, "dkv_norm");
    check(p.wkv_b, dwkv_b, "dwkv_b");
    check(p.wo, dwo, "dwo");
  }
}

TEST_CASE("mla_forward / mla_backward: bad input throws fp8moe::error naming the argument") {
  std::int64_t const T = 3;
  rope_holder rh;
  auto const d = layer_dims();
  layer L(5, 120);
  auto const w = L.weights();
  auto const x = test::random_normal(T * C, 1.0f, 121);
  auto const pos = positions(T);
  std::vector<float> out(T * C, 3.0f);
  auto const xv = make_matrix(x.data(), T, C);
  auto const ov = make_matrix(out.data(), T, C);
  host_executor ex;
  auto bad = w;
  bad.wq_b = make_matrix(L.wq_b.data(), H * (DN + DR) - 1, 5);
  CHECK_THROWS_WITH_AS(at::mla_forward(ex, d, bad, rh.table(), pos, xv, ov),
                       doctest::Contains("'weights.wq_b'"), fp8moe::error);
  bad = w;
  bad.kv_norm = std::span<float const>(L.kv_norm).first(CL - 1);
  CHECK_THROWS_WITH_AS(at::mla_forward(ex, d, bad, rh.table(), pos, xv, ov),
                       doctest::Contains("'weights.kv_norm'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(at::mla_forward(ex, d, w, rh.table(), std::span(pos).first(2), xv, ov),
                       doctest::Contains("'positions'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(at::mla_forward(ex, d, w, rh.table(), pos, xv, make_matrix(out.data(), T, C - 1)),
                       doctest::Contains("'out'"), fp8moe::error);
  at::mla_cache small(d, 4);
  at::mla_forward(ex, d, w, rh.table(), std::span(pos).first(2), make_matrix(x.data(), 2, C),
                  make_matrix(out.data(), 2, C), at::mla_form::absorbed, &small);
  std::fill(out.begin(), out.end(), 3.0f);
  CHECK_THROWS_WITH_AS(at::mla_forward(ex, d, w, rh.table(), pos, xv, ov, at::mla_form::absorbed, &small),
                       doctest::Contains("argument 'cache': expected room for T = 3 more tokens"),
                       fp8moe::error);
  CHECK(small.length() == 2);
  at::mla_cache other(4, CL + 1, DR);
  CHECK_THROWS_WITH_AS(at::mla_forward(ex, d, w, rh.table(), pos, xv, ov, at::mla_form::absorbed, &other),
                       doctest::Contains("'cache'"), fp8moe::error);
  std::vector<std::byte> storage(at::mla_saved_bytes(d, 5, T));
  auto const saved = at::mla_saved_views(storage, d, 5, T);
  CHECK_THROWS_WITH_AS(
      at::mla_forward(ex, d, w, rh.table(), pos, xv, ov, at::mla_form::absorbed, nullptr, &saved),
      doctest::Contains("'saved'"), fp8moe::error);
  auto const saved2 = at::mla_saved_views(storage, d, 5, T - 1);
  CHECK_THROWS_WITH_AS(
      at::mla_forward(ex, d, w, rh.table(), pos, xv, ov, at::mla_form::naive, nullptr, &saved2),
      doctest::Contains("'saved'"), fp8moe::error);
  for (float v : out) REQUIRE(v == 3.0f);  // nothing written
  std::vector<std::byte> tiny(8);
  CHECK_THROWS_WITH_AS(at::mla_saved_views(tiny, d, 5, T), doctest::Contains("'storage'"), fp8moe::error);
  std::vector<float> gbuf(256);
  at::mla_grads g;
  g.dwq_a = make_matrix(gbuf.data(), 5, C);
  g.dq_norm = std::span<float>(gbuf).first(5);
  g.dwq_b = make_matrix(gbuf.data(), H * (DN + DR), 5);
  g.dwkv_a = make_matrix(gbuf.data(), CL + DR, C);
  g.dkv_norm = std::span<float>(gbuf).first(CL);
  g.dwkv_b = make_matrix(gbuf.data(), H * (DN + DV), CL);
  g.dwo = make_matrix(gbuf.data(), C, H * DV - 1);
  std::vector<float> dx(T * C);
  CHECK_THROWS_WITH_AS(
      at::mla_backward(ex, d, w, rh.table(), pos, xv, saved, xv, make_matrix(dx.data(), T, C), g),
      doctest::Contains("'grads.dwo'"), fp8moe::error);
}

TEST_CASE(
    "attention::workspace_bytes: exactly the query runs mla_forward / mla_backward, one byte less is "
    "refused") {
  rope_holder rh;
  auto const d = layer_dims();
  host_executor const ex{2};
  auto const same = [](std::vector<float> const& a, std::vector<float> const& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  // several T: a query that carved another op's layout could still be large enough at one size
  for (auto const& tq : {std::pair<std::int64_t, std::int64_t>{4, 5}, {4, 0}, {5, 5}, {12, 0}}) {
    std::int64_t const T = tq.first, ql = tq.second;
    CAPTURE(T);
    CAPTURE(ql);
    auto const pos = positions(T);
    layer L(ql, 130 + ql);
    auto const w = L.weights();
    auto const x = test::random_normal(T * C, 1.0f, 131);
    auto const xv = make_matrix(x.data(), T, C);
    for (auto form : {at::mla_form::naive, at::mla_form::absorbed}) {
      CAPTURE(int(form));
      std::vector<float> ref(T * C), out(T * C, 3.0f);
      at::mla_forward(ex, d, w, rh.table(), pos, xv, make_matrix(ref.data(), T, C), form);
      std::vector<std::byte> ws(at::workspace_bytes(ex, at::mla_layer_shape<float>{d, ql, C, T, T, form}),
                                std::byte{0xFF});
      REQUIRE(ws.size() > 1);
      at::mla_forward(ex, d, w, rh.table(), pos, xv, make_matrix(out.data(), T, C), form, nullptr, nullptr,
                      ws);
      CHECK(same(out, ref));
      ws.pop_back();
      std::fill(out.begin(), out.end(), 3.0f);
      CHECK_THROWS_WITH_AS(at::mla_forward(ex, d, w, rh.table(), pos, xv, make_matrix(out.data(), T, C), form,
                                           nullptr, nullptr, ws),
                           doctest::Contains("argument 'workspace'"), fp8moe::error);
      for (float v : out) REQUIRE(v == 3.0f);
    }
    // the backward, from a saved naive forward; gradients accumulate onto 0
    std::vector<std::byte> storage(at::mla_saved_bytes(d, ql, T));
    auto const saved = at::mla_saved_views(storage, d, ql, T);
    std::vector<float> out(T * C);
    at::mla_forward(ex, d, w, rh.table(), pos, xv, make_matrix(out.data(), T, C), at::mla_form::naive,
                    nullptr, &saved);
    auto const dout = test::random_normal(T * C, 1.0f, 132);
    struct grads {
      std::vector<float> dx, dwq, dwq_a, dq_norm, dwq_b, dwkv_a, dkv_norm, dwkv_b, dwo;
      at::mla_grads g;
      grads(layer const& L, std::int64_t ql, std::int64_t T)
          : dx(T * C),
            dwq(L.wq.size()),
            dwq_a(L.wq_a.size()),
            dq_norm(L.q_norm.size()),
            dwq_b(L.wq_b.size()),
            dwkv_a(L.wkv_a.size()),
            dkv_norm(L.kv_norm.size()),
            dwkv_b(L.wkv_b.size()),
            dwo(L.wo.size()) {
        if (ql > 0) {
          g.dwq_a = make_matrix(dwq_a.data(), ql, C);
          g.dq_norm = dq_norm;
          g.dwq_b = make_matrix(dwq_b.data(), H * (DN + DR), ql);
        } else {
          g.dwq = make_matrix(dwq.data(), H * (DN + DR), C);
        }
        g.dwkv_a = make_matrix(dwkv_a.data(), CL + DR, C);
        g.dkv_norm = dkv_norm;
        g.dwkv_b = make_matrix(dwkv_b.data(), H * (DN + DV), CL);
        g.dwo = make_matrix(dwo.data(), C, H * DV);
      }
    };
    grads g0(L, ql, T), g1(L, ql, T);
    auto const run = [&](grads& g, std::span<std::byte> ws) {
      at::mla_backward(ex, d, w, rh.table(), pos, xv, saved, make_matrix(dout.data(), T, C),
                       make_matrix(g.dx.data(), T, C), g.g, ws);
    };
    run(g0, {});
    std::vector<std::byte> ws(at::workspace_bytes(ex, at::mla_layer_backward_shape<float>{d, ql, C, T}),
                              std::byte{0xFF});
    REQUIRE(ws.size() > 1);
    run(g1, ws);
    CHECK(same(g1.dx, g0.dx));
    CHECK(same(g1.dwkv_b, g0.dwkv_b));
    CHECK(same(g1.dwo, g0.dwo));
    ws.pop_back();
    grads g2(L, ql, T);
    CHECK_THROWS_WITH_AS(run(g2, ws), doctest::Contains("argument 'workspace'"), fp8moe::error);
    for (float v : g2.dx) REQUIRE(v == 0.0f);
  }
  CHECK_THROWS_WITH_AS(
      at::workspace_bytes(ex, at::mla_layer_shape<float>{d, -1, C, 4, 4, at::mla_form::naive}),
      doctest::Contains("argument 'shape.ql'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(at::workspace_bytes(ex, at::mla_layer_backward_shape<float>{d, 5, C, -3}),
                       doctest::Contains("argument 'shape.T'"), fp8moe::error);
}
