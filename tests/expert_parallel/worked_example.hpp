// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The worked example of docs/expert_parallel.md, quoted there between the [worked-example] markers:
// compiled and run by test_expert_parallel (single_communicator) and test_expert_parallel_mpi (1, 2
// and 4 MPI ranks), which check its output against the same layer on one rank.
#pragma once

// [worked-example]
#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/moe/expert_parallel/expert_parallel.hpp"  // dispatch, combine, local_route
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/moe/router.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "fp8moe/scaling/recipe.hpp"

namespace worked_example {
namespace fm = fp8moe;
namespace moe = fp8moe::moe;

/// The expert-parallel part of one MoE layer over `ep` (any host collective communicator: MPI's,
/// or the size-1 one): FP8 activations travel with their 1x128 scales to the ranks of their
/// experts, are permuted (rows and scales) for the grouped GEMM, and the expert outputs come back
/// and are combined in slot order (bit-identical to the single-rank layer).
template <fm::comm::host_communicator C, class Experts>
fm::host_matrix<fm::bfloat16_t> moe_layer(C& ep, moe::expert_placement const& placement,
                                          moe::router_config const& rc, fm::matrix_view<float const> logits,
                                          fm::vector_view<float const> bias,
                                          fm::matrix_view<fm::bfloat16_t const> x, Experts&& experts) {
  fm::host_executor exec;
  auto r = moe::route(exec, rc, logits, bias);  // r.ids (T,k), r.weights (T,k)
  auto xq = fm::scaling::quantize(exec, x, fm::scaling::deepseek_v3.activation);  // (T,H) + (T,H/128)
  auto d = moe::dispatch(exec, ep, placement, xq.view(), r.ids.view(), r.weights.view());
  //   d.x (N,H) fp8 + d.scales (N,H/128), d.weights (N,k), d.ids (N,k) local ids or -1, d.handle
  auto local = moe::local_route(d);  // ids / weights + counts over this rank's E_local experts
  auto p = moe::permute(exec, d.quantized_view(), local, moe::contiguous{.m_align = 128});
  //   p.x: FP8 rows (M,H) with their scales (M,H/128), grouped by local expert
  fm::host_matrix<float> y = experts(p);  // the grouped FP8 GEMMs: (M,H)
  fm::host_matrix<fm::bfloat16_t> out(x.rows, x.cols);
  moe::combine_slots(exec, ep, d.handle, p.plan.view(), y.view(), r.weights.view(), out.view());
  return out;  // (T,H) = sum over the k slots of weight * expert output, slots ascending, in FP32
}

}  // namespace worked_example
// [worked-example]
