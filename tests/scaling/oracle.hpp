// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Independent float64 oracle of every scale formula (written from fp8_numerics.md §2, §5, §6, not
// from scale_math.hpp): double arithmetic rounded to float exactly where the reference rounds
// (float(double op) is the correctly rounded fp32 op for + - * /, since 53 >= 2*24 + 2), log2-based
// powers of two, and FP8 encoding by nearest search over the decoded code table (ties to even code).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fp8moe/scaling/recipe.hpp"

namespace oracle {

using fp8moe::scaling::element_format;
using fp8moe::scaling::scale_formula;
using fp8moe::scaling::tensor_recipe;

inline double fmax_of(element_format f) {
  return f == element_format::e4m3 ? 448.0 : 57344.0;
}
inline int mbits(element_format f) {
  return f == element_format::e4m3 ? 3 : 2;
}
inline int bias(element_format f) {
  return f == element_format::e4m3 ? 7 : 15;
}
inline int max_code(element_format f) {
  return f == element_format::e4m3 ? 0x7E : 0x7B;
}

/// Value of a non-negative FP8 code from the OCP definition (codes up to max_code + 1).
inline double code_value(element_format f, int c) {
  int const M = mbits(f), e = c >> M, m = c & ((1 << M) - 1);
  if (e == 0) return std::ldexp(static_cast<double>(m), 1 - bias(f) - M);
  return std::ldexp(1.0 + std::ldexp(static_cast<double>(m), -M), e - bias(f));
}

/// Nearest FP8 code of y (ties to the even code); beyond max: saturate or overflow code.
inline std::uint8_t encode(element_format f, double y, bool saturate) {
  if (std::isnan(y)) return 0x7F;
  int const mc = max_code(f);
  std::uint8_t const sign = std::signbit(y) ? 0x80 : 0x00;
  double const a = std::fabs(y);
  int best;
  if (std::isinf(a)) {
    best = mc + 1;
  } else {
    int lo = 0, hi = mc + 1;  // largest code with value <= a
    while (lo < hi) {
      int const mid = (lo + hi + 1) / 2;
      if (code_value(f, mid) <= a)
        lo = mid;
      else
        hi = mid - 1;
    }
    best = lo;
    if (lo < mc + 1) {
      double const d0 = a - code_value(f, lo), d1 = code_value(f, lo + 1) - a;
      if (d1 < d0 || (d1 == d0 && (lo & 1))) best = lo + 1;
    }
  }
  if (best > mc) {
    if (saturate) return static_cast<std::uint8_t>(mc | sign);
    return static_cast<std::uint8_t>((f == element_format::e4m3 ? 0x7F : 0x7C) | sign);
  }
  return static_cast<std::uint8_t>(best | sign);
}

struct scale {
  double mult = 1;
  double sf = 1;
  bool divide = false;
};

inline double f32(double x) {
  return static_cast<double>(static_cast<float>(x));
}
inline double nan() {
  return std::numeric_limits<double>::quiet_NaN();
}

/// DeepGEMM ceil_to_ue8m0 (exponent clamped to [-126, 127]; NaN/Inf -> 2^127; 0 -> 2^-126).
inline double ceil_pow2_clamped(double v) {
  if (std::isnan(v) || std::isinf(v)) return std::ldexp(1.0, 127);
  if (v == 0) return std::ldexp(1.0, -126);
  double k = std::ceil(std::log2(v));
  k = std::clamp(k, -126.0, 127.0);
  return std::ldexp(1.0, static_cast<int>(k));
}

/// amax over a tile with the formula's NaN policy.
template <class It>
double amax(scale_formula f, It begin, It end) {
  bool const ignore =
      f == scale_formula::transformer_engine || f == scale_formula::deepep || f == scale_formula::te_mxfp8;
  double m = 0;
  for (It it = begin; it != end; ++it) {
    double const v = std::fabs(static_cast<double>(*it));
    if (std::isnan(v)) {
      if (!ignore) return nan();
      continue;
    }
    m = std::max(m, v);
  }
  return m;
}

/// The per-tile scale of recipe r for an amax (only the default pow2 roundings are modelled:
/// ceil of sf for deepgemm/deepep/te_mxfp8 and TE, floor for ocp_mx).
inline scale tile_scale(tensor_recipe const& r, double amax_in,
                        double value_for_inf = 3.4028234663852886e38) {
  double const fmax = fmax_of(r.format);
  double const floor_v = static_cast<double>(r.amax_floor);
  double const a = amax_in < floor_v ? floor_v : amax_in;
  bool const pow2 = r.encoding != fp8moe::scaling::scale_encoding::fp32;
  switch (r.formula) {
    case scale_formula::deepgemm:
    case scale_formula::deepseek_v3_inference: {
      double sf = f32(a / fmax);
      if (pow2) sf = ceil_pow2_clamped(sf);
      return {f32(1.0 / sf), sf, r.formula == scale_formula::deepseek_v3_inference};
    }
    case scale_formula::deepep: {
      double const rcp = f32(1.0 / fmax);
      if (!pow2) return {f32(fmax / a), f32(a * rcp), false};
      double const sf = ceil_pow2_clamped(f32(a * rcp));
      return {1.0 / sf, sf, false};
    }
    case scale_formula::transformer_engine: {
      double scale = 1.0;
      if (std::isfinite(a) && a != 0) {
        scale = f32(f32(fmax * std::ldexp(1.0, -r.margin)) / a);
        if (std::isinf(scale)) scale = value_for_inf;
      }
      if (pow2) scale = std::ldexp(1.0, static_cast<int>(std::floor(std::log2(scale))));
      return {scale, f32(1.0 / scale), false};
    }
    case scale_formula::ocp_mx: {
      if (!std::isfinite(a)) return {nan(), nan(), false};
      double k = a == 0 ? -127.0 : std::floor(std::log2(a)) - (r.format == element_format::e4m3 ? 8 : 15);
      // float subnormal amax: the spec's floor(log2) is taken from the (zero) exponent field
      if (a != 0 && a < std::ldexp(1.0, -126)) k = -127.0 - (r.format == element_format::e4m3 ? 8 : 15);
      k = std::max(k, -127.0);
      return {std::ldexp(1.0, -static_cast<int>(k)), std::ldexp(1.0, static_cast<int>(k)), false};
    }
    case scale_formula::te_mxfp8: {
      double const v = f32(a * f32(1.0 / fmax));
      if (std::isnan(v)) return {nan(), nan(), false};
      double k;
      if (std::isinf(v))
        k = 127;
      else if (v <= std::ldexp(1.0, -127))
        k = -127;
      else
        k = std::min(127.0, std::ceil(std::log2(v)));
      return {std::ldexp(1.0, -static_cast<int>(k)), std::ldexp(1.0, static_cast<int>(k)), false};
    }
  }
  return {};
}

/// Element quantization: fp32 multiply (or divide), then nearest-even FP8.
inline std::uint8_t quantize(tensor_recipe const& r, double x, scale const& s) {
  double const y = s.divide ? f32(x / s.sf) : f32(x * s.mult);
  return encode(r.format, y, r.sat == fp8moe::saturation::finite);
}

/// Decoded value of any FP8 code (NaN codes -> NaN), from the OCP definition.
inline double decode(element_format f, std::uint8_t c) {
  int const mag = c & 0x7F;
  double const s = (c & 0x80) ? -1.0 : 1.0;
  if (f == element_format::e4m3 && mag == 0x7F) return nan();
  if (f == element_format::e5m2 && mag >= 0x7C) return mag == 0x7C ? s * INFINITY : nan();
  return s * code_value(f, mag);
}

}  // namespace oracle
