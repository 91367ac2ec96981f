// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel combine (dispatch's adjoint) and the backwards: rows go back to their source
// ranks and are summed there in a fixed order in FP32 (ranks ascending, or slots ascending =
// bit-identical to the single-rank moe::combine). Outputs are overwritten. One entry template per
// op on the `executor` concept (expert_parallel_dispatch<Exec>, see dispatch.hpp); the backwards
// are compositions of these entries. X_start(...) (host) returns a pending op to wait() on.
#pragma once

#include <type_traits>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/expert_parallel/dispatch.hpp"
#include "fp8moe/moe/expert_parallel/handle.hpp"
#include "fp8moe/moe/permute.hpp"

namespace fp8moe::moe {

/// Combine (dispatch's adjoint): partial (N,C) rows go back to their source; out (T,C) token t =
/// sum over the ranks it was sent to, ranks ascending, in FP32; Out float or bfloat16_t (rounded
/// once). Tokens sent nowhere get 0. Typical partial = moe::combine of the local weighted outputs.
template <executor Exec, comm::collective_communicator C, class Handle, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>>
void combine(Exec const& exec, C& comm, Handle const& h, matrix_view<Y> partial, matrix_view<Out> out) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_PATH(D, "combine");
  if constexpr (has_dispatch<D>) D::combine(exec, comm, h, partial, out);
}
template <executor Exec, comm::collective_communicator C, class Handle, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>>
auto combine_start(Exec const& exec, C& comm, Handle const& h, matrix_view<Y> partial, matrix_view<Out> out) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_START(D, "combine_start");
  if constexpr (detail::ep_has_start<D>()) return D::combine_start(exec, comm, h, partial, out);
}

/// Slot-exact combine: each (received row, local slot) output y(local_plan.slot_row[i,j]) (M,C)
/// goes back to its source, which computes out (T,C) token t = sum_j weights(t,j) * y_tj, j
/// ascending, in FP32 with moe::combine: bit-identical to the single-rank MoE for any rank count.
/// weights (T,k) empty = unweighted (dispatch's slot-exact backward). Moves one row per slot.
/// Device: local_plan.slot_row is read on the device and its routed-slot counts are trusted.
template <executor Exec, comm::collective_communicator C, class Handle, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>>
void combine_slots(Exec const& exec, C& comm, Handle const& h, permute_plan const& local_plan,
                   matrix_view<Y> y, matrix_view<float const> weights, matrix_view<Out> out) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_PATH(D, "combine_slots");
  if constexpr (has_dispatch<D>) D::combine_slots(exec, comm, h, local_plan, y, weights, out);
}
template <executor Exec, comm::collective_communicator C, class Handle, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>>
auto combine_slots_start(Exec const& exec, C& comm, Handle const& h, permute_plan const& local_plan,
                         matrix_view<Y> y, matrix_view<float const> weights, matrix_view<Out> out) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_START(D, "combine_slots_start");
  if constexpr (detail::ep_has_start<D>())
    return D::combine_slots_start(exec, comm, h, local_plan, y, weights, out);
}

// ------------------------------------------------------------------------------------------------
// Backward: dispatch's backward is a combine, combine's backward is a (cached) dispatch.

/// dx (T,H) = sum over ranks of d_recv_x (N,H); dweights (T,k) = sum over ranks of d_recv_weights
/// (N,k) (each slot is non-zero on its expert's rank only, so that sum is exact). Pass empty
/// views for a pair to skip it.
template <executor Exec, comm::collective_communicator C, class Handle, class G, class DX>
void dispatch_backward(Exec const& exec, C& comm, Handle const& h, matrix_view<G> d_recv_x,
                       matrix_view<float const> d_recv_weights, matrix_view<DX> dx,
                       matrix_view<float> dweights) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_PATH(D, "dispatch_backward");
  bool const do_x = !(d_recv_x.rows == 0 && d_recv_x.cols == 0 && dx.rows == 0 && dx.cols == 0);
  bool const do_w =
      !(d_recv_weights.rows == 0 && d_recv_weights.cols == 0 && dweights.rows == 0 && dweights.cols == 0);
  if constexpr (has_dispatch<D>) {
    if (do_x) moe::combine(exec, comm, h, d_recv_x, dx);
    if (do_w) moe::combine(exec, comm, h, d_recv_weights, dweights);
  }
}

/// Slot-exact backward of dispatch: d_permuted (M,H) rows (gradient of the permuted expert inputs)
/// return per slot and dx (T,H) = their sum, slots ascending (bit-identical to moe::permute_backward).
template <executor Exec, comm::collective_communicator C, class Handle, class G, class DX>
void dispatch_backward_slots(Exec const& exec, C& comm, Handle const& h, permute_plan const& local_plan,
                             matrix_view<G> d_permuted, matrix_view<DX> dx) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_PATH(D, "dispatch_backward_slots");
  if constexpr (has_dispatch<D>)
    moe::combine_slots(exec, comm, h, local_plan, d_permuted, matrix_view<float const>{}, dx);
}

/// Backward of combine (either form): dout (T,H) travels like the forward dispatch (cached
/// handle); d_partial (N,H) row i = dout of its source token.
template <executor Exec, comm::collective_communicator C, class Handle, class G, class DP>
void combine_backward(Exec const& exec, C& comm, Handle const& h, matrix_view<G> dout,
                      matrix_view<DP> d_partial) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_PATH(D, "combine_backward");
  if constexpr (has_dispatch<D>) moe::dispatch_rows(exec, comm, h, dout, d_partial);
}

}  // namespace fp8moe::moe
