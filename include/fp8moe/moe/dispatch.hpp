// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel dispatch / combine over any host communicator (single, MPI), DeepEP semantics:
// each token travels once per destination rank (FP8 + 1x128 scales, BF16 or FP32) with its FP32
// weights and ids localized (-1 = expert elsewhere); receive order (source rank, source token).
// Combine sums in a fixed order in FP32 (ranks ascending, or slots ascending = bit-identical to the
// single-rank moe::combine). Outputs overwritten; start/wait forms overlap with compute.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
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
#include "fp8moe/moe/ep_layout.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/scaling/quantized.hpp"

namespace fp8moe::moe {

/// What dispatch saved for combine and for both backwards (DeepEP's handle). S = rows this rank
/// sends (one per (token, destination rank)), N = rows it receives. Host memory, owned.
struct dispatch_handle {
  int rank = 0, ranks = 1;
  std::int64_t tokens = 0;  ///< T on this rank
  std::int64_t k = 0;
  int local_experts = 0;                  ///< E_local of this rank
  std::vector<std::int64_t> send_tokens;  // (R) rows sent to each rank
  std::vector<std::int64_t> recv_tokens;  // (R) rows received from each rank
  std::vector<std::int64_t> send_slots;   // (R) slot rows each rank returns to this one (combine_slots)
  std::vector<std::int64_t> recv_slots;   // (R) local slots among the rows received from each rank
  std::vector<std::int32_t> send_token;   // (S) source token of each sent row, rank-major, tokens ascending
  std::vector<std::int32_t> token_rank_row;  // (T,R) sent row of token t for rank r, or -1
  std::vector<std::int32_t> slot_row;        // (T,k) returned slot row of (t, j), or -1 (slot not routed)
  std::vector<std::int32_t> recv_src_rank;   // (N) source rank of each received row
  std::vector<std::int32_t> recv_src_token;  // (N) its token index on the source rank
  std::vector<std::int64_t> tokens_per_local_expert;  // (E_local) received (row, slot) pairs per local expert
  dispatch_layout layout;                             // this rank's send layout

  std::int64_t num_send() const { return static_cast<std::int64_t>(send_token.size()); }
  std::int64_t num_recv() const { return static_cast<std::int64_t>(recv_src_rank.size()); }
};

/// A started expert-parallel transfer: wait() completes the communication, then the local
/// finishing step (unpack / reduction). Owns its scratch buffers until then.
template <class Request>
class ep_pending {
 public:
  ep_pending() = default;
  ep_pending(ep_pending&&) noexcept = default;
  ep_pending& operator=(ep_pending&&) noexcept = default;
  ~ep_pending() = default;  // pending requests wait in their own destructors

  /// True when the communication has completed (the finishing step still runs in wait()).
  bool test() {
    for (auto& r : requests_)
      if (!r.test()) return false;
    return true;
  }
  void wait() {
    for (auto& r : requests_) r.wait();
    requests_.clear();
    if (finish_) std::exchange(finish_, nullptr)();
    scratch_.clear();
  }

  // assembly (used by the entry points below)
  void add(Request&& r) { requests_.push_back(std::move(r)); }
  /// A scratch buffer owned until wait(); the pointer stays valid when the object moves.
  std::byte* scratch(std::size_t bytes) {
    scratch_.emplace_back(bytes);
    return scratch_.back().data();
  }
  void on_complete(std::function<void()> f) { finish_ = std::move(f); }

