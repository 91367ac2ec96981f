// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The scaling module (host headers): recipes and presets, per-tile scale math, quantized views,
// quantize / dequantize / transpose_requantize (host path included), scale layouts and packing,
// delayed scaling.
// The CUDA path of the same entry points: include "fp8moe/scaling/cuda/quantize.cuh" (nvcc).
#pragma once

#include "fp8moe/scaling/delayed.hpp"
#include "fp8moe/scaling/layout.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "fp8moe/scaling/quantized.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "fp8moe/scaling/scale_math.hpp"
#include "fp8moe/scaling/tile_mapping.hpp"
