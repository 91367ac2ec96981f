// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The four block-scaled FP8 GEMM problem layouts (dense, grouped contiguous, grouped masked,
// K-grouped) as plain aggregates of views, the options, and the validation shared by every
// executor. Nothing here computes; views are trivially copyable and can be passed into kernels.
#pragma once

// =================================================================================================
// CONTRACT (all four layouts; letters M N K GEMM, G groups/experts)
// -------------------------------------------------------------------------------------------------
// Operands are quantized_matrix_view<T const> (scaling/quantized.hpp): FP8 data (float8_e4m3_t or
// float8_e5m2_t) plus one float dequantization multiplier per tile, value(r,c) = data(r,c) *
// scales(r / tile_rows, c / tile_cols). A is (M,K), B is (N,K) ("NT": D = A * B^T).
//
// Promotion (arXiv:2412.19437 §3.3.2, DeepGEMM sm90_fp8_gemm_1d2d): K is cut into promotion blocks
// of P = options.promotion_k (128) elements, counted from the first K index of the problem (of the
// group, for K-grouped). The last block may be partial (K = 576 is 4.5 blocks). For every (m, n):
//     acc = C(m,n) if C is given, else 0                               (FP32)
//     for each block kb:  partial = sum_{k in kb} a(m,k) * b(n,k)        (FP8 values, FP32 sum)
//                         acc    += partial * (sa(m,kb) * sb(n,kb))      (FP32; scale product
//                                                                         first, as DeepGEMM)
//     D(m,n) = round(acc)                                                (to float or bf16, RNE)
// so each operand's scale must be constant over a promotion block: its tile extent along K is a
// multiple of P or covers all of K (per-tensor / per-row scaling). 1x128 A with 128x128 B is the
// DeepSeek-V3 forward/dgrad recipe ("1D2D"); 1x128 x 1x128 is the weight gradient ("1D1D").
//
// Orientation: A must be K-major (data.col_stride == 1). B is K-major (col_stride == 1, the NT
// layout) or MN-major (row_stride == 1): the latter is `transposed(w)` of a weight stored (K,N),
// which is how dX = dY * W runs on the 128x128-scaled W without re-quantizing it (square blocks,
// so the transposed scale view is exact). Scale matrices may have any strides (row-major, or
// DeepGEMM's MN-major TMA-aligned layout).
//
// Alignment (checked on every executor, so host and device accept the same inputs): FP8 data
// pointers and the byte stride of their non-unit dimension are multiples of 16 bytes; D and C
// pointers and row strides are multiples of 16 bytes; D and C are row-major (col_stride == 1).
// Scale pointers are float-aligned. Outputs never alias operands; C may alias D (in-place
// accumulation, FP32 output only).
//
// dense               A (M,K)  B (N,K)  D (M,N)  [C (M,N)]. Any M >= 0; N and K >= 0 with partial
//                     last tiles (N = 2112, K = 576).
// grouped_contiguous  A (M,K) holds the rows of all experts back to back; B (G,N,K) per-expert
//                     weights (each expert has its own scale blocks); m_indices (M) int32 gives the
//                     expert of each row, -1 marks a padding row. Every aligned window of m_align
//                     (128) rows holds at most one expert id besides -1. A padding row is never
//                     read from A and gets no product: D(r,:) = C(r,:) when C is given, else 0.
// grouped_masked      A (G,max_m,K), B (G,N,K), D (G,max_m,N) [C likewise]; masked_m (G) int32
//                     valid rows per group, in memory the executor reads (device memory for
//                     cuda_executor). Rows r >= masked_m[g] of D are left untouched. expected_m is
//                     a host-side tile-size hint (0 = unknown) that never changes results.
// k_grouped           A (M, sum K_g), B (N, sum K_g): the token axis of all groups concatenated
//                     along K (e.g. A = dY^T, B = X^T re-quantized 1x128 along the tokens, i.e.
//                     the transposed 128x1 tiles). k_sizes (G) int32 in host memory; group g
//                     covers K columns [sum_{h<g} K_h, + K_g), each K_g a multiple of the operands'
//                     K tile (so no scale tile straddles two groups). D (G,M,N) FP32; with C given
//                     (usually C == D) D_g = C_g + A_g * B_g^T. Empty groups (K_g = 0) write C_g (or 0).
//
// Errors: shapes, strides, alignment, scale-matrix shapes, tiles, indices -> fp8moe::error naming
// the argument, thrown before any output is written.
// =================================================================================================

