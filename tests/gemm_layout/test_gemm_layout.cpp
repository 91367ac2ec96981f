// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// CPU tests of the device GEMM index math (gemm/cuda/layout.hpp, params.hpp, translate.hpp): fragment layouts
// against the PTX ISA tables, swizzle and wgmma descriptors against each other, the tile
// scheduler and selector, and a host emulation of both kernels' tile loops (smem fill, ldmatrix /
// descriptor reads, fragment-level MMA, promotion, epilogue) compared with a float64 GEMM.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "../gemm/gemm_test_util.hpp"
#include "fp8moe/gemm/cuda/layout.hpp"
#include "fp8moe/gemm/cuda/params.hpp"
#include "fp8moe/gemm/cuda/translate.hpp"
#include "fp8moe/gemm/reference.hpp"
#include "fp8moe/numeric/numeric.hpp"

namespace fc = fp8moe::gemm::cuda;
using fc::coord;

TEST_CASE("mma.sync m16n8k32 e4m3 fragments cover A, B, C exactly once and match the PTX table") {
  std::set<std::pair<int, int>> a, b, c;
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 16; ++i) a.insert({fc::mma_m16n8k32_a(lane, i).row, fc::mma_m16n8k32_a(lane, i).col});
    for (int i = 0; i < 8; ++i) b.insert({fc::mma_m16n8k32_b(lane, i).row, fc::mma_m16n8k32_b(lane, i).col});
    for (int i = 0; i < 4; ++i) c.insert({fc::mma_m16n8_c(lane, i).row, fc::mma_m16n8_c(lane, i).col});
  }
  CHECK(a.size() == 16 * 32);  // 32 lanes x 16 bytes, all distinct => a bijection onto 16x32
  CHECK(b.size() == 32 * 8);
  CHECK(c.size() == 16 * 8);
  // PTX ISA, m16n8k32 .e4m3 A: row = groupID (a0-3, a8-11) or groupID+8; col = 4*tig + (i&3) (+16 for i>=8)
  CHECK(fc::mma_m16n8k32_a(5, 0) == coord{1, 4});
  CHECK(fc::mma_m16n8k32_a(5, 4) == coord{9, 4});
  CHECK(fc::mma_m16n8k32_a(5, 9) == coord{1, 21});
  CHECK(fc::mma_m16n8k32_a(31, 15) == coord{15, 31});
  // B: row (k) = 4*tig + (i&3) (+16 for i>=4), col = groupID
  CHECK(fc::mma_m16n8k32_b(6, 1) == coord{9, 1});
  CHECK(fc::mma_m16n8k32_b(6, 7) == coord{27, 1});
  // C: (groupID, 2*tig + (i&1)), rows +8 for c2/c3
  CHECK(fc::mma_m16n8_c(7, 3) == coord{9, 7});
}

TEST_CASE("ldmatrix.x4 source addresses produce the mma A and B fragments") {
  for (int kk = 0; kk < 4; ++kk) {
    for (int lane = 0; lane < 32; ++lane) {
      for (int reg = 0; reg < 4; ++reg) {
        for (int byte = 0; byte < 4; ++byte) {
          // register `reg` of `lane` holds row lane/4 of matrix reg, supplied by lane 8*reg + lane/4
          coord const d = fc::ldmatrix_dst(lane, byte);
          coord const sa = fc::ldmatrix_a_src(reg * 8 + d.row, kk);
          coord const want_a = fc::mma_m16n8k32_a(lane, reg * 4 + byte);
          CHECK(sa.row == want_a.row);
          CHECK(sa.col + d.col == kk * 32 + want_a.col);
          coord const sb = fc::ldmatrix_b_src(reg * 8 + d.row, kk);
          coord const want_b = fc::mma_m16n8k32_b(lane, (reg & 1) * 4 + byte);  // (k, n)
          CHECK(sb.row == want_b.col + (reg >> 1) * 8);
          CHECK(sb.col + d.col == kk * 32 + want_b.row);
        }
      }
    }
  }
}

TEST_CASE("wgmma m64nNk32 accumulator layout covers 64xN once; warp w owns rows 16w..16w+15") {
  for (int n : {32, 64, 128, 256}) {
    std::set<std::pair<int, int>> seen;
    for (int t = 0; t < 128; ++t)
      for (int i = 0; i < n / 2; ++i) {
        coord const c = fc::wgmma_m64_acc(t, i);
        CHECK(c.row / 16 == t / 32);
        seen.insert({c.row, c.col});
      }
    CHECK(seen.size() == static_cast<std::size_t>(64 * n));
  }
  // PTX figure "WGMMA .m64nNk32 D": thread 0 holds (0,0),(0,1),(8,0),(8,1),(0,8),...
  CHECK(fc::wgmma_m64_acc(0, 2) == coord{8, 0});
  CHECK(fc::wgmma_m64_acc(0, 4) == coord{0, 8});
  CHECK(fc::wgmma_m64_acc(37, 1) == coord{16 + 1, 3});
}

TEST_CASE("128B swizzle: bijective per 1024-byte atom, keeps 16-byte chunks, conflict-free ldmatrix") {
  std::set<std::uint32_t> seen;
  for (std::uint32_t o = 0; o < 4096; ++o) {
    std::uint32_t const s = fc::swizzle_128b(o);
    CHECK(s / 1024 == o / 1024);
    CHECK(s % 16 == o % 16);
    seen.insert(s);
  }
  CHECK(seen.size() == 4096);
  CHECK(fc::swizzle_128b(fc::swizzle_128b(1234)) == 1234);  // an involution
  // 8 lanes of one ldmatrix phase read the same chunk column of 8 consecutive rows: the 8
  // 16-byte chunks must hit 8 distinct 16-byte bank groups (128 bytes of banks).
  for (int row0 = 0; row0 < 128; row0 += 8)
    for (int chunk = 0; chunk < 8; ++chunk) {
      std::set<std::uint32_t> groups;
      for (int r = 0; r < 8; ++r) groups.insert((fc::tile_offset_sw128(row0 + r, chunk * 16) / 16) % 8);
      CHECK(groups.size() == 8);
    }
}

TEST_CASE("wgmma descriptors: encoding, and K-step advance agrees with the TMA 128B swizzle") {
  std::uint64_t const d = fc::wgmma_desc_k_major_sw128(0x400);
  CHECK(d == ((0x400u >> 4) | (1ull << 16) | (64ull << 32) | (1ull << 62)));
  fc::wgmma_desc_fields const f{.start_address = 0x1230,
                                .leading_byte_offset = 16,
                                .stride_byte_offset = 1024,
                                .base_offset = 0,
                                .swizzle = 1};
  CHECK(fc::decode_wgmma_desc(fc::encode_wgmma_desc(f)) == f);
  // the tensor core reading (row, k) of k32 step kk through desc(tile + 32*kk) must land where
  // TMA (or cp.async through tile_offset_sw128) stored (row, 32*kk + k)
  for (std::uint32_t tile : {0u, 8192u, 65536u + 16384u})
    for (int kk = 0; kk < 4; ++kk)
      for (int row = 0; row < 128; ++row)
        for (int k = 0; k < 32; ++k)
          REQUIRE(fc::wgmma_operand_address(fc::wgmma_desc_k_major_sw128(tile + 32 * kk), row, k) ==
                  tile + fc::tile_offset_sw128(row, 32 * kk + k));
}

