// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// scaling/: every preset and formula against the float64 oracle (oracle.hpp), published scale
// vectors (fp8_numerics.md §7.3), edge cases, errors, round-trip bounds, scale layouts,
// transpose-requantize and delayed scaling; (nvcc build) CUDA results equal the host path bit for bit.
// Cases named "[isa] ..." test one host kernel family against the portable loops: ctest runs them
// as test_scaling.avx2 / test_scaling.avx512 (skipped, exit 77, where the CPU lacks the family).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fp8moe/scaling/scaling.hpp"
#include "oracle.hpp"
#include "test_support.hpp"
#if FP8MOE_CUDA_COMPILER
#include "fp8moe/core/cuda/device_buffer.hpp"
#include "fp8moe/scaling/cuda/quantize.cuh"
#endif

using namespace fp8moe;
using namespace fp8moe::scaling;

namespace {

std::uint32_t bits(float f) {
  return fp8moe::bit_cast<std::uint32_t>(f);
}

/// FP8MOE_TEST_HOST_ISA selects the kernel families the "[isa]" cases test: "avx2" or "avx512"
/// (ctest's test_scaling.<isa>; the process exits 77, skipped, before any case runs when the CPU
/// lacks it), "none" (plain test_scaling: those cases are left to the per-family entries), unset:
/// every hand-written family this CPU has.
std::vector<host_isa> isas_under_test() {
  static std::vector<host_isa> const v = [] {
    std::vector<host_isa> out;
    char const* env = std::getenv("FP8MOE_TEST_HOST_ISA");
    std::string const want = env ? env : "";
    for (host_isa const i : {host_isa::avx2, host_isa::avx512}) {
      if (want.empty() ? host_isa_supported(i) : want == host_isa_name(i)) out.push_back(i);
    }
    if (!want.empty() && want != "none" && out.empty()) {
      std::fprintf(stderr, "FP8MOE_TEST_HOST_ISA=%s: expected avx2, avx512 or none\n", want.c_str());
      std::exit(1);
    }
    for (host_isa const i : out) {
      if (!host_isa_supported(i)) {
        std::printf("this CPU has no %s: the %s kernel tests are skipped\n", host_isa_name(i),
                    host_isa_name(i));
        std::exit(77);
      }
    }
    return out;
  }();
  return v;
}
[[maybe_unused]] bool const isa_checked_at_start = !isas_under_test().empty();

/// Selects a kernel family for a scope, restoring the previous one.
struct isa_scope {
  host_isa was;
  explicit isa_scope(host_isa i) : was(set_host_isa(i)) {}
  ~isa_scope() { set_host_isa(was); }
  isa_scope(isa_scope const&) = delete;
  isa_scope& operator=(isa_scope const&) = delete;
};

/// portable plus every family the CPU has.
std::vector<host_isa> supported_isas() {
  std::vector<host_isa> v;
  for (host_isa const i : {host_isa::portable, host_isa::avx2, host_isa::avx512})
    if (host_isa_supported(i)) v.push_back(i);
  return v;
}
bool same_float(float a, double b) {
  return std::isnan(a) ? std::isnan(b) : bits(a) == bits(static_cast<float>(b));
}

/// Test data whose magnitude changes every 37 elements (2^-20 .. 2^20), so tiles see many amaxes.
template <class In>
std::vector<In> make_input(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 g{seed};
  std::normal_distribution<float> d{0.0f, 1.0f};
  std::uniform_int_distribution<int> e{-20, 20};
  std::vector<In> v(static_cast<std::size_t>(n));
  int ex = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (i % 37 == 0) ex = e(g);
    v[static_cast<std::size_t>(i)] = In(std::ldexp(d(g), ex));
  }
  return v;
}

template <class In>
double to_d(In x) {
  return static_cast<double>(fp8moe::to_float(x));
}

template <class In>
float vfi_of(tensor_recipe const& r) {
  return std::is_same_v<In, bfloat16_t> && r.tile != per_tensor ? 3.38953139e38f : 3.40282347e38f;
}

/// Compares a quantized result with the oracle: every data byte and every scale, bit for bit.
/// Returns the number of mismatches (and reports the first).
template <class In, class Q>
std::int64_t oracle_mismatches(tensor_recipe const& r, matrix_view<In const> x, Q const& q) {
  std::int64_t const R = x.rows, C = x.cols;
  std::int64_t const tr = resolve_tile(r.tile.rows, R), tc = resolve_tile(r.tile.cols, C);
  std::int64_t bad = 0;
  for (std::int64_t b = 0; b < scale_rows(r.tile, R); ++b) {
    for (std::int64_t t = 0; t < scale_cols(r.tile, C); ++t) {
      std::vector<double> tile;
      for (std::int64_t i = b * tr; i < std::min(R, (b + 1) * tr); ++i)
        for (std::int64_t j = t * tc; j < std::min(C, (t + 1) * tc); ++j) tile.push_back(to_d(x(i, j)));
      oracle::scale const s =
          oracle::tile_scale(r, oracle::amax(r.formula, tile.begin(), tile.end()), vfi_of<In>(r));
      if (!same_float(q.scales(b, t), s.sf)) {
        if (bad++ == 0)
          MESSAGE("scale (" << b << "," << t << "): got " << q.scales(b, t) << " want " << s.sf);
      }
      for (std::int64_t i = b * tr; i < std::min(R, (b + 1) * tr); ++i) {
        for (std::int64_t j = t * tc; j < std::min(C, (t + 1) * tc); ++j) {
          std::uint8_t const want = oracle::quantize(r, to_d(x(i, j)), s);
          if (q.data(i, j).bits() != want) {
            if (bad++ == 0)
              MESSAGE("data (" << i << "," << j << ") x=" << to_d(x(i, j)) << ": got 0x" << std::hex
                               << int(q.data(i, j).bits()) << " want 0x" << int(want) << std::dec);
          }
        }
      }
    }
  }
  return bad;
}

struct named_recipe {
  char const* name;
  tensor_recipe r;
};

std::vector<named_recipe> all_recipes() {
  std::vector<named_recipe> v = {
      {"deepseek_v3.activation", deepseek_v3.activation},
      {"deepseek_v3.weight", deepseek_v3.weight},
      {"deepseek_v3_ue8m0.activation", deepseek_v3_ue8m0.activation},
      {"deepseek_v3_ue8m0.weight", deepseek_v3_ue8m0.weight},
      {"te_current.activation", te_current.activation},
      {"te_current.gradient(e5m2)", te_current.gradient},
      {"te_blockwise.activation", te_blockwise.activation},
      {"te_blockwise.weight", te_blockwise.weight},
      {"mxfp8", mxfp8.activation},
      {"mxfp8_ocp", mxfp8_ocp.activation},
      {"e5m2_weights.weight", e5m2_weights.weight},
      {"deepseek_v3_inference 1x128", {.tile = tile_1x128, .formula = scale_formula::deepseek_v3_inference}},
      {"deepseek_v3_inference ue8m0",
       {.tile = tile_1x128,
        .encoding = scale_encoding::ue8m0,
        .formula = scale_formula::deepseek_v3_inference}},
      {"deepep 1x128", {.tile = tile_1x128, .formula = scale_formula::deepep}},
      {"deepep ue8m0",
       {.tile = tile_1x128, .encoding = scale_encoding::ue8m0, .formula = scale_formula::deepep}},
      {"sglang eps 1e-10", {.tile = tile_1x128, .amax_floor = 1e-10f}},
      {"te 128x1 pow2",
       {.tile = tile_128x1,
        .encoding = scale_encoding::power_of_two,
        .formula = scale_formula::transformer_engine,
        .amax_floor = 0.0f}},
      {"per-row deepgemm", {.tile = per_row}},
      {"te per-tensor e4m3 nosat",
       {.tile = per_tensor,
        .formula = scale_formula::transformer_engine,
        .amax_floor = 0.0f,
        .sat = saturation::none}},
      {"mx 32x32 e5m2",
       {.format = element_format::e5m2,
        .tile = {32, 32},
        .encoding = scale_encoding::ue8m0,
        .formula = scale_formula::te_mxfp8,
        .amax_floor = 0.0f}},
      {"ocp mx 32x1 e5m2",
       {.format = element_format::e5m2,
        .tile = {32, 1},
        .encoding = scale_encoding::ue8m0,
        .pow2_rounding = e8m0_rounding::toward_zero,
        .formula = scale_formula::ocp_mx,
        .amax_floor = 0.0f}},
  };
  return v;
}

template <class T, class In>
std::int64_t run_oracle_case(tensor_recipe const& r, std::vector<In> const& xs, std::int64_t R,
                             std::int64_t C, bool mn_major = false) {
  host_executor exec;
  std::vector<T> data(static_cast<std::size_t>(R * C));
  test::poison(data);
  scale_layout const l =
      mn_major ? mn_major_scale_layout(r.tile, R, C) : row_major_scale_layout(r.tile, R, C);
  std::vector<float> sc(static_cast<std::size_t>(l.required_elements()));
  test::poison(sc);
  quantized_matrix_view<T> q{make_matrix(data.data(), R, C), make_scale_view(sc.data(), l), r.tile};
  auto const x = make_matrix(xs.data(), R, C);
  quantize(exec, x, r, q);
  return oracle_mismatches(r, x, q);
}

template <class In>
std::int64_t run_oracle_any(tensor_recipe const& r, std::vector<In> const& xs, std::int64_t R, std::int64_t C,
                            bool mn_major = false) {
  if (r.format == element_format::e4m3) return run_oracle_case<float8_e4m3_t>(r, xs, R, C, mn_major);
  return run_oracle_case<float8_e5m2_t>(r, xs, R, C, mn_major);
}

}  // namespace

// ---- compile-time checks
static_assert(checked(deepseek_v3) == deepseek_v3 && checked(mxfp8) == mxfp8 &&
              checked(te_delayed) == te_delayed);
static_assert(!recipe_problem(tensor_recipe{.tile = {-1, 128}}).empty());
static_assert(!recipe_problem(tensor_recipe{.tile = {1, 64}, .formula = scale_formula::ocp_mx}).empty());
static_assert(!recipe_problem(tensor_recipe{.amax_floor = 0.0f}).empty());  // deepgemm fp32 needs a floor
static_assert(compute_tile_scale(deepseek_v3.activation, 448.0f).sf == 1.0f);
static_assert(compute_tile_scale(te_current.activation, 448.0f).multiplier == 1.0f);
static_assert(mn_major_scale_layout(5, 3) == scale_layout{5, 3, 1, 8});
static_assert(mn_major_scale_layout(5, 3).required_elements() == 24);
static_assert(row_major_scale_layout(4, 1).required_elements() == 4);
static_assert(packed_ue8m0_layout(6, 5) == scale_layout{6, 2, 1, 8});