#include <concepts>
#include <cstdint>
#include <string>
#include <type_traits>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/quantized_views.hpp"

namespace fp8moe::gemm {

using scaling::quantized_batched_view;  // (scaling/quantized_views.hpp)
using scaling::quantized_matrix_view;
using scaling::tile_shape;
using scaling::transposed;

/// Output element types of the FP8 GEMM: float or bfloat16_t.
template <class T>
concept output_element = std::same_as<T, float> || std::same_as<T, bfloat16_t>;

/// Element types the float64 reference can also write (double keeps the unrounded result).
template <class T>
concept reference_output_element = output_element<T> || std::same_as<T, double>;

/// Storage order of an operand along K.
enum class major : std::uint8_t { k, mn };

template <class T>
FP8MOE_HOST_DEVICE major major_of(matrix_view<T> const& m) {
  return (m.col_stride == 1 && !(m.row_stride == 1 && m.cols > 1)) ? major::k : major::mn;
}

// -------------------------------------------------------------------------------------------------
// Options shared by every layout. Defaults are the DeepSeek-V3 recipe.
/// How the host executor accumulates an FP8 GEMM (the CUDA path always promotes every promotion_k).
enum class host_accumulation : std::uint8_t {
  promoted,  ///< the library's kernel: FP32 partial sums promoted every promotion_k (DeepSeek-V3's order)
  sgemm,     ///< operands dequantized to float (code x scale) and CBLAS sgemm over the whole K, FP32
             ///< accumulation in another order (builds with FP8MOE_HAVE_BLAS; the kernel otherwise)
};

struct gemm_options {
  int promotion_k = 128;  ///< K elements per FP32 promotion (DeepSeek-V3 N_C = 128; 32 for MX blocks)
  host_accumulation host = host_accumulation::promoted;  ///< host executor only (gemm/host/sgemm.hpp)
  friend constexpr bool operator==(gemm_options const&, gemm_options const&) = default;
};

/// Options for operands quantized with tiles `a` and `b` (their tiles in the GEMM orientation,
/// e.g. quantized_matrix_view::tile): the promotion interval is DeepSeek-V3's 128, reduced to the
/// greatest common divisor with a K tile finer than that (MX blocks of 32 -> 32).
constexpr gemm_options options_for(tile_shape a, tile_shape b) {
  auto gcd = [](int x, int y) {
    while (y != 0) {
      int const t = x % y;
      x = y;
      y = t;
    }
    return x;
  };
  int p = 128;
  if (a.cols > 0) p = gcd(p, a.cols);
  if (b.cols > 0) p = gcd(p, b.cols);
  return {.promotion_k = p};
}
static_assert(options_for(scaling::tile_1x128, scaling::block_128x128).promotion_k == 128);
static_assert(options_for(scaling::mx_block_32, scaling::mx_block_32).promotion_k == 32);
static_assert(options_for(scaling::per_tensor, scaling::per_row).promotion_k == 128);

// -------------------------------------------------------------------------------------------------
// The four layouts. TA, TB: float8_e4m3_t / float8_e5m2_t. TD: float or bfloat16_t (double for
// the reference only). An empty C (data == nullptr) means "no accumulation".

/// D (M,N) = [C +] A (M,K) * B (N,K)^T.
template <class TA, class TB, class TD>
struct dense {
  quantized_matrix_view<TA const> a;  // (M,K) K-major
  quantized_matrix_view<TB const> b;  // (N,K) K-major, or transposed() of (K,N) storage
  matrix_view<TD> d;                  // (M,N)
  matrix_view<float const> c{};       // (M,N) or empty

