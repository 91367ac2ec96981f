// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella header of expert parallelism (host headers only): placement and layout, the dispatch
// handle, dispatch and combine over any host collective communicator. mpi_shared.hpp (node-shared
// memory, fp8moe::mpi) and cuda/dispatch.cuh (device, nvcc) are included explicitly.
#pragma once

#include "fp8moe/moe/expert_parallel/combine.hpp"
#include "fp8moe/moe/expert_parallel/dispatch.hpp"
#include "fp8moe/moe/expert_parallel/handle.hpp"
#include "fp8moe/moe/expert_parallel/layout.hpp"
