// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mpi_shared_buffer: a symmetric buffer in MPI-3 shared memory (MPI_Win_allocate_shared) over the
// ranks of one node, so each rank can read its peers' rows with plain loads; and shared_matrix, a
// row-major matrix every rank keeps at the same offset of such a buffer. This is the CPU form of
// DeepEP's intranode buffers: the expert-parallel ops in moe/expert_parallel/mpi_shared.hpp read the rows
// they receive straight out of the senders' memory (one copy per row, no message protocol).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fp8moe/comm/mpi_communicator.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"

namespace fp8moe::comm {

/// Every rank of the communicator allocates `bytes` (may differ per rank) of node-shared memory;
/// every rank can read every rank's part. Construction and destruction are collective over the
/// communicator, whose ranks must all share one node (MPI_COMM_TYPE_SHARED), otherwise every rank
/// throws errc::unsupported. Reads of a peer's data must be separated from its writes by fence().
class mpi_shared_buffer {
 public:
  mpi_shared_buffer(mpi_communicator const& comm, std::size_t bytes) {
    constexpr char const* where = "fp8moe::comm::mpi_shared_buffer";
    MPI_Comm node = MPI_COMM_NULL;
    check(MPI_Comm_split_type(comm.native(), MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &node),
          "MPI_Comm_split_type", comm.rank(), comm.size());
    int node_size = 0;
    check(MPI_Comm_size(node, &node_size), "MPI_Comm_size", comm.rank(), comm.size());
    if (node_size != comm.size()) {  // every rank of a multi-node communicator sees a smaller node
      MPI_Comm_free(&node);
      throw error(errc::unsupported, detail::concat(where, ": the communicator's ", comm.size(),
                                                    " ranks span more than one node (", node_size,
                                                    " on this node); shared-memory buffers need one node"));
    }
    comm_ = node;
    rank_ = comm.rank();
    size_ = comm.size();
    MPI_Info info = MPI_INFO_NULL;
    check(MPI_Info_create(&info), "MPI_Info_create", rank_, size_);
    check(MPI_Info_set(info, "alloc_shared_noncontig", "true"), "MPI_Info_set", rank_,
          size_);  // each rank's part on its own pages
    void* base = nullptr;
    int const rc = MPI_Win_allocate_shared(static_cast<MPI_Aint>(bytes), 1, info, comm_, &base, &win_);
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) {
      MPI_Comm_free(&comm_);
      check(rc, "MPI_Win_allocate_shared", rank_, size_);
    }
    parts_.resize(static_cast<std::size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      MPI_Aint sz = 0;
      int disp = 0;
      void* p = nullptr;
      check(MPI_Win_shared_query(win_, r, &sz, &disp, &p), "MPI_Win_shared_query", rank_, size_);
      parts_[static_cast<std::size_t>(r)] = {static_cast<std::byte*>(p), static_cast<std::size_t>(sz)};
    }
    // one passive-target epoch for the buffer's lifetime: MPI_Win_sync is then legal in fence()
    check(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_), "MPI_Win_lock_all", rank_, size_);
  }
  mpi_shared_buffer(mpi_shared_buffer&& o) noexcept
      : comm_(std::exchange(o.comm_, MPI_COMM_NULL)),
        win_(std::exchange(o.win_, MPI_WIN_NULL)),
        rank_(o.rank_),
        size_(o.size_),
        parts_(std::move(o.parts_)) {}
  mpi_shared_buffer& operator=(mpi_shared_buffer&&) = delete;
  mpi_shared_buffer(mpi_shared_buffer const&) = delete;
  mpi_shared_buffer& operator=(mpi_shared_buffer const&) = delete;
  /// Collective (MPI_Win_free): every rank destroys its buffer together.
  ~mpi_shared_buffer() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    if (win_ != MPI_WIN_NULL) {
      MPI_Win_unlock_all(win_);
      MPI_Win_free(&win_);
    }
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// The node communicator of the buffer (same ranks, same order as the one it was made from).
  MPI_Comm native() const { return comm_; }
  /// This rank's part, writable.
  std::span<std::byte> local() const { return parts_[static_cast<std::size_t>(rank_)]; }
  /// Rank r's part (read it only between fences that follow r's writes).
  std::span<std::byte const> peer(int r) const {
    if (r < 0 || r >= size_)
      detail::throw_argument("fp8moe::comm::mpi_shared_buffer::peer", "r",
                             detail::concat("in [0, ", size_, ")"), std::to_string(r));
    auto const& p = parts_[static_cast<std::size_t>(r)];
    return {p.data(), p.size()};
  }

  /// Collective: every write any rank made to the buffer before its fence() is visible to every
  /// read any rank makes after its fence() (MPI_Win_sync, MPI_Barrier, MPI_Win_sync: the MPI-3
  /// separate/unified memory-model pattern for load/store access to shared windows).
  void fence() const { (void)fence_and_agree(true); }
  /// fence() that also tells every rank whether all ranks passed ok = true (one MPI_Allreduce in
  /// place of the barrier): ops that validate before touching peers' memory use it so a problem on
  /// one rank makes every rank throw instead of some of them reading or waiting.
  bool fence_and_agree(bool ok) const {
    check(MPI_Win_sync(win_), "MPI_Win_sync", rank_, size_);
    int mine = ok ? 1 : 0, all = 0;
    check(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce", rank_, size_);
    check(MPI_Win_sync(win_), "MPI_Win_sync", rank_, size_);
    return all != 0;
  }

 private:
  static void check(int rc, char const* call, int rank, int size) { mpi_check(rc, call, rank, size); }

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Win win_ = MPI_WIN_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<std::span<std::byte>> parts_;
};

