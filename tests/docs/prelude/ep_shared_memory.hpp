// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/expert_parallel.md's node-shared-memory lines (statements in a function body):
// the EP group `ep`, the buffer size and offsets, T tokens of this rank, the placement, the
// receive buffers `outputs`, the shared partial rows p and the output out (T,7168).
// needs: mpi
#pragma once
#include <cstddef>
#include <cstdint>

#include <fp8moe/comm/mpi_communicator.hpp>
#include <fp8moe/comm/mpi_shared_buffer.hpp>
#include <fp8moe/moe/expert_parallel/mpi_shared.hpp>
namespace fm = fp8moe;
namespace moe = fp8moe::moe;
#define FP8MOE_SNIPPET_PARAMS                                                                             \
  fm::host_executor const &exec, fm::comm::mpi_communicator &ep, std::size_t bytes, std::int64_t T,       \
      std::size_t off_sc, std::size_t off_w, std::size_t off_ids, moe::expert_placement const &placement, \
      moe::dispatch_outputs<fm::float8_e4m3_t> outputs, fm::comm::shared_matrix<fm::bfloat16_t> const &p, \
      fm::matrix_view<fm::bfloat16_t> out