namespace {
// Runs the scheduler the way `ctas` persistent CTAs do and returns every tile once per visit.
std::vector<fc::tile_coord> schedule_all(fc::schedule_problem const& sp, int ctas) {
  std::vector<fc::tile_coord> out;
  for (int b = 0; b < ctas; ++b) {
    fc::tile_scheduler s(sp);
    fc::tile_coord t;
    for (std::int64_t i = b; s.get(i, t); i += ctas) out.push_back(t);
  }
  return out;
}
}  // namespace

TEST_CASE("tile scheduler: every layout's tiles exactly once, for any persistent grid size") {
  for (int ctas : {1, 3, 132}) {
    SUBCASE("dense with rasterization") {
      fc::schedule_problem sp{
          .layout = fc::layout_kind::dense, .m = 1000, .n = 2112, .block_m = 128, .block_n = 128};
      auto const tiles = schedule_all(sp, ctas);
      std::set<std::pair<int, int>> seen;
      for (auto const& t : tiles) seen.insert({t.m_block, t.n_block});
      CHECK(tiles.size() == 8u * 17u);
      CHECK(seen.size() == tiles.size());
      for (auto const& t : tiles) CHECK((t.m_block < 8 && t.n_block < 17));
    }
    SUBCASE("grouped contiguous: group from the block's rows, padding blocks skipped") {
      // segments: expert 2 rows 0..99 (+ padding to 128), all-padding block 128..255, expert 0 rows
      // 256..300 with padding rows at the start of the window (allowed by the contract), ids >= G
      std::vector<int> ids(384, -1);
      for (int r = 0; r < 100; ++r) ids[r] = 2;
      for (int r = 260; r < 300; ++r) ids[r] = 0;
      ids[301] = 7;  // out of range for G = 3: padding
      fc::schedule_problem sp{.layout = fc::layout_kind::grouped_contiguous,
                              .m = 384,
                              .n = 256,
                              .groups = 3,
                              .block_m = 128,
                              .block_n = 128,
                              .m_indices = ids.data()};
      auto const tiles = schedule_all(sp, ctas);
      CHECK(tiles.size() == 6u);
      for (auto const& t : tiles) {
        if (t.m_block == 0) CHECK((t.group == 2 && !t.skip));
        if (t.m_block == 1) CHECK(t.skip);
        if (t.m_block == 2) CHECK((t.group == 0 && !t.skip));
      }
    }
    SUBCASE("grouped masked: per-group counts, empty groups produce no tiles") {
      std::vector<int> counts{0, 130, 1, 0, 64};
      fc::schedule_problem sp{.layout = fc::layout_kind::grouped_masked,
                              .m = 256,
                              .n = 200,
                              .groups = 5,
                              .block_m = 64,
                              .block_n = 128,
                              .masked_m = counts.data()};
      auto const tiles = schedule_all(sp, ctas);
      std::map<int, int> per_group;
      std::set<std::tuple<int, int, int>> seen;
      for (auto const& t : tiles) {
        ++per_group[t.group];
        seen.insert({t.group, t.m_block, t.n_block});
        CHECK(t.m_block * 64 < counts[t.group]);
      }
      CHECK(per_group[1] == 3 * 2);
      CHECK(per_group[2] == 1 * 2);
      CHECK(per_group[4] == 1 * 2);
      CHECK(per_group.count(0) == 0);
      CHECK(per_group.count(3) == 0);
      CHECK(seen.size() == tiles.size());
    }
    SUBCASE("K-grouped: G x M blocks x N blocks") {
      fc::schedule_problem sp{.layout = fc::layout_kind::k_grouped,
                              .m = 300,
                              .n = 128,
                              .groups = 4,
                              .block_m = 128,
                              .block_n = 128};
      auto const tiles = schedule_all(sp, ctas);
      std::set<std::tuple<int, int, int>> seen;
      for (auto const& t : tiles) seen.insert({t.group, t.m_block, t.n_block});
      CHECK(tiles.size() == 4u * 3u);
      CHECK(seen.size() == tiles.size());
    }
  }
  int mb = -1, nb = -1;
  fc::rasterize(9, 4, 10, 8, mb, nb);  // band 0 = n blocks 0..7, M fastest inside: tile 9 = (1, 1)
  CHECK((mb == 1 && nb == 1));
  fc::rasterize(33, 4, 10, 8, mb, nb);  // band 1 = n blocks 8..9 (width 2): local 1 -> (0, 9)
  CHECK((mb == 0 && nb == 9));
}

TEST_CASE("tile selector: DeepSeek-V3 shapes map onto instantiated, fitting configurations") {
  using fc::layout_kind;
  // every wgmma config the dispatcher instantiates fits in 227 KB with >= 3 stages
  for (int bm : {64, 128})
    for (int bn : {64, 128}) {
      int const s = fc::wgmma_stages_for(bm, bn);
      CHECK(s >= 3);
      CHECK(fc::wgmma_smem_bytes(bm, bn, s) <= 227 * 1024);
    }
  CHECK(fc::mma_sync_smem_bytes(128, 128, 3) <= 227 * 1024);
  auto const small = fc::select_tile(layout_kind::dense, 64, 2112, 1, 132, true, false);
  CHECK(small.family == fc::kernel_family::wgmma_sm90a);
  CHECK(small.block_m == 64);
  CHECK(small.block_n == 64);  // 17 tiles of 128 would leave 115 of 132 SMs idle
  auto const large = fc::select_tile(layout_kind::dense, 4096, 7168, 1, 132, true, false);
  CHECK((large.block_m == 128 && large.block_n == 128));
  auto const wgrad = fc::select_tile(layout_kind::k_grouped, 7168, 2048, 8, 132, true, true);
  CHECK(wgrad.family == fc::kernel_family::wgmma_sm90a);
  CHECK((wgrad.block_m == 128 && wgrad.block_n == 128));

  CHECK(fc::select_tile(layout_kind::dense, 4096, 7168, 1, 132, false, false).family ==
        fc::kernel_family::mma_sync_sm89);
}