 private:
  std::vector<Request> requests_;
  std::vector<std::vector<std::byte>> scratch_;
  std::function<void()> finish_;
};

namespace detail {

inline constexpr char const* dispatch_where = "fp8moe::moe::dispatch";
inline constexpr char const* combine_where = "fp8moe::moe::combine";

template <class T>
bool is_packed(matrix_view<T> const& m) {
  return m.col_stride == 1 && (m.rows <= 1 || m.row_stride == m.cols);
}

template <class T>
std::span<T> as_span(std::byte* b, std::size_t n) {
  return {reinterpret_cast<T*>(b), n};
}

/// Gathers rows idx[i] of x into dst (n rows, row-major, x.cols wide).
template <class S, class T>
void gather_rows(host_executor const& exec, matrix_view<S> x, std::int32_t const* idx, std::int64_t n,
                 T* dst) {
  std::int64_t const C = x.cols;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static) if (n * C > 32768)
#endif
  for (std::int64_t i = 0; i < n; ++i) {
    S const* src = x.row(idx[i]);
    T* d = dst + i * C;
    if (x.col_stride == 1)
      std::memcpy(d, src, static_cast<std::size_t>(C) * sizeof(T));
    else
      for (std::int64_t c = 0; c < C; ++c) d[c] = src[c * x.col_stride];
  }
  (void)exec;
}

template <class T>
void scatter_packed(host_executor const& exec, T const* src, matrix_view<T> out) {
  std::int64_t const C = out.cols;
#if FP8MOE_HAS_OPENMP
#pragma omp parallel for num_threads(exec.num_threads()) schedule(static) if (out.rows * C > 32768)
#endif
  for (std::int64_t i = 0; i < out.rows; ++i)
    for (std::int64_t c = 0; c < C; ++c) out(i, c) = src[i * C + c];
  (void)exec;
}

inline std::vector<std::int64_t> scaled(std::vector<std::int64_t> const& rows, std::int64_t cols) {
  std::vector<std::int64_t> v(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) v[i] = rows[i] * cols;
  return v;
}

}  // namespace detail

/// Builds the handle: the layout of ids (T,k) under `placement`, the send order, and one small
/// all-to-all of (rows, slots, ok) per rank pair, so every receive size is known before any
/// payload moves. Argument errors on any rank make every rank throw (nobody waits forever).
/// Collective over `comm`; placement.ranks() must equal comm.size().
template <comm::host_communicator C>
dispatch_handle make_dispatch_handle(host_executor const& exec, C& comm, expert_placement const& placement,
                                     matrix_view<std::int32_t const> ids) {
  constexpr char const* where = "fp8moe::moe::make_dispatch_handle";
  int const R = comm.size(), me = comm.rank();
  std::string local;
  try {
    require(placement.ranks() == R, where, "placement", "ranks() == comm.size() = " + std::to_string(R),
            std::to_string(placement.ranks()));
    detail::check_ids(ids, placement, where);
    require(ids.rows <= std::numeric_limits<std::int32_t>::max() / std::max<std::int64_t>(1, R), where, "ids",
            "T * ranks within int32");
  } catch (fp8moe::error const& e) {
    local = e.what();
  }
  dispatch_handle h;
  h.rank = me;
  h.ranks = R;
  if (local.empty()) {
    h.tokens = ids.rows;
    h.k = ids.cols;
    h.local_experts = placement.local_experts(me);
    compute_dispatch_layout(exec, ids, placement, h.layout);
    h.send_tokens = h.layout.tokens_per_rank;
    h.send_slots = h.layout.slots_per_rank;
  } else {
    h.send_tokens.assign(static_cast<std::size_t>(R), 0);
    h.send_slots.assign(static_cast<std::size_t>(R), 0);
  }
  // (rows, slots, ok) to every rank; the ok flags make a local error everybody's error
  std::vector<std::int64_t> out(static_cast<std::size_t>(3 * R)), in(static_cast<std::size_t>(3 * R));
  for (int r = 0; r < R; ++r) {
    out[3 * r] = h.send_tokens[static_cast<std::size_t>(r)];
    out[3 * r + 1] = h.send_slots[static_cast<std::size_t>(r)];
    out[3 * r + 2] = local.empty() ? 1 : 0;
  }
  comm.alltoall(std::span<std::int64_t const>(out), std::span<std::int64_t>(in), comm::size_check::trusted);
  if (!local.empty()) throw fp8moe::error(errc::invalid_argument, local);
  for (int r = 0; r < R; ++r)
    if (in[3 * r + 2] == 0)
      comm::detail::throw_comm(
          detail::concat(where, ": rank ", r, " passed invalid arguments (see its message)"));
  h.recv_tokens.resize(static_cast<std::size_t>(R));
  h.recv_slots.resize(static_cast<std::size_t>(R));
  std::int64_t N = 0;
  for (int r = 0; r < R; ++r) {
    h.recv_tokens[static_cast<std::size_t>(r)] = in[3 * r];
    h.recv_slots[static_cast<std::size_t>(r)] = in[3 * r + 1];
    N += in[3 * r];
  }
  // send order: rank-major, tokens ascending; returned slots: rank-major, (token, slot) ascending
  std::int64_t const T = h.tokens, k = h.k;
  std::vector<std::int64_t> row_off(static_cast<std::size_t>(R) + 1, 0),
      slot_off(static_cast<std::size_t>(R) + 1, 0);
  for (int r = 0; r < R; ++r) {
    row_off[r + 1] = row_off[r] + h.send_tokens[static_cast<std::size_t>(r)];
    slot_off[r + 1] = slot_off[r] + h.send_slots[static_cast<std::size_t>(r)];
  }
  h.send_token.resize(static_cast<std::size_t>(row_off[R]));
  h.token_rank_row.assign(static_cast<std::size_t>(T * R), -1);
  h.slot_row.assign(static_cast<std::size_t>(T * k), -1);
  for (std::int64_t t = 0; t < T; ++t) {
    for (int r = 0; r < R; ++r)
      if (h.layout.is_token_in_rank(t, r)) {
        auto const row = row_off[r]++;
        h.send_token[static_cast<std::size_t>(row)] = static_cast<std::int32_t>(t);
        h.token_rank_row[static_cast<std::size_t>(t * R + r)] = static_cast<std::int32_t>(row);
      }
    for (std::int64_t j = 0; j < k; ++j) {
      std::int32_t const e = ids(t, j);
      if (e >= 0)
        h.slot_row[static_cast<std::size_t>(t * k + j)] =
            static_cast<std::int32_t>(slot_off[placement.rank_of(e)]++);
    }
  }
  h.recv_src_rank.resize(static_cast<std::size_t>(N));
  std::int64_t at = 0;
  for (int r = 0; r < R; ++r)
    for (std::int64_t i = 0; i < h.recv_tokens[static_cast<std::size_t>(r)]; ++i)
      h.recv_src_rank[static_cast<std::size_t>(at++)] = r;
  h.recv_src_token.assign(static_cast<std::size_t>(N), -1);
  h.tokens_per_local_expert.assign(static_cast<std::size_t>(h.local_experts), 0);
  return h;
}

