// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella of the optim module (host paths): AdamW with FP32 master weights and float/BF16 moments,
// gradient norm / clipping with NaN/Inf location, learning-rate schedules. CUDA users also include
// "fp8moe/optim/cuda/adamw.cuh" and "fp8moe/optim/cuda/clip.cuh" (nvcc).
#pragma once

#include "fp8moe/optim/adamw.hpp"
#include "fp8moe/optim/clip.hpp"
#include "fp8moe/optim/schedule.hpp"
