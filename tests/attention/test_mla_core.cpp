// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// attention: mla_naive_forward and mla_absorbed_forward against a float64 reference written here
// (causal mask, q_pos0 > 0, H > 1, dr and dv != dn), mla_naive_backward against float64 central
// finite differences of the reference, mla_cache append/truncate bit-exactness, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fp8moe/attention/mla.hpp"
#include "test_support.hpp"

using namespace fp8moe;
namespace at = fp8moe::attention;

namespace {

using test::worse;
using dvec = std::vector<double>;

dvec to_double(std::vector<float> const& v) {
  return {v.begin(), v.end()};
}

/// out (T, H*dv) of the naive form in float64 from q (T, H*(dn+dr)), kv (S, H*(dn+dv)),
/// k_rope (S, dr): out[t, h*dv + j] = sum_{s <= q_pos0+t} softmax_s(scale * (q_h,t . [k_nope_h,s ;
/// k_rope_s])) v_h,s[j].
dvec ref_attention(at::mla_dims const& d, dvec const& q, dvec const& kv, dvec const& kr, std::int64_t T,
                   std::int64_t q_pos0) {
  std::int64_t const H = d.heads, dn = d.qk_nope_head_dim, dr = d.qk_rope_head_dim, dv = d.v_head_dim;
  std::int64_t const qc = H * (dn + dr), kc = H * (dn + dv);
  dvec out(static_cast<std::size_t>(T * H * dv), 0.0);
  for (std::int64_t h = 0; h < H; ++h)
    for (std::int64_t t = 0; t < T; ++t) {
      std::int64_t const n = q_pos0 + t + 1;  // keys 0..q_pos0+t
      dvec sc(static_cast<std::size_t>(n));
      double mx = -1e300;
      for (std::int64_t s = 0; s < n; ++s) {
        double a = 0;
        for (std::int64_t i = 0; i < dn; ++i)
          a += q[t * qc + h * (dn + dr) + i] * kv[s * kc + h * (dn + dv) + i];
        for (std::int64_t i = 0; i < dr; ++i) a += q[t * qc + h * (dn + dr) + dn + i] * kr[s * dr + i];
        sc[s] = a * d.softmax_scale;
        mx = std::max(mx, sc[s]);
      }
      double z = 0;
      for (auto& x : sc) z += (x = std::exp(x - mx));
      for (std::int64_t s = 0; s < n; ++s)
        for (std::int64_t j = 0; j < dv; ++j)
          out[t * H * dv + h * dv + j] += sc[s] / z * kv[s * kc + h * (dn + dv) + dn + j];
    }
  return out;
}

/// kv (S, H*(dn+dv)) = latent (S, c) wkv_b^T, wkv_b (H*(dn+dv), c), in float64.
dvec ref_expand(dvec const& latent, dvec const& wkv_b, std::int64_t S, std::int64_t rows, std::int64_t c) {
  dvec kv(static_cast<std::size_t>(S * rows), 0.0);
  for (std::int64_t s = 0; s < S; ++s)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t i = 0; i < c; ++i) kv[s * rows + r] += latent[s * c + i] * wkv_b[r * c + i];
  return kv;
}

/// max |a - b| / max |b|.
double rel_err(std::vector<float> const& a, dvec const& b) {
  double e = 0, m = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    e = worse(e, std::abs(double(a[i]) - b[i]));
    m = std::max(m, std::abs(b[i]));
  }
  return e / m;
}

// dn != dr != dv, H > 1: 3 heads, nope 8, rope 4, v 6, latent 10.
constexpr at::mla_dims dims{3, 8, 4, 6, 10, 0.30f};