  FP8MOE_HOST_DEVICE std::int64_t m() const { return a.rows(); }
  FP8MOE_HOST_DEVICE std::int64_t n() const { return b.rows(); }
  FP8MOE_HOST_DEVICE std::int64_t k() const { return a.cols(); }
};

/// MoE training / prefill: rows of all experts in one A, expert id per row (-1 = padding).
template <class TA, class TB, class TD>
struct grouped_contiguous {
  quantized_matrix_view<TA const> a;   // (M,K) K-major, expert segments aligned to m_align
  quantized_batched_view<TB const> b;  // (G,N,K)
  vector_view<int const> m_indices;    // (M) expert of each row in [0,G), or -1
  matrix_view<TD> d;                   // (M,N)
  matrix_view<float const> c{};        // (M,N) or empty
  int m_align = 128;                   // rows per M tile; one expert per aligned window

  FP8MOE_HOST_DEVICE std::int64_t m() const { return a.rows(); }
  FP8MOE_HOST_DEVICE std::int64_t n() const { return b.rows(); }
  FP8MOE_HOST_DEVICE std::int64_t k() const { return a.cols(); }
  FP8MOE_HOST_DEVICE std::int64_t groups() const { return b.batches(); }
};

/// Decoding: fixed-capacity per-expert buffers, valid row count per group on the device.
template <class TA, class TB, class TD>
struct grouped_masked {
  quantized_batched_view<TA const> a;    // (G,max_m,K) K-major
  quantized_batched_view<TB const> b;    // (G,N,K)
  vector_view<int const> masked_m;       // (G) valid rows per group, 0 <= masked_m[g] <= max_m
  batched_matrix_view<TD> d;             // (G,max_m,N); rows >= masked_m[g] untouched
  batched_matrix_view<float const> c{};  // (G,max_m,N) or empty
  int expected_m = 0;                    // host hint for tile selection (0 = unknown)

  FP8MOE_HOST_DEVICE std::int64_t max_m() const { return a.rows(); }
  FP8MOE_HOST_DEVICE std::int64_t n() const { return b.rows(); }
  FP8MOE_HOST_DEVICE std::int64_t k() const { return a.cols(); }
  FP8MOE_HOST_DEVICE std::int64_t groups() const { return a.batches(); }
};

/// Weight gradient: per group g, D_g (M,N) = [C_g +] A_g (M,K_g) * B_g (N,K_g)^T, FP32 output.
template <class TA, class TB>
struct k_grouped {
  quantized_matrix_view<TA const> a;     // (M, sum K_g) K-major, e.g. dY^T 1x128 along tokens
  quantized_matrix_view<TB const> b;     // (N, sum K_g) K-major, e.g. X^T 1x128 along tokens
  vector_view<int const> k_sizes;        // (G) host memory, K_g >= 0, multiples of the K tiles
  batched_matrix_view<float> d;          // (G,M,N) FP32
  batched_matrix_view<float const> c{};  // (G,M,N) or empty; may alias d

