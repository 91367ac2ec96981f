// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The optional fp8moe::io component (CMake target fp8moe::io, needs nlohmann/json): safetensors
// files and sharded checkpoints, the DeepSeek-V3 config.json, NumPy .npy. The core headers and
// fp8moe/fp8moe.hpp never include it; include this header (or one of its parts) explicitly.
#pragma once

#include "fp8moe/io/checkpoint.hpp"
#include "fp8moe/io/deepseek_v3_config.hpp"
#include "fp8moe/io/dtype.hpp"
#include "fp8moe/io/file.hpp"
#include "fp8moe/io/npy.hpp"
#include "fp8moe/io/safetensors.hpp"
