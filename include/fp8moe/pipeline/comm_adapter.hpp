// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// communicator_p2p: adapts any host-memory fp8moe::comm::communicator (single_communicator,
// mpi_communicator) to the executor's p2p_communicator concept, one batched point-to-point op per
// transfer. Same threading rules as the wrapped communicator (one thread at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "fp8moe/comm/communicator.hpp"

namespace fp8moe::pipeline {

template <fp8moe::comm::host_communicator C>
class communicator_p2p {
 public:
  using request = typename C::request;

  explicit communicator_p2p(C& comm) : comm_(&comm) {}
  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }

  request isend(std::span<std::byte const> data, int peer, int tag) {
    comm::p2p_op const op{comm::p2p_op::kind::send, const_cast<std::byte*>(data.data()),
                          static_cast<std::int64_t>(data.size()), peer, tag};
    return comm_->isend_recv(std::span<comm::p2p_op const>(&op, 1));
  }
  request irecv(std::span<std::byte> data, int peer, int tag) {
    comm::p2p_op const op{comm::p2p_op::kind::recv, data.data(), static_cast<std::int64_t>(data.size()), peer,
                          tag};
    return comm_->isend_recv(std::span<comm::p2p_op const>(&op, 1));
  }
  void wait(request& r) { r.wait(); }
  bool test(request& r) { return r.test(); }

 private:
  C* comm_;
};

}  // namespace fp8moe::pipeline
