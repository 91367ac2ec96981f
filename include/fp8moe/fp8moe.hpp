// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella header (convenience only): every host-compilable fp8moe module. Device code lives in
// <module>/cuda/*.cuh, and the MPI/NCCL layers in comm/mpi_communicator.hpp and
// comm/nccl_communicator.hpp; include those explicitly.
#pragma once

#include "fp8moe/attention/mla.hpp"
#include "fp8moe/comm/comm.hpp"
#include "fp8moe/config.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/gemm/gemm.hpp"
#include "fp8moe/moe/moe.hpp"
#include "fp8moe/mtp/block.hpp"
#include "fp8moe/mtp/mtp.hpp"
#include "fp8moe/mtp/sampling.hpp"
#include "fp8moe/mtp/speculative.hpp"
#include "fp8moe/nn/nn.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/optim/optim.hpp"
#include "fp8moe/pipeline/pipeline.hpp"
#include "fp8moe/scaling/scaling.hpp"