TEST_CASE("scale formulas reproduce the published vectors (fp8_numerics.md §7.3)") {
  tensor_recipe const te = te_current.activation;
  tensor_recipe const te_p2{.tile = per_tensor,
                            .encoding = scale_encoding::power_of_two,
                            .formula = scale_formula::transformer_engine,
                            .amax_floor = 0.0f};
  tensor_recipe const dg = deepseek_v3.activation, dg8 = deepseek_v3_ue8m0.activation;
  tensor_recipe const sgl{.tile = tile_1x128, .formula = scale_formula::deepep, .amax_floor = 1e-10f};
  tensor_recipe const sgl8{.tile = tile_1x128,
                           .encoding = scale_encoding::ue8m0,
                           .formula = scale_formula::deepep,
                           .amax_floor = 1e-10f};
  struct row {
    float amax, te_scale, te_pow2, dg_sf, dg8_sf, sgl_sf;
    std::uint8_t sgl_byte, te_mx_byte, ocp_byte;
  };
  float const inf = INFINITY;
  row const rows[] = {
      {0.0f, 1.0f, 1.0f, 2.23214e-07f, 0x1p-22f, 2.23214e-13f, 0x55, 0x00, 0x00},
      {1e-30f, 4.48e+32f, 0x1p108f, 2.23214e-07f, 0x1p-22f, 2.23214e-13f, 0x55, 0x13, 0x13},
      {1e-10f, 4.48e+12f, 0x1p42f, 2.23214e-07f, 0x1p-22f, 2.23214e-13f, 0x55, 0x55, 0x55},
      {1e-4f, 4.48e+06f, 0x1p22f, 2.23214e-07f, 0x1p-22f, 2.23214e-07f, 0x69, 0x69, 0x69},
      {1.0f, 448.0f, 256.0f, 0.00223214f, 0x1p-8f, 0.00223214f, 0x77, 0x77, 0x77},
      {3.0f, 149.333f, 128.0f, 0.00669643f, 0x1p-7f, 0.00669643f, 0x78, 0x78, 0x78},
      {448.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 0x7F, 0x7F, 0x7F},
      {500.0f, 0.896f, 0.5f, 1.11607f, 2.0f, 1.11607f, 0x80, 0x80, 0x7F},
      {65504.0f, 0.00683928f, 0x1p-8f, 146.214f, 256.0f, 146.214f, 0x87, 0x87, 0x86},
      {3e38f, 1.49333e-36f, 0x1p-120f, 6.69643e+35f, 0x1p120f, 6.69643e+35f, 0xF7, 0xF7, 0xF6},
      {inf, 1.0f, 1.0f, inf, 0x1p127f, inf, 0xFE, 0xFE, 0xFF},
  };
  // the table prints 6 significant digits: compare non-power-of-two entries to 5e-6 relative
  auto near6 = [](float a, float b) { return std::fabs(a - b) <= 5e-6f * std::fabs(b) || a == b; };
  for (row const& w : rows) {
    CAPTURE(w.amax);
    CHECK(near6(compute_tile_scale(te, w.amax).multiplier, w.te_scale));
    CHECK(compute_tile_scale(te_p2, w.amax).multiplier == w.te_pow2);
    CHECK(near6(compute_tile_scale(dg, w.amax).sf, w.dg_sf));
    CHECK(compute_tile_scale(dg8, w.amax).sf == w.dg8_sf);
    if (w.amax < inf) {  // DeepEP: inf amax gives inf sf (no table entry for the byte path)
      CHECK(near6(compute_tile_scale(sgl, w.amax).sf, w.sgl_sf));
      CHECK(
          float8_e8m0_t::from_float(compute_tile_scale(sgl8, w.amax).sf, e8m0_rounding::toward_zero).bits() ==
          w.sgl_byte);
    }
    tile_scale const mx = compute_tile_scale(mxfp8_tensor, w.amax);
    CHECK(float8_e8m0_t::from_float(mx.sf, e8m0_rounding::toward_zero).bits() == w.te_mx_byte);
    tile_scale const ocp = compute_tile_scale(mxfp8_ocp_tensor, w.amax);
    if (w.ocp_byte == 0xFF)
      CHECK(std::isnan(ocp.sf));
    else
      CHECK(float8_e8m0_t::from_float(ocp.sf, e8m0_rounding::toward_zero).bits() == w.ocp_byte);
  }
  // NaN amax: TE -> 1; DeepGEMM UE8M0 -> 2^127; TE MXFP8 / OCP -> NaN scale
  float const qnan = std::numeric_limits<float>::quiet_NaN();
  CHECK(compute_tile_scale(te, qnan).multiplier == 1.0f);
  CHECK(compute_tile_scale(dg8, qnan).sf == 0x1p127f);
  CHECK(std::isnan(compute_tile_scale(mxfp8_tensor, qnan).sf));
  CHECK(std::isnan(compute_tile_scale(mxfp8_ocp_tensor, qnan).sf));
  // TE margin: scale = (448 * 2^-2) / amax
  CHECK(compute_tile_scale(tensor_recipe{.tile = per_tensor,
                                         .formula = scale_formula::transformer_engine,
                                         .amax_floor = 0.0f,
                                         .margin = 2},
                           1.0f)
            .multiplier == 112.0f);
}

TEST_CASE("element helpers: amax NaN policy, quantize_value, dequantize_value, delayed_scale_update") {
  float const qnan = std::numeric_limits<float>::quiet_NaN();
  // propagate: a NaN wins and stays; ignore: a NaN contributes nothing. +-Inf counts as inf.
  std::uint32_t p = 0, i = 0;
  for (float v : {1.0f, -3.0f, qnan, 2.0f}) {
    p = amax_combine(p, abs_bits(v), false);
    i = amax_combine(i, abs_bits(v), true);
  }
  CHECK(std::isnan(amax_from_bits(p)));
  CHECK(amax_from_bits(i) == 3.0f);
  CHECK(amax_from_bits(amax_combine(i, abs_bits(-INFINITY), true)) == INFINITY);
  CHECK(abs_bits(bfloat16_t(-2.0f)) == bits(2.0f));
  bool const ign = amax_ignores_nan(scale_formula::transformer_engine) &&
                   amax_ignores_nan(scale_formula::te_mxfp8) && amax_ignores_nan(scale_formula::deepep);
  bool const prop = !amax_ignores_nan(scale_formula::deepgemm) && !amax_ignores_nan(scale_formula::ocp_mx) &&
                    !amax_ignores_nan(scale_formula::deepseek_v3_inference);
  CHECK(ign);
  CHECK(prop);
  // quantize_value: multiply (or divide) then RNE with the requested saturation
  tile_scale const s{2.0f, 0.5f, false};
  CHECK(quantize_value<float8_e4m3_t>(1.5f, s, saturation::finite).bits() == float8_e4m3_t(3.0f).bits());
  CHECK(quantize_value<float8_e4m3_t>(300.0f, s, saturation::finite).bits() == 0x7E);
  CHECK(quantize_value<float8_e4m3_t>(300.0f, s, saturation::none).bits() == 0x7F);
  CHECK(quantize_value<float8_e5m2_t>(-1e6f, s, saturation::none).bits() == 0xFC);
  tile_scale const d{0.0f, 3.0f, true};
  CHECK(quantize_value<float8_e4m3_t>(3.0f, d, saturation::finite).bits() == 0x38);  // 3 / 3 = 1
  CHECK(dequantize_value(float8_e4m3_t(1.5f), 0.25f) == 0.375f);
  CHECK(std::isnan(dequantize_value(float8_e4m3_t::from_bits(0x7F), 1.0f)));
  // delayed_scale_update: keep-previous rules and FLT_MAX
  CHECK(delayed_scale_update(te_delayed.activation, 2.0f, 5.0f) == 224.0f);
  CHECK(delayed_scale_update(te_delayed.activation, 0.0f, 5.0f) == 5.0f);
  CHECK(delayed_scale_update(te_delayed.activation, qnan, 5.0f) == 5.0f);
  CHECK(delayed_scale_update(te_delayed.activation, INFINITY, 5.0f) == 5.0f);
  CHECK(delayed_scale_update(te_delayed.activation, 1e-39f, 5.0f) == std::numeric_limits<float>::max());
  tensor_recipe p2 = te_delayed.activation;
  p2.encoding = scale_encoding::power_of_two;
  CHECK(delayed_scale_update(p2, 3.0f, 1.0f) == 128.0f);  // 149.33 floored to a power of two
}

TEST_CASE("CUDA row-tile mapping: every element of every shape is covered exactly once (host emulation)") {
  CHECK(lanes_per_row_tile(128, 2) == 16);
  CHECK(lanes_per_row_tile(128, 4) == 32);
  CHECK(lanes_per_row_tile(32, 2) == 4);
  CHECK(lanes_per_row_tile(32, 4) == 8);
  CHECK(lanes_per_row_tile(64, 4) == 16);
  CHECK(lanes_per_row_tile(0, 2) == 0);
  CHECK(lanes_per_row_tile(96, 2) == 0);   // 12 lanes: not a power of two
  CHECK(lanes_per_row_tile(512, 2) == 0);  // 64 lanes: more than a warp
  for (int eb : {2, 4}) {
    for (std::int64_t tc : {32, 128}) {
      int const L = lanes_per_row_tile(tc, eb);
      REQUIRE(L != 0);
      std::int64_t const vec = 16 / eb;
      for (auto const& shape : {std::pair<std::int64_t, std::int64_t>{3, 300}, {5, 128}, {1, 7}, {7, 33}}) {
        std::int64_t const R = shape.first, C = shape.second;
        std::vector<int> hits(static_cast<std::size_t>(R * C), 0);
        std::int64_t const warps = row_tile_warps(R, C, L, eb);
        bool groups_ok = true;
        for (std::int64_t w = 0; w < warps + 1; ++w) {  // one extra warp must be all dead
          for (int lane = 0; lane < 32; ++lane) {
            row_tile_lane const x = row_tile_lane_of(w, lane, L, eb, R, C);
            if (w == warps) groups_ok = groups_ok && !x.live;
            if (!x.live) continue;
            // the group's lanes cover one tile: lane 0 of the group starts it
            if (lane % L == 0) groups_ok = groups_ok && x.col == x.tile * tc;
            for (std::int64_t c = x.col; c < std::min(x.col + vec, C); ++c)
              ++hits[static_cast<std::size_t>(x.row * C + c)];
          }
        }
        CHECK(groups_ok);
        bool once = true;
        for (int h : hits) once = once && h == 1;
        CHECK_MESSAGE(once, "eb " << eb << " tc " << tc << " shape " << R << "x" << C);
      }
    }
  }
}

TEST_CASE("scale formulas equal the float64 oracle over 4000 amax values per formula") {
  std::mt19937_64 g{7};
  std::uniform_int_distribution<std::uint32_t> u{0, 0x7F7FFFFFu};
  int bad = 0;
  for (auto const& nr : all_recipes()) {
    for (int i = 0; i < 4000; ++i) {
      float const a = fp8moe::bit_cast<float>(u(g));  // every finite positive magnitude, subnormals too
      tile_scale const s = compute_tile_scale(nr.r, a);
      oracle::scale const o = oracle::tile_scale(nr.r, a);
      bool const ok = same_float(s.sf, o.sf) && same_float(s.multiplier, o.mult) && s.divide == o.divide;
      if (!ok && bad++ < 3) MESSAGE(nr.name << " amax " << a << ": sf " << s.sf << " vs " << o.sf);
    }
  }
  CHECK(bad == 0);
}

TEST_CASE(
    "quantize: every preset and formula equals the float64 oracle bit for bit (float and bf16, partial "
    "tiles)") {
  // 200 x 300 with 128 tiles: partial tiles on both edges (200 = 128 + 72, 300 = 2*128 + 44)
  constexpr std::int64_t R = 200, C = 300;
  auto const xf = make_input<float>(R * C, 11);
  auto const xb = make_input<bfloat16_t>(R * C, 12);
  for (host_isa const isa : supported_isas()) {
    CAPTURE(host_isa_name(isa));
    isa_scope const scope(isa);
    for (auto const& nr : all_recipes()) {
      CAPTURE(nr.name);
      CHECK(run_oracle_any(nr.r, xf, R, C) == 0);
      CHECK(run_oracle_any(nr.r, xb, R, C) == 0);
    }
  }
}

