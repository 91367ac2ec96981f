// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// numeric/: constexpr use, the published test vectors (fp8_numerics.md §7), numeric_limits,
// NVIDIA interop, and (nvcc build) the packed device conversions against the host path.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "fp8moe/numeric/numeric.hpp"
#if defined(FP8MOE_TEST_NV_INTEROP) || FP8MOE_CUDA_COMPILER
#include "fp8moe/numeric/cuda/nv_interop.hpp"
#endif
#if FP8MOE_CUDA_COMPILER
#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/numeric/cuda/convert.cuh"
#endif

using namespace fp8moe;

namespace {
constexpr float f32(std::uint32_t u) {
  return fp8moe::bit_cast<float>(u);
}
constexpr std::uint8_t e4(std::uint32_t u, saturation s = saturation::finite) {
  return float8_e4m3_t::from_float(f32(u), s).bits();
}
constexpr std::uint8_t e5(std::uint32_t u, saturation s = saturation::finite) {
  return float8_e5m2_t::from_float(f32(u), s).bits();
}
constexpr auto nosat = saturation::none;
}  // namespace

// ---- constexpr proofs (compile-time evaluation of the whole conversion path)
static_assert(float8_e4m3_t(1.0f).bits() == 0x38 && float8_e5m2_t(1.0f).bits() == 0x3C);
static_assert(float8_e4m3_t(448.0f).to_float() == 448.0f);
static_assert(float8_e4m3_t::from_bits(0x01).to_float() == 0x1p-9f);
static_assert(float8_e5m2_t::from_bits(0x01).to_float() == 0x1p-16f);
static_assert(float8_e8m0_t(3.0f).bits() == 0x81 && float8_e8m0_t::from_bits(0x7F).to_float() == 1.0f);
static_assert(bfloat16_t(1.0f).bits() == 0x3F80);
static_assert(std::numeric_limits<float8_e4m3_t>::max().to_float() == 448.0f);
static_assert(std::numeric_limits<float8_e5m2_t>::max().to_float() == 57344.0f);
static_assert(max_finite_v<float8_e4m3_t> == 448.0f && max_finite_v<float8_e5m2_t> == 57344.0f);

