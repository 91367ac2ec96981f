// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Exhaustive oracle tests: every one of the 2^32 float32 bit patterns converted by fp8moe and by
// NVIDIA's cuda_fp8.h / cuda_bf16.h host conversions (compiled with the host compiler), in every
// mode. NaN outputs are compared as NaN-ness (cuda also returns canonical codes, so bits match).
#include <doctest/doctest.h>

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <cstring>

#include "exhaustive_sweep.hpp"
#include "fp8moe/numeric/numeric.hpp"

namespace {

using fp8moe::test::as_float;
using fp8moe::test::sweep;

template <class T>
bool fp8_matches(std::uint32_t u, fp8moe::saturation sat, __nv_saturation_t nv_sat,
                 __nv_fp8_interpretation_t interp, std::uint32_t& got, std::uint32_t& want) {
  float const x = as_float(u);
  got = T::from_float(x, sat).bits();
  want = __nv_cvt_float_to_fp8(x, nv_sat, interp);
  if (got == want) return true;
  return T::from_bits(static_cast<std::uint8_t>(got)).is_nan() &&
         T::from_bits(static_cast<std::uint8_t>(want)).is_nan();
}

}  // namespace

TEST_CASE("exhaustive: float -> e4m3 saturating == __nv_cvt_float_to_fp8(__NV_SATFINITE)") {
  CHECK(sweep("e4m3 satfinite", [](std::uint32_t u, std::uint32_t& g, std::uint32_t& w) {
          return fp8_matches<fp8moe::float8_e4m3_t>(u, fp8moe::saturation::finite, __NV_SATFINITE, __NV_E4M3,
                                                    g, w);
        }) == 0);
}

TEST_CASE("exhaustive: float -> e4m3 non-saturating == __nv_cvt_float_to_fp8(__NV_NOSAT)") {
  CHECK(sweep("e4m3 nosat", [](std::uint32_t u, std::uint32_t& g, std::uint32_t& w) {
          return fp8_matches<fp8moe::float8_e4m3_t>(u, fp8moe::saturation::none, __NV_NOSAT, __NV_E4M3, g, w);
        }) == 0);
}

TEST_CASE("exhaustive: float -> e5m2 saturating == __nv_cvt_float_to_fp8(__NV_SATFINITE)") {
  CHECK(sweep("e5m2 satfinite", [](std::uint32_t u, std::uint32_t& g, std::uint32_t& w) {
          return fp8_matches<fp8moe::float8_e5m2_t>(u, fp8moe::saturation::finite, __NV_SATFINITE, __NV_E5M2,
                                                    g, w);
        }) == 0);
}

TEST_CASE("exhaustive: float -> e5m2 non-saturating == __nv_cvt_float_to_fp8(__NV_NOSAT)") {
  CHECK(sweep("e5m2 nosat", [](std::uint32_t u, std::uint32_t& g, std::uint32_t& w) {
          return fp8_matches<fp8moe::float8_e5m2_t>(u, fp8moe::saturation::none, __NV_NOSAT, __NV_E5M2, g, w);
        }) == 0);
}

TEST_CASE("exhaustive: float -> bfloat16 == __float2bfloat16_rn") {
  CHECK(sweep("bf16 rn", [](std::uint32_t u, std::uint32_t& g, std::uint32_t& w) {
          float const x = as_float(u);
          g = fp8moe::bfloat16_t(x).bits();
          __nv_bfloat16_raw r = __float2bfloat16_rn(x);
          w = r.x;
          return g == w;
        }) == 0);
}

TEST_CASE(
    "exhaustive: float -> e8m0 toward zero / toward +inf, both saturation modes == __nv_cvt_float_to_e8m0") {
  using fp8moe::e8m0_rounding;
  using fp8moe::saturation;
  struct mode {
    e8m0_rounding r;
    saturation s;
    cudaRoundMode nr;
    __nv_saturation_t ns;
    char const* name;
  };
  for (mode m :
       {mode{e8m0_rounding::toward_zero, saturation::finite, cudaRoundZero, __NV_SATFINITE,
             "e8m0 rz satfinite"},
        mode{e8m0_rounding::toward_zero, saturation::none, cudaRoundZero, __NV_NOSAT, "e8m0 rz nosat"},
        mode{e8m0_rounding::toward_pos_inf, saturation::finite, cudaRoundPosInf, __NV_SATFINITE,
             "e8m0 rp satfinite"},
        mode{e8m0_rounding::toward_pos_inf, saturation::none, cudaRoundPosInf, __NV_NOSAT,
             "e8m0 rp nosat"}}) {
    CHECK(sweep(m.name, [m](std::uint32_t u, std::uint32_t& g, std::uint32_t& w) {
            float const x = as_float(u);
            g = fp8moe::float8_e8m0_t::from_float(x, m.r, m.s).bits();
            w = __nv_cvt_float_to_e8m0(x, m.ns, m.nr);
            return g == w;
          }) == 0);
  }
}

TEST_CASE("every code decodes like cuda_fp8.h (e4m3, e5m2, e8m0) and bf16 decodes exactly") {
  for (int c = 0; c < 256; ++c) {
    auto const b = static_cast<std::uint8_t>(c);
    __half_raw h4 = __nv_cvt_fp8_to_halfraw(b, __NV_E4M3);
    __half_raw h5 = __nv_cvt_fp8_to_halfraw(b, __NV_E5M2);
    float const w4 = __half2float(__half(h4));
    float const w5 = __half2float(__half(h5));
    float const g4 = fp8moe::float8_e4m3_t::from_bits(b).to_float();
    float const g5 = fp8moe::float8_e5m2_t::from_bits(b).to_float();
    if (w4 != w4)
      CHECK(g4 != g4);
    else
      CHECK(std::memcmp(&g4, &w4, 4) == 0);
    if (w5 != w5)
      CHECK(g5 != g5);
    else
      CHECK(std::memcmp(&g5, &w5, 4) == 0);
    // non-NaN codes round-trip in both saturation modes
    if (!fp8moe::float8_e4m3_t::from_bits(b).is_nan()) {
      CHECK(fp8moe::float8_e4m3_t::from_float(g4).bits() == b);
      CHECK(fp8moe::float8_e4m3_t::from_float(g4, fp8moe::saturation::none).bits() == b);
    }
    if (!fp8moe::float8_e5m2_t::from_bits(b).is_nan()) {
      CHECK(fp8moe::float8_e5m2_t::from_float(g5, fp8moe::saturation::none).bits() == b);
    }
    __nv_bfloat16_raw e = __nv_cvt_e8m0_to_bf16raw(b);
    float const we = __bfloat162float(__nv_bfloat16(e));
    float const ge = fp8moe::float8_e8m0_t::from_bits(b).to_float();
    if (we != we)
      CHECK(ge != ge);
    else
      CHECK(std::memcmp(&ge, &we, 4) == 0);
  }
  for (int c = 0; c < 65536; ++c) {
    auto const b = static_cast<std::uint16_t>(c);
    __nv_bfloat16_raw r;
    r.x = b;
    float const w = __bfloat162float(__nv_bfloat16(r));
    float const g = fp8moe::bfloat16_t::from_bits(b).to_float();
    if (w != w)
      CHECK(g != g);
    else
      CHECK(std::memcmp(&g, &w, 4) == 0);
  }
}