namespace {
/// compute_tile_scales (the kernel family in use) against the scalar compute_tile_scale.
std::int64_t scale_batch_mismatches() {
  // every formula x encoding x rounding, over all bf16 amax patterns (NaN, inf, 0, subnormal
  // included) and random float patterns, in batches of 128 and one ragged batch
  std::vector<std::uint32_t> amax;
  for (std::uint32_t b = 0; b < 65536; ++b) amax.push_back((b & 0x7FFFu) << 16);
  std::mt19937 g{77};
  for (int i = 0; i < 20000; ++i) amax.push_back(static_cast<std::uint32_t>(g()) & 0x7FFFFFFFu);
  std::vector<tensor_recipe> rs;
  for (auto const& nr : all_recipes()) rs.push_back(nr.r);
  for (scale_formula const f : {scale_formula::deepgemm, scale_formula::deepseek_v3_inference,
                                scale_formula::deepep, scale_formula::transformer_engine})
    for (scale_encoding const e : {scale_encoding::fp32, scale_encoding::power_of_two, scale_encoding::ue8m0})
      for (e8m0_rounding const rnd :
           {e8m0_rounding::toward_pos_inf, e8m0_rounding::toward_zero, e8m0_rounding::nearest})
        for (element_format const fmt : {element_format::e4m3, element_format::e5m2}) {
          tensor_recipe const r{.format = fmt,
                                .tile = tile_1x128,
                                .encoding = e,
                                .pow2_rounding = rnd,
                                .formula = f,
                                .amax_floor = f == scale_formula::transformer_engine ? 0.0f : 1e-4f,
                                .margin = f == scale_formula::transformer_engine ? 1 : 0};
          if (recipe_problem(r).empty()) rs.push_back(r);
        }
  CHECK(rs.size() > 40);
  std::int64_t bad = 0;
  for (tensor_recipe const& r : rs) {
    for (float const vfi : {3.40282347e38f, 3.38953139e38f}) {
      for (std::size_t i0 = 0; i0 < amax.size(); i0 += 128) {
        std::int64_t const n =
            static_cast<std::int64_t>(std::min<std::size_t>(i0 == 0 ? 77 : 128, amax.size() - i0));
        tile_scale got[128];
        scaling::detail::compute_tile_scales(r, amax.data() + i0, n, vfi, got);
        for (std::int64_t t = 0; t < n; ++t) {
          tile_scale const want =
              compute_tile_scale(r, amax_from_bits(amax[i0 + static_cast<std::size_t>(t)]), vfi);
          bool const ok = bits(got[t].sf) == bits(want.sf) &&
                          bits(got[t].multiplier) == bits(want.multiplier) && got[t].divide == want.divide;
          if (!ok && bad++ == 0)
            MESSAGE("amax bits 0x" << std::hex << amax[i0 + static_cast<std::size_t>(t)] << std::dec);
        }
      }
    }
  }
  return bad;
}
}  // namespace

TEST_CASE(
    "compute_tile_scales (batched, vectorised per scale kind) equals compute_tile_scale for every kind") {
  isa_scope const scope(host_isa::portable);
  CHECK(scale_batch_mismatches() == 0);
}

TEST_CASE("[isa] compute_tile_scales of each kernel family equals compute_tile_scale for every kind") {
  for (host_isa const isa : isas_under_test()) {
    CAPTURE(host_isa_name(isa));
    isa_scope const scope(isa);
    CHECK(scale_batch_mismatches() == 0);
  }
}

TEST_CASE("simd_encode_mode: NaN tiles and bad scales portable, overflow-free tiles plain, the rest clamp") {
  using scaling::detail::simd_encode;
  using scaling::detail::simd_encode_mode;
  CHECK(scaling::detail::overflow_threshold_bits<e4m3_format>() == bits(464.0f));
  CHECK(scaling::detail::overflow_threshold_bits<e5m2_format>() == bits(61440.0f));
  tile_scale const one{1.0f, 1.0f, false};
  float const inf = std::numeric_limits<float>::infinity();
  CHECK(simd_encode_mode<e4m3_format>(bits(463.99997f), one) == simd_encode::plain);
  CHECK(simd_encode_mode<e4m3_format>(bits(464.0f), one) == simd_encode::clamp);
  CHECK(simd_encode_mode<e5m2_format>(bits(61436.0f), one) == simd_encode::plain);
  CHECK(simd_encode_mode<e5m2_format>(bits(61440.0f), one) == simd_encode::clamp);
  CHECK(simd_encode_mode<e4m3_format>(bits(4.0f), tile_scale{100.0f, 0.01f, false}) ==
        simd_encode::plain);  // 400
  CHECK(simd_encode_mode<e4m3_format>(bits(4.0f), tile_scale{120.0f, 0.01f, false}) ==
        simd_encode::clamp);  // 480
  CHECK(simd_encode_mode<e4m3_format>(bits(4.0f), tile_scale{0.0f, 0.01f, true}) ==
        simd_encode::plain);  // 4/0.01
  CHECK(simd_encode_mode<e4m3_format>(bits(5.0f), tile_scale{0.0f, 0.01f, true}) ==
        simd_encode::clamp);                                                        // 500
  CHECK(simd_encode_mode<e4m3_format>(0x7F800000u, one) == simd_encode::clamp);     // inf in the tile
  CHECK(simd_encode_mode<e4m3_format>(0x7F800001u, one) == simd_encode::portable);  // NaN in the tile
  CHECK(simd_encode_mode<e4m3_format>(0u, tile_scale{-1.0f, -1.0f, false}) == simd_encode::portable);
  CHECK(simd_encode_mode<e4m3_format>(0u, tile_scale{0.0f, 1.0f, false}) == simd_encode::portable);
  CHECK(simd_encode_mode<e4m3_format>(0u, tile_scale{inf, 0.0f, false}) == simd_encode::portable);
  CHECK(simd_encode_mode<e4m3_format>(0u, tile_scale{1.0f, inf, true}) == simd_encode::portable);
  CHECK(simd_encode_mode<e4m3_format>(0u, tile_scale{std::numeric_limits<float>::quiet_NaN(), 1.0f, false}) ==
        simd_encode::portable);
}

#if FP8MOE_SCALING_X86
namespace {
/// Encode of xs by the family `isa` (tiles of `tile` elements: for 100, 64 + 32 + a 4-element
/// tail per tile on AVX-512, 3 x 32 + 4 on AVX2; 32 and 128 stream across tiles) against the
/// scalar float_to_fp8_bits_select with the same saturation.
template <class F, bool Clamp, class In>
std::int64_t kernel_encode_mismatches(host_isa isa, std::vector<In> const& xs, tile_scale s, saturation sat,
                                      std::int64_t tile) {
  std::int64_t const n = static_cast<std::int64_t>(xs.size());
  std::vector<tile_scale> sc(static_cast<std::size_t>(ceil_div(n, tile)), s);
  std::vector<std::uint8_t> got(xs.size(), 0xAB);
  if (s.divide)
    scaling::detail::encode_tiles_kernel<F, true, Clamp>(isa, xs.data(), got.data(), n, tile, sc.data(), sat);
  else
    scaling::detail::encode_tiles_kernel<F, false, Clamp>(isa, xs.data(), got.data(), n, tile, sc.data(),
                                                          sat);
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    float const x = to_float(xs[i]);
    std::uint8_t const want = float_to_fp8_bits_select<F>(s.divide ? x / s.sf : x * s.multiplier, sat);
    if (got[i] != want && bad++ == 0)
      MESSAGE("x " << x << " k " << (s.divide ? s.sf : s.multiplier) << ": got 0x" << std::hex << int(got[i])
                   << " want 0x" << int(want) << std::dec);
  }
  return bad;
}

/// The inputs of `all` whose one-element tile has the given mode under scale s.
template <class F, class In>
std::vector<In> inputs_of_mode(std::vector<In> const& all, tile_scale s, scaling::detail::simd_encode mode) {
  std::vector<In> v;
  for (In const x : all)
    if (scaling::detail::simd_encode_mode<F>(abs_bits(x), s) == mode) v.push_back(x);
  return v;
}

template <class F, class In>
void check_kernel_encode(host_isa isa, std::vector<In> const& all, tile_scale s) {
  using scaling::detail::simd_encode;
  auto const plain = inputs_of_mode<F>(all, s, simd_encode::plain);
  auto clamp = inputs_of_mode<F>(all, s, simd_encode::clamp);
  clamp.insert(clamp.end(), plain.begin(), plain.end());  // a clamp run may hold plain tiles too
  CHECK(plain.size() > 1000);
  for (saturation const sat : {saturation::finite, saturation::none}) {
    for (std::int64_t const tile : {100, 32, 128}) {
      CAPTURE(tile);
      CHECK(kernel_encode_mismatches<F, false>(isa, plain, s, sat, tile) == 0);
      CHECK(kernel_encode_mismatches<F, true>(isa, clamp, s, sat, tile) == 0);
    }
  }
}
}  // namespace

TEST_CASE(
    "[isa] encode kernels equal float_to_fp8_bits_select on every bf16 input they accept, and random "
    "floats") {
  std::vector<bfloat16_t> all_bf16;
  for (std::uint32_t b = 0; b < 65536; ++b)
    all_bf16.push_back(bfloat16_t::from_bits(static_cast<std::uint16_t>(b)));
  std::mt19937 g{5};
  std::vector<float> rnd(1 << 18);
  for (float& f : rnd) f = fp8moe::bit_cast<float>(static_cast<std::uint32_t>(g()));
  for (host_isa const isa : isas_under_test()) {
    CAPTURE(host_isa_name(isa));
    for (float const k : {1.0f, 448.0f / 3.0f, 448.0f / 1e-4f, 0.0078125f, 3.1f, 1e-30f, 0x1p120f, 0x1p121f,
                          0x1p113f, 0x1p-100f}) {
      for (bool const divide : {false, true}) {
        tile_scale const s = divide ? tile_scale{1.0f / k, 1.0f / k, true} : tile_scale{k, 1.0f / k, false};
        CAPTURE(k);
        CAPTURE(divide);
        check_kernel_encode<e4m3_format>(isa, all_bf16, s);
        check_kernel_encode<e5m2_format>(isa, all_bf16, s);
        check_kernel_encode<e4m3_format>(isa, rnd, s);
        check_kernel_encode<e5m2_format>(isa, rnd, s);
      }
    }
  }
}
#endif

TEST_CASE("host kernel family: chosen by name, set_host_simd keeps its meaning, bad choices rejected") {
  host_isa const was = active_host_isa();
  CHECK(was == best_host_isa());
  CHECK(host_isa_supported(host_isa::portable));
  CHECK(std::string(host_isa_name(host_isa::avx2)) == "avx2");
  CHECK(std::string(host_isa_name(host_isa::avx512)) == "avx512");
  for (host_isa const i : supported_isas()) {
    isa_scope const scope(i);
    CHECK(active_host_isa() == i);
    CHECK(std::string(host_simd_kernel()) == host_isa_name(i));
  }
  CHECK(active_host_isa() == was);
  CHECK(set_host_simd(false) == (was != host_isa::portable));
  CHECK(std::string(host_simd_kernel()) == "portable");
  CHECK_FALSE(set_host_simd(true));
  CHECK(active_host_isa() == best_host_isa());
  try {
    set_host_isa(static_cast<host_isa>(7));
    FAIL("no exception");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK_MESSAGE(std::string(e.what()).find("'isa'") != std::string::npos, e.what());
  }
  CHECK(active_host_isa() == best_host_isa());
  for (host_isa const i : {host_isa::avx2, host_isa::avx512}) {
    if (host_isa_supported(i)) continue;
    try {  // unsupported: nothing changes
      set_host_isa(i);
      FAIL("no exception");
    } catch (fp8moe::error const& e) {
      CHECK(e.code() == errc::unsupported);
    }
    CHECK(active_host_isa() == best_host_isa());
  }
  set_host_isa(was);
}

