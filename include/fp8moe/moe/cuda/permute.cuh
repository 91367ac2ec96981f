// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// CUDA path of the plan / permute / combine ops (permute_dispatch<cuda_executor>): the plan by CUB
// histogram + scan + stable radix sort (deterministic, the same plan as the host), row permute with
// 16-byte vector copies, fixed-order FP32 combine (no atomics) and the backwards. Enqueued on
// exec.stream, never synchronizes; all arrays are device memory. Device differences: a masked count
// above max_m drops the extra slots (slot_row = -1) instead of throwing.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cub/device/device_histogram.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <type_traits>

#include "fp8moe/core/cuda/device_buffer.hpp"
#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/moe/cuda/router.cuh"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/scaling/cuda/quantized.hpp"

namespace fp8moe::moe {

namespace cuda_detail {

inline std::size_t align256(std::size_t b) {
  return (b + 255) / 256 * 256;
}

struct plan_scratch_sizes {
  std::size_t keys, cub_temp, total;
};

/// Scratch: keys in/out and values in/out (n int32 each), start (E+1), padded (E), CUB temp.
inline plan_scratch_sizes plan_scratch(std::int64_t n, std::int64_t E) {
  std::size_t sort_b = 0, hist_b = 0, scan_b = 0;
  int const bits = 32 - __builtin_clz(static_cast<unsigned>(E) + 1u);
  FP8MOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_b, static_cast<std::int32_t const*>(nullptr), static_cast<std::int32_t*>(nullptr),
      static_cast<std::int32_t const*>(nullptr), static_cast<std::int32_t*>(nullptr), static_cast<int>(n), 0,
      bits));
  FP8MOE_CUDA_CHECK(cub::DeviceHistogram::HistogramEven(
      nullptr, hist_b, static_cast<std::int32_t const*>(nullptr), static_cast<int*>(nullptr),
      static_cast<int>(E + 1), 0, static_cast<int>(E), static_cast<int>(n)));
  FP8MOE_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, scan_b, static_cast<std::int32_t const*>(nullptr),
                                                  static_cast<std::int32_t*>(nullptr), static_cast<int>(E)));
  std::size_t const keys = align256(static_cast<std::size_t>(n > 0 ? n : 1) * 4);
  std::size_t const small = align256(static_cast<std::size_t>(2 * E + 1) * 4);
  std::size_t const temp = align256(std::max({sort_b, hist_b, scan_b, std::size_t{1}}));
  return {keys, temp, 4 * keys + small + temp};
}

__global__ void plan_keys_kernel(matrix_view<std::int32_t const> ids, std::int32_t E, std::int32_t* keys,
                                 std::int32_t* vals) {
  std::int64_t const i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= ids.rows * ids.cols) return;
  std::int32_t const e = ids(i / ids.cols, i % ids.cols);
  keys[i] = (e >= 0 && e < E) ? e : E;  // -1 (remote) and invalid ids sort last and are dropped
  vals[i] = static_cast<std::int32_t>(i);
}

/// One block: padded sizes per expert (contiguous) and the masked offsets / clamped counts.
__global__ void plan_sizes_kernel(permute_plan p, std::int32_t* padded) {
  for (std::int64_t e = threadIdx.x; e < p.experts; e += blockDim.x) {
    std::int32_t const c = p.counts[e];
    if (p.layout == layout_kind::contiguous) {
      padded[e] = static_cast<std::int32_t>(round_up<std::int64_t>(c, p.align));
    } else {
      p.expert_offset[e] = static_cast<std::int32_t>(e * p.align);
      if (c > p.align) p.counts[e] = static_cast<std::int32_t>(p.align);
    }
  }
  if (threadIdx.x == 0) {
    p.expert_offset[0] = 0;
    if (p.layout == layout_kind::masked) p.expert_offset[p.experts] = static_cast<std::int32_t>(p.rows);
  }
}

