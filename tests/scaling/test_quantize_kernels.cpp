// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// scaling/host kernels (linked into test_scaling): the transpose's non-temporal output rows at every
// 16-byte offset within a cache line and the fallback steps of the 16-bit power-of-two encode, each
// kernel family against the portable loops bit for bit, nothing written outside the output.
// "[isa]" cases: FP8MOE_TEST_HOST_ISA picks the family as in test_scaling.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fp8moe/scaling/scaling.hpp"
#include "test_support.hpp"

namespace test_quantize_kernels {

using namespace fp8moe;
using namespace fp8moe::scaling;

/// The hand-written families under test: FP8MOE_TEST_HOST_ISA "avx2" / "avx512" (test_scaling.cpp
/// exits 77 first where the CPU lacks it), "none": none, unset: every family this CPU has.
std::vector<host_isa> kernel_families() {
  char const* env = std::getenv("FP8MOE_TEST_HOST_ISA");
  std::string const want = env ? env : "";
  std::vector<host_isa> out;
  for (host_isa const i : {host_isa::avx2, host_isa::avx512})
    if (host_isa_supported(i) && (want.empty() || want == host_isa_name(i))) out.push_back(i);
  return out;
}

/// bf16 (R,C) ~ N(0,1) where, in every third column, each 128-row tile holds one value 2^13 times
/// larger: under a power-of-two scale the tile's small values encode as FP8 subnormals, so those
/// 64-column steps of the 16-bit encode fall back to the 32-bit one; a few exact zeros.
std::vector<bfloat16_t> spiky_input(std::int64_t R, std::int64_t C) {
  std::mt19937_64 g{77};
  std::normal_distribution<float> d{0.0f, 1.0f};
  std::vector<bfloat16_t> x(static_cast<std::size_t>(R * C));
  for (std::int64_t i = 0; i < R; ++i)
    for (std::int64_t j = 0; j < C; ++j) {
      float v = d(g);
      if (j % 3 == 0 && i % 128 == j % 128) v = std::ldexp(v < 0 ? -1.5f : 1.5f, 13);
      if ((i * C + j) % 1009 == 0) v = 0.0f;
      x[static_cast<std::size_t>(i * C + j)] = bfloat16_t(v);
    }
  return x;
}

/// transpose_requantize of x (R,C) into an output (C,R) that starts `offset` bytes past a 64-byte
/// boundary inside a guarded buffer: returns guard + data + guard bytes, then the scales' bits.
std::vector<std::uint8_t> transpose_into_guarded(host_isa isa, std::vector<bfloat16_t> const& x,
                                                 std::int64_t R, std::int64_t C, tensor_recipe const& r,
                                                 std::int64_t offset) {
  set_host_isa(isa);
  constexpr std::int64_t guard = 128;
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(R * C + 2 * guard + 64 + offset), 0xA5);
  auto const lead = static_cast<std::int64_t>((64 - reinterpret_cast<std::uintptr_t>(buf.data()) % 64) % 64);
  std::uint8_t* const data = buf.data() + lead + guard + offset;
  std::vector<float> sc(static_cast<std::size_t>(scale_rows(r.tile, C) * scale_cols(r.tile, R)));
  test::poison(sc);
  quantized_matrix_view<float8_e4m3_t> q{make_matrix(reinterpret_cast<float8_e4m3_t*>(data), C, R),
                                         make_matrix(sc.data(), scale_rows(r.tile, C), scale_cols(r.tile, R)),
                                         r.tile};
  transpose_requantize(host_executor{}, make_matrix(x.data(), R, C), r, q);
  std::vector<std::uint8_t> out(data - guard, data + R * C + guard);
  for (float const f : sc) {
    auto const u = fp8moe::bit_cast<std::uint32_t>(f);
    for (int b = 0; b < 4; ++b) out.push_back(static_cast<std::uint8_t>(u >> (8 * b)));
  }
  return out;
}

TEST_CASE(
    "[isa] transpose_requantize: non-temporal output rows at every line offset and the power-of-two "
    "encode's fallback steps equal the portable loops") {
  // R = 1040: output rows 1040 bytes apart, so they start at all four 16-byte offsets of a line;
  // (C,R) = 1.09 MB is over transpose_stream_min_bytes (non-temporal rows); 1040 = 8*128 + 16.
  constexpr std::int64_t R = 1040, C = 1100;
  auto const x = spiky_input(R, C);
  host_isa const was = active_host_isa();
  for (tensor_recipe const r : {deepseek_v3_ue8m0.activation, mxfp8.activation, deepseek_v3.activation}) {
    for (std::int64_t const offset : {0, 48}) {
      CAPTURE(r.tile.cols);
      CAPTURE(offset);
      auto const want = transpose_into_guarded(host_isa::portable, x, R, C, r, offset);
      // the portable loops against the row quantize of the explicit transpose (independent loops)
      std::vector<bfloat16_t> xt(x.size());
      for (std::int64_t i = 0; i < R; ++i)
        for (std::int64_t j = 0; j < C; ++j)
          xt[static_cast<std::size_t>(j * R + i)] = x[static_cast<std::size_t>(i * C + j)];
      auto const ref =
          quantize<float8_e4m3_t>(host_executor{}, make_matrix<bfloat16_t const>(xt.data(), C, R), r);
      std::int64_t bad = 0;
      for (std::int64_t i = 0; i < R * C; ++i)
        bad +=
            want[static_cast<std::size_t>(128 + i)] != ref.data.storage()[static_cast<std::size_t>(i)].bits();
      CHECK(bad == 0);
      for (std::int64_t i = 0; i < 128; ++i) {  // guards untouched
        CHECK(want[static_cast<std::size_t>(i)] == 0xA5);
        CHECK(want[static_cast<std::size_t>(128 + R * C + i)] == 0xA5);
      }
      for (host_isa const isa : kernel_families()) {
        CAPTURE(host_isa_name(isa));
        CHECK(transpose_into_guarded(isa, x, R, C, r, offset) == want);
      }
    }
  }
  set_host_isa(was);
}

}  // namespace test_quantize_kernels
