// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert parallelism, the state every op shares: the dispatch handle (DeepEP's: counts, send order,
// reduction tables; built by make_dispatch_handle, dispatch.hpp), the scratch buffer pool reused
// across calls, the pending-operation type the *_start ops return, the caller-owned outputs and the
// owning result of the dispatch, and the per-executor dispatch struct of the ops. Host memory. See
// dispatch.hpp (forward) and combine.hpp (return trip, backward).
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
#include <utility>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/expert_parallel/layout.hpp"
#include "fp8moe/moe/router.hpp"
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
/// wait at once: MPI_Ialltoallv + wait measured faster than MPI_Alltoallv in bench/expert_parallel.cpp).
/// Counts were exchanged when the handle was built, so the transfer itself trusts them.
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
/// The handle from host-resident ids and the (rows, slots, ok) all-to-all supplied by
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
      throw fp8moe::error(errc::communication,
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

/// Per-executor implementations of the expert-parallel ops (core/dispatch.hpp):
/// expert_parallel_dispatch<host_executor> in host/expert_parallel.hpp (included by dispatch.hpp),
/// expert_parallel_dispatch<cuda_executor> in cuda/dispatch.cuh (nvcc).
template <class Exec>
struct expert_parallel_dispatch;

/// Caller-owned receive buffers of the forward dispatch, each with h.num_recv() rows.
template <class T>
struct dispatch_outputs {
  matrix_view<T> x;               // (N,H)
  matrix_view<float> scales;      // (N,S) FP8 payloads, else empty
  matrix_view<std::int32_t> ids;  // (N,k) local expert ids or -1
  matrix_view<float> weights;     // (N,k)
};

/// Owning result of the allocating dispatch, over the executor's handle and owning matrix:
/// dispatch_result<T> on the host (dispatch_handle, host_matrix), device_dispatch_result<T> on CUDA
/// (device_dispatch_handle, device_matrix on exec.stream; cuda/dispatch.cuh).
template <class Handle, template <class> class Matrix, class T>
struct owning_dispatch_result {
  Handle handle;
  Matrix<T> x;                 // (N,H) received rows, (source rank, source token) order
  Matrix<float> scales;        // (N,H/128) per-row scales (FP8 payloads; empty otherwise)
  Matrix<float> weights;       // (N,k) FP32 routing weights of all k slots
  Matrix<std::int32_t> ids;    // (N,k) local expert ids, -1 for experts on other ranks
  scaling::tile_shape tile{};  // the scale tile of x (FP8 payloads: the sender's 1 x n)

  /// The received FP8 rows with their scales as one quantized view (x, scales, tile), ready for
  /// moe::permute / the grouped GEMM; throws fp8moe::error when the payload was not FP8 + scales.
  /// Not on a temporary result (the view would dangle): keep the result in a variable.
  scaling::quantized_matrix_view<T const> quantized_view() const& {
    require(scales.cols() > 0 || x.rows() == 0, "fp8moe::moe::dispatch_result::quantized_view", "scales",
            "the per-row scales of an FP8 dispatch (this result carries none)");
    return {x.view(), scales.view(), tile};
  }
  void quantized_view() && = delete;
  void quantized_view() const&& = delete;
};

/// The host's owning dispatch result.
template <class T>
using dispatch_result = owning_dispatch_result<dispatch_handle, host_matrix, T>;

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

}  // namespace fp8moe::moe
