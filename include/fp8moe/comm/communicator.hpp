// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The communicator concept family, documented here and nowhere else: a core (`communicator`: rank,
// size, barrier, memory space) and its refinements (asynchronous, point-to-point, collective,
// row-gathering, stream-ordered), plus the vocabulary the implementations share. Buffers are in the
// communicator's memory space; every call overwrites its receive buffer and never accumulates.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/core/error.hpp"

namespace fp8moe::comm {

/// Where a communicator's buffers live.
enum class memory_space { host, device };

enum class reduce_op { sum, prod, min, max };

/// Whether a collective first proves that all ranks agree on the sizes (one small extra
/// collective) or trusts the caller (hot paths whose counts come from an earlier exchange).
/// With `verify`, a mismatch throws the same fp8moe::error on every rank instead of hanging.
enum class size_check { verify, trusted };

/// Element types a communicator moves: any trivially copyable type (floats, fp8, bf16, ints, PODs).
template <class T>
concept transferable = std::is_trivially_copyable_v<T> && !std::is_const_v<T>;

/// Element types reductions accept (the MPI and NCCL predefined arithmetic types we support).
template <class T>
concept reducible = std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, std::int32_t> ||
    std::same_as<T, std::int64_t> || std::same_as<T, std::uint32_t> || std::same_as<T, std::uint64_t>;

/// One operation of a batched point-to-point exchange; build it with send_op / recv_op.
struct p2p_op {
  enum class kind { send, recv };
  kind op = kind::send;
  void* data = nullptr;    // send: read only
  std::int64_t bytes = 0;  // exact message size: a receive of a different size is an error
  int peer = 0;
  int tag = 0;
};

template <transferable T>
p2p_op send_op(std::span<T const> buffer, int peer, int tag = 0) {
  return {p2p_op::kind::send, const_cast<T*>(buffer.data()), static_cast<std::int64_t>(buffer.size_bytes()),
          peer, tag};
}
template <transferable T>
p2p_op send_op(std::span<T> buffer, int peer, int tag = 0) {
  return send_op(std::span<T const>(buffer), peer, tag);
}
template <transferable T>
p2p_op recv_op(std::span<T> buffer, int peer, int tag = 0) {
  return {p2p_op::kind::recv, buffer.data(), static_cast<std::int64_t>(buffer.size_bytes()), peer, tag};
}

/// Explicit block layout of one side of an all-to-all-v: block i (to or from rank i) is counts[i]
/// elements starting at element displs[i] of the buffer. Blocks must lie inside the buffer.
struct blocks {
  std::span<std::int64_t const> counts;
  std::span<std::int64_t const> displs;
};

/// The send side of an all-to-all-v whose blocks are rows of a matrix, gathered by the communicator
/// itself instead of packed by the caller first: block i (to rank i) is the rows
/// index[rows.displs[i] .. rows.displs[i] + rows.counts[i]) of `base`, in that order, row r being
/// row_elements elements starting at base + r * row_stride. rows.counts / rows.displs count rows
/// (empty displs = packed in rank order); every index lies in [0, base_rows).
template <class T>
struct gathered_rows {
  T const* base = nullptr;
  std::int64_t base_rows = 0;     ///< rows addressable from base (the bound every index is checked against)
  std::int64_t row_elements = 0;  ///< elements per row
  std::int64_t row_stride = 0;    ///< elements from one row to the next (>= row_elements)
  std::span<std::int32_t const> index;
  blocks rows;
};

/// A pending asynchronous operation. wait() blocks until it completes (host) or, for stream-ordered
/// communicators, makes later work on the caller's stream wait for it; test() polls. A default-
/// constructed request is complete. Destroying a pending request waits for it (errors then are
/// swallowed: call wait() to see them).
template <class R>
concept request = std::movable<R> && std::default_initializable<R> && requires(R& r) {
  r.wait();
  { r.test() } -> std::same_as<bool>;
};

// ------------------------------------------------------------------------------------------------
// The family. Which implementation models what (each states it with static_asserts in its header
// and its test):
//
//   concept                      single  thread  mpi  nccl   used by
//   communicator (core)            x       x      x    x
//   async_communicator             x       x      x    x
//   p2p_communicator               x       x      x          pipeline::execute (host executor)
//   collective_communicator        x              x    x
//   row_gather_communicator        x              x          expert parallelism (rows read in place)
//   host_communicator              x              x          expert parallelism, balance (host)
//   stream_ordered_communicator                        x     pipeline::cuda_execute
//   device_communicator                                x     expert parallelism (device)
//
// single_communicator (single_communicator.hpp), thread_communicator (thread_communicator.hpp),
// mpi_communicator (mpi_communicator.hpp, fp8moe::mpi), nccl_communicator (nccl_communicator.hpp,
// fp8moe::nccl). Typed member templates are checked on `float` / std::byte; every implementation
// accepts any `transferable` element type for data movement and `reducible` for reductions.
// ------------------------------------------------------------------------------------------------

/// Core: who am I, how many are we, where do buffers live, and a barrier over all ranks.
template <class C>
concept communicator = requires(C& c, C const& cc) {
  { C::memory } -> std::convertible_to<memory_space>;
  { cc.rank() } -> std::same_as<int>;
  { cc.size() } -> std::same_as<int>;
  c.barrier();
};

/// A communicator whose buffers live in memory space M.
template <class C, memory_space M>
concept buffers_in = communicator<C> && C::memory == M;

/// Asynchronous: operations started now and completed later through a `C::request`.
template <class C>
concept async_communicator = communicator<C> && request<typename C::request>;

/// Point-to-point: byte messages to / from one peer, started at once and completed through the
/// request (wait / test). Matching is MPI's: per (source, tag) in posting order; a receive of a
/// different size than the matching send is an error. Buffers stay untouched until completion.
template <class C>
concept p2p_communicator = async_communicator<C> &&
    requires(C& c, std::span<std::byte const> s, std::span<std::byte> r) {
  { c.isend(s, 0, 0) } -> std::same_as<typename C::request>;
  { c.irecv(r, 0, 0) } -> std::same_as<typename C::request>;
};

/// Collective: all-to-all(-v), all-reduce, all-gather, batched point-to-point, their asynchronous
/// forms, and split. Counts are in elements; all-to-all-v blocks are packed contiguously in rank
/// order, or placed explicitly with `blocks` (counts + displacements).
template <class C>
concept collective_communicator = async_communicator<C> && std::movable<C> &&
    requires(C& c, std::span<float const> s, std::span<float> r, std::span<std::int64_t const> counts,
             std::span<p2p_op const> ops) {
  { c.split(0, 0) } -> std::same_as<C>;
  c.alltoall(s, r);
  c.alltoallv(s, counts, r, counts);
  c.alltoallv(s, counts, r, counts, size_check::trusted);
  c.allreduce(s, r, reduce_op::sum);
  c.allgather(s, r);
  c.send_recv(ops);
  { c.ialltoallv(s, counts, r, counts) } -> std::same_as<typename C::request>;
  { c.iallreduce(s, r, reduce_op::sum) } -> std::same_as<typename C::request>;
  { c.iallgather(s, r) } -> std::same_as<typename C::request>;
  { c.isend_recv(ops) } -> std::same_as<typename C::request>;
};

/// Row-gathering: an all-to-all-v that reads its send blocks as gathered rows (no pack pass; MPI
/// builds one indexed datatype per destination). recv blocks count elements, as in alltoallv. The
/// expert-parallel dispatch uses it when present and packs the rows itself otherwise.
template <class C>
concept row_gather_communicator = collective_communicator<C> &&
    requires(C& c, gathered_rows<float> g, std::span<float> r, blocks b) {
  { c.ialltoallv_rows(g, r, b) } -> std::same_as<typename C::request>;
  { c.ialltoallv_rows(g, r, b, size_check::trusted) } -> std::same_as<typename C::request>;
};

/// A collective communicator over host memory (what the host expert-parallel ops and the
/// data-parallel balance reductions take). A p2p-only host communicator (thread) is not one.
template <class C>
concept host_communicator = collective_communicator<C> && buffers_in<C, memory_space::host>;

/// Stream-ordered point-to-point over device memory (NCCL's shape): send / recv of bytes enqueue
/// on the caller's `C::stream_type` stream (the host never waits); group_start / group_end bracket
/// the transfers that must progress together. Matching is by posting order per rank pair.
template <class C>
concept stream_ordered_communicator = buffers_in<C, memory_space::device> &&
    requires(C& c, void const* s, void* r, std::size_t n, typename C::stream_type st) {
  c.group_start();
  c.group_end();
  c.send(s, n, 0, st);
  c.recv(r, n, 0, st);
};

/// A collective, stream-ordered communicator whose collectives are enqueued on its own `stream()`
/// (what the device expert-parallel ops take).
template <class C>
concept device_communicator = collective_communicator<C> && stream_ordered_communicator<C> &&
    requires(C const& c) {
  { c.stream() } -> std::same_as<typename C::stream_type>;
};

/// Base of a collective communicator that also models p2p_communicator: isend / irecv are batches
/// of one operation through Derived::isend_recv (same matching, size checks and request).
template <class Derived>
class p2p_from_batches {
 public:
  auto isend(std::span<std::byte const> data, int peer, int tag) {
    p2p_op const op = send_op(data, peer, tag);
    return static_cast<Derived&>(*this).isend_recv(std::span<p2p_op const>(&op, 1));
  }
  auto irecv(std::span<std::byte> data, int peer, int tag) {
    p2p_op const op = recv_op(data, peer, tag);
    return static_cast<Derived&>(*this).isend_recv(std::span<p2p_op const>(&op, 1));
  }
};

namespace detail {

using fp8moe::detail::concat;
using fp8moe::detail::throw_argument;

/// Local (pre-transfer) validation of all-to-all-v arguments; returns "" when fine, otherwise
/// what is wrong. Shared by the implementations so every rank phrases it the same way.
/// Empty displacements = blocks packed in rank order (then the counts must fill the buffer).
inline std::string check_alltoallv_local(int size, std::int64_t send_elems, blocks send,
                                         std::int64_t recv_elems, blocks recv) {
  auto const n = static_cast<std::size_t>(size);
  if (send.counts.size() != n || recv.counts.size() != n)
    return concat("send_counts/recv_counts must have one entry per rank (", size, "), got ",
                  send.counts.size(), "/", recv.counts.size());
  if ((!send.displs.empty() && send.displs.size() != n) || (!recv.displs.empty() && recv.displs.size() != n))
    return concat("displacements must have one entry per rank (", size, ")");
  std::int64_t ss = 0, rs = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (send.counts[i] < 0 || recv.counts[i] < 0) return concat("negative count for rank ", i);
    if (!send.displs.empty() && (send.displs[i] < 0 || send.displs[i] + send.counts[i] > send_elems))
      return concat("send block for rank ", i, " [", send.displs[i], ", +", send.counts[i],
                    ") outside the send buffer of ", send_elems);
    if (!recv.displs.empty() && (recv.displs[i] < 0 || recv.displs[i] + recv.counts[i] > recv_elems))
      return concat("recv block for rank ", i, " [", recv.displs[i], ", +", recv.counts[i],
                    ") outside the recv buffer of ", recv_elems);
    ss += send.counts[i];
    rs += recv.counts[i];
  }
  if (send.displs.empty() && ss != send_elems)
    return concat("send buffer holds ", send_elems, " elements, send_counts sum to ", ss);
  if (recv.displs.empty() && rs != recv_elems)
    return concat("recv buffer holds ", recv_elems, " elements, recv_counts sum to ", rs);
  return {};
}

/// Local validation of an all-to-all-v from gathered rows: the send side's shape, its blocks inside
/// `index` and every used index inside [0, base_rows), then the receive blocks as in
/// check_alltoallv_local. Returns "" when fine; `send_elems` receives each rank's element count.
template <class T>
std::string check_gathered_alltoallv_local(int size, gathered_rows<T> const& g, std::int64_t recv_elems,
                                           blocks recv, std::vector<std::int64_t>& send_elems) {
  auto const n = static_cast<std::size_t>(size);
  send_elems.assign(n, 0);
  if (g.rows.counts.size() != n || (!g.rows.displs.empty() && g.rows.displs.size() != n))
    return concat("send.rows must have one count (and displacement) per rank (", size, "), got ",
                  g.rows.counts.size(), "/", g.rows.displs.size());
  if (g.row_elements < 0 || g.row_stride < g.row_elements || g.base_rows < 0)
    return concat("send rows need row_elements >= 0, row_stride >= row_elements and base_rows >= 0, got ",
                  g.row_elements, ", ", g.row_stride, ", ", g.base_rows);
  auto const idx = static_cast<std::int64_t>(g.index.size());
  std::int64_t at = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::int64_t const c = g.rows.counts[i], d = g.rows.displs.empty() ? at : g.rows.displs[i];
    if (c < 0 || d < 0 || d + c > idx)
      return concat("send rows for rank ", i, " [", d, ", +", c, ") outside the index of ", idx, " rows");
    for (std::int64_t j = d; j < d + c; ++j)
      if (g.index[static_cast<std::size_t>(j)] < 0 || g.index[static_cast<std::size_t>(j)] >= g.base_rows)
        return concat("send row index[", j, "] = ", g.index[static_cast<std::size_t>(j)], " for rank ", i,
                      " outside [0, ", g.base_rows, ")");
    if (c > 0 && g.base == nullptr && g.row_elements > 0) return concat("send rows: base is null");
    send_elems[i] = c * g.row_elements;
    at = d + c;
  }
  std::int64_t total = 0;
  for (auto v : send_elems) total += v;
  return check_alltoallv_local(size, total, blocks{send_elems, {}}, recv_elems, recv);
}

