// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The low-level argument block of the device FP8 GEMM kernels (raw pointers, extents, strides,
// scale layouts) and its host-side validation. Host-compilable; the public gemm:: entry points
// translate their views into this. D is overwritten (bf16 / f32) or accumulated (D = C + A.B^T).
#pragma once

#include <cstdint>
#include <string>

#include "fp8moe/core/error.hpp"
#include "fp8moe/gemm/cuda/layout.hpp"

namespace fp8moe::gemm::cuda {

/// Element type of D. With C given the epilogue writes D = round(C + A.B^T).
enum class output_kind : std::uint8_t { bf16, f32 };

/// One device GEMM, every layout. All element strides; FP8 operands are K-major (K contiguous,
/// the only form FP8 wgmma accepts), scales FP32 with any strides.
///   dense:      A (M,K)            B (N,K)          D (M,N)
///   contiguous: A (M_sum,K)        B (G,N,K)        D (M_sum,N)   m_indices (M_sum) on device
///   masked:     A (G,max_m,K)      B (G,N,K)        D (G,max_m,N) masked_m (G) on device
///   k_grouped:  A (M,K_total)      B (N,K_total)    D (G,M,N)     k_offsets (G+1) on device;
///               group g reduces over columns [k_offsets[g], k_offsets[g+1]) of A and B.
struct kernel_params {
  layout_kind layout = layout_kind::dense;
  int m = 0;  ///< M, M_sum or max_m
  int n = 0;
  int k = 0;       ///< K (all K for k_grouped)
  int groups = 1;  ///< G (1 for dense)

  std::uint8_t const* a = nullptr;  // E4M3 bytes
  std::int64_t a_row_stride = 0;
  std::int64_t a_group_stride = 0;  // masked
  std::uint8_t const* b = nullptr;
  std::int64_t b_row_stride = 0;
  std::int64_t b_group_stride = 0;  // contiguous, masked

  float const* sfa = nullptr;  ///< sfa(group, row, kb): 1x128 scales of A
  scale_layout sfa_layout{};
  float const* sfb = nullptr;  ///< sfb(group, row / b_scale_granularity, kb)
  scale_layout sfb_layout{};
  int b_scale_granularity = 128;  ///< 128 (128x128 weight blocks) or 1 (1x128 per row)

  void* d = nullptr;
  std::int64_t d_row_stride = 0;
  std::int64_t d_group_stride = 0;
  output_kind out = output_kind::bf16;
  float const* c = nullptr;  ///< optional FP32 accumulator input (may alias an f32 D)
  std::int64_t c_row_stride = 0;
  std::int64_t c_group_stride = 0;