TEST_CASE(
    "[isa] quantize: each kernel family and the portable loops give the same bits (NaN, Inf, overflow, "
    "tails)") {
  // widths hit every tail of the 64 / 32 / 16-element loops; NaN, Inf and huge values land in
  // some tiles only, so plain and non-plain tiles alternate within a row
  host_executor exec;
  for (std::int64_t const C : {1, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 300, 1000}) {
    constexpr std::int64_t R = 37;
    auto xf = make_input<float>(R * C, static_cast<std::uint64_t>(C));
    for (std::int64_t i = 0; i < R * C; i += 211)
      xf[static_cast<std::size_t>(i)] = std::numeric_limits<float>::quiet_NaN();
    for (std::int64_t i = 97; i < R * C; i += 401)
      xf[static_cast<std::size_t>(i)] = -std::numeric_limits<float>::infinity();
    for (std::int64_t i = 55; i < R * C; i += 307) xf[static_cast<std::size_t>(i)] = 3.0e38f;
    for (std::int64_t i = 13; i < R * C; i += 59) xf[static_cast<std::size_t>(i)] = -0.0f;
    std::vector<bfloat16_t> xb(xf.size());
    for (std::size_t i = 0; i < xf.size(); ++i) xb[i] = bfloat16_t(xf[i]);
    for (auto const& nr : all_recipes()) {
      CAPTURE(C);
      CAPTURE(nr.name);
      auto const run = [&](auto const& x, host_isa isa) {
        isa_scope const scope(isa);
        std::vector<std::uint8_t> out;
        auto const add = [&](auto const& q) {
          for (auto const v : q.data.storage()) out.push_back(v.bits());
          for (float const f : q.scales.storage()) {
            std::uint32_t const u = bits(f);
            for (int b = 0; b < 4; ++b) out.push_back(static_cast<std::uint8_t>(u >> (8 * b)));
          }
        };
        auto const xv = make_matrix(x.data(), R, C);
        if (nr.r.format == element_format::e4m3)
          add(quantize<float8_e4m3_t>(exec, xv, nr.r));
        else
          add(quantize<float8_e5m2_t>(exec, xv, nr.r));
        return out;
      };
      for (host_isa const isa : isas_under_test()) {
        CAPTURE(host_isa_name(isa));
        CHECK(run(xf, isa) == run(xf, host_isa::portable));
        CHECK(run(xb, isa) == run(xb, host_isa::portable));
      }
    }
  }
}

TEST_CASE("quantize: fp32 op order is reproduced on inputs at FP8 rounding ties") {
  // Random data almost never lands within an fp32 ulp of an FP8 rounding midpoint, so op-order
  // slips (x*(1/sf) vs x/sf vs x*(fmax/a)) would pass unnoticed. Here every tile's elements are
  // fl(midpoint * sf): the formulas disagree on some of them, and each must still match its oracle.
  constexpr std::int64_t R = 64, C = 128;
  std::mt19937_64 g{99};
  std::uniform_real_distribution<float> amax_d{0.01f, 1000.0f};
  std::uniform_int_distribution<int> code_d{8, 0x7C};
  std::vector<float> x(static_cast<std::size_t>(R * C));
  for (std::int64_t i = 0; i < R; ++i) {
    float const a = amax_d(g);
    float const sf = a / 448.0f;
    x[static_cast<std::size_t>(i * C)] = a;
    for (std::int64_t j = 1; j < C; ++j) {
      int const c = code_d(g);
      double const mid =
          (oracle::code_value(element_format::e4m3, c) + oracle::code_value(element_format::e4m3, c + 1)) / 2;
      x[static_cast<std::size_t>(i * C + j)] = static_cast<float>(mid * sf) * ((j & 1) ? 1.0f : -1.0f);
    }
  }
  tensor_recipe const dg{.tile = tile_1x128},
      ds{.tile = tile_1x128, .formula = scale_formula::deepseek_v3_inference};
  tensor_recipe const ep{.tile = tile_1x128, .formula = scale_formula::deepep};
  tensor_recipe const te{
      .tile = tile_1x128, .formula = scale_formula::transformer_engine, .amax_floor = 0.0f};
  for (tensor_recipe const& r : {dg, ds, ep, te}) CHECK(run_oracle_any(r, x, R, C) == 0);
  host_executor exec;
  auto const a = quantize(exec, make_matrix(x.data(), R, C), dg);
  auto const b = quantize(exec, make_matrix(x.data(), R, C), ds);
  auto const c = quantize(exec, make_matrix(x.data(), R, C), te);
  std::int64_t ab = 0, ac = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    ab += a.data.storage()[i].bits() != b.data.storage()[i].bits();
    ac += a.data.storage()[i].bits() != c.data.storage()[i].bits();
  }
  MESSAGE("elements where the op order changes the FP8 code: deepgemm vs deepseek_v3_inference "
          << ab << ", deepgemm vs transformer_engine " << ac << " of " << x.size());
  CHECK(ab > 0);
  CHECK(ac > 0);
}

TEST_CASE("quantize: MN-major TMA-aligned scale layout gives the same values as row-major") {
  constexpr std::int64_t R = 130, C = 260;
  auto const x = make_input<bfloat16_t>(R * C, 5);
  host_executor exec;
  tensor_recipe const r = deepseek_v3.activation;
  quantized_matrix<float8_e4m3_t> a(R, C, r.tile);
  quantize(exec, make_matrix(x.data(), R, C), r, a.view());
  scale_layout const l = mn_major_scale_layout(r.tile, R, C);
  CHECK(l.row_stride == 1);
  CHECK(l.col_stride == 132);  // round_up(130, 4): each K-column starts 16-byte aligned
  CHECK(l.required_elements() == 132 * 3);
  std::vector<float8_e4m3_t> data(R * C);
  std::vector<float> sc(static_cast<std::size_t>(l.required_elements()), -1.0f);
  quantized_matrix_view<float8_e4m3_t> b{make_matrix(data.data(), R, C), make_scale_view(sc.data(), l),
                                         r.tile};
  quantize(exec, make_matrix(x.data(), R, C), r, b);
  CHECK(std::memcmp(data.data(), a.data.data(), data.size()) == 0);
  for (std::int64_t i = 0; i < l.rows; ++i)
    for (std::int64_t j = 0; j < l.cols; ++j)
      CHECK(bits(sc[static_cast<std::size_t>(i + j * 132)]) == bits(a.scales(i, j)));
  CHECK(sc[130] == -1.0f);  // padding untouched
  CHECK(run_oracle_any(deepseek_v3.weight, x, R, C, true) == 0);
}

TEST_CASE("quantize: strided input and output views") {
  constexpr std::int64_t R = 9, C = 140, ld = 151;
  auto const buf = make_input<float>(R * ld, 3);
  auto const x = make_matrix(buf.data(), R, C, ld);
  std::vector<float8_e4m3_t> data(R * 160);
  std::vector<float> sc(R * 2);
  quantized_matrix_view<float8_e4m3_t> q{make_matrix(data.data(), R, C, 160), make_matrix(sc.data(), R, 2),
                                         tile_1x128};
  quantize(host_executor{}, x, deepseek_v3.activation, q);
  CHECK(oracle_mismatches(deepseek_v3.activation, matrix_view<float const>(x), q) == 0);
  // column-strided (transposed) input view
  matrix_view<float const> xt{buf.data(), C, R, 1, ld};
  quantized_matrix<float8_e4m3_t> qt(C, R, per_row);
  quantize(host_executor{}, xt, tensor_recipe{.tile = per_row}, qt.view());
  CHECK(oracle_mismatches(tensor_recipe{.tile = per_row}, xt, qt.view()) == 0);
}

TEST_CASE("quantize edge cases: zero tiles, tiny amax, amax at the max, NaN and Inf, empty tensors") {
  host_executor exec;
  constexpr std::int64_t C = 256;  // two 1x128 tiles per row
  std::vector<float> x(4 * C);
  for (std::int64_t i = 0; i < 4 * C; ++i)
    x[static_cast<std::size_t>(i)] = std::sin(0.37f * static_cast<float>(i));
  for (int j = 0; j < 128; ++j) x[static_cast<std::size_t>(j)] = 0.0f;           // row 0 tile 0: all zeros
  for (int j = 0; j < 128; ++j) x[static_cast<std::size_t>(128 + j)] *= 1e-30f;  // row 0 tile 1: tiny
  x[static_cast<std::size_t>(C + 5)] = 448.0f;                                   // row 1 tile 0: amax = max
  x[static_cast<std::size_t>(C + 130)] = -448.0f;                                // row 1 tile 1
  x[static_cast<std::size_t>(2 * C + 7)] = std::numeric_limits<float>::quiet_NaN();  // row 2 tile 0: NaN
  x[static_cast<std::size_t>(2 * C + 200)] = INFINITY;                               // row 2 tile 1: +inf
  x[static_cast<std::size_t>(3 * C + 1)] = 1e-42f;                                   // row 3: a subnormal
  for (auto const& nr : all_recipes()) {
    if (nr.r.tile.rows != 1 || nr.r.tile.cols == 0) continue;
    CAPTURE(nr.name);
    CHECK(run_oracle_any(nr.r, x, 4, C) == 0);
  }
  // named consequences, per formula (docs/scaling.md "NaN and Inf")
  auto q = quantize(exec, make_matrix(x.data(), 4, C), deepseek_v3.activation);
  CHECK(q.scales(0, 0) == static_cast<float>(1e-4f / 448.0f));  // zero tile: floored amax
  CHECK(q.data(0, 3).bits() == 0x00);
  CHECK(q.scales(1, 0) == 1.0f);
  CHECK(q.data(1, 5).bits() == 0x7E);             // amax exactly 448 -> 448
  CHECK(std::isnan(q.scales(2, 0)));              // DeepGEMM: NaN propagates into the scale
  CHECK(q.data(2, 0).bits() == 0x7F);             // ... and the whole tile is NaN
  CHECK(q.scales(2, 1) == INFINITY);              // Inf amax: sf = inf, 1/sf = 0
  CHECK(q.data(2, 200).bits() == 0x7F);           // inf * 0 = NaN
  CHECK((q.data(2, 201).bits() & 0x7F) == 0x00);  // finite * 0 = +-0
  auto t = quantize(exec, make_matrix(x.data(), 4, C), te_blockwise.activation);
  CHECK(t.scales(0, 0) == 1.0f);         // TE: amax 0 -> scale 1
  CHECK(!std::isnan(t.scales(2, 0)));    // TE: NaN element ignored by the amax
  CHECK(t.data(2, 7).bits() == 0x7F);    // the NaN element itself stays NaN
  CHECK(t.scales(2, 1) == 1.0f);         // TE: inf amax -> scale 1
  CHECK(t.data(2, 200).bits() == 0x7E);  // inf saturates to 448
  auto m = quantize(exec, make_matrix(x.data(), 4, C), mxfp8.activation);
  CHECK(m.scales(0, 0) == 0x1p-127f);  // TE MXFP8: zero block -> 0x00
  CHECK(m.scales(2, 6) == 0x1p127f);   // inf -> 0xFE
  auto o = quantize(exec, make_matrix(x.data(), 4, C), mxfp8_ocp.activation);
  CHECK(std::isnan(o.scales(2, 0)));  // OCP MX: NaN -> NaN scale
  CHECK(std::isnan(o.scales(2, 6)));  // inf -> NaN scale (0xFF)
  // empty tensors: nothing written, no throw
  for (auto [R, C2] : {std::pair<std::int64_t, std::int64_t>{0, 5}, {5, 0}, {0, 0}}) {
    std::vector<float> e(static_cast<std::size_t>(R * C2) + 1, 1.0f);
    auto qe = quantize(exec, make_matrix(e.data(), R, C2), deepseek_v3.weight);
    CHECK(qe.scales.rows() == scale_rows(block_128x128, R));
    CHECK(qe.scales.cols() == scale_cols(block_128x128, C2));
    host_matrix<float> y(R, C2);
    dequantize(exec, qe.view(), y.view());
    auto qt = quantize(exec, make_matrix(e.data(), R, C2), te_current.activation);
    CHECK(qt.scales.rows() == (R == 0 ? 0 : 1));
  }
}

