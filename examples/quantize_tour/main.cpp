// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// A tour of fp8moe's numerics and scaling: a few values in every conversion mode, then one random
// (T,H) activation quantized with every preset (scales, round-trip error, DeepGEMM's calc_diff),
// the 1x128 -> 128x1 transpose-requantize, and three steps of delayed scaling. Host only.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/scaling.hpp"

namespace fm = fp8moe;
namespace fs = fp8moe::scaling;

namespace {

double calc_diff(std::vector<float> const& x, std::vector<float> const& y) {  // DeepGEMM's metric
  double num = 0, den = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    num += static_cast<double>(x[i]) * y[i];
    den += static_cast<double>(x[i]) * x[i] + static_cast<double>(y[i]) * y[i];
  }
  return den == 0 ? 0 : 1 - 2 * num / den;
}

void conversions() {
  std::printf(
      "1. Conversions (RNE; sat = cuda SATFINITE, nosat = cuda NOSAT / ml_dtypes / PyTorch <= 2.11)\n");
  std::printf("   %-10s %-15s %-15s %-17s %-17s %-9s %s\n", "x", "e4m3 sat", "e4m3 nosat", "e5m2 sat",
              "e5m2 nosat", "bf16", "e8m0 rz/rp/rn");
  float const xs[] = {0.1f,
                      1.0f / 3.0f,
                      300.0f,
                      448.0f,
                      464.0f,
                      500.0f,
                      60000.0f,
                      1e-3f,
                      -2.5e-3f,
                      std::numeric_limits<float>::infinity(),
                      std::numeric_limits<float>::quiet_NaN()};
  for (float x : xs) {
    auto const a = fm::float8_e4m3_t::from_float(x),
               b = fm::float8_e4m3_t::from_float(x, fm::saturation::none);
    auto const c = fm::float8_e5m2_t::from_float(x),
               d = fm::float8_e5m2_t::from_float(x, fm::saturation::none);
    auto const e = [&](fm::e8m0_rounding r) { return fm::float8_e8m0_t::from_float(x, r).bits(); };
    std::printf("   %-10.4g %02X=%-12.5g %02X=%-12.5g %02X=%-14.5g %02X=%-14.5g %-9.5g %02X/%02X/%02X\n", x,
                a.bits(), a.to_float(), b.bits(), b.to_float(), c.bits(), c.to_float(), d.bits(),
                d.to_float(), fm::bfloat16_t(x).to_float(), e(fm::e8m0_rounding::toward_zero),
                e(fm::e8m0_rounding::toward_pos_inf), e(fm::e8m0_rounding::nearest));
  }
}

}  // namespace

