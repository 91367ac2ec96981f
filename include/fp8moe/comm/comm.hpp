// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Umbrella header of comm/ (host headers only): the communicator concept and single_communicator.
// mpi_communicator.hpp (fp8moe::mpi) and nccl_communicator.hpp (fp8moe::nccl) are included explicitly.
#pragma once

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/comm/single_communicator.hpp"