  FP8MOE_HOST_DEVICE std::int64_t m() const { return a.rows(); }
  FP8MOE_HOST_DEVICE std::int64_t n() const { return b.rows(); }
  FP8MOE_HOST_DEVICE std::int64_t k_total() const { return a.cols(); }
  FP8MOE_HOST_DEVICE std::int64_t groups() const { return k_sizes.size; }
};

/// The three layouts grouped_gemm takes.
template <class P>
inline constexpr bool is_grouped_layout = false;
template <class TA, class TB, class TD>
inline constexpr bool is_grouped_layout<grouped_contiguous<TA, TB, TD>> = true;
template <class TA, class TB, class TD>
inline constexpr bool is_grouped_layout<grouped_masked<TA, TB, TD>> = true;
template <class TA, class TB>
inline constexpr bool is_grouped_layout<k_grouped<TA, TB>> = true;
template <class P>
concept grouped_layout = is_grouped_layout<P>;

/// Per-executor dispatch of the entry points (core/dispatch.hpp), left undefined here: the host
/// specialisation is in gemm/host/gemm.hpp, the cuda_executor one in gemm/cuda/gemm.cuh. Each has
/// static members workspace_bytes, with_workspace, fp8_gemm (dense) and grouped_gemm (per layout).
template <class Exec>
struct dispatch;

// =================================================================================================
// Validation (host code, shared by every executor). Throws fp8moe::error before any output is
// written. The host executor additionally checks the index arrays (check_indices below); device
// executors cannot read them without synchronizing and treat out-of-range ids as padding.
namespace detail {

inline std::string num(std::int64_t v) {
  return std::to_string(v);
}

inline bool aligned16(void const* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0;
}

/// Promotion interval and the K tile of an operand: the tile along K is a multiple of P, or covers K.
inline void check_k_tile(std::int64_t tile_k_raw, std::int64_t k_extent, int p, char const* where,
                         char const* arg) {
  if (tile_k_raw <= 0) return;  // whole extent
  if (tile_k_raw >= k_extent) return;
  require(tile_k_raw % p == 0, where, arg,
          "a scale tile along K that is a multiple of the promotion interval " + num(p) +
              " or covers all of K (set gemm_options::promotion_k to match the recipe)",
          "tile along K = " + num(tile_k_raw));
}

/// Both operands' scale tiles along K (0: whole extent) against the promotion interval.
inline void check_k_tiles(std::int64_t a_tile_k, std::int64_t b_tile_k, std::int64_t k_extent,
                          gemm_options const& o, char const* where) {
  check_k_tile(a_tile_k, k_extent, o.promotion_k, where, "a.tile");
  check_k_tile(b_tile_k, k_extent, o.promotion_k, where, "b.tile");
}

/// FP8 data: extents, K-major (A) or either major (B), 16-byte alignment of pointer and stride.
template <class T>
void check_fp8_data(matrix_view<T const> const& m, bool allow_mn_major, char const* where, char const* arg) {
  check_matrix(m, where, arg);
  if (m.rows == 0 || m.cols == 0) return;
  bool const k_major = m.col_stride == 1;
  bool const mn_major = m.row_stride == 1;
  require(k_major || (allow_mn_major && mn_major), where, arg,
          allow_mn_major ? "K-major (col_stride 1) or MN-major (row_stride 1) data"
                         : "K-major data (col_stride 1)",
          "strides " + num(m.row_stride) + "," + num(m.col_stride));
  require(aligned16(m.data), where, arg, "a 16-byte aligned data pointer", "misaligned pointer");
  std::int64_t const lead = k_major ? m.row_stride : m.col_stride;
  std::int64_t const outer = k_major ? m.rows : m.cols;
  if (outer > 1) {
    require(lead % 16 == 0, where, arg, "a leading stride that is a multiple of 16 bytes",
            "stride " + num(lead));
  }
}

/// A scale matrix of the exact shape scale_rows x scale_cols for an R x C operand.
template <class T>
void check_scales(quantized_matrix_view<T const> const& q, char const* where, char const* arg) {
  auto const& s = q.scales;
  require(q.tile.rows >= 0 && q.tile.cols >= 0, where, arg, "a tile with non-negative extents",
          num(q.tile.rows) + "x" + num(q.tile.cols));
  std::int64_t const sr = scaling::scale_rows(q.tile, q.rows());
  std::int64_t const sc = scaling::scale_cols(q.tile, q.cols());
  require(s.rows == sr && s.cols == sc, where, arg,
          "a scale matrix of " + num(sr) + "x" + num(sc) + " floats for tile " + num(q.tile.rows) + "x" +
              num(q.tile.cols),
          num(s.rows) + "x" + num(s.cols));
  if (sr == 0 || sc == 0) return;
  require(s.data != nullptr, where, arg, "non-null scales", "nullptr");
  require((reinterpret_cast<std::uintptr_t>(s.data) & 3u) == 0, where, arg, "float-aligned scales",
          "misaligned pointer");
  require(s.row_stride >= 0 && s.col_stride >= 0 && (s.rows == 1 || s.row_stride > 0) &&
              (s.cols == 1 || s.col_stride > 0),
          where, arg, "non-negative scale strides", num(s.row_stride) + "," + num(s.col_stride));
  // Distinct elements, as quantize requires of the scales it writes: rows (or columns) must not
  // overlap, e.g. row-major scales need row_stride >= cols.
  bool const distinct = s.rows == 1 || s.cols == 1 || s.row_stride >= s.col_stride * s.cols ||
                        s.col_stride >= s.row_stride * s.rows;
  require(distinct, where, arg,
          "scale strides whose rows do not overlap (row_stride >= cols * col_stride, or col_stride >= rows * "
          "row_stride; " +
              num(s.rows) + "x" + num(s.cols) + " scales)",
          "row_stride " + num(s.row_stride) + ", col_stride " + num(s.col_stride));
}

/// Output / accumulator matrix: row-major, 16-byte aligned pointer and row stride.
template <class T>
void check_output(matrix_view<T> const& m, std::int64_t rows, std::int64_t cols, char const* where,
                  char const* arg) {
  check_shape(m, rows, cols, where, arg);
  check_matrix(m, where, arg);
  if (rows == 0 || cols == 0) return;
  require(m.col_stride == 1, where, arg, "row-major (col_stride 1)", "col_stride " + num(m.col_stride));
  require(aligned16(m.data), where, arg, "a 16-byte aligned pointer", "misaligned pointer");
  if (rows > 1) {
    require((m.row_stride * static_cast<std::int64_t>(sizeof(std::remove_cv_t<T>))) % 16 == 0, where, arg,
            "a row stride that is a multiple of 16 bytes", "row_stride " + num(m.row_stride));
  }
}

template <class TD>
void check_c(matrix_view<float const> const& c, matrix_view<TD> const& d, std::int64_t rows,
             std::int64_t cols, char const* where) {
  if (c.data == nullptr) return;
  check_output(c, rows, cols, where, "c");
  if constexpr (!std::is_same_v<std::remove_cv_t<TD>, float>) {
    (void)d;
  } else {
    if (static_cast<void const*>(c.data) == static_cast<void const*>(d.data)) {
      require(c.row_stride == d.row_stride, where, "c", "the same row stride as d when c aliases d",
              num(c.row_stride) + " vs " + num(d.row_stride));
    }
  }
}

inline void check_options(gemm_options const& o, char const* where) {
  require(o.promotion_k > 0, where, "options.promotion_k", "a positive interval", num(o.promotion_k));
}

template <class T>
matrix_view<T const> as_const(matrix_view<T> const& m) {
  return {m.data, m.rows, m.cols, m.row_stride, m.col_stride};
}

}  // namespace detail

/// Validates a dense problem (shapes, strides, alignment, scales, tiles).
template <class TA, class TB, class TD>
void validate(dense<TA, TB, TD> const& p, gemm_options const& o = {}) {
  constexpr char const* where = "fp8moe::gemm::fp8_gemm";
  detail::check_options(o, where);
  detail::check_fp8_data(p.a.data, false, where, "a");
  detail::check_fp8_data(p.b.data, true, where, "b");
  require(p.b.cols() == p.a.cols(), where, "b", "K = " + detail::num(p.a.cols()) + " columns (B is N x K)",
          detail::num(p.b.cols()));
  detail::check_scales(p.a, where, "a.scales");
  detail::check_scales(p.b, where, "b.scales");
  detail::check_k_tiles(p.a.tile.cols, p.b.tile.cols, p.k(), o, where);
  detail::check_output(p.d, p.m(), p.n(), where, "d");
  detail::check_c(p.c, p.d, p.m(), p.n(), where);
}

/// Validates a grouped-contiguous problem (not the index values: see check_indices).
template <class TA, class TB, class TD>
void validate(grouped_contiguous<TA, TB, TD> const& p, gemm_options const& o = {}) {
  constexpr char const* where = "fp8moe::gemm::grouped_gemm(contiguous)";
  detail::check_options(o, where);
  // The same rule on every executor: the device kernels put one expert in each 64-row M tile.
  require(p.m_align > 0 && p.m_align % 64 == 0, where, "m_align",
          "a positive multiple of 64 (one expert per 64-row tile, on every executor)",
          detail::num(p.m_align));
  detail::check_fp8_data(p.a.data, false, where, "a");
  require(p.b.batches() >= 0, where, "b", "a non-negative group count", detail::num(p.b.batches()));
  require(p.b.cols() == p.a.cols(), where, "b",
          "K = " + detail::num(p.a.cols()) + " columns (B is G x N x K)", detail::num(p.b.cols()));
  detail::check_scales(p.a, where, "a.scales");
  detail::check_k_tiles(p.a.tile.cols, p.b.tile.cols, p.k(), o, where);
  for (std::int64_t g = 0; g < p.b.batches(); ++g) {
    detail::check_fp8_data(p.b[g].data, true, where, "b");
    detail::check_scales(p.b[g], where, "b.scales");
  }
  require(p.m_indices.size == p.m(), where, "m_indices", detail::num(p.m()) + " entries (one per row of a)",
          detail::num(p.m_indices.size));
  require(p.m() == 0 || p.m_indices.data != nullptr, where, "m_indices", "non-null data", "nullptr");
  detail::check_output(p.d, p.m(), p.n(), where, "d");
  detail::check_c(p.c, p.d, p.m(), p.n(), where);
}

/// Validates a grouped-masked problem (not masked_m's values: see check_indices).
template <class TA, class TB, class TD>
void validate(grouped_masked<TA, TB, TD> const& p, gemm_options const& o = {}) {
  constexpr char const* where = "fp8moe::gemm::grouped_gemm(masked)";
  detail::check_options(o, where);
  require(p.b.batches() == p.groups(), where, "b", detail::num(p.groups()) + " groups (as a)",
          detail::num(p.b.batches()));
  require(p.b.cols() == p.a.cols(), where, "b", "K = " + detail::num(p.a.cols()) + " columns",
          detail::num(p.b.cols()));
  detail::check_k_tiles(p.a.tile.cols, p.b.tile.cols, p.k(), o, where);
  require(p.masked_m.size == p.groups(), where, "masked_m", detail::num(p.groups()) + " entries",
          detail::num(p.masked_m.size));
  require(p.groups() == 0 || p.masked_m.data != nullptr, where, "masked_m", "non-null data", "nullptr");
  require(p.d.batches == p.groups(), where, "d", detail::num(p.groups()) + " groups",
          detail::num(p.d.batches));
  require(p.c.data == nullptr || p.c.batches == p.groups(), where, "c", detail::num(p.groups()) + " groups",
          detail::num(p.c.batches));
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    detail::check_fp8_data(p.a[g].data, false, where, "a");
    detail::check_scales(p.a[g], where, "a.scales");
    detail::check_fp8_data(p.b[g].data, true, where, "b");
    detail::check_scales(p.b[g], where, "b.scales");
    detail::check_output(p.d[g], p.max_m(), p.n(), where, "d");
    if (p.c.data != nullptr) detail::check_c(p.c[g], p.d[g], p.max_m(), p.n(), where);
  }
}