/// The cached dispatch (also combine's backward): row i of recv (N,C) = row send_token[i'] of x
/// (T,C) on its source rank. Any transferable element type; recv may be strided (then unpacked).
template <comm::host_communicator C, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T> ep_pending<typename C::request>
dispatch_rows_start(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<S> x,
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
  auto* sbuf = p.scratch(static_cast<std::size_t>(S_ * Cn) * sizeof(T));
  detail::gather_rows(exec, matrix_view<T const>(x), h.send_token.data(), S_, reinterpret_cast<T*>(sbuf));
  auto const sc = detail::scaled(h.send_tokens, Cn), rc = detail::scaled(h.recv_tokens, Cn);
  std::span<T> dst;
  bool const direct = detail::is_packed(recv);
  if (direct) {
    dst = {recv.data, static_cast<std::size_t>(N * Cn)};
  } else {
    auto* rbuf = p.scratch(static_cast<std::size_t>(N * Cn) * sizeof(T));
    dst = detail::as_span<T>(rbuf, static_cast<std::size_t>(N * Cn));
    p.on_complete(
        [exec, src = dst.data(), recv] { detail::scatter_packed(exec, static_cast<T const*>(src), recv); });
  }
  p.add(comm.ialltoallv(
      std::span<T const>(reinterpret_cast<T const*>(sbuf), static_cast<std::size_t>(S_ * Cn)),
      std::span<std::int64_t const>(sc), dst, std::span<std::int64_t const>(rc), comm::size_check::trusted));
  return p;
}

template <comm::host_communicator C, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T>
void dispatch_rows(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<S> x,
                   matrix_view<T> recv) {
  dispatch_rows_start(exec, comm, h, x, recv).wait();
}

