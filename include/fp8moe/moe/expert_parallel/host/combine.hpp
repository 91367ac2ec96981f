// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host path of the expert-parallel combines (used by expert_parallel_dispatch<host_executor>,
// host/expert_parallel.hpp): rows go back to their source ranks and are summed there in a fixed
// order in FP32 by detail::combine_tokens (moe/host/permute.hpp). table_plan and row_offsets are
// shared with the device path and the node-shared-memory ops. Outputs overwritten at wait().
#pragma once

#include <cstdint>
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
#include "fp8moe/moe/permute.hpp"

namespace fp8moe::moe {

namespace detail {
/// A permute_plan view whose slot_row is `table` (T, width): lets moe::combine reduce received
/// rows in the table's column order (ranks ascending, or slots ascending).
inline permute_plan table_plan(std::int64_t T, std::int64_t width, std::int64_t rows,
                               std::int32_t const* table) {
  static std::int32_t empty_table = -1;  // stands in for the (0 x width) table of a rank without tokens
  permute_plan p;
  p.tokens = T;
  p.k = width;
  p.experts = 1;
  p.rows = rows;
  p.slot_row = table ? const_cast<std::int32_t*>(table) : &empty_table;  // read only by moe::combine
  return p;
}

/// Prefix sums of per-rank row counts: off[r] = sum_{q<r} n[q], off[R] = total.
inline std::vector<std::int64_t> row_offsets(std::vector<std::int64_t> const& n) {
  std::vector<std::int64_t> off(n.size() + 1, 0);
  for (std::size_t r = 0; r < n.size(); ++r) off[r + 1] = off[r] + n[r];
  return off;
}

/// The return trip of both combines: rows of `y` (the received order, `order[i]` = row of y of
/// returned row i, `ret_off` = per-source-rank offsets into `order`) go back to the ranks they came
/// from and land in `rows` in the send order (`back_off`), this rank's own block excluded on both
/// sides. A row_gather_communicator reads the rows of y where they are; otherwise they are packed
/// first. Returns where this rank's own rows can be read in place (stride Cn), indexed like
/// `order`: kept[i - ret_off[me]].
template <class C, class YT>
YT const* return_rows(host_executor const& exec, C& comm, ep_pending<typename C::request>& p,
                      dispatch_handle const& h, matrix_view<YT const> y, std::span<std::int32_t const> order,
                      std::vector<std::int64_t> const& ret_off, std::vector<std::int64_t> const& back_off,
                      YT* rows) {
  auto const R = static_cast<std::size_t>(h.ranks), me = static_cast<std::size_t>(h.rank);
  std::int64_t const Cn = y.cols;
  std::vector<std::int64_t> sc(R), sd(R), rc(R), rd(R);
  std::int64_t compact = 0;
  for (std::size_t r = 0; r < R; ++r) {
    bool const self = r == me;
    sc[r] = self ? 0 : ret_off[r + 1] - ret_off[r];  // rows, for the gathered form
    sd[r] = ret_off[r];
    rc[r] = self ? 0 : (back_off[r + 1] - back_off[r]) * Cn;
    rd[r] = compact * Cn;
    if (!self) compact += back_off[r + 1] - back_off[r];
  }
  std::span<YT> const recv(rows, static_cast<std::size_t>(compact * Cn));
  if constexpr (comm::row_gather_communicator<C>) {
    if (y.col_stride == 1 && h.gather_rows_in_place && rows_contiguous(order, sc, sd, y.row_stride == Cn)) {
      comm::gathered_rows<YT> const g{y.data, y.rows, Cn, y.row_stride, order, comm::blocks{sc, sd}};
      p.add(comm.ialltoallv_rows(g, recv, comm::blocks{rc, rd}, comm::size_check::trusted));
      return nullptr;  // own rows: read from y itself
    }
  }
  // pack every returned row (this rank's own too: the reduction then reads unit-stride rows)
  auto const n = static_cast<std::int64_t>(order.size());
  auto* send = reinterpret_cast<YT*>(p.scratch(h, static_cast<std::size_t>(n * Cn) * sizeof(YT)));
  gather_rows(exec, y, order.data(), n, send);
  for (std::size_t r = 0; r < R; ++r) sc[r] *= Cn, sd[r] *= Cn;
  transfer_blocks(comm, p, std::span<YT const>(send, static_cast<std::size_t>(n * Cn)), sc, sd, recv, rc, rd);
  return send + ret_off[me] * Cn;
}

/// Reduction of a combine: out (T,C) token t = sum over the table's columns c ascending (ranks for
/// combine, slots for combine_slots) of w(t,c) * row, where table(t,c) is a row of the send order
/// (-1 = none); other ranks' rows are in `rows` (compacted, own block excluded), this rank's own
/// rows at own_row(i - back_off[me]). One summation code: detail::combine_tokens.
template <class YT, class OwnRow, class Out>
void reduce_returned(host_executor const& exec, dispatch_handle const& h, std::int32_t const* table,
                     std::int64_t width, std::int64_t Cn, YT const* rows,
                     std::vector<std::int64_t> const& back_off, OwnRow const& own_row,
                     matrix_view<float const> weights, matrix_view<Out> out) {
  auto const me = static_cast<std::size_t>(h.rank);
  std::int64_t const own_first = back_off[me], own_end = back_off[me + 1], own_n = own_end - own_first;
  combine_tokens(
      exec, h.tokens, width, Cn, 1,
      [&](std::int64_t t, std::int64_t c) -> YT const* {
        std::int64_t const i = table[t * width + c];
        if (i < 0) return nullptr;
        if (i >= own_first && i < own_end) return own_row(i - own_first);
        return rows + (i < own_first ? i : i - own_n) * Cn;
      },
      weights, out);
}

template <class C, class Y, class Out>
ep_pending<typename C::request> combine_impl(host_executor const& exec, C& comm, dispatch_handle const& h,
                                             matrix_view<Y> partial, matrix_view<Out> out) {
  using YT = std::remove_const_t<Y>;
  check_matrix(partial, combine_where, "partial");
  require(partial.rows == h.num_recv(), combine_where, "partial",
          std::to_string(h.num_recv()) + " rows (N of the handle)", std::to_string(partial.rows));
  check_matrix(out, combine_where, "out");
  check_shape(out, h.tokens, partial.cols, combine_where, "out");
  require(comm.size() == h.ranks && comm.rank() == h.rank, combine_where, "comm",
          "the communicator of the handle");
  std::int64_t const Cn = partial.cols, N = h.num_recv(), S_ = h.num_send();
  auto const me = static_cast<std::size_t>(h.rank);
  ep_pending<typename C::request> p;
  auto const ret_off = row_offsets(h.recv_tokens), back_off = row_offsets(h.send_tokens);
  auto* rows = reinterpret_cast<YT*>(
      p.scratch(h, static_cast<std::size_t>((S_ - h.send_tokens[me]) * Cn) * sizeof(YT)));
  std::vector<std::int32_t> iota(static_cast<std::size_t>(N));  // partial rows go back in received order
  for (std::int64_t i = 0; i < N; ++i) iota[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  YT const* own =
      return_rows(exec, comm, p, h, matrix_view<YT const>(partial), iota, ret_off, back_off, rows);
  matrix_view<YT const> const pc = partial;
  std::int64_t const own_at = ret_off[me];
  p.on_complete([exec, &h, rows, Cn, out, pc, own, own_at, back_off] {
    reduce_returned(
        exec, h, h.token_rank_row.data(), h.ranks, Cn, static_cast<YT const*>(rows), back_off,
        [&](std::int64_t i) { return own ? own + i * Cn : pc.row(own_at + i); }, matrix_view<float const>{},
        out);
  });
  return p;
}

template <class C, class Y, class Out>
ep_pending<typename C::request> combine_slots_impl(host_executor const& exec, C& comm,
                                                   dispatch_handle const& h, permute_plan const& local_plan,
                                                   matrix_view<Y> y, matrix_view<float const> weights,
                                                   matrix_view<Out> out) {
  using YT = std::remove_const_t<Y>;
  constexpr char const* where = "fp8moe::moe::combine_slots";
  check_matrix(y, where, "y");
  require(local_plan.tokens == h.num_recv() && local_plan.k == h.k &&
              (local_plan.slot_row != nullptr || local_plan.tokens == 0),
          where, "local_plan", "a permute plan of the received rows (N x k)");
  require(y.rows == local_plan.rows, where, "y", std::to_string(local_plan.rows) + " rows (plan rows)",
          std::to_string(y.rows));
  require(weights.rows == 0 || (weights.rows == h.tokens && weights.cols == h.k), where, "weights",
          "empty or (T,k)");
  check_matrix(out, where, "out");
  check_shape(out, h.tokens, y.cols, where, "out");
  require(comm.size() == h.ranks && comm.rank() == h.rank, where, "comm", "the communicator of the handle");
  std::int64_t const Cn = y.cols, k = h.k;
  auto const me = static_cast<std::size_t>(h.rank);
  // rows to return, per source rank: (received row, slot) ascending
  std::int64_t Sl = 0;
  for (auto v : h.recv_slots) Sl += v;
  std::vector<std::int32_t> order;
  order.reserve(static_cast<std::size_t>(Sl));
  std::int64_t i = 0;
  for (int r = 0; r < h.ranks; ++r) {
    std::int64_t n = 0;
    for (std::int64_t c = 0; c < h.recv_tokens[static_cast<std::size_t>(r)]; ++c, ++i)
      for (std::int64_t j = 0; j < k; ++j) {
        std::int32_t const row = local_plan.slot_row[i * k + j];
        if (row < -1 || row >= y.rows)
          throw_argument(where, "local_plan.slot_row", "rows of y or -1",
                         concat(row, " at (", i, ", ", j, ")"));
        if (row >= 0) {
          order.push_back(row);
          ++n;
        }
      }
    if (n != h.recv_slots[static_cast<std::size_t>(r)])
      throw_argument(where, "local_plan",
                     concat(h.recv_slots[static_cast<std::size_t>(r)], " routed slots from rank ", r,
                            " (the dispatched ids)"),
                     std::to_string(n));
  }
  ep_pending<typename C::request> p;
  auto const ret_off = row_offsets(h.recv_slots), back_off = row_offsets(h.send_slots);
  auto* rows = reinterpret_cast<YT*>(
      p.scratch(h, static_cast<std::size_t>((back_off.back() - h.send_slots[me]) * Cn) * sizeof(YT)));
  matrix_view<YT const> const yc = y;
  YT const* own = return_rows(exec, comm, p, h, yc, order, ret_off, back_off, rows);
  std::int64_t const own_at = ret_off[me];
  p.on_complete([exec, &h, rows, Cn, weights, out, yc, own, own_at, back_off, order = std::move(order)] {
    reduce_returned(
        exec, h, h.slot_row.data(), h.k, Cn, static_cast<YT const*>(rows), back_off,
        [&](std::int64_t q) {
          return own ? own + q * Cn : yc.row(order[static_cast<std::size_t>(own_at + q)]);
        },
        weights, out);
  });
  return p;
}
}  // namespace detail

}  // namespace fp8moe::moe
