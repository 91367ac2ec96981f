// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host executor: runs one rank's action list with user callbacks (forward, backward-input,
// backward-weight, optional full backward and fused forward/backward), a point-to-point communicator,
// and a FIFO of deferred weight-gradient work. Transfers are posted asynchronously and waited on only
// when their data is needed; with `progress_thread`, compute runs on a worker thread while the calling
// thread drives the communicator (MPI needs MPI_THREAD_FUNNELED). Staging buffers are allocated per run.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <tuple>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/pipeline/schedule.hpp"
#include "fp8moe/pipeline/validate.hpp"

namespace fp8moe::pipeline {

/// What a callback is asked to do: chunk (placement), stage (model stage: equal for DualPipe's two
/// copies), micro-batch within the chain and globally, and whether the chunk starts/ends its chain
/// (first: `input` is empty, the model reads its own data; last: `output` is empty, compute the loss).
struct task {
  int chunk = 0;
  int stage = 0;
  int microbatch = 0;
  int global_microbatch = 0;
  bool first = false;
  bool last = false;
};

namespace detail {
/// The task of (chunk, micro-batch within the chain) of schedule s: its stage, global micro-batch
/// and whether the chunk starts / ends its chain (shared by the host and CUDA executors).
inline task task_of(schedule const& s, int chunk, int mb) {
  task t;
  t.chunk = chunk;
  t.stage = s.chunk_stage[chunk];
  t.microbatch = mb;
  t.global_microbatch = s.global_microbatch(chunk, mb);
  t.first = s.prev_chunk(chunk) < 0;
  t.last = s.next_chunk(chunk) < 0;
  return t;
}
}  // namespace detail

/// The model side. activation_bytes(chunk): size of the chunk's output tensor (= the next chunk's
/// input = the gradient it receives). forward writes `output`; backward_input reads `grad_output`
/// (empty for the last chunk) and writes `grad_input` (empty for the first chunk); backward_weight
/// accumulates the deferred weight gradient of (chunk, micro-batch). Output buffers are recycled
/// from earlier transfers (not zeroed): write every byte.
template <class M>
concept stage_model = requires(M& m, task const& t, std::span<std::byte const> in, std::span<std::byte> out) {
  { m.activation_bytes(0) } -> std::convertible_to<std::size_t>;
  m.forward(t, in, out);
  m.backward_input(t, in, out);
  m.backward_weight(t);
};

/// Optional: a full backward in one call (otherwise backward_input then backward_weight).
template <class M>
concept stage_model_full_backward = stage_model<M> &&
    requires(M& m, task const& t, std::span<std::byte const> in, std::span<std::byte> out) {
  m.backward(t, in, out);
};

/// Optional: a fused overlapped forward/backward pair (DualPipe's overlapped_forward_backward).
template <class M>
concept stage_model_overlapped = stage_model<M> &&
    requires(M& m, task const& t, std::span<std::byte const> in, std::span<std::byte> out) {
  m.forward_backward(t, in, out, t, in, out);
};

/// Optional: weight gradients of a chunk as floats, for summing DualPipe's duplicated stages.
template <class M>
concept stage_model_gradients = requires(M& m) {
  { m.weight_gradients(0) } -> std::convertible_to<std::span<float>>;
};

/// FIFO of deferred weight-gradient closures (DualPipe's WeightGradStore): I pushes, W pops.
class weight_grad_fifo {
 public:
  void push(int chunk, int mb, std::function<void()> work) { q_.push_back({chunk, mb, std::move(work)}); }
  /// Runs the oldest entry; it must be (chunk, mb) or the schedule and the FIFO disagree.
  void pop_and_run(int chunk, int mb) {
    constexpr auto where = "fp8moe::pipeline::weight_grad_fifo::pop_and_run";
    require(!q_.empty(), where, "W", "a pending input-gradient backward", "empty FIFO");
    auto e = std::move(q_.front());
    q_.pop_front();
    if (e.chunk != chunk || e.mb != mb)
      require(false, where, "W", fp8moe::detail::concat("chunk ", e.chunk, " mb ", e.mb),
              fp8moe::detail::concat("chunk ", chunk, " mb ", mb));
    e.work();
  }
  std::size_t size() const { return q_.size(); }
  bool empty() const { return q_.empty(); }

