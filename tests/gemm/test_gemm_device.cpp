// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Device FP8 GEMM (cuda_executor) against the float64 reference of gemm/reference.hpp: every
// layout, both kernels (wgmma sm_90a and mma.sync), DeepSeek-V3 N x K pairs, partial tiles, empty
// groups, padding rows, poisoned outputs, in-place accumulation, and the rejected inputs. The
// host build of this file checks the same generators on host_executor (the device oracle's path).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fp8moe/gemm/gemm.hpp"
#include "fp8moe/gemm/reference.hpp"
#include "gemm_test_util.hpp"

#if FP8MOE_CUDA_COMPILER
#include <cuda_runtime.h>

#include "device_memory.hpp"
#include "fp8moe/gemm/cuda/gemm.hpp"
#endif

namespace {
namespace fg = fp8moe::gemm;
namespace ft = fp8moe::test;
using e4m3 = fp8moe::float8_e4m3_t;
using bf16 = fp8moe::bfloat16_t;
constexpr fp8moe::scaling::tile_shape t1x128{1, 128}, t128{128, 128};

/// Tolerance against the float64 reference for one output (derived, not fitted):
///  - the tensor core sums each k32 slice of exact FP8 products with a truncated internal
///    accumulator (about 14 significant bits, arXiv:2412.19437 §3.3.2): <= 2^-12 of the block's
///    absolute sum per promotion block; promotion and FP32 accumulation add ~2^-22 -> 2^-12 * mag;
///  - bf16 output adds one RNE rounding: 2^-8 * |exact|.
double device_tol(double exact, double mag, bool bf16_out) {
  return std::ldexp(mag, -12) + (bf16_out ? std::ldexp(std::fabs(exact), -8) : 0.0) + 1e-20;
}
}  // namespace

namespace {
// docs/gemm_cuda.md shows this function template (tests/gemm/test_gemm_docs.cpp checks the page);
// it is instantiated below for host_executor and, under nvcc, for cuda_executor.
// clang-format off
// [snippet]
// One source for every executor: Exec = fp8moe::host_executor, or fp8moe::cuda_executor{stream}
// with device pointers in the views (m_indices and masked_m in device memory, k_sizes on the host).
template <fp8moe::executor Exec>
void moe_expert_gemms(Exec const& exec,
                      fg::quantized_matrix_view<e4m3 const> xq,           // (T,H) 1x128 scales
                      fg::quantized_matrix_view<e4m3 const> wq,           // (N,H) 128x128 scales
                      fp8moe::matrix_view<bf16> y,                        // (T,N)
                      fg::grouped_contiguous<e4m3, e4m3, bf16> const& prefill,
                      fg::grouped_masked<e4m3, e4m3, bf16> const& decode,
                      fg::k_grouped<e4m3, e4m3> const& weight_grad) {
  fg::fp8_gemm(exec, xq, wq, y);                 // y = x w^T, FP32 promotion every 128 K
  fg::grouped_gemm(exec, prefill);               // every layout: the same name on every executor
  fg::grouped_gemm(exec, decode);
  fg::grouped_gemm(exec, weight_grad);
  // hot path: a caller-owned workspace (host: packing buffers; cuda_executor: 0 bytes, the device
  // path takes none and never allocates)
  std::vector<std::byte> ws(fg::workspace_bytes(exec));
  fg::fp8_gemm(exec, fg::dense<e4m3, e4m3, bf16>{xq, wq, y, {}}, {}, ws);
}
// [/snippet]
// clang-format on
template <class Exec>
using moe_expert_gemms_fn = void (*)(Exec const&, fg::quantized_matrix_view<e4m3 const>,
                                     fg::quantized_matrix_view<e4m3 const>, fp8moe::matrix_view<bf16>,
                                     fg::grouped_contiguous<e4m3, e4m3, bf16> const&,
                                     fg::grouped_masked<e4m3, e4m3, bf16> const&,
                                     fg::k_grouped<e4m3, e4m3> const&);
[[maybe_unused]] moe_expert_gemms_fn<fp8moe::host_executor> const moe_expert_gemms_host =
    &moe_expert_gemms<fp8moe::host_executor>;
#if FP8MOE_CUDA_COMPILER
[[maybe_unused]] moe_expert_gemms_fn<fp8moe::cuda_executor> const moe_expert_gemms_cuda =
    &moe_expert_gemms<fp8moe::cuda_executor>;
#endif
}  // namespace