TEST_CASE("e4m3/e5m2 encode: published vectors (fp8_numerics.md §7.1)") {
  struct row {
    std::uint32_t in;
    std::uint8_t e4s, e4n, e5s, e5n;
  };
  constexpr row rows[] = {
      {0x00000000, 0x00, 0x00, 0x00, 0x00}, {0x80000000, 0x80, 0x80, 0x80, 0x80},
      {0x2edbe6ff, 0x00, 0x00, 0x00, 0x00}, {0xaedbe6ff, 0x80, 0x80, 0x80, 0x80},
      {0x3a800000, 0x00, 0x00, 0x14, 0x14}, {0x3ac00000, 0x01, 0x01, 0x16, 0x16},
      {0x3b000000, 0x01, 0x01, 0x18, 0x18}, {0x3b400000, 0x02, 0x02, 0x1A, 0x1A},
      {0x3ba00000, 0x02, 0x02, 0x1D, 0x1D}, {0x3be00000, 0x04, 0x04, 0x1F, 0x1F},
      {0x3c600000, 0x07, 0x07, 0x23, 0x23}, {0x3c700000, 0x08, 0x08, 0x24, 0x24},
      {0x3c800000, 0x08, 0x08, 0x24, 0x24}, {0x3f800000, 0x38, 0x38, 0x3C, 0x3C},
      {0x3f880000, 0x38, 0x38, 0x3C, 0x3C}, {0x3f900000, 0x39, 0x39, 0x3C, 0x3C},
      {0x3f980000, 0x3A, 0x3A, 0x3D, 0x3D}, {0x3fb00000, 0x3B, 0x3B, 0x3E, 0x3E},
      {0xbf880000, 0xB8, 0xB8, 0xBC, 0xBC}, {0x3e99999a, 0x2A, 0x2A, 0x35, 0x35},
      {0x43700000, 0x77, 0x77, 0x5C, 0x5C}, {0x43800000, 0x78, 0x78, 0x5C, 0x5C},
      {0x43880000, 0x78, 0x78, 0x5C, 0x5C}, {0x43d00000, 0x7D, 0x7D, 0x5E, 0x5E},
      {0x43e00000, 0x7E, 0x7E, 0x5F, 0x5F}, {0x43e08000, 0x7E, 0x7E, 0x5F, 0x5F},
      {0x43e7ffff, 0x7E, 0x7E, 0x5F, 0x5F}, {0x43e80000, 0x7E, 0x7E, 0x5F, 0x5F},
      {0x43e80001, 0x7E, 0x7F, 0x5F, 0x5F}, {0x43ef8000, 0x7E, 0x7F, 0x5F, 0x5F},
      {0x43f00000, 0x7E, 0x7F, 0x60, 0x60}, {0x43fa0000, 0x7E, 0x7F, 0x60, 0x60},
      {0xc3e80000, 0xFE, 0xFE, 0xDF, 0xDF}, {0xc3e80001, 0xFE, 0xFF, 0xDF, 0xDF},
      {0xc3f00000, 0xFE, 0xFF, 0xE0, 0xE0}, {0x37000000, 0x00, 0x00, 0x00, 0x00},
      {0x37400000, 0x00, 0x00, 0x01, 0x01}, {0x37800000, 0x00, 0x00, 0x01, 0x01},
      {0x37c00000, 0x00, 0x00, 0x02, 0x02}, {0x38200000, 0x00, 0x00, 0x02, 0x02},
      {0x38800000, 0x00, 0x00, 0x04, 0x04}, {0x47600000, 0x7E, 0x7F, 0x7B, 0x7B},
      {0x476fffff, 0x7E, 0x7F, 0x7B, 0x7B}, {0x47700000, 0x7E, 0x7F, 0x7B, 0x7C},
      {0x47800000, 0x7E, 0x7F, 0x7B, 0x7C}, {0xc7700000, 0xFE, 0xFF, 0xFB, 0xFC},
      {0x7f7fffff, 0x7E, 0x7F, 0x7B, 0x7C}, {0x7f800000, 0x7E, 0x7F, 0x7B, 0x7C},
      {0xff800000, 0xFE, 0xFF, 0xFB, 0xFC},
  };
  for (auto const& r : rows) {
    CAPTURE(r.in);
    CHECK(e4(r.in) == r.e4s);
    CHECK(e4(r.in, nosat) == r.e4n);
    CHECK(e5(r.in) == r.e5s);
    CHECK(e5(r.in, nosat) == r.e5n);
  }
  // NaN inputs: canonical 0x7F in both formats and modes (cuda float path drops the sign)
  for (std::uint32_t nan : {0x7fc00000u, 0xffc00000u, 0x7f800001u}) {
    CHECK(e4(nan) == 0x7F);
    CHECK(e4(nan, nosat) == 0x7F);
    CHECK(e5(nan) == 0x7F);
    CHECK(e5(nan, nosat) == 0x7F);
  }
}