__global__ void plan_scatter_kernel(permute_plan p, std::int32_t const* keys, std::int32_t const* vals,
                                    std::int32_t const* start) {
  std::int64_t const i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.tokens * p.k) return;
  std::int32_t const e = keys[i], v = vals[i];
  if (e >= p.experts) {
    p.slot_row[v] = -1;
    return;
  }
  std::int64_t const rank = i - (e == 0 ? 0 : start[e - 1]);
  if (p.layout == layout_kind::masked && rank >= p.align) {
    p.slot_row[v] = -1;
    return;
  }
  std::int64_t const row = (p.layout == layout_kind::masked ? e * p.align : p.expert_offset[e]) + rank;
  p.row_token[row] = static_cast<std::int32_t>(v / p.k);
  p.row_slot[row] = static_cast<std::int32_t>(v % p.k);
  p.row_expert[row] = e;
  p.slot_row[v] = static_cast<std::int32_t>(row);
}

FP8MOE_DEVICE bool row_is_written_dev(permute_plan const& p, std::int64_t r, std::int32_t t) {
  return t >= 0 || (p.layout == layout_kind::contiguous && r < p.expert_offset[p.experts]);
}

/// One block per output row; 16-byte vectors when both rows are contiguous and aligned.
template <class T>
__global__ void permute_rows_kernel(permute_plan p, matrix_view<T const> x, matrix_view<T> out, T pad,
                                    bool vec) {
  std::int64_t const r = blockIdx.x;
  std::int32_t const t = p.row_token[r];
  if (!row_is_written_dev(p, r, t)) return;
  T* dst = out.row(r);
  if (vec) {
    constexpr int per = 16 / sizeof(T);
    auto* d4 = reinterpret_cast<uint4*>(dst);
    std::int64_t const n4 = out.cols / per;
    if (t >= 0) {
      auto const* s4 = reinterpret_cast<uint4 const*>(x.row(t));
      for (std::int64_t i = threadIdx.x; i < n4; i += blockDim.x) d4[i] = s4[i];
    } else {
      uint4 z;
      T* zp = reinterpret_cast<T*>(&z);
      for (int i = 0; i < per; ++i) zp[i] = pad;
      for (std::int64_t i = threadIdx.x; i < n4; i += blockDim.x) d4[i] = z;
    }
    return;
  }
  for (std::int64_t c = threadIdx.x; c < out.cols; c += blockDim.x)
    dst[c * out.col_stride] = t >= 0 ? x(t, c) : pad;
}

/// One block per token; thread h computes acc = fma(w(t,j), y(slot_row[t,j], h), acc) in FP32, j ascending.
template <class Y, class Out>
__global__ void combine_kernel(permute_plan p, matrix_view<Y const> y, matrix_view<float const> w,
                               matrix_view<Out> out) {
  std::int64_t const t = blockIdx.x;
  for (std::int64_t h = threadIdx.x; h < out.cols; h += blockDim.x) {
    float acc = 0.0f;
    for (std::int64_t j = 0; j < p.k; ++j) {
      std::int32_t const r = p.slot_row[t * p.k + j];
      if (r < 0) continue;
      float const wj = w.rows ? w(t, j) : 1.0f;
      acc = fmaf(wj, static_cast<float>(y(r, h)), acc);  // fused, as the host combine_row
    }
    out(t, h) = static_cast<Out>(acc);
  }
}

/// Vectorized combine: each thread owns V = 16 / sizeof(Y) consecutive columns (one 16-byte load
/// per slot). Same per-column arithmetic and order as combine_kernel. Needs unit column strides,
/// cols % V == 0 and 16-byte aligned y rows (checked by the launcher).
template <class Y, class Out>
__global__ void combine_vec_kernel(permute_plan p, matrix_view<Y const> y, matrix_view<float const> w,
                                   matrix_view<Out> out) {
  constexpr int V = 16 / sizeof(Y);
  std::int64_t const t = blockIdx.x;
  for (std::int64_t h = static_cast<std::int64_t>(threadIdx.x) * V; h < out.cols;
       h += static_cast<std::int64_t>(blockDim.x) * V) {
    float acc[V];
#pragma unroll
    for (int v = 0; v < V; ++v) acc[v] = 0.0f;
    for (std::int64_t j = 0; j < p.k; ++j) {
      std::int32_t const r = p.slot_row[t * p.k + j];
      if (r < 0) continue;
      float const wj = w.rows ? w(t, j) : 1.0f;
      uint4 const raw = *reinterpret_cast<uint4 const*>(y.row(r) + h);
      Y const* yv = reinterpret_cast<Y const*>(&raw);
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] = fmaf(wj, static_cast<float>(yv[v]), acc[v]);
    }
    Out* o = out.row(t) + h;
#pragma unroll
    for (int v = 0; v < V; ++v) o[v] = static_cast<Out>(acc[v]);
  }
}

