// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// In-process point-to-point communicator over host memory: threads play ranks. isend copies eagerly
// (completes at once) or delivers straight into a posted receive; irecv completes when a matching
// message arrives. Matching is MPI's: per (source, tag) in posting order; a size mismatch throws.
// Thread-safe. Models communicator, async_communicator and p2p_communicator (no collectives).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/error.hpp"

namespace fp8moe::comm {

/// The mailboxes shared by the ranks of one in-process world.
class thread_world {
 public:
  explicit thread_world(int ranks) : ranks_(ranks), boxes_(static_cast<std::size_t>(ranks)) {
    require(ranks >= 1, "fp8moe::comm::thread_world", "ranks", ">= 1");
  }
  int size() const { return ranks_; }

 private:
  friend class thread_communicator;
  struct request_state {
    std::atomic<bool> done{false};
  };
  struct pending_recv {
    int src, tag;
    std::span<std::byte> buffer;
    std::shared_ptr<request_state> state;
  };
  struct queued_send {
    int src, tag;
    std::vector<std::byte> data;
  };
  struct mailbox {
    std::deque<pending_recv> recvs;
    std::deque<queued_send> sends;
  };
  int ranks_;
  std::vector<mailbox> boxes_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int barrier_waiting_ = 0;      // ranks in the current barrier generation
  long barrier_generation_ = 0;  // bumped when the last rank arrives
};

/// One rank's view of a thread_world.
class thread_communicator {
 public:
  static constexpr memory_space memory = memory_space::host;

  /// Completion of one isend / irecv. A default-constructed request is complete.
  class request {
   public:
    request() = default;
    void wait() {
      if (!state_ || state_->done.load()) return;
      std::unique_lock lock(world_->mutex_);
      world_->cv_.wait(lock, [&] { return state_->done.load(); });
    }
    bool test() const { return !state_ || state_->done.load(); }

   private:
    friend class thread_communicator;
    request(thread_world* w, std::shared_ptr<thread_world::request_state> s)
        : world_(w), state_(std::move(s)) {}
    thread_world* world_ = nullptr;
    std::shared_ptr<thread_world::request_state> state_;
  };

  thread_communicator(thread_world& world, int rank) : world_(&world), rank_(rank) {
    require(rank >= 0 && rank < world.size(), "fp8moe::comm::thread_communicator", "rank",
            "in [0, world size)");
  }
  int rank() const { return rank_; }
  int size() const { return world_->size(); }

  /// Blocks until every rank of the world has called barrier() (once per rank and generation).
  void barrier() {
    std::unique_lock lock(world_->mutex_);
    long const gen = world_->barrier_generation_;
    if (++world_->barrier_waiting_ == world_->size()) {
      world_->barrier_waiting_ = 0;
      ++world_->barrier_generation_;
      world_->cv_.notify_all();
      return;
    }
    world_->cv_.wait(lock, [&] { return world_->barrier_generation_ != gen; });
  }

  request isend(std::span<std::byte const> data, int peer, int tag) {
    check_peer(peer);
    auto st = std::make_shared<thread_world::request_state>();
    std::lock_guard lock(world_->mutex_);
    auto& box = world_->boxes_[static_cast<std::size_t>(peer)];
    for (auto it = box.recvs.begin(); it != box.recvs.end(); ++it)
      if (it->src == rank_ && it->tag == tag) {
        deliver(data, *it);
        box.recvs.erase(it);
        st->done = true;
        world_->cv_.notify_all();
        return {world_, st};
      }
    box.sends.push_back({rank_, tag, std::vector<std::byte>(data.begin(), data.end())});
    st->done = true;  // eager: the data is copied
    return {world_, st};
  }

  request irecv(std::span<std::byte> buffer, int peer, int tag) {
    check_peer(peer);
    auto st = std::make_shared<thread_world::request_state>();
    std::lock_guard lock(world_->mutex_);
    auto& box = world_->boxes_[static_cast<std::size_t>(rank_)];
    for (auto it = box.sends.begin(); it != box.sends.end(); ++it)
      if (it->src == peer && it->tag == tag) {
        thread_world::pending_recv r{peer, tag, buffer, st};
        deliver(it->data, r);
        box.sends.erase(it);
        return {world_, st};
      }
    box.recvs.push_back({peer, tag, buffer, st});
    return {world_, st};
  }

 private:
  void check_peer(int peer) const {
    require(peer >= 0 && peer < size() && peer != rank_, "fp8moe::comm::thread_communicator", "peer",
            "another rank of the world", std::to_string(peer));
  }
  static void deliver(std::span<std::byte const> data, thread_world::pending_recv& r) {
    if (data.size() != r.buffer.size())
      throw error(errc::communication,
                  fp8moe::detail::concat("fp8moe::comm::thread_communicator: message of ", data.size(),
                                         " bytes for a receive of ", r.buffer.size(), " bytes"));
    if (!data.empty()) std::memcpy(r.buffer.data(), data.data(), data.size());
    r.state->done = true;
  }
  thread_world* world_;
  int rank_;
};

// Models: communicator, async_communicator, p2p_communicator; not collective.
static_assert(p2p_communicator<thread_communicator>);
static_assert(!collective_communicator<thread_communicator>);

}  // namespace fp8moe::comm