int main() {
  conversions();

  constexpr std::int64_t T = 256, H = 1024;
  std::mt19937_64 g{2026};
  std::normal_distribution<float> n{0.0f, 1.0f};
  std::vector<fm::bfloat16_t> x(T * H);  // (T,H) activations with a few large outlier channels
  std::vector<float> xf(T * H);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) {
      float const v = n(g) * (h % 97 == 0 ? 60.0f : 1.0f);
      x[t * H + h] = fm::bfloat16_t(v);
      xf[t * H + h] = x[t * H + h].to_float();
    }
  auto const xv = fm::make_matrix(x.data(), T, H);
  fm::host_executor exec;

  std::printf(
      "\n2. One bf16 (T,H) = (%lld,%lld) activation (outlier channels x60) quantized with each preset\n",
      static_cast<long long>(T), static_cast<long long>(H));
  std::printf("   %-28s %-7s %-10s %-12s %-24s %-10s %s\n", "preset (role)", "format", "tile", "scales",
              "sf[0,0] sf[0,1]", "max|err|", "calc_diff");
  struct named {
    char const* name;
    fs::tensor_recipe r;
  };
  named const presets[] = {{"deepseek_v3 (activation)", fs::deepseek_v3.activation},
                           {"deepseek_v3 (weight)", fs::deepseek_v3.weight},
                           {"deepseek_v3_ue8m0 (act.)", fs::deepseek_v3_ue8m0.activation},
                           {"te_current (activation)", fs::te_current.activation},
                           {"te_current (gradient)", fs::te_current.gradient},
                           {"te_blockwise (activation)", fs::te_blockwise.activation},
                           {"mxfp8 (NVIDIA RCEIL)", fs::mxfp8.activation},
                           {"mxfp8_ocp (OCP floor)", fs::mxfp8_ocp.activation},
                           {"e5m2_weights (weight)", fs::e5m2_weights.weight}};
  for (auto const& p : presets) {
    std::vector<float> y(T * H);
    auto report = [&](auto const& q) {
      fs::dequantize(exec, q.view(), fm::make_matrix(y.data(), T, H));
      double err = 0;
      for (std::size_t i = 0; i < y.size(); ++i)
        err = std::max(err, std::fabs(static_cast<double>(xf[i]) - y[i]));
      char tile[16];
      std::snprintf(tile, sizeof tile, "%dx%d", p.r.tile.rows, p.r.tile.cols);
      char shape[24];
      std::snprintf(shape, sizeof shape, "%lldx%lld", static_cast<long long>(q.scales.rows()),
                    static_cast<long long>(q.scales.cols()));
      float const s1 = q.scales.cols() > 1 ? q.scales(0, 1) : q.scales(0, 0);
      std::printf("   %-28s %-7s %-10s %-12s %-11.4g %-12.4g %-10.3g %.2e\n", p.name,
                  p.r.format == fs::element_format::e4m3 ? "e4m3" : "e5m2", tile, shape, q.scales(0, 0), s1,
                  err, calc_diff(xf, y));
    };
    if (p.r.format == fs::element_format::e4m3)
      report(fs::quantize<fm::float8_e4m3_t>(exec, xv, p.r));
    else
      report(fs::quantize<fm::float8_e5m2_t>(exec, xv, p.r));
  }
  std::printf("   (tile 0 = whole extent; sf = dequantization multiplier: x ~= float(q) * sf)\n");

  std::printf("\n3. Weight-gradient layout: 1x128 row tiles of X (T,H) -> 1x128 tiles of X^T (H,T)\n");
  auto const q = fs::quantize(exec, xv, fs::deepseek_v3_ue8m0.activation);
  fs::quantized_matrix<fm::float8_e4m3_t> from_source(H, T, fs::tile_1x128), from_fp8(H, T, fs::tile_1x128);
  fs::transpose_requantize(exec, xv, fs::deepseek_v3_ue8m0.activation, from_source.view());
  fs::transpose_requantize(exec, q.view(), fs::deepseek_v3_ue8m0.activation, from_fp8.view());
  std::int64_t same = 0;
  for (std::size_t i = 0; i < from_source.data.storage().size(); ++i)
    same += from_source.data.storage()[i].bits() == from_fp8.data.storage()[i].bits();
  std::printf("   X^T scales %lldx%lld; requantized from bf16 vs from the FP8 copy: %.1f%% identical bytes\n",
              static_cast<long long>(from_fp8.scales.rows()), static_cast<long long>(from_fp8.scales.cols()),
              100.0 * static_cast<double>(same) / static_cast<double>(T * H));

  std::printf(
      "\n4. Delayed scaling (TE: history 1024, max, margin 0): the scale lags the amax by one step\n");
  fs::delayed_scaling state(fs::te_delayed.activation);
  fs::quantized_matrix<fm::float8_e4m3_t> qd(T, H, fs::per_tensor);
  for (int step = 0; step < 3; ++step) {
    for (auto& v : x) v = fm::bfloat16_t(v.to_float() * 2.0f);  // activations grow each step
    fs::quantize(exec, xv, state, qd.view());
    float const used = state.scale();
    float const amax = state.update();
    std::printf("   step %d: scale used %-10.4g amax seen %-8.4g next scale %.4g\n", step, used, amax,
                state.scale());
  }
  return 0;
}
