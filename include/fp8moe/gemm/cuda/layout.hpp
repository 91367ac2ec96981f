// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Index math of the device FP8 GEMM kernels, host-compilable and unit-tested on the CPU:
// mma.sync m16n8k32 / ldmatrix fragment ownership, wgmma m64nNk32 accumulator layout, 128-byte
// shared-memory swizzle, wgmma shared-memory descriptors, the persistent tile scheduler for the
// four layouts (dense, grouped contiguous, grouped masked, K-grouped) and the tile selector.
// Pure functions of their arguments; nothing here touches device state.
#pragma once

#include <cstdint>

#include "fp8moe/config.hpp"
#include "fp8moe/core/math.hpp"

namespace fp8moe::gemm::cuda {

/// Fixed by the recipe: one FP32 scale per 128 K elements, so the tensor core accumulates 128
/// products (4 x k32) before the CUDA cores promote them into the FP32 accumulator.
inline constexpr int block_k = 128;
/// Scale granularity of B along N for the 128x128 weight recipe.
inline constexpr int b_scale_block_n = 128;

/// A (row, column) pair inside a fragment's matrix. For A operands row = M index, col = K index;
/// for B operands row = K index, col = N index; for accumulators row = M, col = N.
struct coord {
  int row;
  int col;
  friend constexpr bool operator==(coord, coord) = default;
};

// ------------------------------------------------------------------------------------------------
// mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 (PTX ISA "Matrix Fragments for mma.m16n8k32")
// groupID = lane / 4, threadID_in_group = lane % 4.

/// A (16x32, row-major): element i in 0..15 of a lane lives in register i / 4, byte i % 4.
constexpr FP8MOE_HOST_DEVICE coord mma_m16n8k32_a(int lane, int i) {
  int const group = lane >> 2, tig = lane & 3;
  int const row = (i < 4 || (i >= 8 && i < 12)) ? group : group + 8;
  int const col = tig * 4 + (i & 3) + (i >= 8 ? 16 : 0);
  return {row, col};
}
/// B (32x8, column-major): element i in 0..7 lives in register i / 4, byte i % 4; (k, n).
constexpr FP8MOE_HOST_DEVICE coord mma_m16n8k32_b(int lane, int i) {
  int const group = lane >> 2, tig = lane & 3;
  return {tig * 4 + (i & 3) + (i >= 4 ? 16 : 0), group};
}
/// C/D (16x8, f32): element i in 0..3.
constexpr FP8MOE_HOST_DEVICE coord mma_m16n8_c(int lane, int i) {
  int const group = lane >> 2, tig = lane & 3;
  return {group + (i >= 2 ? 8 : 0), tig * 2 + (i & 1)};
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 on 8-bit data: each 8x8 b16 matrix is 8 rows x 16
// bytes. Lane l supplies the address of row (l % 8) of matrix (l / 8); register j of lane l then
// holds bytes 4*(l%4) .. 4*(l%4)+3 of row l/4 of matrix j.

/// Byte (row, kbyte) that lane `lane` receives in register `reg`, byte `byte`, relative to the
/// matrix origin (row 0, byte 0 of matrix `reg`).
constexpr FP8MOE_HOST_DEVICE coord ldmatrix_dst(int lane, int byte) {
  return {lane >> 2, (lane & 3) * 4 + byte};
}

/// Row and K byte, within a warp's 16-row A sub-tile and the k32 step `kk` of a 128-byte K tile,
/// whose address lane `lane` supplies to ldmatrix.x4 so that the four result registers are the
/// mma.m16n8k32 A fragment: matrices (rows 0-7, k 0-15), (8-15, 0-15), (0-7, 16-31), (8-15, 16-31).
constexpr FP8MOE_HOST_DEVICE coord ldmatrix_a_src(int lane, int kk) {
  int const mat = lane >> 3, r = lane & 7;
  return {r + (mat & 1) * 8, kk * 32 + (mat >> 1) * 16};
}
/// Same for B: a 16-column (two n8 tiles) sub-tile; registers {0,1} are the B fragment of the
/// first n8 tile, {2,3} of the second: matrices (n 0-7, k 0-15), (0-7, 16-31), (8-15, 0-15), (8-15, 16-31).
constexpr FP8MOE_HOST_DEVICE coord ldmatrix_b_src(int lane, int kk) {
  int const mat = lane >> 3, r = lane & 7;
  return {r + (mat >> 1) * 8, kk * 32 + (mat & 1) * 16};
}

// ------------------------------------------------------------------------------------------------
// wgmma.mma_async m64nNk32 f32 accumulator (PTX ISA "Register Fragments and Shared Memory Matrix
// Layouts", D matrix for .m64nNk32): warp w of the warpgroup owns rows 16w..16w+15; register i
// belongs to the n8 column block i / 4 and follows the m16n8 C layout inside it.

/// (row, col) of accumulator register `i` (0 .. N/2-1) of thread `t` (0..127) of the warpgroup.
constexpr FP8MOE_HOST_DEVICE coord wgmma_m64_acc(int t, int i) {
  int const warp = t >> 5, lane = t & 31;
  coord const c = mma_m16n8_c(lane, i & 3);
  return {warp * 16 + c.row, (i >> 2) * 8 + c.col};
}

// ------------------------------------------------------------------------------------------------
// 128-byte swizzle (TMA CU_TENSOR_MAP_SWIZZLE_128B, wgmma layout type 1): inside each 1024-byte
// atom of 8 rows x 128 bytes, the 16-byte chunk index (address bits 4..6) is XORed with the row
// index inside the atom (bits 7..9). Tiles start 1024-byte aligned, so the offset is the address.

constexpr FP8MOE_HOST_DEVICE std::uint32_t swizzle_128b(std::uint32_t offset) {
  return offset ^ (((offset >> 7) & 7u) << 4);
}
/// Byte offset of (row, kbyte) in a K-major tile with 128-byte rows (one K block of FP8).
constexpr FP8MOE_HOST_DEVICE std::uint32_t tile_offset_sw128(int row, int kbyte) {
  return swizzle_128b(static_cast<std::uint32_t>(row) * 128u + static_cast<std::uint32_t>(kbyte));
}

// ------------------------------------------------------------------------------------------------
// wgmma shared-memory matrix descriptor (PTX ISA "Matrix Descriptor Format"): bits 0-13 start
// address >> 4, 16-29 leading-dimension byte offset >> 4, 32-45 stride-dimension byte offset >> 4,
// 49-51 base offset, 62-63 swizzle mode (1 = 128B).

struct wgmma_desc_fields {
  std::uint32_t start_address;  // bytes
  std::uint32_t leading_byte_offset;
  std::uint32_t stride_byte_offset;
  std::uint32_t base_offset;
  std::uint32_t swizzle;  // 0 none, 1 128B, 2 64B, 3 32B
  friend constexpr bool operator==(wgmma_desc_fields const&, wgmma_desc_fields const&) = default;
};

constexpr FP8MOE_HOST_DEVICE std::uint64_t encode_wgmma_desc(wgmma_desc_fields f) {
  return (static_cast<std::uint64_t>((f.start_address >> 4) & 0x3FFFu)) |
         (static_cast<std::uint64_t>((f.leading_byte_offset >> 4) & 0x3FFFu) << 16) |
         (static_cast<std::uint64_t>((f.stride_byte_offset >> 4) & 0x3FFFu) << 32) |
         (static_cast<std::uint64_t>(f.base_offset & 7u) << 49) |
         (static_cast<std::uint64_t>(f.swizzle & 3u) << 62);
}
constexpr FP8MOE_HOST_DEVICE wgmma_desc_fields decode_wgmma_desc(std::uint64_t d) {
  return {static_cast<std::uint32_t>(d & 0x3FFFu) << 4, static_cast<std::uint32_t>((d >> 16) & 0x3FFFu) << 4,
          static_cast<std::uint32_t>((d >> 32) & 0x3FFFu) << 4, static_cast<std::uint32_t>((d >> 49) & 7u),
          static_cast<std::uint32_t>((d >> 62) & 3u)};
}
/// Descriptor of a K-major operand tile with 128-byte rows and the 128B swizzle, starting at shared
/// address `smem_addr` (1024-byte aligned tile + 32 * kk for the k32 step kk). Core matrices of 8
/// rows are 1024 bytes apart (SBO); LBO is unused for swizzled K-major layouts (set to 16).
constexpr FP8MOE_HOST_DEVICE std::uint64_t wgmma_desc_k_major_sw128(std::uint32_t smem_addr) {
  return encode_wgmma_desc({.start_address = smem_addr,
                            .leading_byte_offset = 16,
                            .stride_byte_offset = 1024,
                            .base_offset = 0,
                            .swizzle = 1});
}
/// The shared address the tensor core reads for element (row, k) of a K-major SW128 operand
/// described by `desc` (what the hardware does, per the PTX canonical layout): linear address in
/// the unswizzled canonical layout, then the 128B XOR on address bits.
constexpr FP8MOE_HOST_DEVICE std::uint32_t wgmma_operand_address(std::uint64_t desc, int row, int k) {
  wgmma_desc_fields const f = decode_wgmma_desc(desc);
  std::uint32_t const linear = f.start_address + static_cast<std::uint32_t>(row / 8) * f.stride_byte_offset +
                               static_cast<std::uint32_t>(row % 8) * 128u + static_cast<std::uint32_t>(k);
  return swizzle_128b(linear);
}

// ------------------------------------------------------------------------------------------------
// Problem layouts and the persistent tile scheduler.

enum class layout_kind : std::uint8_t {
  dense,               ///< D (M,N) = A (M,K) . B (N,K)^T
  grouped_contiguous,  ///< A (M_sum,K) rows tagged with an expert id (-1 = padding), B (G,N,K)
  grouped_masked,      ///< A (G,max_m,K), D (G,max_m,N); rows >= masked_m[g] untouched
  k_grouped            ///< D (G,M,N) (+)= A_g (M,K_g) . B_g (N,K_g)^T, K_g = k_offsets[g+1]-k_offsets[g]
};

/// Everything the scheduler needs. Pointers are device pointers in kernels, host pointers in the
/// CPU emulation. m is M_sum (contiguous) or max_m (masked); groups is G (1 for dense).
struct schedule_problem {
  layout_kind layout = layout_kind::dense;
  int m = 0, n = 0, groups = 1;
  int block_m = 128, block_n = 128;
  int raster_group = 8;            ///< N blocks walked together (L2 reuse of A rows)
  int const* m_indices = nullptr;  ///< (M_sum) contiguous: expert id per row, -1 padding
  int const* masked_m = nullptr;   ///< (G) masked: valid rows per group
};

/// One output tile. `skip` tiles (contiguous blocks of padding rows only) reduce nothing; their
/// epilogue writes the padding value (C or 0).
struct tile_coord {
  int group = 0;
  int m_block = 0;
  int n_block = 0;
  bool skip = false;
  friend constexpr bool operator==(tile_coord const&, tile_coord const&) = default;
};

/// Rasterization: tile `t` of an m_blocks x n_blocks grid, walking `raster` N blocks at a time
/// with N fastest inside a band, so tiles running at once share the same B columns and A rows.
constexpr FP8MOE_HOST_DEVICE void rasterize(std::int64_t t, int m_blocks, int n_blocks, int raster,
                                            int& m_block, int& n_block) {
  std::int64_t const band_tiles = static_cast<std::int64_t>(raster) * m_blocks;
  int const band = static_cast<int>(t / band_tiles);
  int const first_n = band * raster;
  int const width = (n_blocks - first_n) < raster ? (n_blocks - first_n) : raster;
  int const local = static_cast<int>(t - band * band_tiles);
  m_block = local / width;
  n_block = first_n + local % width;
}

/// Persistent scheduler: CTA b visits tiles b, b + gridDim, ... in increasing order; `next`
/// keeps a cursor over the groups so the masked layout's prefix sums cost O(G) per CTA overall.
class tile_scheduler {
 public:
  constexpr FP8MOE_HOST_DEVICE explicit tile_scheduler(schedule_problem const& p)
      : p_(p), m_blocks_(ceil_div(p.m, p.block_m)), n_blocks_(ceil_div(p.n, p.block_n)) {}

  constexpr FP8MOE_HOST_DEVICE int n_blocks() const { return n_blocks_; }
  constexpr FP8MOE_HOST_DEVICE int m_blocks() const { return m_blocks_; }

  /// Total tiles for layouts whose count is known on the host (all but masked, whose count is
  /// an upper bound: groups * m_blocks * n_blocks).
  constexpr FP8MOE_HOST_DEVICE std::int64_t max_tiles() const {
    std::int64_t const per = static_cast<std::int64_t>(m_blocks_) * n_blocks_;
    return (p_.layout == layout_kind::grouped_masked || p_.layout == layout_kind::k_grouped) ? per * p_.groups
                                                                                             : per;
  }

  /// Expert of an M block of the contiguous layout: the first id in [0, G) among its rows (the
  /// contract allows one expert per aligned window plus -1 padding anywhere); -1 when the block
  /// is all padding. Ids outside [0, G) count as padding (the device cannot validate them).
  constexpr FP8MOE_HOST_DEVICE int contiguous_block_group(int m_block) const {
    int const first = m_block * p_.block_m;
    int const last = (first + p_.block_m) < p_.m ? (first + p_.block_m) : p_.m;
    for (int r = first; r < last; ++r) {
      int const id = p_.m_indices[r];
      if (id >= 0 && id < p_.groups) return id;
    }
    return -1;
  }

  /// Tile number `t` (callers pass increasing t). Returns false when t is past the last tile.
  constexpr FP8MOE_HOST_DEVICE bool get(std::int64_t t, tile_coord& out) {
    std::int64_t const per = static_cast<std::int64_t>(m_blocks_) * n_blocks_;
    out = tile_coord{};
    switch (p_.layout) {
      case layout_kind::dense:
        if (t >= per) return false;
        rasterize(t, m_blocks_, n_blocks_, p_.raster_group, out.m_block, out.n_block);
        return true;
      case layout_kind::grouped_contiguous: {
        if (t >= per) return false;
        rasterize(t, m_blocks_, n_blocks_, p_.raster_group, out.m_block, out.n_block);
        out.group = contiguous_block_group(out.m_block);
        out.skip = out.group < 0;
        if (out.skip) out.group = 0;
        return true;
      }
      case layout_kind::k_grouped: {
        if (t >= per * p_.groups) return false;
        out.group = static_cast<int>(t / per);
        rasterize(t - out.group * per, m_blocks_, n_blocks_, p_.raster_group, out.m_block, out.n_block);
        return true;
      }
      case layout_kind::grouped_masked: {
        while (cursor_group_ < p_.groups) {
          int const rows = p_.masked_m[cursor_group_];
          std::int64_t const tiles =
              static_cast<std::int64_t>(ceil_div(rows < 0 ? 0 : rows, p_.block_m)) * n_blocks_;
          if (t < cursor_first_ + tiles) {
            int const mb = ceil_div(rows, p_.block_m);
            out.group = cursor_group_;
            rasterize(t - cursor_first_, mb, n_blocks_, p_.raster_group, out.m_block, out.n_block);
            return true;
          }
          cursor_first_ += tiles;
          ++cursor_group_;
        }
        return false;
      }
    }
    return false;
  }

 private:
  schedule_problem p_;
  int m_blocks_ = 0, n_blocks_ = 0;
  int cursor_group_ = 0;
  std::int64_t cursor_first_ = 0;  // first tile number of cursor_group_
};

// ------------------------------------------------------------------------------------------------
// Scale indexing. A scales are 1x128 (one per row per K block); B scales are 128x128 blocks of
// the (N,K) operand, or 1x128 per row for the K-grouped weight gradient. Any strides (row-major
// or DeepGEMM's MN-major TMA-aligned layout).

struct scale_layout {
  std::int64_t row_stride = 0;  ///< elements between scale rows (M or N/128 direction)
  std::int64_t col_stride = 1;  ///< elements between K blocks
  std::int64_t group_stride = 0;
  constexpr FP8MOE_HOST_DEVICE std::int64_t operator()(int group, std::int64_t row, std::int64_t kb) const {
    return group * group_stride + row * row_stride + kb * col_stride;
  }
};
/// Scale row of an operand row `r` for a given B granularity (1 = per row, 128 = 128-row blocks).
constexpr FP8MOE_HOST_DEVICE std::int64_t scale_row(std::int64_t r, int granularity) {
  return r / granularity;
}

// ------------------------------------------------------------------------------------------------
// Ahead-of-time tile selection: every (M, N, K) class maps onto one of the instantiated configs.

enum class kernel_family : std::uint8_t { wgmma_sm90a, mma_sync_sm89 };

struct tile_config {
  kernel_family family = kernel_family::wgmma_sm90a;
  int block_m = 128;
  int block_n = 128;
  int stages = 4;
  friend constexpr bool operator==(tile_config const&, tile_config const&) = default;
};

/// Shared memory of one wgmma pipeline stage (A tile + B tile; both 1024-byte multiples).
constexpr FP8MOE_HOST_DEVICE int wgmma_stage_bytes(int block_m, int block_n) {
  return (block_m + block_n) * block_k;
}
/// Row pitch (floats) of the FP32 epilogue staging tile: +4 floats breaks bank conflicts.
constexpr FP8MOE_HOST_DEVICE int staging_pitch(int block_n) {
  return block_n + 4;
}
/// Bytes reserved at the front of dynamic shared memory: mbarriers (first 256 bytes), then the
/// per-column B scales of the 1x128-B-scale variant (2 buffers x 2 warpgroups x 128 floats).
inline constexpr int smem_header_bytes = 3072;
/// Pipeline depth of an instantiated wgmma tile: as many stages as fit in `smem_limit` next to
/// the FP32 staging tile, at most 6.
constexpr FP8MOE_HOST_DEVICE int wgmma_stages_for(int block_m, int block_n, int smem_limit = 227 * 1024) {
  int const epilogue = block_m * staging_pitch(block_n) * 4;
  int const s = (smem_limit - epilogue - smem_header_bytes - 1024) / wgmma_stage_bytes(block_m, block_n);
  return s > 6 ? 6 : s;
}
/// Dynamic shared memory of the wgmma kernel (header, 1024-aligned stages, staging tile).
constexpr FP8MOE_HOST_DEVICE int wgmma_smem_bytes(int block_m, int block_n, int stages) {
  return smem_header_bytes + 1024 + stages * wgmma_stage_bytes(block_m, block_n) +
         block_m * staging_pitch(block_n) * 4;
}
/// Dynamic shared memory of the mma.sync kernel: the staging tile reuses the pipeline buffers.
constexpr FP8MOE_HOST_DEVICE int mma_sync_smem_bytes(int block_m, int block_n, int stages) {
  int const pipe = stages * (block_m + block_n) * block_k;
  int const staging = block_m * staging_pitch(block_n) * 4;
  return 1024 + (pipe > staging ? pipe : staging);
}

/// The selector. On sm_90a every layout runs on wgmma; elsewhere on mma.sync (128x128 tiles).
/// 128x128 B scales: block_m = 64 when M <= 64 (rows past M are wasted tensor work), else 128;
/// block_n in {128, 64} minimising waves over `num_sms`, ties to 128 (less A re-reading) unless
/// 128-wide tiles would leave more than half the SMs idle. 1x128 B scales (the weight gradient,
/// large M and N): 128x128 only. `m` is M (dense, K-grouped), M_sum (contiguous) or the expected
/// rows per group (masked).
constexpr FP8MOE_HOST_DEVICE tile_config select_tile(layout_kind layout, std::int64_t m, std::int64_t n,
                                                     int groups, int num_sms, bool sm90a,
                                                     bool per_row_b_scales) {
  if (!sm90a) return {.family = kernel_family::mma_sync_sm89, .block_m = 128, .block_n = 128, .stages = 3};
  if (per_row_b_scales || layout == layout_kind::k_grouped) {
    return {.family = kernel_family::wgmma_sm90a,
            .block_m = 128,
            .block_n = 128,
            .stages = wgmma_stages_for(128, 128)};
  }
  int const g = layout == layout_kind::grouped_masked ? (groups > 0 ? groups : 1) : 1;
  int const bm = m <= 64 ? 64 : 128;
  int const sms = num_sms > 0 ? num_sms : 1;
  std::int64_t const m_tiles = ceil_div<std::int64_t>(m > 0 ? m : 1, bm) * g;
  std::int64_t const tiles128 = m_tiles * ceil_div<std::int64_t>(n, 128);
  std::int64_t const waves128 = ceil_div<std::int64_t>(tiles128, sms);
  std::int64_t const waves64 = ceil_div<std::int64_t>(m_tiles * ceil_div<std::int64_t>(n, 64), sms);
  // fewer waves, or under half the SMs busy (memory-bound small M: more CTAs stream more bytes)
  int const bn = (waves64 < waves128 || 2 * tiles128 <= sms) ? 64 : 128;
  return {
      .family = kernel_family::wgmma_sm90a, .block_m = bm, .block_n = bn, .stages = wgmma_stages_for(bm, bn)};
}

}  // namespace fp8moe::gemm::cuda
