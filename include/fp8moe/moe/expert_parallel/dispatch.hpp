// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel dispatch, DeepEP semantics: each token travels once per destination rank (FP8 +
// 1x128 scales, BF16 or FP32) with its FP32 weights and ids localized (-1 = expert elsewhere);
// receive order (source rank, source token). Outputs overwritten. One entry template per op on the
// `executor` concept, forwarding to expert_parallel_dispatch<Exec> (host: host/expert_parallel.hpp,
// any host collective communicator, included below; CUDA: cuda/dispatch.cuh, a device
// communicator). X_start(...) (host) returns a pending op to wait() on. combine.hpp: the return trip.
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/expert_parallel/handle.hpp"
#include "fp8moe/moe/expert_parallel/layout.hpp"
#include "fp8moe/scaling/quantized.hpp"

// The unmatched case of every expert-parallel entry point: one readable error naming the header.
#define FP8MOE_EP_REQUIRE_PATH(D, op)                                                               \
  static_assert(has_dispatch<D>, "fp8moe::moe::" op                                                 \
                                 ": this executor has no expert-parallel path in this translation " \
                                 "unit; for cuda_executor include "                                 \
                                 "\"fp8moe/moe/expert_parallel/cuda/dispatch.cuh\" (nvcc)")
// The *_start forms: host only (a device op is already asynchronous, stream-ordered on exec.stream).
#define FP8MOE_EP_REQUIRE_START(D, op)                                                                   \
  FP8MOE_EP_REQUIRE_PATH(D, op);                                                                         \
  static_assert(!has_dispatch<D> || detail::ep_has_start<D>(),                                           \
                "fp8moe::moe::" op                                                                       \
                ": host only; on a cuda_executor every expert-parallel op is already stream-ordered on " \
                "exec.stream: call the form without _start")

namespace fp8moe::moe {

namespace detail {
/// Whether the path D has the *_start forms (false when D is missing).
template <class D>
constexpr bool ep_has_start() {
  if constexpr (has_dispatch<D>)
    return D::asynchronous;
  else
    return false;
}

/// The payloads of the allocating dispatch: rows x (T,H) of any transferable type, or FP8 rows with
/// their per-row scales.
template <class X>
inline constexpr bool is_payload_view = false;
template <class S>
inline constexpr bool is_payload_view<matrix_view<S>> = true;
template <class FS>
inline constexpr bool is_payload_view<scaling::quantized_matrix_view<FS>> = true;
template <class X>
concept payload_view = is_payload_view<X>;
}  // namespace detail

/// Builds the handle (collective over comm): the layout of ids (T,k) under `placement`, the send
/// order, and one small all-to-all of (rows, slots, ok) per rank pair, so every receive size is
/// known before any payload moves. Argument errors on any rank make every rank throw (nobody waits
/// forever). placement.ranks() must equal comm.size(). Host: a dispatch_handle; CUDA: a
/// device_dispatch_handle (ids in device memory, exec.stream = comm.stream(); synchronizes it).
template <executor Exec, comm::collective_communicator C>
auto make_dispatch_handle(Exec const& exec, C& comm, expert_placement const& placement,
                          matrix_view<std::int32_t const> ids) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_PATH(D, "make_dispatch_handle");
  if constexpr (has_dispatch<D>) return D::make_dispatch_handle(exec, comm, placement, ids);
}

/// The cached dispatch (also combine's backward): recv (N,C) row i = x (T,C) row send_token[.] of
/// its source rank. Any transferable element type; on the host recv may be strided (then unpacked
/// at wait()), on the device both are unit-column-stride device rows.
template <executor Exec, comm::collective_communicator C, class Handle, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T>
void dispatch_rows(Exec const& exec, C& comm, Handle const& h, matrix_view<S> x, matrix_view<T> recv) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_PATH(D, "dispatch_rows");
  if constexpr (has_dispatch<D>) D::dispatch_rows(exec, comm, h, x, recv);
}
template <executor Exec, comm::collective_communicator C, class Handle, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T>
auto dispatch_rows_start(Exec const& exec, C& comm, Handle const& h, matrix_view<S> x, matrix_view<T> recv) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_START(D, "dispatch_rows_start");
  if constexpr (detail::ep_has_start<D>()) return D::dispatch_rows_start(exec, comm, h, x, recv);
}

