// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mpi_communicator: the communicator concept over MPI with host buffers (MPI_Alltoallv, MPI_Isend /
// MPI_Irecv, MPI_Allreduce ...), using MPI's predefined datatypes (contiguous byte types for fp8/bf16).
// It owns a duplicate of the communicator it wraps, with MPI_ERRORS_RETURN, so every failing call
// becomes an fp8moe::error naming the call and the ranks. Calls on one object from one thread at a time.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fp8moe/comm/communicator.hpp"

namespace fp8moe::comm {

namespace detail {

inline std::string mpi_error_text(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(buf, static_cast<std::size_t>(len));
}

}  // namespace detail

/// Throws errc::communication: "<call> failed on rank r of n (<peers>): <MPI text>". Public for code
/// that calls MPI itself beside a communicator (e.g. on mpi_shared_buffer::native()).
inline void mpi_check(int rc, char const* call, int rank, int size, std::string_view peers = "all ranks") {
  if (rc == MPI_SUCCESS) return;
  detail::throw_comm(detail::concat(call, " failed on rank ", rank, " of ", size, " (", peers,
                                    "): ", detail::mpi_error_text(rc)));
}

namespace detail {

/// MPI datatype of T: the predefined one for arithmetic types, else a committed contiguous byte type.
template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>)
    return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return MPI_INT8_T;
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return MPI_UINT8_T;
  else if constexpr (std::is_same_v<T, std::int16_t>)
    return MPI_INT16_T;
  else if constexpr (std::is_same_v<T, std::uint16_t>)
    return MPI_UINT16_T;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return MPI_INT32_T;
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return MPI_UINT32_T;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return MPI_UINT64_T;
  else if constexpr (std::is_same_v<T, std::byte> || std::is_same_v<T, char> || sizeof(T) == 1)
    return MPI_BYTE;
  else {
    static MPI_Datatype const type = [] {
      MPI_Datatype t = MPI_DATATYPE_NULL;
      mpi_check(MPI_Type_contiguous(static_cast<int>(sizeof(T)), MPI_BYTE, &t), "MPI_Type_contiguous", -1,
                -1);
      mpi_check(MPI_Type_commit(&t), "MPI_Type_commit", -1, -1);
      return t;
    }();
    return type;
  }
}

inline MPI_Op mpi_op(reduce_op op) {
  switch (op) {
    case reduce_op::sum:
      return MPI_SUM;
    case reduce_op::prod:
      return MPI_PROD;
    case reduce_op::min:
      return MPI_MIN;
    case reduce_op::max:
      return MPI_MAX;
  }
  return MPI_SUM;
}

}  // namespace detail

/// RAII MPI_Init_thread / MPI_Finalize for programs and tests that own MPI's lifetime. Does
/// nothing when MPI is already initialized.
class mpi_environment {
 public:
  mpi_environment(int* argc = nullptr, char*** argv = nullptr, int required = MPI_THREAD_FUNNELED) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      mpi_check(MPI_Init_thread(argc, argv, required, &provided), "MPI_Init_thread", -1, -1);
      owner_ = true;
    }
  }
  mpi_environment(mpi_environment const&) = delete;
  mpi_environment& operator=(mpi_environment const&) = delete;
  ~mpi_environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }

 private:
  bool owner_ = false;
};

class mpi_communicator : public p2p_from_batches<mpi_communicator> {
 public:
  static constexpr memory_space memory = memory_space::host;

  /// Pending MPI operations. Holds the count/displacement arrays MPI reads until completion.
  class request {
   public:
    request() = default;
    request(request&& o) noexcept { *this = std::move(o); }
    request& operator=(request&& o) noexcept {
      if (this != &o) {
        finish_quietly();
        reqs_ = std::move(o.reqs_);
        ints_ = std::move(o.ints_);
        expect_ = std::move(o.expect_);
        types_ = std::move(o.types_);
        type_args_ = std::move(o.type_args_);
        rank_ = o.rank_;
        size_ = o.size_;
        call_ = o.call_;
        o.reqs_.clear();
        o.types_.clear();
      }
      return *this;
    }
    ~request() { finish_quietly(); }

