// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// A tour of fp8moe's numerics and scaling: a few values in every conversion mode, then one random
// (T,H) activation quantized with every preset (scales, round-trip error, DeepGEMM's calc_diff),
// the 1x128 -> 128x1 transpose-requantize, and three steps of delayed scaling. Host only.
// Every section checks what it prints against bounds derived from the formats; exit 1 on a failure.
#include <algorithm>
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

int failures = 0;
/// Prints a failed check (the example's exit status counts them).
void check(bool ok, char const* what, double got = 0, double bound = 0) {
  if (ok) return;
  ++failures;
  std::printf("   CHECK FAILED: %s (got %.6g, bound %.6g)\n", what, got, bound);
}

/// Largest rounding error RNE may make for |x| in an FP8 format of m mantissa bits whose smallest
/// subnormal is 2^min_sub_exp: half a step of the binade of x, at least half the subnormal step.
double half_step(double ax, int m, int min_sub_exp) {
  double const sub = std::ldexp(0.5, min_sub_exp);
  if (ax == 0) return sub;
  int e = 0;
  std::frexp(ax, &e);  // ax in [2^(e-1), 2^e)
  return std::max(std::ldexp(0.5, e - 1 - m), sub);
}

/// One conversion row: the value printed for x in a format with maximum `maxv` lies within half a
/// step of x (finite, in range), saturates to +-maxv (sat), or gives inf/NaN as the format defines.
template <class F>
void check_conversion(float x, F q, bool saturate, char const* what) {
  using T = typename F::format;
  float const y = q.to_float();
  if (std::isnan(x)) return check(std::isnan(y), what, y, 0);
  double const ax = std::fabs(static_cast<double>(x));
  double const limit =
      T::max_value + half_step(T::max_value, T::mantissa_bits, 1 - T::bias - T::mantissa_bits);
  // Beyond the rounding range of the largest finite value; a tie at the limit rounds to even: to the
  // maximum when its code is even (E4M3 0x7E), past it when odd (E5M2 0x7B -> overflow).
  if (ax > limit || (ax == limit && (T::max_code & 1))) {
    if (saturate)
      return check(std::fabs(y) == T::max_value && std::signbit(y) == std::signbit(x), what, y, T::max_value);
    return check(T::has_infinity ? std::isinf(y) && std::signbit(y) == std::signbit(x) : std::isnan(y), what,
                 y, 0);
  }
  double const err = std::fabs(static_cast<double>(y) - x);
  double const bound = half_step(ax, T::mantissa_bits, 1 - T::bias - T::mantissa_bits);
  check(err <= bound, what, err, bound);
  check(F::from_float(y).bits() == q.bits(), what, q.bits(),
        0);  // the printed value converts back to its code
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
    check_conversion(x, a, true, "e4m3 sat within half a step / saturated");
    check_conversion(x, b, false, "e4m3 nosat within half a step / NaN");
    check_conversion(x, c, true, "e5m2 sat within half a step / saturated");
    check_conversion(x, d, false, "e5m2 nosat within half a step / inf");
    float const h = fm::bfloat16_t(x).to_float();
    if (std::isfinite(x))
      check(std::fabs(static_cast<double>(h) - x) <= std::ldexp(std::fabs(static_cast<double>(x)), -8),
            "bf16 within 2^-8 relative", h, x);
    else
      check(std::isnan(x) ? std::isnan(h) : h == x, "bf16 keeps inf / NaN", h, x);
    if (std::isfinite(x) && x > 0) {  // E8M0: 2^floor(log2 x) <= x <= 2^ceil(log2 x), nearest in between
      float const lo = fm::float8_e8m0_t::from_float(x, fm::e8m0_rounding::toward_zero).to_float();
      float const hi = fm::float8_e8m0_t::from_float(x, fm::e8m0_rounding::toward_pos_inf).to_float();
      float const rn = fm::float8_e8m0_t::from_float(x, fm::e8m0_rounding::nearest).to_float();
      check(lo <= x && x <= hi && (hi == lo || hi == 2 * lo) && (rn == lo || rn == hi), "e8m0 rz <= x <= rp",
            x, lo);
    }
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
      // Every element within half a step of its tile's grid (sf * the FP8 grid), plus what
      // saturation at +-max clips off (OCP floor scales can put amax/sf above the FP8 maximum).
      bool const e4 = p.r.format == fs::element_format::e4m3;
      int const m = e4 ? 3 : 2, min_sub = e4 ? -9 : -16;
      double const maxv = e4 ? 448.0 : 57344.0;
      double worst = 0;  // largest err / bound
      bool saturated = false;
      for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t h = 0; h < H; ++h) {
          double const sf =
              q.scales(p.r.tile.rows > 0 ? t / p.r.tile.rows : 0, p.r.tile.cols > 0 ? h / p.r.tile.cols : 0);
          double const ax = std::fabs(static_cast<double>(xf[t * H + h]));
          saturated = saturated || ax > maxv * sf;
          // + 2^-23 |y|: the float product float(q) * sf is itself rounded once
          double const bound = std::max(ax - maxv * sf, 0.0) +
                               sf * half_step(std::min(ax / sf, maxv), m, min_sub) +
                               std::ldexp(std::fabs(static_cast<double>(y[t * H + h])), -23);
          worst = std::max(worst, std::fabs(static_cast<double>(xf[t * H + h]) - y[t * H + h]) / bound);
        }
      check(worst <= 1.0, "every element within half a step of its tile's grid", worst, 1.0);
      // calc_diff ~ rel_l2^2 / 2 and RNE's relative error is at most 2^-(m+1), so calc_diff <= 2^-(2m+3)
      // (saturation aside, which only the OCP floor preset reaches).
      if (!saturated)
        check(calc_diff(xf, y) <= std::ldexp(1.0, -(2 * m + 3)), "calc_diff <= 2^-(2m+3)", calc_diff(xf, y),
              std::ldexp(1.0, -(2 * m + 3)));
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
  // From the source: within half a step of the X^T tile grid. From the FP8 copy: the row-tile rounding
  // plus the re-rounding onto the X^T grid. Power-of-two scales on both sides (UE8M0) make the second
  // rounding exact unless the value lands below the normal range (fp8_numerics.md §0.11).
  {
    std::vector<float> ys(T * H), yq(T * H);
    fs::dequantize(exec, from_source.view(), fm::make_matrix(ys.data(), H, T));
    fs::dequantize(exec, from_fp8.view(), fm::make_matrix(yq.data(), H, T));
    double worst_src = 0, worst_fp8 = 0;
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t h = 0; h < H; ++h) {
        double const x = xf[t * H + h], ax = std::fabs(x);
        double const sc = from_source.scales(h, t / 128), sr = q.scales(t, h / 128);
        double const b_col = sc * half_step(ax / sc, 3, -9) + std::ldexp(ax, -22),
                     b_row = sr * half_step(ax / sr, 3, -9);
        worst_src = std::max(worst_src, std::fabs(ys[h * T + t] - x) / b_col);
        worst_fp8 = std::max(worst_fp8, std::fabs(yq[h * T + t] - x) / (b_row + b_col));
      }
    check(worst_src <= 1.0, "X^T from the source within half a step", worst_src, 1.0);
    check(worst_fp8 <= 1.0, "X^T from the FP8 copy within two roundings", worst_fp8, 1.0);
  }

  std::printf(
      "\n4. Delayed scaling (TE: history 1024, max, margin 0): the scale lags the amax by one step\n");
  fs::delayed_scaling state(fs::te_delayed.activation);
  fs::quantized_matrix<fm::float8_e4m3_t> qd(T, H, fs::per_tensor);
  float previous_next = state.scale();
  for (int step = 0; step < 3; ++step) {
    float true_amax = 0;
    for (auto& v : x) {
      v = fm::bfloat16_t(v.to_float() * 2.0f);  // activations grow each step
      true_amax = std::max(true_amax, std::fabs(v.to_float()));
    }
    fs::quantize(exec, xv, state, qd.view());
    float const used = state.scale();
    float const amax = state.update();
    std::printf("   step %d: scale used %-10.4g amax seen %-8.4g next scale %.4g\n", step, used, amax,
                state.scale());
    // The scale used is the one computed at the end of the previous step (the lag), the amax seen is
    // this step's max |x|, and the next scale is 448 / amax (history max = this step: x grows).
    check(used == previous_next, "scale used = previous step's next scale", used, previous_next);
    check(amax == true_amax, "amax seen = max |x| of this step", amax, true_amax);
    check(std::fabs(state.scale() - 448.0f / amax) <= 1e-6f * state.scale(), "next scale = 448 / amax",
          state.scale(), 448.0f / amax);
    previous_next = state.scale();
  }
  std::printf("quantize_tour: %s\n", failures == 0 ? "OK" : "CHECKS FAILED");
  return failures == 0 ? 0 : 1;
}
