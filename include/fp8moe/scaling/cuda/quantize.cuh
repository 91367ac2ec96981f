// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// CUDA path of quantize / dequantize / transpose_requantize: scaling::dispatch<cuda_executor>, found
// by the entry points of scaling/quantize.hpp (same validation, same per-tile math from
// scale_math.hpp, bit-identical results). Kernels are enqueued on exec.stream; nothing synchronizes;
// no allocation but the allocating quantize's result (the per-tensor path uses out.scales(0,0) as its
// amax accumulator). Views hold device pointers. nvcc only.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/numeric/cuda/convert.cuh"
#include "fp8moe/scaling/cuda/quantized.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "fp8moe/scaling/scale_math.hpp"
#include "fp8moe/scaling/tile_mapping.hpp"

namespace fp8moe::scaling::cuda {

inline constexpr int block_threads = 256;

namespace detail {

template <class In>
FP8MOE_DEVICE float to_f(In x) {
  if constexpr (std::is_same_v<In, float>)
    return x;
  else
    return x.to_float();
}

/// y -> FP8 code with the host path's exact semantics (NaN -> 0x7F whatever the hardware gives).
template <class T>
FP8MOE_DEVICE std::uint8_t encode(float y, saturation sat) {
  using F = typename T::format;
  if (sat == saturation::finite) {
    std::uint8_t const c = static_cast<std::uint8_t>(fp8moe::cuda::cvt_float2_to_fp8x2<F>(y, 0.0f) & 0xFFu);
    return y != y ? F::nan_code : c;
  }
  return fp8moe::detail::float_to_fp8_bits<F>(y, sat);
}

/// Two elements at once (one cvt.rn.satfinite.*x2 on sm_89+), same semantics as encode.
template <class T>
FP8MOE_DEVICE void encode2(float y0, float y1, saturation sat, std::uint8_t* q) {
  using F = typename T::format;
  if (sat == saturation::finite) {
    std::uint16_t const p = fp8moe::cuda::cvt_float2_to_fp8x2<F>(y0, y1);
    q[0] = y0 != y0 ? F::nan_code : static_cast<std::uint8_t>(p & 0xFFu);
    q[1] = y1 != y1 ? F::nan_code : static_cast<std::uint8_t>(p >> 8);
  } else {
    q[0] = fp8moe::detail::float_to_fp8_bits<F>(y0, sat);
    q[1] = fp8moe::detail::float_to_fp8_bits<F>(y1, sat);
  }
}

FP8MOE_DEVICE float scaled(float x, tile_scale const& s) {
  return s.divide ? x / s.sf : x * s.multiplier;
}

/// Max of |x| bits over the lanes of one group (width a power of two <= 32, aligned in the warp).
FP8MOE_DEVICE std::uint32_t group_max(std::uint32_t m, int width) {
  for (int off = width / 2; off > 0; off /= 2) {
    std::uint32_t const o = __shfl_xor_sync(0xFFFFFFFFu, m, off);
    m = o > m ? o : m;
  }
  return m;
}

/// CTA-wide max (all threads get it). `red` holds one word per warp.
FP8MOE_DEVICE std::uint32_t block_max(std::uint32_t m, std::uint32_t* red) {
  m = group_max(m, 32);
  int const warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();  // red may still be read from a previous call
  if (lane == 0) red[warp] = m;
  __syncthreads();
  m = lane < warps ? red[lane] : 0u;
  return group_max(m, 32);
}

// ---- 1) row tiles (1 x tile_cols) mapped onto groups of L lanes, one 16-byte vector per lane

template <class In, class T, bool IgnoreNan, int L>
__global__ void __launch_bounds__(block_threads)
    quantize_row_tiles_kernel(matrix_view<In const> x, tensor_recipe r, quantized_matrix_view<T> out,
                              float vfi, bool vec_ok) {
  constexpr int vec = 16 / sizeof(In);
  std::int64_t const C = x.cols;
  int const lane = threadIdx.x % 32, sub = lane % L;
  std::int64_t const warp = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  row_tile_lane const me = row_tile_lane_of(warp, lane, L, sizeof(In), x.rows, C);
  bool const live = me.live;
  std::int64_t const row = me.row, t = me.tile, c0 = me.col;
  float v[vec];
  if (live && vec_ok && c0 + vec <= C) {
    if constexpr (std::is_same_v<In, float>) {
      float4 const p = *reinterpret_cast<float4 const*>(&x(row, c0));
      v[0] = p.x;
      v[1] = p.y;
      v[2] = p.z;
      v[3] = p.w;
    } else {
      uint4 const p = *reinterpret_cast<uint4 const*>(&x(row, c0));
      std::uint32_t const words[4] = {p.x, p.y, p.z, p.w};  // element 2i in the low half
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[2 * i] = __uint_as_float(words[i] << 16);
        v[2 * i + 1] = __uint_as_float(words[i] & 0xFFFF0000u);
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < vec; ++i) v[i] = (live && c0 + i < C) ? to_f(x(row, c0 + i)) : 0.0f;
  }
  std::uint32_t m = 0;
#pragma unroll
  for (int i = 0; i < vec; ++i) m = amax_combine(m, abs_bits(v[i]), IgnoreNan);
  m = group_max(m, L);
  if (!live) return;
  tile_scale const s = compute_tile_scale(r, amax_from_bits(m), vfi);
  if (sub == 0) out.scales(row, t) = s.sf;
  std::uint8_t q[vec];
#pragma unroll
  for (int i = 0; i < vec; i += 2) encode2<T>(scaled(v[i], s), scaled(v[i + 1], s), r.sat, q + i);
  std::uint8_t* dst = reinterpret_cast<std::uint8_t*>(&out.data(row, 0));
  if (vec_ok && c0 + vec <= C) {
    if constexpr (vec == 4) {
      *reinterpret_cast<std::uint32_t*>(dst + c0) =
          q[0] | (q[1] << 8) | (q[2] << 16) | (static_cast<std::uint32_t>(q[3]) << 24);
    } else {
      uint2 packed;
      packed.x = q[0] | (q[1] << 8) | (q[2] << 16) | (static_cast<std::uint32_t>(q[3]) << 24);
      packed.y = q[4] | (q[5] << 8) | (q[6] << 16) | (static_cast<std::uint32_t>(q[7]) << 24);
      *reinterpret_cast<uint2*>(dst + c0) = packed;
    }
  } else {
#pragma unroll
    for (int i = 0; i < vec; ++i) {
      if (c0 + i < C) reinterpret_cast<std::uint8_t&>(out.data(row, c0 + i)) = q[i];
    }
  }
}

// ---- 2) any tile (tr x tc): one CTA per tile, two passes over it (the second from L2)

template <class In, class T, bool IgnoreNan>
__global__ void __launch_bounds__(block_threads)
    quantize_tiles_kernel(matrix_view<In const> x, tensor_recipe r, quantized_matrix_view<T> out, float vfi) {
  __shared__ std::uint32_t red[block_threads / 32];
  std::int64_t const R = x.rows, C = x.cols;
  std::int64_t const tr = resolve_tile(r.tile.rows, R), tc = resolve_tile(r.tile.cols, C);
  std::int64_t const sc = scale_cols(r.tile, C);
  std::int64_t const b = blockIdx.x / sc, t = blockIdx.x % sc;
  std::int64_t const r0 = b * tr, c0 = t * tc;
  std::int64_t const nr = (R - r0) < tr ? (R - r0) : tr, nc = (C - c0) < tc ? (C - c0) : tc;
  std::int64_t const n = nr * nc;
  std::uint32_t m = 0;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    m = amax_combine(m, abs_bits(to_f(x(r0 + i / nc, c0 + i % nc))), IgnoreNan);
  }
  m = block_max(m, red);
  tile_scale const s = compute_tile_scale(r, amax_from_bits(m), vfi);
  if (threadIdx.x == 0) out.scales(b, t) = s.sf;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    std::int64_t const rr = r0 + i / nc, cc = c0 + i % nc;
    reinterpret_cast<std::uint8_t&>(out.data(rr, cc)) = encode<T>(scaled(to_f(x(rr, cc)), s), r.sat);
  }
}