// =================================================================================================
// Host emulation of the two kernels' tile loops. Every index goes through the same functions the
// kernels call; only the instructions (cp.async / TMA, ldmatrix, mma.sync / wgmma) are emulated by
// plain loops following their PTX definitions.
namespace {

float e4m3(std::uint8_t b) {
  return fp8moe::float8_e4m3_t::from_bits(b).to_float();
}

struct emu_case {
  fc::kernel_params p;
  std::vector<std::uint8_t> a, b;
  std::vector<float> sfa, sfb, c;
  std::vector<int> m_indices, masked_m, k_offsets;
  std::vector<float> d;  // outputs are kept as float (bf16 rounding applied when out == bf16)
  int d_rows = 0;        // total rows of D over all groups
};

std::uint8_t random_fp8(std::mt19937& g) {
  std::normal_distribution<float> nd(0.0f, 60.0f);
  return fp8moe::float8_e4m3_t(nd(g)).bits();
}

// Builds a problem; A/B contents and scales random (never zero-only), D poisoned (NaN).
emu_case make_case(fc::layout_kind layout, int m, int n, int k, int groups, int bscale, bool with_c,
                   unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> us(0.001f, 0.02f);
  emu_case e;
  auto& p = e.p;
  p.layout = layout;
  p.m = m, p.n = n, p.k = k, p.groups = groups;
  p.b_scale_granularity = bscale;
  int const a_batches = layout == fc::layout_kind::grouped_masked ? groups : 1;
  int const b_batches =
      (layout == fc::layout_kind::grouped_contiguous || layout == fc::layout_kind::grouped_masked) ? groups
                                                                                                   : 1;
  int const kb = (k + 127) / 128;  // a partial last block has its own scale
  p.a_row_stride = k + 16;         // padded strides: catch stride mix-ups
  p.a_group_stride = p.a_row_stride * m;
  p.b_row_stride = k + 32;
  p.b_group_stride = p.b_row_stride * n;
  e.a.resize(static_cast<std::size_t>(p.a_group_stride) * a_batches);
  e.b.resize(static_cast<std::size_t>(p.b_group_stride) * b_batches);
  for (auto& x : e.a) x = random_fp8(g);
  for (auto& x : e.b) x = random_fp8(g);
  // A scales MN-major (DeepGEMM's TMA-aligned layout): row_stride 1, col_stride round_up(M, 4)
  std::int64_t const mpad = (m + 3) / 4 * 4;
  p.sfa_layout = {.row_stride = 1, .col_stride = mpad, .group_stride = mpad * kb};
  e.sfa.resize(static_cast<std::size_t>(mpad * kb * a_batches));
  for (auto& x : e.sfa) x = us(g);
  int const b_rows = bscale == 1 ? n : (n + 127) / 128;
  p.sfb_layout = {.row_stride = kb, .col_stride = 1, .group_stride = b_rows * kb};  // K-major
  e.sfb.resize(static_cast<std::size_t>(b_rows * kb * b_batches));
  for (auto& x : e.sfb) x = us(g);
  int const d_groups =
      (layout == fc::layout_kind::grouped_masked || layout == fc::layout_kind::k_grouped) ? groups : 1;
  p.d_row_stride = n + 8;
  p.d_group_stride = p.d_row_stride * m;
  e.d_rows = m * d_groups;
  e.d.assign(static_cast<std::size_t>(p.d_group_stride) * d_groups, std::nanf(""));
  if (with_c) {
    p.c_row_stride = p.d_row_stride, p.c_group_stride = p.d_group_stride;
    e.c.resize(e.d.size());
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& x : e.c) x = nd(g);
  }
  return e;
}

void bind(emu_case& e) {
  e.p.a = e.a.data();
  e.p.b = e.b.data();
  e.p.sfa = e.sfa.data();
  e.p.sfb = e.sfb.data();
  e.p.d = e.d.data();
  e.p.c = e.c.empty() ? nullptr : e.c.data();
  e.p.m_indices = e.m_indices.empty() ? nullptr : e.m_indices.data();
  e.p.masked_m = e.masked_m.empty() ? nullptr : e.masked_m.data();
  e.p.k_offsets = e.k_offsets.empty() ? nullptr : e.k_offsets.data();
}

float round_out(fc::kernel_params const& p, float x) {
  return p.out == fc::output_kind::bf16 ? fp8moe::bfloat16_t(x).to_float() : x;
}

// The epilogue: staging tile -> D through write(element offset, value), with the kernels' row
// actions (C added, padding rows filled, skipped rows untouched).
template <class Write>
void emu_store(fc::kernel_params const& p, fc::tile_geometry const& g, std::vector<float> const& staging,
               int bm, int bn, int pitch, Write&& write) {
  for (int r = 0; r < bm; ++r) {
    int const id =
        (p.layout == fc::layout_kind::grouped_contiguous && r < g.rows_valid) ? p.m_indices[g.m0 + r] : 0;
    fc::row_action const act = fc::epilogue_row_action(p, g, r, id);
    if (act == fc::row_action::skip) continue;
    for (int cidx = 0; cidx < bn && cidx < g.cols_valid; ++cidx) {
      float v = act == fc::row_action::product ? staging[r * pitch + cidx] : 0.0f;
      if (p.c) v += p.c[g.c_offset + static_cast<std::int64_t>(r) * p.c_row_stride + cidx];
      write(g.d_offset + static_cast<std::int64_t>(r) * p.d_row_stride + cidx, v);
    }
  }
}

/// Writes into the emu_case's float copy of D (bf16 rounding applied when out == bf16).
auto case_writer(emu_case& e) {
  return [&e](std::int64_t i, float v) { e.d[static_cast<std::size_t>(i)] = round_out(e.p, v); };
}
/// Writes into p.d as the kernels do: bf16 bits or floats.
auto params_writer(fc::kernel_params const& p) {
  return [&p](std::int64_t i, float v) {
    if (p.out == fc::output_kind::bf16) {
      static_cast<std::uint16_t*>(p.d)[i] = fp8moe::bfloat16_t(v).bits();
    } else {
      static_cast<float*>(p.d)[i] = v;
    }
  };
}

float sa_at(fc::kernel_params const& p, fc::tile_geometry const& g, int r, int kbg) {
  return r < g.rows_loadable ? p.sfa[p.sfa_layout(g.sfa_group, g.m0 + r, kbg)] : 0.0f;
}
float sb_at(fc::kernel_params const& p, fc::tile_geometry const& g, int col, int kbg) {
  if (col >= g.cols_valid) return 0.0f;
  std::int64_t const row = p.b_scale_granularity == 1 ? g.n0 + col : (g.n0 + col) / fc::b_scale_block_n;
  return p.sfb[p.sfb_layout(g.sfb_group, row, kbg)];
}

