// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// CUDA executor (pipeline/cuda/executor.hpp). Host build: the schedules it runs pass the stream-group
// deadlock check it requires. nvcc build (gpu label): the toy MLP as device kernels, DualPipeV on one
// rank and 1F1B / ZB-H1 on two ranks (threads, device-to-device copies as transfers), against the host
// reference.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "fp8moe/pipeline/pipeline.hpp"
#include "toy_mlp.hpp"

namespace fp = fp8moe::pipeline;

TEST_CASE("CUDA executor schedules pass the stream-ordered transfer-group deadlock check") {
  // What cuda_execute checks (and re-lowers with lowering::rendezvous when needed); host-only here.
  for (auto s :
       {fp::dualpipe_v({.ranks = 1, .microbatches = 4}), fp::one_f_one_b({.ranks = 2, .microbatches = 4}),
        fp::zb_h1({.ranks = 2, .microbatches = 4}), fp::dualpipe({.ranks = 2, .microbatches = 4}),
        fp::dualpipe({.ranks = 4, .microbatches = 8}), fp::zb_h2({.ranks = 4, .microbatches = 8})}) {
    CAPTURE(s.name);
    auto const rep = fp::check(s, fp::transfer_model::stream_groups);
    CHECK_MESSAGE(rep.ok, rep.error);
  }
  auto v = fp::dualpipe_v({.ranks = 4, .microbatches = 10});
  CHECK(!fp::check(v, fp::transfer_model::stream_groups).ok);
  fp::add_communication(v, fp::lowering::rendezvous);
  CHECK(fp::check(v, fp::transfer_model::stream_groups).ok);
}

#if FP8MOE_CUDA_COMPILER
#include <barrier>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "device_memory.hpp"
#include "fp8moe/pipeline/cuda/executor.hpp"

namespace {

__global__ void k_forward(float const* x, float const* w, float const* b, float* y, int rows, int h) {
  int const idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= rows * h) return;
  int const r = idx / h, i = idx % h;
  float z = b[i];
  for (int j = 0; j < h; ++j) z += x[r * h + j] * w[i * h + j];
  y[idx] = tanhf(z);
}
__global__ void k_loss(float const* y, float const* t, float* g, float* loss, int n, float scale) {
  if (blockIdx.x || threadIdx.x) return;
  float l = 0;  // sequential: the host reference's order
  for (int k = 0; k < n; ++k) {
    float const d = y[k] - t[k];
    l += 0.5f * scale * d * d;
    g[k] = scale * d;
  }
  *loss = l;
}
__global__ void k_gz(float const* y, float const* g, float* gz, int n) {
  int const k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < n) gz[k] = g[k] * (1.0f - y[k] * y[k]);
}
__global__ void k_gx(float const* gz, float const* w, float* gx, int rows, int h) {
  int const idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= rows * h) return;
  int const r = idx / h, j = idx % h;
  float acc = 0;
  for (int i = 0; i < h; ++i) acc += gz[r * h + i] * w[i * h + j];
  gx[idx] = acc;
}
__global__ void k_gw(float const* x, float const* gz, float* grad, int rows, int h) {
  int const idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= h * h + h) return;
  if (idx < h * h) {
    int const i = idx / h, j = idx % h;
    float acc = 0;
    for (int r = 0; r < rows; ++r) acc += gz[r * h + i] * x[r * h + j];
    grad[idx] += acc;
  } else {
    int const i = idx - h * h;
    float acc = 0;
    for (int r = 0; r < rows; ++r) acc += gz[r * h + i];
    grad[idx] += acc;
  }
}

using fp8moe::test::to_device;