/// A row-major (rows, cols) matrix of T that every rank keeps at the same byte offset of an
/// mpi_shared_buffer; rows may differ per rank, cols may not. Collective construction: one
/// all-gather checks the layout on every rank (all ranks throw together on a bad one) and learns
/// each rank's row count.
template <class T>
class shared_matrix {
 public:
  static_assert(std::is_trivially_copyable_v<T>, "shared_matrix<T>: T must be trivially copyable");
  shared_matrix(mpi_shared_buffer const& buf, std::size_t offset, std::int64_t rows, std::int64_t cols)
      : buf_(&buf), offset_(offset), cols_(cols) {
    constexpr char const* where = "fp8moe::comm::shared_matrix";
    std::string local;
    std::size_t const need = static_cast<std::size_t>(rows < 0 ? 0 : rows) *
                             static_cast<std::size_t>(cols < 0 ? 0 : cols) * sizeof(T);
    if (rows < 0 || cols < 0)
      local = detail::concat("rows and cols >= 0, got (", rows, ", ", cols, ")");
    else if (offset % alignof(T) != 0)
      local = detail::concat("offset ", offset, " aligned to ", alignof(T), " bytes");
    else if (offset + need > buf.local().size())
      local = detail::concat("offset ", offset, " + ", need, " bytes inside this rank's ", buf.local().size(),
                             "-byte buffer");
    std::int64_t const mine[3] = {local.empty() ? 1 : 0, rows, cols};
    std::vector<std::int64_t> all(static_cast<std::size_t>(3 * buf.size()));
    mpi_check(MPI_Allgather(mine, 3, MPI_INT64_T, all.data(), 3, MPI_INT64_T, buf.native()), "MPI_Allgather",
              buf.rank(), buf.size());
    if (!local.empty()) detail::throw_argument(where, "offset/rows/cols", local);
    rows_.resize(static_cast<std::size_t>(buf.size()));
    for (int r = 0; r < buf.size(); ++r) {
      auto const* a = all.data() + 3 * r;
      if (a[0] == 0)
        throw error(errc::communication,
                    detail::concat(where, ": rank ", r, " passed an invalid layout (see its own message)"));
      if (a[2] != cols)
        throw error(errc::communication, detail::concat(where, ": rank ", r, " has ", a[2], " columns, rank ",
                                                        buf.rank(), " has ", cols));
      rows_[static_cast<std::size_t>(r)] = a[1];
      bases_.push_back(buf.peer(r).data() + offset_);
    }
  }

  std::int64_t cols() const { return cols_; }
  std::int64_t rows(int r) const { return rows_[static_cast<std::size_t>(r)]; }
  mpi_shared_buffer const& buffer() const { return *buf_; }
  /// This rank's matrix, to write (then fence() before peers read it).
  matrix_view<T> local() const {
    return {reinterpret_cast<T*>(buf_->local().data() + offset_),
            rows_[static_cast<std::size_t>(buf_->rank())], cols_, cols_, 1};
  }
  /// Row i of rank r's matrix (no bounds check: callers check against rows(r)).
  T const* row(int r, std::int64_t i) const {
    return reinterpret_cast<T const*>(bases_[static_cast<std::size_t>(r)]) + i * cols_;
  }

 private:
  mpi_shared_buffer const* buf_;
  std::size_t offset_;
  std::int64_t cols_;
  std::vector<std::int64_t> rows_;
  std::vector<std::byte const*> bases_;  // rank r's matrix
};

}  // namespace fp8moe::comm
