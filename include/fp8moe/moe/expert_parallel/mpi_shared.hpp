// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel dispatch / combine through node-shared memory (comm::mpi_shared_buffer): the CPU
// form of DeepEP's intranode mode. Each rank writes its tokens (x, scales, ids, weights) or its
// partial rows into shared matrices; a receiver then copies the rows it needs straight out of its
// peers' memory, and combine reduces its tokens' partials straight out of the peers' memory. One
// copy per row and no message protocol, so it beats an all-to-all of pre-packed bytes. Same
// handle, same receive order and the same bits as the message-passing ops of dispatch.hpp / combine.hpp
// (tested).
#pragma once

#include <concepts>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fp8moe/comm/mpi_shared_buffer.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/moe/expert_parallel/combine.hpp"
#include "fp8moe/moe/expert_parallel/dispatch.hpp"
#include "fp8moe/moe/expert_parallel/handle.hpp"

// The shared-memory ops are host only (node-shared memory is host memory).
#define FP8MOE_EP_REQUIRE_HOST(Exec, op)                                   \
  static_assert(std::same_as<executor_t<Exec>, host_executor>,             \
                "fp8moe::moe::" op                                         \
                " (shared memory): host only; on a cuda_executor use the " \
                "message-passing op over a device communicator (moe/expert_parallel/cuda/dispatch.cuh)")