template <class G, class DY>
__global__ void combine_backward_rows_kernel(permute_plan p, matrix_view<float const> w,
                                             matrix_view<G const> dout, matrix_view<DY> dy) {
  std::int64_t const r = blockIdx.x;
  std::int32_t const t = p.row_token[r];
  float const wj = t < 0 ? 0.0f : (w.rows ? w(t, p.row_slot[r]) : 1.0f);
  for (std::int64_t h = threadIdx.x; h < dy.cols; h += blockDim.x)
    dy(r, h) = static_cast<DY>(t < 0 ? 0.0f : wj * static_cast<float>(dout(t, h)));
}

/// One warp per (t, j): dweights(t,j) = <dout(t), y(slot_row)> (FP32, fixed shuffle tree).
template <class Y, class G>
__global__ void combine_backward_weights_kernel(permute_plan p, matrix_view<Y const> y,
                                                matrix_view<G const> dout, matrix_view<float> dw) {
  std::int64_t const pair = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  int const lane = threadIdx.x % 32;
  if (pair >= p.tokens * p.k) return;
  std::int64_t const t = pair / p.k, j = pair % p.k;
  std::int32_t const r = p.slot_row[pair];
  float dot = 0.0f;
  if (r >= 0)
    for (std::int64_t h = lane; h < y.cols; h += 32)
      dot += static_cast<float>(dout(t, h)) * static_cast<float>(y(r, h));
  for (int o = 16; o > 0; o /= 2) dot += __shfl_xor_sync(0xFFFFFFFFu, dot, o);
  if (lane == 0) dw(t, j) = dot;
}

__global__ void permute_weights_kernel(permute_plan p, matrix_view<float const> w, vector_view<float> out) {
  std::int64_t const r = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= p.rows) return;
  std::int32_t const t = p.row_token[r];
  out[r] = t >= 0 ? w(t, p.row_slot[r]) : 0.0f;
}

inline unsigned blocks_for(std::int64_t n, int threads) {
  return static_cast<unsigned>(ceil_div<std::int64_t>(n, threads));
}

}  // namespace cuda_detail