/// Routing metadata: recv_weights (N,k) = the source's weights (FP32, all k slots), recv_ids (N,k)
/// = local expert id on this rank or -1; also fills h.recv_src_token and h.tokens_per_local_expert.
template <comm::host_communicator C>
ep_pending<typename C::request> dispatch_routing_start(host_executor const& exec, C& comm, dispatch_handle& h,
                                                       expert_placement const& placement,
                                                       matrix_view<std::int32_t const> ids,
                                                       matrix_view<float const> weights,
                                                       matrix_view<std::int32_t> recv_ids,
                                                       matrix_view<float> recv_weights) {
  constexpr char const* where = "fp8moe::moe::dispatch_routing";
  check_shape(ids, h.tokens, h.k, where, "ids");
  check_matrix(weights, where, "weights");
  check_shape(weights, h.tokens, h.k, where, "weights");
  check_shape(recv_ids, h.num_recv(), h.k, where, "recv_ids");
  check_shape(recv_weights, h.num_recv(), h.k, where, "recv_weights");
  require(placement.ranks() == h.ranks, where, "placement", "the placement of the handle");
  std::int64_t const S_ = h.num_send(), N = h.num_recv(), k = h.k;
  ep_pending<typename C::request> p;
  // ids localized per destination, plus the source token index in the last column
  auto* sbuf = p.scratch(static_cast<std::size_t>(S_ * (k + 1)) * sizeof(std::int32_t));
  auto* sid = reinterpret_cast<std::int32_t*>(sbuf);
  std::int64_t row = 0;
  for (int r = 0; r < h.ranks; ++r)
    for (std::int64_t i = 0; i < h.send_tokens[static_cast<std::size_t>(r)]; ++i, ++row) {
      std::int32_t const t = h.send_token[static_cast<std::size_t>(row)];
      for (std::int64_t j = 0; j < k; ++j) {
        std::int32_t const e = ids(t, j);
        sid[row * (k + 1) + j] = (e >= 0 && placement.rank_of(e) == r) ? placement.local_of(e) : -1;
      }
      sid[row * (k + 1) + k] = t;
    }
  auto* rbuf = p.scratch(static_cast<std::size_t>(N * (k + 1)) * sizeof(std::int32_t));
  auto const sc = detail::scaled(h.send_tokens, k + 1), rc = detail::scaled(h.recv_tokens, k + 1);
  p.add(comm.ialltoallv(std::span<std::int32_t const>(sid, static_cast<std::size_t>(S_ * (k + 1))),
                        std::span<std::int64_t const>(sc),
                        detail::as_span<std::int32_t>(rbuf, static_cast<std::size_t>(N * (k + 1))),
                        std::span<std::int64_t const>(rc), comm::size_check::trusted));
  auto wp = dispatch_rows_start(exec, comm, h, weights, recv_weights);
  auto* hp = &h;
  auto* rid = reinterpret_cast<std::int32_t const*>(rbuf);
  // the weights' transfer completes inside this pending object too
  auto inner = std::make_shared<ep_pending<typename C::request>>(std::move(wp));
  p.on_complete([inner, hp, rid, recv_ids, N, k] {
    inner->wait();
    std::fill(hp->tokens_per_local_expert.begin(), hp->tokens_per_local_expert.end(), 0);
    for (std::int64_t i = 0; i < N; ++i) {
      for (std::int64_t j = 0; j < k; ++j) {
        std::int32_t const l = rid[i * (k + 1) + j];
        recv_ids(i, j) = l;
        if (l >= 0) ++hp->tokens_per_local_expert[static_cast<std::size_t>(l)];
      }
      hp->recv_src_token[static_cast<std::size_t>(i)] = rid[i * (k + 1) + k];
    }
  });
  return p;
}

/// Owning result of the allocating dispatch.
template <class T>
struct dispatch_result {
  dispatch_handle handle;
  host_matrix<T> x;               // (N,H) received rows, (source rank, source token) order
  host_matrix<float> scales;      // (N,H/128) per-row scales (FP8 payloads; empty otherwise)
  host_matrix<float> weights;     // (N,k) FP32 routing weights of all k slots
  host_matrix<std::int32_t> ids;  // (N,k) local expert ids, -1 for experts on other ranks
};

/// A started allocating dispatch; wait() returns the result.
template <class Request, class T>
class pending_dispatch {
 public:
  pending_dispatch(std::unique_ptr<dispatch_result<T>> r, std::vector<ep_pending<Request>> parts)
      : result_(std::move(r)), parts_(std::move(parts)) {}
  bool test() {
    for (auto& p : parts_)
      if (!p.test()) return false;
    return true;
  }
  dispatch_result<T> wait() {
    for (auto& p : parts_) p.wait();
    parts_.clear();
    return std::move(*result_);
  }

