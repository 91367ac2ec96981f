// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nccl_communicator: a device_communicator (collective, stream-ordered) over NCCL. Plain calls are
// enqueued on the communicator's stream (stream order, the host does not wait); i-forms run on a
// second, internal stream after the first's pending work and return an event-backed request whose
// wait() makes the main stream wait. all-to-all-v = grouped ncclSend/ncclRecv. Every NCCL/CUDA code
// becomes an fp8moe::error naming the call and the ranks. size_check::verify synchronizes the stream.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/numeric/bfloat16.hpp"

namespace fp8moe::comm {

namespace detail {

/// Throws errc::communication: "<call> failed on rank r of n: <NCCL text> (<last error>)".
inline void nccl_check(ncclResult_t rc, char const* call, int rank, int size, ncclComm_t comm = nullptr) {
  if (rc == ncclSuccess || rc == ncclInProgress) return;
  std::string msg = concat(call, " failed on rank ", rank, " of ", size, ": ", ncclGetErrorString(rc));
  if (comm != nullptr) {
    char const* last = ncclGetLastError(comm);
    if (last != nullptr && *last != '\0') msg += concat(" (", last, ")");
  }
  throw_comm(msg);
}

inline void cuda_check(cudaError_t e, char const* call, int rank, int size) {
  if (e == cudaSuccess) return;
  throw error(errc::cuda, concat(call, " failed on rank ", rank, " of ", size, ": ", cudaGetErrorName(e),
                                 " (", cudaGetErrorString(e), ")"));
}

template <class T>
constexpr ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, float>)
    return ncclFloat32;
  else if constexpr (std::is_same_v<T, double>)
    return ncclFloat64;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return ncclInt32;
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return ncclUint32;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return ncclInt64;
  else
    return ncclUint64;  // reducible<T> admits exactly these six
}

inline ncclRedOp_t nccl_op(reduce_op op) {
  switch (op) {
    case reduce_op::sum:
      return ncclSum;
    case reduce_op::prod:
      return ncclProd;
    case reduce_op::min:
      return ncclMin;
    case reduce_op::max:
      return ncclMax;
  }
  return ncclSum;
}

}  // namespace detail

class nccl_communicator {
 public:
  static constexpr memory_space memory = memory_space::device;

  /// Completion of an i-form: an event recorded on the internal stream. wait() makes the
  /// communicator's main stream wait for it (the host does not block); test() polls the event.
  class request {
   public:
    request() = default;
    request(request&& o) noexcept
        : event_(std::exchange(o.event_, nullptr)), stream_(o.stream_), rank_(o.rank_), size_(o.size_) {}
    request& operator=(request&& o) noexcept {
      if (this != &o) {
        finish_quietly();
        event_ = std::exchange(o.event_, nullptr);
        stream_ = o.stream_;
        rank_ = o.rank_;
        size_ = o.size_;
      }
      return *this;
    }
    ~request() { finish_quietly(); }
    bool test() {
      if (event_ == nullptr) return true;
      cudaError_t const e = cudaEventQuery(event_);
      if (e == cudaErrorNotReady) {
        (void)cudaGetLastError();  // not an error: keep it out of the next launch check
        return false;
      }
      detail::cuda_check(e, "cudaEventQuery", rank_, size_);
      return true;
    }
    void wait() {
      if (event_ == nullptr) return;
      cudaEvent_t ev = std::exchange(event_, nullptr);
      cudaError_t const e = cudaStreamWaitEvent(stream_, ev, 0);
      cudaEventDestroy(ev);
      detail::cuda_check(e, "cudaStreamWaitEvent", rank_, size_);
    }
    cudaEvent_t event() const { return event_; }

   private:
    friend class nccl_communicator;
    void finish_quietly() noexcept {
      if (event_ != nullptr) {
        cudaStreamWaitEvent(stream_, event_, 0);
        cudaEventDestroy(event_);
      }
      event_ = nullptr;
    }
    cudaEvent_t event_ = nullptr;
    cudaStream_t stream_ = nullptr;
    int rank_ = 0, size_ = 1;
  };