namespace fp8moe::moe {

namespace detail {

inline constexpr char const* shared_where = "fp8moe::moe (shared memory)";

/// Validation (local string), then one fence that also agrees on validity, then the work (which
/// returns "" or what went wrong), then a closing fence that agrees again (everyone's reads done:
/// inputs may be overwritten after the call). Every rank runs exactly two fences; an error on any
/// rank makes every rank throw (invalid_argument / communication where it was found,
/// communication elsewhere), the argument errors before anyone reads a peer's memory.
template <class Work>
void shared_op(comm::mpi_shared_buffer const& buf, std::string const& local_error, char const* arg,
               Work&& work) {
  bool const ok = buf.fence_and_agree(local_error.empty());
  std::string const work_error = ok ? work() : std::string();
  bool const done = buf.fence_and_agree(work_error.empty());
  if (!local_error.empty()) throw_argument(shared_where, arg, local_error);
  if (!work_error.empty()) throw error(errc::communication, detail::concat(shared_where, ": ", work_error));
  if (!ok || !done)
    throw error(errc::communication, detail::concat(shared_where, ": another rank failed (see its message)"));
}

template <class T>
void copy_row_to(T* dst, std::int64_t dst_col_stride, T const* src, std::int64_t n) {
  if (dst_col_stride == 1)
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
  else
    for (std::int64_t c = 0; c < n; ++c) dst[c * dst_col_stride] = src[c];
}

/// Where this rank's rows start in every rank's receive order (rank r's order: sources ascending):
/// each rank sends every source the offset of that source's block. Collective over the buffer's
/// ranks (one MPI_Alltoall of int64), run even when `err` is already set so nobody waits alone.
/// Then checks that every peer's `peer_rows` matrix (N_r rows) holds this rank's block, else sets
/// `err` naming `name`.
template <class M>
std::vector<std::int64_t> peer_block_offsets(comm::mpi_shared_buffer const& buf, dispatch_handle const& h,
                                             M const& peer_rows, char const* name, std::string& err) {
  auto const n = static_cast<std::size_t>(buf.size());
  std::vector<std::int64_t> mine(n, 0), at_peer(n, 0);
  if (err.empty()) {
    auto const off = row_offsets(h.recv_tokens);
    for (std::size_t r = 0; r < n; ++r) mine[r] = off[r];
  }
  comm::mpi_check(MPI_Alltoall(mine.data(), 1, MPI_INT64_T, at_peer.data(), 1, MPI_INT64_T, buf.native()),
                  "MPI_Alltoall", buf.rank(), buf.size());
  for (std::size_t r = 0; err.empty() && r < n; ++r)
    if (at_peer[r] + h.send_tokens[r] > peer_rows.rows(static_cast<int>(r)))
      err = concat("rank ", r, "'s ", name, " (", peer_rows.rows(static_cast<int>(r)),
                   " rows) to hold this rank's block at ", at_peer[r], " + ", h.send_tokens[r]);
  return at_peer;
}

inline std::string check_handle_vs_buffer(dispatch_handle const& h, comm::mpi_shared_buffer const& buf) {
  if (h.ranks != buf.size() || h.rank != buf.rank())
    return detail::concat("the handle's communicator (rank ", h.rank, " of ", h.ranks,
                          ") to match the buffer's (rank ", buf.rank(), " of ", buf.size(), ")");
  return {};
}

}  // namespace detail

/// Forward dispatch through shared memory. Before the call every rank has written its tokens into
/// the shared matrices: x (T,H), ids (T,k), weights (T,k) and, for FP8 payloads, scales (T,S)
/// (nullptr otherwise); T may differ per rank. Fills out (N rows each, the handle's receive order:
/// source rank, source token ascending), h.recv_src_token and h.tokens_per_local_expert, exactly
/// as dispatch_into does. Collective over the buffer's ranks (two fences); on return every rank's
/// inputs may be overwritten.
template <executor Exec, class T>
void dispatch_into(Exec const& exec, dispatch_handle& h, expert_placement const& placement,
                   comm::shared_matrix<T> const& x, comm::shared_matrix<float> const* scales,
                   comm::shared_matrix<std::int32_t> const& ids, comm::shared_matrix<float> const& weights,
                   dispatch_outputs<T> out) {
  FP8MOE_EP_REQUIRE_HOST(Exec, "dispatch_into");
  auto const& buf = x.buffer();
  int const R = h.ranks, me = h.rank;
  std::int64_t const N = h.num_recv(), k = h.k, H = x.cols(), Sc = scales ? scales->cols() : 0;
  std::string err = detail::check_handle_vs_buffer(h, buf);
  char const* arg = "h";
  auto fail = [&](char const* a, std::string m) {
    if (err.empty()) arg = a, err = std::move(m);
  };
  if (err.empty()) {
    if (&ids.buffer() != &buf || &weights.buffer() != &buf || (scales && &scales->buffer() != &buf))
      fail("ids/weights/scales", "matrices of the same shared buffer as x");
    if (ids.cols() != k || weights.cols() != k)
      fail("ids/weights", detail::concat(k, " columns (k of the handle)"));
    for (int r = 0; r < R; ++r)
      if (ids.rows(r) != x.rows(r) || weights.rows(r) != x.rows(r) ||
          (scales && scales->rows(r) != x.rows(r)))
        fail("x/ids/weights/scales", detail::concat("the same row count on rank ", r));
    if (x.rows(me) != h.tokens) fail("x", detail::concat(h.tokens, " rows (T of the handle)"));
    if (placement.ranks() != R || placement.local_experts(me) != h.local_experts)
      fail("placement", "the placement of the handle");
    if (out.x.rows != N || out.x.cols != H || out.ids.rows != N || out.ids.cols != k ||
        out.weights.rows != N || out.weights.cols != k ||
        (Sc > 0 && (out.scales.rows != N || out.scales.cols != Sc)))
      fail("out", detail::concat("(", N, " x H / k / S) receive views (N of the handle)"));
  }
  detail::shared_op(buf, err, arg, [&]() -> std::string {
    // pass 1: which rows this rank receives, in the handle's order (source rank, token ascending)
    std::fill(h.tokens_per_local_expert.begin(), h.tokens_per_local_expert.end(), 0);
    std::vector<std::int32_t> src_rank(static_cast<std::size_t>(N));
    std::int64_t i = 0;
    int const E = placement.experts();
    for (int r = 0; r < R; ++r) {
      std::int64_t const first = i;
      for (std::int64_t t = 0; t < ids.rows(r); ++t) {
        std::int32_t const* idr = ids.row(r, t);
        bool hit = false;
        for (std::int64_t j = 0; j < k; ++j)
          hit = hit || (idr[j] >= 0 && idr[j] < E && placement.rank_of(idr[j]) == me);
        if (!hit) continue;
        if (i < N) {
          h.recv_src_token[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(t);
          src_rank[static_cast<std::size_t>(i)] = r;
        }
        ++i;
      }
      if (i - first != h.recv_tokens[static_cast<std::size_t>(r)])
        return detail::concat("rank ", r, "'s ids send ", i - first, " rows to rank ", me,
                              ", the handle expects ", h.recv_tokens[static_cast<std::size_t>(r)],
                              " (ids changed since the handle was built?)");
    }
    // pass 2: copy rows straight out of the senders' memory
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static) if (N * H > 32768)
#endif
    for (std::int64_t q = 0; q < N; ++q) {
      int const r = src_rank[static_cast<std::size_t>(q)];
      std::int64_t const t = h.recv_src_token[static_cast<std::size_t>(q)];
      detail::copy_row_to(out.x.row(q), out.x.col_stride, x.row(r, t), H);
      if (Sc > 0) detail::copy_row_to(out.scales.row(q), out.scales.col_stride, scales->row(r, t), Sc);
      std::int32_t const* idr = ids.row(r, t);
      float const* wr = weights.row(r, t);
      for (std::int64_t j = 0; j < k; ++j) {
        std::int32_t const e = idr[j];
        out.ids(q, j) = (e >= 0 && e < E && placement.rank_of(e) == me) ? placement.local_of(e) : -1;
        out.weights(q, j) = wr[j];
      }
    }
    for (std::int64_t q = 0; q < N * k; ++q) {
      std::int32_t const l = out.ids(q / k, q % k);
      if (l >= 0) ++h.tokens_per_local_expert[static_cast<std::size_t>(l)];
    }
    return std::string();
  });
  (void)exec;
}

/// The cached dispatch through shared memory (also combine's backward): recv (N,C) row i = the
/// shared x (T,C) row recv_src_token[i] of rank recv_src_rank[i]. Needs a forward dispatch on this
/// handle first (it fills recv_src_token). Collective (two fences).
template <executor Exec, class T>
void dispatch_rows(Exec const& exec, dispatch_handle const& h, comm::shared_matrix<T> const& x,
                   matrix_view<T> recv) {
  FP8MOE_EP_REQUIRE_HOST(Exec, "dispatch_rows");
  auto const& buf = x.buffer();
  std::int64_t const N = h.num_recv(), C = x.cols();
  std::string err = detail::check_handle_vs_buffer(h, buf);
  char const* arg = "h";
  if (err.empty() && (recv.rows != N || recv.cols != C || (N > 0 && recv.data == nullptr)))
    arg = "recv", err = detail::concat("(", N, ", ", C, ") (N of the handle, columns of x)");
  if (err.empty() && x.rows(h.rank) != h.tokens)
    arg = "x", err = detail::concat(h.tokens, " rows (T of the handle)");
  for (std::int64_t i = 0; err.empty() && i < N; ++i) {
    auto const r = h.recv_src_rank[static_cast<std::size_t>(i)];
    auto const t = h.recv_src_token[static_cast<std::size_t>(i)];
    if (t < 0 || t >= x.rows(r))
      err = detail::concat("received row ", i, " from rank ", r, " names token ", t, " of ", x.rows(r),
                           ": run a forward dispatch (dispatch_into) on this handle first");
  }
  detail::shared_op(buf, err, arg, [&]() -> std::string {
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static) if (N * C > 32768)
#endif
    for (std::int64_t i = 0; i < N; ++i)
      detail::copy_row_to(
          recv.row(i), recv.col_stride,
          x.row(h.recv_src_rank[static_cast<std::size_t>(i)], h.recv_src_token[static_cast<std::size_t>(i)]),
          C);
    return std::string();
  });
  (void)exec;
}

