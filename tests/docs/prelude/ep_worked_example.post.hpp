// SPDX-License-Identifier: Apache-2.0
// After docs/expert_parallel.md's worked example: moe_layer instantiated over the single-rank
// communicator with an expert callable (declared only: the snippet is compiled, not run).
#pragma once
#include <fp8moe/comm/single_communicator.hpp>

struct ep_worked_example_experts {
  template <class Permuted>
  fp8moe::host_matrix<float> operator()(Permuted const& p) const;
};

[[maybe_unused]] static fp8moe::host_matrix<fp8moe::bfloat16_t> ep_worked_example_instance(
    fp8moe::moe::expert_placement const& placement, fp8moe::matrix_view<float const> logits,
    fp8moe::vector_view<float const> bias, fp8moe::matrix_view<fp8moe::bfloat16_t const> x) {
  fp8moe::comm::single_communicator ep;
  return worked_example::moe_layer(ep, placement, fp8moe::moe::deepseek_v3_router, logits, bias, x,
                                   ep_worked_example_experts{});
}
