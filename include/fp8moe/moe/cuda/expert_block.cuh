// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// CUDA path of the grouped SwiGLU expert block (nvcc): the one sequence of moe/expert_block.hpp run
// with device quantize, the CUB permute plan, the device grouped FP8 GEMMs and the nn element-wise
// kernels. What differs from the host is here: the plan is built with the row capacity
// plan_rows(contiguous, T, k, E) (the routing is not read on the host) and needs CUB scratch.
// Everything is enqueued on exec.stream; the backward synchronizes it once (segment offsets).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/gemm/cuda/gemm.hpp"
#include "fp8moe/moe/cuda/permute.cuh"
#include "fp8moe/moe/expert_block.hpp"
#include "fp8moe/nn/cuda/dispatch.cuh"
#include "fp8moe/scaling/cuda/quantize.cuh"

namespace fp8moe::moe {

template <>
struct expert_block_dispatch<cuda_executor> {
  /// The row capacity that fits any routing (ids stay on the device).
  static std::int64_t permuted_rows(cuda_executor const&, contiguous layout,
                                    matrix_view<std::int32_t const> ids, std::int64_t E) {
    return plan_rows(layout, ids.rows, ids.cols, E);
  }
  static std::size_t plan_scratch_bytes(std::int64_t T, std::int64_t k, std::int64_t E) {
    return workspace_bytes(cuda_executor{}, plan_shape{T, k, E});
  }
};

}  // namespace fp8moe::moe