/// Combine through shared memory (dispatch's adjoint, DeepEP's combine): every rank has written its
/// partial rows (N,C) (the handle's receive order) into a shared matrix; out (T,C) token t = the
/// sum over the ranks it was sent to, ranks ascending, of that rank's partial row, read straight out
/// of the rank's memory — the same reduction (detail::combine_tokens) and so the same bits as
/// moe::combine over a communicator. Out float or bfloat16_t. Collective (one small all-to-all of
/// block offsets, two fences).
template <executor Exec, class Y, class Out>
void combine(Exec const& exec, dispatch_handle const& h, comm::shared_matrix<Y> const& partial,
             matrix_view<Out> out) {
  FP8MOE_EP_REQUIRE_HOST(Exec, "combine");
  auto const& buf = partial.buffer();
  int const R = h.ranks, me = h.rank;
  std::int64_t const C = partial.cols();
  std::string err = detail::check_handle_vs_buffer(h, buf);
  char const* arg = "h";
  if (err.empty() && partial.rows(me) != h.num_recv())
    arg = "partial", err = detail::concat(h.num_recv(), " rows (N of the handle)");
  if (err.empty() && (out.rows != h.tokens || out.cols != C || (out.rows > 0 && out.data == nullptr)))
    arg = "out", err = detail::concat("(", h.tokens, ", ", C, ") (T of the handle, columns of partial)");
  auto const at_peer = detail::peer_block_offsets(buf, h, partial, "partial", err);
  auto const send_off = detail::row_offsets(h.send_tokens);
  detail::shared_op(buf, err, arg, [&]() -> std::string {
    detail::combine_tokens(
        exec, h.tokens, R, C, 1,
        [&](std::int64_t t, std::int64_t r) -> Y const* {
          std::int32_t const i = h.token_rank_row[static_cast<std::size_t>(t * R + r)];
          if (i < 0) return nullptr;
          auto const ru = static_cast<std::size_t>(r);
          return partial.row(static_cast<int>(r), at_peer[ru] + (i - send_off[ru]));
        },
        matrix_view<float const>{}, out);
    return std::string();
  });
}