/// The toy MLP of toy_mlp.hpp on the device: parameters, data and saved tensors in device memory.
class device_toy {
 public:
  device_toy(toy::problem const& p, fp::schedule const& s, int rank) : p_(&p), n_(p.rows * p.hidden) {
    for (int mb = 0; mb < p.microbatches; ++mb) {
      x0_.push_back(to_device(p.x[mb]));
      t_.push_back(to_device(p.target[mb]));
    }
    FP8MOE_CUDA_CHECK(cudaMalloc(&loss_, p.microbatches * sizeof(float)));
    FP8MOE_CUDA_CHECK(cudaMemset(loss_, 0xFF, p.microbatches * sizeof(float)));  // poison (NaN)
    for (int k : s.rank_chunks(rank)) {
      int const st = s.chunk_stage[k];
      w_[k] = to_device(p.w[st]);
      b_[k] = to_device(p.b[st]);
      g_[k] = to_device(std::vector<float>(p.grad_size(), 0.0f));
      for (int mb = 0; mb < s.chain_microbatches(k); ++mb)
        for (auto* m : {&x_, &y_, &gl_, &gz_}) (*m)[{k, mb}] = to_device(std::vector<float>(n_, 0.0f));
    }
  }
  ~device_toy() {
    for (auto* v : {&x0_, &t_})
      for (auto* q : *v) cudaFree(q);
    for (auto* m : {&w_, &b_, &g_})
      for (auto& [k, q] : *m) cudaFree(q);
    for (auto* m : {&x_, &y_, &gl_, &gz_})
      for (auto& [k, q] : *m) cudaFree(q);
    cudaFree(loss_);
  }
  std::size_t activation_bytes(int) const { return static_cast<std::size_t>(n_) * sizeof(float); }