  /// Joins (or creates, with rank 0's id) an NCCL communicator of `size` ranks on the current device.
  nccl_communicator(ncclUniqueId const& id, int rank, int size, cudaStream_t stream) {
    require(size >= 1 && rank >= 0 && rank < size, "fp8moe::comm::nccl_communicator", "rank/size",
            "0 <= rank < size", detail::concat(rank, "/", size));
    rank_ = rank;
    size_ = size;
    require_device();
    detail::nccl_check(ncclCommInitRank(&comm_, size, id, rank), "ncclCommInitRank", rank_, size_);
    init_streams(stream);
  }

  /// A size-1 communicator on the current device (NCCL forbids two ranks on one GPU, so this is
  /// what one GPU can test).
  static nccl_communicator single(cudaStream_t stream) {
    require_device();
    ncclUniqueId id;
    detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId", 0, 1);
    return nccl_communicator(id, 0, 1, stream);
  }

  /// Every rank of a host communicator (MPI) joins one NCCL communicator: rank 0's unique id is
  /// all-gathered over `bootstrap`. Collective over `bootstrap`; one GPU per rank.
  template <host_communicator Boot>
  static nccl_communicator bootstrap(Boot& boot, cudaStream_t stream) {
    ncclUniqueId id{};
    std::vector<char> mine(sizeof(id), 0), all(sizeof(id) * static_cast<std::size_t>(boot.size()));
    if (boot.rank() == 0) {
      detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId", 0, boot.size());
      std::memcpy(mine.data(), &id, sizeof(id));
    }
    boot.allgather(std::span<char const>(mine), std::span<char>(all));
    std::memcpy(&id, all.data(), sizeof(id));
    return nccl_communicator(id, boot.rank(), boot.size(), stream);
  }

  nccl_communicator(nccl_communicator&& o) noexcept { *this = std::move(o); }
  nccl_communicator& operator=(nccl_communicator&& o) noexcept {
    if (this != &o) {
      destroy();
      comm_ = std::exchange(o.comm_, nullptr);
      stream_ = o.stream_;
      side_ = std::exchange(o.side_, nullptr);
      scratch_ = std::exchange(o.scratch_, nullptr);
      scratch_elems_ = std::exchange(o.scratch_elems_, 0);
      rank_ = o.rank_;
      size_ = o.size_;
    }
    return *this;
  }
  nccl_communicator(nccl_communicator const&) = delete;
  nccl_communicator& operator=(nccl_communicator const&) = delete;
  ~nccl_communicator() { destroy(); }

  int rank() const { return rank_; }
  int size() const { return size_; }
  ncclComm_t native() const { return comm_; }
  cudaStream_t stream() const { return stream_; }

