// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel dispatch / combine over any host communicator (single, MPI), DeepEP semantics:
// each token travels once per destination rank (FP8 + 1x128 scales, BF16 or FP32) with its FP32
// weights and ids localized (-1 = expert elsewhere); receive order (source rank, source token).
// Combine sums in a fixed order in FP32 (ranks ascending, or slots ascending = bit-identical to the
// single-rank moe::combine). Outputs overwritten; X_start(...) returns a pending op to wait() on.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/ep_layout.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/scaling/quantized.hpp"

namespace fp8moe::moe {

/// Host scratch buffers reused across calls (uninitialized, grown on demand, never shrunk), so
/// repeated dispatch / combine with one handle allocate nothing after the first call. A buffer is
/// leased by one in-flight operation at a time. Thread-safe: acquire and release lock the pool's
/// mutex (handles made on one thread share its pool, and may be used from others, e.g. threads as
/// ranks); a lease's memory belongs to its holder alone until released.
class buffer_pool {
  struct slot {
    std::unique_ptr<std::byte[]> data;
    std::size_t capacity = 0;
    bool busy = false;
  };

 public:
  /// Returns a released buffer to the pool when destroyed.
  class lease {
   public:
    lease() = default;
    lease(lease&& o) noexcept
        : pool_(std::exchange(o.pool_, nullptr)), index_(o.index_), data_(std::exchange(o.data_, nullptr)) {}
    lease& operator=(lease&& o) noexcept {
      if (this != &o) {
        release();
        pool_ = std::exchange(o.pool_, nullptr);
        index_ = o.index_;
        data_ = std::exchange(o.data_, nullptr);
      }
      return *this;
    }
    ~lease() { release(); }
    /// The leased memory; stable while leased (a busy slot is never grown), read without the lock.
    std::byte* data() const { return data_; }

   private:
    friend class buffer_pool;
    lease(std::shared_ptr<buffer_pool> p, std::size_t i, std::byte* d)
        : pool_(std::move(p)), index_(i), data_(d) {}
    void release() {
      if (pool_) {
        std::lock_guard<std::mutex> lock(pool_->mutex_);
        pool_->slots_[index_].busy = false;
      }
      pool_ = nullptr;
      data_ = nullptr;
    }
    std::shared_ptr<buffer_pool> pool_;
    std::size_t index_ = 0;
    std::byte* data_ = nullptr;
  };

  /// A buffer of at least `bytes` (contents unspecified).
  static lease acquire(std::shared_ptr<buffer_pool> const& pool, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(pool->mutex_);
    auto& s = pool->slots_;
    std::size_t fit = s.size(), grow = s.size();  // smallest free buffer that fits; else largest free
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i].busy) continue;
      if (s[i].capacity >= bytes && (fit == s.size() || s[i].capacity < s[fit].capacity)) fit = i;
      if (grow == s.size() || s[i].capacity > s[grow].capacity) grow = i;
    }
    std::size_t const best = fit != s.size() ? fit : grow;
    if (best == s.size()) s.emplace_back();
    auto& b = s[best];
    if (b.capacity < bytes) {
      b.data.reset(new std::byte[std::max<std::size_t>(bytes, 64)]);  // default-initialized: no zeroing pass
      b.capacity = std::max<std::size_t>(bytes, 64);
    }
    b.busy = true;
    return lease(pool, best, b.data.get());
  }
  std::size_t buffers() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return slots_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<slot> slots_;
};