TEST_CASE("quantize validates arguments before writing and names them") {
  host_executor exec;
  std::vector<float> x(8 * 256, 1.0f);
  std::vector<float8_e4m3_t> d(8 * 256, float8_e4m3_t::from_bits(0x55));
  std::vector<float> s(8 * 2, -7.0f);
  auto view = [&](std::int64_t sc_cols) {
    return quantized_matrix_view<float8_e4m3_t>{make_matrix(d.data(), 8, 256),
                                                make_matrix(s.data(), 8, sc_cols), tile_1x128};
  };
  auto const xv = make_matrix(x.data(), 8, 256);
  auto throws_naming = [&](auto&& f, char const* needle) {
    try {
      f();
      FAIL("no exception");
    } catch (fp8moe::error const& e) {
      CHECK(e.code() == errc::invalid_argument);
      CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
    }
  };
  throws_naming(
      [&] {
        quantize(exec, matrix_view<float const>{nullptr, 8, 256, 256, 1}, deepseek_v3.activation, view(2));
      },
      "'x'");
  throws_naming([&] { quantize(exec, xv, deepseek_v3.activation, view(3)); }, "'out.scales'");
  throws_naming([&] { quantize(exec, make_matrix(x.data(), 8, 256, 100), deepseek_v3.activation, view(2)); },
                "row_stride");
  throws_naming([&] { quantize(exec, xv, te_current.gradient, view(2)); },
                "'out.data'");  // e5m2 recipe, e4m3 out
  throws_naming([&] { quantize(exec, xv, te_delayed.activation, view(2)); }, "'recipe.source'");
  throws_naming([&] { quantize(exec, xv, tensor_recipe{.tile = {1, -4}}, view(2)); }, "'recipe'");
  throws_naming([&] { quantize(exec, xv, deepseek_v3.weight, view(2)); }, "'out.tile'");
  throws_naming([&] { quantize(exec, make_matrix(x.data(), 8, 200), deepseek_v3.activation, view(2)); },
                "'out.data'");
  throws_naming(
      [&] {
        quantize(exec, xv, deepseek_v3.activation,
                 quantized_matrix_view<float8_e4m3_t>{make_matrix(d.data(), 8, 256),
                                                      make_matrix<float>(nullptr, 8, 2), tile_1x128});
      },
      "'out.scales'");
  throws_naming([&] { (void)quantize<float8_e5m2_t>(exec, xv, deepseek_v3.activation); },
                "T (output element type)");
  // nothing was written by any failing call
  bool untouched = true;
  for (auto v : d) untouched = untouched && v.bits() == 0x55;
  for (float v : s) untouched = untouched && v == -7.0f;
  CHECK(untouched);
  // dequantize / transpose / packing errors
  quantized_matrix<float8_e4m3_t> q(8, 256, tile_1x128);
  host_matrix<float> y(8, 255);
  throws_naming([&] { dequantize(exec, q.view(), y.view()); }, "'y'");
  quantized_matrix_view<float8_e4m3_t> bad = q.view();
  bad.scales.cols = 1;
  host_matrix<float> y2(8, 256);
  throws_naming([&] { dequantize(exec, bad, y2.view()); }, "'q.scales'");
  quantized_matrix<float8_e4m3_t> qt(256, 8, tile_1x128);
  throws_naming([&] { transpose_requantize(exec, xv, deepseek_v3.weight, qt.view()); }, "'recipe.tile'");
  quantized_matrix<float8_e4m3_t> qt_wrong(8, 256, tile_1x128);
  throws_naming([&] { transpose_requantize(exec, xv, deepseek_v3.activation, qt_wrong.view()); },
                "'out.data'");
  host_matrix<float> nonpow2(2, 3, 0.75f);
  host_matrix<std::int32_t> packed(2, 1);
  throws_naming([&] { pack_ue8m0(exec, nonpow2.view(), packed.view()); }, "'scales'");
  host_matrix<std::int32_t> packed_bad(2, 2);
  throws_naming([&] { pack_ue8m0(exec, nonpow2.view(), packed_bad.view()); }, "'out'");
  std::vector<std::uint8_t> sw(10);
  throws_naming([&] { pack_mx_swizzled(exec, nonpow2.view(), make_vector(sw.data(), 10)); }, "'out'");
  throws_naming([&] { delayed_scaling st(deepseek_v3.activation); }, "'recipe.source'");
  throws_naming([&] { delayed_scaling st(te_delayed.activation, -1.0f); }, "'initial_scale'");
}

TEST_CASE("round trip: |x - dequantize(quantize(x))| within the derived bound, for every recipe") {
  // Bound per element (normal range): RNE to M mantissa bits is a relative error <= 2^-(M+1); the
  // fp32 scaling multiply adds <= 2^-24 relative and the dequant multiply <= 2^-24 relative; below
  // the FP8 normal range the absolute error is <= half a subnormal step: sf * 2^(-bias-M).
  // OCP MX may clamp (448, 512) to 448: error <= (|x|*mult - 448) * sf on those elements.
  constexpr std::int64_t R = 160, C = 320;
  auto const x = make_input<float>(R * C, 21);
  host_executor exec;
  for (auto const& nr : all_recipes()) {
    CAPTURE(nr.name);
    tensor_recipe const& r = nr.r;
    if (r.sat == saturation::none) continue;
    host_matrix<float> y(R, C);
    std::vector<float> ys(static_cast<std::size_t>(R * C));
    auto check = [&](auto const& q) {
      dequantize(exec, q.view(), y.view());
      int const M = oracle::mbits(r.format), B = oracle::bias(r.format);
      double worst = 0;
      for (std::int64_t i = 0; i < R; ++i) {
        for (std::int64_t j = 0; j < C; ++j) {
          double const xv = x[static_cast<std::size_t>(i * C + j)], sf = q.view().scale_at(i, j);
          double bound = std::fabs(xv) * (std::ldexp(1.0, -(M + 1)) + std::ldexp(1.0, -23)) +
                         sf * std::ldexp(1.0, -B - M) * (1 + 1e-6);
          if (r.formula == scale_formula::ocp_mx)
            bound = std::max(bound, (std::fabs(xv) / sf - oracle::fmax_of(r.format)) * sf * 1.0001);
          double const err = std::fabs(xv - y(i, j));
          worst = std::max(worst, err / bound);
          ys[static_cast<std::size_t>(i * C + j)] = y(i, j);
        }
      }
      CHECK(worst <= 1.0);
      // DeepGEMM's calc_diff between x and its round trip: E4M3 ~1e-3, E5M2 ~4e-3
      CHECK(test::calc_diff(x, ys) < (r.format == element_format::e4m3 ? 2e-3 : 8e-3));
    };
    if (r.format == element_format::e4m3)
      check(quantize<float8_e4m3_t>(exec, make_matrix(x.data(), R, C), r));
    else
      check(quantize<float8_e5m2_t>(exec, make_matrix(x.data(), R, C), r));
  }
}

TEST_CASE("dequantize equals float(q) * sf in fp32, into float and bf16") {
  constexpr std::int64_t R = 70, C = 200;
  auto const x = make_input<float>(R * C, 8);
  host_executor exec;
  auto q = quantize(exec, make_matrix(x.data(), R, C), deepseek_v3.weight);
  host_matrix<float> yf(R, C, test::poison_float());
  host_matrix<bfloat16_t> yb(R, C, bfloat16_t::from_bits(0xFFFF));
  dequantize(exec, q.view(), yf.view());
  dequantize(exec, q.view(), yb.view());
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < R; ++i) {
    for (std::int64_t j = 0; j < C; ++j) {
      double const want =
          oracle::f32(oracle::decode(element_format::e4m3, q.data(i, j).bits()) * q.scales(i / 128, j / 128));
      bad += !same_float(yf(i, j), want);
      bad += yb(i, j).bits() != bfloat16_t(static_cast<float>(want)).bits();
    }
  }
  CHECK(bad == 0);
}

TEST_CASE(
    "[isa] dequantize into bf16 and float: every code x special scales, both formats, each kernel family "
    "equals the portable loops") {
  // each row holds all 256 codes (shifted per row) plus a tail, so every code meets every scale
  // and the 32-element loop ends on a partial vector; tiles of 48 mix scales inside a vector
  constexpr std::int64_t C = 300, tc = 48;
  float const inf = std::numeric_limits<float>::infinity();
  std::vector<float> const sfs = {1.0f,     0.0f,    -0.0f, 3.1e-3f, 1.7e35f,
                                  2.0e-39f, -2.5f,   inf,   -inf,    std::numeric_limits<float>::quiet_NaN(),
                                  0.3333f,  65504.0f};
  std::int64_t const R = static_cast<std::int64_t>(sfs.size());
  host_executor exec;
  auto const run = [&](auto tag) {
    using T = decltype(tag);
    host_matrix<T> data(R, C);
    host_matrix<float> scales(R, ceil_div(C, tc));
    for (std::int64_t i = 0; i < R; ++i) {
      for (std::int64_t j = 0; j < C; ++j) data(i, j) = T::from_bits(static_cast<std::uint8_t>(j + 7 * i));
      for (std::int64_t t = 0; t < scales.cols(); ++t)
        scales(i, t) = sfs[static_cast<std::size_t>((i + t) % R)];
    }
    quantized_matrix_view<T const> const q{data.view(), scales.view(), {1, tc}};
    std::int64_t bad = 0;
    std::vector<host_isa> isas = isas_under_test();
    isas.push_back(host_isa::portable);
    for (host_isa const isa : isas) {
      CAPTURE(host_isa_name(isa));
      isa_scope const scope(isa);
      host_matrix<bfloat16_t> y(R, C, bfloat16_t::from_bits(0x1234));
      host_matrix<float> yf(R, C, test::poison_float());
      dequantize(exec, q, y.view());
      dequantize(exec, q, yf.view());
      for (std::int64_t i = 0; i < R; ++i) {
        for (std::int64_t j = 0; j < C; ++j) {
          float const want = data(i, j).to_float() * scales(i, j / tc);
          bad += y(i, j).bits() != bfloat16_t(want).bits();
          // float: the same bits (NaN: which NaN operand propagates is the compiler's choice)
          bad += std::isnan(want) ? !std::isnan(yf(i, j)) : bits(yf(i, j)) != bits(want);
        }
      }
    }
    return bad;
  };
  CHECK(run(float8_e4m3_t{}) == 0);
  CHECK(run(float8_e5m2_t{}) == 0);
}

TEST_CASE("transpose_requantize from the high-precision source equals quantizing the explicit transpose") {
  constexpr std::int64_t R = 300, C = 70;  // R is the tile axis: 300 = 2*128 + 44
  host_executor exec;
  auto const xb = make_input<bfloat16_t>(R * C, 31);
  std::vector<bfloat16_t> xt(static_cast<std::size_t>(R * C));
  for (std::int64_t i = 0; i < R; ++i)
    for (std::int64_t j = 0; j < C; ++j)
      xt[static_cast<std::size_t>(j * R + i)] = xb[static_cast<std::size_t>(i * C + j)];
  for (tensor_recipe const r : {deepseek_v3.activation, deepseek_v3_ue8m0.activation, te_blockwise.activation,
                                mxfp8.activation, tensor_recipe{.tile = per_row}}) {
    quantized_matrix<float8_e4m3_t> out(C, R, r.tile);
    test::poison(out.data.storage());
    test::poison(out.scales.storage());
    transpose_requantize(exec, make_matrix(xb.data(), R, C), r, out.view());
    CHECK(oracle_mismatches(r, make_matrix<bfloat16_t const>(xt.data(), C, R), out.view()) == 0);
  }
}

