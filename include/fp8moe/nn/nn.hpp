// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella of the nn module (host paths): matmul, fp8_linear, swiglu_mlp,
// rmsnorm, rope (YaRN), embedding, softmax / cross-entropy. CUDA users also include
// "fp8moe/nn/cuda/dispatch.cuh" (nvcc).
#pragma once

#include "fp8moe/nn/embedding.hpp"
#include "fp8moe/nn/fp8_linear.hpp"
#include "fp8moe/nn/matmul.hpp"
#include "fp8moe/nn/rmsnorm.hpp"
#include "fp8moe/nn/rope.hpp"
#include "fp8moe/nn/softmax.hpp"
#include "fp8moe/nn/swiglu_mlp.hpp"