/// What dispatch saved for combine and for both backwards (DeepEP's handle). S = rows this rank
/// sends (one per (token, destination rank)), N = rows it receives. Host memory, owned.
struct dispatch_handle {
  int rank = 0, ranks = 1;
  std::int64_t tokens = 0;  ///< T on this rank
  std::int64_t k = 0;
  int local_experts = 0;                     ///< E_local of this rank
  std::vector<std::int64_t> send_tokens;     // (R) rows sent to each rank
  std::vector<std::int64_t> recv_tokens;     // (R) rows received from each rank
  std::vector<std::int64_t> send_slots;      // (R) slot rows each rank returns here (combine_slots)
  std::vector<std::int64_t> recv_slots;      // (R) local slots among the rows received from each rank
  std::vector<std::int32_t> send_token;      // (S) source token of each sent row, rank-major
  std::vector<std::int32_t> token_rank_row;  // (T,R) sent row of token t for rank r, or -1
  std::vector<std::int32_t> slot_row;        // (T,k) returned slot row of (t, j), or -1
  std::vector<std::int32_t> recv_src_rank;   // (N) source rank of each received row
  std::vector<std::int32_t> recv_src_token;  // (N) its token index on the source rank
  std::vector<std::int64_t> tokens_per_local_expert;  // (E_local) received (row, slot) pairs per local expert
  dispatch_layout layout;                             // this rank's send layout
  /// Scratch reused by every op on this handle; by default shared by all handles of this thread
  /// (it keeps its largest buffers until the thread exits). Replace it to isolate a handle.
  std::shared_ptr<buffer_pool> pool = thread_pool();
  /// With a row_gather_communicator (MPI), let it read rows where they lie (indexed datatypes, no
  /// pack pass) when each destination's rows are contiguous (detail::rows_contiguous; e.g. the
  /// combine's partial rows); scattered rows are packed first, which measured steadier on Open MPI
  /// (docs/expert_parallel.md §4). Set to false to always pack.
  bool gather_rows_in_place = true;

  static std::shared_ptr<buffer_pool> const& thread_pool() {
    static thread_local std::shared_ptr<buffer_pool> const p = std::make_shared<buffer_pool>();
    return p;
  }

  std::int64_t num_send() const { return static_cast<std::int64_t>(send_token.size()); }
  std::int64_t num_recv() const { return static_cast<std::int64_t>(recv_src_rank.size()); }
};

/// A started expert-parallel operation: wait() completes the communication, then the local
/// finishing step (unpack / reduction). Holds its scratch leases until then. The handle and the
/// views passed to the start call must stay valid until wait() returns.
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
    for (auto& q : parts_)
      if (!q.test()) return false;
    return true;
  }
  void wait() {
    for (auto& r : requests_) r.wait();
    requests_.clear();
    for (auto& q : parts_) q.wait();
    parts_.clear();
    if (finish_) std::exchange(finish_, nullptr)();
    leases_.clear();
  }

  // assembly, used by the entry points below
  void add(Request&& r) { requests_.push_back(std::move(r)); }
  void add(ep_pending&& q) { parts_.push_back(std::move(q)); }
  std::byte* scratch(dispatch_handle const& h, std::size_t bytes) {
    leases_.push_back(buffer_pool::acquire(h.pool, bytes));
    return leases_.back().data();
  }
  void on_complete(std::function<void()> f) { finish_ = std::move(f); }

 private:
  std::vector<buffer_pool::lease> leases_;  // first: released last, after the requests have waited
  std::vector<Request> requests_;
  std::vector<ep_pending> parts_;
  std::function<void()> finish_;
};