TEST_CASE(
    "[isa] transpose_requantize: each kernel family and the portable loops, whole-row amax items, equal the "
    "explicit transpose (NaN, Inf, overflow)") {
  host_executor exec;
  tensor_recipe const recipes[] = {
      deepseek_v3_ue8m0.activation,
      deepseek_v3.activation,
      te_blockwise.activation,
      {.tile = tile_1x128, .formula = scale_formula::deepseek_v3_inference},
      {.format = element_format::e5m2,
       .tile = {1, 64},
       .formula = scale_formula::transformer_engine,
       .amax_floor = 0.0f,
       .sat = saturation::none},
  };
  // {130, 2600}: two bands, so items are column chunks of a row (chunk edges off the 1024 grid)
  // {1024, 1030}: an output over transpose_stream_min_bytes (non-temporal row stores, 6-column edge)
  for (auto const& [R, C] :
       {std::pair<std::int64_t, std::int64_t>{300, 200}, {128, 37}, {77, 129}, {130, 2600}, {1024, 1030}}) {
    // NaN only in the first block of columns (those blocks take the portable loop); Inf and huge
    // values everywhere, so other blocks run the kernel with plain and clamped columns
    auto x = make_input<float>(R * C, 31);
    for (std::int64_t i = 0; i < 3; ++i)
      x[static_cast<std::size_t>(i * C + 7 * i)] = std::numeric_limits<float>::quiet_NaN();
    for (std::int64_t i = 17; i < R * C; i += 1307)
      x[static_cast<std::size_t>(i)] = std::numeric_limits<float>::infinity();
    for (std::int64_t i = 29; i < R * C; i += 907) x[static_cast<std::size_t>(i)] = -2.5e38f;
    std::vector<bfloat16_t> xb(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) xb[i] = bfloat16_t(x[i]);
    auto const check_source = [&](auto const& x, tensor_recipe const& r) {
      auto const run = [&](host_isa isa) {
        isa_scope const scope(isa);
        std::vector<std::uint8_t> data(static_cast<std::size_t>(R * C));
        std::vector<float> sc(static_cast<std::size_t>(C * ceil_div<std::int64_t>(R, r.tile.cols)));
        quantized_matrix_view<float8_e4m3_t> q4{
            make_matrix(reinterpret_cast<float8_e4m3_t*>(data.data()), C, R),
            make_matrix(sc.data(), C, ceil_div<std::int64_t>(R, r.tile.cols)), r.tile};
        if (r.format == element_format::e4m3) {
          transpose_requantize(exec, make_matrix(x.data(), R, C), r, q4);
        } else {
          quantized_matrix_view<float8_e5m2_t> q5{
              make_matrix(reinterpret_cast<float8_e5m2_t*>(data.data()), C, R), q4.scales, r.tile};
          transpose_requantize(exec, make_matrix(x.data(), R, C), r, q5);
        }
        for (float const f : sc) {
          std::uint32_t const u = bits(f);
          for (int b = 0; b < 4; ++b) data.push_back(static_cast<std::uint8_t>(u >> (8 * b)));
        }
        return data;
      };
      auto const got = run(host_isa::portable);
      for (host_isa const isa : isas_under_test()) {
        CAPTURE(host_isa_name(isa));
        CHECK(run(isa) == got);
      }
      // reference: the row-tile quantize of the explicit transpose
      std::vector<std::remove_cvref_t<decltype(x[0])>> xt(x.size());
      for (std::int64_t i = 0; i < R; ++i)
        for (std::int64_t j = 0; j < C; ++j)
          xt[static_cast<std::size_t>(j * R + i)] = x[static_cast<std::size_t>(i * C + j)];
      std::vector<std::uint8_t> want;
      auto const add = [&](auto const& q) {
        for (auto const v : q.data.storage()) want.push_back(v.bits());
        for (float const f : q.scales.storage())
          for (int b = 0; b < 4; ++b) want.push_back(static_cast<std::uint8_t>(bits(f) >> (8 * b)));
      };
      if (r.format == element_format::e4m3)
        add(quantize<float8_e4m3_t>(exec, make_matrix(xt.data(), C, R), r));
      else
        add(quantize<float8_e5m2_t>(exec, make_matrix(xt.data(), C, R), r));
      CHECK(got == want);
    };
    for (auto const& r : recipes) {
      CAPTURE(R);
      CAPTURE(C);
      CAPTURE(r.tile.cols);
      check_source(x, r);
      check_source(xb, r);
    }
  }
}

TEST_CASE("transpose_requantize: float source, division formula, E5M2, strided source and output views") {
  // 200 = 128 + 72 source rows (16x16 byte blocks plus an 8-row edge); 40 = 2*16 + 8 columns
  constexpr std::int64_t R = 200, C = 40;
  host_executor exec;
  auto const x = make_input<float>(R * C, 37);             // (R,C) row-major
  std::vector<float> xt(static_cast<std::size_t>(R * C));  // (C,R) row-major: the explicit transpose
  for (std::int64_t i = 0; i < R; ++i)
    for (std::int64_t j = 0; j < C; ++j)
      xt[static_cast<std::size_t>(j * R + i)] = x[static_cast<std::size_t>(i * C + j)];
  matrix_view<float const> const x_col_major{xt.data(), R, C, 1, R};  // the same x, col_stride R
  tensor_recipe const divide{.tile = tile_1x128, .formula = scale_formula::deepseek_v3_inference};
  tensor_recipe const e5m2{.format = element_format::e5m2,
                           .tile = tile_1x128,
                           .formula = scale_formula::deepgemm,
                           .sat = saturation::none};
  auto check = [&](tensor_recipe const& r, auto fp8) {
    using T = decltype(fp8);
    quantized_matrix<T> out(C, R, r.tile);  // contiguous source, contiguous output
    test::poison(out.data.storage());
    test::poison(out.scales.storage());
    transpose_requantize(exec, make_matrix(x.data(), R, C), r, out.view());
    CHECK(oracle_mismatches(r, make_matrix<float const>(xt.data(), C, R), out.view()) == 0);
    quantized_matrix<T> out2(C, R, r.tile);  // strided source, column-major output data
    std::vector<T> data_cm(static_cast<std::size_t>(C * R));
    test::poison(data_cm);
    test::poison(out2.scales.storage());
    auto v2 = out2.view();
    v2.data = matrix_view<T>{data_cm.data(), C, R, 1, C};
    transpose_requantize(exec, x_col_major, r, v2);
    CHECK(oracle_mismatches(r, make_matrix<float const>(xt.data(), C, R), v2) == 0);
  };
  check(deepseek_v3.activation, float8_e4m3_t{});
  check(divide, float8_e4m3_t{});
  check(e5m2, float8_e5m2_t{});
}

TEST_CASE("allocating dequantize / transpose_requantize: owning results equal the writing forms") {
  constexpr std::int64_t R = 130, C = 300;
  host_executor exec;
  auto const xb = make_input<bfloat16_t>(R * C, 73);
  auto const x = make_matrix(xb.data(), R, C);
  tensor_recipe const r = deepseek_v3.activation;
  auto const q = quantize(exec, x, r);
  auto same_q = [](auto const& a, auto const& b) {
    std::int64_t bad = 0;
    for (std::size_t i = 0; i < a.data.storage().size(); ++i)
      bad += a.data.storage()[i].bits() != b.data.storage()[i].bits();
    for (std::size_t i = 0; i < a.scales.storage().size(); ++i)
      bad += !same_float(a.scales.storage()[i], b.scales.storage()[i]);
    return bad;
  };
  // dequantize: float by default, bf16 on request; the same bits as the writing form
  auto const yf = dequantize(exec, q.view());
  static_assert(std::is_same_v<decltype(yf), host_matrix<float> const>);
  auto const yb = dequantize<bfloat16_t>(exec, q.view());
  static_assert(std::is_same_v<decltype(yb), host_matrix<bfloat16_t> const>);
  host_matrix<float> wf(R, C, test::poison_float());
  host_matrix<bfloat16_t> wb(R, C, bfloat16_t::from_bits(0xFFFF));
  dequantize(exec, q.view(), wf.view());
  dequantize(exec, q.view(), wb.view());
  REQUIRE(yf.rows() == R);
  REQUIRE(yf.cols() == C);
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < R; ++i)
    for (std::int64_t j = 0; j < C; ++j)
      bad += !same_float(yf(i, j), wf(i, j)) + (yb(i, j).bits() != wb(i, j).bits());
  CHECK(bad == 0);
  // transpose_requantize from the high-precision and from the quantized source: x^T (C,R), 1xK tiles
  quantized_matrix<float8_e4m3_t> w1(C, R, r.tile), w2(C, R, r.tile);
  transpose_requantize(exec, x, r, w1.view());
  transpose_requantize(exec, q.view(), r, w2.view());
  auto const t1 = transpose_requantize(exec, x, r);
  static_assert(std::is_same_v<decltype(t1), quantized_matrix<float8_e4m3_t> const>);
  auto const t2 = transpose_requantize(exec, q.view(), r);
  CHECK(t1.data.rows() == C);
  CHECK(t1.data.cols() == R);
  CHECK(t1.tile == r.tile);
  CHECK(same_q(t1, w1) == 0);
  CHECK(same_q(t2, w2) == 0);
  CHECK(same_q(t1, w2) > 0);  // the two sources differ (double quantization): the comparison can fail
  // bad arguments are named before anything is allocated
  CHECK_THROWS_WITH_AS((void)transpose_requantize(exec, x, deepseek_v3.weight),
                       doctest::Contains("'recipe.tile'"), fp8moe::error);
  CHECK_THROWS_WITH_AS((void)transpose_requantize<float8_e5m2_t>(exec, x, r),
                       doctest::Contains("'T (output element type)'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(
      (void)transpose_requantize(exec, matrix_view<bfloat16_t const>{nullptr, R, C, C, 1}, r),
      doctest::Contains("argument 'x'"), fp8moe::error);
  quantized_matrix_view<float8_e4m3_t const> bad_q{q.data.view(),
                                                   make_matrix(q.scales.storage().data(), R, 2), r.tile};
  CHECK_THROWS_WITH_AS((void)dequantize(exec, bad_q), doctest::Contains("'q.scales'"), fp8moe::error);
  CHECK_THROWS_WITH_AS((void)transpose_requantize(exec, bad_q, r), doctest::Contains("'xq.scales'"),
                       fp8moe::error);
}

TEST_CASE("transpose_requantize from 1x128-quantized data: exact with power-of-two scales") {
  constexpr std::int64_t R = 256, C = 256;
  host_executor exec;
  auto const x = test::random_normal(R * C, 1.0f, 41);  // one magnitude: most elements stay normal
  tensor_recipe const r = deepseek_v3_ue8m0.activation;
  auto q = quantize(exec, make_matrix(x.data(), R, C), r);
  quantized_matrix<float8_e4m3_t> qt(C, R, r.tile);
  transpose_requantize(exec, q.view(), r, qt.view());
  // oracle: dequantize (exact), transpose, quantize
  host_matrix<float> d(R, C);
  dequantize(exec, q.view(), d.view());
  std::vector<float> dt(static_cast<std::size_t>(R * C));
  for (std::int64_t i = 0; i < R; ++i)
    for (std::int64_t j = 0; j < C; ++j) dt[static_cast<std::size_t>(j * R + i)] = d(i, j);
  CHECK(oracle_mismatches(r, make_matrix<float const>(dt.data(), C, R), qt.view()) == 0);
  // exactness: every element whose rescaled value d / sf' is in the FP8 normal range (>= 2^-6)
  // reproduces d exactly; below it the element is rounded once (RNE), by design
  std::int64_t normal = 0, inexact = 0;
  for (std::int64_t i = 0; i < R; ++i) {
    for (std::int64_t j = 0; j < C; ++j) {
      float const sf = qt.scales(j, i / 128);
      if (std::fabs(d(i, j)) / sf < 0x1p-6f) continue;
      ++normal;
      inexact += qt.data(j, i).to_float() * sf != d(i, j);
    }
  }
  CHECK(normal > R * C * 9 / 10);
  CHECK(inexact == 0);
}