// cp.async / TMA: K block kb of the tile's A (rows) and B (cols) into 128B-swizzled tiles;
// rows past the loadable range are zero-filled.
void emu_fill(fc::kernel_params const& p, fc::tile_geometry const& g, int kb, int bm, int bn,
              std::vector<std::uint8_t>& sa, std::vector<std::uint8_t>& sb) {
  for (int r = 0; r < bm; ++r)
    for (int kbyte = 0; kbyte < 128; ++kbyte)
      sa[fc::tile_offset_sw128(r, kbyte)] =
          r < g.rows_loadable && kb * 128 + kbyte < g.k_len
              ? p.a[g.a_offset + static_cast<std::int64_t>(r) * p.a_row_stride + kb * 128 + kbyte]
              : 0;
  for (int r = 0; r < bn; ++r)
    for (int kbyte = 0; kbyte < 128; ++kbyte)
      sb[fc::tile_offset_sw128(r, kbyte)] =
          r < g.cols_valid && kb * 128 + kbyte < g.k_len
              ? p.b[g.b_offset + static_cast<std::int64_t>(r) * p.b_row_stride + kb * 128 + kbyte]
              : 0;
}

// The mma.sync kernel (mma_sync_shape<128,128,*>: 2x4 warps of 64x32) on the CPU.
template <class Write>
void emulate_mma_sync(fc::kernel_params const& p, int ctas, Write&& write) {
  constexpr int bm = 128, bn = 128, warps_m = 2, warps_n = 4, wm_ = bm / warps_m, wn_ = bn / warps_n;
  constexpr int mt_n = wm_ / 16, nt_n = wn_ / 8, pitch = fc::staging_pitch(bn);
  std::vector<std::uint8_t> sa(bm * 128), sb(bn * 128);
  std::vector<float> staging(bm * pitch);
  for (int cta = 0; cta < ctas; ++cta) {
    fc::tile_scheduler sched(fc::make_schedule(p, bm, bn));
    fc::tile_coord t;
    for (std::int64_t ti = cta; sched.get(ti, t); ti += ctas) {
      fc::tile_geometry const g = fc::make_tile_geometry(p, t, bm, bn, p.k_offsets);
      if (g.rows_valid == 0) continue;
      // fin[warp][lane][mt][nt][e]
      std::vector<float> fin(8 * 32 * mt_n * nt_n * 4, 0.0f);
      auto F = [&](int w, int l, int i, int j, int el) -> float& {
        return fin[(((w * 32 + l) * mt_n + i) * nt_n + j) * 4 + el];
      };
      for (int kb = 0; kb < g.k_blocks; ++kb) {
        emu_fill(p, g, kb, bm, bn, sa, sb);
        int const kbg = g.kb0 + kb;
        for (int w = 0; w < 8; ++w) {
          int const wm = w / warps_n, wn = w % warps_n;
          std::vector<float> acc(32 * mt_n * nt_n * 4, 0.0f);
          for (int kk = 0; kk < 4; ++kk) {
            // ldmatrix.x4: register r of lane l = 4 bytes of the row supplied by lane 8r + l/4
            std::uint32_t af[32][mt_n][4], bf[32][nt_n / 2][4];
            for (int l = 0; l < 32; ++l)
              for (int reg = 0; reg < 4; ++reg) {
                coord const d0 = fc::ldmatrix_dst(l, 0);
                coord const as = fc::ldmatrix_a_src(reg * 8 + d0.row, kk);
                coord const bs = fc::ldmatrix_b_src(reg * 8 + d0.row, kk);
                for (int i = 0; i < mt_n; ++i) {
                  std::uint32_t v = 0;
                  for (int by = 0; by < 4; ++by)
                    v |= std::uint32_t(
                             sa[fc::tile_offset_sw128(wm * wm_ + i * 16 + as.row, as.col + d0.col + by)])
                         << (8 * by);
                  af[l][i][reg] = v;
                }
                for (int j = 0; j < nt_n / 2; ++j) {
                  std::uint32_t v = 0;
                  for (int by = 0; by < 4; ++by)
                    v |= std::uint32_t(
                             sb[fc::tile_offset_sw128(wn * wn_ + j * 16 + bs.row, bs.col + d0.col + by)])
                         << (8 * by);
                  bf[l][j][reg] = v;
                }
              }
            // mma.sync m16n8k32: gather A (16x32) and B (32x8) from the lanes' registers through the
            // fragment tables, multiply, scatter D back through the C table
            for (int i = 0; i < mt_n; ++i)
              for (int j = 0; j < nt_n; ++j) {
                float A[16][32], B[32][8];
                for (int l = 0; l < 32; ++l) {
                  for (int el = 0; el < 16; ++el) {
                    coord const c = fc::mma_m16n8k32_a(l, el);
                    A[c.row][c.col] = e4m3(std::uint8_t(af[l][i][el / 4] >> (8 * (el % 4))));
                  }
                  for (int el = 0; el < 8; ++el) {
                    coord const c = fc::mma_m16n8k32_b(l, el);
                    B[c.row][c.col] =
                        e4m3(std::uint8_t(bf[l][j / 2][(j % 2) * 2 + el / 4] >> (8 * (el % 4))));
                  }
                }
                for (int l = 0; l < 32; ++l)
                  for (int el = 0; el < 4; ++el) {
                    coord const c = fc::mma_m16n8_c(l, el);
                    float s = 0.0f;
                    for (int k = 0; k < 32; ++k) s += A[c.row][k] * B[k][c.col];
                    acc[((l * mt_n + i) * nt_n + j) * 4 + el] += s;
                  }
              }
          }
          // promotion with the scales at the fragment's rows / columns
          for (int l = 0; l < 32; ++l)
            for (int i = 0; i < mt_n; ++i)
              for (int j = 0; j < nt_n; ++j)
                for (int el = 0; el < 4; ++el) {
                  coord const c = fc::mma_m16n8_c(l, el);
                  int const row = wm * wm_ + i * 16 + c.row, col = wn * wn_ + j * 8 + c.col;
                  F(w, l, i, j, el) += acc[((l * mt_n + i) * nt_n + j) * 4 + el] *
                                       (sa_at(p, g, row, kbg) * sb_at(p, g, col, kbg));
                }
        }
      }
      for (int w = 0; w < 8; ++w)
        for (int l = 0; l < 32; ++l)
          for (int i = 0; i < mt_n; ++i)
            for (int j = 0; j < nt_n; ++j)
              for (int el = 0; el < 4; ++el) {
                coord const c = fc::mma_m16n8_c(l, el);
                staging[(w / warps_n * wm_ + i * 16 + c.row) * pitch + w % warps_n * wn_ + j * 8 + c.col] =
                    F(w, l, i, j, el);
              }
      emu_store(p, g, staging, bm, bn, pitch, write);
    }
  }
}