/// Builds the plan on the device from ids (T,k) (row-major, device memory): the same arrays as the
/// host build, bit for bit. p.rows must be at least plan_rows(layout, T, k, E) for contiguous.
namespace cuda_detail {
inline void build_permute_plan(cuda_executor const& exec, matrix_view<std::int32_t const> ids,
                               permute_plan const& p, device_workspace ws) {
  constexpr char const* where = "fp8moe::moe::build_permute_plan";
  detail::check_plan(p, where);
  check_shape(ids, p.tokens, p.k, where, "ids");
  std::int64_t const n = p.tokens * p.k, E = p.experts;
  if (p.layout == layout_kind::contiguous)
    require(p.rows >= plan_rows(contiguous{static_cast<int>(p.align)}, p.tokens, p.k, E), where, "plan.rows",
            "plan_rows(layout, T, k, E) on the device (the routing is not known on the host)",
            std::to_string(p.rows));
  auto const sz = cuda_detail::plan_scratch(n, E);
  require(ws.data != nullptr && ws.bytes >= sz.total, where, "workspace",
          std::to_string(sz.total) + " bytes (workspace_bytes(exec, plan_shape{T, k, E}))",
          std::to_string(ws.bytes));
  auto* base = static_cast<char*>(ws.data);
  auto* keys_in = reinterpret_cast<std::int32_t*>(base);
  auto* keys_out = reinterpret_cast<std::int32_t*>(base + sz.keys);
  auto* vals_in = reinterpret_cast<std::int32_t*>(base + 2 * sz.keys);
  auto* vals_out = reinterpret_cast<std::int32_t*>(base + 3 * sz.keys);
  auto* start = reinterpret_cast<std::int32_t*>(base + 4 * sz.keys);  // (E) inclusive scan of counts
  auto* padded = start + E;                                           // (E+1)
  void* temp = base + sz.total - sz.cub_temp;
  cudaStream_t const s = exec.stream;
  if (p.rows > 0) {
    FP8MOE_CUDA_CHECK(cudaMemsetAsync(p.row_token, 0xFF, static_cast<std::size_t>(p.rows) * 4, s));
    FP8MOE_CUDA_CHECK(cudaMemsetAsync(p.row_slot, 0xFF, static_cast<std::size_t>(p.rows) * 4, s));
    FP8MOE_CUDA_CHECK(cudaMemsetAsync(p.row_expert, 0xFF, static_cast<std::size_t>(p.rows) * 4, s));
  }
  FP8MOE_CUDA_CHECK(cudaMemsetAsync(p.counts, 0, static_cast<std::size_t>(E) * 4, s));
  if (n > 0) {
    cuda_detail::plan_keys_kernel<<<cuda_detail::blocks_for(n, 256), 256, 0, s>>>(
        ids, static_cast<std::int32_t>(E), keys_in, vals_in);
    FP8MOE_CUDA_CHECK_LAUNCH();
    std::size_t tb = sz.cub_temp;
    FP8MOE_CUDA_CHECK(cub::DeviceHistogram::HistogramEven(temp, tb, keys_in, p.counts,
                                                          static_cast<int>(E + 1), 0, static_cast<int>(E),
                                                          static_cast<int>(n), s));
    int const bits = 32 - __builtin_clz(static_cast<unsigned>(E) + 1u);
    tb = sz.cub_temp;
    FP8MOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, tb, keys_in, keys_out, vals_in, vals_out,
                                                      static_cast<int>(n), 0, bits, s));  // stable
    tb = sz.cub_temp;
    FP8MOE_CUDA_CHECK(cub::DeviceScan::InclusiveSum(temp, tb, p.counts, start, static_cast<int>(E), s));
  }
  cuda_detail::plan_sizes_kernel<<<1, 256, 0, s>>>(p, padded);
  FP8MOE_CUDA_CHECK_LAUNCH();
  if (p.layout == layout_kind::contiguous) {
    std::size_t tb = sz.cub_temp;
    FP8MOE_CUDA_CHECK(
        cub::DeviceScan::InclusiveSum(temp, tb, padded, p.expert_offset + 1, static_cast<int>(E), s));
  }
  if (n > 0) {
    cuda_detail::plan_scatter_kernel<<<cuda_detail::blocks_for(n, 256), 256, 0, s>>>(p, keys_out, vals_out,
                                                                                     start);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }
}
}  // namespace cuda_detail

/// Owning device plan with its build workspace, allocated on the executor's stream (device_buffer:
/// stream-ordered allocation and free). Move-only.
class cuda_permute_plan {
 public:
  template <class Layout>
  cuda_permute_plan(cuda_executor const& exec, Layout l, std::int64_t T, std::int64_t k, std::int64_t E) {
    host_permute_plan::check_layout(l, T, k, E);
    p_.layout = std::is_same_v<Layout, masked> ? layout_kind::masked : layout_kind::contiguous;
    p_.tokens = T;
    p_.k = k;
    p_.experts = E;
    if constexpr (std::is_same_v<Layout, masked>) {
      p_.align = l.max_m;
    } else {
      p_.align = l.m_align;
    }
    p_.rows = plan_rows(l, T, k, E);
    std::size_t const M = static_cast<std::size_t>(p_.rows), n = static_cast<std::size_t>(T * k);
    std::size_t const ints = 3 * M + n + 2 * static_cast<std::size_t>(E) + 1;
    arrays_ = device_buffer<std::int32_t>(ints, exec);
    ws_buf_ = device_buffer<unsigned char>(cuda_detail::plan_scratch(T * k, E).total, exec);
    std::int32_t* const a = arrays_.data();
    p_.row_token = a;
    p_.row_slot = a + M;
    p_.row_expert = a + 2 * M;
    p_.slot_row = a + 3 * M;
    p_.expert_offset = p_.slot_row + n;
    p_.counts = p_.expert_offset + E + 1;
  }

  permute_plan const& view() const& { return p_; }
  /// A plan view of a temporary would dangle once the statement ends: keep the owner first.
  void view() const&& = delete;
  /// The build scratch (as before on a const plan: scratch is not part of the plan's value).
  device_workspace workspace() const { return {const_cast<unsigned char*>(ws_buf_.data()), ws_buf_.bytes()}; }

 private:
  permute_plan p_{};
  device_buffer<std::int32_t> arrays_;
  device_buffer<unsigned char> ws_buf_;
};