/// Slot-exact combine through shared memory (see combine_slots in combine.hpp): every rank has
/// written its local plan's slot_row (N,k) (received row, slot -> row of y, or -1) and its expert
/// outputs y (M,C) into shared matrices; out (T,C) token t = sum_{j=0..k-1} w(t,j) * (the y row of
/// slot j on the rank holding its expert), j ascending, read straight out of that rank's memory —
/// the same bits as combine_slots over a communicator, and so as the single-rank moe::combine.
/// weights (T,k) this rank's, or empty for an unweighted sum. Collective (one small all-to-all,
/// two fences).
template <executor Exec, class Y, class Out>
void combine_slots(Exec const& exec, dispatch_handle const& h,
                   comm::shared_matrix<std::int32_t> const& slot_rows, comm::shared_matrix<Y> const& y,
                   matrix_view<float const> weights, matrix_view<Out> out) {
  FP8MOE_EP_REQUIRE_HOST(Exec, "combine_slots");
  auto const& buf = y.buffer();
  int const R = h.ranks, me = h.rank;
  std::int64_t const C = y.cols(), k = h.k, T = h.tokens;
  std::string err = detail::check_handle_vs_buffer(h, buf);
  char const* arg = "h";
  auto fail = [&](char const* a, std::string m) {
    if (err.empty()) arg = a, err = std::move(m);
  };
  if (err.empty()) {
    if (&slot_rows.buffer() != &buf) fail("slot_rows", "a matrix of the same shared buffer as y");
    if (slot_rows.cols() != k || slot_rows.rows(me) != h.num_recv())
      fail("slot_rows",
           detail::concat("(", h.num_recv(), ", ", k, ") (N, k of the handle: the local plan's slot_row)"));
    if (weights.rows != 0 && (weights.rows != T || weights.cols != k))
      fail("weights", detail::concat("empty or (", T, ", ", k, ")"));
    if (out.rows != T || out.cols != C || (T > 0 && out.data == nullptr))
      fail("out", detail::concat("(", T, ", ", C, ") (T of the handle, columns of y)"));
  }
  auto const at_peer = detail::peer_block_offsets(buf, h, slot_rows, "slot_rows", err);
  auto const send_off = detail::row_offsets(h.send_tokens), back_off = detail::row_offsets(h.send_slots);
  detail::shared_op(buf, err, arg, [&]() -> std::string {
    // (rank, row of its y) of every routed slot, validated before the reduction reads any row
    std::vector<std::int32_t> rank_of(static_cast<std::size_t>(T * k), -1);
    std::vector<std::int64_t> row_of(static_cast<std::size_t>(T * k), -1);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < k; ++j) {
        std::int32_t const q = h.slot_row[static_cast<std::size_t>(t * k + j)];
        if (q < 0) continue;
        int r = 0;
        while (r + 1 < R && back_off[static_cast<std::size_t>(r) + 1] <= q) ++r;  // the block holding q
        auto const ru = static_cast<std::size_t>(r);
        std::int32_t const sent = h.token_rank_row[static_cast<std::size_t>(t * R + r)];
        std::int64_t const row = sent < 0 ? -1 : slot_rows.row(r, at_peer[ru] + (sent - send_off[ru]))[j];
        if (row < 0 || row >= y.rows(r))
          return detail::concat("token ", t, " slot ", j, ": rank ", r, "'s slot_rows names row ", row,
                                " of its ", y.rows(r),
                                "-row y (a plan of the rows dispatched with this handle?)");
        rank_of[static_cast<std::size_t>(t * k + j)] = r;
        row_of[static_cast<std::size_t>(t * k + j)] = row;
      }
    detail::combine_tokens(
        exec, T, k, C, 1,
        [&](std::int64_t t, std::int64_t j) -> Y const* {
          auto const q = static_cast<std::size_t>(t * k + j);
          return rank_of[q] < 0 ? nullptr : y.row(rank_of[q], row_of[q]);
        },
        weights, out);
    return std::string();
  });
}

}  // namespace fp8moe::moe