// ---- 3) per tensor: amax (atomicMax on |x| bits into the scale slot), quantize, finalize

template <class In, bool IgnoreNan>
__global__ void __launch_bounds__(block_threads) amax_kernel(matrix_view<In const> x, std::uint32_t* amax) {
  __shared__ std::uint32_t red[block_threads / 32];
  std::int64_t const n = x.rows * x.cols;
  std::uint32_t m = 0;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    m = amax_combine(m, abs_bits(to_f(x(i / x.cols, i % x.cols))), IgnoreNan);
  }
  m = block_max(m, red);
  if (threadIdx.x == 0) atomicMax(amax, m);
}

template <class In, class T>
__global__ void __launch_bounds__(block_threads)
    quantize_tensor_kernel(matrix_view<In const> x, tensor_recipe r, quantized_matrix_view<T> out,
                           std::uint32_t const* amax, float vfi) {
  tile_scale const s = compute_tile_scale(r, amax_from_bits(*amax), vfi);
  std::int64_t const n = x.rows * x.cols;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const rr = i / x.cols, cc = i % x.cols;
    reinterpret_cast<std::uint8_t&>(out.data(rr, cc)) = encode<T>(scaled(to_f(x(rr, cc)), s), r.sat);
  }
}

__global__ void finalize_tensor_scale_kernel(tensor_recipe r, float* slot, float vfi) {
  std::uint32_t const a = *reinterpret_cast<std::uint32_t const*>(slot);
  *slot = compute_tile_scale(r, amax_from_bits(a), vfi).sf;
}

