// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The float64 oracle of the mtp tests, written from the equations (DeepSeek-V3 report eq. 21-25,
// the checkpoint's embedding-first concatenation) with plain loops, sharing no code with the library:
// tiny_block, one MTP depth, the weighted cross-entropy. Also the random parameters of a test model.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "test_support.hpp"

namespace mtp_ref {

using vec = std::vector<double>;

/// y (T,C) = x / sqrt(mean(x^2) + eps) * w.
inline vec rmsnorm(vec const& x, vec const& w, std::int64_t T, std::int64_t C, double eps) {
  vec y(x.size());
  for (std::int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (std::int64_t c = 0; c < C; ++c) ss += x[t * C + c] * x[t * C + c];
    double const r = 1.0 / std::sqrt(ss / static_cast<double>(C) + eps);
    for (std::int64_t c = 0; c < C; ++c) y[t * C + c] = x[t * C + c] * r * w[c];
  }
  return y;
}

/// d (M,N) = a (M,K) * b(N,K)^T.
inline vec matmul_nt(vec const& a, vec const& b, std::int64_t M, std::int64_t N, std::int64_t K) {
  vec d(static_cast<std::size_t>(M * N));
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (std::int64_t k = 0; k < K; ++k) s += a[m * K + k] * b[n * K + k];
      d[m * N + n] = s;
    }
  return d;
}

/// tiny_block's parameters: g (C), W1 (F,C), W2 (C,F).
struct block_params {
  vec g, w1, w2;
};

/// y = x + tanh(causal(rmsnorm(x; g)) W1^T) W2^T, causal_i = sum_{j<=i} u_j / (pos_i + 1).
inline vec block(block_params const& p, vec const& x, std::vector<std::int32_t> const& pos, std::int64_t T,
                 std::int64_t C, std::int64_t F, double eps) {
  vec const u = rmsnorm(x, p.g, T, C, eps);
  vec m(u.size());
  for (std::int64_t c = 0; c < C; ++c) {
    double run = 0;
    for (std::int64_t t = 0; t < T; ++t) {
      run += u[t * C + c];
      m[t * C + c] = run / (pos[t] + 1.0);
    }
  }
  vec a = matmul_nt(m, p.w1, T, F, C);
  for (auto& v : a) v = std::tanh(v);
  vec y = matmul_nt(a, p.w2, T, C, F);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] += x[i];
  return y;
}

/// Every MTP parameter (the block's included).
struct params {
  std::int64_t V = 0, C = 0, F = 0;
  vec embed, final_norm, enorm, hnorm, eh_proj, head_norm, head;
  block_params blk;
};

inline std::vector<float> to_float(vec const& v) {
  return {v.begin(), v.end()};
}

inline vec random_vec(std::size_t n, double sigma, std::uint64_t seed, double mean = 0.0) {
  auto const f = fp8moe::test::random_normal(n, static_cast<float>(sigma), seed);
  vec v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = mean + static_cast<double>(f[i]);  // float-exact values
  return v;
}

inline params random_params(std::int64_t V, std::int64_t C, std::int64_t F, std::uint64_t seed) {
  params p;
  p.V = V, p.C = C, p.F = F;
  auto const uC = static_cast<std::size_t>(C);
  p.embed = random_vec(static_cast<std::size_t>(V * C), 1.0, seed + 1);
  p.final_norm = random_vec(uC, 0.2, seed + 2, 1.0);
  p.enorm = random_vec(uC, 0.2, seed + 3, 1.0);
  p.hnorm = random_vec(uC, 0.2, seed + 4, 1.0);
  p.eh_proj = random_vec(static_cast<std::size_t>(2 * C * C), 1.0 / std::sqrt(2.0 * C), seed + 5);
  p.head_norm = random_vec(uC, 0.2, seed + 6, 1.0);
  p.head = random_vec(static_cast<std::size_t>(V * C), 1.0 / std::sqrt(1.0 * C), seed + 7);
  p.blk.g = random_vec(uC, 0.2, seed + 8, 1.0);
  p.blk.w1 = random_vec(static_cast<std::size_t>(F * C), 1.0 / std::sqrt(1.0 * C), seed + 9);
  p.blk.w2 = random_vec(static_cast<std::size_t>(C * F), 1.0 / std::sqrt(1.0 * F), seed + 10);
  return p;
}

struct depth_out {
  vec logits;  // (T,V)
  vec hidden;  // (T,C)
};

/// One depth: logits = head_norm(block(eh_proj [enorm(emb(tok)) ; hnorm(h)])) head^T, with
/// h = final_norm(h_prev) when `final_norm`.
inline depth_out depth(params const& p, std::vector<std::int32_t> const& tok, vec const& h_prev,
                       std::vector<std::int32_t> const& pos, bool final_norm, double eps) {
  auto const T = static_cast<std::int64_t>(tok.size());
  std::int64_t const C = p.C;
  vec const h = final_norm ? rmsnorm(h_prev, p.final_norm, T, C, eps) : h_prev;
  vec e(static_cast<std::size_t>(T * C));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t c = 0; c < C; ++c) e[t * C + c] = p.embed[tok[t] * C + c];
  vec const en = rmsnorm(e, p.enorm, T, C, eps), hn = rmsnorm(h, p.hnorm, T, C, eps);
  vec cat(static_cast<std::size_t>(T * 2 * C));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t c = 0; c < C; ++c) {
      cat[t * 2 * C + c] = en[t * C + c];  // embedding first
      cat[t * 2 * C + C + c] = hn[t * C + c];
    }
  vec const x = matmul_nt(cat, p.eh_proj, T, C, 2 * C);
  depth_out o;
  o.hidden = block(p.blk, x, pos, T, C, p.F, eps);
  o.logits = matmul_nt(rmsnorm(o.hidden, p.head_norm, T, C, eps), p.head, T, p.V, C);
  return o;
}

/// Mean over rows with target != ignore of -log softmax(logits_row)[target].
inline double cross_entropy(vec const& logits, std::vector<std::int32_t> const& targets, std::int64_t V,
                            std::int32_t ignore) {
  double sum = 0;
  std::int64_t valid = 0;
  for (std::size_t t = 0; t < targets.size(); ++t) {
    if (targets[t] == ignore) continue;
    double mx = -INFINITY;
    for (std::int64_t v = 0; v < V; ++v) mx = std::max(mx, logits[t * V + v]);
    double s = 0;
    for (std::int64_t v = 0; v < V; ++v) s += std::exp(logits[t * V + v] - mx);
    sum += std::log(s) + mx - logits[t * V + targets[t]];
    ++valid;
  }
  return valid ? sum / static_cast<double>(valid) : 0.0;
}

}  // namespace mtp_ref