  /// Host barrier: a 1-element all-reduce, then the stream is synchronized.
  void barrier() {
    enqueue_allreduce(scratch_, scratch_, 1, ncclInt64, ncclSum, stream_);
    cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  /// ncclCommSplit (NCCL >= 2.18): same color = same group, ordered by (key, rank).
  nccl_communicator split(int color, int key) const {
    require(color >= 0, "fp8moe::comm::nccl_communicator::split", "color", ">= 0", std::to_string(color));
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
    nccl_communicator out;
    detail::nccl_check(ncclCommSplit(comm_, color, key, &out.comm_, nullptr), "ncclCommSplit", rank_, size_,
                       comm_);
    detail::nccl_check(ncclCommUserRank(out.comm_, &out.rank_), "ncclCommUserRank", rank_, size_);
    detail::nccl_check(ncclCommCount(out.comm_, &out.size_), "ncclCommCount", rank_, size_);
    out.init_streams(stream_);
    return out;
#else
    (void)key;
    throw error(errc::unsupported,
                "fp8moe::comm::nccl_communicator::split needs NCCL >= 2.18 (ncclCommSplit)");
#endif
  }

  template <transferable T>
  void alltoall(std::span<T const> send, std::span<T> recv, size_check check_sizes = size_check::verify) {
    require(send.size() % static_cast<std::size_t>(size_) == 0 && recv.size() == send.size(),
            "fp8moe::comm::nccl_communicator::alltoall", "send/recv", "size() equal blocks each");
    auto const n = static_cast<std::int64_t>(send.size()) / size_;
    std::vector<std::int64_t> counts(static_cast<std::size_t>(size_), n);
    alltoallv(send, std::span<std::int64_t const>(counts), recv, std::span<std::int64_t const>(counts),
              check_sizes);
  }

  template <transferable T>
  void alltoallv(std::span<T const> send, std::span<std::int64_t const> sc, std::span<T> recv,
                 std::span<std::int64_t const> rc, size_check check_sizes = size_check::verify) {
    alltoallv(send, blocks{sc, {}}, recv, blocks{rc, {}}, check_sizes);
  }
  template <transferable T>
  void alltoallv(std::span<T const> send, blocks sb, std::span<T> recv, blocks rb,
                 size_check check_sizes = size_check::verify) {
    enqueue_alltoallv(send, sb, recv, rb, check_sizes, stream_);
  }
  template <transferable T>
  request ialltoallv(std::span<T const> send, std::span<std::int64_t const> sc, std::span<T> recv,
                     std::span<std::int64_t const> rc, size_check check_sizes = size_check::verify) {
    return ialltoallv(send, blocks{sc, {}}, recv, blocks{rc, {}}, check_sizes);
  }
  template <transferable T>
  request ialltoallv(std::span<T const> send, blocks sb, std::span<T> recv, blocks rb,
                     size_check check_sizes = size_check::verify) {
    fork();
    enqueue_alltoallv(send, sb, recv, rb, check_sizes, side_);
    return join();
  }

  template <reducible T>
  void allreduce(std::span<T const> send, std::span<T> recv, reduce_op op,
                 size_check check_sizes = size_check::verify) {
    same_size_everywhere("fp8moe::comm::nccl_communicator::allreduce", send.size(), recv.size(), 1,
                         check_sizes);
    enqueue_allreduce(send.data(), recv.data(), send.size(), detail::nccl_type<T>(), detail::nccl_op(op),
                      stream_);
  }
  template <reducible T>
  request iallreduce(std::span<T const> send, std::span<T> recv, reduce_op op,
                     size_check check_sizes = size_check::verify) {
    same_size_everywhere("fp8moe::comm::nccl_communicator::allreduce", send.size(), recv.size(), 1,
                         check_sizes);
    fork();
    enqueue_allreduce(send.data(), recv.data(), send.size(), detail::nccl_type<T>(), detail::nccl_op(op),
                      side_);
    return join();
  }

  template <transferable T>
  void allgather(std::span<T const> send, std::span<T> recv, size_check check_sizes = size_check::verify) {
    same_size_everywhere("fp8moe::comm::nccl_communicator::allgather", send.size(), recv.size(), size_,
                         check_sizes);
    nccl(ncclAllGather(send.data(), recv.data(), send.size_bytes(), ncclUint8, comm_, stream_),
         "ncclAllGather");
  }
  template <transferable T>
  request iallgather(std::span<T const> send, std::span<T> recv,
                     size_check check_sizes = size_check::verify) {
    same_size_everywhere("fp8moe::comm::nccl_communicator::allgather", send.size(), recv.size(), size_,
                         check_sizes);
    fork();
    nccl(ncclAllGather(send.data(), recv.data(), send.size_bytes(), ncclUint8, comm_, side_),
         "ncclAllGather");
    return join();
  }

  /// Grouped ncclSend / ncclRecv. NCCL cannot report a size mismatch between a send and its
  /// receive (it would hang), so sizes are the caller's contract here (as with raw NCCL).
  void send_recv(std::span<p2p_op const> ops) {
    enqueue_p2p(ops, stream_);
  }
  request isend_recv(std::span<p2p_op const> ops) {
    fork();
    enqueue_p2p(ops, side_);
    return join();
  }

  // stream_ordered_communicator: bytes enqueued on the caller's stream (the CUDA pipeline
  // executor's transfers), the host never waits; group_start / group_end bracket the transfers
  // that must progress together. Matching is by order per rank pair. One thread per communicator.
  using stream_type = cudaStream_t;
  void group_start() {
    detail::nccl_check(ncclGroupStart(), "ncclGroupStart", rank_, size_);
  }
  void group_end() {
    nccl(ncclGroupEnd(), "ncclGroupEnd");
  }
  void send(void const* data, std::size_t bytes, int peer, cudaStream_t stream) {
    nccl(ncclSend(data, bytes, ncclUint8, peer, comm_, stream), "ncclSend");
  }
  void recv(void* data, std::size_t bytes, int peer, cudaStream_t stream) {
    nccl(ncclRecv(data, bytes, ncclUint8, peer, comm_, stream), "ncclRecv");
  }

 private:
  nccl_communicator() = default;

  static void require_device() {
    if (cuda_device_count() == 0)
      throw error(errc::unsupported, "fp8moe::comm::nccl_communicator: no CUDA device is visible");
  }
  void init_streams(cudaStream_t stream) {
    stream_ = stream;
    cuda(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    // the largest gather: rows of 2R+1 int64 (all-to-all-v size check) from R ranks, plus this rank's row
    scratch_elems_ = static_cast<std::size_t>(2 * size_ + 1) * static_cast<std::size_t>(size_ + 1);
    cuda(cudaMalloc(reinterpret_cast<void**>(&scratch_), scratch_elems_ * sizeof(std::int64_t)),
         "cudaMalloc");
  }
  void destroy() noexcept {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
    if (side_ != nullptr) cudaStreamDestroy(side_);
    if (scratch_ != nullptr) cudaFree(scratch_);
    comm_ = nullptr;
    side_ = nullptr;
    scratch_ = nullptr;
  }
  void nccl(ncclResult_t rc, char const* call) const {
    detail::nccl_check(rc, call, rank_, size_, comm_);
  }
  void cuda(cudaError_t e, char const* call) const {
    detail::cuda_check(e, call, rank_, size_);
  }

  /// The side stream starts after the work already on the main stream.
  void fork() {
    cudaEvent_t ev = nullptr;
    cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    cudaError_t e = cudaEventRecord(ev, stream_);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(side_, ev, 0);
    cudaEventDestroy(ev);
    cuda(e, "cudaEventRecord/cudaStreamWaitEvent");
  }
  request join() {
    request r;
    r.stream_ = stream_;
    r.rank_ = rank_;
    r.size_ = size_;
    cuda(cudaEventCreateWithFlags(&r.event_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    cuda(cudaEventRecord(r.event_, side_), "cudaEventRecord");
    return r;
  }

  void enqueue_allreduce(void const* send, void* recv, std::size_t n, ncclDataType_t t, ncclRedOp_t op,
                         cudaStream_t s) {
    nccl(ncclAllReduce(send, recv, n, t, op, comm_, s), "ncclAllReduce");
  }

  /// Host values through the device scratch: every rank's `row` all-gathered (synchronizes).
  std::vector<std::int64_t> gather_rows(std::vector<std::int64_t> const& row) {
    auto const w = row.size(), total = w * static_cast<std::size_t>(size_);
    require(total + w <= scratch_elems_, "fp8moe::comm::nccl_communicator", "row",
            detail::concat("at most 2 * size() + 1 = ", 2 * size_ + 1, " values per rank"),
            std::to_string(w));
    std::vector<std::int64_t> all(total);
    cuda(cudaMemcpyAsync(scratch_, row.data(), w * sizeof(std::int64_t), cudaMemcpyHostToDevice, stream_),
         "cudaMemcpyAsync");
    nccl(ncclAllGather(scratch_, scratch_ + w, w, ncclInt64, comm_, stream_), "ncclAllGather");
    cuda(cudaMemcpyAsync(all.data(), scratch_ + w, total * sizeof(std::int64_t), cudaMemcpyDeviceToHost,
                         stream_),
         "cudaMemcpyAsync");
    cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return all;
  }

  void same_size_everywhere(char const* where, std::size_t send, std::size_t recv, int factor, size_check c) {
    std::string local;
    if (recv != send * static_cast<std::size_t>(factor))
      local = detail::concat("recv must hold ", factor, " x send (", send, ") elements, got ", recv);
    if (c == size_check::trusted) {
      if (!local.empty()) detail::throw_argument(where, "recv", local);
      return;
    }
    auto const all = gather_rows({local.empty() ? 1 : 0, static_cast<std::int64_t>(send)});
    if (!local.empty()) detail::throw_argument(where, "recv", local);
    for (int i = 0; i < size_; ++i) {
      if (all[2 * i] == 0) detail::throw_comm(detail::concat(where, ": rank ", i, " passed invalid sizes"));
      if (all[2 * i + 1] != static_cast<std::int64_t>(send))
        detail::throw_comm(detail::concat(where, ": rank ", i, " has ", all[2 * i + 1], " elements, rank ",
                                          rank_, " has ", send));
    }
  }

  template <class T>
  void enqueue_alltoallv(std::span<T const> send, blocks sb, std::span<T> recv, blocks rb, size_check c,
                         cudaStream_t s) {
    char const* where = "fp8moe::comm::nccl_communicator::alltoallv";
    std::string const local = detail::check_alltoallv_local(size_, static_cast<std::int64_t>(send.size()), sb,
                                                            static_cast<std::int64_t>(recv.size()), rb);
    if (c == size_check::verify) {
      std::vector<std::int64_t> row(static_cast<std::size_t>(2 * size_ + 1), 0);
      row[0] = local.empty() ? 1 : 0;
      if (local.empty())
        for (int i = 0; i < size_; ++i) {
          row[1 + i] = sb.counts[i];
          row[1 + size_ + i] = rb.counts[i];
        }
      auto const all = gather_rows(row);
      if (!local.empty()) detail::throw_argument(where, "counts", local);
      auto const global = detail::check_alltoallv_global(size_, all);
      if (!global.empty()) detail::throw_comm(detail::concat(where, ": ", global));
    } else if (!local.empty()) {
      detail::throw_argument(where, "counts", local);
    }
    auto const sd = detail::block_displs(sb), rd = detail::block_displs(rb);
    auto const* sp = reinterpret_cast<unsigned char const*>(send.data());
    auto* rp = reinterpret_cast<unsigned char*>(recv.data());
    group_guard group(*this);
    for (int i = 0; i < size_; ++i) {
      if (sb.counts[i] > 0)
        nccl(ncclSend(sp + sd[i] * sizeof(T), static_cast<std::size_t>(sb.counts[i]) * sizeof(T), ncclUint8,
                      i, comm_, s),
             "ncclSend");
      if (rb.counts[i] > 0)
        nccl(ncclRecv(rp + rd[i] * sizeof(T), static_cast<std::size_t>(rb.counts[i]) * sizeof(T), ncclUint8,
                      i, comm_, s),
             "ncclRecv");
    }
    group.end();
  }

  void enqueue_p2p(std::span<p2p_op const> ops, cudaStream_t s) {
    char const* where = "fp8moe::comm::nccl_communicator::isend_recv";
    for (auto const& op : ops) {
      require(op.peer >= 0 && op.peer < size_, where, "peer", detail::concat("in [0, ", size_, ")"),
              std::to_string(op.peer));
      require(op.bytes >= 0 && (op.bytes == 0 || op.data != nullptr), where, "data", "a valid device buffer");
    }
    group_guard group(*this);
    for (auto const& op : ops) {
      if (op.bytes == 0) continue;  // NCCL matches by order per peer; tags are not used
      if (op.op == p2p_op::kind::send)
        nccl(ncclSend(op.data, static_cast<std::size_t>(op.bytes), ncclUint8, op.peer, comm_, s), "ncclSend");
      else
        nccl(ncclRecv(op.data, static_cast<std::size_t>(op.bytes), ncclUint8, op.peer, comm_, s), "ncclRecv");
    }
    group.end();
  }

  /// ncclGroupStart now; ncclGroupEnd by end() (checked) or, when an exception leaves the scope
  /// first (a failed ncclSend), by the destructor: NCCL keeps a thread's group open until its
  /// ncclGroupEnd, and every later call on that thread would only be queued, never launched.
  class group_guard {
   public:
    explicit group_guard(nccl_communicator const& c) : c_(c) { c_.nccl(ncclGroupStart(), "ncclGroupStart"); }
    group_guard(group_guard const&) = delete;
    group_guard& operator=(group_guard const&) = delete;
    void end() {
      open_ = false;
      c_.nccl(ncclGroupEnd(), "ncclGroupEnd");
    }
    ~group_guard() {
      if (open_) (void)ncclGroupEnd();
    }

   private:
    nccl_communicator const& c_;
    bool open_ = true;
  };

  std::size_t scratch_elems_ = 0;  // int64 values of scratch_
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaStream_t side_ = nullptr;
  std::int64_t* scratch_ = nullptr;
  int rank_ = 0, size_ = 1;
};

// Models: communicator, async, collective, stream_ordered, device_communicator.
static_assert(device_communicator<nccl_communicator>);
static_assert(!p2p_communicator<nccl_communicator>);

}  // namespace fp8moe::comm
