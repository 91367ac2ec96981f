// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella for nvcc users (convenience only): every host-compilable module (fp8moe.hpp) and every
// cuda_executor entry point with its kernels, and the owning device_buffer / device_matrix, so one
// include replaces the per-module cuda/ paths.
// It holds CUDA kernels, so only nvcc compiles it; part of fp8moe::cuda's `device` file set. The
// MPI/NCCL communicators stay explicit (comm/mpi_communicator.hpp, comm/nccl_communicator.hpp).
#pragma once

#if !defined(__CUDACC__)
#error \
    "fp8moe/cuda.hpp holds CUDA kernels and needs nvcc; host-compiled sources include <fp8moe/fp8moe.hpp> (and <fp8moe/core/cuda/executor.hpp> for cuda_executor)"
#endif

#include "fp8moe/fp8moe.hpp"

#include "fp8moe/core/cuda/device_buffer.hpp"
#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/gemm/cuda/gemm.hpp"
#include "fp8moe/moe/cuda/balance.cuh"
#include "fp8moe/moe/cuda/expert_block.cuh"
#include "fp8moe/moe/cuda/permute.cuh"
#include "fp8moe/moe/cuda/router.cuh"
#include "fp8moe/moe/expert_parallel/cuda/dispatch.cuh"
#include "fp8moe/nn/cuda/dispatch.cuh"
#include "fp8moe/numeric/cuda/convert.cuh"
#include "fp8moe/optim/cuda/adamw.cuh"
#include "fp8moe/optim/cuda/clip.cuh"
#include "fp8moe/pipeline/cuda/executor.hpp"
#include "fp8moe/scaling/cuda/quantize.cuh"
