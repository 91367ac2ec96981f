// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The trainer's progress report: one line per reported step (a bar, step, loss, MTP loss, learning
// rate, gradient norm, tokens/s, model FLOP utilization against this machine's sgemm rate measured
// once at start, ETA) and the expert-load line (max/mean tokens per expert of each MoE layer).
// Formatting is pure (strings); the caller prints.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/nn/matmul.hpp"

namespace dsv3 {

/// FLOP/s of one float matrix product C (n,n) = A (n,n) B^T (n,n) through fp8moe::nn::matmul (OpenBLAS
/// sgemm where the build has BLAS), the best of `reps` after one warm-up: the "peak" MFU is measured
/// against. 2 n^3 FLOPs per product.
inline double measure_sgemm_flops(std::int64_t n = 512, int reps = 5) {
  std::vector<float> a(static_cast<std::size_t>(n * n)), b(a.size()), c(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i % 97) * 0.01f - 0.48f;
    b[i] = static_cast<float>(i % 89) * 0.01f - 0.44f;
  }
  fp8moe::host_executor ex;
  auto const A = fp8moe::make_matrix<float const>(a.data(), n, n);
  auto const B = fp8moe::make_matrix<float const>(b.data(), n, n);
  auto const C = fp8moe::make_matrix(c.data(), n, n);
  double best = 1e30;
  for (int r = 0; r <= reps; ++r) {
    auto const t0 = std::chrono::steady_clock::now();
    fp8moe::nn::matmul(ex, A, fp8moe::nn::transposed(B), C);
    double const s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::min(best, s);
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best;
}

/// What one progress line reports.
struct step_report {
  std::int64_t step = 0;         // 1-based, completed
  std::int64_t total_steps = 0;  // of this run
  double loss = 0;               // main cross-entropy (nats/token)
  double mtp_loss = NAN;         // the MTP module's cross-entropy (NaN: no MTP)
  double lr = 0;
  double grad_norm = 0;     // before clipping
  double tokens_per_s = 0;  // of the steps since the last report
  double mfu = 0;           // model FLOPs / s over the measured sgemm FLOP/s
  double eta_s = 0;         // seconds left at the current speed
  bool skipped = false;     // a NaN/Inf step that was skipped
};

/// "1m05s", "12.3s", "2h03m".
inline std::string duration_text(double s) {
  char b[32];
  if (!(s >= 0) || !std::isfinite(s)) return "?";
  if (s < 60)
    std::snprintf(b, sizeof b, "%.1fs", s);
  else if (s < 3600)
    std::snprintf(b, sizeof b, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else
    std::snprintf(b, sizeof b, "%dh%02dm", static_cast<int>(s) / 3600, static_cast<int>(s) % 3600 / 60);
  return b;
}

/// One line: "[#######.............] step 70/300 loss 2.8301 mtp 3.0122 lr 2.95e-03 |g| 0.912
/// 1,234 tok/s MFU 18.2% ETA 41.0s" (a bar of `width` cells; "skipped (NaN/Inf)" on a skipped step).
inline std::string progress_line(step_report const& r, int width = 20) {
  int const done = r.total_steps > 0 ? static_cast<int>(width * r.step / r.total_steps) : 0;
  std::string bar = "[" + std::string(static_cast<std::size_t>(std::clamp(done, 0, width)), '#') +
                    std::string(static_cast<std::size_t>(width - std::clamp(done, 0, width)), '.') + "]";
  char b[256];
  if (r.skipped) {
    std::snprintf(b, sizeof b, "%s step %lld/%lld skipped (NaN/Inf), weights untouched", bar.c_str(),
                  static_cast<long long>(r.step), static_cast<long long>(r.total_steps));
    return b;
  }
  char mtp[32] = "";
  if (!std::isnan(r.mtp_loss)) std::snprintf(mtp, sizeof mtp, " mtp %.4f", r.mtp_loss);
  std::snprintf(b, sizeof b, "%s step %lld/%lld loss %.4f%s lr %.2e |g| %.3f %.0f tok/s MFU %.1f%% ETA %s",
                bar.c_str(), static_cast<long long>(r.step), static_cast<long long>(r.total_steps), r.loss,
                mtp, r.lr, r.grad_norm, r.tokens_per_s, 100.0 * r.mfu, duration_text(r.eta_s).c_str());
  return b;
}

/// Max and mean tokens per expert of one layer's counts (E).
struct expert_load {
  std::int64_t max = 0;
  double mean = 0;
  double ratio() const { return mean > 0 ? static_cast<double>(max) / mean : 0.0; }
};

inline expert_load load_of(std::span<std::int32_t const> counts) {
  expert_load l;
  std::int64_t sum = 0;
  for (auto c : counts) sum += c, l.max = std::max<std::int64_t>(l.max, c);
  l.mean = counts.empty() ? 0.0 : static_cast<double>(sum) / static_cast<double>(counts.size());
  return l;
}

/// "expert load (max/mean tokens per expert): layer 1 1.62 (26/16.0), layer 2 ..." for the MoE layers
/// `layers` (their indices) and their counts.
inline std::string expert_load_line(std::span<std::int64_t const> layers,
                                    std::span<std::vector<std::int32_t> const> counts) {
  std::string s = "expert load (max/mean tokens per expert):";
  char b[96];
  for (std::size_t i = 0; i < layers.size() && i < counts.size(); ++i) {
    auto const l = load_of(counts[i]);
    std::snprintf(b, sizeof b, "%s layer %lld %.2f (%lld/%.1f)", i ? "," : "",
                  static_cast<long long>(layers[i]), l.ratio(), static_cast<long long>(l.max), l.mean);
    s += b;
  }
  return s;
}

}  // namespace dsv3