TEST_CASE("e8m0 encode: published vectors (fp8_numerics.md §7.2)") {
  using R = e8m0_rounding;
  struct row {
    std::uint32_t in;
    std::uint8_t rz_sat, rz_nosat, rp_sat, rp_nosat, pytorch_nearest;
  };
  constexpr row rows[] = {
      {0x00000000, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x80000000, 0x00, 0x00, 0x00, 0x00, 0x00},
      {0x00000001, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x00400000, 0x00, 0x00, 0x00, 0x00, 0x00},
      {0x00400001, 0x00, 0x00, 0x01, 0x01, 0x01}, {0x00800000, 0x01, 0x01, 0x01, 0x01, 0x01},
      {0x00800001, 0x01, 0x01, 0x02, 0x02, 0x01}, {0x3f800000, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F},
      {0x3f800001, 0x7F, 0x7F, 0x80, 0x80, 0x7F}, {0x3fb504f3, 0x7F, 0x7F, 0x80, 0x80, 0x7F},
      {0x3fc00000, 0x7F, 0x7F, 0x80, 0x80, 0x80}, {0x3fe00000, 0x7F, 0x7F, 0x80, 0x80, 0x80},
      {0x40000000, 0x80, 0x80, 0x80, 0x80, 0x80}, {0x40400000, 0x80, 0x80, 0x81, 0x81, 0x81},
      {0x3f400000, 0x7E, 0x7E, 0x7F, 0x7F, 0x7F}, {0x43e00000, 0x87, 0x87, 0x88, 0x88, 0x88},
      {0x3b124925, 0x76, 0x76, 0x77, 0x77, 0x76}, {0x7f000000, 0xFE, 0xFE, 0xFE, 0xFE, 0xFE},
      {0x7f200000, 0xFE, 0xFE, 0xFE, 0xFF, 0xFE}, {0x7f400000, 0xFE, 0xFE, 0xFE, 0xFF, 0xFF},
      {0x7f7fffff, 0xFE, 0xFE, 0xFE, 0xFF, 0xFF}, {0x7f800000, 0xFE, 0xFF, 0xFE, 0xFF, 0xFF},
      {0xff800000, 0xFE, 0xFF, 0xFE, 0xFF, 0xFF}, {0x7fc00000, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
      {0xbf800000, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F}, {0xbfc00000, 0x7F, 0x7F, 0x80, 0x80, 0x80},
  };
  for (auto const& r : rows) {
    CAPTURE(r.in);
    float const x = f32(r.in);
    CHECK(float8_e8m0_t::from_float(x, R::toward_zero, saturation::finite).bits() == r.rz_sat);
    CHECK(float8_e8m0_t::from_float(x, R::toward_zero, saturation::none).bits() == r.rz_nosat);
    CHECK(float8_e8m0_t::from_float(x, R::toward_pos_inf, saturation::finite).bits() == r.rp_sat);
    CHECK(float8_e8m0_t::from_float(x, R::toward_pos_inf, saturation::none).bits() == r.rp_nosat);
    CHECK(float8_e8m0_t::from_float(x, R::nearest, saturation::none).bits() == r.pytorch_nearest);
  }
  CHECK(float8_e8m0_t::from_bits(0x00).to_float() == 0x1p-127f);
  CHECK(std::isnan(float8_e8m0_t::from_bits(0xFF).to_float()));
  CHECK(float8_e8m0_t::from_exponent(-8).to_float() == 0x1p-8f);
  CHECK(float8_e8m0_t::from_exponent(300).bits() == 0xFE);
}

// E8M0 `nearest` on float32 subnormals: the library follows PyTorch, not ml_dtypes (docs/numerics.md).
namespace {
/// ml_dtypes' float8_e8m0fnu rule, computed independently in double: the nearest power of two by
/// value, the midpoint 1.5*2^e rounding up (x >= 1.5*2^e -> 2^(e+1)); positive finite x only.
std::uint8_t e8m0_value_nearest(float x) {
  int e = 0;
  double const m = std::frexp(static_cast<double>(x), &e);  // x = m 2^e, m in [0.5, 1)
  int const up = m >= 0.75 ? 1 : 0;                         // x >= 1.5 * 2^(e-1)
  return static_cast<std::uint8_t>(std::clamp(e - 1 + up + 127, 0, 254));
}
}  // namespace

TEST_CASE(
    "e8m0 nearest follows PyTorch fp8e8m0fnu_from_fp32_value: subnormals in (2^-127, 1.5*2^-127) give "
    "2^-126") {
  // PyTorch reads a float32 subnormal as 0.f * 2^-126 and rounds its field to nearest even: anything
  // above 2^-127 goes up to 2^-126 (0x01); 2^-127 itself is a tie kept at 0x00.
  for (std::uint32_t a = 0x00400001u; a < 0x00600000u; ++a) {
    if (float8_e8m0_t::from_float(f32(a), e8m0_rounding::nearest).bits() != 0x01 ||
        float8_e8m0_t::from_float(f32(a | 0x80000000u), e8m0_rounding::nearest).bits() != 0x01) {
      CAPTURE(a);
      FAIL_CHECK("expected 0x01");
      break;
    }
  }
  CHECK(float8_e8m0_t::from_float(f32(0x00410000u), e8m0_rounding::nearest).bits() ==
        0x01);  // the example
  CHECK(float8_e8m0_t::from_float(f32(0x00400000u), e8m0_rounding::nearest).bits() ==
        0x00);  // 2^-127 exactly
  CHECK(float8_e8m0_t::from_float(f32(0x00600000u), e8m0_rounding::nearest).bits() == 0x01);  // 1.5*2^-127
  CHECK(float8_e8m0_t::from_float(f32(0x003FFFFFu), e8m0_rounding::nearest).bits() == 0x00);
}

TEST_CASE(
    "e8m0 nearest differs from ml_dtypes (value-nearest: 0x00) only on subnormals in (2^-127, 1.5*2^-127)") {
  // ml_dtypes' answer computed here from its rule; the library agrees with it on every positive
  // float32 from the smallest subnormal to 2^-100 except that range (the whole range is 2^32-strided
  // in test_numeric_model). In that range ml_dtypes gives 0x00, the library 0x01 (PyTorch).
  std::uint64_t differ = 0, differ_outside = 0;
  for (std::uint32_t a = 1; a < 0x0D800000u; a += (a < 0x00800000u ? 1u : 97u)) {
    std::uint8_t const lib = float8_e8m0_t::from_float(f32(a), e8m0_rounding::nearest).bits();
    std::uint8_t const ml = e8m0_value_nearest(f32(a));
    if (lib == ml) continue;
    ++differ;
    bool const in_range = a > 0x00400000u && a < 0x00600000u;
    if (!in_range || lib != 0x01 || ml != 0x00) ++differ_outside;
  }
  CHECK(differ_outside == 0);
  CHECK(differ == 0x00600000u - 0x00400001u);  // every subnormal of the range, nothing else
  CHECK(e8m0_value_nearest(f32(0x00410000u)) == 0x00);
  CHECK(e8m0_value_nearest(3.0f) == 0x81);  // 3 = 1.5 * 2: the midpoint rounds up to 4, as the library
  CHECK(float8_e8m0_t::from_float(3.0f, e8m0_rounding::nearest).bits() == 0x81);
}

TEST_CASE("decode: every e4m3/e5m2 code against the format definition (independent of encode)") {
  for (int c = 0; c < 256; ++c) {
    auto const b = static_cast<std::uint8_t>(c);
    double const s = (b & 0x80) ? -1.0 : 1.0;
    {  // E4M3: bias 7, 3 mantissa bits, only S.1111.111 is NaN
      int const e = (b >> 3) & 0xF, m = b & 7;
      float const got = float8_e4m3_t::from_bits(b).to_float();
      if (e == 15 && m == 7)
        CHECK(std::isnan(got));
      else {
        double const want = e == 0 ? s * std::ldexp(m / 8.0, -6) : s * std::ldexp(1.0 + m / 8.0, e - 7);
        CHECK(static_cast<double>(got) == want);
        CHECK(std::signbit(got) == ((b & 0x80) != 0));
      }
    }
    {  // E5M2: bias 15, IEEE-style specials
      int const e = (b >> 2) & 0x1F, m = b & 3;
      float const got = float8_e5m2_t::from_bits(b).to_float();
      if (e == 31)
        CHECK((m == 0 ? std::isinf(got) : std::isnan(got)));
      else {
        double const want = e == 0 ? s * std::ldexp(m / 4.0, -14) : s * std::ldexp(1.0 + m / 4.0, e - 15);
        CHECK(static_cast<double>(got) == want);
      }
    }
  }
}

TEST_CASE("numeric_limits match the OCP tables") {
  using L4 = std::numeric_limits<float8_e4m3_t>;
  using L5 = std::numeric_limits<float8_e5m2_t>;
  CHECK(L4::max().bits() == 0x7E);
  CHECK(L4::lowest().to_float() == -448.0f);
  CHECK(L4::min().to_float() == 0x1p-6f);
  CHECK(L4::denorm_min().to_float() == 0x1p-9f);
  CHECK(L4::epsilon().to_float() == 0.125f);
  CHECK(L4::epsilon().bits() == 0x20);
  CHECK(L4::round_error().bits() == 0x30);
  CHECK(L4::quiet_NaN().is_nan());
  CHECK_FALSE(L4::has_infinity);
  CHECK(L5::max().to_float() == 57344.0f);
  CHECK(L5::min().to_float() == 0x1p-14f);
  CHECK(L5::denorm_min().to_float() == 0x1p-16f);
  CHECK(L5::epsilon().to_float() == 0.25f);
  CHECK(L5::infinity().is_inf());
  CHECK(L5::quiet_NaN().bits() == 0x7E);
  CHECK(std::numeric_limits<bfloat16_t>::max().to_float() == 0x1.FEp127f);
  CHECK(std::numeric_limits<bfloat16_t>::epsilon().to_float() == 0x1p-7f);
  CHECK(std::numeric_limits<float8_e8m0_t>::max().to_float() == 0x1p127f);
}

TEST_CASE("comparison and negation follow IEEE semantics") {
  auto const a = float8_e4m3_t(1.0f), b = float8_e4m3_t(2.0f);
  CHECK(a < b);
  CHECK(b > a);
  CHECK(a <= a);
  CHECK((-a).to_float() == -1.0f);
  CHECK(float8_e4m3_t(0.0f) == float8_e4m3_t(-0.0f));
  auto const nan = std::numeric_limits<float8_e4m3_t>::quiet_NaN();
  CHECK_FALSE(nan == nan);
  CHECK(bfloat16_t(3.0f) > bfloat16_t(2.0f));
  CHECK(static_cast<double>(float8_e5m2_t(1.5f)) == 1.5);
  CHECK(float8_e4m3_t(1.0).bits() == 0x38);
}

TEST_CASE("bfloat16: RNE ties and NaN") {
  CHECK(bfloat16_t(f32(0x3F808000)).bits() == 0x3F80);  // tie, even down
  CHECK(bfloat16_t(f32(0x3F818000)).bits() == 0x3F82);  // tie, even up
  CHECK(bfloat16_t(f32(0x7F7FFFFF)).bits() == 0x7F80);  // rounds to inf
  CHECK(bfloat16_t(f32(0xFFC00001)).bits() == 0x7FFF);  // NaN canonical (cuda)
  CHECK(bfloat16_t(-2.5f).to_float() == -2.5f);
}

#if defined(FP8MOE_TEST_NV_INTEROP) || FP8MOE_CUDA_COMPILER
TEST_CASE("interop with cuda_fp8.h / cuda_bf16.h types preserves bits") {
  for (int c = 0; c < 256; ++c) {
    auto const b = static_cast<std::uint8_t>(c);
    CHECK(from_nv(to_nv(float8_e4m3_t::from_bits(b))).bits() == b);
    CHECK(from_nv(to_nv(float8_e5m2_t::from_bits(b))).bits() == b);
    CHECK(from_nv(to_nv(float8_e8m0_t::from_bits(b))).bits() == b);
  }
  // NVIDIA's constructors saturate like our default
  CHECK(from_nv(__nv_fp8_e4m3(1000.0f)).bits() == float8_e4m3_t(1000.0f).bits());
  CHECK(from_nv(__nv_fp8_e5m2(-1e6f)).bits() == float8_e5m2_t(-1e6f).bits());
  CHECK(from_nv(to_nv(bfloat16_t(1.5f))).bits() == bfloat16_t(1.5f).bits());
}
#endif

#if FP8MOE_CUDA_COMPILER
namespace {
// Converts a strided sweep of float bit patterns on the device with the packed instructions.
__global__ void device_convert_kernel(std::uint64_t start, std::uint64_t step, std::int64_t n,
                                      std::uint8_t* e4, std::uint8_t* e5, float* back4, float* back5,
                                      std::uint16_t* bf) {
  std::int64_t const i = 2 * (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
  if (i >= n) return;
  float const x0 = fp8moe::bit_cast<float>(static_cast<std::uint32_t>(start + step * i));
  float const x1 = fp8moe::bit_cast<float>(static_cast<std::uint32_t>(start + step * (i + 1)));
  std::uint16_t const p4 = fp8moe::cuda::cvt_float2_to_fp8x2<e4m3_format>(x0, x1);
  std::uint16_t const p5 = fp8moe::cuda::cvt_float2_to_fp8x2<e5m2_format>(x0, x1);
  e4[i] = p4 & 0xFF;
  e4[i + 1] = p4 >> 8;
  e5[i] = p5 & 0xFF;
  e5[i + 1] = p5 >> 8;
  float2 const d4 = fp8moe::cuda::cvt_fp8x2_to_float2<e4m3_format>(p4);
  float2 const d5 = fp8moe::cuda::cvt_fp8x2_to_float2<e5m2_format>(p5);
  back4[i] = d4.x;
  back4[i + 1] = d4.y;
  back5[i] = d5.x;
  back5[i + 1] = d5.y;
  std::uint32_t const b2 = fp8moe::cuda::cvt_float2_to_bf16x2(x0, x1);
  bf[i] = b2 & 0xFFFF;
  bf[i + 1] = b2 >> 16;
}
}  // namespace

TEST_CASE("device packed conversions equal the host conversion (strided 2^32 sweep)") {
  constexpr std::int64_t n = 1 << 24;  // every 256th bit pattern, plus an odd offset
  constexpr std::uint64_t step = 256, start = 0x55;
  std::uint8_t *e4, *e5;
  float *b4, *b5;
  std::uint16_t* bf;
  FP8MOE_CUDA_CHECK(cudaMallocManaged(&e4, n));
  FP8MOE_CUDA_CHECK(cudaMallocManaged(&e5, n));
  FP8MOE_CUDA_CHECK(cudaMallocManaged(&b4, n * 4));
  FP8MOE_CUDA_CHECK(cudaMallocManaged(&b5, n * 4));
  FP8MOE_CUDA_CHECK(cudaMallocManaged(&bf, n * 2));
  device_convert_kernel<<<(n / 2 + 255) / 256, 256>>>(start, step, n, e4, e5, b4, b5, bf);
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    float const x = fp8moe::bit_cast<float>(static_cast<std::uint32_t>(start + step * i));
    auto const h4 = float8_e4m3_t(x);
    auto const h5 = float8_e5m2_t(x);
    // NaN inputs: PTX only promises "a NaN", so compare NaN-ness there, bits everywhere else
    bool ok = h4.is_nan() ? float8_e4m3_t::from_bits(e4[i]).is_nan() : e4[i] == h4.bits();
    ok = ok && (h5.is_nan() ? float8_e5m2_t::from_bits(e5[i]).is_nan() : e5[i] == h5.bits());
    ok = ok && (std::isnan(x) ? bfloat16_t::from_bits(bf[i]).is_nan() : bf[i] == bfloat16_t(x).bits());
    float const w4 = h4.to_float(), w5 = h5.to_float();
    ok = ok && (std::isnan(w4) ? std::isnan(b4[i]) : std::memcmp(&w4, &b4[i], 4) == 0);
    ok = ok && (std::isnan(w5) ? std::isnan(b5[i]) : std::memcmp(&w5, &b5[i], 4) == 0);
    bad += !ok;
  }
  CHECK(bad == 0);
  cudaFree(e4);
  cudaFree(e5);
  cudaFree(b4);
  cudaFree(b5);
  cudaFree(bf);
}
#endif