TEST_CASE("host path on the device tests' generators equals the float64 reference") {
  // the device tests compare against reference:: below; this pins the same generator + reference
  // to the host path, so a generator problem shows up in the host-only build too
  auto const a = ft::quantize_gen<e4m3>(ft::value_gen{3}, 70, 384, t1x128);
  auto const b = ft::quantize_gen<e4m3>(ft::value_gen{4}, 136, 384, t128);
  ft::out_mat<float> d(70, 136);
  ft::out_mat<double> ref(70, 136);
  fg::fp8_gemm(fp8moe::host_executor{}, fg::dense<e4m3, e4m3, float>{a.view(), b.view(), d.view(), {}});
  fg::reference::fp8_gemm(fg::dense<e4m3, e4m3, double>{a.view(), b.view(), ref.view(), {}});
  int bad = 0;
  for (int r = 0; r < 70; ++r)
    for (int c = 0; c < 136; ++c) {
      double const mag = ft::magnitude(a.view(), r, b.view(), c, 0, 384);
      if (!(std::fabs(d.at(r, c) - ref.at(r, c)) <= device_tol(ref.at(r, c), mag, false))) ++bad;
    }
  CHECK(bad == 0);
}

#if FP8MOE_CUDA_COMPILER
namespace {

template <class T>
using dev_buf = ft::device_array<T>;

/// A quantized operand mirrored on the device (same strides, row-major scales).
template <class T>
struct dev_q {
  dev_buf<T> data;
  dev_buf<float> scales;
  ft::qmat<T> const& h;
  explicit dev_q(ft::qmat<T> const& q)
      : data(q.data.data(), q.data.size()), scales(q.scales.data(), q.scales.size()), h(q) {}
  fp8moe::scaling::quantized_matrix_view<T const> view() const {
    return {fp8moe::matrix_view<T const>{data.p, h.rows, h.cols, h.ld, 1},
            fp8moe::matrix_view<float const>{scales.p, h.srows, h.scols, h.scols, 1}, h.tile};
  }
};

double to_d(bf16 x) {
  return x.to_float();
}
double to_d(float x) {
  return x;
}

std::vector<fg::cuda::family_choice> families(bool wgmma_ok) {
  std::vector<fg::cuda::family_choice> f{fg::cuda::family_choice::automatic,
                                         fg::cuda::family_choice::mma_sync};
  int dev = 0, major = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (wgmma_ok && major == 9) f.push_back(fg::cuda::family_choice::wgmma);
  return f;
}

/// Dense D (M,N) = [C +] A B^T on the device for each kernel family; checks `check_rows` rows
/// (all when M is small) against the float64 reference and that every element was written.
template <class TD>
void dense_case(int m, int n, int k, bool with_c, std::uint64_t seed, fp8moe::scaling::tile_shape bt = t128) {
  CAPTURE(m);
  CAPTURE(n);
  CAPTURE(k);
  auto const a = ft::quantize_gen<e4m3>(ft::value_gen{seed}, m, k, t1x128);
  auto const b = ft::quantize_gen<e4m3>(ft::value_gen{seed + 1}, n, k, bt, false, 1);
  dev_q<e4m3> da(a), db(b);
  ft::out_mat<TD> hd(m, n);
  std::vector<float> hc(static_cast<std::size_t>(m) * hd.ld);
  for (std::size_t i = 0; i < hc.size(); ++i)
    hc[i] = ft::value_gen{seed + 2}(static_cast<std::int64_t>(i), 0);
  dev_buf<TD> dd(hd.buf.size());
  dev_buf<float> dc(hc.data(), hc.size());
  fp8moe::matrix_view<float const> const cview =
      with_c ? fp8moe::matrix_view<float const>{dc.p, m, n, hd.ld, 1} : fp8moe::matrix_view<float const>{};
  // reference rows: all, or a spread sample for big problems
  std::vector<int> rows;
  // keep the float64 work near 2e8 multiply-adds per case (the GPU test must stay well under a
  // minute on the lent machine): all rows when small, else an even spread of at least 3 rows
  double const per_row = static_cast<double>(n) * k;
  int const want_rows = per_row * m <= 2e8 ? m : std::max(3, static_cast<int>(2e8 / per_row));
  int const step = std::max(1, m / want_rows);
  for (int r = 0; r < m; r += step) rows.push_back(r);
  if (rows.back() != m - 1) rows.push_back(m - 1);
  std::vector<double> ref(rows.size() * static_cast<std::size_t>(n)), mag(ref.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    auto av = a.view();
    av.data.data += static_cast<std::int64_t>(rows[i]) * a.ld;
    av.data.rows = 1;
    av.scales.data += static_cast<std::int64_t>(rows[i]) * a.scols;
    av.scales.rows = 1;
    fp8moe::matrix_view<double> rv{ref.data() + i * n, 1, n, n, 1};
    fp8moe::matrix_view<float const> cv =
        with_c ? fp8moe::matrix_view<float const>{hc.data() + static_cast<std::size_t>(rows[i]) * hd.ld, 1, n,
                                                  hd.ld, 1}
               : fp8moe::matrix_view<float const>{};
    fg::reference::fp8_gemm(fg::dense<e4m3, e4m3, double>{av, b.view(), rv, cv});
    for (int c = 0; c < n; ++c)
      mag[i * n + c] = ft::magnitude(a.view(), rows[i], b.view(), c, 0, k, with_c ? cv(0, c) : 0.0);
  }
  for (auto fam : families(true)) {
    CAPTURE(static_cast<int>(fam));
    dd.poison();
    fg::dense<e4m3, e4m3, TD> const p{da.view(), db.view(), {dd.p, m, n, hd.ld, 1}, cview};
    fg::cuda::run(nullptr, fg::cuda::to_params(p), nullptr, "test", fam);
    FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
    auto const out = dd.get();
    int unwritten = 0, bad = 0;
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < n; ++c)
        if (std::isnan(to_d(out[static_cast<std::size_t>(r) * hd.ld + c]))) ++unwritten;
    for (std::size_t i = 0; i < rows.size(); ++i)
      for (int c = 0; c < n; ++c) {
        double const got = to_d(out[static_cast<std::size_t>(rows[i]) * hd.ld + c]);
        if (!(std::fabs(got - ref[i * n + c]) <= device_tol(ref[i * n + c], mag[i * n + c], sizeof(TD) == 2)))
          ++bad;
      }
    CHECK(unwritten == 0);
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE("device dense: DeepSeek-V3 N x K pairs, small and partial M, both kernels") {
  // (N, K) from config_671B: q_a+kv_a, kv_a, q_b, kv_b, o_proj, expert gate/up, expert down
  int const nk[][2] = {{2112, 7168},  {576, 7168},  {24576, 1536}, {32768, 512},
                       {7168, 16384}, {4096, 7168}, {7168, 2048}};
  for (auto const& s : nk) dense_case<bf16>(64, s[0], s[1], false, 100 + s[0]);
  for (int m : {1, 7, 128, 200}) dense_case<bf16>(m, 2112, 1536, false, 7 + m);
  dense_case<bf16>(4096, 576, 512, false, 9);
  dense_case<float>(130, 200, 384, true, 11);          // f32 output with C, ragged N
  dense_case<bf16>(96, 264, 128, true, 13);            // K = one promotion block, bf16 with C
  dense_case<bf16>(200, 7168, 576, false, 15);         // dgrad of kv_a: K = 4.5 promotion blocks
  dense_case<float>(300, 384, 640, true, 17, t1x128);  // 1x128 B scales ("1D1D"), FP32 out with C
  dense_case<bf16>(96, 264, 0, true, 19);              // K = 0: D = C (no tensor-map extent of 0)
  dense_case<float>(64, 128, 0, false, 21);            // K = 0 without C: D = 0
}

TEST_CASE("device grouped contiguous: padding rows, empty expert, out-of-range ids") {
  int const g = 4, n = 448, k = 1024, m = 640;
  auto const a = ft::quantize_gen<e4m3>(ft::value_gen{21}, m, k, t1x128);
  std::vector<ft::qmat<e4m3>> bs;
  for (int e = 0; e < g; ++e) bs.push_back(ft::quantize_gen<e4m3>(ft::value_gen{30u + e}, n, k, t128));
  // B (G,N,K) and its scales packed contiguously
  std::int64_t const bstride = bs[0].ld * n, sstride = bs[0].srows * bs[0].scols;
  ft::aligned_buffer<e4m3> hb(static_cast<std::size_t>(bstride * g));
  std::vector<float> hs(static_cast<std::size_t>(sstride * g));
  for (int e = 0; e < g; ++e) {
    std::memcpy(hb.data() + e * bstride, bs[e].data.data(), bstride);
    std::memcpy(hs.data() + e * sstride, bs[e].scales.data(), sstride * sizeof(float));
  }
  std::vector<int> ids(m, -1);
  for (int r = 0; r < 100; ++r) ids[r] = 2;    // expert 2: 100 rows, 28 padding
  for (int r = 128; r < 384; ++r) ids[r] = 0;  // expert 0: 256 rows; expert 1 empty
  for (int r = 384; r < 385; ++r) ids[r] = 3;  // expert 3: one row
  for (int r = 520; r < 600; ++r) ids[r] = 3;  // (rows 512..639: a second window of expert 3)
  ids[550] = -1;
  // out-of-range ids (>= G, and < -1): the device cannot validate them and treats them as padding
  // rows (layout.hpp contiguous_block_group, params.hpp epilogue_row_action); the host path rejects them
  ids[560] = g;         // inside expert 3's window
  ids[101] = g + 1000;  // among expert 2's padding rows
  ids[450] = g;         // alone in the otherwise all-padding rows 385..511 (a fill-only 64-row block)
  ids[451] = -7;
  dev_buf<e4m3> db(hb.data(), hb.size());
  dev_buf<float> dsb(hs.data(), hs.size());
  fg::quantized_batched_view<e4m3 const> bview{{db.p, g, n, k, bstride, bs[0].ld, 1},
                                               {dsb.p, g, bs[0].srows, bs[0].scols, sstride, bs[0].scols, 1},
                                               t128};
  fg::quantized_batched_view<e4m3 const> bhost{
      {hb.data(), g, n, k, bstride, bs[0].ld, 1},
      {hs.data(), g, bs[0].srows, bs[0].scols, sstride, bs[0].scols, 1},
      t128};
  // every kernel family (mma.sync only when the windows are 128-row aligned) on rows `aa` with
  // expert ids `rid` and window `m_align`, against the float64 reference, output poisoned first
  auto const check_contiguous = [&](auto const& aa, std::vector<int> const& rid, int m_align) {
    int const mm = static_cast<int>(rid.size());
    dev_q<e4m3> da(aa);
    dev_buf<int> dids(rid.data(), rid.size());  // the device sees the raw ids
    std::vector<int> pad_ids(rid);              // the reference: ids outside [0, G) are padding (-1)
    for (int& e : pad_ids)
      if (e < 0 || e >= g) e = -1;
    ft::out_mat<double> ref(mm, n);
    fg::reference::grouped_gemm(fg::grouped_contiguous<e4m3, e4m3, double>{
        aa.view(), bhost, {pad_ids.data(), mm, 1}, ref.view(), {}, m_align});
    if (pad_ids != rid) {  // the host path rejects them, before writing
      ft::out_mat<float> hout(mm, n);
      std::fill(hout.buf.data(), hout.buf.data() + hout.buf.size(), 7.0f);
      CHECK_THROWS_WITH_AS(
          fg::grouped_gemm(fp8moe::host_executor{},
                           fg::grouped_contiguous<e4m3, e4m3, float>{
                               aa.view(), bhost, {rid.data(), mm, 1}, hout.view(), {}, m_align}),
          doctest::Contains("m_indices"), fp8moe::error);
      CHECK(
          std::all_of(hout.buf.data(), hout.buf.data() + hout.buf.size(), [](float v) { return v == 7.0f; }));
    }
    ft::out_mat<bf16> hd(mm, n);
    dev_buf<bf16> dd(hd.buf.size());
    for (auto fam : families(true)) {
      if (m_align % 128 != 0 && fam == fg::cuda::family_choice::mma_sync) continue;
      CAPTURE(static_cast<int>(fam));
      CAPTURE(m_align);
      dd.poison();
      fg::grouped_contiguous<e4m3, e4m3, bf16> const p{
          da.view(), bview, {dids.p, mm, 1}, {dd.p, mm, n, hd.ld, 1}, {}, m_align};
      fg::cuda::run(nullptr, fg::cuda::to_params(p), nullptr, "test", fam, 0, p.m_align);
      FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
      auto const out = dd.get();
      int bad = 0;
      for (int r = 0; r < mm; ++r)
        for (int c = 0; c < n; ++c) {
          double const got = out[static_cast<std::size_t>(r) * hd.ld + c].to_float();
          double const mag =
              pad_ids[r] >= 0 ? ft::magnitude(aa.view(), r, bs[pad_ids[r]].view(), c, 0, k) : 0.0;
          if (!(std::fabs(got - ref.at(r, c)) <= device_tol(ref.at(r, c), mag, true))) ++bad;  // NaN fails
        }
      CHECK(bad == 0);
    }
  };
  check_contiguous(a, ids, 128);
  // m_align = 192 (a multiple of 64, not of 128): a 128-row tile would span two experts' windows,
  // so the launcher must use 64-row tiles. Windows [0,192) [192,384) [384,576) hold experts 1, 2, 0.
  // Automatic and wgmma only (the mma.sync kernel needs 128-row alignment and says so).
  std::vector<int> ids2(576, -1);
  for (int r = 0; r < 150; ++r) ids2[r] = 1;
  for (int r = 192; r < 384; ++r) ids2[r] = 2;
  for (int r = 384; r < 400; ++r) ids2[r] = 0;
  check_contiguous(ft::quantize_gen<e4m3>(ft::value_gen{77}, 576, k, t1x128), ids2, 192);
}

TEST_CASE("device grouped masked: empty groups, rows past masked_m untouched, K-grouped with in-place C") {
  SUBCASE("masked") {
    int const g = 4, max_m = 192, n = 384, k = 512;
    std::vector<int> counts{0, 1, 130, 192};
    std::vector<ft::qmat<e4m3>> as, bs;
    for (int e = 0; e < g; ++e) {
      as.push_back(ft::quantize_gen<e4m3>(ft::value_gen{50u + e}, max_m, k, t1x128));
      bs.push_back(ft::quantize_gen<e4m3>(ft::value_gen{60u + e}, n, k, t128));
    }
    auto pack = [](std::vector<ft::qmat<e4m3>> const& v, std::int64_t& stride, std::int64_t& sstride) {
      stride = v[0].ld * v[0].rows, sstride = v[0].srows * v[0].scols;
      std::pair<ft::aligned_buffer<e4m3>, std::vector<float>> out{ft::aligned_buffer<e4m3>(stride * v.size()),
                                                                  std::vector<float>(sstride * v.size())};
      for (std::size_t e = 0; e < v.size(); ++e) {
        std::memcpy(out.first.data() + e * stride, v[e].data.data(), stride);
        std::memcpy(out.second.data() + e * sstride, v[e].scales.data(), sstride * sizeof(float));
      }
      return out;
    };
    std::int64_t as_, ass, bs_, bss;
    auto const ha = pack(as, as_, ass);
    auto const hb = pack(bs, bs_, bss);
    dev_buf<e4m3> da(ha.first.data(), ha.first.size()), db(hb.first.data(), hb.first.size());
    dev_buf<float> dsa(ha.second.data(), ha.second.size()), dsb(hb.second.data(), hb.second.size());
    dev_buf<int> dcounts(counts.data(), counts.size());
    ft::out_mat<bf16> hd(max_m, n);
    std::int64_t const dstride = hd.ld * max_m;
    dev_buf<bf16> dd(static_cast<std::size_t>(dstride * g));
    auto aview = [&](e4m3 const* d, float const* s) {
      return fg::quantized_batched_view<e4m3 const>{
          {d, g, max_m, k, as_, as[0].ld, 1}, {s, g, as[0].srows, as[0].scols, ass, as[0].scols, 1}, t1x128};
    };
    auto bview = [&](e4m3 const* d, float const* s) {
      return fg::quantized_batched_view<e4m3 const>{
          {d, g, n, k, bs_, bs[0].ld, 1}, {s, g, bs[0].srows, bs[0].scols, bss, bs[0].scols, 1}, t128};
    };
    for (auto fam : families(true)) {
      CAPTURE(static_cast<int>(fam));
      dd.poison();
      fg::grouped_masked<e4m3, e4m3, bf16> const p{aview(da.p, dsa.p),
                                                   bview(db.p, dsb.p),
                                                   {dcounts.p, g, 1},
                                                   {dd.p, g, max_m, n, dstride, hd.ld, 1},
                                                   {},
                                                   96};
      fg::cuda::run(nullptr, fg::cuda::to_params(p), nullptr, "test", fam, p.expected_m);
      FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
      auto const out = dd.get();
      int bad = 0, touched = 0;
      for (int e = 0; e < g; ++e) {
        ft::out_mat<double> ref(max_m, n);
        fg::reference::fp8_gemm(fg::dense<e4m3, e4m3, double>{as[e].view(), bs[e].view(), ref.view(), {}});
        for (int r = 0; r < max_m; ++r)
          for (int c = 0; c < n; ++c) {
            double const got = out[static_cast<std::size_t>(e * dstride + r * hd.ld + c)].to_float();
            if (r >= counts[e]) {
              touched += !std::isnan(got);
              continue;
            }
            double const mag = ft::magnitude(as[e].view(), r, bs[e].view(), c, 0, k);
            if (!(std::fabs(got - ref.at(r, c)) <= device_tol(ref.at(r, c), mag, true))) ++bad;
          }
      }
      CHECK(bad == 0);
      CHECK(touched == 0);
    }
  }
  SUBCASE("K-grouped weight gradient, D = C + A_g B_g^T in place, empty group") {
    int const m = 256, n = 384;
    std::vector<int> ks{256, 0, 512, 128};
    int const kt = 896;
    auto const a = ft::quantize_gen<e4m3>(ft::value_gen{71}, m, kt, t1x128);
    auto const b = ft::quantize_gen<e4m3>(ft::value_gen{72}, n, kt, t1x128);
    dev_q<e4m3> da(a), db(b);
    int const g = static_cast<int>(ks.size());
    std::int64_t const ld = n, gs = static_cast<std::int64_t>(m) * n;
    std::vector<float> hc(static_cast<std::size_t>(gs * g));
    for (std::size_t i = 0; i < hc.size(); ++i) hc[i] = ft::value_gen{73}(static_cast<std::int64_t>(i), 1);
    std::vector<float> ref_f(hc.size());
    std::vector<double> ref(hc.size());
    fg::reference::grouped_gemm(fg::k_grouped<e4m3, e4m3>{a.view(),
                                                          b.view(),
                                                          {ks.data(), g, 1},
                                                          {ref_f.data(), g, m, n, gs, ld, 1},
                                                          {hc.data(), g, m, n, gs, ld, 1}});
    dev_buf<float> dd(hc.size());
    fg::k_grouped<e4m3, e4m3> const p{
        da.view(), db.view(), {ks.data(), g, 1}, {dd.p, g, m, n, gs, ld, 1}, {dd.p, g, m, n, gs, ld, 1}};
    for (int pass = 0; pass < 3; ++pass) {
      CAPTURE(pass);
      // D starts as C: in-place accumulation
      FP8MOE_CUDA_CHECK(cudaMemcpy(dd.p, hc.data(), hc.size() * sizeof(float), cudaMemcpyHostToDevice));
      if (pass == 0) {
        fg::grouped_gemm(fp8moe::cuda_executor{}, p);  // the public entry point (automatic)
      } else {
        std::vector<int> offsets;
        auto const q = fg::cuda::to_params(p, offsets);
        auto const fam = pass == 1 ? fg::cuda::family_choice::mma_sync : fg::cuda::family_choice::wgmma;
        if (pass == 2 && families(true).size() < 3) continue;  // no sm_90a device
        fg::cuda::run(nullptr, q, offsets.data(), "test", fam);
      }
      FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
      auto const out = dd.get();
      int bad = 0;
      std::int64_t k0 = 0;
      for (int e = 0; e < g; ++e) {
        for (int r = 0; r < m; ++r)
          for (int c = 0; c < n; ++c) {
            std::size_t const i = static_cast<std::size_t>(e * gs + r * ld + c);
            double const mag = ft::magnitude(a.view(), r, b.view(), c, k0, ks[e], hc[i]);
            if (!(std::fabs(out[i] - ref_f[i]) <=
                  device_tol(ref_f[i], mag, false) + std::ldexp(std::fabs(ref_f[i]), -22)))
              ++bad;
          }
        k0 += ks[e];
      }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("device path rejects what it does not support, before touching outputs") {
  auto const a = ft::quantize_gen<e4m3>(ft::value_gen{81}, 64, 520, t1x128);
  auto const b = ft::quantize_gen<e4m3>(ft::value_gen{82}, 128, 520, t128);
  dev_q<e4m3> da(a), db(b);
  dev_buf<bf16> dd(64 * 128);
  dd.poison();  // 0xFFFF in every element; read back after the rejected calls below
  fp8moe::cuda_executor const ex{};
  // K = 520 is valid for the host path but not a multiple of the device's 16-byte K granule
  CHECK_THROWS_WITH_AS(
      fg::fp8_gemm(ex, fg::dense<e4m3, e4m3, bf16>{da.view(), db.view(), {dd.p, 64, 128, 128, 1}, {}}),
      doctest::Contains("'k'"), fp8moe::error);
  auto const a2 = ft::quantize_gen<e4m3>(ft::value_gen{83}, 64, 512, fp8moe::scaling::tile_shape{1, 0});
  auto const b2 = ft::quantize_gen<e4m3>(ft::value_gen{84}, 128, 512, t128);
  dev_q<e4m3> da2(a2), db2(b2);
  CHECK_THROWS_WITH_AS(
      fg::fp8_gemm(ex, fg::dense<e4m3, e4m3, bf16>{da2.view(), db2.view(), {dd.p, 64, 128, 128, 1}, {}}),
      doctest::Contains("a.tile"), fp8moe::error);
  auto const a3 = ft::quantize_gen<e4m3>(ft::value_gen{85}, 64, 512, t1x128);
  dev_q<e4m3> da3(a3);
  CHECK_THROWS_WITH_AS(
      fg::fp8_gemm(ex, fg::dense<e4m3, e4m3, bf16>{da3.view(), db2.view(), {dd.p, 64, 128, 128, 1}, {}},
                   fg::gemm_options{.promotion_k = 64}),
      doctest::Contains("promotion_k"), fp8moe::error);
  // MN-major B (transposed weight) is the host path's job; the device path says so
  auto bt = db2.view();
  bt.data = {bt.data.data, 128, 512, 1, 128};
  CHECK_THROWS_AS(fg::fp8_gemm(ex, fg::dense<e4m3, e4m3, bf16>{da3.view(), bt, {dd.p, 64, 128, 128, 1}, {}}),
                  fp8moe::error);
  // nothing was launched: the output still holds the poison, bit for bit
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  auto const out = dd.get();
  CHECK(std::all_of(out.begin(), out.end(), [](bf16 v) { return v.bits() == 0xFFFF; }));
  // and the same output is written by a valid call (the poison check can fail)
  fg::fp8_gemm(ex, fg::dense<e4m3, e4m3, bf16>{da3.view(), db2.view(), {dd.p, 64, 128, 128, 1}, {}});
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  auto const written = dd.get();
  CHECK(std::none_of(written.begin(), written.end(), [](bf16 v) { return v.bits() == 0xFFFF; }));
}
#endif

namespace {
/// The README's call written once for any executor: non-const operand views (as
/// quantized_matrix::view() gives them) through the allocating convenience, then the same product
/// through the caller-workspace overload (a host buffer of workspace_bytes(exec); 0 on the device).
template <class Exec>
void forward_twice(Exec const& exec, fp8moe::scaling::quantized_matrix_view<e4m3> a,
                   fp8moe::scaling::quantized_matrix_view<e4m3 const> b, fp8moe::matrix_view<bf16> y1,
                   fp8moe::matrix_view<bf16> y2) {
  fg::fp8_gemm(exec, a, b, y1);
  std::vector<std::byte> ws(fg::workspace_bytes(exec));
  fg::fp8_gemm(exec, fg::dense<e4m3, e4m3, bf16>{a, b, y2, {}}, {}, ws);
}

/// A non-const view of qmat storage at `data` / `scales` (host or device copies).
fp8moe::scaling::quantized_matrix_view<e4m3> mutable_view(ft::qmat<e4m3> const& q, e4m3* data,
                                                          float* scales) {
  return {{data, q.rows, q.cols, q.ld, 1}, {scales, q.srows, q.scols, q.scols, 1}, q.tile};
}
}  // namespace

TEST_CASE("one function template, every executor: fp8_gemm with non-const views, both workspace overloads") {
  int const m = 96, n = 256, k = 512;
  auto const a = ft::quantize_gen<e4m3>(ft::value_gen{91}, m, k, t1x128);
  auto const b = ft::quantize_gen<e4m3>(ft::value_gen{92}, n, k, t128);
  ft::out_mat<bf16> y1(m, n), y2(m, n);
  ft::out_mat<double> ref(m, n);
  fg::reference::fp8_gemm(fg::dense<e4m3, e4m3, double>{a.view(), b.view(), ref.view(), {}});
  std::vector<float> a_scales = a.scales;
  forward_twice(fp8moe::host_executor{}, mutable_view(a, const_cast<e4m3*>(a.data.data()), a_scales.data()),
                b.view(), y1.view(), y2.view());
  CHECK(std::memcmp(y1.buf.data(), y2.buf.data(), y1.buf.size() * sizeof(bf16)) == 0);
  int bad = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c) {
      double const mag = ft::magnitude(a.view(), r, b.view(), c, 0, k);
      if (!(std::fabs(y1.at(r, c) - ref.at(r, c)) <= device_tol(ref.at(r, c), mag, true))) ++bad;
    }
  CHECK(bad == 0);
#if FP8MOE_CUDA_COMPILER
  fp8moe::cuda_executor const dev{};
  static_assert(fp8moe::has_dispatch<fg::dispatch<fp8moe::cuda_executor>>);
  CHECK(fg::workspace_bytes(dev) == 0);  // the device path takes no workspace
  dev_buf<e4m3> da(a.data.data(), a.data.size());
  dev_buf<float> dsa(a.scales.data(), a.scales.size());
  dev_q<e4m3> db(b);
  dev_buf<bf16> d1(y1.buf.size()), d2(y1.buf.size());
  d1.poison(), d2.poison();
  forward_twice(dev, mutable_view(a, da.p, dsa.p), db.view(), {d1.p, m, n, y1.ld, 1}, {d2.p, m, n, y1.ld, 1});
  FP8MOE_CUDA_CHECK(cudaDeviceSynchronize());
  auto const o1 = d1.get(), o2 = d2.get();
  CHECK(std::memcmp(o1.data(), o2.data(), o1.size() * sizeof(bf16)) == 0);
  int dev_bad = 0;
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c) {
      double const mag = ft::magnitude(a.view(), r, b.view(), c, 0, k);
      double const got = o1[static_cast<std::size_t>(r * y1.ld + c)].to_float();
      if (!(std::fabs(got - ref.at(r, c)) <= device_tol(ref.at(r, c), mag, true))) ++dev_bad;
    }
  CHECK(dev_bad == 0);
#endif
}
