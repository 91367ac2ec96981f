// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Include this for the cuda_executor path of fp8moe::gemm::fp8_gemm / grouped_gemm /
// workspace_bytes (the entry points' static_assert names it). Under nvcc it brings in the kernels
// and gemm::dispatch<cuda_executor> (gemm/cuda/gemm.cuh); under a host compiler it only provides the
// host API and cuda_executor, so a host-compiled file that includes it still builds.
#pragma once

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/gemm/gemm.hpp"

#if FP8MOE_CUDA_COMPILER
#include "fp8moe/gemm/cuda/gemm.cuh"
#endif
