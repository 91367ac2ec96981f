// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// CUDA executor: runs one rank's action list with device callbacks on a compute stream while transfers
// run on a communication stream; the streams are ordered by events only (no host synchronization).
// Each run of consecutive transfers is one communicator group (ncclGroupStart/End). Buffers live in a
// caller-owned device workspace (workspace_bytes(exec, cuda_execute_shape{...})); on return, `compute` is
// ordered after everything.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <functional>
#include <map>
#include <span>
#include <tuple>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/pipeline/executor.hpp"
#include "fp8moe/pipeline/generators.hpp"
#include "fp8moe/pipeline/schedule.hpp"
#include "fp8moe/pipeline/validate.hpp"

namespace fp8moe::pipeline {

/// The device model: like stage_model, with device spans and the compute stream to enqueue on.
template <class M>
concept device_stage_model = requires(M& m, task const& t, std::span<std::byte const> in,
                                      std::span<std::byte> out, cudaStream_t st) {
  { m.activation_bytes(0) } -> std::convertible_to<std::size_t>;
  m.forward(t, in, out, st);
  m.backward_input(t, in, out, st);
  m.backward_weight(t, st);
};

template <class M>
concept device_stage_model_overlapped = device_stage_model<M> &&
    requires(M& m, task const& t, std::span<std::byte const> in, std::span<std::byte> out, cudaStream_t st) {
  m.forward_backward(t, in, out, t, in, out, st);
};

struct cuda_streams {
  cudaStream_t compute = nullptr;
  cudaStream_t comm = nullptr;  ///< must differ from compute
};

namespace detail {

inline constexpr std::size_t cuda_align = 256;
inline std::size_t align_up(std::size_t n) {
  return (n + cuda_align - 1) / cuda_align * cuda_align;
}

/// Workspace layout of one rank: a region per received tensor and per produced tensor that leaves a
/// compute (sent or handed to a local chunk). Keys (1 = activation / 0 = gradient, chunk, mb) as in
/// the host executor: received tensors are keyed by the consumer, produced ones by the producer.
struct cuda_plan {
  std::map<std::tuple<int, int, int>, std::size_t> in_offset, out_offset;
  std::size_t bytes = 0;
};

template <class Model>
cuda_plan make_cuda_plan(schedule const& s, int rank, Model const& model) {
  cuda_plan p;
  auto place = [&](auto& map, std::tuple<int, int, int> k, std::size_t n) {
    map[k] = p.bytes;
    p.bytes += align_up(n);
  };
  for (auto const& a : s.actions[rank]) {
    auto outputs = [&](bool forward, int c, int j) {
      int const other = forward ? s.next_chunk(c) : s.prev_chunk(c);
      if (other < 0) return;
      place(p.out_offset, {forward, c, j}, model.activation_bytes(forward ? c : other));
    };
    switch (a.kind) {
      case op::recv_f:
        place(p.in_offset, {1, a.chunk, a.mb}, model.activation_bytes(s.prev_chunk(a.chunk)));
        break;
      case op::recv_b:
        place(p.in_offset, {0, a.chunk, a.mb}, model.activation_bytes(a.chunk));
        break;
      case op::f:
        outputs(true, a.chunk, a.mb);
        break;
      case op::b:
      case op::i:
        outputs(false, a.chunk, a.mb);
        break;
      case op::fb:
        outputs(true, a.chunk, a.mb);
        outputs(false, a.chunk2, a.mb2);
        break;
      default:
        break;
    }
  }
  return p;
}

}  // namespace detail

/// The workspace query's shape of cuda_execute: rank `rank`'s list of `s` with `model`'s activation
/// sizes. workspace_bytes(cuda_executor{stream}, cuda_execute_shape{s, rank, model}). The shape
/// refers to `s` and `model`: use it within the full expression that builds it.
template <class Model>
struct cuda_execute_shape {
  schedule const& s;
  int rank;
  Model const& model;
};
template <class Model>
cuda_execute_shape(schedule const&, int, Model const&) -> cuda_execute_shape<Model>;

/// Device bytes cuda_execute needs (every staged tensor of the step; the same for `s` and its
/// re-lowered form, which moves transfers but adds none).
template <executor Exec, class Model>
std::size_t workspace_bytes(Exec const&, cuda_execute_shape<Model> const& shape) {
  static_assert(std::same_as<executor_t<Exec>, cuda_executor>,
                "fp8moe::pipeline::workspace_bytes(cuda_execute_shape): cuda_execute runs on CUDA streams; "
                "pass a cuda_executor (the host executor, pipeline::execute, needs no workspace)");
  require(shape.rank >= 0 && shape.rank < shape.s.ranks, "fp8moe::pipeline::workspace_bytes", "shape.rank",
          fp8moe::detail::concat("in [0, ", shape.s.ranks, ")"), fp8moe::detail::concat(shape.rank));
  return detail::make_cuda_plan(shape.s, shape.rank, shape.model).bytes;
}

/// The schedule cuda_execute runs: `s` itself when it is deadlock-free with stream-ordered transfer
/// groups, else `s` re-lowered with lowering::rendezvous (deterministic: every rank gets the same).
/// Throws if neither passes. Size the workspace with the result.
inline schedule cuda_ready_schedule(schedule const& s) {
  constexpr auto where = "fp8moe::pipeline::cuda_ready_schedule";
  auto rep = check(s, transfer_model::stream_groups);
  if (rep.ok) return s;
  validate(s);  // an invalid schedule is reported as such, not re-lowered
  schedule t = s;
  add_communication(t, lowering::rendezvous);
  rep = check(t, transfer_model::stream_groups);
  require(rep.ok, where, "schedule", "deadlock-free with stream-ordered transfer groups", rep.error);
  return t;
}

/// Enqueues rank `comm.rank()`'s list of `s` through a comm::stream_ordered_communicator (e.g.
/// comm::nccl_communicator). Returns once everything is enqueued; `streams.compute`
/// is ordered after all compute and transfers. `workspace`: device memory of
/// workspace_bytes(cuda_executor{}, cuda_execute_shape{s, rank, model}).
/// With opt.validate_schedule (default) a schedule that could hang with stream-ordered groups is
/// re-lowered first (cuda_ready_schedule); otherwise `s` must already pass that check.
template <comm::stream_ordered_communicator Comm, device_stage_model Model>
requires std::same_as<typename Comm::stream_type, cudaStream_t> execution_stats
cuda_execute(schedule const& s_in, Comm& comm, Model& model, cuda_streams streams,
             std::span<std::byte> workspace, executor_options const& opt = {}) {
  constexpr auto where = "fp8moe::pipeline::cuda_execute";
  int const rank = comm.rank();
  require(comm.size() == s_in.ranks, where, "comm", fp8moe::detail::concat(s_in.ranks, " ranks"),
          fp8moe::detail::concat(comm.size()));
  require(streams.compute != streams.comm, where, "streams", "distinct compute and communication streams");
  schedule const s = opt.validate_schedule ? cuda_ready_schedule(s_in) : s_in;
  auto const plan = detail::make_cuda_plan(s, rank, model);
  require(workspace.size() >= plan.bytes, where, "workspace",
          fp8moe::detail::concat(">= ", plan.bytes, " bytes"), fp8moe::detail::concat(workspace.size()));

  using key = std::tuple<int, int, int>;
  std::vector<cudaEvent_t> events;
  auto new_event = [&] {
    cudaEvent_t e;
    FP8MOE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    events.push_back(e);
    return e;
  };
  struct guard {
    std::vector<cudaEvent_t>& ev;
    ~guard() {
      for (auto e : ev) cudaEventDestroy(e);  // released once their work completes
    }
  } release{events};

  std::map<key, cudaEvent_t> produced_event;     // producer's output ready (compute stream)
  std::map<key, cudaEvent_t> received_event;     // transfer group holding the receive done (comm stream)
  std::map<key, std::span<std::byte>> local_in;  // local hand-offs: consumer key -> producer's region
  execution_stats st;
  weight_grad_fifo fifo;

  auto region = [&](auto const& map, key k, std::size_t n) -> std::span<std::byte> {
    auto it = map.find(k);
    if (it == map.end()) return {};
    return workspace.subspan(it->second, n);
  };
  auto make_task = [&](int chunk, int mb) { return pipeline::detail::task_of(s, chunk, mb); };
  // Input of a compute half: wait for its transfer group, or take the local producer's region.
  auto input = [&](bool forward, int chunk, int mb) -> std::span<std::byte const> {
    int const other = forward ? s.prev_chunk(chunk) : s.next_chunk(chunk);
    if (other < 0) return {};
    key const k{forward, chunk, mb};
    if (s.chunk_rank[other] == rank) return local_in.at(k);
    auto it = received_event.find(k);
    require(it != received_event.end(), where, "schedule", "a RECV before the compute using it");
    FP8MOE_CUDA_CHECK(cudaStreamWaitEvent(streams.compute, it->second, 0));
    return region(plan.in_offset, k, model.activation_bytes(forward ? other : chunk));
  };
  auto output = [&](bool forward, int chunk, int mb) -> std::span<std::byte> {
    int const other = forward ? s.next_chunk(chunk) : s.prev_chunk(chunk);
    if (other < 0) return {};
    auto out = region(plan.out_offset, {forward, chunk, mb}, model.activation_bytes(forward ? chunk : other));
    if (s.chunk_rank[other] == rank) {
      local_in[{forward, other, mb}] = out;
      ++st.local_handoffs;
    }
    return out;
  };
  auto mark_produced = [&](std::initializer_list<key> ks) {
    cudaEvent_t e = new_event();
    FP8MOE_CUDA_CHECK(cudaEventRecord(e, streams.compute));
    for (auto const& k : ks) produced_event[k] = e;
  };

  // Receives overwrite the workspace: order the comm stream after everything already enqueued on
  // the compute stream (a previous run's backward may still read the same regions).
  {
    cudaEvent_t start = new_event();
    FP8MOE_CUDA_CHECK(cudaEventRecord(start, streams.compute));
    FP8MOE_CUDA_CHECK(cudaStreamWaitEvent(streams.comm, start, 0));
  }
  // group_start now; group_end by end() or, if a send / recv throws first, by the destructor, so
  // a failed call never leaves the communicator's group open (NCCL would then queue every later
  // call without launching it)
  struct group_scope {
    Comm& c;
    bool open = true;
    explicit group_scope(Comm& cm) : c(cm) { c.group_start(); }
    group_scope(group_scope const&) = delete;
    group_scope& operator=(group_scope const&) = delete;
    void end() {
      open = false;
      c.group_end();
    }
    ~group_scope() {
      if (!open) return;
      try {
        c.group_end();
      } catch (...) {  // already unwinding from the first error
      }
    }
  };

  auto const& list = s.actions[rank];
  for (std::size_t x = 0; x < list.size();) {
    auto const& a = list[x];
    if (!is_compute(a.kind)) {
      // One group: every consecutive transfer. The comm stream first waits for the sends' producers.
      std::size_t y = x;
      while (y < list.size() && !is_compute(list[y].kind)) ++y;
      for (std::size_t z = x; z < y; ++z)
        if (is_send(list[z].kind)) {
          key const k{list[z].kind == op::send_f, list[z].chunk, list[z].mb};
          FP8MOE_CUDA_CHECK(cudaStreamWaitEvent(streams.comm, produced_event.at(k), 0));
        }
      group_scope group(comm);
      for (std::size_t z = x; z < y; ++z) {
        auto const& t = list[z];
        bool const fwd = t.kind == op::send_f || t.kind == op::recv_f;
        if (is_send(t.kind)) {
          int const to = fwd ? s.next_chunk(t.chunk) : s.prev_chunk(t.chunk);
          auto buf =
              region(plan.out_offset, {fwd, t.chunk, t.mb}, model.activation_bytes(fwd ? t.chunk : to));
          comm.send(buf.data(), buf.size(), t.peer, streams.comm);
          ++st.sends;
        } else {
          int const from = fwd ? s.prev_chunk(t.chunk) : t.chunk;
          auto buf = region(plan.in_offset, {fwd, t.chunk, t.mb}, model.activation_bytes(from));
          comm.recv(buf.data(), buf.size(), t.peer, streams.comm);
          ++st.recvs;
        }
      }
      group.end();
      cudaEvent_t done = new_event();
      FP8MOE_CUDA_CHECK(cudaEventRecord(done, streams.comm));
      for (std::size_t z = x; z < y; ++z)
        if (is_recv(list[z].kind))
          received_event[{list[z].kind == op::recv_f, list[z].chunk, list[z].mb}] = done;
      x = y;
      continue;
    }
    cudaStream_t const cs = streams.compute;
    switch (a.kind) {
      case op::f: {
        auto in = input(true, a.chunk, a.mb);
        auto out = output(true, a.chunk, a.mb);
        model.forward(make_task(a.chunk, a.mb), in, out, cs);
        mark_produced({{1, a.chunk, a.mb}});
        break;
      }
      case op::b:
      case op::i: {
        auto in = input(false, a.chunk, a.mb);
        auto out = output(false, a.chunk, a.mb);
        auto const t = make_task(a.chunk, a.mb);
        model.backward_input(t, in, out, cs);
        mark_produced({{0, a.chunk, a.mb}});
        if (a.kind == op::b)
          model.backward_weight(t, cs);
        else
          fifo.push(a.chunk, a.mb, [&model, t, cs] { model.backward_weight(t, cs); });
        st.max_fifo = std::max(st.max_fifo, fifo.size());
        break;
      }
      case op::w:
        fifo.pop_and_run(a.chunk, a.mb);
        break;
      case op::fb: {
        auto fi = input(true, a.chunk, a.mb);
        auto bi = input(false, a.chunk2, a.mb2);
        auto fo = output(true, a.chunk, a.mb);
        auto bo = output(false, a.chunk2, a.mb2);
        auto const tf = make_task(a.chunk, a.mb), tb = make_task(a.chunk2, a.mb2);
        bool fused = false;
        if constexpr (device_stage_model_overlapped<Model>) {
          if (opt.use_overlapped) {
            model.forward_backward(tf, fi, fo, tb, bi, bo, cs);
            fused = true;
          }
        }
        if (!fused) {
          model.forward(tf, fi, fo, cs);
          model.backward_input(tb, bi, bo, cs);
          model.backward_weight(tb, cs);
        }
        mark_produced({{1, a.chunk, a.mb}, {0, a.chunk2, a.mb2}});
        break;
      }
      default:
        break;
    }
    ++st.computes;
    ++x;
  }
  require(fifo.empty(), where, "schedule", "every I followed by its W");
  cudaEvent_t tail = new_event();
  FP8MOE_CUDA_CHECK(cudaEventRecord(tail, streams.comm));
  FP8MOE_CUDA_CHECK(cudaStreamWaitEvent(streams.compute, tail, 0));
  return st;
}

}  // namespace fp8moe::pipeline
