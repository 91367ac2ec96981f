// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// single_communicator: the size-1 communicator over host memory. Collectives are copies; point-to-
// point to self matches sends and receives by tag in posting order (MPI's rule). A wait on a
// self-message that can never arrive throws instead of hanging. Not thread-safe (one owner thread).
#pragma once

#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "fp8moe/comm/communicator.hpp"

namespace fp8moe::comm {

class single_communicator : public p2p_from_batches<single_communicator> {
  struct message {
    p2p_op op;
    std::shared_ptr<bool> done;
  };
  struct mailbox {
    std::deque<message> sends, recvs;
  };

 public:
  static constexpr memory_space memory = memory_space::host;

  /// Completion of a point-to-point batch; collectives complete immediately.
  class request {
   public:
    request() = default;
    bool test() const {
      for (auto const& d : done_)
        if (!*d) return false;
      return true;
    }
    void wait() {
      if (!test())
        detail::throw_comm(
            "fp8moe::comm::single_communicator::request::wait: a point-to-point message to/from rank 0 "
            "has no matching operation (size-1 communicator): the wait would never return");
      done_.clear();
    }

   private:
    friend class single_communicator;
    std::vector<std::shared_ptr<bool>> done_;
  };

  single_communicator() = default;

  int rank() const { return 0; }
  int size() const { return 1; }
  void barrier() {}
  /// Any non-negative color gives another (independent) size-1 communicator.
  single_communicator split(int color, int /*key*/) const {
    require(color >= 0, "fp8moe::comm::single_communicator::split", "color", ">= 0", std::to_string(color));
    return {};
  }

  template <transferable T>
  void alltoall(std::span<T const> send, std::span<T> recv, size_check = size_check::verify) {
    require(send.size() == recv.size(), "fp8moe::comm::single_communicator::alltoall", "recv",
            "as many elements as send (" + std::to_string(send.size()) + ")", std::to_string(recv.size()));
    copy(send, recv);
  }

  template <transferable T>
  void alltoallv(std::span<T const> send, std::span<std::int64_t const> send_counts, std::span<T> recv,
                 std::span<std::int64_t const> recv_counts, size_check check = size_check::verify) {
    alltoallv(send, blocks{send_counts, {}}, recv, blocks{recv_counts, {}}, check);
  }
  /// Explicit block layout: one block from this rank to itself, copied.
  template <transferable T>
  void alltoallv(std::span<T const> send, blocks sb, std::span<T> recv, blocks rb,
                 size_check = size_check::verify) {
    auto const msg = detail::check_alltoallv_local(1, static_cast<std::int64_t>(send.size()), sb,
                                                   static_cast<std::int64_t>(recv.size()), rb);
    if (!msg.empty()) detail::throw_argument("fp8moe::comm::single_communicator::alltoallv", "counts", msg);
    std::int64_t const rows[3] = {1, sb.counts[0], rb.counts[0]};
    auto const global = detail::check_alltoallv_global(1, rows);
    if (!global.empty()) detail::throw_comm("fp8moe::comm::single_communicator::alltoallv: " + global);
    auto const sd = detail::block_displs(sb), rd = detail::block_displs(rb);
    copy(send.subspan(static_cast<std::size_t>(sd[0]), static_cast<std::size_t>(sb.counts[0])),
         recv.subspan(static_cast<std::size_t>(rd[0]), static_cast<std::size_t>(rb.counts[0])));
  }

  template <reducible T>
  void allreduce(std::span<T const> send, std::span<T> recv, reduce_op, size_check = size_check::verify) {
    require(send.size() == recv.size(), "fp8moe::comm::single_communicator::allreduce", "recv",
            "as many elements as send (" + std::to_string(send.size()) + ")", std::to_string(recv.size()));
    copy(send, recv);
  }

  template <transferable T>
  void allgather(std::span<T const> send, std::span<T> recv, size_check = size_check::verify) {
    require(send.size() == recv.size(), "fp8moe::comm::single_communicator::allgather", "recv",
            "size() * send elements (" + std::to_string(send.size()) + ")", std::to_string(recv.size()));
    copy(send, recv);
  }

  void send_recv(std::span<p2p_op const> ops) { isend_recv(ops).wait(); }