struct inputs {
  std::int64_t T, S, q_pos0;
  std::vector<float> q, kv, kr, wkv_b, latent;
  inputs(std::int64_t T_, std::int64_t S_, std::int64_t q_pos0_, std::uint64_t seed)
      : T(T_), S(S_), q_pos0(q_pos0_) {
    q = test::random_normal(T * dims.q_cols(), 1.0f, seed);
    kv = test::random_normal(S * dims.kv_cols(), 1.0f, seed + 1);
    kr = test::random_normal(S * dims.qk_rope_head_dim, 1.0f, seed + 2);
    wkv_b = test::random_normal(dims.kv_cols() * dims.kv_lora_rank, 0.4f, seed + 3);
    latent = test::random_normal(S * dims.kv_lora_rank, 1.0f, seed + 4);
  }
  matrix_view<float const> qv() const { return make_matrix(q.data(), T, dims.q_cols()); }
  matrix_view<float const> kvv() const { return make_matrix(kv.data(), S, dims.kv_cols()); }
  matrix_view<float const> krv() const { return make_matrix(kr.data(), S, dims.qk_rope_head_dim); }
  matrix_view<float const> wv() const { return make_matrix(wkv_b.data(), dims.kv_cols(), dims.kv_lora_rank); }
  matrix_view<float const> lv() const { return make_matrix(latent.data(), S, dims.kv_lora_rank); }
};

}  // namespace