 private:
  struct entry {
    int chunk, mb;
    std::function<void()> work;
  };
  std::deque<entry> q_;
};

struct executor_options {
  bool validate_schedule = true;  ///< run validate() first (cheap; catches mismatched schedules)
  bool progress_thread = true;    ///< run compute on a worker while this thread polls transfers
  bool use_overlapped = true;     ///< call forward_backward for FB when the model has it
};

/// What one run did, for tests and logs.
struct execution_stats {
  int computes = 0, sends = 0, recvs = 0, local_handoffs = 0;
  int waits_blocked = 0;  ///< receives not yet complete when their data was needed
  std::size_t max_fifo = 0;
  int buffers_allocated = 0;  ///< transfer / output buffers allocated (the others were recycled)
};

namespace detail {

/// Runs jobs on one worker thread; the caller polls `poll` until the job is done.
class compute_worker {
 public:
  compute_worker() : thread_([this] { loop(); }) {}
  ~compute_worker() {
    {
      std::lock_guard l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  template <class Poll>
  void run(std::function<void()> job, Poll&& poll) {
    {
      std::lock_guard l(m_);
      job_ = std::move(job);
      busy_ = true;
      error_ = nullptr;
    }
    cv_.notify_all();
    // Poll, yielding at first, then backing off to short sleeps so that the poller does not take a
    // core from the compute on machines with few of them.
    for (int spins = 0;; ++spins) {
      {
        std::lock_guard l(m_);
        if (!busy_) break;
      }
      poll();
      if (spins < 64)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void loop() {
    std::unique_lock l(m_);
    for (;;) {
      cv_.wait(l, [&] { return stop_ || busy_; });
      if (stop_) return;
      auto job = std::move(job_);
      l.unlock();
      std::exception_ptr err;
      try {
        job();
      } catch (...) {
        err = std::current_exception();
      }
      l.lock();
      error_ = err;
      busy_ = false;
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace detail

/// Runs rank `comm.rank()`'s list of `s` over a host-memory comm::p2p_communicator (thread, single or
/// MPI communicator; comm/communicator.hpp), polling its requests while compute runs (this drives
/// MPI progress). Blocks until every compute is done and every send has completed.
/// Throws fp8moe::error if the schedule is invalid or does not fit the communicator.
template <comm::p2p_communicator Comm, stage_model Model>
requires comm::buffers_in<Comm, comm::memory_space::host> execution_stats
execute(schedule const& s, Comm& comm, Model& model, executor_options const& opt = {}) {
  constexpr auto where = "fp8moe::pipeline::execute";
  int const rank = comm.rank();
  require(comm.size() == s.ranks, where, "comm", fp8moe::detail::concat(s.ranks, " ranks"),
          fp8moe::detail::concat(comm.size()));
  if (opt.validate_schedule) validate(s);
  using request = typename Comm::request;
  constexpr int tag_activation = 0, tag_gradient = 1;

  struct slot {
    std::vector<std::byte> data;
    request req{};
    bool pending = false;
  };
  using key = std::tuple<int, int, int>;  // (1 = activation into chunk / 0 = gradient into chunk, chunk, mb)
  std::map<key, slot> inbox;
  std::deque<slot> outbox_pending;                 // sends in flight
  std::map<key, std::vector<std::byte>> produced;  // outputs waiting for their SEND action
  weight_grad_fifo fifo;
  execution_stats st;
  // Activation / gradient buffers are recycled: a buffer whose contents have been consumed (the
  // input of a finished compute, a completed send) serves the next transfer or output of the same
  // size, so a run allocates about as many buffers as are in flight at once, not one per transfer.
  std::vector<std::vector<std::byte>> spare;
  auto acquire = [&](std::size_t n) {
    for (auto it = spare.begin(); it != spare.end(); ++it)
      if (it->size() == n) {
        auto v = std::move(*it);
        spare.erase(it);
        return v;
      }
    ++st.buffers_allocated;
    return std::vector<std::byte>(n);
  };
  auto release = [&](std::vector<std::byte>&& v) {
    constexpr std::size_t max_spare = 32;
    if (!v.empty() && spare.size() < max_spare) spare.push_back(std::move(v));
  };

  auto make_task = [&](int chunk, int mb) { return detail::task_of(s, chunk, mb); };
  auto poll_all = [&] {
    for (auto& [k, sl] : inbox)
      if (sl.pending && sl.req.test()) sl.pending = false;
    for (auto& sl : outbox_pending)
      if (sl.pending && sl.req.test()) sl.pending = false;
  };
  auto reap_sends = [&] {
    while (!outbox_pending.empty() && !outbox_pending.front().pending) {
      release(std::move(outbox_pending.front().data));
      outbox_pending.pop_front();
    }
  };
  // Input of (chunk, mb): the activation from the previous chunk (forward) or the gradient from the
  // next chunk (backward); empty at the chain's ends.
  auto take_input = [&](bool forward, int chunk, int mb) -> std::vector<std::byte> {
    int const other = forward ? s.prev_chunk(chunk) : s.next_chunk(chunk);
    if (other < 0) return {};
    auto it = inbox.find({forward, chunk, mb});
    if (it == inbox.end())
      require(false, where, "schedule",
              fp8moe::detail::concat("a RECV or local hand-off before rank ", rank, " uses chunk ", chunk,
                                     " mb ", mb));
    if (it->second.pending) {
      if (!it->second.req.test()) {  // a request that test() completed is not waited on again
        ++st.waits_blocked;
        it->second.req.wait();
      }
    }
    auto data = std::move(it->second.data);
    inbox.erase(it);
    return data;
  };
  // Output of (chunk, mb) toward the next chunk (forward) or the previous one (backward).
  auto output_buffer = [&](bool forward, int chunk) -> std::vector<std::byte> {
    int const other = forward ? s.next_chunk(chunk) : s.prev_chunk(chunk);
    if (other < 0) return {};
    return acquire(model.activation_bytes(forward ? chunk : other));
  };
  auto deliver = [&](bool forward, int chunk, int mb, std::vector<std::byte>&& data) {
    int const other = forward ? s.next_chunk(chunk) : s.prev_chunk(chunk);
    if (other < 0) return;
    if (s.chunk_rank[other] == rank) {
      inbox[{forward, other, mb}] = slot{std::move(data), request{}, false};
      ++st.local_handoffs;
    } else {
      produced[{forward, chunk, mb}] = std::move(data);
    }
  };

  struct half {
    bool forward;
    int chunk, mb;
    std::vector<std::byte> in, out;
  };
  auto prepare = [&](bool forward, int chunk, int mb) {
    half h{forward, chunk, mb, take_input(forward, chunk, mb), output_buffer(forward, chunk)};
    return h;
  };
  auto run_compute = [&](std::function<void()> job) {
    if (opt.progress_thread) {
      static thread_local std::unique_ptr<detail::compute_worker> worker;
      if (!worker) worker = std::make_unique<detail::compute_worker>();
      worker->run(std::move(job), poll_all);
    } else {
      job();
    }
  };

  for (auto const& a : s.actions[rank]) {
    switch (a.kind) {
      case op::recv_f:
      case op::recv_b: {
        bool const forward = a.kind == op::recv_f;
        int const from = forward ? s.prev_chunk(a.chunk) : a.chunk;  // activation: size of producer's output
        slot sl;
        sl.data = acquire(model.activation_bytes(forward ? from : a.chunk));
        sl.req = comm.irecv(std::span<std::byte>(sl.data), a.peer, forward ? tag_activation : tag_gradient);
        sl.pending = true;
        auto [it, fresh] = inbox.insert_or_assign(key{forward, a.chunk, a.mb}, std::move(sl));
        (void)fresh;
        // The buffer moved with the slot, but a std::vector move keeps its heap storage: the posted
        // receive still points at valid memory.
        (void)it;
        ++st.recvs;
        break;
      }
      case op::send_f:
      case op::send_b: {
        bool const forward = a.kind == op::send_f;
        auto it = produced.find({forward, a.chunk, a.mb});
        require(it != produced.end(), where, "schedule", "a SEND after the compute producing it");
        slot sl;
        sl.data = std::move(it->second);
        produced.erase(it);
        sl.req =
            comm.isend(std::span<std::byte const>(sl.data), a.peer, forward ? tag_activation : tag_gradient);
        sl.pending = true;
        outbox_pending.push_back(std::move(sl));
        ++st.sends;
        break;
      }
      case op::f: {
        auto h = prepare(true, a.chunk, a.mb);
        auto t = make_task(a.chunk, a.mb);
        run_compute([&] { model.forward(t, std::span<std::byte const>(h.in), std::span<std::byte>(h.out)); });
        release(std::move(h.in));
        deliver(true, a.chunk, a.mb, std::move(h.out));
        ++st.computes;
        break;
      }
      case op::b:
      case op::i: {
        auto h = prepare(false, a.chunk, a.mb);
        auto t = make_task(a.chunk, a.mb);
        bool const full = a.kind == op::b;
        run_compute([&] {
          if constexpr (stage_model_full_backward<Model>) {
            if (full) {
              model.backward(t, std::span<std::byte const>(h.in), std::span<std::byte>(h.out));
              return;
            }
          }
          model.backward_input(t, std::span<std::byte const>(h.in), std::span<std::byte>(h.out));
          if (full) model.backward_weight(t);
        });
        if (!full) fifo.push(a.chunk, a.mb, [&model, t] { model.backward_weight(t); });
        st.max_fifo = std::max(st.max_fifo, fifo.size());
        release(std::move(h.in));
        deliver(false, a.chunk, a.mb, std::move(h.out));
        ++st.computes;
        break;
      }
      case op::w: {
        run_compute([&] { fifo.pop_and_run(a.chunk, a.mb); });
        ++st.computes;
        break;
      }
      case op::fb: {
        auto hf = prepare(true, a.chunk, a.mb);
        auto hb = prepare(false, a.chunk2, a.mb2);
        auto tf = make_task(a.chunk, a.mb), tb = make_task(a.chunk2, a.mb2);
        run_compute([&] {
          std::span<std::byte const> fi(hf.in), bi(hb.in);
          std::span<std::byte> fo(hf.out), bo(hb.out);
          if constexpr (stage_model_overlapped<Model>) {
            if (opt.use_overlapped) {
              model.forward_backward(tf, fi, fo, tb, bi, bo);
              return;
            }
          }
          model.forward(tf, fi, fo);
          if constexpr (stage_model_full_backward<Model>) {
            model.backward(tb, bi, bo);
          } else {
            model.backward_input(tb, bi, bo);
            model.backward_weight(tb);
          }
        });
        release(std::move(hf.in));
        release(std::move(hb.in));
        deliver(true, a.chunk, a.mb, std::move(hf.out));
        deliver(false, a.chunk2, a.mb2, std::move(hb.out));
        ++st.computes;
        break;
      }
    }
    poll_all();
    reap_sends();
  }
  for (auto& sl : outbox_pending)
    if (sl.pending) sl.req.wait();
  require(fifo.empty(), where, "schedule", "every I followed by its W",
          fp8moe::detail::concat(fifo.size(), " pending"));
  require(inbox.empty() && produced.empty(), where, "schedule", "every transfer consumed");
  return st;
}

/// DualPipe places every model stage twice (chunks r and PP+PP-1-r share stage r on ranks r and
/// PP-1-r). Sums each such chunk's weight gradients with its copy on the other rank, so both hold the
/// total; chunks without a copy are untouched. Call after execute() on every rank.
template <comm::p2p_communicator Comm, stage_model_gradients Model>
requires comm::buffers_in<Comm, comm::memory_space::host>
void sum_replica_gradients(schedule const& s, Comm& comm, Model& model) {
  int const rank = comm.rank();
  using request = typename Comm::request;
  struct exchange {
    int stage, peer, chunk;
    std::span<float> mine;
    std::vector<float> theirs;
    request send{}, recv{};
  };
  // (stage, peer) order is the same on both sides of every pair, so transfers match.
  std::vector<exchange> ex;
  for (int k : s.rank_chunks(rank))
    for (int o = 0; o < s.chunks(); ++o) {
      if (o == k || s.chunk_stage[o] != s.chunk_stage[k]) continue;
      require(s.chunk_rank[o] != rank, "fp8moe::pipeline::sum_replica_gradients", "schedule",
              "copies of one stage on different ranks");
      ex.push_back({s.chunk_stage[k], s.chunk_rank[o], k, {}, {}});
    }
  std::sort(ex.begin(), ex.end(), [](auto const& a, auto const& b) {
    return std::tie(a.stage, a.peer) < std::tie(b.stage, b.peer);
  });
  for (auto& e : ex) {
    e.mine = model.weight_gradients(e.chunk);
    e.theirs.resize(e.mine.size());
    int const tag = 2 + e.stage;  // 0 and 1 are the executor's activation/gradient tags
    e.send = comm.isend(std::as_bytes(e.mine), e.peer, tag);
    e.recv = comm.irecv(std::as_writable_bytes(std::span<float>(e.theirs)), e.peer, tag);
  }
  for (auto& e : ex) {
    e.recv.wait();
    e.send.wait();  // the send reads `mine`: finish it before adding into it
    for (std::size_t i = 0; i < e.mine.size(); ++i) e.mine[i] += e.theirs[i];
  }
}

}  // namespace fp8moe::pipeline
