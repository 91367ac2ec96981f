// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella header of the pipeline module (host headers only): schedules as data, generators
// (GPipe, 1F1B, ZB-H1, ZB-H2, DualPipe, DualPipeV), validation, simulation, SVG timelines, and the
// host executor with its in-process thread communicator. The CUDA executor is pipeline/cuda/executor.hpp.
#pragma once

#include "fp8moe/comm/thread_communicator.hpp"
#include "fp8moe/pipeline/executor.hpp"
#include "fp8moe/pipeline/generators.hpp"
#include "fp8moe/pipeline/schedule.hpp"
#include "fp8moe/pipeline/simulate.hpp"
#include "fp8moe/pipeline/svg.hpp"
#include "fp8moe/pipeline/validate.hpp"