TEST_CASE("mla_naive_forward matches a float64 reference (prefill, decode with q_pos0 > 0, threads)") {
  // (T, S, q_pos0): full causal prefill; a chunk after a prefix; one decode token; a longer cache
  // than q_pos0 + T (its tail must not be read: it is poisoned); 200 x 200 scores per head, large
  // enough for the row softmax to run on 2 threads; 150 queries after 7 cached keys (causal blocks of
  // 128 query rows: the second block starts mid-sequence, the cache is longer than q_pos0 + T).
  struct cfg {
    std::int64_t T, S, q_pos0;
  };
  for (auto c :
       {cfg{7, 7, 0}, cfg{4, 9, 5}, cfg{1, 12, 11}, cfg{3, 10, 2}, cfg{200, 200, 0}, cfg{150, 160, 7}}) {
    CAPTURE(c.T);
    CAPTURE(c.q_pos0);
    inputs in(c.T, c.S, c.q_pos0, 100 + c.T);
    for (std::int64_t s = c.q_pos0 + c.T; s < c.S; ++s) {  // keys past q_pos0 + T: NaN, never read
      std::memset(in.kv.data() + s * dims.kv_cols(), 0xFF, dims.kv_cols() * sizeof(float));
      std::memset(in.kr.data() + s * dims.qk_rope_head_dim, 0xFF, dims.qk_rope_head_dim * sizeof(float));
    }
    auto const ref = ref_attention(dims, to_double(in.q), to_double(in.kv), to_double(in.kr), c.T, c.q_pos0);
    for (int threads : {1, 2}) {
      std::vector<float> out(c.T * dims.out_cols()), probs(dims.heads * c.T * c.S);
      test::poison(out);
      test::poison(probs);
      at::mla_naive_forward(host_executor{threads}, dims, in.qv(), in.kvv(), in.krv(), c.q_pos0,
                            make_matrix(out.data(), c.T, dims.out_cols()),
                            make_matrix(probs.data(), dims.heads * c.T, c.S));
      // Tolerance: float dot products of 12 terms of O(1) values, a float softmax and a float convex
      // combination of <= 200 rows (relative error ~ n * 2^-24 at worst, far less in practice):
      // 2e-6 of the largest output.
      CHECK(rel_err(out, ref) < 2e-6);
      for (std::int64_t h = 0; h < dims.heads; ++h)
        for (std::int64_t t = 0; t < c.T; ++t) {
          double sum = 0;
          for (std::int64_t s = 0; s < c.S; ++s) {
            float const p = probs[(h * c.T + t) * c.S + s];
            if (s > c.q_pos0 + t) REQUIRE(p == 0.0f);  // causal: later keys get exactly 0
            sum += p;
          }
          REQUIRE(sum == doctest::Approx(1.0).epsilon(1e-6));
        }
      // without probs (scratch from an allocated or a caller workspace) the output is the same
      std::vector<float> out2(out.size());
      test::poison(out2);
      std::vector<std::byte> ws(
          at::workspace_bytes(host_executor{threads}, at::mla_naive_shape{dims, c.T, c.S}));
      at::mla_naive_forward(host_executor{threads}, dims, in.qv(), in.kvv(), in.krv(), c.q_pos0,
                            make_matrix(out2.data(), c.T, dims.out_cols()), {}, std::span<std::byte>(ws));
      CHECK(std::memcmp(out.data(), out2.data(), out.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("mla_absorbed_forward matches a float64 reference of the naive form on kv = latent wkv_b^T") {
  struct cfg {
    std::int64_t T, S, q_pos0;
  };
  for (auto c : {cfg{6, 6, 0}, cfg{1, 9, 8}, cfg{3, 11, 4}, cfg{128, 128, 0}}) {
    CAPTURE(c.T);
    CAPTURE(c.q_pos0);
    inputs in(c.T, c.S, c.q_pos0, 200 + c.T);
    auto const kv =
        ref_expand(to_double(in.latent), to_double(in.wkv_b), c.S, dims.kv_cols(), dims.kv_lora_rank);
    auto const ref = ref_attention(dims, to_double(in.q), kv, to_double(in.kr), c.T, c.q_pos0);
    for (int threads : {1, 2}) {
      std::vector<float> out(c.T * dims.out_cols());
      test::poison(out);
      at::mla_absorbed_forward(host_executor{threads}, dims, in.qv(), in.wv(), in.lv(), in.krv(), c.q_pos0,
                               make_matrix(out.data(), c.T, dims.out_cols()));
      // Tolerance: as the naive form, with one more float product of c = 10 terms on each side.
      CHECK(rel_err(out, ref) < 3e-6);
    }
  }
}

TEST_CASE("mla_naive_backward matches float64 central finite differences of every input") {
  // L = sum(dout * out); d/dx by (L(x+e) - L(x-e)) / 2e on the float64 reference.
  std::int64_t const T = 3, S = 5, q_pos0 = 2;
  inputs in(T, S, q_pos0, 300);
  auto const dout = test::random_normal(T * dims.out_cols(), 1.0f, 399);
  std::vector<float> out(T * dims.out_cols()), probs(dims.heads * T * S);
  at::mla_naive_forward(host_executor{}, dims, in.qv(), in.kvv(), in.krv(), q_pos0,
                        make_matrix(out.data(), T, dims.out_cols()),
                        make_matrix(probs.data(), dims.heads * T, S));
  std::vector<float> dq(in.q.size()), dkv(in.kv.size()), dkr(in.kr.size());
  test::poison(dq);
  test::poison(dkv);
  test::poison(dkr);
  at::mla_naive_backward(host_executor{}, dims, in.qv(), in.kvv(), in.krv(), q_pos0,
                         make_matrix(probs.data(), dims.heads * T, S),
                         make_matrix(dout.data(), T, dims.out_cols()),
                         make_matrix(dq.data(), T, dims.q_cols()), make_matrix(dkv.data(), S, dims.kv_cols()),
                         make_matrix(dkr.data(), S, dims.qk_rope_head_dim));
  dvec q = to_double(in.q), kv = to_double(in.kv), kr = to_double(in.kr);
  auto loss = [&] {
    auto const o = ref_attention(dims, q, kv, kr, T, q_pos0);
    double l = 0;
    for (std::size_t i = 0; i < o.size(); ++i) l += o[i] * dout[i];
    return l;
  };
  auto check = [&](dvec& x, std::vector<float> const& g, char const* name) {
    CAPTURE(name);
    double const eps = 1e-5;
    double worst = 0, gmax = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      double const x0 = x[i];
      x[i] = x0 + eps;
      double const lp = loss();
      x[i] = x0 - eps;
      double const lm = loss();
      x[i] = x0;
      double const fd = (lp - lm) / (2 * eps);
      worst = worse(worst, std::abs(fd - g[i]));
      gmax = std::max(gmax, std::abs(fd));
    }
    // Tolerance: float products and softmax (~1e-6 relative) plus the O(eps^2) = 1e-10 truncation
    // and 1e-16/1e-5 cancellation of the difference quotient: 1e-5 of the largest gradient.
    CHECK(gmax > 0.1);  // the gradient is not trivially zero
    CHECK(worst <= 1e-5 * gmax);
  };
  check(q, dq, "dq");
  check(kv, dkv, "dkv");
  check(kr, dkr, "dk_rope");
}

TEST_CASE("mla_naive_backward zeroes the gradient of keys past q_pos0 + T") {
  std::int64_t const T = 2, S = 6, q_pos0 = 1;
  inputs in(T, S, q_pos0, 400);
  std::vector<float> out(T * dims.out_cols()), probs(dims.heads * T * S);
  at::mla_naive_forward(host_executor{}, dims, in.qv(), in.kvv(), in.krv(), q_pos0,
                        make_matrix(out.data(), T, dims.out_cols()),
                        make_matrix(probs.data(), dims.heads * T, S));
  std::vector<float> dq(in.q.size()), dkv(in.kv.size()), dkr(in.kr.size());
  test::poison(dkv);
  test::poison(dkr);
  at::mla_naive_backward(host_executor{}, dims, in.qv(), in.kvv(), in.krv(), q_pos0,
                         make_matrix(probs.data(), dims.heads * T, S),
                         make_matrix(out.data(), T, dims.out_cols()),
                         make_matrix(dq.data(), T, dims.q_cols()), make_matrix(dkv.data(), S, dims.kv_cols()),
                         make_matrix(dkr.data(), S, dims.qk_rope_head_dim));
  for (std::int64_t s = q_pos0 + T; s < S; ++s) {
    for (std::int64_t i = 0; i < dims.kv_cols(); ++i) REQUIRE(dkv[s * dims.kv_cols() + i] == 0.0f);
    for (std::int64_t i = 0; i < dims.qk_rope_head_dim; ++i)
      REQUIRE(dkr[s * dims.qk_rope_head_dim + i] == 0.0f);
  }
  CHECK(dkr[0] != 0.0f);
}

TEST_CASE("mla_cache: append, truncate, and bit-identity with never having appended") {
  at::mla_cache a(dims, 8), b(dims, 8);
  CHECK(a.values_per_token() == dims.kv_lora_rank + dims.qk_rope_head_dim);
  CHECK(a.bytes_per_token() == (10 + 4) * sizeof(float));
  auto lat = test::random_normal(8 * 10, 1.0f, 501), kr = test::random_normal(8 * 4, 1.0f, 502);
  a.append(make_matrix(lat.data(), 3, 10), make_matrix(kr.data(), 3, 4));
  b.append(make_matrix(lat.data(), 3, 10), make_matrix(kr.data(), 3, 4));
  // a drafts 4 more tokens and rolls back to 3; b never did
  a.append(make_matrix(lat.data() + 30, 4, 10), make_matrix(kr.data() + 12, 4, 4));
  CHECK(a.length() == 7);
  CHECK(a.latent()(5, 2) == lat[(3 + 2) * 10 + 2]);
  CHECK(a.k_rope()(6, 3) == kr[6 * 4 + 3]);
  a.truncate(3);
  CHECK(a.length() == 3);
  auto bits_equal = [](std::span<float const> x, std::span<float const> y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
  CHECK(bits_equal(a.latent_storage(), b.latent_storage()));
  CHECK(bits_equal(a.k_rope_storage(), b.k_rope_storage()));
  // both continue identically
  a.append(make_matrix(lat.data() + 70, 1, 10), make_matrix(kr.data() + 28, 1, 4));
  b.append(make_matrix(lat.data() + 70, 1, 10), make_matrix(kr.data() + 28, 1, 4));
  CHECK(bits_equal(a.latent_storage(), b.latent_storage()));
  CHECK(bits_equal(a.k_rope_storage(), b.k_rope_storage()));
  CHECK(a.latent()(3, 0) == lat[70]);
  a.clear();
  CHECK(a.length() == 0);
  // V3: 512 + 64 = 576 values per token against 128 * (192 + 128) = 40,960 naive
  constexpr at::mla_dims v3{128, 128, 64, 128, 512, 0.135234f};
  CHECK(at::mla_cache(v3, 1).values_per_token() == 576);
  CHECK(v3.naive_cache_values_per_token() == 40960);
}

TEST_CASE("mla_cache: bad input throws naming the argument and leaves the cache unchanged") {
  at::mla_cache c(dims, 4);
  auto lat = test::random_normal(5 * 10, 1.0f, 601), kr = test::random_normal(5 * 4, 1.0f, 602);
  c.append(make_matrix(lat.data(), 2, 10), make_matrix(kr.data(), 2, 4));
  CHECK_THROWS_WITH_AS(c.append(make_matrix(lat.data(), 3, 10), make_matrix(kr.data(), 3, 4)),
                       doctest::Contains("'latent': expected at most capacity - length = 2 rows"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(c.append(make_matrix(lat.data(), 1, 9), make_matrix(kr.data(), 1, 4)),
                       doctest::Contains("'latent'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(c.append(make_matrix(lat.data(), 1, 10), make_matrix(kr.data(), 2, 4)),
                       doctest::Contains("'k_rope'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(c.truncate(3), doctest::Contains("'n'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(at::mla_cache(-1, 4, 4), doctest::Contains("'capacity'"), fp8moe::error);
  CHECK(c.length() == 2);
}

TEST_CASE("MLA core: bad input throws fp8moe::error naming the argument before writing") {
  std::int64_t const T = 2, S = 4;
  inputs in(T, S, 0, 700);
  std::vector<float> out(T * dims.out_cols(), 7.0f), probs(dims.heads * T * S);
  auto const ov = make_matrix(out.data(), T, dims.out_cols());
  host_executor ex;
  auto naive = [&](at::mla_dims d, matrix_view<float const> q, matrix_view<float const> kv,
                   matrix_view<float const> kr, std::int64_t p0, matrix_view<float> o,
                   matrix_view<float> pr = {}) { at::mla_naive_forward(ex, d, q, kv, kr, p0, o, pr); };
  CHECK_THROWS_WITH_AS(naive(dims, in.qv(), in.kvv(), in.krv(), 3, ov),
                       doctest::Contains("argument 'q_pos0': expected q_pos0 + T <= S"), fp8moe::error);
  CHECK_THROWS_WITH_AS(naive(dims, in.qv(), in.kvv(), in.krv(), -1, ov), doctest::Contains("'q_pos0'"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(naive(dims, make_matrix(in.q.data(), T, dims.q_cols() - 1), in.kvv(), in.krv(), 0, ov),
                       doctest::Contains("argument 'q'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      naive(dims, in.qv(), make_matrix(in.kv.data(), S, dims.kv_cols() - 2), in.krv(), 0, ov),
      doctest::Contains("argument 'kv'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(naive(dims, in.qv(), in.kvv(), make_matrix(in.kr.data(), S, 3), 0, ov),
                       doctest::Contains("argument 'k_rope'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(naive(dims, in.qv(), in.kvv(), in.krv(), 0, make_matrix(out.data(), T, 5)),
                       doctest::Contains("argument 'out'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(naive(dims, in.qv(), in.kvv(), in.krv(), 0, ov, make_matrix(probs.data(), T, S)),
                       doctest::Contains("argument 'probs'"), fp8moe::error);
  auto bad = dims;
  bad.softmax_scale = std::nanf("");
  CHECK_THROWS_WITH_AS(naive(bad, in.qv(), in.kvv(), in.krv(), 0, ov),
                       doctest::Contains("'dims.softmax_scale'"), fp8moe::error);
  bad = dims;
  bad.heads = 0;
  CHECK_THROWS_WITH_AS(naive(bad, in.qv(), in.kvv(), in.krv(), 0, ov), doctest::Contains("'dims.heads'"),
                       fp8moe::error);
  std::vector<std::byte> small(16);
  CHECK_THROWS_WITH_AS(
      at::mla_naive_forward(ex, dims, in.qv(), in.kvv(), in.krv(), 0, ov, {}, std::span<std::byte>(small)),
      doctest::Contains("'workspace'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(at::mla_absorbed_forward(ex, dims, in.qv(), make_matrix(in.wkv_b.data(), 5, 10),
                                                in.lv(), in.krv(), 0, ov),
                       doctest::Contains("argument 'wkv_b'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(at::mla_absorbed_forward(ex, dims, in.qv(), in.wv(),
                                                make_matrix(in.latent.data(), S, 9), in.krv(), 0, ov),
                       doctest::Contains("argument 'latent'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(at::mla_absorbed_forward(ex, dims, in.qv(), in.wv(), in.lv(), in.krv(), S, ov),
                       doctest::Contains("'q_pos0'"), fp8moe::error);
  std::vector<float> g(64 * 64);
  CHECK_THROWS_WITH_AS(
      at::mla_naive_backward(ex, dims, in.qv(), in.kvv(), in.krv(), 0, make_matrix(probs.data(), T, S),
                             make_matrix(out.data(), T, dims.out_cols()),
                             make_matrix(g.data(), T, dims.q_cols()),
                             make_matrix(g.data(), S, dims.kv_cols()), make_matrix(g.data(), S, 4)),
      doctest::Contains("argument 'probs'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      at::mla_naive_backward(
          ex, dims, in.qv(), in.kvv(), in.krv(), 0, make_matrix(probs.data(), dims.heads * T, S),
          make_matrix(out.data(), T, dims.out_cols()), make_matrix(g.data(), T, dims.q_cols()),
          make_matrix(g.data(), S, dims.kv_cols()), make_matrix(g.data(), S, 3)),
      doctest::Contains("argument 'dk_rope'"), fp8moe::error);
  for (float v : out) REQUIRE(v == 7.0f);  // nothing was written
}

TEST_CASE("attention::workspace_bytes: exactly the query runs each MLA core op, one byte less is refused") {
  // Each op with a caller workspace of exactly workspace_bytes(exec, shape) gives the bits of the
  // allocating call; one byte less throws naming 'workspace' before an output is written.
  std::int64_t const T = 4, S = 7, q_pos0 = 3;
  inputs in(T, S, q_pos0, 900);
  host_executor const ex{2};
  auto const same = [](std::vector<float> const& a, std::vector<float> const& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  auto const fresh = [](std::size_t n) {
    std::vector<float> v(n);
    test::poison(v);
    return v;
  };
  auto const oc = dims.out_cols();
  auto const workspace_of = [](std::size_t bytes) {
    REQUIRE(bytes > 1);  // one byte less must still be a caller workspace (empty: the op allocates)
    return std::vector<std::byte>(bytes, std::byte{0xFF});
  };
  // naive forward (no probs: the scratch holds them)
  auto ref = fresh(T * oc), out = fresh(T * oc);
  at::mla_naive_forward(ex, dims, in.qv(), in.kvv(), in.krv(), q_pos0, make_matrix(ref.data(), T, oc));
  auto ws = workspace_of(at::workspace_bytes(ex, at::mla_naive_shape{dims, T, S}));
  at::mla_naive_forward(ex, dims, in.qv(), in.kvv(), in.krv(), q_pos0, make_matrix(out.data(), T, oc), {},
                        std::span<std::byte>(ws));
  CHECK(same(out, ref));
  ws.pop_back();
  out = fresh(T * oc);
  auto const untouched = out;
  CHECK_THROWS_WITH_AS(at::mla_naive_forward(ex, dims, in.qv(), in.kvv(), in.krv(), q_pos0,
                                             make_matrix(out.data(), T, oc), {}, std::span<std::byte>(ws)),
                       doctest::Contains("argument 'workspace'"), fp8moe::error);
  CHECK(same(out, untouched));
  // naive backward, from the forward's probs
  auto probs = fresh(dims.heads * T * S);
  at::mla_naive_forward(ex, dims, in.qv(), in.kvv(), in.krv(), q_pos0, make_matrix(ref.data(), T, oc),
                        make_matrix(probs.data(), dims.heads * T, S));
  auto const dout = test::random_normal(T * oc, 1.0f, 901);
  auto backward = [&](std::vector<float>& dq, std::vector<float>& dkv, std::vector<float>& dkr,
                      std::span<std::byte> w) {
    at::mla_naive_backward(
        ex, dims, in.qv(), in.kvv(), in.krv(), q_pos0, make_matrix(probs.data(), dims.heads * T, S),
        make_matrix(dout.data(), T, oc), make_matrix(dq.data(), T, dims.q_cols()),
        make_matrix(dkv.data(), S, dims.kv_cols()), make_matrix(dkr.data(), S, dims.qk_rope_head_dim), w);
  };
  auto dq0 = fresh(in.q.size()), dkv0 = fresh(in.kv.size()), dkr0 = fresh(in.kr.size());
  auto dq = fresh(in.q.size()), dkv = fresh(in.kv.size()), dkr = fresh(in.kr.size());
  backward(dq0, dkv0, dkr0, {});
  ws = workspace_of(at::workspace_bytes(ex, at::mla_naive_backward_shape{dims, T, S}));
  backward(dq, dkv, dkr, ws);
  CHECK(same(dq, dq0));
  CHECK(same(dkv, dkv0));
  CHECK(same(dkr, dkr0));
  ws.pop_back();
  dq = fresh(in.q.size());
  auto const dq_untouched = dq;
  CHECK_THROWS_WITH_AS(backward(dq, dkv, dkr, ws), doctest::Contains("argument 'workspace'"), fp8moe::error);
  CHECK(same(dq, dq_untouched));
  // absorbed forward
  ref = fresh(T * oc);
  out = fresh(T * oc);
  at::mla_absorbed_forward(ex, dims, in.qv(), in.wv(), in.lv(), in.krv(), q_pos0,
                           make_matrix(ref.data(), T, oc));
  ws = workspace_of(at::workspace_bytes(ex, at::mla_absorbed_shape{dims, T, S}));
  at::mla_absorbed_forward(ex, dims, in.qv(), in.wv(), in.lv(), in.krv(), q_pos0,
                           make_matrix(out.data(), T, oc), std::span<std::byte>(ws));
  CHECK(same(out, ref));
  ws.pop_back();
  out = fresh(T * oc);
  CHECK_THROWS_WITH_AS(at::mla_absorbed_forward(ex, dims, in.qv(), in.wv(), in.lv(), in.krv(), q_pos0,
                                                make_matrix(out.data(), T, oc), std::span<std::byte>(ws)),
                       doctest::Contains("argument 'workspace'"), fp8moe::error);
  CHECK(same(out, untouched));
  // a bad shape is named
  CHECK_THROWS_WITH_AS(at::workspace_bytes(ex, at::mla_naive_shape{dims, -1, S}),
                       doctest::Contains("argument 'shape.T'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(at::workspace_bytes(ex, at::mla_absorbed_shape{dims, T, -2}),
                       doctest::Contains("argument 'shape.S'"), fp8moe::error);
  auto bad = dims;
  bad.heads = 0;
  CHECK_THROWS_WITH_AS(at::workspace_bytes(ex, at::mla_naive_backward_shape{bad, T, S}),
                       doctest::Contains("argument 'dims.heads'"), fp8moe::error);
}