 private:
  std::unique_ptr<dispatch_result<T>> result_;  // stable address while transfers are in flight
  std::vector<ep_pending<Request>> parts_;
};

namespace detail {
template <class C, class S, class T>
pending_dispatch<typename C::request, T> dispatch_start_impl(
    host_executor const& exec, C& comm, expert_placement const& placement, matrix_view<S> x,
    matrix_view<float const> scales, matrix_view<std::int32_t const> ids, matrix_view<float const> weights) {
  auto res = std::make_unique<dispatch_result<T>>();
  res->handle = make_dispatch_handle(exec, comm, placement, ids);
  auto const N = res->handle.num_recv(), k = res->handle.k;
  res->x = host_matrix<T>(N, x.cols);
  res->weights = host_matrix<float>(N, k);
  res->ids = host_matrix<std::int32_t>(N, k);
  std::vector<ep_pending<typename C::request>> parts;
  parts.push_back(dispatch_rows_start(exec, comm, res->handle, x, res->x.view()));
  if (scales.data != nullptr || scales.cols > 0) {
    res->scales = host_matrix<float>(N, scales.cols);
    parts.push_back(dispatch_rows_start(exec, comm, res->handle, scales, res->scales.view()));
  }
  parts.push_back(dispatch_routing_start(exec, comm, res->handle, placement, ids, weights, res->ids.view(),
                                         res->weights.view()));
  return {std::move(res), std::move(parts)};
}
}  // namespace detail

/// Dispatch BF16 / FP32 (any transferable) rows x (T,H) with ids (T,k) and weights (T,k).
/// Collective. The handle in the result serves combine and both backwards.
template <comm::host_communicator C, class S, class T = std::remove_const_t<S>>
pending_dispatch<typename C::request, T> dispatch_start(host_executor const& exec, C& comm,
                                                        expert_placement const& placement, matrix_view<S> x,
                                                        matrix_view<std::int32_t const> ids,
                                                        matrix_view<float const> weights) {
  return detail::dispatch_start_impl<C, S, T>(exec, comm, placement, x, matrix_view<float const>{}, ids,
                                              weights);
}

/// Dispatch FP8 rows with their per-row (1 x 128) scales.
template <comm::host_communicator C, class FS, class F = std::remove_const_t<FS>>
pending_dispatch<typename C::request, F> dispatch_start(host_executor const& exec, C& comm,
                                                        expert_placement const& placement,
                                                        scaling::quantized_matrix_view<FS> x,
                                                        matrix_view<std::int32_t const> ids,
                                                        matrix_view<float const> weights) {
  scaling::quantized_matrix_view<F const> const xc = x;
  require(xc.tile_rows() == 1, detail::dispatch_where, "x.tile", "per-row (1 x n) scale tiles");
  check_shape(xc.scales, xc.rows(), scaling::scale_cols(xc.tile, xc.cols()), detail::dispatch_where,
              "x.scales");
  return detail::dispatch_start_impl<C, F const, F>(exec, comm, placement, xc.data, xc.scales, ids, weights);
}

template <comm::host_communicator C, class X>
auto dispatch(host_executor const& exec, C& comm, expert_placement const& placement, X x,
              matrix_view<std::int32_t const> ids, matrix_view<float const> weights) {
  return dispatch_start(exec, comm, placement, x, ids, weights).wait();
}

// ------------------------------------------------------------------------------------------------
// Combine

namespace detail {
/// A permute_plan view whose slot_row is `table` (T, width): lets moe::combine reduce received
/// rows in the table's column order (ranks ascending, or slots ascending).
inline permute_plan table_plan(std::int64_t T, std::int64_t width, std::int64_t rows,
                               std::int32_t const* table) {
  permute_plan p;
  p.tokens = T;
  p.k = width;
  p.experts = 1;
  p.rows = rows;
  static std::int32_t empty_table = -1;  // stands in for the (0 x width) table of a rank without tokens
  p.slot_row = table ? const_cast<std::int32_t*>(table) : &empty_table;  // read only by moe::combine
  return p;
}
}  // namespace detail

