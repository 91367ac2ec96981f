// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Exhaustive check that needs no CUDA toolkit: every one of the 2^32 float32 patterns converted by
// fp8moe against a float64 model of each format written here from the format definitions (the
// value of every code; round to nearest even / toward zero / toward +inf / nearest-ties-up between
// consecutive values; the overflow rule of each saturation mode). NaN outputs compared as NaN-ness.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "exhaustive_sweep.hpp"
#include "fp8moe/numeric/numeric.hpp"

namespace {

using fp8moe::test::as_float;
using fp8moe::test::sweep_chunks;

/// Value of a positive code of a binary format with E exponent bits, M mantissa bits and bias B:
/// (1 + m/2^M) 2^(e-B), or m/2^M 2^(1-B) for e = 0. No special cases: the caller decides which
/// codes are finite.
double binary_value(std::uint32_t code, int M, int B) {
  std::uint32_t const e = code >> M, m = code & ((1u << M) - 1);
  double const frac = static_cast<double>(m) / static_cast<double>(1u << M);
  return e == 0 ? std::ldexp(frac, 1 - B) : std::ldexp(1.0 + frac, static_cast<int>(e) - B);
}

enum class tie { to_even, up, down };

/// A rounding of |x| onto codes 0..n-1 (the positive finite codes, ascending in value), or n
/// ("overflow"): code i covers |x| up to boundary[i]; at |x| == boundary[i] `ties` decides.
struct model {
  std::vector<double> boundary;  // (n)
  tie ties = tie::to_even;
  bool past(double ax, std::size_t i) const {
    return ax > boundary[i] ||
           (ax == boundary[i] && (ties == tie::up || (ties == tie::to_even && (i & 1) != 0)));
  }
  std::size_t first_index(double ax) const {
    std::size_t lo = 0, hi = boundary.size();  // first i that |x| is not past
    while (lo < hi) {
      std::size_t const mid = (lo + hi) / 2;
      if (past(ax, mid))
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }
};

/// Round to nearest, ties to even code, among `values` (positive finite codes 0..n-1) and one
/// more value `next` standing for the first code past the largest (overflow when chosen).
model nearest_even(std::vector<double> const& values, double next) {
  model m;
  for (std::size_t i = 0; i < values.size(); ++i)
    m.boundary.push_back(0.5 * (values[i] + (i + 1 < values.size() ? values[i + 1] : next)));
  return m;
}

std::vector<double> binary_values(std::uint32_t n, int M, int B) {
  std::vector<double> v;
  for (std::uint32_t c = 0; c < n; ++c) v.push_back(binary_value(c, M, B));
  return v;
}

/// Walks the model along one chunk of ascending patterns: |x| grows within each sign half.
struct walker {
  model const* m;
  std::size_t i = 0;
  walker(model const& mm, std::uint32_t first) : m(&mm) {
    std::uint32_t const a = first & 0x7FFFFFFFu;
    i = a < 0x7F800000u ? m->first_index(static_cast<double>(as_float(a))) : 0;
  }
  /// Model index of finite |x| (patterns must come in ascending order within the sign half).
  std::size_t index(std::uint32_t a) {
    double const ax = static_cast<double>(as_float(a));
    while (i < m->boundary.size() && m->past(ax, i)) ++i;
    return i;
  }
};

/// A signed format (E4M3, E5M2, BF16): code = sign | index; overflow (and +-inf input) gives
/// `max_code` when saturating, else `overflow_code`; NaN compared as NaN-ness.
template <class Convert, class IsNan>
std::uint64_t sweep_signed(char const* what, model const& m, std::uint32_t sign_bit, std::uint32_t max_code,
                           std::uint32_t overflow_code, bool saturate, Convert convert, IsNan is_nan) {
  return sweep_chunks(what, [&](std::uint32_t first) {
    return [&, w = walker(m, first)](std::uint32_t u, std::uint32_t& got, std::uint32_t& want) mutable {
      got = convert(as_float(u));
      std::uint32_t const a = u & 0x7FFFFFFFu;
      std::uint32_t const sign = (u >> 31) ? sign_bit : 0u;
      if (a > 0x7F800000u) {  // NaN in, NaN out
        want = overflow_code | sign_bit;
        return is_nan(got);
      }
      std::size_t const i = a == 0x7F800000u ? m.boundary.size() : w.index(a);
      want = sign | (i < m.boundary.size() ? static_cast<std::uint32_t>(i)
                     : saturate            ? max_code
                                           : overflow_code);
      return got == want || (is_nan(got) && is_nan(want));
    };
  });
}

/// E8M0 (unsigned, sign ignored): index = code, overflow and +-inf give 0xFE saturating, else NaN
/// (0xFF); NaN gives 0xFF.
template <class Convert>
std::uint64_t sweep_e8m0(char const* what, model const& m, bool saturate, Convert convert) {
  return sweep_chunks(what, [&](std::uint32_t first) {
    return [&, w = walker(m, first)](std::uint32_t u, std::uint32_t& got, std::uint32_t& want) mutable {
      got = convert(as_float(u));
      std::uint32_t const a = u & 0x7FFFFFFFu;
      std::size_t const i = a > 0x7F800000u ? 255 : a == 0x7F800000u ? m.boundary.size() : w.index(a);
      want = a > 0x7F800000u         ? 0xFFu
             : i < m.boundary.size() ? static_cast<std::uint32_t>(i)
             : saturate              ? 0xFEu
                                     : 0xFFu;
      return got == want;
    };
  });
}

// value of each format's codes, from the definitions (OCP FP8: E4M3 bias 7, max 448 = 0x7E, 0x7F
// NaN; E5M2 bias 15, 0x7C inf; BF16 = float32's upper half, bias 127; E8M0 2^(c-127), 0xFF NaN)
std::vector<double> const e4m3_values = binary_values(0x7F, 3, 7);      // codes 0..0x7E
std::vector<double> const e5m2_values = binary_values(0x7C, 2, 15);     // codes 0..0x7B
std::vector<double> const bf16_values = binary_values(0x7F80, 7, 127);  // codes 0..0x7F7F
std::vector<double> e8m0_values() {
  std::vector<double> v;
  for (int c = 0; c < 255; ++c) v.push_back(std::ldexp(1.0, c - 127));
  return v;
}

}  // namespace

TEST_CASE("model: decode of every code equals the float64 value of the format definition") {
  for (std::uint32_t c = 0; c < 256; ++c) {
    auto const b = static_cast<std::uint8_t>(c);
    double const s = (c & 0x80) ? -1.0 : 1.0;
    if ((c & 0x7F) < 0x7F)
      CHECK(static_cast<double>(fp8moe::float8_e4m3_t::from_bits(b).to_float()) == s * e4m3_values[c & 0x7F]);
    else
      CHECK(fp8moe::float8_e4m3_t::from_bits(b).is_nan());
    if ((c & 0x7F) < 0x7C)
      CHECK(static_cast<double>(fp8moe::float8_e5m2_t::from_bits(b).to_float()) == s * e5m2_values[c & 0x7F]);
    else if ((c & 0x7F) == 0x7C)
      CHECK(static_cast<double>(fp8moe::float8_e5m2_t::from_bits(b).to_float()) == s * HUGE_VAL);
    else
      CHECK(fp8moe::float8_e5m2_t::from_bits(b).is_nan());
    if (c < 255)
      CHECK(static_cast<double>(fp8moe::float8_e8m0_t::from_bits(b).to_float()) ==
            std::ldexp(1.0, int(c) - 127));
    else
      CHECK(std::isnan(fp8moe::float8_e8m0_t::from_bits(b).to_float()));
  }
  for (std::uint32_t c = 0; c < 0x10000; ++c) {
    float const g = fp8moe::bfloat16_t::from_bits(static_cast<std::uint16_t>(c)).to_float();
    double const s = (c & 0x8000) ? -1.0 : 1.0;
    std::uint32_t const a = c & 0x7FFF;
    if (a < 0x7F80)
      CHECK(static_cast<double>(g) == s * bf16_values[a]);
    else if (a == 0x7F80)
      CHECK(static_cast<double>(g) == s * HUGE_VAL);
    else
      CHECK(std::isnan(g));
  }
}

TEST_CASE("model: float -> e4m3 / e5m2, both saturation modes, every float32 pattern") {
  model const e4 = nearest_even(e4m3_values, 480.0);    // 0x7F would be 480 (= NaN)
  model const e5 = nearest_even(e5m2_values, 65536.0);  // 0x7C = inf, "2^16"
  auto const nan4 = [](std::uint32_t b) {
    return fp8moe::float8_e4m3_t::from_bits(static_cast<std::uint8_t>(b)).is_nan();
  };
  auto const nan5 = [](std::uint32_t b) {
    return fp8moe::float8_e5m2_t::from_bits(static_cast<std::uint8_t>(b)).is_nan();
  };
  using fp8moe::saturation;
  CHECK(sweep_signed(
            "model e4m3 satfinite", e4, 0x80, 0x7E, 0x7F, true,
            [](float x) { return fp8moe::float8_e4m3_t::from_float(x, saturation::finite).bits(); },
            nan4) == 0);
  CHECK(sweep_signed(
            "model e4m3 nosat", e4, 0x80, 0x7E, 0x7F, false,
            [](float x) { return fp8moe::float8_e4m3_t::from_float(x, saturation::none).bits(); },
            nan4) == 0);
  CHECK(sweep_signed(
            "model e5m2 satfinite", e5, 0x80, 0x7B, 0x7C, true,
            [](float x) { return fp8moe::float8_e5m2_t::from_float(x, saturation::finite).bits(); },
            nan5) == 0);
  CHECK(sweep_signed(
            "model e5m2 nosat", e5, 0x80, 0x7B, 0x7C, false,
            [](float x) { return fp8moe::float8_e5m2_t::from_float(x, saturation::none).bits(); },
            nan5) == 0);
}

TEST_CASE("model: float -> bfloat16 (round to nearest even, overflow to inf), every float32 pattern") {
  model const bf = nearest_even(bf16_values, std::ldexp(1.0, 128));  // 0x7F80 = inf, "2^128"
  CHECK(sweep_signed(
            "model bf16 rn", bf, 0x8000, 0x7F80, 0x7F80, false,
            [](float x) { return fp8moe::bfloat16_t(x).bits(); },
            [](std::uint32_t b) { return (b & 0x7FFF) > 0x7F80; }) == 0);
}

TEST_CASE("model: float -> e8m0 toward zero / toward +inf, both saturation modes, every float32 pattern") {
  std::vector<double> const v = e8m0_values();
  model rz, rp;
  for (std::size_t c = 0; c < v.size(); ++c) {
    rz.boundary.push_back(c + 1 < v.size() ? v[c + 1] : std::ldexp(1.0, 128));  // [2^e, 2^(e+1)) -> e
    rp.boundary.push_back(v[c]);                                                // (2^(e-1), 2^e] -> e
  }
  rz.ties = tie::up;
  rp.ties = tie::down;
  using fp8moe::e8m0_rounding;
  using fp8moe::saturation;
  for (bool sat : {true, false}) {
    saturation const s = sat ? saturation::finite : saturation::none;
    CHECK(sweep_e8m0(sat ? "model e8m0 rz satfinite" : "model e8m0 rz nosat", rz, sat, [s](float x) {
            return fp8moe::float8_e8m0_t::from_float(x, e8m0_rounding::toward_zero, s).bits();
          }) == 0);
    CHECK(sweep_e8m0(sat ? "model e8m0 rp satfinite" : "model e8m0 rp nosat", rp, sat, [s](float x) {
            return fp8moe::float8_e8m0_t::from_float(x, e8m0_rounding::toward_pos_inf, s).bits();
          }) == 0);
  }
}

TEST_CASE(
    "model: float -> e8m0 nearest == value-nearest (ml_dtypes) except float32 subnormals in (2^-127, "
    "1.5*2^-127)") {
  // ml_dtypes' rule: nearest power of two by value, the midpoint 1.5*2^e rounding up. The library
  // follows PyTorch's fp8e8m0fnu_from_fp32_value instead, which differs exactly on the float32
  // subnormals strictly between 2^-127 and 1.5*2^-127 (patterns 0x00400001..0x005FFFFF, either
  // sign): 2^-126 (0x01) there, ml_dtypes 2^-127 (0x00). docs/numerics.md says so.
  std::vector<double> const v = e8m0_values();
  model nr;
  for (std::size_t c = 0; c < v.size(); ++c) nr.boundary.push_back(1.5 * v[c]);
  nr.ties = tie::up;
  std::atomic<std::uint64_t> outside{0};
  auto const lib = [](float x) {
    return fp8moe::float8_e8m0_t::from_float(x, fp8moe::e8m0_rounding::nearest, fp8moe::saturation::finite)
        .bits();
  };
  std::uint64_t const mismatches = sweep_chunks("model e8m0 nearest (ml_dtypes)", [&](std::uint32_t first) {
    return [&, w = walker(nr, first)](std::uint32_t u, std::uint32_t& got, std::uint32_t& want) mutable {
      got = lib(as_float(u));
      std::uint32_t const a = u & 0x7FFFFFFFu;
      std::size_t const i = a > 0x7F800000u ? 255 : a == 0x7F800000u ? nr.boundary.size() : w.index(a);
      want = a > 0x7F800000u ? 0xFFu : i < nr.boundary.size() ? static_cast<std::uint32_t>(i) : 0xFEu;
      bool const pytorch_range = a > 0x00400000u && a < 0x00600000u;
      if (got != want && !(pytorch_range && got == 0x01 && want == 0x00)) outside.fetch_add(1);
      return got == want;
    };
  });
  CHECK(outside.load() == 0);                            // no other difference
  CHECK(mismatches == 2 * (0x00600000u - 0x00400001u));  // and every pattern of the range differs
}