// The wgmma kernel (2 consumer warpgroups) on the CPU: TMA fill, descriptor reads, accumulator
// registers through wgmma_m64_acc, the kernel's two row scales per thread.
template <class Write>
void emulate_wgmma(fc::kernel_params const& p, int bm, int bn, int ctas, Write&& write) {
  int const wg_n = bm == 128 ? bn : bn / 2, pitch = fc::staging_pitch(bn);
  std::uint32_t const a_base = 0, b_base = static_cast<std::uint32_t>(bm * 128);
  std::vector<std::uint8_t> smem((bm + bn) * 128);
  std::vector<std::uint8_t> sa(bm * 128), sb(bn * 128);
  std::vector<float> staging(bm * pitch);
  for (int cta = 0; cta < ctas; ++cta) {
    fc::tile_scheduler sched(fc::make_schedule(p, bm, bn));
    fc::tile_coord t;
    for (std::int64_t ti = cta; sched.get(ti, t); ti += ctas) {
      fc::tile_geometry const g = fc::make_tile_geometry(p, t, bm, bn, p.k_offsets);
      if (g.rows_valid == 0) continue;
      std::vector<float> fin(2 * 128 * (wg_n / 2), 0.0f);
      for (int kb = 0; kb < g.k_blocks; ++kb) {
        emu_fill(p, g, kb, bm, bn, sa, sb);
        std::memcpy(smem.data(), sa.data(), sa.size());
        std::memcpy(smem.data() + b_base, sb.data(), sb.size());
        int const kbg = g.kb0 + kb;
        for (int cw = 0; cw < 2; ++cw) {
          int const wg_m0 = bm == 128 ? cw * 64 : 0, wg_n0 = bm == 128 ? 0 : cw * wg_n;
          std::vector<float> acc(128 * (wg_n / 2), 0.0f);
          for (int kk = 0; kk < 4; ++kk) {
            std::uint64_t const da = fc::wgmma_desc_k_major_sw128(a_base + wg_m0 * 128 + kk * 32);
            std::uint64_t const db = fc::wgmma_desc_k_major_sw128(b_base + wg_n0 * 128 + kk * 32);
            for (int th = 0; th < 128; ++th)
              for (int i = 0; i < wg_n / 2; ++i) {
                coord const c = fc::wgmma_m64_acc(th, i);
                float s = 0.0f;
                for (int k = 0; k < 32; ++k)
                  s += e4m3(smem[fc::wgmma_operand_address(da, c.row, k)]) *
                       e4m3(smem[fc::wgmma_operand_address(db, c.col, k)]);
                acc[th * (wg_n / 2) + i] += s;
              }
          }
          for (int th = 0; th < 128; ++th) {
            int const row0 = wg_m0 + (th >> 5) * 16 + ((th & 31) >> 2);  // as the kernel computes it
            float const sa0 = sa_at(p, g, row0, kbg), sa1 = sa_at(p, g, row0 + 8, kbg);
            if (p.b_scale_granularity == 1) {
              // the kernel stages the warpgroup's column scales: sbuf[c] = sb(n0 + wg_n0 + c)
              for (int i = 0; i < wg_n / 2; ++i) {
                coord const c = fc::wgmma_m64_acc(th, i);
                fin[(cw * 128 + th) * (wg_n / 2) + i] +=
                    acc[th * (wg_n / 2) + i] * (((i & 2) ? sa1 : sa0) * sb_at(p, g, wg_n0 + c.col, kbg));
              }
            } else {
              float const sbv = sb_at(p, g, wg_n0, kbg);
              float const s0 = sa0 * sbv, s1 = sa1 * sbv;
              for (int i = 0; i < wg_n / 2; ++i)
                fin[(cw * 128 + th) * (wg_n / 2) + i] += acc[th * (wg_n / 2) + i] * ((i & 2) ? s1 : s0);
            }
          }
        }
      }
      for (int cw = 0; cw < 2; ++cw) {
        int const wg_m0 = bm == 128 ? cw * 64 : 0, wg_n0 = bm == 128 ? 0 : cw * wg_n;
        for (int th = 0; th < 128; ++th)
          for (int i = 0; i < wg_n / 2; ++i) {
            coord const c = fc::wgmma_m64_acc(th, i);
            staging[(wg_m0 + c.row) * pitch + wg_n0 + c.col] = fin[(cw * 128 + th) * (wg_n / 2) + i];
          }
      }
      emu_store(p, g, staging, bm, bn, pitch, write);
    }
  }
}

// Independent float64 reference of the contract, written from the formula (no index helpers):
// D(m,n) = [C +] sum_kb sa(m,kb) sb(n,kb) sum_k a b; padding / masked rows per the layout.
// Returns the expected D (NaN where the kernel must not write) and checks the emulated D.
void check_against_reference(emu_case const& e) {
  auto const& p = e.p;
  std::vector<double> want(e.d.size(), std::nan(""));
  std::vector<double> mag(e.d.size(), 0.0);
  int const groups_d =
      (p.layout == fc::layout_kind::grouped_masked || p.layout == fc::layout_kind::k_grouped) ? p.groups : 1;
  for (int gd = 0; gd < groups_d; ++gd)
    for (int m = 0; m < p.m; ++m) {
      int expert = 0, k_begin = 0, k_end = p.k;
      bool product = true;
      if (p.layout == fc::layout_kind::grouped_contiguous) {
        expert = e.m_indices[m];
        product = expert >= 0 && expert < p.groups;
      }
      if (p.layout == fc::layout_kind::grouped_masked) {
        expert = gd;
        if (m >= e.masked_m[gd]) continue;  // untouched
      }
      if (p.layout == fc::layout_kind::k_grouped) k_begin = e.k_offsets[gd], k_end = e.k_offsets[gd + 1];
      int const a_batch = p.layout == fc::layout_kind::grouped_masked ? gd : 0;
      for (int n = 0; n < p.n; ++n) {
        std::size_t const di = static_cast<std::size_t>(gd * p.d_group_stride +
                                                        static_cast<std::int64_t>(m) * p.d_row_stride + n);
        double s = e.c.empty() ? 0.0 : e.c[di];
        double mg = std::fabs(s);
        if (product) {
          for (int kb = k_begin / 128; kb < (k_end + 127) / 128; ++kb) {
            double part = 0.0, pm = 0.0;
            for (int k = kb * 128; k < kb * 128 + 128 && k < k_end; ++k) {
              double const x =
                  e4m3(e.a[a_batch * p.a_group_stride + static_cast<std::int64_t>(m) * p.a_row_stride + k]) *
                  e4m3(e.b[expert * p.b_group_stride + static_cast<std::int64_t>(n) * p.b_row_stride + k]);
              part += x;
              pm += std::fabs(x);
            }
            std::int64_t const mpad = (p.m + 3) / 4 * 4;
            double const sa = e.sfa[a_batch * mpad * ((p.k + 127) / 128) + kb * mpad + m];
            int const brow = p.b_scale_granularity == 1 ? n : n / 128;
            int const b_rows = p.b_scale_granularity == 1 ? p.n : (p.n + 127) / 128;
            double const sb = e.sfb[(expert * b_rows + brow) * ((p.k + 127) / 128) + kb];
            s += part * sa * sb;
            mg += pm * sa * sb;
          }
        }
        want[di] = s;
        mag[di] = mg;
      }
    }
  int bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i])) {
      if (!std::isnan(e.d[i])) ++bad;  // written where it must stay untouched (poison survives)
      continue;
    }
    // tolerance: FP32 sums of exact FP8 products (<= 2^-24 * 160 of the magnitude, over-bounded by
    // 1e-5) plus the BF16 output rounding (2^-9 relative) when D is bf16
    double const tol =
        1e-5 * mag[i] + (p.out == fc::output_kind::bf16 ? std::ldexp(std::fabs(want[i]), -8) : 0.0) + 1e-30;
    if (!(std::fabs(e.d[i] - want[i]) <= tol)) ++bad;
  }
  CHECK(bad == 0);
}