/// Combine (dispatch's adjoint): partial (N,C) rows go back to their source; out (T,C) token t =
/// sum over the ranks it was sent to, ranks ascending, in FP32; Out float or bfloat16_t. Tokens
/// sent nowhere get 0. Typical partial = moe::combine of the local experts' weighted outputs.
template <comm::host_communicator C, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>> ep_pending<typename C::request> combine_start(
    host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<Y> partial,
    matrix_view<Out> out) {
  using YT = std::remove_const_t<Y>;
  check_matrix(partial, detail::combine_where, "partial");
  require(partial.rows == h.num_recv(), detail::combine_where, "partial",
          std::to_string(h.num_recv()) + " rows (N of the handle)", std::to_string(partial.rows));
  check_matrix(out, detail::combine_where, "out");
  check_shape(out, h.tokens, partial.cols, detail::combine_where, "out");
  require(comm.size() == h.ranks && comm.rank() == h.rank, detail::combine_where, "comm",
          "the communicator of the handle");
  std::int64_t const Cn = partial.cols, N = h.num_recv(), S_ = h.num_send();
  ep_pending<typename C::request> p;
  YT const* src = partial.data;
  if (!detail::is_packed(partial)) {
    auto* pbuf = p.scratch(static_cast<std::size_t>(N * Cn) * sizeof(YT));
    std::vector<std::int32_t> iota(static_cast<std::size_t>(N));
    for (std::int64_t i = 0; i < N; ++i) iota[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    detail::gather_rows(exec, matrix_view<YT const>(partial), iota.data(), N, reinterpret_cast<YT*>(pbuf));
    src = reinterpret_cast<YT const*>(pbuf);
  }
  auto* rbuf = p.scratch(static_cast<std::size_t>(S_ * Cn) * sizeof(YT));
  auto const sc = detail::scaled(h.recv_tokens, Cn), rc = detail::scaled(h.send_tokens, Cn);
  p.add(comm.ialltoallv(std::span<YT const>(src, static_cast<std::size_t>(N * Cn)),
                        std::span<std::int64_t const>(sc),
                        detail::as_span<YT>(rbuf, static_cast<std::size_t>(S_ * Cn)),
                        std::span<std::int64_t const>(rc), comm::size_check::trusted));
  auto const* rows = reinterpret_cast<YT const*>(rbuf);
  p.on_complete([exec, &h, rows, S_, Cn, out] {
    combine(exec, detail::table_plan(h.tokens, h.ranks, S_, h.token_rank_row.data()),
            make_matrix(rows, S_, Cn), matrix_view<float const>{}, out);
  });
  return p;
}

template <comm::host_communicator C, class Y, class Out>
void combine(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<Y> partial,
             matrix_view<Out> out) {
  combine_start(exec, comm, h, partial, out).wait();
}

/// Slot-exact combine: every (received row, local slot) output y(local_plan.slot_row[i,j]) (M,C)
/// goes back to the source, which computes out (T,C) token t = sum_j weights(t,j) * y_tj, j
/// ascending, in FP32 with moe::combine: bit-identical to the single-rank MoE for any rank count.
/// weights (T,k) empty = unweighted (dispatch's slot-exact backward). Costs one row per slot.
template <comm::host_communicator C, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>> ep_pending<typename C::request> combine_slots_start(
    host_executor const& exec, C& comm, dispatch_handle const& h, permute_plan const& local_plan,
    matrix_view<Y> y, matrix_view<float const> weights, matrix_view<Out> out) {
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
  // rows to return, per source rank: (received row, slot) ascending
  std::vector<std::int32_t> order;
  order.reserve(static_cast<std::size_t>(local_plan.tokens * k));
  std::int64_t i = 0;
  for (int r = 0; r < h.ranks; ++r) {
    std::int64_t n = 0;
    for (std::int64_t c = 0; c < h.recv_tokens[static_cast<std::size_t>(r)]; ++c, ++i)
      for (std::int64_t j = 0; j < k; ++j) {
        std::int32_t const row = local_plan.slot_row[i * k + j];
        require(row >= -1 && row < y.rows, where, "local_plan.slot_row", "rows of y");
        if (row >= 0) {
          order.push_back(row);
          ++n;
        }
      }
    require(n == h.recv_slots[static_cast<std::size_t>(r)], where, "local_plan",
            detail::concat(h.recv_slots[static_cast<std::size_t>(r)], " routed slots from rank ", r,
                           " (the dispatched ids)"),
            std::to_string(n));
  }
  std::int64_t const Sl = static_cast<std::int64_t>(order.size());
  std::int64_t Rl = 0;
  for (auto v : h.send_slots) Rl += v;
  ep_pending<typename C::request> p;
  auto* sbuf = p.scratch(static_cast<std::size_t>(Sl * Cn) * sizeof(YT));
  detail::gather_rows(exec, matrix_view<YT const>(y), order.data(), Sl, reinterpret_cast<YT*>(sbuf));
  auto* rbuf = p.scratch(static_cast<std::size_t>(Rl * Cn) * sizeof(YT));
  auto const sc = detail::scaled(h.recv_slots, Cn), rc = detail::scaled(h.send_slots, Cn);
  p.add(comm.ialltoallv(
      std::span<YT const>(reinterpret_cast<YT const*>(sbuf), static_cast<std::size_t>(Sl * Cn)),
      std::span<std::int64_t const>(sc), detail::as_span<YT>(rbuf, static_cast<std::size_t>(Rl * Cn)),
      std::span<std::int64_t const>(rc), comm::size_check::trusted));
  auto const* rows = reinterpret_cast<YT const*>(rbuf);
  p.on_complete([exec, &h, rows, Rl, Cn, weights, out] {
    combine(exec, detail::table_plan(h.tokens, h.k, Rl, h.slot_row.data()), make_matrix(rows, Rl, Cn),
            weights, out);
  });
  return p;
}

template <comm::host_communicator C, class Y, class Out>
void combine_slots(host_executor const& exec, C& comm, dispatch_handle const& h,
                   permute_plan const& local_plan, matrix_view<Y> y, matrix_view<float const> weights,
                   matrix_view<Out> out) {
  combine_slots_start(exec, comm, h, local_plan, y, weights, out).wait();
}

// ------------------------------------------------------------------------------------------------
// Backward: dispatch's backward is a combine, combine's backward is a (cached) dispatch.

/// dx (T,H) = sum over ranks of d_recv_x (N,H); dweights (T,k) = sum over ranks of d_recv_weights
/// (N,k) (each slot is non-zero on its expert's rank only, so this sum is exact). Either pair may
/// be empty (rows == 0 and cols == 0) to skip it.
template <comm::host_communicator C, class G, class DX>
void dispatch_backward(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<G> d_recv_x,
                       matrix_view<float const> d_recv_weights, matrix_view<DX> dx,
                       matrix_view<float> dweights) {
  bool const do_x = !(d_recv_x.rows == 0 && d_recv_x.cols == 0 && dx.rows == 0 && dx.cols == 0);
  bool const do_w =
      !(d_recv_weights.rows == 0 && d_recv_weights.cols == 0 && dweights.rows == 0 && dweights.cols == 0);
  std::vector<ep_pending<typename C::request>> parts;
  if (do_x) parts.push_back(combine_start(exec, comm, h, d_recv_x, dx));
  if (do_w) parts.push_back(combine_start(exec, comm, h, d_recv_weights, dweights));
  for (auto& p : parts) p.wait();
}

/// Slot-exact backward of dispatch: d_permuted (M,H) rows (gradient of the permuted expert inputs)
/// return per slot and dx (T,H) = sum_j in slot order (bit-identical to moe::permute_backward).
template <comm::host_communicator C, class G, class DX>
void dispatch_backward_slots(host_executor const& exec, C& comm, dispatch_handle const& h,
                             permute_plan const& local_plan, matrix_view<G> d_permuted, matrix_view<DX> dx) {
  combine_slots(exec, comm, h, local_plan, d_permuted, matrix_view<float const>{}, dx);
}

/// Backward of combine (either form): dout (T,H) travels like the forward dispatch (cached
/// handle); d_partial (N,H) row i = dout of its source token.
template <comm::host_communicator C, class G, class D>
void combine_backward(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<G> dout,
                      matrix_view<D> d_partial) {
  dispatch_rows(exec, comm, h, dout, d_partial);
}

}  // namespace fp8moe::moe
