// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// CUDA path of the router (router_dispatch<cuda_executor>): one thread per token (logits staged through
// shared memory) running the shared route_token / route_token_backward, integer atomics for the
// per-expert counts (exact, order-independent). Enqueued on exec.stream, never synchronizes. All
// pointers are device memory. Device behaviour on NaN logits: never checked (that would need a sync);
// NaN scores order as -inf. (The device bias update is in moe/cuda/balance.cuh.)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fp8moe/core/cuda/device_buffer.hpp"
#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/moe/router.hpp"

namespace fp8moe::moe {
namespace cuda_detail {

template <class Logit>
__global__ void route_kernel(router_config c, matrix_view<Logit> u, float const* bias,
                             matrix_view<std::int32_t> ids, matrix_view<float> w, std::int32_t* counts) {
  std::int64_t const t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= u.rows) return;
  route_token(c, &u(t, 0), u.col_stride, bias, &ids(t, 0), ids.col_stride, &w(t, 0), w.col_stride);
  if (counts)
    for (int j = 0; j < c.k; ++j) atomicAdd(&counts[ids(t, j)], 1);
}

/// Staged variant: the block loads its tokens' logits coalesced into shared memory (as FP32, rows
/// padded to E+1 floats so that threads walking their own rows hit distinct banks), then each
/// thread routes its token from shared memory with the same route_token.
template <class Logit>
__global__ void route_staged_kernel(router_config c, matrix_view<Logit> u, float const* bias,
                                    matrix_view<std::int32_t> ids, matrix_view<float> w,
                                    std::int32_t* counts) {
  extern __shared__ float stage[];  // (blockDim.x, E+1)
  std::int64_t const t0 = static_cast<std::int64_t>(blockIdx.x) * blockDim.x;
  std::int64_t const n = (u.rows - t0 < blockDim.x ? u.rows - t0 : blockDim.x);
  int const E = c.experts, ld = E + 1;
  for (std::int64_t i = threadIdx.x; i < n * E; i += blockDim.x) {
    std::int64_t const r = i / E, e = i % E;
    stage[r * ld + e] = static_cast<float>(u(t0 + r, e));
  }
  __syncthreads();
  if (threadIdx.x >= n) return;
  std::int64_t const t = t0 + threadIdx.x;
  route_token(c, stage + threadIdx.x * ld, std::int64_t{1}, bias, &ids(t, 0), ids.col_stride, &w(t, 0),
              w.col_stride);
  if (counts)
    for (int j = 0; j < c.k; ++j) atomicAdd(&counts[ids(t, j)], 1);
}

inline constexpr int staged_tokens = 32;  ///< tokens per block of the staged kernel
inline constexpr int staged_max_experts =
    48 * 1024 / (staged_tokens * 4) - 1;  ///< fits 48 KB of shared memory

template <class Logit>
__global__ void route_backward_kernel(router_config c, matrix_view<Logit> u,
                                      matrix_view<std::int32_t const> ids, matrix_view<float const> dw,
                                      matrix_view<float> du) {
  std::int64_t const t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= u.rows) return;
  route_token_backward(c, &u(t, 0), u.col_stride, &ids(t, 0), ids.col_stride, &dw(t, 0), dw.col_stride,
                       &du(t, 0), du.col_stride);
}

inline constexpr int router_threads = 128;

}  // namespace cuda_detail

/// Owning result of the allocating route() on the device: ids (T,k), weights (T,k), counts (E), device
/// memory allocated on the executor's stream.
struct device_route_result {
  device_matrix<std::int32_t> ids;     // (T,k)
  device_matrix<float> weights;        // (T,k)
  device_buffer<std::int32_t> counts;  // (E)
};

template <>
struct router_dispatch<cuda_executor> {
  /// Same contract as the host path (outputs overwritten; counts zeroed and filled when non-empty),
  /// validated on the host before launch except for finite logits.
  template <class Logit>
  static void route(cuda_executor const& exec, router_config const& c, matrix_view<Logit> logits,
                    vector_view<float const> bias, matrix_view<std::int32_t> ids, matrix_view<float> weights,
                    vector_view<std::int32_t> counts) {
    detail::check_route_args(c, logits, bias, ids, weights, counts, detail::route_where);
    require(bias.size == 0 || bias.stride == 1, detail::route_where, "bias", "unit stride on the device");
    require(counts.size == 0 || counts.stride == 1, detail::route_where, "counts",
            "unit stride on the device");
    if (counts.size)
      FP8MOE_CUDA_CHECK(cudaMemsetAsync(
          counts.data, 0, sizeof(std::int32_t) * static_cast<std::size_t>(c.experts), exec.stream));
    if (logits.rows == 0) return;
    float const* b = bias.size ? bias.data : nullptr;
    std::int32_t* n = counts.size ? counts.data : nullptr;
    if (c.experts <= cuda_detail::staged_max_experts) {
      auto const blocks =
          static_cast<unsigned>(ceil_div<std::int64_t>(logits.rows, cuda_detail::staged_tokens));
      std::size_t const smem =
          sizeof(float) * cuda_detail::staged_tokens * static_cast<std::size_t>(c.experts + 1);
      cuda_detail::route_staged_kernel<<<blocks, cuda_detail::staged_tokens, smem, exec.stream>>>(
          c, logits, b, ids, weights, n);
    } else {
      auto const blocks =
          static_cast<unsigned>(ceil_div<std::int64_t>(logits.rows, cuda_detail::router_threads));
      cuda_detail::route_kernel<<<blocks, cuda_detail::router_threads, 0, exec.stream>>>(c, logits, b, ids,
                                                                                         weights, n);
    }
    FP8MOE_CUDA_CHECK_LAUNCH();
  }

  /// Allocating route: ids, weights and counts allocated and filled on exec.stream (no sync).
  template <class Logit>
  static device_route_result route(cuda_executor const& exec, router_config const& c,
                                   matrix_view<Logit> logits, vector_view<float const> bias) {
    check_router_config(c, detail::route_where);
    check_matrix(logits, detail::route_where, "logits");
    device_route_result r{device_matrix<std::int32_t>(logits.rows, c.k, exec),
                          device_matrix<float>(logits.rows, c.k, exec),
                          device_buffer<std::int32_t>(static_cast<std::size_t>(c.experts), exec)};
    route(exec, c, logits, bias, r.ids.view(), r.weights.view(), make_vector(r.counts.data(), c.experts));
    return r;
  }

  /// dlogits overwritten; the views checked as on the host, the ids trusted to be in [0, E) (no data read).
  template <class Logit>
  static void route_backward(cuda_executor const& exec, router_config const& c, matrix_view<Logit> logits,
                             matrix_view<std::int32_t const> ids, matrix_view<float const> dweights,
                             matrix_view<float> dlogits) {
    constexpr char const* where = "fp8moe::moe::route_backward";
    detail::check_route_backward_args(c, logits, ids, dweights, dlogits, where);
    if (logits.rows == 0) return;
    auto const blocks =
        static_cast<unsigned>(ceil_div<std::int64_t>(logits.rows, cuda_detail::router_threads));
    cuda_detail::route_backward_kernel<<<blocks, cuda_detail::router_threads, 0, exec.stream>>>(
        c, logits, ids, dweights, dlogits);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace fp8moe::moe
