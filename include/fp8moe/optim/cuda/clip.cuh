// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::clip_dispatch<cuda_executor> (nvcc only). The gradients go in groups of 128 tensors (their
// pointers and sizes travel as a kernel parameter); each group's elements are cut into
// grad_norm_slices slices, one block per slice, thread l summing g^2 in double over the elements
// j = l (mod 256) of each tensor's piece, the 256 partials added in order by thread 0, and a
// one-thread kernel adds the slices in order: a fixed order for a given list, whatever the device.
// The result lands in device memory (*out); the scaling kernel reads it there. No stream sync.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/optim/clip.hpp"

namespace fp8moe::optim {

namespace cuda_detail {

inline constexpr int grad_group_size = static_cast<int>(detail::grad_norm_group_size);
inline constexpr int grad_norm_threads = 256;

template <class G>
struct grad_group {
  G* ptr[grad_group_size];
  std::int64_t size[grad_group_size];
  std::int64_t first_tensor;  // index of ptr[0] in the caller's list
  std::int64_t total;         // elements of the group
  int count;
};

/// The slice sums of one group: block s covers [s total / S, (s+1) total / S) of the group.
template <class G>
__global__ void grad_norm_slice_kernel(grad_group<G> grp, double* sums, std::int64_t* bad_tensor,
                                       std::int64_t* bad_element) {
  constexpr int S = grad_norm_slices;
  std::int64_t const s = blockIdx.x;
  std::int64_t const q = grp.total / S, r = grp.total % S;
  std::int64_t const begin = s * q + (s < r ? s : r), end = (s + 1) * q + (s + 1 < r ? s + 1 : r);
  double acc = 0.0;
  std::int64_t first = -1;  // the thread's first non-finite element (index in the group's concatenation)
  std::int64_t off = 0;
  for (int k = 0; k < grp.count; ++k) {
    std::int64_t const lo = begin > off ? begin : off;
    std::int64_t const hi = end < off + grp.size[k] ? end : off + grp.size[k];
    for (std::int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
      double const d = static_cast<double>(grp.ptr[k][j - off]);
      acc += d * d;
      if (first < 0 && !isfinite(d)) first = j;
    }
    off += grp.size[k];
  }
  __shared__ double part[grad_norm_threads];
  __shared__ std::int64_t firsts[grad_norm_threads];
  part[threadIdx.x] = acc;
  firsts[threadIdx.x] = first;
  __syncthreads();
  if (threadIdx.x != 0) return;
  double sum = 0.0;
  std::int64_t bad = -1;
  for (int i = 0; i < grad_norm_threads; ++i) {
    sum += part[i];
    if (firsts[i] >= 0 && (bad < 0 || firsts[i] < bad)) bad = firsts[i];
  }
  std::int64_t const slot = grp.first_tensor / grad_group_size * S + s;
  sums[slot] = sum;
  bad_tensor[slot] = -1;
  bad_element[slot] = -1;
  if (bad >= 0) {
    int k = 0;
    while (bad >= grp.size[k]) bad -= grp.size[k++];
    bad_tensor[slot] = grp.first_tensor + k;
    bad_element[slot] = bad;
  }
}

__global__ void grad_norm_final_kernel(double const* sums, std::int64_t const* bad_tensor,
                                       std::int64_t const* bad_element, std::int64_t slots,
                                       grad_norm_result* out) {
  grad_norm_result r;
  double total = 0.0;
  for (std::int64_t i = 0; i < slots; ++i) {
    total += sums[i];
    if (r.nonfinite_tensor < 0 && bad_tensor[i] >= 0) {
      r.nonfinite_tensor = bad_tensor[i];
      r.nonfinite_element = bad_element[i];
    }
  }
  r.norm = sqrt(total);
  *out = r;
}

/// grads *= clip_coefficient(result), when the result is finite; block row y = tensor of the group.
__global__ void clip_kernel(grad_group<float> grp, float max_norm, grad_norm_result const* result) {
  grad_norm_result const r = *result;
  if (!r.finite()) return;
  float const c = clip_coefficient(r.norm, max_norm);
  if (c == 1.0f) return;
  float* const x = grp.ptr[blockIdx.y];
  std::int64_t const n = grp.size[blockIdx.y];
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    x[i] *= c;
}

/// Group g of the list (tensors [g * 128, g * 128 + 128)).
template <class P, class G>
grad_group<P> make_group(std::span<std::span<G> const> grads, std::size_t g) {
  grad_group<P> grp{};
  std::size_t const first = g * grad_group_size;
  grp.first_tensor = static_cast<std::int64_t>(first);
  grp.count = static_cast<int>(std::min<std::size_t>(grad_group_size, grads.size() - first));
  for (int k = 0; k < grp.count; ++k) {
    grp.ptr[k] = grads[first + static_cast<std::size_t>(k)].data();
    grp.size[k] = static_cast<std::int64_t>(grads[first + static_cast<std::size_t>(k)].size());
    grp.total += grp.size[k];
  }
  return grp;
}

}  // namespace cuda_detail

template <>
struct clip_dispatch<cuda_executor> {
  template <class G>
  static void grad_norm(cuda_executor const& exec, std::span<std::span<G> const> grads, grad_norm_result* out,
                        std::span<std::byte> workspace) {
    using namespace cuda_detail;
    std::size_t const groups = (grads.size() + grad_group_size - 1) / grad_group_size;
    std::size_t const slots = groups * grad_norm_slices;
    auto const base = reinterpret_cast<std::uintptr_t>(workspace.data());
    auto* const sums = reinterpret_cast<double*>((base + 255) / 256 * 256);
    auto* const bad_tensor = reinterpret_cast<std::int64_t*>(sums + slots);
    std::int64_t* const bad_element = bad_tensor + slots;
    for (std::size_t g = 0; g < groups; ++g) {
      grad_norm_slice_kernel<G const><<<grad_norm_slices, grad_norm_threads, 0, exec.stream>>>(
          make_group<G const>(grads, g), sums, bad_tensor, bad_element);
      FP8MOE_CUDA_CHECK_LAUNCH();
    }
    grad_norm_final_kernel<<<1, 1, 0, exec.stream>>>(sums, bad_tensor, bad_element,
                                                     static_cast<std::int64_t>(slots), out);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }

  static void clip(cuda_executor const& exec, std::span<std::span<float> const> grads, float max_norm,
                   grad_norm_result const* result) {
    using namespace cuda_detail;
    std::size_t const groups = (grads.size() + grad_group_size - 1) / grad_group_size;
    for (std::size_t g = 0; g < groups; ++g) {
      grad_group<float> const grp = make_group<float>(grads, g);
      dim3 const grid(256, static_cast<unsigned>(grp.count));
      clip_kernel<<<grid, 256, 0, exec.stream>>>(grp, max_norm, result);
      FP8MOE_CUDA_CHECK_LAUNCH();
    }
  }
};

}  // namespace fp8moe::optim