TEST_CASE("float_to_fp8_bits_select equals the numeric conversion (strided 2^32 sweep)") {
  std::int64_t bad = 0;
  for (std::uint64_t u = 0; u < (1ull << 32); u += 4093) {
    float const f = fp8moe::bit_cast<float>(static_cast<std::uint32_t>(u));
    for (saturation s : {saturation::finite, saturation::none}) {
      bad +=
          float_to_fp8_bits_select<e4m3_format>(f, s) != fp8moe::detail::float_to_fp8_bits<e4m3_format>(f, s);
      bad +=
          float_to_fp8_bits_select<e5m2_format>(f, s) != fp8moe::detail::float_to_fp8_bits<e5m2_format>(f, s);
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("pack_ue8m0: 4 exponent bytes per int32 along K, MN-major TMA-aligned") {
  host_executor exec;
  constexpr std::int64_t mn = 6, sk = 5;
  host_matrix<float> s(mn, sk);
  for (std::int64_t i = 0; i < mn; ++i)
    for (std::int64_t j = 0; j < sk; ++j) s(i, j) = std::ldexp(1.0f, static_cast<int>(i * 7 - j * 13));
  s(0, 0) = 0x1p-127f;  // the subnormal 2^-127 is code 0x00
  s(1, 1) = 0x1p127f;
  scale_layout const l = packed_ue8m0_layout(mn, sk);
  std::vector<std::int32_t> buf(static_cast<std::size_t>(l.required_elements()), -1);
  CHECK(buf.size() == 8 * 2);
  pack_ue8m0(exec, s.view(), make_scale_view(buf.data(), l));
  for (std::int64_t i = 0; i < mn; ++i) {
    for (std::int64_t j = 0; j < 8; ++j) {
      auto const word = static_cast<std::uint32_t>(buf[static_cast<std::size_t>(i + (j / 4) * 8)]);
      int const byte = static_cast<int>((word >> (8 * (j % 4))) & 0xFF);
      int const want =
          j < sk ? static_cast<int>(std::lround(std::log2(static_cast<double>(s(i, j))))) + 127 : 0;
      CHECK(byte == want);
    }
  }
  CHECK(buf[6] == -1);  // MN padding rows untouched
}

TEST_CASE("MX swizzled scale layout: the cuBLAS formula, a bijection onto the padded buffer") {
  constexpr std::int64_t rows = 200, sc = 7;  // padded to 256 x 8
  CHECK(mx_swizzled_bytes(rows, sc) == 256 * 8);
  std::vector<int> hits(static_cast<std::size_t>(mx_swizzled_bytes(256, 8)), 0);
  for (std::int64_t i = 0; i < 256; ++i) {
    for (std::int64_t j = 0; j < 8; ++j) {
      // independent statement of the layout: 128x4 tiles, inside a tile row i%32 picks a 16-byte
      // line and (i%128)/32 the 4-byte group, j%4 the byte
      std::int64_t const tile = (i / 128) * 2 + j / 4;
      std::int64_t const want = tile * 512 + (i % 32) * 16 + ((i % 128) / 32) * 4 + (j % 4);
      CHECK(mx_swizzled_offset(i, j, 8) == want);
      ++hits[static_cast<std::size_t>(mx_swizzled_offset(i, j, 8))];
    }
  }
  bool bijective = true;
  for (int h : hits) bijective = bijective && h == 1;
  CHECK(bijective);
  host_executor exec;
  auto x = make_input<float>(rows * 224, 4);
  auto q = quantize(exec, make_matrix(x.data(), rows, 224), mxfp8.activation);
  std::vector<std::uint8_t> sw(static_cast<std::size_t>(mx_swizzled_bytes(rows, sc)), 0xAA);
  pack_mx_swizzled(exec, q.scales.view(), make_vector(sw.data(), static_cast<std::int64_t>(sw.size())));
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < sc; ++j)
      bad += sw[static_cast<std::size_t>(mx_swizzled_offset(i, j, sc))] !=
             float8_e8m0_t::from_float(q.scales(i, j), e8m0_rounding::toward_zero).bits();
  CHECK(bad == 0);
  CHECK(sw[static_cast<std::size_t>(mx_swizzled_offset(250, 7, sc))] == 0x00);  // padding zeroed
}

TEST_CASE(
    "delayed scaling follows Transformer Engine (history roll, max / most_recent, keep-previous rules)") {
  tensor_recipe r = te_delayed.activation;
  r.amax_history_len = 3;
  delayed_scaling st(r);
  CHECK(st.scale() == 1.0f);
  st.record_amax(2.0f);
  st.record_amax(1.0f);  // max within a step
  CHECK(st.amax_history()[0] == 2.0f);
  CHECK(st.update() == 2.0f);
  CHECK(st.scale() == 224.0f);  // 448 / 2
  // history after TE's roll(-1) + zero row 0: [0, 0, 2]
  CHECK(st.amax_history()[0] == 0.0f);
  CHECK(st.amax_history()[2] == 2.0f);
  st.record_amax(0.5f);
  CHECK(st.update() == 2.0f);  // max over [0.5, 0, 2]
  CHECK(st.scale() == 224.0f);
  st.record_amax(0.25f);
  CHECK(st.update() == 2.0f);  // [0.25, 2, 0.5]: 2 still in the window of 3 steps
  st.record_amax(0.25f);
  CHECK(st.update() == 0.5f);  // 2 left the window
  CHECK(st.scale() == 896.0f);
  st.record_amax(std::numeric_limits<float>::quiet_NaN());  // ignored (fmaxf)
  CHECK(st.amax_history()[0] == 0.0f);
  // all-zero window: amax 0 keeps the previous scale
  delayed_scaling z(r);
  z.record_amax(4.0f);
  z.update();
  z.update();
  z.update();
  CHECK(z.update() == 0.0f);
  CHECK(z.scale() == 112.0f);
  // inf amax keeps the previous scale; tiny amax gives FLT_MAX
  delayed_scaling i(r, 3.0f);
  i.record_amax(INFINITY);
  CHECK(i.update() == INFINITY);
  CHECK(i.scale() == 3.0f);
  delayed_scaling t(r);
  t.record_amax(1e-38f);
  t.update();
  CHECK(t.scale() == std::numeric_limits<float>::max());
  // most_recent and margin (E5M2 gradient: fmax 57344)
  tensor_recipe g = te_delayed.gradient;
  g.amax_history_len = 4;
  g.history_reduce = amax_history_reduce::most_recent;
  g.margin = 1;
  delayed_scaling mr(g);
  mr.record_amax(8.0f);
  mr.update();
  mr.record_amax(2.0f);
  CHECK(mr.update() == 2.0f);
  CHECK(mr.scale() == 57344.0f / 2.0f / 2.0f);
  // oracle for a 3-step sequence of the default (len 1024, max) recipe
  delayed_scaling d(te_delayed.activation);
  double expect_scale = 1.0;
  double window_max = 0;
  for (float a : {3.0f, 7.0f, 0.1f}) {
    d.record_amax(a);
    window_max = std::max(window_max, static_cast<double>(a));
    d.update();
    expect_scale = oracle::f32(448.0 / window_max);
    CHECK(d.scale() == static_cast<float>(expect_scale));
  }
}

TEST_CASE("quantize with a delayed_scaling state uses the previous scale and records amax") {
  host_executor exec;
  constexpr std::int64_t R = 40, C = 50;
  auto const x = make_input<float>(R * C, 77);
  delayed_scaling st(te_delayed.activation, 0.5f);
  quantized_matrix<float8_e4m3_t> q(R, C, per_tensor);
  quantize(exec, make_matrix(x.data(), R, C), st, q.view());
  CHECK(q.scales(0, 0) == 2.0f);
  double amax = 0;
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < R * C; ++i) {
    amax = std::max(amax, std::fabs(static_cast<double>(x[static_cast<std::size_t>(i)])));
    bad += q.data.storage()[static_cast<std::size_t>(i)].bits() !=
           oracle::encode(element_format::e4m3, oracle::f32(x[static_cast<std::size_t>(i)] * 0.5), true);
  }
  CHECK(bad == 0);
  CHECK(st.amax_history()[0] == static_cast<float>(amax));
  st.update();
  CHECK(st.scale() == static_cast<float>(oracle::f32(448.0 / amax)));
}

// ------------------------------------------------------------------------------------------------
#if FP8MOE_CUDA_COMPILER
namespace {

/// A device array poisoned with 0xFF bytes (fp8moe::device_buffer on the legacy stream, at least one
/// element), with synchronous uploads and downloads.
template <class T>
struct test_buffer {
  fp8moe::device_buffer<T> b;
  T* p = nullptr;
  std::size_t n = 0;
  explicit test_buffer(std::size_t count)
      : b(std::max<std::size_t>(1, count), cuda_executor{}), p(b.data()), n(count) {
    b.fill_bytes(0xFF);  // poison
  }
  void upload(std::vector<T> const& v) {
    FP8MOE_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> v(n);
    FP8MOE_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

template <class T, class In>
std::int64_t device_vs_host(tensor_recipe const& r, std::vector<In> const& xs, std::int64_t R, std::int64_t C,
                            bool mn_major) {
  host_executor hx;
  cuda_executor dx{};
  auto const hq = quantize<T>(hx, make_matrix(xs.data(), R, C), r);
  scale_layout const l =
      mn_major ? mn_major_scale_layout(r.tile, R, C) : row_major_scale_layout(r.tile, R, C);
  test_buffer<In> dxs(xs.size());
  dxs.upload(xs);
  test_buffer<T> dd(static_cast<std::size_t>(R * C));
  test_buffer<float> ds(static_cast<std::size_t>(l.required_elements()));
  quantized_matrix_view<T> dq{make_matrix(dd.p, R, C), make_scale_view(ds.p, l), r.tile};
  quantize(dx, make_matrix<In const>(dxs.p, R, C), r, dq);
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  auto const d = dd.download();
  auto const s = ds.download();
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < R * C; ++i)
    bad += d[static_cast<std::size_t>(i)].bits() != hq.data.storage()[static_cast<std::size_t>(i)].bits();
  auto const sv = make_scale_view(s.data(), l);
  for (std::int64_t i = 0; i < l.rows; ++i)
    for (std::int64_t j = 0; j < l.cols; ++j) bad += !same_float(sv(i, j), hq.scales(i, j));
  // dequantize on the device equals the host
  test_buffer<float> dy(static_cast<std::size_t>(R * C));
  dequantize(dx, quantized_matrix_view<T const>(dq), make_matrix(dy.p, R, C));
  host_matrix<float> hy(R, C);
  dequantize(hx, hq.view(), hy.view());
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  auto const y = dy.download();
  for (std::int64_t i = 0; i < R * C; ++i)
    bad += !same_float(y[static_cast<std::size_t>(i)], hy.storage()[static_cast<std::size_t>(i)]);
  return bad;
}

/// float and bf16 sources, row-major and MN-major scales (swapped between the two formats).
void check_device_vs_host(tensor_recipe const& r, std::vector<float> const& xf,
                          std::vector<bfloat16_t> const& xb, std::int64_t R, std::int64_t C) {
  if (r.format == element_format::e4m3) {
    CHECK(device_vs_host<float8_e4m3_t>(r, xf, R, C, false) == 0);
    CHECK(device_vs_host<float8_e4m3_t>(r, xb, R, C, true) == 0);
  } else {
    CHECK(device_vs_host<float8_e5m2_t>(r, xf, R, C, true) == 0);
    CHECK(device_vs_host<float8_e5m2_t>(r, xb, R, C, false) == 0);
  }
}

}  // namespace

TEST_CASE("CUDA quantize / dequantize equal the host path bit for bit (every recipe, float and bf16)") {
  for (auto [R, C] : {std::pair<std::int64_t, std::int64_t>{200, 300}, {256, 512}, {1, 7}, {0, 128}}) {
    auto const xf = make_input<float>(R * C, 13);
    auto const xb = make_input<bfloat16_t>(R * C, 14);
    for (auto const& nr : all_recipes()) {
      CAPTURE(nr.name);
      CAPTURE(R);
      check_device_vs_host(nr.r, xf, xb, R, C);
    }
  }
}

TEST_CASE("CUDA allocating quantize: a device_quantized_matrix on exec.stream, equal to the host's") {
  constexpr std::int64_t R = 130, C = 300;
  auto const xb = make_input<bfloat16_t>(R * C, 61);
  test_buffer<bfloat16_t> dx(xb.size());
  dx.upload(xb);
  cudaStream_t s = nullptr;
  FP8MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cuda_executor const ex{s};
  for (tensor_recipe const r : {deepseek_v3.activation, deepseek_v3.weight, e5m2_weights.weight}) {
    auto const x = make_matrix<bfloat16_t const>(dx.p, R, C);
    std::int64_t bad = 0;
    auto compare = [&](auto const& dq, auto const& hq) {
      CHECK(dq.data.stream() == s);
      CHECK(dq.rows() == R);
      CHECK(dq.cols() == C);
      CHECK(dq.tile == r.tile);
      using T = typename std::remove_cvref_t<decltype(hq.data.storage())>::value_type;
      std::vector<T> d(static_cast<std::size_t>(R * C));
      std::vector<float> sc(hq.scales.storage().size());
      dq.data.copy_to_host(make_matrix(d.data(), R, C));
      dq.scales.copy_to_host(make_matrix(sc.data(), hq.scales.rows(), hq.scales.cols()));
      FP8MOE_CUDA_CHECK(cudaStreamSynchronize(s));
      for (std::size_t i = 0; i < d.size(); ++i) bad += d[i].bits() != hq.data.storage()[i].bits();
      for (std::size_t i = 0; i < sc.size(); ++i) bad += !same_float(sc[i], hq.scales.storage()[i]);
    };
    if (r.format == element_format::e4m3) {
      auto const dq = quantize(ex, x, r);  // device_quantized_matrix<float8_e4m3_t>
      static_assert(std::is_same_v<decltype(dq), device_quantized_matrix<float8_e4m3_t> const>);
      compare(dq, quantize(host_executor{}, make_matrix(xb.data(), R, C), r));
    } else {
      auto const dq = quantize<float8_e5m2_t>(ex, x, r);
      compare(dq, quantize<float8_e5m2_t>(host_executor{}, make_matrix(xb.data(), R, C), r));
    }
    CHECK(bad == 0);
  }
  FP8MOE_CUDA_CHECK(cudaStreamDestroy(s));
}

TEST_CASE("CUDA transpose_requantize equals the host path (high-precision and quantized sources)") {
  constexpr std::int64_t R = 300, C = 200;
  host_executor hx;
  cuda_executor dx{};
  auto const xb = make_input<bfloat16_t>(R * C, 51);
  for (tensor_recipe const r :
       {deepseek_v3.activation, deepseek_v3_ue8m0.activation, te_blockwise.activation}) {
    quantized_matrix<float8_e4m3_t> h(C, R, r.tile);
    transpose_requantize(hx, make_matrix(xb.data(), R, C), r, h.view());
    test_buffer<bfloat16_t> dxs(xb.size());
    dxs.upload(xb);
    test_buffer<float8_e4m3_t> dd(static_cast<std::size_t>(R * C));
    test_buffer<float> ds(static_cast<std::size_t>(C * scale_cols(r.tile, R)));
    quantized_matrix_view<float8_e4m3_t> dq{make_matrix(dd.p, C, R),
                                            make_matrix(ds.p, C, scale_cols(r.tile, R)), r.tile};
    transpose_requantize(dx, make_matrix<bfloat16_t const>(dxs.p, R, C), r, dq);
    FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
    auto const d = dd.download();
    auto const s = ds.download();
    std::int64_t bad = 0;
    for (std::size_t i = 0; i < d.size(); ++i) bad += d[i].bits() != h.data.storage()[i].bits();
    for (std::size_t i = 0; i < s.size(); ++i) bad += !same_float(s[i], h.scales.storage()[i]);
    CHECK(bad == 0);
    // from the quantized source (row tiles of x) on the device
    auto const hq = quantize(hx, make_matrix(xb.data(), R, C), r);
    quantized_matrix<float8_e4m3_t> h2(C, R, r.tile);
    transpose_requantize(hx, hq.view(), r, h2.view());
    test_buffer<float8_e4m3_t> qd(hq.data.storage().size());
    test_buffer<float> qs(hq.scales.storage().size());
    qd.upload(hq.data.storage());
    qs.upload(hq.scales.storage());
    quantized_matrix_view<float8_e4m3_t const> dsrc{make_matrix<float8_e4m3_t const>(qd.p, R, C),
                                                    make_matrix<float const>(qs.p, R, scale_cols(r.tile, C)),
                                                    r.tile};
    transpose_requantize(dx, dsrc, r, dq);
    FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
    auto const d2 = dd.download();
    auto const s2 = ds.download();
    bad = 0;
    for (std::size_t i = 0; i < d2.size(); ++i) bad += d2[i].bits() != h2.data.storage()[i].bits();
    for (std::size_t i = 0; i < s2.size(); ++i) bad += !same_float(s2[i], h2.scales.storage()[i]);
    CHECK(bad == 0);
  }
}
TEST_CASE(
    "CUDA allocating dequantize / transpose_requantize: device matrices on exec.stream, equal to the "
    "host's") {
  constexpr std::int64_t R = 130, C = 300;
  host_executor hx;
  auto const xb = make_input<bfloat16_t>(R * C, 79);
  tensor_recipe const r = deepseek_v3.activation;
  auto const hq = quantize(hx, make_matrix(xb.data(), R, C), r);
  cudaStream_t s = nullptr;
  FP8MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cuda_executor const ex{s};
  test_buffer<bfloat16_t> dx(xb.size());
  dx.upload(xb);
  auto const x = make_matrix<bfloat16_t const>(dx.p, R, C);
  auto const dq = quantize(ex, x, r);
  auto const y = dequantize(ex, dq.view());
  static_assert(std::is_same_v<decltype(y), device_matrix<float> const>);
  auto const t1 = transpose_requantize(ex, x, r);
  static_assert(std::is_same_v<decltype(t1), device_quantized_matrix<float8_e4m3_t> const>);
  auto const t2 = transpose_requantize(ex, dq.view(), r);
  CHECK(y.stream() == s);
  CHECK(t1.data.stream() == s);
  CHECK(t1.rows() == C);
  CHECK(t1.cols() == R);
  auto const hy = dequantize(hx, hq.view());
  auto const ht1 = transpose_requantize(hx, make_matrix(xb.data(), R, C), r);
  auto const ht2 = transpose_requantize(hx, hq.view(), r);
  std::vector<float> yd(static_cast<std::size_t>(R * C));
  y.copy_to_host(make_matrix(yd.data(), R, C));
  FP8MOE_CUDA_CHECK(cudaStreamSynchronize(s));
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < yd.size(); ++i) bad += !same_float(yd[i], hy.storage()[i]);
  auto compare = [&](device_quantized_matrix<float8_e4m3_t> const& dt,
                     quantized_matrix<float8_e4m3_t> const& h) {
    std::vector<float8_e4m3_t> d(h.data.storage().size());
    std::vector<float> sc(h.scales.storage().size());
    dt.data.copy_to_host(make_matrix(d.data(), C, R));
    dt.scales.copy_to_host(make_matrix(sc.data(), h.scales.rows(), h.scales.cols()));
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(s));
    for (std::size_t i = 0; i < d.size(); ++i) bad += d[i].bits() != h.data.storage()[i].bits();
    for (std::size_t i = 0; i < sc.size(); ++i) bad += !same_float(sc[i], h.scales.storage()[i]);
  };
  compare(t1, ht1);
  compare(t2, ht2);
  CHECK(bad == 0);
  FP8MOE_CUDA_CHECK(cudaStreamDestroy(s));
}
TEST_CASE(
    "CUDA quantize / dequantize with NaN and +-Inf inputs equal the host path bit for bit (every recipe)") {
  // scattered NaN / +Inf / -Inf, plus one all-NaN and one all-Inf 128-column tile: the device's amax,
  // scale and encode see the same non-finite values as the host's (codes and scales compared by bits,
  // NaN scales as NaN-ness)
  constexpr std::int64_t R = 130, C = 384;
  float const nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto xf = make_input<float>(R * C, 61);
  for (std::int64_t i = 0; i < R * C; ++i) {
    auto& v = xf[static_cast<std::size_t>(i)];
    if (i % 101 == 5) v = nan;
    if (i % 211 == 17) v = inf;
    if (i % 307 == 3) v = -inf;
  }
  for (std::int64_t c = 0; c < 128; ++c) {
    xf[static_cast<std::size_t>(1 * C + c)] = nan;
    xf[static_cast<std::size_t>(2 * C + 128 + c)] = (c % 2) ? inf : -inf;
  }
  std::vector<bfloat16_t> xb(xf.size());
  for (std::size_t i = 0; i < xf.size(); ++i) xb[i] = bfloat16_t(xf[i]);
  for (auto const& nr : all_recipes()) {
    CAPTURE(nr.name);
    check_device_vs_host(nr.r, xf, xb, R, C);
  }
}
#endif