/// Owning result of the allocating permute() on the device: the plan (capacity plan_rows), the
/// permuted rows (device_matrix or scaling::device_quantized_matrix) and each row's routing weight.
template <class Rows>
struct device_permuted {
  cuda_permute_plan plan;
  Rows x;                        // (M,H) permuted rows
  device_buffer<float> weights;  // (M) routing weight of each row, 0 on padding
};

template <>
struct permute_dispatch<cuda_executor> {
  /// The CUB radix-sort and scan scratch of build_permute_plan.
  static std::size_t workspace_bytes(cuda_executor const&, plan_shape const& s) {
    return cuda_detail::plan_scratch(s.tokens * s.k, s.experts).total;
  }
  static void build_permute_plan(cuda_executor const& exec, matrix_view<std::int32_t const> ids,
                                 permute_plan const& p, device_workspace ws) {
    cuda_detail::build_permute_plan(exec, ids, p, ws);
  }

  template <class T>
  static void permute(cuda_executor const& exec, permute_plan const& p, matrix_view<T const> x,
                      matrix_view<T> out, T pad) {
    constexpr char const* where = "fp8moe::moe::permute";
    detail::check_plan(p, where);
    require(x.rows == p.tokens, where, "x", std::to_string(p.tokens) + " rows (T)", std::to_string(x.rows));
    check_shape(out, p.rows, x.cols, where, "out");
    if (p.rows == 0 || x.cols == 0) return;
    auto const aligned = [](void const* ptr) { return (reinterpret_cast<std::uintptr_t>(ptr) & 15u) == 0; };
    bool const vec = x.col_stride == 1 && out.col_stride == 1 && (x.cols * sizeof(T)) % 16 == 0 &&
                     (x.row_stride * sizeof(T)) % 16 == 0 && (out.row_stride * sizeof(T)) % 16 == 0 &&
                     aligned(x.data) && aligned(out.data);
    cuda_detail::permute_rows_kernel<T>
        <<<static_cast<unsigned>(p.rows), 128, 0, exec.stream>>>(p, x, out, pad, vec);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }

  /// FP8 rows and their per-row scales (padding: zero data, scale 1).
  template <class F>
  static void permute(cuda_executor const& exec, permute_plan const& p,
                      scaling::quantized_matrix_view<F const> x, scaling::quantized_matrix_view<F> out) {
    constexpr char const* where = "fp8moe::moe::permute";
    require(x.tile_rows() == 1 && out.tile_rows() == 1, where, "x.tile / out.tile",
            "per-row (1 x n) scale tiles");
    permute(exec, p, x.data, out.data, F{});
    permute(exec, p, x.scales, out.scales, 1.0f);
  }

  /// out (M) = weights(row_token, row_slot), 0 on padding.
  static void permute_weights(cuda_executor const& exec, permute_plan const& p,
                              matrix_view<float const> weights, vector_view<float> out) {
    constexpr char const* where = "fp8moe::moe::permute_weights";
    detail::check_plan(p, where);
    check_shape(weights, p.tokens, p.k, where, "weights");
    require(out.size == p.rows, where, "out", std::to_string(p.rows) + " entries", std::to_string(out.size));
    if (p.rows == 0) return;
    cuda_detail::permute_weights_kernel<<<cuda_detail::blocks_for(p.rows, 256), 256, 0, exec.stream>>>(
        p, weights, out);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }

  /// Fixed order, FP32, no atomics (the host's bits).
  template <class Y, class Out>
  static void combine(cuda_executor const& exec, permute_plan const& p, matrix_view<Y> y,
                      matrix_view<float const> weights, matrix_view<Out> out) {
    detail::check_combine_args(p, y, weights, out, "fp8moe::moe::combine");
    if (p.tokens == 0 || y.cols == 0) return;
    using YC = std::add_const_t<Y>;
    using YV = std::remove_const_t<Y>;
    constexpr std::int64_t V = 16 / sizeof(YV);
    bool const vec = sizeof(YV) <= 16 && 16 % sizeof(YV) == 0 && y.col_stride == 1 && out.col_stride == 1 &&
                     y.cols % V == 0 && (y.row_stride * static_cast<std::int64_t>(sizeof(YV))) % 16 == 0 &&
                     (reinterpret_cast<std::uintptr_t>(y.data) & 15u) == 0;
    if (vec) {
      cuda_detail::combine_vec_kernel<YV, Out>
          <<<static_cast<unsigned>(p.tokens), 128, 0, exec.stream>>>(p, matrix_view<YC>(y), weights, out);
    } else {
      cuda_detail::combine_kernel<YV, Out>
          <<<static_cast<unsigned>(p.tokens), 256, 0, exec.stream>>>(p, matrix_view<YC>(y), weights, out);
    }
    FP8MOE_CUDA_CHECK_LAUNCH();
  }