/// A wgmma tile of the emulator: BM x BN, run by `ctas` persistent CTAs.
struct wgmma_run {
  int block_m, block_n, ctas;
};

/// Runs e through the emulated wgmma kernel (w) or the mma.sync kernel (mma_ctas CTAs), then checks
/// it against the reference.
void emulate_and_check(emu_case& e, bool wgmma, wgmma_run w, int mma_ctas) {
  if (wgmma)
    emulate_wgmma(e.p, w.block_m, w.block_n, w.ctas, case_writer(e));
  else
    emulate_mma_sync(e.p, mma_ctas, case_writer(e));
  check_against_reference(e);
}

}  // namespace

TEST_CASE("host emulation of the device tile loops equals the float64 GEMM, every layout") {
  SUBCASE("dense, partial tiles in M and N, bf16") {
    // path 0: mma.sync on 3 CTAs; paths 1-4: every wgmma tile shape
    constexpr wgmma_run tiles[] = {{0, 0, 0}, {128, 128, 2}, {64, 128, 5}, {128, 64, 1}, {64, 64, 7}};
    for (int path = 0; path < 5; ++path) {
      auto e = make_case(fc::layout_kind::dense, 100, 200, 384, 1, 128, false, 11 + path);
      e.p.out = fc::output_kind::bf16;
      bind(e);
      emulate_and_check(e, path > 0, tiles[path], 3);
    }
  }
  SUBCASE("dense, K = 576 (partial last 128-block, zero-filled past K)") {
    for (int path = 0; path < 2; ++path) {
      auto e = make_case(fc::layout_kind::dense, 64, 576, 576, 1, 128, false, 51 + path);
      e.p.out = fc::output_kind::f32;
      bind(e);
      emulate_and_check(e, path == 1, {64, 128, 3}, 2);
    }
  }
  SUBCASE("dense with C, f32 output") {
    auto e = make_case(fc::layout_kind::dense, 70, 136, 256, 1, 128, true, 5);
    e.p.out = fc::output_kind::f32;
    bind(e);
    emulate_and_check(e, true, {128, 128, 2}, 0);
  }
  SUBCASE("grouped contiguous: padding rows (-1 and out-of-range ids) and an all-padding block") {
    for (int path = 0; path < 2; ++path) {
      auto e = make_case(fc::layout_kind::grouped_contiguous, 512, 192, 256, 3, 128, path == 1, 21);
      e.m_indices.assign(512, -1);
      for (int r = 0; r < 90; ++r) e.m_indices[r] = 1;     // expert 1: 90 rows + padding
      for (int r = 256; r < 380; ++r) e.m_indices[r] = 0;  // rows 128..255: all padding
      for (int r = 384; r < 400; ++r) e.m_indices[r] = 2;
      e.m_indices[390] = -1;  // padding inside a segment
      e.m_indices[395] = 9;   // out of range: padding on the device
      e.p.out = path == 0 ? fc::output_kind::bf16 : fc::output_kind::f32;
      bind(e);
      emulate_and_check(e, path == 0, {128, 128, 3}, 2);
    }
  }
  SUBCASE("grouped masked: empty groups, partial tiles, rows past masked_m untouched") {
    for (int path = 0; path < 2; ++path) {
      auto e = make_case(fc::layout_kind::grouped_masked, 160, 128, 256, 4, 128, false, 31);
      e.masked_m = {0, 130, 7, 160};
      e.p.out = fc::output_kind::bf16;
      bind(e);
      emulate_and_check(e, path == 0, {64, 64, 4}, 3);
    }
  }
  SUBCASE("K-grouped weight gradient: 1x128 B scales, empty group, C accumulate") {
    auto e = make_case(fc::layout_kind::k_grouped, 136, 144, 640, 4, 1, true, 41);
    e.k_offsets = {0, 256, 256, 384, 640};  // group 1 empty: D_1 = C_1
    e.p.out = fc::output_kind::f32;
    bind(e);
    std::vector<float> const c0 = e.d;
    for (int path = 0; path < 2; ++path) {
      std::copy(c0.begin(), c0.end(), e.d.begin());  // poisoned again
      emulate_and_check(e, path == 1, {128, 128, 3}, 2);
    }
  }
}

TEST_CASE("kernel_params validation names the argument") {
  auto e = make_case(fc::layout_kind::dense, 64, 64, 256, 1, 128, false, 1);
  bind(e);
  e.p.out = fc::output_kind::bf16;
  CHECK_NOTHROW(fc::validate(e.p, "fp8moe::gemm::fp8_gemm"));
  auto bad = e.p;
  bad.k = 200;
  CHECK_THROWS_WITH_AS(fc::validate(bad, "w"), doctest::Contains("'k'"), fp8moe::error);
  bad = e.p;
  bad.a = e.p.a + 1;
  CHECK_THROWS_WITH_AS(fc::validate(bad, "w"), doctest::Contains("'a'"), fp8moe::error);
  bad = e.p;
  bad.b_row_stride = 264;
  CHECK_THROWS_WITH_AS(fc::validate(bad, "w"), doctest::Contains("b.row_stride"), fp8moe::error);
  bad = e.p;
  bad.layout = fc::layout_kind::k_grouped;
  CHECK_THROWS_WITH_AS(fc::validate(bad, "w"), doctest::Contains("'d'"), fp8moe::error);
  bad = e.p;
  bad.layout = fc::layout_kind::grouped_masked;
  bad.groups = 1;
  CHECK_THROWS_WITH_AS(fc::validate(bad, "w"), doctest::Contains("masked_m"), fp8moe::error);
}

