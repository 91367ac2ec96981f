// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella header of the moe module (host headers only): router and its score functions, balancing,
// permute / combine, the grouped SwiGLU expert block, expert-parallel layout and dispatch / combine.
// CUDA paths (nvcc): "fp8moe/moe/cuda/router.cuh", "fp8moe/moe/cuda/balance.cuh",
// "fp8moe/moe/cuda/permute.cuh", "fp8moe/moe/cuda/expert_block.cuh".
#pragma once

#include "fp8moe/moe/balance.hpp"
#include "fp8moe/moe/expert_block.hpp"
#include "fp8moe/moe/expert_parallel/expert_parallel.hpp"
#include "fp8moe/moe/gemm_layouts.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/moe/score.hpp"