    /// Polls; once everything has completed, runs the same checks as wait() (and may throw).
    bool test() {
      if (reqs_.empty()) return true;
      int flag = 0;
      std::vector<MPI_Status> st(reqs_.size());
      int const rc = MPI_Testall(static_cast<int>(reqs_.size()), reqs_.data(), &flag, st.data());
      if (rc != MPI_SUCCESS) {
        complete(st, rc);
        return true;
      }
      if (flag) complete(st, MPI_SUCCESS);
      return flag != 0;
    }
    void wait() {
      if (reqs_.empty()) return;
      std::vector<MPI_Status> st(reqs_.size());
      int const rc = MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), st.data());
      complete(st, rc);
    }

   private:
    friend class mpi_communicator;
    struct expected_recv {
      std::size_t index;
      int bytes, peer, tag;
    };
    /// After Waitall/Testall returned everything (or an error): finish what is still pending,
    /// release, then report MPI errors and receive-size mismatches.
    void complete(std::vector<MPI_Status>& st, int rc) {
      if (rc == MPI_ERR_IN_STATUS)
        for (std::size_t i = 0; i < reqs_.size(); ++i)
          if (st[i].MPI_ERROR == MPI_ERR_PENDING) MPI_Wait(&reqs_[i], &st[i]);
      std::vector<expected_recv> expect = std::move(expect_);
      reqs_.clear();
      ints_.clear();
      free_types();
      if (rc != MPI_SUCCESS) {
        for (auto const& s : st)
          if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING)
            mpi_check(s.MPI_ERROR, call_, rank_, size_, "peer " + std::to_string(s.MPI_SOURCE));
        mpi_check(rc, call_, rank_, size_);
      }
      for (auto const& e : expect) {
        int bytes = 0;
        MPI_Get_count(&st[e.index], MPI_BYTE, &bytes);
        if (bytes != e.bytes)
          detail::throw_comm(detail::concat(call_, ": rank ", rank_, " expected ", e.bytes,
                                            " bytes from rank ", e.peer, " (tag ", e.tag, "), got ", bytes));
      }
    }
    void finish_quietly() noexcept {
      if (!reqs_.empty()) MPI_Waitall(static_cast<int>(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE);
      reqs_.clear();
      free_types();
    }
    /// Derived datatypes an operation uses (MPI reads them until completion), freed after it.
    void free_types() noexcept {
      int finalized = 0;
      MPI_Finalized(&finalized);
      for (auto& t : types_)
        if (t != MPI_DATATYPE_NULL && !finalized) MPI_Type_free(&t);
      types_.clear();
      type_args_.clear();
    }
    std::vector<MPI_Request> reqs_;
    std::vector<std::vector<int>> ints_;
    std::vector<expected_recv> expect_;
    std::vector<MPI_Datatype> types_;      // owned derived datatypes (MPI_DATATYPE_NULL where unused)
    std::vector<MPI_Datatype> type_args_;  // the send + recv type arrays an MPI_Ialltoallw reads
    int rank_ = 0, size_ = 1;
    char const* call_ = "";
  };

  /// Duplicates MPI_COMM_WORLD.
  mpi_communicator() : mpi_communicator(MPI_COMM_WORLD) {}
  /// Duplicates `comm` (collective over it) and sets MPI_ERRORS_RETURN on the duplicate.
  explicit mpi_communicator(MPI_Comm comm) {
    mpi_check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup", -1, -1);
    init();
  }
  mpi_communicator(mpi_communicator&& o) noexcept
      : comm_(std::exchange(o.comm_, MPI_COMM_NULL)), rank_(o.rank_), size_(o.size_) {}
  mpi_communicator& operator=(mpi_communicator&& o) noexcept {
    if (this != &o) {
      free();
      comm_ = std::exchange(o.comm_, MPI_COMM_NULL);
      rank_ = o.rank_;
      size_ = o.size_;
    }
    return *this;
  }
  mpi_communicator(mpi_communicator const&) = delete;
  mpi_communicator& operator=(mpi_communicator const&) = delete;
  ~mpi_communicator() { free(); }

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm native() const { return comm_; }

  void barrier() { check(MPI_Barrier(comm_), "MPI_Barrier"); }

  /// MPI_Comm_split: ranks with the same color form a group, ordered by (key, old rank). Collective.
  mpi_communicator split(int color, int key) const {
    require(color >= 0, "fp8moe::comm::mpi_communicator::split", "color", ">= 0", std::to_string(color));
    MPI_Comm c = MPI_COMM_NULL;
    check(MPI_Comm_split(comm_, color, key, &c), "MPI_Comm_split");
    return mpi_communicator(adopt_tag{}, c);
  }

  /// Equal blocks: send and recv hold size() blocks of send.size()/size() elements.
  template <transferable T>
  void alltoall(std::span<T const> send, std::span<T> recv, size_check check_sizes = size_check::verify) {
    char const* where = "fp8moe::comm::mpi_communicator::alltoall";
    std::string const blocks =
        send.size() % static_cast<std::size_t>(size_) == 0
            ? std::string()
            : detail::concat("send must hold size() = ", size_, " equal blocks, got ", send.size());
    same_size_everywhere(where, send.size(), recv.size(), 1, check_sizes, blocks);
    auto const n = block_count(send.size() / static_cast<std::size_t>(size_), where);
    check(MPI_Alltoall(send.data(), n, detail::mpi_type<T>(), recv.data(), n, detail::mpi_type<T>(), comm_),
          "MPI_Alltoall");
  }

  template <transferable T>
  void alltoallv(std::span<T const> send, std::span<std::int64_t const> send_counts, std::span<T> recv,
                 std::span<std::int64_t const> recv_counts, size_check check_sizes = size_check::verify) {
    start_alltoallv(send, blocks{send_counts, {}}, recv, blocks{recv_counts, {}}, check_sizes, true).wait();
  }
  /// Explicit block layout (MPI_Alltoallv's displacements).
  template <transferable T>
  void alltoallv(std::span<T const> send, blocks sb, std::span<T> recv, blocks rb,
                 size_check check_sizes = size_check::verify) {
    start_alltoallv(send, sb, recv, rb, check_sizes, true).wait();
  }
  template <transferable T>
  request ialltoallv(std::span<T const> send, blocks sb, std::span<T> recv, blocks rb,
                     size_check check_sizes = size_check::verify) {
    return start_alltoallv(send, sb, recv, rb, check_sizes, false);
  }

  /// MPI_Ialltoallv (MPI_Alltoallv when called through alltoallv). With size_check::verify, one
  /// MPI_Allgather of every rank's counts proves the sizes agree first (or every rank throws).
  template <transferable T>
  request ialltoallv(std::span<T const> send, std::span<std::int64_t const> send_counts, std::span<T> recv,
                     std::span<std::int64_t const> recv_counts, size_check check_sizes = size_check::verify) {
    return start_alltoallv(send, blocks{send_counts, {}}, recv, blocks{recv_counts, {}}, check_sizes, false);
  }

  /// All-to-all-v straight from gathered rows: MPI_Ialltoallw with one hindexed datatype per
  /// destination (its rows in index order, runs of adjacent rows merged into one block) and one per source on
  /// the receive side (byte displacements as MPI_Aint, so the receive buffer may exceed INT_MAX bytes). No
  /// pack pass by the caller. size_check as in ialltoallv (element counts).
  template <transferable T>
  request ialltoallv_rows(gathered_rows<T> send, std::span<T> recv, blocks rb,
                          size_check check_sizes = size_check::verify) {
    char const* where = "fp8moe::comm::mpi_communicator::alltoallv_rows";
    std::vector<std::int64_t> sc;
    std::string const local =
        detail::check_gathered_alltoallv_local(size_, send, static_cast<std::int64_t>(recv.size()), rb, sc);
    verify_counts(where, local, sc, rb.counts, check_sizes);
    auto const n = static_cast<std::size_t>(size_);
    request r = make_request("MPI_Ialltoallw");
    r.ints_.assign(4, std::vector<int>(n, 0));  // send counts, send displs, recv counts, recv displs
    r.types_.assign(2 * n, MPI_DATATYPE_NULL);
    std::vector<MPI_Datatype> types(2 * n, MPI_BYTE);
    auto const rd = detail::block_displs(rb);
    MPI_Datatype const t = detail::mpi_type<T>();
    int const row_len = block_count(static_cast<std::size_t>(send.row_elements), where);
    bool const dense = send.row_stride == send.row_elements;  // consecutive rows are adjacent in memory
    std::vector<MPI_Aint> disp;
    std::vector<int> lens;
    std::int64_t at = 0;
    for (std::size_t i = 0; i < n; ++i) {
      std::int64_t const c = send.rows.counts[i], d = send.rows.displs.empty() ? at : send.rows.displs[i];
      at = d + c;
      if (c > 0 && row_len > 0) {
        // one block per run of consecutive rows (one per row when rows are strided)
        disp.clear();
        lens.clear();
        for (std::int64_t j = 0; j < c; ++j) {
          std::int64_t const row = send.index[static_cast<std::size_t>(d + j)];
          if (dense && j > 0 && row == send.index[static_cast<std::size_t>(d + j - 1)] + 1 &&
              static_cast<std::int64_t>(lens.back()) + row_len <= INT_MAX) {
            lens.back() += row_len;
            continue;
          }
          disp.push_back(static_cast<MPI_Aint>(row * send.row_stride * static_cast<std::int64_t>(sizeof(T))));
          lens.push_back(row_len);
        }
        check(MPI_Type_create_hindexed(static_cast<int>(lens.size()), lens.data(), disp.data(), t,
                                       &r.types_[i]),
              "MPI_Type_create_hindexed");
        check(MPI_Type_commit(&r.types_[i]), "MPI_Type_commit");
        types[i] = r.types_[i];
        r.ints_[0][i] = 1;
      }
      if (rb.counts[i] > 0) {
        MPI_Aint const off = static_cast<MPI_Aint>(rd[i] * static_cast<std::int64_t>(sizeof(T)));
        check(MPI_Type_create_hindexed_block(1, block_count(static_cast<std::size_t>(rb.counts[i]), where),
                                             &off, t, &r.types_[n + i]),
              "MPI_Type_create_hindexed_block");
        check(MPI_Type_commit(&r.types_[n + i]), "MPI_Type_commit");
        types[n + i] = r.types_[n + i];
        r.ints_[2][i] = 1;
      }
    }
    r.reqs_.resize(1);
    r.type_args_ = std::move(types);  // MPI reads the type arrays until completion
    check(
        MPI_Ialltoallw(send.base, r.ints_[0].data(), r.ints_[1].data(), r.type_args_.data(), recv.data(),
                       r.ints_[2].data(), r.ints_[3].data(), r.type_args_.data() + n, comm_, r.reqs_.data()),
        "MPI_Ialltoallw");
    return r;
  }

  template <reducible T>
  void allreduce(std::span<T const> send, std::span<T> recv, reduce_op op,
                 size_check check_sizes = size_check::verify) {
    char const* where = "fp8moe::comm::mpi_communicator::allreduce";
    same_size_everywhere(where, send.size(), recv.size(), 1, check_sizes);
    check(MPI_Allreduce(send.data() == recv.data() ? MPI_IN_PLACE : send.data(), recv.data(),
                        block_count(send.size(), where), detail::mpi_type<T>(), detail::mpi_op(op), comm_),
          "MPI_Allreduce");
  }
  template <reducible T>
  request iallreduce(std::span<T const> send, std::span<T> recv, reduce_op op,
                     size_check check_sizes = size_check::verify) {
    char const* where = "fp8moe::comm::mpi_communicator::iallreduce";
    same_size_everywhere(where, send.size(), recv.size(), 1, check_sizes);
    request r = make_request("MPI_Iallreduce");
    r.reqs_.resize(1);
    check(MPI_Iallreduce(send.data() == recv.data() ? MPI_IN_PLACE : send.data(), recv.data(),
                         block_count(send.size(), where), detail::mpi_type<T>(), detail::mpi_op(op), comm_,
                         r.reqs_.data()),
          "MPI_Iallreduce");
    return r;
  }

  /// recv = concatenation over ranks of every rank's send (recv.size() == size() * send.size()).
  template <transferable T>
  void allgather(std::span<T const> send, std::span<T> recv, size_check check_sizes = size_check::verify) {
    iallgather(send, recv, check_sizes).wait();
  }
  template <transferable T>
  request iallgather(std::span<T const> send, std::span<T> recv,
                     size_check check_sizes = size_check::verify) {
    char const* where = "fp8moe::comm::mpi_communicator::allgather";
    same_size_everywhere(where, send.size(), recv.size(), size_, check_sizes);
    request r = make_request("MPI_Iallgather");
    r.reqs_.resize(1);
    auto const n = block_count(send.size(), where);
    check(MPI_Iallgather(send.data(), n, detail::mpi_type<T>(), recv.data(), n, detail::mpi_type<T>(), comm_,
                         r.reqs_.data()),
          "MPI_Iallgather");
    return r;
  }

  void send_recv(std::span<p2p_op const> ops) { isend_recv(ops).wait(); }

  /// MPI_Irecv / MPI_Isend for every op (receives posted first). wait() checks that every receive
  /// got exactly the bytes it expected (a larger message is MPI_ERR_TRUNCATE where the MPI
  /// library reports it; Open MPI's self transport does not).
  request isend_recv(std::span<p2p_op const> ops) {
    char const* where = "fp8moe::comm::mpi_communicator::isend_recv";
    for (auto const& op : ops) {
      require(op.peer >= 0 && op.peer < size_, where, "peer", detail::concat("in [0, ", size_, ")"),
              std::to_string(op.peer));
      require(op.bytes >= 0 && op.bytes <= INT_MAX && (op.bytes == 0 || op.data != nullptr), where, "data",
              "a valid buffer of at most INT_MAX bytes", std::to_string(op.bytes) + " bytes");
      require(op.tag >= 0, where, "tag", ">= 0", std::to_string(op.tag));
    }
    request r = make_request("MPI_Isend/MPI_Irecv");
    r.reqs_.reserve(ops.size());
    for (int pass = 0; pass < 2; ++pass)
      for (auto const& op : ops) {
        bool const is_recv = op.op == p2p_op::kind::recv;
        if (is_recv != (pass == 0)) continue;
        MPI_Request q = MPI_REQUEST_NULL;
        int const n = static_cast<int>(op.bytes);
        if (is_recv) {
          check(MPI_Irecv(op.data, n, MPI_BYTE, op.peer, op.tag, comm_, &q), "MPI_Irecv", op.peer);
          r.expect_.push_back({r.reqs_.size(), n, op.peer, op.tag});
        } else {
          check(MPI_Isend(op.data, n, MPI_BYTE, op.peer, op.tag, comm_, &q), "MPI_Isend", op.peer);
        }
        r.reqs_.push_back(q);
      }
    return r;
  }

 private:
  struct adopt_tag {};
  mpi_communicator(adopt_tag, MPI_Comm c) : comm_(c) { init(); }

  void init() {
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  void free() noexcept {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
    comm_ = MPI_COMM_NULL;
  }
  void check(int rc, char const* call, int peer = -1) const {
    if (peer < 0)
      mpi_check(rc, call, rank_, size_);
    else
      mpi_check(rc, call, rank_, size_, "peer " + std::to_string(peer));
  }
  request make_request(char const* call) const {
    request r;
    r.rank_ = rank_;
    r.size_ = size_;
    r.call_ = call;
    return r;
  }
  static int block_count(std::size_t n, char const* where) {
    if (n > static_cast<std::size_t>(INT_MAX))
      throw error(errc::unsupported,
                  detail::concat(where, ": ", n, " elements exceed MPI's int count (INT_MAX)"));
    return static_cast<int>(n);
  }

  /// Every rank learns whether any rank found a problem, and all throw together. Collectives whose element
  /// count must be equal on every rank (alltoall, allreduce, allgather).
  void same_size_everywhere(char const* where, std::size_t send, std::size_t recv, int recv_factor,
                            size_check check_sizes, std::string local = {}) {
    if (local.empty() && recv != send * static_cast<std::size_t>(recv_factor))
      local = detail::concat("recv must hold ", recv_factor, " x send (", send, ") elements, got ", recv);
    if (check_sizes == size_check::trusted) {
      if (!local.empty()) detail::throw_argument(where, "recv", local);
      return;
    }
    std::int64_t mine[3] = {local.empty() ? 1 : 0, static_cast<std::int64_t>(send),
                            -static_cast<std::int64_t>(send)};
    std::int64_t all[3] = {};
    check(MPI_Allreduce(mine, all, 3, MPI_INT64_T, MPI_MIN, comm_), "MPI_Allreduce");
    if (!local.empty()) detail::throw_argument(where, "recv", local);
    if (all[0] == 0)
      detail::throw_comm(detail::concat(where, ": another rank passed invalid sizes (see its message)"));
    if (all[1] != -all[2])
      detail::throw_comm(detail::concat(where, ": ranks disagree on the element count (min ", all[1],
                                        ", max ", -all[2], "); this is rank ", rank_, " with ", send));
  }

  /// All-to-all-v count agreement. `local` is this rank's own finding ("" = fine). With
  /// size_check::verify one MPI_Allgather of every rank's [ok, send counts, recv counts] lets every
  /// rank throw the same error (or none) before any transfer; trusted only reports `local`.
  void verify_counts(char const* where, std::string const& local, std::span<std::int64_t const> send_counts,
                     std::span<std::int64_t const> recv_counts, size_check check_sizes) {
    if (check_sizes == size_check::verify) {
      auto const w = static_cast<std::size_t>(2 * size_ + 1);
      std::vector<std::int64_t> row(w, 0), rows(w * static_cast<std::size_t>(size_));
      row[0] = local.empty() ? 1 : 0;
      if (local.empty())
        for (int i = 0; i < size_; ++i) {
          row[1 + i] = send_counts[i];
          row[1 + size_ + i] = recv_counts[i];
        }
      check(MPI_Allgather(row.data(), static_cast<int>(w), MPI_INT64_T, rows.data(), static_cast<int>(w),
                          MPI_INT64_T, comm_),
            "MPI_Allgather");
      if (!local.empty()) detail::throw_argument(where, "counts", local);
      std::string const global = detail::check_alltoallv_global(size_, rows);
      if (!global.empty()) detail::throw_comm(detail::concat(where, ": ", global));
    } else if (!local.empty()) {
      detail::throw_argument(where, "counts", local);
    }
  }

  template <transferable T>
  request start_alltoallv(std::span<T const> send, blocks sb, std::span<T> recv, blocks rb,
                          size_check check_sizes, bool blocking) {
    char const* where = "fp8moe::comm::mpi_communicator::alltoallv";
    std::string const local = detail::check_alltoallv_local(size_, static_cast<std::int64_t>(send.size()), sb,
                                                            static_cast<std::int64_t>(recv.size()), rb);
    verify_counts(where, local, sb.counts, rb.counts, check_sizes);
    request r = make_request(blocking ? "MPI_Alltoallv" : "MPI_Ialltoallv");
    r.ints_.assign(4, std::vector<int>(static_cast<std::size_t>(size_)));
    auto const sd = detail::block_displs(sb), rd = detail::block_displs(rb);
    for (int i = 0; i < size_; ++i) {
      r.ints_[0][i] = block_count(static_cast<std::size_t>(sb.counts[i]), where);
      r.ints_[1][i] = block_count(static_cast<std::size_t>(sd[i]), where);
      r.ints_[2][i] = block_count(static_cast<std::size_t>(rb.counts[i]), where);
      r.ints_[3][i] = block_count(static_cast<std::size_t>(rd[i]), where);
    }
    MPI_Datatype const t = detail::mpi_type<T>();
    if (blocking) {
      check(MPI_Alltoallv(send.data(), r.ints_[0].data(), r.ints_[1].data(), t, recv.data(),
                          r.ints_[2].data(), r.ints_[3].data(), t, comm_),
            "MPI_Alltoallv");
      r.ints_.clear();
      return r;
    }
    r.reqs_.resize(1);
    check(MPI_Ialltoallv(send.data(), r.ints_[0].data(), r.ints_[1].data(), t, recv.data(), r.ints_[2].data(),
                         r.ints_[3].data(), t, comm_, r.reqs_.data()),
          "MPI_Ialltoallv");
    return r;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

// Models: communicator, async, p2p, collective, row_gather, host_communicator.
static_assert(p2p_communicator<mpi_communicator>);
static_assert(row_gather_communicator<mpi_communicator>);
static_assert(host_communicator<mpi_communicator>);

}  // namespace fp8moe::comm