// =================================================================================================
// The public views -> kernel_params translation (translate.hpp), run through the emulated kernels
// and compared with gemm::reference (float64): proves strides, group strides, scale layouts and
// B-scale granularity reach the kernels as the contract means them.
namespace {
namespace fg = fp8moe::gemm;
namespace ft = fp8moe::test;
using f8 = fp8moe::float8_e4m3_t;
using bf16 = fp8moe::bfloat16_t;
constexpr fp8moe::scaling::tile_shape t1x128{1, 128}, t128{128, 128};

/// |emulated - reference| <= 1e-5 * mag (FP32 sums of exact products) + 2^-8 |ref| for bf16.
template <class TD>
int count_bad(fp8moe::matrix_view<TD const> got, fp8moe::matrix_view<double const> want,
              fp8moe::matrix_view<double const> mag, int rows) {
  int bad = 0;
  for (int r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < got.cols; ++c) {
      double const w = want(r, c), x = static_cast<double>(got(r, c));
      double const tol = 1e-5 * mag(r, c) + (sizeof(TD) == 2 ? std::ldexp(std::fabs(w), -8) : 0.0) + 1e-30;
      if (!(std::fabs(x - w) <= tol)) ++bad;
    }
  return bad;
}

template <class TA, class TB>
ft::out_mat<double> magnitudes(fp8moe::scaling::quantized_matrix_view<TA const> a,
                               fp8moe::scaling::quantized_matrix_view<TB const> b, std::int64_t k0,
                               std::int64_t k, fp8moe::matrix_view<float const> c = {}) {
  ft::out_mat<double> m(a.rows(), b.rows());
  for (std::int64_t r = 0; r < a.rows(); ++r)
    for (std::int64_t j = 0; j < b.rows(); ++j)
      m.buf[static_cast<std::size_t>(r * m.ld + j)] =
          ft::magnitude(a, r, b, j, k0, k, c.data ? c(r, j) : 0.0);
  return m;
}

/// Packs G quantized matrices of one shape into a (G,R,C) batched view (data and scales).
struct packed {
  ft::aligned_buffer<f8> data;
  std::vector<float> scales;
  fg::quantized_batched_view<f8 const> view;
};
packed pack(std::vector<ft::qmat<f8>> const& v) {
  std::int64_t const ds = v[0].ld * v[0].rows, ss = v[0].srows * v[0].scols;
  packed p{ft::aligned_buffer<f8>(static_cast<std::size_t>(ds) * v.size()),
           std::vector<float>(static_cast<std::size_t>(ss) * v.size()),
           {}};
  for (std::size_t e = 0; e < v.size(); ++e) {
    std::memcpy(p.data.data() + e * ds, v[e].data.data(), static_cast<std::size_t>(ds));
    std::memcpy(p.scales.data() + e * ss, v[e].scales.data(), static_cast<std::size_t>(ss) * sizeof(float));
  }
  auto const g = static_cast<std::int64_t>(v.size());
  p.view = {{p.data.data(), g, v[0].rows, v[0].cols, ds, v[0].ld, 1},
            {p.scales.data(), g, v[0].srows, v[0].scols, ss, v[0].scols, 1},
            v[0].tile};
  return p;
}
}  // namespace

TEST_CASE("views -> kernel_params: dense (padded strides, K = 576, C, 1x128 B scales) through both kernels") {
  for (int variant = 0; variant < 3; ++variant) {
    CAPTURE(variant);
    int const m = 70, n = 200, k = variant == 0 ? 576 : 384;
    auto const bt = variant == 2 ? t1x128 : t128;
    auto const a = ft::quantize_gen<f8>(ft::value_gen{200u + variant}, m, k, t1x128, false, 1);
    auto const b = ft::quantize_gen<f8>(ft::value_gen{210u + variant}, n, k, bt, false, 2);
    ft::out_mat<float> c(m, n);
    for (int r = 0; r < m; ++r)
      for (int j = 0; j < n; ++j) c.buf[static_cast<std::size_t>(r * c.ld + j)] = ft::value_gen{7}(r, j);
    auto const cv = variant == 1 ? c.cview() : fp8moe::matrix_view<float const>{};
    ft::out_mat<double> want(m, n);
    fg::reference::fp8_gemm(fg::dense<f8, f8, double>{a.view(), b.view(), want.view(), cv});
    auto const mag = magnitudes(a.view(), b.view(), 0, k, cv);
    for (int kernel = 0; kernel < 2; ++kernel) {
      ft::out_mat<bf16> d(m, n);
      auto const q = fc::to_params(fg::dense<f8, f8, bf16>{a.view(), b.view(), d.view(), cv});
      CHECK(q.b_scale_granularity == (variant == 2 ? 1 : 128));
      if (kernel == 0) {
        emulate_mma_sync(q, 2, params_writer(q));
      } else if (variant == 2) {
        emulate_wgmma(q, 128, 128, 3, params_writer(q));  // 1x128 B scales: 128x128 tiles only
      } else {
        emulate_wgmma(q, 64, 128, 3, params_writer(q));
      }
      CHECK(count_bad<bf16>(d.cview(), want.cview(), mag.cview(), m) == 0);
    }
  }
}

TEST_CASE("views -> kernel_params: grouped contiguous and masked through both kernels") {
  int const g = 3, n = 136, k = 256;
  std::vector<ft::qmat<f8>> bs;
  for (int e = 0; e < g; ++e)
    bs.push_back(ft::quantize_gen<f8>(ft::value_gen{300u + e}, n, k, t128, false, 1));
  auto const b = pack(bs);
  SUBCASE("contiguous") {
    int const m = 384;
    auto const a = ft::quantize_gen<f8>(ft::value_gen{310}, m, k, t1x128);
    std::vector<int> ids(m, -1);
    for (int r = 0; r < 77; ++r) ids[r] = 2;
    for (int r = 256; r < 383; ++r) ids[r] = 0;
    ft::out_mat<double> want(m, n);
    fg::reference::grouped_gemm(
        fg::grouped_contiguous<f8, f8, double>{a.view(), b.view, {ids.data(), m, 1}, want.view(), {}});
    ft::out_mat<double> mag(m, n);
    for (int r = 0; r < m; ++r)
      for (int j = 0; j < n; ++j)
        mag.buf[static_cast<std::size_t>(r * mag.ld + j)] =
            ids[r] < 0 ? 0.0 : ft::magnitude(a.view(), r, bs[ids[r]].view(), j, 0, k);
    for (int kernel = 0; kernel < 2; ++kernel) {
      ft::out_mat<float> d(m, n);
      auto const q = fc::to_params(
          fg::grouped_contiguous<f8, f8, float>{a.view(), b.view, {ids.data(), m, 1}, d.view(), {}});
      if (kernel == 0)
        emulate_mma_sync(q, 2, params_writer(q));
      else
        emulate_wgmma(q, 128, 64, 3, params_writer(q));
      CHECK(count_bad<float>(d.cview(), want.cview(), mag.cview(), m) == 0);
    }
  }
  SUBCASE("masked") {
    int const max_m = 100;
    std::vector<ft::qmat<f8>> as;
    for (int e = 0; e < g; ++e) as.push_back(ft::quantize_gen<f8>(ft::value_gen{320u + e}, max_m, k, t1x128));
    auto const a = pack(as);
    std::vector<int> counts{5, 0, 100};
    for (int kernel = 0; kernel < 2; ++kernel) {
      ft::aligned_buffer<bf16> dbuf(static_cast<std::size_t>(g * max_m * n));
      std::memset(dbuf.data(), 0xFF, dbuf.size() * sizeof(bf16));
      fp8moe::batched_matrix_view<bf16> dv{dbuf.data(), g, max_m, n, max_m * n, n, 1};
      auto const q =
          fc::to_params(fg::grouped_masked<f8, f8, bf16>{a.view, b.view, {counts.data(), g, 1}, dv, {}, 32});
      if (kernel == 0)
        emulate_mma_sync(q, 2, params_writer(q));
      else
        emulate_wgmma(q, 64, 64, 5, params_writer(q));
      for (int e = 0; e < g; ++e) {
        ft::out_mat<double> want(max_m, n);
        fg::reference::fp8_gemm(fg::dense<f8, f8, double>{as[e].view(), bs[e].view(), want.view(), {}});
        auto const mag = magnitudes(as[e].view(), bs[e].view(), 0, k);
        fp8moe::matrix_view<bf16 const> got = dv[e];
        CHECK(count_bad<bf16>(got, want.cview(), mag.cview(), counts[e]) == 0);
        int touched = 0;
        for (int r = counts[e]; r < max_m; ++r)
          for (int j = 0; j < n; ++j) touched += !got(r, j).is_nan();
        CHECK(touched == 0);
      }
    }
  }
}