  template <class G, class Out>
  static void permute_backward(cuda_executor const& exec, permute_plan const& p, matrix_view<G> dout,
                               matrix_view<Out> dx) {
    combine(exec, p, dout, matrix_view<float const>{}, dx);
  }

  template <class Y, class G, class DY>
  static void combine_backward(cuda_executor const& exec, permute_plan const& p, matrix_view<Y> y,
                               matrix_view<float const> weights, matrix_view<G> dout, matrix_view<DY> dy,
                               matrix_view<float> dweights) {
    detail::check_combine_backward_args(p, y, weights, dout, dy, dweights, "fp8moe::moe::combine_backward");
    using YC = std::add_const_t<Y>;
    using GC = std::add_const_t<G>;
    if (p.rows > 0 && y.cols > 0) {
      cuda_detail::combine_backward_rows_kernel<std::remove_const_t<G>, DY>
          <<<static_cast<unsigned>(p.rows), 256, 0, exec.stream>>>(p, weights, matrix_view<GC>(dout), dy);
      FP8MOE_CUDA_CHECK_LAUNCH();
    }
    if (dweights.rows > 0) {
      std::int64_t const pairs = p.tokens * p.k;
      cuda_detail::combine_backward_weights_kernel<std::remove_const_t<Y>, std::remove_const_t<G>>
          <<<cuda_detail::blocks_for(pairs, 8), 256, 0, exec.stream>>>(p, matrix_view<YC>(y),
                                                                       matrix_view<GC>(dout), dweights);
      FP8MOE_CUDA_CHECK_LAUNCH();
    }
  }

  /// Allocating permute of rows on exec.stream: the plan (capacity plan_rows: the counts stay on the
  /// device), the permuted rows and the row weights. Nothing synchronizes.
  template <class S, class Layout>
  static device_permuted<device_matrix<std::remove_const_t<S>>> permute(cuda_executor const& exec,
                                                                        matrix_view<S> const& x,
                                                                        device_route_result const& r,
                                                                        Layout l) {
    using T = std::remove_const_t<S>;
    device_permuted<device_matrix<T>> out{make_plan(exec, r, l), {}, {}};
    permute_plan const& p = out.plan.view();
    out.x = device_matrix<T>(p.rows, x.cols, exec);
    out.weights = device_buffer<float>(static_cast<std::size_t>(p.rows), exec);
    permute(exec, p, matrix_view<T const>(x), out.x.view(), T{});
    permute_weights(exec, p, r.weights.view(), make_vector(out.weights.data(), p.rows));
    return out;
  }

  /// Allocating permute of FP8 rows with their per-row scales.
  template <class FS, class Layout>
  static device_permuted<scaling::device_quantized_matrix<std::remove_const_t<FS>>> permute(
      cuda_executor const& exec, scaling::quantized_matrix_view<FS> const& x, device_route_result const& r,
      Layout l) {
    using F = std::remove_const_t<FS>;
    device_permuted<scaling::device_quantized_matrix<F>> out{make_plan(exec, r, l), {}, {}};
    permute_plan const& p = out.plan.view();
    out.x = scaling::device_quantized_matrix<F>(p.rows, x.cols(), x.tile, exec);
    out.weights = device_buffer<float>(static_cast<std::size_t>(p.rows), exec);
    permute(exec, p, scaling::quantized_matrix_view<F const>(x), out.x.view());
    permute_weights(exec, p, r.weights.view(), make_vector(out.weights.data(), p.rows));
    return out;
  }

 private:
  template <class Layout>
  static cuda_permute_plan make_plan(cuda_executor const& exec, device_route_result const& r, Layout l) {
    auto const E = static_cast<std::int64_t>(r.counts.size());
    cuda_permute_plan plan(exec, l, r.ids.rows(), r.ids.cols(), E);
    build_permute_plan(exec, r.ids.view(), plan.view(), plan.workspace());
    return plan;
  }
};

}  // namespace fp8moe::moe