/// Validates a K-grouped problem, including k_sizes (host memory).
template <class TA, class TB>
void validate(k_grouped<TA, TB> const& p, gemm_options const& o = {}) {
  constexpr char const* where = "fp8moe::gemm::grouped_gemm(k_grouped)";
  detail::check_options(o, where);
  detail::check_fp8_data(p.a.data, false, where, "a");
  detail::check_fp8_data(p.b.data, false, where, "b");
  require(p.b.cols() == p.a.cols(), where, "b", "sum K_g = " + detail::num(p.a.cols()) + " columns",
          detail::num(p.b.cols()));
  detail::check_scales(p.a, where, "a.scales");
  detail::check_scales(p.b, where, "b.scales");
  require(p.k_sizes.size >= 0 && (p.k_sizes.size == 0 || p.k_sizes.data != nullptr), where, "k_sizes",
          "a host array of G sizes");
  std::int64_t const ta = p.a.tile.cols, tb = p.b.tile.cols;  // 0: whole extent
  std::int64_t total = 0;
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    std::int64_t const kg = p.k_sizes[g];
    // messages are formatted only on failure: these loops run on every call
    if (kg < 0)
      require(false, where, "k_sizes", "non-negative sizes",
              "k_sizes[" + detail::num(g) + "] = " + detail::num(kg));
    if (p.groups() > 1) {
      if (ta > 0 && kg % ta != 0)
        require(false, where, "k_sizes",
                "sizes that are multiples of a's scale tile along K (" + detail::num(ta) + ")",
                "k_sizes[" + detail::num(g) + "] = " + detail::num(kg));
      if (tb > 0 && kg % tb != 0)
        require(false, where, "k_sizes",
                "sizes that are multiples of b's scale tile along K (" + detail::num(tb) + ")",
                "k_sizes[" + detail::num(g) + "] = " + detail::num(kg));
    }
    total += kg;
  }
  require(total == p.k_total(), where, "k_sizes",
          "sizes summing to the K extent of a (" + detail::num(p.k_total()) + ")", detail::num(total));
  detail::check_k_tiles(ta, tb, p.k_total(), o, where);
  require(p.d.batches == p.groups(), where, "d", detail::num(p.groups()) + " groups",
          detail::num(p.d.batches));
  require(p.c.data == nullptr || p.c.batches == p.groups(), where, "c", detail::num(p.groups()) + " groups",
          detail::num(p.c.batches));
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    detail::check_output(p.d[g], p.m(), p.n(), where, "d");
    if (p.c.data != nullptr) detail::check_c(p.c[g], p.d[g], p.m(), p.n(), where);
  }
}

