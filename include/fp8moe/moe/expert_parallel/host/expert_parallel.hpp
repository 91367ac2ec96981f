// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// expert_parallel_dispatch<host_executor>: the host path of the expert-parallel entry points of
// dispatch.hpp / combine.hpp over any comm::host_communicator (single, MPI). Every op also has a
// *_start form returning an ep_pending to wait() on; the plain form waits at once.
#pragma once

#include <cstdint>
#include <type_traits>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/expert_parallel/handle.hpp"
#include "fp8moe/moe/expert_parallel/host/combine.hpp"
#include "fp8moe/moe/expert_parallel/host/dispatch.hpp"
#include "fp8moe/moe/expert_parallel/layout.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/scaling/quantized.hpp"

namespace fp8moe::moe {

template <>
struct expert_parallel_dispatch<host_executor> {
  static constexpr bool asynchronous = true;  // the *_start forms exist

  template <comm::host_communicator C>
  static dispatch_handle make_dispatch_handle(host_executor const& exec, C& comm,
                                              expert_placement const& placement,
                                              matrix_view<std::int32_t const> ids) {
    return detail::make_handle(exec, comm, placement, ids);
  }

  template <comm::host_communicator C, class S, class T>
  static ep_pending<typename C::request> dispatch_rows_start(host_executor const& exec, C& comm,
                                                             dispatch_handle const& h, matrix_view<S> x,
                                                             matrix_view<T> recv) {
    return detail::dispatch_rows_impl(exec, comm, h, x, recv);
  }
  template <comm::host_communicator C, class S, class T>
  static void dispatch_rows(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<S> x,
                            matrix_view<T> recv) {
    detail::dispatch_rows_impl(exec, comm, h, x, recv).wait();
  }

  template <comm::host_communicator C>
  static ep_pending<typename C::request> dispatch_routing_start(
      host_executor const& exec, C& comm, dispatch_handle& h, expert_placement const& placement,
      matrix_view<std::int32_t const> ids, matrix_view<float const> weights,
      matrix_view<std::int32_t> recv_ids, matrix_view<float> recv_weights) {
    return detail::dispatch_meta_impl(exec, comm, h, placement, ids, weights, recv_ids, recv_weights);
  }

  template <comm::host_communicator C, class S, class T>
  static ep_pending<typename C::request> dispatch_into_start(
      host_executor const& exec, C& comm, dispatch_handle& h, expert_placement const& placement,
      matrix_view<S> x, matrix_view<float const> scales, matrix_view<std::int32_t const> ids,
      matrix_view<float const> weights, dispatch_outputs<T> out) {
    return detail::dispatch_forward_impl(exec, comm, h, placement, x, scales, ids, weights, out.x, out.scales,
                                         out.ids, out.weights);
  }
  template <comm::host_communicator C, class S, class T>
  static void dispatch_into(host_executor const& exec, C& comm, dispatch_handle& h,
                            expert_placement const& placement, matrix_view<S> x,
                            matrix_view<float const> scales, matrix_view<std::int32_t const> ids,
                            matrix_view<float const> weights, dispatch_outputs<T> out) {
    dispatch_into_start(exec, comm, h, placement, x, scales, ids, weights, out).wait();
  }

  template <comm::host_communicator C, class S>
  static pending_dispatch<typename C::request, std::remove_const_t<S>> dispatch_start(
      host_executor const& exec, C& comm, expert_placement const& placement, matrix_view<S> x,
      matrix_view<std::int32_t const> ids, matrix_view<float const> weights) {
    return detail::dispatch_impl<C, S, std::remove_const_t<S>>(exec, comm, placement, x, {}, ids, weights);
  }
  template <comm::host_communicator C, class FS>
  static pending_dispatch<typename C::request, std::remove_const_t<FS>> dispatch_start(
      host_executor const& exec, C& comm, expert_placement const& placement,
      scaling::quantized_matrix_view<FS> x, matrix_view<std::int32_t const> ids,
      matrix_view<float const> weights) {
    using F = std::remove_const_t<FS>;
    return detail::dispatch_impl<C, F const, F>(exec, comm, placement, detail::checked_fp8(x).data,
                                                detail::checked_fp8(x).scales, ids, weights, x.tile);
  }
  template <comm::host_communicator C, class X>
  static auto dispatch(host_executor const& exec, C& comm, expert_placement const& placement, X x,
                       matrix_view<std::int32_t const> ids, matrix_view<float const> weights) {
    return dispatch_start(exec, comm, placement, x, ids, weights).wait();
  }

  template <comm::host_communicator C, class Y, class Out>
  static ep_pending<typename C::request> combine_start(host_executor const& exec, C& comm,
                                                       dispatch_handle const& h, matrix_view<Y> partial,
                                                       matrix_view<Out> out) {
    return detail::combine_impl(exec, comm, h, partial, out);
  }
  template <comm::host_communicator C, class Y, class Out>
  static void combine(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<Y> partial,
                      matrix_view<Out> out) {
    detail::combine_impl(exec, comm, h, partial, out).wait();
  }

  template <comm::host_communicator C, class Y, class Out>
  static ep_pending<typename C::request> combine_slots_start(host_executor const& exec, C& comm,
                                                             dispatch_handle const& h,
                                                             permute_plan const& local_plan, matrix_view<Y> y,
                                                             matrix_view<float const> weights,
                                                             matrix_view<Out> out) {
    return detail::combine_slots_impl(exec, comm, h, local_plan, y, weights, out);
  }
  template <comm::host_communicator C, class Y, class Out>
  static void combine_slots(host_executor const& exec, C& comm, dispatch_handle const& h,
                            permute_plan const& local_plan, matrix_view<Y> y,
                            matrix_view<float const> weights, matrix_view<Out> out) {
    detail::combine_slots_impl(exec, comm, h, local_plan, y, weights, out).wait();
  }
};

}  // namespace fp8moe::moe