TEST_CASE(
    "deepseek_v3_inference: an all-zero tile gives sf = floor/448 and zero codes, where act_quant gives 0 "
    "and NaN") {
  // DeepSeek-V3 act_quant: s = amax / 448, y = x / s, no floor: for an all-zero tile s = 0 and
  // y = 0/0 = NaN. The recipe requires amax_floor >= 1e-35 and clamps amax to it, so the library
  // reproduces act_quant exactly for tiles with amax >= floor only (docs/scaling.md).
  tensor_recipe const r{
      .tile = tile_1x128, .formula = scale_formula::deepseek_v3_inference, .amax_floor = 1e-35f};
  std::vector<float> x(2 * 128, 0.0f);  // row 0: all zero; row 1: amax 3 (above the floor)
  for (int c = 0; c < 128; ++c)
    x[static_cast<std::size_t>(128 + c)] = 3.0f * static_cast<float>(c - 64) / 64.0f;
  auto const q = quantize<float8_e4m3_t>(host_executor{}, make_matrix(x.data(), 2, 128), r);
  float const volatile floor_v = 1e-35f, fmax = 448.0f, zero = 0.0f;
  CHECK(bits(q.scales(0, 0)) == bits(floor_v / fmax));  // sf = floor / 448, not 0
  for (int c = 0; c < 128; ++c) CHECK(q.data.storage()[static_cast<std::size_t>(c)].bits() == 0x00);
  float const act_quant_s = zero / fmax;  // what act_quant computes for that tile
  CHECK(act_quant_s == 0.0f);
  CHECK(std::isnan(zero / act_quant_s));  // and its codes: cast(0 / 0) = NaN
  // above the floor: act_quant's s = amax / 448 and q = cast(x / s), bit for bit
  float const s1 = 3.0f / fmax;
  CHECK(bits(q.scales(1, 0)) == bits(s1));
  for (int c = 0; c < 128; ++c) {
    float const v = x[static_cast<std::size_t>(128 + c)];
    CHECK(q.data.storage()[static_cast<std::size_t>(128 + c)].bits() == float8_e4m3_t(v / s1).bits());
  }
}