/// Host check of the index arrays (the host executor runs it; device executors cannot).
template <class TA, class TB, class TD>
void check_indices(grouped_contiguous<TA, TB, TD> const& p) {
  constexpr char const* where = "fp8moe::gemm::grouped_gemm(contiguous)";
  std::int64_t const g = p.groups();
  for (std::int64_t w = 0; w < p.m(); w += p.m_align) {
    int id = -1;
    std::int64_t const end = w + p.m_align < p.m() ? w + p.m_align : p.m();
    for (std::int64_t r = w; r < end; ++r) {
      int const e = p.m_indices[r];
      // messages are formatted only on failure: this loop runs over every row on every call
      if (e < -1 || e >= g)
        require(false, where, "m_indices", "expert ids in [-1, " + detail::num(g) + ")",
                "m_indices[" + detail::num(r) + "] = " + detail::num(e));
      if (e < 0) continue;
      if (id >= 0 && id != e)
        require(false, where, "m_indices",
                "one expert per aligned window of " + detail::num(p.m_align) +
                    " rows (segments aligned to m_align)",
                "experts " + detail::num(id) + " and " + detail::num(e) + " in rows " + detail::num(w) +
                    ".." + detail::num(end - 1));
      id = e;
    }
  }
}

template <class TA, class TB, class TD>
void check_indices(grouped_masked<TA, TB, TD> const& p) {
  constexpr char const* where = "fp8moe::gemm::grouped_gemm(masked)";
  for (std::int64_t g = 0; g < p.groups(); ++g) {
    int const m = p.masked_m[g];
    if (m < 0 || m > p.max_m())
      require(false, where, "masked_m", "counts in [0, " + detail::num(p.max_m()) + "]",
              "masked_m[" + detail::num(g) + "] = " + detail::num(m));
  }
}

}  // namespace fp8moe::gemm
