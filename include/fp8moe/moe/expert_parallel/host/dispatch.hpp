// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host path of the expert-parallel dispatch (used by expert_parallel_dispatch<host_executor>,
// host/expert_parallel.hpp): the handle over a host collective communicator, the row transfers
// (read in place by a row_gather_communicator, packed otherwise), the routing words and the
// allocating dispatch. Validated before the first transfer; outputs overwritten at wait().
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/expert_parallel/handle.hpp"
#include "fp8moe/moe/expert_parallel/layout.hpp"
#include "fp8moe/scaling/quantized.hpp"

namespace fp8moe::moe {

namespace detail {
/// FP8 payload: per-row (1 x n) scale tiles, scales shaped (T, ceil(H / n)).
template <class FS>
scaling::quantized_matrix_view<std::remove_const_t<FS> const> checked_fp8(
    scaling::quantized_matrix_view<FS> x) {
  scaling::quantized_matrix_view<std::remove_const_t<FS> const> const xc = x;
  require(xc.tile_rows() == 1, dispatch_where, "x.tile", "per-row (1 x n) scale tiles");
  check_shape(xc.scales, xc.rows(), scaling::scale_cols(xc.tile, xc.cols()), dispatch_where, "x.scales");
  return xc;
}

/// The all-to-all block layout of dispatch_rows (host and device) for rows of `row_elements`
/// elements: the rows this rank keeps stay out of the exchange (count 0 to itself); the others are
/// packed in rank order. Counts and displacements in elements, one entry per rank.
struct rows_exchange {
  std::vector<std::int64_t> sc, sd, rc, rd;  // (R) send counts / displacements, recv counts / displacements
  std::int64_t packed = 0;                   // rows sent to other ranks
  std::int64_t self_src = 0;                 // send-order index of this rank's first own row
  std::int64_t self_dst = 0;                 // recv row of this rank's first own row
  std::int64_t n_self = 0;                   // rows this rank keeps
};

inline rows_exchange plan_rows_exchange(dispatch_handle const& h, std::int64_t row_elements) {
  auto const R = static_cast<std::size_t>(h.ranks), me = static_cast<std::size_t>(h.rank);
  std::int64_t const Cn = row_elements;
  rows_exchange e;
  e.sc.resize(R), e.sd.resize(R), e.rc.resize(R), e.rd.resize(R);
  std::int64_t so = 0, ro = 0;
  for (std::size_t r = 0; r < R; ++r) {
    if (r == me) e.self_src = so, e.self_dst = ro;
    e.sc[r] = r == me ? 0 : h.send_tokens[r] * Cn;
    e.sd[r] = e.packed * Cn;
    e.rc[r] = r == me ? 0 : h.recv_tokens[r] * Cn;
    e.rd[r] = ro * Cn;
    if (r != me) e.packed += h.send_tokens[r];
    so += h.send_tokens[r];
    ro += h.recv_tokens[r];
  }
  e.n_self = h.send_tokens[me];
  return e;
}

/// x rows to their destinations. The rows this rank keeps never enter the communicator: they are
/// gathered straight into their place in recv. The other ranks' rows are read in place by a
/// row_gather_communicator (MPI: indexed datatypes) and packed first for any other communicator.
template <class C, class S, class T>
ep_pending<typename C::request> dispatch_rows_impl(host_executor const& exec, C& comm,
                                                   dispatch_handle const& h, matrix_view<S> x,
                                                   matrix_view<T> recv) {
  constexpr char const* where = "fp8moe::moe::dispatch_rows";
  check_matrix(x, where, "x");
  require(x.rows == h.tokens, where, "x", std::to_string(h.tokens) + " rows (T of the handle)",
          std::to_string(x.rows));
  check_matrix(recv, where, "recv");
  check_shape(recv, h.num_recv(), x.cols, where, "recv");
  require(comm.size() == h.ranks && comm.rank() == h.rank, where, "comm", "the communicator of the handle");
  ep_pending<typename C::request> p;
  auto const Cn = x.cols, S_ = h.num_send(), N = h.num_recv();
  auto const e = plan_rows_exchange(h, Cn);
  std::int64_t const packed = e.packed, self_src = e.self_src, self_dst = e.self_dst, n_self = e.n_self;
  matrix_view<T const> const xc = x;
  T* dst = recv.data;
  if (!is_packed(recv)) {
    dst = reinterpret_cast<T*>(p.scratch(h, static_cast<std::size_t>(N * Cn) * sizeof(T)));
    p.on_complete([exec, dst, recv] { scatter_packed(exec, static_cast<T const*>(dst), recv); });
  }
  std::span<T> const dst_span(dst, static_cast<std::size_t>(N * Cn));
  bool gathered = false;
  if constexpr (comm::row_gather_communicator<C>) {
    if (x.col_stride == 1 && h.gather_rows_in_place) {
      // the communicator reads the rows where they are (MPI: one indexed datatype per destination):
      // no pack pass. Blocks index the send order; this rank's own block stays out of the exchange.
      auto const R = static_cast<std::size_t>(h.ranks);
      std::vector<std::int64_t> counts(R), displs(R);
      std::int64_t at = 0;
      for (std::size_t r = 0; r < R; ++r) {
        counts[r] = r == static_cast<std::size_t>(h.rank) ? 0 : h.send_tokens[r];
        displs[r] = at;
        at += h.send_tokens[r];
      }
      if (rows_contiguous(h.send_token, counts, displs, x.row_stride == Cn)) {
        comm::gathered_rows<T> const g{x.data,       x.rows,       Cn,
                                       x.row_stride, h.send_token, comm::blocks{counts, displs}};
        p.add(comm.ialltoallv_rows(g, dst_span, comm::blocks{e.rc, e.rd}, comm::size_check::trusted));
        gathered = true;
      }
    }
  }
  if (!gathered) {  // pack the other ranks' rows (rank order), then one all-to-all-v
    auto* send = reinterpret_cast<T*>(p.scratch(h, static_cast<std::size_t>(packed * Cn) * sizeof(T)));
    gather_rows(exec, xc, h.send_token.data(), self_src, send);
    gather_rows(exec, xc, h.send_token.data() + self_src + n_self, S_ - self_src - n_self,
                send + self_src * Cn);
    transfer_blocks(comm, p, std::span<T const>(send, static_cast<std::size_t>(packed * Cn)), e.sc, e.sd,
                    dst_span, e.rc, e.rd);
  }
  gather_rows(exec, xc, h.send_token.data() + self_src, n_self, dst + self_dst * Cn);  // kept rows, in place
  return p;
}

/// The routing words of every sent row in one transfer of 32-bit words:
/// [ids localized to the destination (k) | source token (1) | weights (k)], unpacked into
/// recv_ids / recv_weights and the handle at wait().
template <class C>
ep_pending<typename C::request> dispatch_meta_impl(host_executor const& exec, C& comm, dispatch_handle& h,
                                                   expert_placement const& placement,
                                                   matrix_view<std::int32_t const> ids,
                                                   matrix_view<float const> weights,
                                                   matrix_view<std::int32_t> recv_ids,
                                                   matrix_view<float> recv_weights) {
  check_matrix(ids, dispatch_where, "ids");
  check_shape(ids, h.tokens, h.k, dispatch_where, "ids");
  check_matrix(weights, dispatch_where, "weights");
  check_shape(weights, h.tokens, h.k, dispatch_where, "weights");
  check_matrix(recv_ids, dispatch_where, "recv_ids");
  check_shape(recv_ids, h.num_recv(), h.k, dispatch_where, "recv_ids");
  check_matrix(recv_weights, dispatch_where, "recv_weights");
  check_shape(recv_weights, h.num_recv(), h.k, dispatch_where, "recv_weights");
  require(placement.ranks() == h.ranks && placement.local_experts(h.rank) == h.local_experts, dispatch_where,
          "placement", "the placement of the handle");
  require(comm.size() == h.ranks && comm.rank() == h.rank, dispatch_where, "comm",
          "the communicator of the handle");
  std::int64_t const S_ = h.num_send(), N = h.num_recv(), k = h.k, W = 2 * k + 1;
  ep_pending<typename C::request> p;
  auto* send = reinterpret_cast<std::uint32_t*>(p.scratch(h, static_cast<std::size_t>(S_ * W) * 4));
  auto* recv = reinterpret_cast<std::uint32_t*>(p.scratch(h, static_cast<std::size_t>(N * W) * 4));
  std::int64_t row = 0;
  for (int r = 0; r < h.ranks; ++r)
    for (std::int64_t i = 0; i < h.send_tokens[static_cast<std::size_t>(r)]; ++i, ++row) {
      std::int32_t const t = h.send_token[static_cast<std::size_t>(row)];
      std::uint32_t* w = send + row * W;
      for (std::int64_t j = 0; j < k; ++j) {
        std::int32_t const e = ids(t, j);
        w[j] = static_cast<std::uint32_t>((e >= 0 && placement.rank_of(e) == r) ? placement.local_of(e) : -1);
        w[k + 1 + j] = fp8moe::bit_cast<std::uint32_t>(weights(t, j));
      }
      w[k] = static_cast<std::uint32_t>(t);
    }
  (void)exec;
  auto* hp = &h;
  p.on_complete([hp, recv, recv_ids, recv_weights, N, k, W] {
    std::fill(hp->tokens_per_local_expert.begin(), hp->tokens_per_local_expert.end(), 0);
    for (std::int64_t i = 0; i < N; ++i) {
      std::uint32_t const* w = recv + i * W;
      for (std::int64_t j = 0; j < k; ++j) {
        auto const l = static_cast<std::int32_t>(w[j]);
        recv_ids(i, j) = l;
        if (l >= 0) ++hp->tokens_per_local_expert[static_cast<std::size_t>(l)];
        recv_weights(i, j) = fp8moe::bit_cast<float>(w[k + 1 + j]);
      }
      hp->recv_src_token[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(w[k]);
    }
  });
  transfer(comm, p, static_cast<std::uint32_t const*>(send), h.send_tokens, recv, h.recv_tokens, W);
  return p;
}

/// The forward dispatch: the routing words (a small transfer), x rows straight into recv_x and,
/// for FP8 payloads, the scale rows straight into recv_scales (both by dispatch_rows_impl: read in
/// place by a row_gather_communicator, no pack or unpack pass); all posted before any is waited on.
template <class C, class S, class T>
ep_pending<typename C::request> dispatch_forward_impl(
    host_executor const& exec, C& comm, dispatch_handle& h, expert_placement const& placement,
    matrix_view<S> x, matrix_view<float const> scales, matrix_view<std::int32_t const> ids,
    matrix_view<float const> weights, matrix_view<T> recv_x, matrix_view<float> recv_scales,
    matrix_view<std::int32_t> recv_ids, matrix_view<float> recv_weights) {
  // validate everything before the first transfer starts
  check_matrix(x, dispatch_where, "x");
  require(x.rows == h.tokens, dispatch_where, "x", std::to_string(h.tokens) + " rows",
          std::to_string(x.rows));
  check_matrix(recv_x, dispatch_where, "recv_x");
  check_shape(recv_x, h.num_recv(), x.cols, dispatch_where, "recv_x");
  if (scales.cols > 0) {
    check_matrix(scales, dispatch_where, "scales");
    require(scales.rows == h.tokens, dispatch_where, "scales", std::to_string(h.tokens) + " rows",
            std::to_string(scales.rows));
    check_matrix(recv_scales, dispatch_where, "recv_scales");
    check_shape(recv_scales, h.num_recv(), scales.cols, dispatch_where, "recv_scales");
  }
  ep_pending<typename C::request> p;
  p.add(
      dispatch_meta_impl(exec, comm, h, placement, ids, weights, recv_ids, recv_weights));  // checks the rest
  p.add(dispatch_rows_impl(exec, comm, h, x, recv_x));
  if (scales.cols > 0) p.add(dispatch_rows_impl(exec, comm, h, scales, recv_scales));
  return p;
}

/// Builds the handle over a host collective communicator (one all-to-all of (rows, slots, ok)).
/// `local` = an argument error the caller found (shared with the other ranks, then thrown).
template <class C>
dispatch_handle make_handle(host_executor const& exec, C& comm, expert_placement const& placement,
                            matrix_view<std::int32_t const> ids, std::string local = {}) {
  return build_handle(exec, comm.size(), comm.rank(), placement, ids, std::move(local),
                      [&comm](std::span<std::int64_t const> out, std::span<std::int64_t> in) {
                        comm.alltoall(out, in, comm::size_check::trusted);
                      });
}

/// The allocating dispatch's own argument check (host and CUDA) as a message, empty when the
/// arguments fit: it travels with the count exchange, so every rank throws together.
template <class S>
std::string dispatch_argument_error(matrix_view<S> x, matrix_view<float const> scales,
                                    matrix_view<std::int32_t const> ids, matrix_view<float const> weights) {
  try {
    check_matrix(x, dispatch_where, "x");
    check_matrix(weights, dispatch_where, "weights");
    require(x.rows == ids.rows && weights.rows == ids.rows && weights.cols == ids.cols &&
                (scales.cols == 0 || scales.rows == ids.rows),
            dispatch_where, "x / scales / weights", "T rows each and weights shaped like ids (T,k)");
  } catch (fp8moe::error const& e) {
    return e.what();
  }
  return {};
}

template <class C, class S, class T>
pending_dispatch<typename C::request, T> dispatch_impl(host_executor const& exec, C& comm,
                                                       expert_placement const& placement, matrix_view<S> x,
                                                       matrix_view<float const> scales,
                                                       matrix_view<std::int32_t const> ids,
                                                       matrix_view<float const> weights,
                                                       scaling::tile_shape tile = {}) {
  auto res = std::make_unique<dispatch_result<T>>();
  res->handle = make_handle(exec, comm, placement, ids, dispatch_argument_error(x, scales, ids, weights));
  auto const N = res->handle.num_recv(), k = res->handle.k;
  res->x = host_matrix<T>(N, x.cols);
  res->weights = host_matrix<float>(N, k);
  res->ids = host_matrix<std::int32_t>(N, k);
  if (scales.cols > 0) res->scales = host_matrix<float>(N, scales.cols);
  res->tile = tile;
  auto p = dispatch_forward_impl(exec, comm, res->handle, placement, x, scales, ids, weights, res->x.view(),
                                 res->scales.view(), res->ids.view(), res->weights.view());
  return {std::move(res), std::move(p)};
}
}  // namespace detail
}  // namespace fp8moe::moe
