// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// attention/host/mla.hpp's fused naive forward at head dims wider than its 4 x 32 micro tile
// (dk = 70, dv = 40: two column tiles, a partial one), T not a multiple of the 64-query block or the
// 4-row tile, q_pos0 > 0, probs given or not, 1 and 2 threads, against a float64 reference written
// here; and host_detail::softmax_row against mla_softmax_row (std::exp).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "fp8moe/attention/host/mla.hpp"
#include "fp8moe/attention/mla.hpp"
#include "test_support.hpp"

using namespace fp8moe;
namespace at = fp8moe::attention;

namespace {

constexpr at::mla_dims dims{2, 50, 20, 40, 16, 0.12f};  // H, dn, dr, dv, latent, scale

std::vector<float> random_values(std::size_t n, std::uint32_t seed) {
  std::vector<float> v(n);
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = static_cast<float>(seed >> 8) / static_cast<float>(1u << 24) * 4.0f - 2.0f;
  }
  return v;
}

}  // namespace

TEST_CASE("naive forward: fused host kernel against float64 at head dims wider than its tile") {
  std::int64_t const H = dims.heads, dn = dims.qk_nope_head_dim, dr = dims.qk_rope_head_dim,
                     dv = dims.v_head_dim, dk = dn + dr;
  for (auto [T, q_pos0] : {std::pair<std::int64_t, std::int64_t>{131, 0}, {67, 9}, {1, 5}}) {
    std::int64_t const S = q_pos0 + T + 3;  // 3 keys past q_pos0 + T: NaN, never read
    CAPTURE(T);
    CAPTURE(q_pos0);
    auto q = random_values(static_cast<std::size_t>(T * H * dk), 1);
    auto kv = random_values(static_cast<std::size_t>(S * H * (dn + dv)), 2);
    auto kr = random_values(static_cast<std::size_t>(S * dr), 3);
    for (std::int64_t s = q_pos0 + T; s < S; ++s) {
      for (std::int64_t c = 0; c < H * (dn + dv); ++c)
        kv[static_cast<std::size_t>(s * H * (dn + dv) + c)] = NAN;
      for (std::int64_t c = 0; c < dr; ++c) kr[static_cast<std::size_t>(s * dr + c)] = NAN;
    }
    // float64 reference: out (T, H*dv), probs (H*T, S)
    std::vector<double> ref(static_cast<std::size_t>(T * H * dv), 0.0),
        pref(static_cast<std::size_t>(H * T * S), 0.0);
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t t = 0; t < T; ++t) {
        std::int64_t const n = q_pos0 + t + 1;
        std::vector<double> sc(static_cast<std::size_t>(n));
        double m = -1e300, sum = 0;
        for (std::int64_t s = 0; s < n; ++s) {
          double d = 0;
          for (std::int64_t c = 0; c < dn; ++c)
            d += double(q[static_cast<std::size_t>(t * H * dk + h * dk + c)]) *
                 kv[static_cast<std::size_t>(s * H * (dn + dv) + h * (dn + dv) + c)];
          for (std::int64_t c = 0; c < dr; ++c)
            d += double(q[static_cast<std::size_t>(t * H * dk + h * dk + dn + c)]) *
                 kr[static_cast<std::size_t>(s * dr + c)];
          sc[static_cast<std::size_t>(s)] = d * dims.softmax_scale;
          m = std::max(m, sc[static_cast<std::size_t>(s)]);
        }
        for (auto& x : sc) sum += (x = std::exp(x - m));
        for (std::int64_t s = 0; s < n; ++s) {
          double const p = sc[static_cast<std::size_t>(s)] / sum;
          pref[static_cast<std::size_t>((h * T + t) * S + s)] = p;
          for (std::int64_t j = 0; j < dv; ++j)
            ref[static_cast<std::size_t>(t * H * dv + h * dv + j)] +=
                p * kv[static_cast<std::size_t>(s * H * (dn + dv) + h * (dn + dv) + dn + j)];
        }
      }
    auto const qv = make_matrix<float const>(q.data(), T, H * dk);
    auto const kvv = make_matrix<float const>(kv.data(), S, H * (dn + dv));
    auto const krv = make_matrix<float const>(kr.data(), S, dr);
    for (int threads : {1, 2})
      for (bool with_probs : {false, true}) {
        CAPTURE(threads);
        CAPTURE(with_probs);
        std::vector<float> out(static_cast<std::size_t>(T * H * dv), NAN),
            probs(static_cast<std::size_t>(H * T * S), NAN);
        at::mla_naive_forward(host_executor{threads}, dims, qv, kvv, krv, q_pos0,
                              make_matrix(out.data(), T, H * dv),
                              with_probs ? make_matrix(probs.data(), H * T, S) : matrix_view<float>{});
        // |out| <= max |v| = 2; float accumulation over <= 142 keys of probabilities: 1e-5 absolute
        double err = 0;
        for (std::size_t i = 0; i < out.size(); ++i) err = test::worse(err, std::abs(out[i] - ref[i]));
        CHECK(err < 1e-5);
        if (!with_probs) continue;
        double perr = 0;
        for (std::size_t i = 0; i < probs.size(); ++i) perr = test::worse(perr, std::abs(probs[i] - pref[i]));
        CHECK(perr < 1e-6);  // masked and never-read keys: exactly 0 (the reference holds 0 there)
      }
  }
}

TEST_CASE("host softmax_row equals mla_softmax_row within 4e-7 per probability; masked tail is 0") {
  for (std::int64_t visible : {1, 15, 16, 17, 100}) {
    CAPTURE(visible);
    auto a = random_values(120, static_cast<std::uint32_t>(visible));
    for (auto& x : a) x *= 20.0f;
    auto b = a;
    at::host_detail::softmax_row(a.data(), visible, 110);
    at::mla_softmax_row(b.data(), visible, 110);
    for (std::size_t s = 0; s < 110; ++s) REQUIRE(std::abs(a[s] - b[s]) <= 4e-7f);
    for (std::int64_t s = visible; s < 110; ++s) REQUIRE(a[static_cast<std::size_t>(s)] == 0.0f);
    CHECK(a[110] == b[110]);  // past n: untouched
  }
}