/// Displacements of packed blocks (exclusive prefix sum of counts), or `displs` when given.
inline std::vector<std::int64_t> block_displs(blocks b) {
  if (!b.displs.empty()) return {b.displs.begin(), b.displs.end()};
  std::vector<std::int64_t> d(b.counts.size());
  std::int64_t at = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    d[i] = at;
    at += b.counts[i];
  }
  return d;
}

/// Cross-rank validation of all-to-all-v counts from the all-gathered rows
/// [local_ok, send_counts[0..R), recv_counts[0..R)] of every rank (R*(2R+1) values).
/// Returns "" when consistent; identical text on every rank otherwise.
inline std::string check_alltoallv_global(int size, std::span<std::int64_t const> rows) {
  auto const w = static_cast<std::size_t>(2 * size + 1);
  for (int i = 0; i < size; ++i)
    if (rows[i * w] == 0) return concat("rank ", i, " passed inconsistent arguments (see its own message)");
  for (int i = 0; i < size; ++i)
    for (int j = 0; j < size; ++j) {
      std::int64_t const sent = rows[i * w + 1 + j];
      std::int64_t const expected = rows[j * w + 1 + size + i];
      if (sent != expected)
        return concat("rank ", i, " sends ", sent, " elements to rank ", j, ", which expects ", expected);
    }
  return {};
}

[[noreturn]] inline void throw_comm(std::string const& msg) {
  throw error(errc::communication, msg);
}

}  // namespace detail
}  // namespace fp8moe::comm