TEST_CASE("views -> kernel_params: K-grouped weight gradient in place (C == D), host k_sizes") {
  int const m = 130, n = 144;
  std::vector<int> ks{256, 0, 384};
  int const kt = 640, g = 3;
  auto const a = ft::quantize_gen<f8>(ft::value_gen{400}, m, kt, t1x128);
  auto const b = ft::quantize_gen<f8>(ft::value_gen{401}, n, kt, t1x128);
  std::vector<float> c0(static_cast<std::size_t>(g * m * n));
  for (std::size_t i = 0; i < c0.size(); ++i) c0[i] = ft::value_gen{402}(static_cast<std::int64_t>(i), 0);
  std::vector<float> want = c0, d = c0;
  fg::reference::grouped_gemm(fg::k_grouped<f8, f8>{a.view(),
                                                    b.view(),
                                                    {ks.data(), g, 1},
                                                    {want.data(), g, m, n, m * n, n, 1},
                                                    {c0.data(), g, m, n, m * n, n, 1}});
  std::vector<int> offsets;
  fg::k_grouped<f8, f8> const p{a.view(),
                                b.view(),
                                {ks.data(), g, 1},
                                {d.data(), g, m, n, m * n, n, 1},
                                {d.data(), g, m, n, m * n, n, 1}};
  auto q = fc::to_params(p, offsets);
  CHECK(offsets == std::vector<int>{0, 256, 256, 640});
  CHECK(q.b_scale_granularity == 1);
  CHECK(q.out == fc::output_kind::f32);
  q.k_offsets = offsets.data();  // the launcher passes these by value
  for (int kernel = 0; kernel < 2; ++kernel) {
    std::copy(c0.begin(), c0.end(), d.begin());  // D == C again: accumulate in place
    if (kernel == 0)
      emulate_mma_sync(q, 3, params_writer(q));
    else
      emulate_wgmma(q, 128, 128, 2, params_writer(q));
    int bad = 0, k0 = 0;
    for (int e = 0; e < g; ++e) {
      for (int r = 0; r < m; ++r)
        for (int j = 0; j < n; ++j) {
          std::size_t const i = static_cast<std::size_t>(e * m * n + r * n + j);
          double const mag = ft::magnitude(a.view(), r, b.view(), j, k0, ks[e], c0[i]);
          if (!(std::fabs(d[i] - want[i]) <= 1e-5 * mag + std::ldexp(std::fabs(want[i]), -22))) ++bad;
        }
      k0 += ks[e];
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("views -> kernel_params: what the device path does not support is rejected, naming the argument") {
  auto const a = ft::quantize_gen<f8>(ft::value_gen{500}, 64, 512, t1x128);
  auto const b = ft::quantize_gen<f8>(ft::value_gen{501}, 128, 512, t128);
  ft::out_mat<bf16> d(64, 128);
  auto const ok = fg::dense<f8, f8, bf16>{a.view(), b.view(), d.view(), {}};
  CHECK_NOTHROW((void)fc::to_params(ok));
  auto expect = [](auto&& f, char const* arg, fp8moe::errc code) {
    try {
      f();
      FAIL("no exception");
    } catch (fp8moe::error const& e) {
      CHECK(std::string(e.what()).find(arg) != std::string::npos);
      CHECK_MESSAGE(e.code() == code, std::string(e.what()));
    }
  };
  expect([&] { (void)fc::to_params(ok, fg::gemm_options{.promotion_k = 64}); }, "promotion_k",
         fp8moe::errc::unsupported);
  auto const a_row = ft::quantize_gen<f8>(ft::value_gen{502}, 64, 512, fp8moe::scaling::tile_shape{1, 0});
  expect(
      [&] {
        (void)fc::to_params(fg::dense<f8, f8, bf16>{a_row.view(), b.view(), d.view(), {}});
      },
      "a.tile", fp8moe::errc::unsupported);
  auto const b_blk = ft::quantize_gen<f8>(ft::value_gen{503}, 128, 512, fp8moe::scaling::tile_shape{128, 0});
  expect(
      [&] {
        (void)fc::to_params(fg::dense<f8, f8, bf16>{a.view(), b_blk.view(), d.view(), {}});
      },
      "b.tile", fp8moe::errc::unsupported);
  // MN-major B (a (K,N) weight viewed transposed): FP8 wgmma has no transpose
  auto const w = ft::quantize_gen<f8>(ft::value_gen{504}, 512, 128, t128);
  expect(
      [&] {
        (void)fc::to_params(fg::dense<f8, f8, bf16>{a.view(), fg::transposed(w.view()), d.view(), {}});
      },
      "'b'", fp8moe::errc::unsupported);
  auto const a520 = ft::quantize_gen<f8>(ft::value_gen{505}, 64, 520, t1x128);
  auto const b520 = ft::quantize_gen<f8>(ft::value_gen{506}, 128, 520, t128);
  expect(
      [&] {
        (void)fc::to_params(fg::dense<f8, f8, bf16>{a520.view(), b520.view(), d.view(), {}});
      },
      "'k'", fp8moe::errc::invalid_argument);
}