// ---- 4) transpose + quantize: CTA = band of K source rows x 32 source columns

template <class In>
struct wide_loader {
  matrix_view<In const> x;
  FP8MOE_DEVICE float operator()(std::int64_t i, std::int64_t j) const { return to_f(x(i, j)); }
};

template <class Q>
struct dequant_loader {
  quantized_matrix_view<Q const> q;
  std::int64_t tr, tc;
  FP8MOE_DEVICE float operator()(std::int64_t i, std::int64_t j) const {
    return q.data(i, j).to_float() * q.scales(i / tr, j / tc);
  }
};

template <class Load, class T, bool IgnoreNan>
__global__ void __launch_bounds__(block_threads)
    transpose_quantize_kernel(Load load, std::int64_t R, std::int64_t C, tensor_recipe r,
                              quantized_matrix_view<T> out, float vfi) {
  __shared__ std::uint32_t part[8][32];
  __shared__ float ts_mult[32], ts_sf[32];
  __shared__ std::uint8_t stage[32][33];  // [output row = source col][source row], +1 against bank conflicts
  int const lx = threadIdx.x % 32, ly = threadIdx.x / 32;
  std::int64_t const k = resolve_tile(r.tile.cols, R);
  std::int64_t const b = blockIdx.x, c0 = static_cast<std::int64_t>(blockIdx.y) * 32, r0 = b * k;
  std::int64_t const nr = (R - r0) < k ? (R - r0) : k;
  std::int64_t const col = c0 + lx;
  std::uint32_t m = 0;
  if (col < C) {
    for (std::int64_t i = ly; i < nr; i += 8) m = amax_combine(m, abs_bits(load(r0 + i, col)), IgnoreNan);
  }
  part[ly][lx] = m;
  __syncthreads();
  if (ly == 0) {
#pragma unroll
    for (int w = 1; w < 8; ++w) m = part[w][lx] > m ? part[w][lx] : m;
    tile_scale const t = compute_tile_scale(r, amax_from_bits(m), vfi);
    ts_mult[lx] = t.multiplier;
    ts_sf[lx] = t.sf;
    if (col < C) out.scales(col, b) = t.sf;
  }
  __syncthreads();
  tile_scale const s{ts_mult[lx], ts_sf[lx], r.formula == scale_formula::deepseek_v3_inference};
  for (std::int64_t j0 = 0; j0 < nr; j0 += 32) {
    for (int i = ly; i < 32; i += 8) {
      std::int64_t const src_row = r0 + j0 + i;
      if (col < C && j0 + i < nr) stage[lx][i] = encode<T>(scaled(load(src_row, col), s), r.sat);
    }
    __syncthreads();
    for (int i = ly; i < 32; i += 8) {  // warp ly writes 32 consecutive bytes of output row c0 + i
      if (c0 + i < C && j0 + lx < nr)
        reinterpret_cast<std::uint8_t&>(out.data(c0 + i, r0 + j0 + lx)) = stage[i][lx];
    }
    __syncthreads();
  }
}

// ---- 5) dequantize: 4 consecutive elements per thread

