// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/expert_parallel.md's MPI lines (statements in main's body): the worked example
// (tests/expert_parallel/worked_example.hpp), the router inputs logits (T,256) and bias (256), the
// activations x (T,H) and the experts callable.
// needs: mpi
#pragma once
#include <fp8moe/comm/mpi_communicator.hpp>

#include "../../expert_parallel/worked_example.hpp"
namespace fm = fp8moe;
namespace moe = fp8moe::moe;

struct ep_mpi_world_experts {
  template <class Permuted>
  fm::host_matrix<float> operator()(Permuted const& p) const;
};
#define FP8MOE_SNIPPET_PARAMS                                                                    \
  int argc, char **argv, fm::matrix_view<float const> logits, fm::vector_view<float const> bias, \
      fm::matrix_view<fm::bfloat16_t const> x, ep_mpi_world_experts const &experts
