// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nccl_p2p: comm::nccl_communicator as the CUDA executor's device_p2p_communicator — ncclSend/ncclRecv
// of bytes on the caller's stream, bracketed by ncclGroupStart/ncclGroupEnd per transfer group.
// Stream-ordered; the host never waits. One thread per communicator (NCCL's rule).
#pragma once

#include <nccl.h>

#include <cstddef>

#include "fp8moe/comm/nccl_communicator.hpp"

namespace fp8moe::pipeline {

class nccl_p2p {
 public:
  explicit nccl_p2p(comm::nccl_communicator& c) : c_(&c) {}
  int rank() const { return c_->rank(); }
  int size() const { return c_->size(); }
  void group_start() { comm::detail::nccl_check(ncclGroupStart(), "ncclGroupStart", rank(), size()); }
  void group_end() { comm::detail::nccl_check(ncclGroupEnd(), "ncclGroupEnd", rank(), size(), c_->native()); }
  void send(void const* data, std::size_t bytes, int peer, cudaStream_t stream) {
    comm::detail::nccl_check(ncclSend(data, bytes, ncclUint8, peer, c_->native(), stream), "ncclSend", rank(),
                             size(), c_->native());
  }
  void recv(void* data, std::size_t bytes, int peer, cudaStream_t stream) {
    comm::detail::nccl_check(ncclRecv(data, bytes, ncclUint8, peer, c_->native(), stream), "ncclRecv", rank(),
                             size(), c_->native());
  }

 private:
  comm::nccl_communicator* c_;
};

}  // namespace fp8moe::pipeline