  int const* m_indices = nullptr;  ///< contiguous
  int const* masked_m = nullptr;   ///< masked
  int const* k_offsets = nullptr;  ///< k_grouped: G+1 prefix sums (multiples of 128); the kernels
                                   ///< take them from a by-value k_group_table instead
};

/// K-grouped prefix sums passed by value (kernel parameter space), so the host-memory k_sizes of
/// the public API reach the kernel without a device allocation or copy. Problems with more
/// groups run as several launches of at most `capacity` groups.
struct k_group_table {
  static constexpr int capacity = 256;
  int offsets[capacity + 1] = {};  ///< K offset of each group; offsets[g+1] - offsets[g] = K_g
};

/// Calls f(q, table) once per launch: once for the non-K-grouped layouts (empty table), and per
/// chunk of at most k_group_table::capacity groups for K-grouped problems (q's groups, D and C
/// shifted to the chunk; the table holds the chunk's absolute K offsets). Host code.
template <class F>
void for_each_launch_chunk(kernel_params const& p, int const* k_offsets, F&& f) {
  if (p.layout != layout_kind::k_grouped) {
    f(p, k_group_table{});
    return;
  }
  for (int g0 = 0; g0 < p.groups; g0 += k_group_table::capacity) {
    kernel_params q = p;
    k_group_table kt{};
    q.groups = (p.groups - g0) < k_group_table::capacity ? (p.groups - g0) : k_group_table::capacity;
    for (int i = 0; i <= q.groups; ++i) kt.offsets[i] = k_offsets[g0 + i];
    q.d = static_cast<float*>(p.d) + g0 * p.d_group_stride;
    if (p.c != nullptr) q.c = p.c + g0 * p.c_group_stride;
    f(q, kt);
  }
}

/// Where one output tile's operands and outputs live.
struct tile_geometry {
  int group;
  int m0, n0;         ///< first row / column of the tile
  int rows_valid;     ///< rows of the tile that exist (D rows written, at most BM)
  int rows_loadable;  ///< rows of A that may be read (>= rows_valid; zero-filled past it)
  int cols_valid;     ///< columns that exist (at most BN)
  int k_blocks;       ///< 128-wide K blocks to reduce (the last may be partial)
  int k_len;          ///< K elements of this tile's reduction (bytes past it read as zero)
  int kb0;            ///< first K block (global index into the scale matrices)
  int sfa_group, sfb_group;
  bool padding_block;     ///< contiguous block of padding rows only (written with C or 0)
  std::int64_t a_offset;  ///< byte offset of A(m0, k0)
  std::int64_t b_offset;  ///< byte offset of B(n0, k0)
  std::int64_t d_offset;  ///< element offset of D(m0, n0)
  std::int64_t c_offset;
};

/// `k_offsets`: the K-grouped prefix sums (G+1 entries) wherever they live (param space on the
/// device, a host array in the CPU emulation); unused by the other layouts.
constexpr FP8MOE_HOST_DEVICE tile_geometry make_tile_geometry(kernel_params const& p, tile_coord const& t,
                                                              int block_m, int block_n,
                                                              int const* k_offsets) {
  tile_geometry g{};
  g.group = t.group;
  g.m0 = t.m_block * block_m;
  g.n0 = t.n_block * block_n;
  g.cols_valid = (p.n - g.n0) < block_n ? (p.n - g.n0) : block_n;
  int rows_total = p.m;  // rows that exist in memory
  int rows_live = p.m;   // rows whose output is defined
  int k0 = 0;
  g.k_len = p.k;
  g.sfa_group = 0;
  g.sfb_group = 0;
  std::int64_t a_group = 0, b_group = 0, d_group = 0, c_group = 0;
  switch (p.layout) {
    case layout_kind::dense:
      break;
    case layout_kind::grouped_contiguous:
      b_group = t.group * p.b_group_stride;
      g.sfb_group = t.group;
      break;
    case layout_kind::grouped_masked: {
      int const live = p.masked_m[t.group];
      rows_live = live < p.m ? live : p.m;
      a_group = t.group * p.a_group_stride;
      b_group = t.group * p.b_group_stride;
      d_group = t.group * p.d_group_stride;
      c_group = t.group * p.c_group_stride;
      g.sfa_group = t.group;
      g.sfb_group = t.group;
      break;
    }
    case layout_kind::k_grouped:
      k0 = k_offsets[t.group];
      g.k_len = k_offsets[t.group + 1] - k0;
      d_group = t.group * p.d_group_stride;
      c_group = t.group * p.c_group_stride;
      break;
  }
  g.padding_block = t.skip;
  g.k_blocks = ceil_div(g.k_len, block_k);
  if (t.skip) g.k_blocks = 0;  // contiguous all-padding block: epilogue only
  g.kb0 = k0 / block_k;
  int const live = rows_live - g.m0;
  g.rows_valid = live < 0 ? 0 : (live < block_m ? live : block_m);
  int const mem = rows_total - g.m0;
  g.rows_loadable = mem < block_m ? mem : block_m;
  g.a_offset = a_group + static_cast<std::int64_t>(g.m0) * p.a_row_stride + k0;
  g.b_offset = b_group + static_cast<std::int64_t>(g.n0) * p.b_row_stride + k0;
  g.d_offset = d_group + static_cast<std::int64_t>(g.m0) * p.d_row_stride + g.n0;
  g.c_offset = c_group + static_cast<std::int64_t>(g.m0) * p.c_row_stride + g.n0;
  return g;
}

/// What the epilogue does with row r (0-based in the tile).
enum class row_action : std::uint8_t { skip, product, fill };

/// skip: the row does not exist or is masked out (left untouched); fill: a contiguous padding row
/// (-1 or an id of another expert), written as C or 0; product: written as [C +] A.B^T.
/// `row_group` is the expert id of the row (contiguous only; ignored otherwise).
constexpr FP8MOE_HOST_DEVICE row_action epilogue_row_action(kernel_params const& p, tile_geometry const& g,
                                                            int r, int row_group) {
  if (r >= g.rows_valid) return row_action::skip;
  if (p.layout == layout_kind::grouped_contiguous && (g.padding_block || row_group != g.group))
    return row_action::fill;
  return row_action::product;
}

/// The scheduler's view of a problem for a given tile shape.
constexpr FP8MOE_HOST_DEVICE schedule_problem make_schedule(kernel_params const& p, int block_m,
                                                            int block_n) {
  return {.layout = p.layout,
          .m = p.m,
          .n = p.n,
          .groups = p.groups,
          .block_m = block_m,
          .block_n = block_n,
          .raster_group = 8,
          .m_indices = p.m_indices,
          .masked_m = p.masked_m};
}

/// Bytes of one output element.
constexpr int output_bytes(output_kind o) {
  return o == output_kind::bf16 ? 2 : 4;
}

/// Host-side validation before any launch: everything the kernels and TMA rely on. Throws
/// fp8moe::error naming the argument. `where` is the public entry point's name.
inline void validate(kernel_params const& p, char const* where) {
  auto aligned16 = [](void const* ptr) { return (reinterpret_cast<std::uintptr_t>(ptr) & 15u) == 0; };
  auto str = [](std::int64_t v) { return std::to_string(v); };
  require(p.m >= 0 && p.n >= 0 && p.k >= 0, where, "m/n/k", "non-negative extents",
          str(p.m) + "/" + str(p.n) + "/" + str(p.k));
  require(p.groups >= 1 || p.layout == layout_kind::dense, where, "groups", ">= 1", str(p.groups));
  require(p.k % 16 == 0, where, "k",
          "a multiple of 16 (16-byte copies along K; a partial last 128-block is zero-filled)", str(p.k));
  if (p.m == 0 || p.n == 0) return;
  require(p.a != nullptr && aligned16(p.a), where, "a", "a non-null, 16-byte aligned pointer (TMA)");
  require(p.b != nullptr && aligned16(p.b), where, "b", "a non-null, 16-byte aligned pointer (TMA)");
  require(p.a_row_stride % 16 == 0 && p.a_row_stride >= p.k, where, "a.row_stride",
          "a multiple of 16 bytes and >= K", str(p.a_row_stride));
  require(p.b_row_stride % 16 == 0 && p.b_row_stride >= p.k, where, "b.row_stride",
          "a multiple of 16 bytes and >= K", str(p.b_row_stride));
  if (p.layout == layout_kind::grouped_masked) {
    require(p.a_group_stride % 16 == 0 && p.a_group_stride >= p.a_row_stride * p.m, where, "a.group_stride",
            "a multiple of 16 bytes and >= max_m * row_stride", str(p.a_group_stride));
  }
  if (p.layout == layout_kind::grouped_contiguous || p.layout == layout_kind::grouped_masked) {
    require(p.b_group_stride % 16 == 0 && p.b_group_stride >= p.b_row_stride * p.n, where, "b.group_stride",
            "a multiple of 16 bytes and >= N * row_stride", str(p.b_group_stride));
  }
  require(p.sfa != nullptr, where, "sfa", "non-null A scales");
  require(p.sfb != nullptr, where, "sfb", "non-null B scales");
  require(p.b_scale_granularity == 128 || p.b_scale_granularity == 1, where, "b_scale_granularity",
          "128 (128x128 blocks) or 1 (1x128 per row)", str(p.b_scale_granularity));
  require(p.d != nullptr && aligned16(p.d), where, "d", "a non-null, 16-byte aligned pointer");
  int const vec = 16 / output_bytes(p.out);
  require(p.d_row_stride % vec == 0 && p.d_row_stride >= p.n, where, "d.row_stride",
          "a multiple of " + str(vec) + " elements (16 bytes) and >= N", str(p.d_row_stride));
  require(p.d_group_stride % vec == 0, where, "d.group_stride", "a multiple of 16 bytes",
          str(p.d_group_stride));
  if (p.c != nullptr) {
    require(aligned16(p.c), where, "c", "a 16-byte aligned pointer");
    require(p.c_row_stride % 4 == 0 && p.c_row_stride >= p.n, where, "c.row_stride",
            "a multiple of 4 floats and >= N", str(p.c_row_stride));
  }
  switch (p.layout) {
    case layout_kind::dense:
      break;
    case layout_kind::grouped_contiguous:
      require(p.m_indices != nullptr, where, "m_indices", "a device array of M_sum expert ids");
      break;
    case layout_kind::grouped_masked:
      require(p.masked_m != nullptr, where, "masked_m", "a device array of G row counts");
      break;
    case layout_kind::k_grouped:
      require(p.out == output_kind::f32, where, "d", "FP32 output for the weight gradient");
      break;
  }
}

}  // namespace fp8moe::gemm::cuda