namespace detail {

inline constexpr char const* dispatch_where = "fp8moe::moe::dispatch";
inline constexpr char const* combine_where = "fp8moe::moe::combine";

template <class T>
bool is_packed(matrix_view<T> const& m) {
  return m.col_stride == 1 && (m.rows <= 1 || m.row_stride == m.cols);
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

/// Whether a row_gather_communicator should read rows in place: only when every destination's rows
/// are one run of adjacent rows (dense: rows are adjacent in memory when their indices are), e.g.
/// the combine's partial rows. Open MPI 4.1 moves a non-contiguous send through a pipelined
/// copy-in / copy-out protocol: in our measurements (docs/expert_parallel.md §4) transfers of
/// scattered rows, and even of three long runs per destination, fell to 0.2-0.45x of raw in some
/// runs, while contiguous blocks moved as fast as raw and packing first was steadier.
inline bool rows_contiguous(std::span<std::int32_t const> index, std::vector<std::int64_t> const& counts,
                            std::vector<std::int64_t> const& displs, bool dense) {
  for (std::size_t r = 0; r < counts.size(); ++r)
    for (std::int64_t j = displs[r] + 1; j < displs[r] + counts[r]; ++j)
      if (!dense || index[static_cast<std::size_t>(j)] != index[static_cast<std::size_t>(j - 1)] + 1)
        return false;
  return true;
}

/// One all-to-all-v of packed rows, posted into `p` (non-blocking even for the plain calls, which
/// wait at once: MPI_Ialltoallv + wait measured faster than MPI_Alltoallv in bench/mpi_dispatch.cpp). Counts
/// were exchanged when the handle was built, so the transfer itself trusts them.
template <class C, class T>
void transfer(C& comm, ep_pending<typename C::request>& p, T const* send,
              std::vector<std::int64_t> const& send_rows, T* recv, std::vector<std::int64_t> const& recv_rows,
              std::int64_t cols) {
  auto const sc = scaled(send_rows, cols), rc = scaled(recv_rows, cols);
  std::int64_t ns = 0, nr = 0;
  for (auto v : sc) ns += v;
  for (auto v : rc) nr += v;
  std::span<T const> s(send, static_cast<std::size_t>(ns));
  std::span<T> r(recv, static_cast<std::size_t>(nr));
  p.add(comm.ialltoallv(s, std::span<std::int64_t const>(sc), r, std::span<std::int64_t const>(rc),
                        comm::size_check::trusted));
}

/// All-to-all-v with explicit element counts / displacements, posted into `p`.
template <class C, class T>
void transfer_blocks(C& comm, ep_pending<typename C::request>& p, std::span<T const> send,
                     std::vector<std::int64_t> const& sc, std::vector<std::int64_t> const& sd,
                     std::span<T> recv, std::vector<std::int64_t> const& rc,
                     std::vector<std::int64_t> const& rd) {
  comm::blocks const sb{std::span<std::int64_t const>(sc), std::span<std::int64_t const>(sd)};
  comm::blocks const rb{std::span<std::int64_t const>(rc), std::span<std::int64_t const>(rd)};
  p.add(comm.ialltoallv(send, sb, recv, rb, comm::size_check::trusted));
}

}  // namespace detail

namespace detail {
/// make_dispatch_handle with host-resident ids and the (rows, slots, ok) all-to-all supplied by
/// the caller (the device path stages it through device memory).
template <class Exchange>
dispatch_handle build_handle(host_executor const& exec, int R, int me, expert_placement const& placement,
                             matrix_view<std::int32_t const> ids, std::string local, Exchange&& exchange) {
  constexpr char const* where = "fp8moe::moe::make_dispatch_handle";
  if (local.empty()) try {
      require(placement.ranks() == R, where, "placement", "ranks() == comm.size() = " + std::to_string(R),
              std::to_string(placement.ranks()));
      detail::check_ids(ids, placement, where);
      require(ids.rows * std::max<std::int64_t>({1, R, ids.cols}) <= std::numeric_limits<std::int32_t>::max(),
              where, "ids", "T * ranks and T * k within int32 (row indices of the handle)");
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
  exchange(std::span<std::int64_t const>(out), std::span<std::int64_t>(in));
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
}  // namespace detail

/// Builds the handle: the layout of ids (T,k) under `placement`, the send order, and one small
/// all-to-all of (rows, slots, ok) per rank pair, so every receive size is known before any
/// payload moves. Argument errors on any rank make every rank throw (nobody waits forever).
/// Collective over `comm`; placement.ranks() must equal comm.size(). `local` = an argument error the
/// caller found (shared with the other ranks the same way, then thrown).
template <comm::host_communicator C>
dispatch_handle make_dispatch_handle(host_executor const& exec, C& comm, expert_placement const& placement,
                                     matrix_view<std::int32_t const> ids, std::string local = {}) {
  return detail::build_handle(exec, comm.size(), comm.rank(), placement, ids, std::move(local),
                              [&comm](std::span<std::int64_t const> out, std::span<std::int64_t> in) {
                                comm.alltoall(out, in, comm::size_check::trusted);
                              });
}

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
}  // namespace detail

namespace detail {

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

}  // namespace detail

/// The cached dispatch (also combine's backward): recv (N,C) row i = x (T,C) row send_token[.] of
/// its source rank. Any transferable element type; recv may be strided (then unpacked at wait()).
template <comm::host_communicator C, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T> ep_pending<typename C::request>
dispatch_rows_start(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<S> x,
                    matrix_view<T> recv) {
  return detail::dispatch_rows_impl(exec, comm, h, x, recv);
}
template <comm::host_communicator C, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T>
void dispatch_rows(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<S> x,
                   matrix_view<T> recv) {
  detail::dispatch_rows_impl(exec, comm, h, x, recv).wait();
}

/// Routing metadata: recv_weights (N,k) = the source's FP32 weights (all k slots), recv_ids (N,k)
/// = local expert id on this rank or -1; also fills h.recv_src_token and h.tokens_per_local_expert.
template <comm::host_communicator C>
ep_pending<typename C::request> dispatch_routing_start(host_executor const& exec, C& comm, dispatch_handle& h,
                                                       expert_placement const& placement,
                                                       matrix_view<std::int32_t const> ids,
                                                       matrix_view<float const> weights,
                                                       matrix_view<std::int32_t> recv_ids,
                                                       matrix_view<float> recv_weights) {
  return detail::dispatch_meta_impl(exec, comm, h, placement, ids, weights, recv_ids, recv_weights);
}

/// Caller-owned receive buffers of the forward dispatch, each with h.num_recv() rows.
template <class T>
struct dispatch_outputs {
  matrix_view<T> x;               // (N,H)
  matrix_view<float> scales;      // (N,S) FP8 payloads, else empty
  matrix_view<std::int32_t> ids;  // (N,k) local expert ids or -1
  matrix_view<float> weights;     // (N,k)
};

/// The forward dispatch into caller-owned buffers (the hot path: nothing but the handle's reused
/// scratch is allocated): x (T,H) [+ scales (T,S), empty for BF16/FP32], ids (T,k), weights (T,k).
template <comm::host_communicator C, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T> ep_pending<typename C::request>
dispatch_into_start(host_executor const& exec, C& comm, dispatch_handle& h, expert_placement const& placement,
                    matrix_view<S> x, matrix_view<float const> scales, matrix_view<std::int32_t const> ids,
                    matrix_view<float const> weights, dispatch_outputs<T> out) {
  return detail::dispatch_forward_impl(exec, comm, h, placement, x, scales, ids, weights, out.x, out.scales,
                                       out.ids, out.weights);
}
template <comm::host_communicator C, class S, class T>
requires std::same_as<std::remove_const_t<S>, T> && comm::transferable<T>
void dispatch_into(host_executor const& exec, C& comm, dispatch_handle& h, expert_placement const& placement,
                   matrix_view<S> x, matrix_view<float const> scales, matrix_view<std::int32_t const> ids,
                   matrix_view<float const> weights, dispatch_outputs<T> out) {
  detail::dispatch_forward_impl(exec, comm, h, placement, x, scales, ids, weights, out.x, out.scales, out.ids,
                                out.weights)
      .wait();
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

/// The received routing as a single-rank route_result over this rank's E_local experts (ids with
/// -1 for other ranks' experts, all k weights, counts per local expert), so moe::permute can lay
/// the received rows out for the grouped GEMM. Copies ids and weights (convenience).
template <class T>
route_result local_route(dispatch_result<T> const& d) {
  route_result r{d.ids, d.weights,
                 std::vector<std::int32_t>(static_cast<std::size_t>(d.handle.local_experts))};
  for (int l = 0; l < d.handle.local_experts; ++l)
    r.counts[static_cast<std::size_t>(l)] =
        static_cast<std::int32_t>(d.handle.tokens_per_local_expert[static_cast<std::size_t>(l)]);
  return r;
}

/// A started allocating dispatch; wait() returns the result.
template <class Request, class T>
class pending_dispatch {
 public:
  pending_dispatch(std::unique_ptr<dispatch_result<T>> r, ep_pending<Request> p)
      : result_(std::move(r)), pending_(std::move(p)) {}
  bool test() { return pending_.test(); }
  dispatch_result<T> wait() {
    pending_.wait();
    return std::move(*result_);
  }

 private:
  std::unique_ptr<dispatch_result<T>> result_;  // stable address while transfers are in flight
  ep_pending<Request> pending_;
};

namespace detail {
template <class C, class S, class T>
pending_dispatch<typename C::request, T> dispatch_impl(host_executor const& exec, C& comm,
                                                       expert_placement const& placement, matrix_view<S> x,
                                                       matrix_view<float const> scales,
                                                       matrix_view<std::int32_t const> ids,
                                                       matrix_view<float const> weights) {
  std::string local;  // argument errors travel with the count exchange, so every rank throws
  try {
    check_matrix(x, dispatch_where, "x");
    check_matrix(weights, dispatch_where, "weights");
    require(x.rows == ids.rows && weights.rows == ids.rows && weights.cols == ids.cols &&
                (scales.cols == 0 || scales.rows == ids.rows),
            dispatch_where, "x / scales / weights", "T rows each and weights shaped like ids (T,k)");
  } catch (fp8moe::error const& e) {
    local = e.what();
  }
  auto res = std::make_unique<dispatch_result<T>>();
  res->handle = make_dispatch_handle(exec, comm, placement, ids, local);
  auto const N = res->handle.num_recv(), k = res->handle.k;
  res->x = host_matrix<T>(N, x.cols);
  res->weights = host_matrix<float>(N, k);
  res->ids = host_matrix<std::int32_t>(N, k);
  if (scales.cols > 0) res->scales = host_matrix<float>(N, scales.cols);
  auto p = dispatch_forward_impl(exec, comm, res->handle, placement, x, scales, ids, weights, res->x.view(),
                                 res->scales.view(), res->ids.view(), res->weights.view());
  return {std::move(res), std::move(p)};
}
}  // namespace detail

/// Dispatch BF16 / FP32 (any transferable) rows x (T,H) with ids (T,k) and FP32 weights (T,k).
/// Collective; builds the handle (blocking count exchange), then starts the payload transfers.
template <comm::host_communicator C, class S, class T = std::remove_const_t<S>>
pending_dispatch<typename C::request, T> dispatch_start(host_executor const& exec, C& comm,
                                                        expert_placement const& placement, matrix_view<S> x,
                                                        matrix_view<std::int32_t const> ids,
                                                        matrix_view<float const> weights) {
  return detail::dispatch_impl<C, S, T>(exec, comm, placement, x, {}, ids, weights);
}

/// Dispatch FP8 rows with their per-row (1 x 128) scales; the scales travel with the routing words.
template <comm::host_communicator C, class FS, class F = std::remove_const_t<FS>>
pending_dispatch<typename C::request, F> dispatch_start(host_executor const& exec, C& comm,
                                                        expert_placement const& placement,
                                                        scaling::quantized_matrix_view<FS> x,
                                                        matrix_view<std::int32_t const> ids,
                                                        matrix_view<float const> weights) {
  return detail::dispatch_impl<C, F const, F>(exec, comm, placement, detail::checked_fp8(x).data,
                                              detail::checked_fp8(x).scales, ids, weights);
}

template <comm::host_communicator C, class S>
dispatch_result<std::remove_const_t<S>> dispatch(host_executor const& exec, C& comm,
                                                 expert_placement const& placement, matrix_view<S> x,
                                                 matrix_view<std::int32_t const> ids,
                                                 matrix_view<float const> weights) {
  return detail::dispatch_impl<C, S, std::remove_const_t<S>>(exec, comm, placement, x, {}, ids, weights)
      .wait();
}
template <comm::host_communicator C, class FS>
dispatch_result<std::remove_const_t<FS>> dispatch(host_executor const& exec, C& comm,
                                                  expert_placement const& placement,
                                                  scaling::quantized_matrix_view<FS> x,
                                                  matrix_view<std::int32_t const> ids,
                                                  matrix_view<float const> weights) {
  using F = std::remove_const_t<FS>;
  return detail::dispatch_impl<C, F const, F>(exec, comm, placement, detail::checked_fp8(x).data,
                                              detail::checked_fp8(x).scales, ids, weights)
      .wait();
}

// ------------------------------------------------------------------------------------------------
// Combine

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

/// Combine (dispatch's adjoint): partial (N,C) rows go back to their source; out (T,C) token t =
/// sum over the ranks it was sent to, ranks ascending, in FP32; Out float or bfloat16_t (rounded
/// once). Tokens sent nowhere get 0. Typical partial = moe::combine of the local weighted outputs.
template <comm::host_communicator C, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>> ep_pending<typename C::request> combine_start(
    host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<Y> partial,
    matrix_view<Out> out) {
  return detail::combine_impl(exec, comm, h, partial, out);
}
template <comm::host_communicator C, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>>
void combine(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<Y> partial,
             matrix_view<Out> out) {
  detail::combine_impl(exec, comm, h, partial, out).wait();
}

/// Slot-exact combine: each (received row, local slot) output y(local_plan.slot_row[i,j]) (M,C)
/// goes back to its source, which computes out (T,C) token t = sum_j weights(t,j) * y_tj, j
/// ascending, in FP32 with moe::combine: bit-identical to the single-rank MoE for any rank count.
/// weights (T,k) empty = unweighted (dispatch's slot-exact backward). Moves one row per slot.
template <comm::host_communicator C, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>> ep_pending<typename C::request> combine_slots_start(
    host_executor const& exec, C& comm, dispatch_handle const& h, permute_plan const& local_plan,
    matrix_view<Y> y, matrix_view<float const> weights, matrix_view<Out> out) {
  return detail::combine_slots_impl(exec, comm, h, local_plan, y, weights, out);
}
template <comm::host_communicator C, class Y, class Out>
requires comm::transferable<std::remove_const_t<Y>>
void combine_slots(host_executor const& exec, C& comm, dispatch_handle const& h,
                   permute_plan const& local_plan, matrix_view<Y> y, matrix_view<float const> weights,
                   matrix_view<Out> out) {
  detail::combine_slots_impl(exec, comm, h, local_plan, y, weights, out).wait();
}

// ------------------------------------------------------------------------------------------------
// Backward: dispatch's backward is a combine, combine's backward is a (cached) dispatch.

/// dx (T,H) = sum over ranks of d_recv_x (N,H); dweights (T,k) = sum over ranks of d_recv_weights
/// (N,k) (each slot is non-zero on its expert's rank only, so that sum is exact). Pass empty
/// views for a pair to skip it.
template <comm::host_communicator C, class G, class DX>
void dispatch_backward(host_executor const& exec, C& comm, dispatch_handle const& h, matrix_view<G> d_recv_x,
                       matrix_view<float const> d_recv_weights, matrix_view<DX> dx,
                       matrix_view<float> dweights) {
  bool const do_x = !(d_recv_x.rows == 0 && d_recv_x.cols == 0 && dx.rows == 0 && dx.cols == 0);
  bool const do_w =
      !(d_recv_weights.rows == 0 && d_recv_weights.cols == 0 && dweights.rows == 0 && dweights.cols == 0);
  if (do_x) combine(exec, comm, h, d_recv_x, dx);
  if (do_w) combine(exec, comm, h, d_recv_weights, dweights);
}

/// Slot-exact backward of dispatch: d_permuted (M,H) rows (gradient of the permuted expert inputs)
/// return per slot and dx (T,H) = their sum, slots ascending (bit-identical to moe::permute_backward).
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