  void forward(fp::task const& t, std::span<std::byte const> in, std::span<std::byte> out, cudaStream_t st) {
    std::pair<int, int> const key{t.chunk, t.microbatch};
    float const* x = t.first ? x0_[t.global_microbatch] : reinterpret_cast<float const*>(in.data());
    FP8MOE_CUDA_CHECK(cudaMemcpyAsync(x_[key], x, n_ * sizeof(float), cudaMemcpyDeviceToDevice, st));
    k_forward<<<1, 128, 0, st>>>(x_[key], w_[t.chunk], b_[t.chunk], y_[key], p_->rows, p_->hidden);
    FP8MOE_CUDA_CHECK_LAUNCH();
    if (t.last) {
      k_loss<<<1, 1, 0, st>>>(y_[key], t_[t.global_microbatch], gl_[key], loss_ + t.global_microbatch, n_,
                              static_cast<float>(p_->loss_scale()));
      FP8MOE_CUDA_CHECK_LAUNCH();
    } else {
      FP8MOE_CUDA_CHECK(
          cudaMemcpyAsync(out.data(), y_[key], n_ * sizeof(float), cudaMemcpyDeviceToDevice, st));
    }
  }
  void backward_input(fp::task const& t, std::span<std::byte const> gout, std::span<std::byte> gin,
                      cudaStream_t st) {
    std::pair<int, int> const key{t.chunk, t.microbatch};
    float const* g = t.last ? gl_[key] : reinterpret_cast<float const*>(gout.data());
    k_gz<<<1, 128, 0, st>>>(y_[key], g, gz_[key], n_);
    FP8MOE_CUDA_CHECK_LAUNCH();
    if (!t.first) {
      k_gx<<<1, 128, 0, st>>>(gz_[key], w_[t.chunk], reinterpret_cast<float*>(gin.data()), p_->rows,
                              p_->hidden);
      FP8MOE_CUDA_CHECK_LAUNCH();
    }
  }
  void backward_weight(fp::task const& t, cudaStream_t st) {
    std::pair<int, int> const key{t.chunk, t.microbatch};
    k_gw<<<1, 128, 0, st>>>(x_[key], gz_[key], g_[t.chunk], p_->rows, p_->hidden);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }
  std::vector<float> grad(int chunk) const {
    std::vector<float> h(p_->grad_size());
    FP8MOE_CUDA_CHECK(cudaMemcpy(h.data(), g_.at(chunk), h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
  }
  std::vector<float> losses() const {
    std::vector<float> h(p_->microbatches);
    FP8MOE_CUDA_CHECK(cudaMemcpy(h.data(), loss_, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
  }

 private:
  toy::problem const* p_;
  int n_;
  std::vector<float*> x0_, t_;
  float* loss_ = nullptr;
  std::map<int, float*> w_, b_, g_;
  std::map<std::pair<int, int>, float*> x_, y_, gl_, gz_;
};

/// Threads as ranks on one device: a send records an event on the sender's comm stream; the matching
/// receive (by order per pair) waits for it on the receiver's comm stream and copies device to device.
/// group_end posts the group's sends before resolving its receives (blocking the host until matched).
class thread_device_world {
 public:
  explicit thread_device_world(int n) : q_(n * n), barrier_(n) {}
  void barrier() { barrier_.arrive_and_wait(); }
  struct message {
    void const* data;
    std::size_t bytes;
    cudaEvent_t ready;
  };
  void post(int src, int dst, message m) {
    std::lock_guard l(m_);
    q_[src * n() + dst].push_back(m);
    cv_.notify_all();
  }
  message take(int src, int dst) {
    std::unique_lock l(m_);
    auto& q = q_[src * n() + dst];
    cv_.wait(l, [&] { return !q.empty(); });
    auto m = q.front();
    q.pop_front();
    return m;
  }
  int n() const { return static_cast<int>(std::lround(std::sqrt(double(q_.size())))); }

 private:
  std::vector<std::deque<message>> q_;
  std::barrier<> barrier_;
  std::mutex m_;
  std::condition_variable cv_;
};

/// A comm::stream_ordered_communicator (the family of comm/communicator.hpp) for the test.
class thread_device_communicator {
 public:
  static constexpr fp8moe::comm::memory_space memory = fp8moe::comm::memory_space::device;
  using stream_type = cudaStream_t;
  thread_device_communicator(thread_device_world& w, int rank, int size) : w_(&w), rank_(rank), size_(size) {}
  ~thread_device_communicator() {
    for (auto e : events_) cudaEventDestroy(e);
  }
  int rank() const { return rank_; }
  int size() const { return size_; }
  void barrier() { w_->barrier(); }
  void group_start() { in_group_ = true; }
  void send(void const* p, std::size_t n, int peer, cudaStream_t st) {
    pending_.push_back({true, const_cast<void*>(p), n, peer, st});
    if (!in_group_) group_end();
  }
  void recv(void* p, std::size_t n, int peer, cudaStream_t st) {
    pending_.push_back({false, p, n, peer, st});
    if (!in_group_) group_end();
  }
  void group_end() {
    in_group_ = false;
    for (auto const& op : pending_)
      if (op.send) {
        cudaEvent_t e;
        FP8MOE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        events_.push_back(e);
        FP8MOE_CUDA_CHECK(cudaEventRecord(e, op.stream));
        w_->post(rank_, op.peer, {op.data, op.bytes, e});
      }
    for (auto const& op : pending_)
      if (!op.send) {
        auto m = w_->take(op.peer, rank_);
        REQUIRE(m.bytes == op.bytes);
        FP8MOE_CUDA_CHECK(cudaStreamWaitEvent(op.stream, m.ready, 0));
        FP8MOE_CUDA_CHECK(cudaMemcpyAsync(op.data, m.data, op.bytes, cudaMemcpyDeviceToDevice, op.stream));
      }
    pending_.clear();
  }

 private:
  struct op_t {
    bool send;
    void* data;
    std::size_t bytes;
    int peer;
    cudaStream_t stream;
  };
  thread_device_world* w_;
  int rank_, size_;
  bool in_group_ = false;
  std::vector<op_t> pending_;
  std::vector<cudaEvent_t> events_;
};

static_assert(fp8moe::comm::stream_ordered_communicator<thread_device_communicator>);

void run_and_compare(fp::schedule const& s, int microbatches) {
  auto const p = toy::problem::make(s.stages, microbatches);
  thread_device_world world(s.ranks);
  std::vector<std::vector<float>> losses(s.ranks), grads(s.stages);
  std::mutex gm;
  std::vector<std::thread> th;
  std::vector<std::exception_ptr> err(s.ranks);
  std::vector<std::string> short_workspace(s.ranks);
  std::barrier<> sync_point(s.ranks);
  for (int r = 0; r < s.ranks; ++r)
    th.emplace_back([&, r] {
      try {
        thread_device_communicator comm(world, r, s.ranks);
        device_toy model(p, s, r);
        cudaStream_t cs, ms;
        FP8MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking));
        FP8MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&ms, cudaStreamNonBlocking));
        std::size_t const bytes =
            fp::workspace_bytes(fp8moe::cuda_executor{cs}, fp::cuda_execute_shape{s, r, model});
        std::byte* ws = nullptr;
        FP8MOE_CUDA_CHECK(cudaMalloc(&ws, bytes + 1));
        try {  // one byte less than the query: rejected before anything is enqueued
          fp::cuda_execute(s, comm, model, {cs, ms}, std::span<std::byte>(ws, bytes - 1));
          short_workspace[r] = "accepted";
        } catch (fp8moe::error const& e) {
          short_workspace[r] = e.what();
        }
        fp::cuda_execute(s, comm, model, {cs, ms}, std::span<std::byte>(ws, bytes));
        FP8MOE_CUDA_CHECK(cudaStreamSynchronize(cs));
        sync_point.arrive_and_wait();  // peers' copies out of our workspace are done
        losses[r] = model.losses();
        {
          std::lock_guard l(gm);
          for (int k : s.rank_chunks(r)) grads[s.chunk_stage[k]] = model.grad(k);
        }
        cudaFree(ws);
        cudaStreamDestroy(cs);
        cudaStreamDestroy(ms);
      } catch (...) {
        err[r] = std::current_exception();
        sync_point.arrive_and_drop();
      }
    });
  for (auto& t : th) t.join();
  for (auto& e : err)
    if (e) std::rethrow_exception(e);
  for (auto const& m : short_workspace) CHECK(m.find("'workspace'") != std::string::npos);
  auto const ref = toy::reference<float>(p);
  auto const ref64 = toy::reference<double>(p);
  int const last_rank = s.chunk_rank[s.chains[0].chunks.back()];
  for (int mb = 0; mb < microbatches; ++mb)
    // device tanhf is within 2 ulp of the host's: relative 1e-5 over 4 layers is ample.
    CHECK(losses[last_rank][mb] == doctest::Approx(ref.losses[mb]).epsilon(1e-5));
  for (int st = 0; st < s.stages; ++st)
    for (std::size_t i = 0; i < p.grad_size(); ++i)
      CHECK(std::abs(grads[st][i] - ref.grad[st][i]) <= 1e-5 * ref64.abs_grad[st][i] + 1e-7);
}

}  // namespace

TEST_CASE("CUDA executor: DualPipeV on one rank (all transfers local) matches the host reference") {
  run_and_compare(fp::dualpipe_v({.ranks = 1, .microbatches = 4}), 4);
}

TEST_CASE("CUDA executor: 1F1B and ZB-H1 on two ranks (threads, device copies) match the host reference") {
  run_and_compare(fp::one_f_one_b({.ranks = 2, .microbatches = 4}), 4);
  run_and_compare(fp::zb_h1({.ranks = 2, .microbatches = 4}), 4);
}

TEST_CASE("CUDA executor: DualPipeV on 4 ranks (re-lowered for stream groups) matches the host reference") {
  run_and_compare(fp::dualpipe_v({.ranks = 4, .microbatches = 8}), 8);
}
#endif