template <class Q, class Out>
__global__ void __launch_bounds__(block_threads)
    dequantize_kernel(quantized_matrix_view<Q const> q, matrix_view<Out> y, bool vec_ok) {
  using F = typename Q::format;
  std::int64_t const C = q.data.cols, groups = ceil_div<std::int64_t>(C, 4);
  std::int64_t const tr = q.tile_rows(), tc = q.tile_cols();
  std::int64_t const n = q.data.rows * groups;
  for (std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < n;
       g += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const row = g / groups, c0 = (g % groups) * 4;
    float v[4];
    if (vec_ok && c0 + 4 <= C) {
      float4 const f =
          fp8moe::cuda::cvt_fp8x4_to_float4<F>(*reinterpret_cast<std::uint32_t const*>(&q.data(row, c0)));
      v[0] = f.x;
      v[1] = f.y;
      v[2] = f.z;
      v[3] = f.w;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = c0 + i < C ? q.data(row, c0 + i).to_float() : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = v[i] * q.scales(row / tr, (c0 + i < C ? c0 + i : c0) / tc);
    if (vec_ok && c0 + 4 <= C) {
      if constexpr (std::is_same_v<Out, float>) {
        *reinterpret_cast<float4*>(&y(row, c0)) = make_float4(v[0], v[1], v[2], v[3]);
      } else {
        uint2 w;
        w.x = fp8moe::cuda::cvt_float2_to_bf16x2(v[0], v[1]);
        w.y = fp8moe::cuda::cvt_float2_to_bf16x2(v[2], v[3]);
        *reinterpret_cast<uint2*>(&y(row, c0)) = w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (c0 + i < C) y(row, c0 + i) = from_float<Out>(v[i]);
      }
    }
  }
}

inline bool aligned(void const* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

inline unsigned grid_for(std::int64_t work, std::int64_t per_block) {
  std::int64_t const g = ceil_div<std::int64_t>(work, per_block);
  return static_cast<unsigned>(g < 1 ? 1 : (g > 65535 * 32 ? 65535 * 32 : g));
}

template <bool IgnoreNan, class In, class T>
void launch_quantize(cudaStream_t st, matrix_view<In const> x, tensor_recipe const& r,
                     quantized_matrix_view<T> out) {
  std::int64_t const R = x.rows, C = x.cols;
  if (R == 0 || C == 0) return;
  float const vfi = scaling::detail::value_for_inf<In>(r);
  std::int64_t const tr = resolve_tile(r.tile.rows, R), tc = resolve_tile(r.tile.cols, C);
  std::int64_t const SR = scale_rows(r.tile, R), SC = scale_cols(r.tile, C);
  int const L = tr == 1 ? lanes_per_row_tile(tc, sizeof(In)) : 0;
  if (L != 0) {
    constexpr int vec = 16 / sizeof(In);
    bool const vec_ok = x.col_stride == 1 && out.data.col_stride == 1 && aligned(x.data, 16) &&
                        x.row_stride % vec == 0 && aligned(out.data.data, vec) &&
                        out.data.row_stride % vec == 0;
    std::int64_t const warps = row_tile_warps(R, C, L, sizeof(In));
    unsigned const grid = static_cast<unsigned>(ceil_div<std::int64_t>(warps, block_threads / 32));
    switch (L) {
      case 4:
        quantize_row_tiles_kernel<In, T, IgnoreNan, 4>
            <<<grid, block_threads, 0, st>>>(x, r, out, vfi, vec_ok);
        break;
      case 8:
        quantize_row_tiles_kernel<In, T, IgnoreNan, 8>
            <<<grid, block_threads, 0, st>>>(x, r, out, vfi, vec_ok);
        break;
      case 16:
        quantize_row_tiles_kernel<In, T, IgnoreNan, 16>
            <<<grid, block_threads, 0, st>>>(x, r, out, vfi, vec_ok);
        break;
      default:
        quantize_row_tiles_kernel<In, T, IgnoreNan, 32>
            <<<grid, block_threads, 0, st>>>(x, r, out, vfi, vec_ok);
        break;
    }
  } else if (SR * SC == 1 && R * C > 65536) {
    float* slot = &out.scales(0, 0);
    FP8MOE_CUDA_CHECK(cudaMemsetAsync(slot, 0, sizeof(float), st));
    unsigned const grid = grid_for(R * C, block_threads * 16);
    auto* acc = reinterpret_cast<std::uint32_t*>(slot);
    amax_kernel<In, IgnoreNan><<<grid, block_threads, 0, st>>>(x, acc);
    FP8MOE_CUDA_CHECK_LAUNCH();
    quantize_tensor_kernel<In, T><<<grid, block_threads, 0, st>>>(x, r, out, acc, vfi);
    FP8MOE_CUDA_CHECK_LAUNCH();
    finalize_tensor_scale_kernel<<<1, 1, 0, st>>>(r, slot, vfi);
  } else {
    quantize_tiles_kernel<In, T, IgnoreNan>
        <<<static_cast<unsigned>(SR * SC), block_threads, 0, st>>>(x, r, out, vfi);
  }
  FP8MOE_CUDA_CHECK_LAUNCH();
}

template <bool IgnoreNan, class Load, class T>
void launch_transpose(cudaStream_t st, Load const& load, std::int64_t R, std::int64_t C,
                      tensor_recipe const& r, quantized_matrix_view<T> out, float vfi) {
  if (R == 0 || C == 0) return;
  std::int64_t const bands = scale_cols(r.tile, R);
  // bands (rows / tile height: large for a wgrad over T*k rows) on x (up to 2^31-1), the 32-column
  // chunks on y (up to 65535: C <= 2,097,120)
  require(ceil_div<std::int64_t>(C, 32) <= 65535, "fp8moe::scaling::cuda::transpose_requantize", "x",
          "at most 2,097,120 columns on the device", std::to_string(C));
  dim3 const grid(static_cast<unsigned>(bands), static_cast<unsigned>(ceil_div<std::int64_t>(C, 32)));
  transpose_quantize_kernel<Load, T, IgnoreNan><<<grid, block_threads, 0, st>>>(load, R, C, r, out, vfi);
  FP8MOE_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

}  // namespace fp8moe::scaling::cuda

namespace fp8moe::scaling {

/// The owning matrix of the allocating dequantize on a cuda_executor: allocated on exec.stream.
template <>
struct owning_matrix<cuda_executor> {
  template <class T>
  static device_matrix<T> make(cuda_executor const& exec, std::int64_t rows, std::int64_t cols) {
    return device_matrix<T>(rows, cols, exec);
  }
};

/// The CUDA path of the scaling entry points (scaling/quantize.hpp validates every argument first):
/// same results as the host path, bit for bit. Views hold device memory; kernels are enqueued on
/// exec.stream; nothing synchronizes.
template <>
struct dispatch<cuda_executor> {
  /// The owning result of the allocating quantize: allocated on exec.stream (stream-ordered).
  template <class T>
  static device_quantized_matrix<T> make_quantized(cuda_executor const& exec, std::int64_t rows,
                                                   std::int64_t cols, tile_shape tile) {
    return device_quantized_matrix<T>(rows, cols, tile, exec);
  }

  /// 1xK row tiles of 32/64/128 (float) or 32/.../256 (bf16) elements run one 16-byte vector per
  /// lane with a shuffle amax; other tiles one CTA per tile; per tensor a two-pass amax.
  template <class In, class T>
  static void quantize(cuda_executor const& exec, matrix_view<In const> x, tensor_recipe const& r,
                       quantized_matrix_view<T> out) {
    if (amax_ignores_nan(r.formula))
      cuda::detail::launch_quantize<true>(exec.stream, x, r, out);
    else
      cuda::detail::launch_quantize<false>(exec.stream, x, r, out);
  }

  /// y = float(q) * sf (bf16: RNE), 4 elements per thread.
  template <class Q, class Out>
  static void dequantize(cuda_executor const& exec, quantized_matrix_view<Q const> q, matrix_view<Out> y) {
    if (q.rows() == 0 || q.cols() == 0) return;
    bool const vec_ok = q.data.col_stride == 1 && y.col_stride == 1 &&
                        cuda::detail::aligned(q.data.data, 4) && q.data.row_stride % 4 == 0 &&
                        cuda::detail::aligned(y.data, 4 * sizeof(Out)) && y.row_stride % 4 == 0;
    std::int64_t const work = q.rows() * ceil_div<std::int64_t>(q.cols(), 4);
    cuda::detail::dequantize_kernel<Q, Out>
        <<<cuda::detail::grid_for(work, cuda::block_threads), cuda::block_threads, 0, exec.stream>>>(q, y,
                                                                                                     vec_ok);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }

  template <class In, class T>
  static void transpose_requantize(cuda_executor const& exec, matrix_view<In const> x, tensor_recipe const& r,
                                   quantized_matrix_view<T> out) {
    cuda::detail::wide_loader<In> const load{x};
    float const vfi = detail::value_for_inf<In>(r);
    if (amax_ignores_nan(r.formula))
      cuda::detail::launch_transpose<true>(exec.stream, load, x.rows, x.cols, r, out, vfi);
    else
      cuda::detail::launch_transpose<false>(exec.stream, load, x.rows, x.cols, r, out, vfi);
  }

  template <class Q, class T>
  static void transpose_requantize(cuda_executor const& exec, quantized_matrix_view<Q const> q,
                                   tensor_recipe const& r, quantized_matrix_view<T> out) {
    cuda::detail::dequant_loader<Q> const load{q, q.tile_rows(), q.tile_cols()};
    if (amax_ignores_nan(r.formula))
      cuda::detail::launch_transpose<true>(exec.stream, load, q.rows(), q.cols(), r, out, 3.40282347e38f);
    else
      cuda::detail::launch_transpose<false>(exec.stream, load, q.rows(), q.cols(), r, out, 3.40282347e38f);
  }
};

}  // namespace fp8moe::scaling