/// Routing metadata: recv_weights (N,k) = the source's FP32 weights (all k slots), recv_ids (N,k)
/// = local expert id on this rank or -1; also fills h.recv_src_token and h.tokens_per_local_expert.
template <executor Exec, comm::collective_communicator C, class Handle>
auto dispatch_routing_start(Exec const& exec, C& comm, Handle& h, expert_placement const& placement,
                            matrix_view<std::int32_t const> ids, matrix_view<float const> weights,
                            matrix_view<std::int32_t> recv_ids, matrix_view<float> recv_weights) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_START(D, "dispatch_routing_start");
  if constexpr (detail::ep_has_start<D>())
    return D::dispatch_routing_start(exec, comm, h, placement, ids, weights, recv_ids, recv_weights);
}

/// The forward dispatch into caller-owned buffers (the hot path: nothing but the handle's reused
/// scratch is allocated on the host): x (T,H) [+ scales (T,S), empty for BF16/FP32], ids (T,k),
/// weights (T,k) into out (N rows each). Device: d.recv_src_token receives the source token of every
/// received row; the host-side tokens_per_local_expert is not filled (the device plan counts them).
template <executor Exec, comm::collective_communicator C, class Handle, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T>
void dispatch_into(Exec const& exec, C& comm, Handle& h, expert_placement const& placement, matrix_view<S> x,
                   matrix_view<float const> scales, matrix_view<std::int32_t const> ids,
                   matrix_view<float const> weights, dispatch_outputs<T> out) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_PATH(D, "dispatch_into");
  if constexpr (has_dispatch<D>) D::dispatch_into(exec, comm, h, placement, x, scales, ids, weights, out);
}
template <executor Exec, comm::collective_communicator C, class Handle, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T>
auto dispatch_into_start(Exec const& exec, C& comm, Handle& h, expert_placement const& placement,
                         matrix_view<S> x, matrix_view<float const> scales,
                         matrix_view<std::int32_t const> ids, matrix_view<float const> weights,
                         dispatch_outputs<T> out) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_START(D, "dispatch_into_start");
  if constexpr (detail::ep_has_start<D>())
    return D::dispatch_into_start(exec, comm, h, placement, x, scales, ids, weights, out);
}

/// The allocating dispatch: builds the handle (blocking count exchange: it gives the sizes), then
/// moves BF16 / FP32 (any transferable) rows x (T,H), or FP8 rows with their per-row (1 x 128)
/// scales (a quantized_matrix_view), with ids (T,k) and FP32 weights (T,k) into owning buffers.
/// Host: returns a dispatch_result (host_matrix); dispatch_start (host only) returns a
/// pending_dispatch whose wait() returns it. CUDA: returns a device_dispatch_result (device_matrix
/// on exec.stream, exec.stream = comm.stream()); the payload is stream-ordered after the handle.
template <executor Exec, comm::collective_communicator C, class X>
requires detail::payload_view<X>
auto dispatch_start(Exec const& exec, C& comm, expert_placement const& placement, X x,
                    matrix_view<std::int32_t const> ids, matrix_view<float const> weights) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_START(D, "dispatch_start");
  if constexpr (detail::ep_has_start<D>()) return D::dispatch_start(exec, comm, placement, x, ids, weights);
}
template <executor Exec, comm::collective_communicator C, class X>
requires detail::payload_view<X>
auto dispatch(Exec const& exec, C& comm, expert_placement const& placement, X x,
              matrix_view<std::int32_t const> ids, matrix_view<float const> weights) {
  using D = expert_parallel_dispatch<executor_t<Exec>>;
  FP8MOE_EP_REQUIRE_PATH(D, "dispatch");
  if constexpr (has_dispatch<D>) return D::dispatch(exec, comm, placement, x, ids, weights);
}

}  // namespace fp8moe::moe

#include "fp8moe/moe/expert_parallel/host/expert_parallel.hpp"  // expert_parallel_dispatch<host_executor>