  template <transferable T>
  request ialltoallv(std::span<T const> send, std::span<std::int64_t const> send_counts, std::span<T> recv,
                     std::span<std::int64_t const> recv_counts, size_check check = size_check::verify) {
    alltoallv(send, send_counts, recv, recv_counts, check);
    return {};
  }
  template <transferable T>
  request ialltoallv(std::span<T const> send, blocks sb, std::span<T> recv, blocks rb,
                     size_check check = size_check::verify) {
    alltoallv(send, sb, recv, rb, check);
    return {};
  }
  /// Gathered send rows (the one block to this rank), copied row by row into recv.
  template <transferable T>
  request ialltoallv_rows(gathered_rows<T> send, std::span<T> recv, blocks rb,
                          size_check = size_check::verify) {
    constexpr char const* where = "fp8moe::comm::single_communicator::alltoallv_rows";
    std::vector<std::int64_t> sc;
    auto const msg =
        detail::check_gathered_alltoallv_local(1, send, static_cast<std::int64_t>(recv.size()), rb, sc);
    if (!msg.empty()) detail::throw_argument(where, "counts", msg);
    std::int64_t const rows[3] = {1, sc[0], rb.counts[0]};
    auto const global = detail::check_alltoallv_global(1, rows);
    if (!global.empty()) detail::throw_comm(detail::concat(where, ": ", global));
    auto const rd = detail::block_displs(rb);
    std::int64_t const first = send.rows.displs.empty() ? 0 : send.rows.displs[0];
    T* out = recv.data() + rd[0];
    for (std::int64_t j = 0; j < send.rows.counts[0]; ++j, out += send.row_elements)
      std::memcpy(out, send.base + send.index[static_cast<std::size_t>(first + j)] * send.row_stride,
                  static_cast<std::size_t>(send.row_elements) * sizeof(T));
    return {};
  }
  template <reducible T>
  request iallreduce(std::span<T const> send, std::span<T> recv, reduce_op op,
                     size_check check = size_check::verify) {
    allreduce(send, recv, op, check);
    return {};
  }
  template <transferable T>
  request iallgather(std::span<T const> send, std::span<T> recv, size_check check = size_check::verify) {
    allgather(send, recv, check);
    return {};
  }

  /// Posts every operation (peer must be 0). A send completes when a receive with the same tag is
  /// posted (now or later); sizes must match exactly.
  request isend_recv(std::span<p2p_op const> ops) {
    for (auto const& op : ops) {
      require(op.peer == 0, "fp8moe::comm::single_communicator::isend_recv", "peer",
              "0 (size-1 communicator)", std::to_string(op.peer));
      require(op.bytes >= 0 && (op.bytes == 0 || op.data != nullptr),
              "fp8moe::comm::single_communicator::isend_recv", "data", "a valid buffer");
    }
    request req;
    for (auto const& op : ops) {
      auto done = std::make_shared<bool>(false);
      req.done_.push_back(done);
      auto& mine = op.op == p2p_op::kind::send ? box_->sends : box_->recvs;
      auto& theirs = op.op == p2p_op::kind::send ? box_->recvs : box_->sends;
      auto it = theirs.begin();
      while (it != theirs.end() && it->op.tag != op.tag) ++it;
      if (it == theirs.end()) {
        mine.push_back({op, done});
        continue;
      }
      p2p_op const& s = op.op == p2p_op::kind::send ? op : it->op;
      p2p_op const& r = op.op == p2p_op::kind::send ? it->op : op;
      if (s.bytes != r.bytes)
        detail::throw_comm(detail::concat("fp8moe::comm::single_communicator::isend_recv: rank 0 sends ",
                                          s.bytes, " bytes with tag ", s.tag, " to rank 0, which receives ",
                                          r.bytes, " bytes"));
      if (s.bytes) std::memcpy(r.data, s.data, static_cast<std::size_t>(s.bytes));
      *done = true;
      *it->done = true;
      theirs.erase(it);
    }
    return req;
  }

 private:
  template <class T>
  static void copy(std::span<T const> from, std::span<T> to) {
    if (!from.empty() && from.data() != to.data()) std::memmove(to.data(), from.data(), from.size_bytes());
  }

  std::shared_ptr<mailbox> box_ = std::make_shared<mailbox>();
};

// Models: communicator, async, p2p, collective, row_gather, host_communicator.
static_assert(p2p_communicator<single_communicator>);
static_assert(row_gather_communicator<single_communicator>);
static_assert(host_communicator<single_communicator>);

}  // namespace fp8moe::comm
