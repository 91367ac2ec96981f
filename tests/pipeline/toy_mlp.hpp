// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Test model for the pipeline executor: S stages y = tanh(x W^T + b) (x (rows,H), W (H,H), b (H)), a
// mean-squared loss after the last stage, a one-process reference (float or double) and a per-rank
// stage model implementing fp8moe::pipeline::stage_model. Gradients accumulate over micro-batches.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstring>
#include <map>
#include <span>
#include <tuple>
#include <vector>

#include "fp8moe/pipeline/executor.hpp"
#include "fp8moe/pipeline/schedule.hpp"
#include "test_support.hpp"

namespace toy {

struct problem {
  int stages = 4, microbatches = 8, rows = 2, hidden = 8;
  std::vector<std::vector<float>> x, target;  // (M) of (rows,H)
  std::vector<std::vector<float>> w, b;       // (S) of (H,H) and (H)

  static problem make(int stages, int microbatches, int rows = 2, int hidden = 8) {
    problem p{stages, microbatches, rows, hidden, {}, {}, {}, {}};
    for (int j = 0; j < microbatches; ++j) {
      p.x.push_back(fp8moe::test::random_normal(rows * hidden, 1.0f, 100 + j));
      p.target.push_back(fp8moe::test::random_uniform(rows * hidden, -0.5f, 0.5f, 500 + j));
    }
    for (int s = 0; s < stages; ++s) {
      p.w.push_back(fp8moe::test::random_normal(hidden * hidden, 0.6f, 900 + s));
      p.b.push_back(fp8moe::test::random_normal(hidden, 0.1f, 1300 + s));
    }
    return p;
  }
  std::size_t grad_size() const { return static_cast<std::size_t>(hidden * hidden + hidden); }
  double loss_scale() const { return 1.0 / (rows * hidden * microbatches); }
};

/// One stage, any precision. z = x W^T + b; y = tanh(z).
template <class T>
void stage_forward(problem const& p, int s, T const* x, T* y) {
  int const H = p.hidden;
  for (int r = 0; r < p.rows; ++r)
    for (int i = 0; i < H; ++i) {
      T z = static_cast<T>(p.b[s][i]);
      for (int j = 0; j < H; ++j) z += x[r * H + j] * static_cast<T>(p.w[s][i * H + j]);
      y[r * H + i] = std::tanh(z);
    }
}
/// gz = g * (1 - y^2); gx = gz W (gx may be null).
template <class T>
void stage_backward_input(problem const& p, int s, T const* y, T const* g, T* gz, T* gx) {
  int const H = p.hidden;
  for (int k = 0; k < p.rows * H; ++k) gz[k] = g[k] * (T(1) - y[k] * y[k]);
  if (!gx) return;
  for (int r = 0; r < p.rows; ++r)
    for (int j = 0; j < H; ++j) {
      T acc = 0;
      for (int i = 0; i < H; ++i) acc += gz[r * H + i] * static_cast<T>(p.w[s][i * H + j]);
      gx[r * H + j] = acc;
    }
}
/// grad (H*H weights, then H biases) += gz^T x, sum_rows gz.
template <class T>
void stage_backward_weight(problem const& p, T const* x, T const* gz, T* grad) {
  int const H = p.hidden;
  for (int i = 0; i < H; ++i) {
    for (int j = 0; j < H; ++j) {
      T acc = 0;
      for (int r = 0; r < p.rows; ++r) acc += gz[r * H + i] * x[r * H + j];
      grad[i * H + j] += acc;
    }
    T acc = 0;
    for (int r = 0; r < p.rows; ++r) acc += gz[r * H + i];
    grad[H * H + i] += acc;
  }
}
/// Loss of one micro-batch (0.5 * scale * |y - t|^2) and its gradient dL/dy.
template <class T>
T loss_and_grad(problem const& p, int mb, T const* y, T* g) {
  T loss = 0;
  T const scale = static_cast<T>(p.loss_scale());
  for (int k = 0; k < p.rows * p.hidden; ++k) {
    T const d = y[k] - static_cast<T>(p.target[mb][k]);
    loss += T(0.5) * scale * d * d;
    g[k] = scale * d;
  }
  return loss;
}

/// One process, micro-batch after micro-batch: total loss and per-stage gradients.
template <class T>
struct reference_result {
  T loss = 0;
  std::vector<T> losses;                 // (M)
  std::vector<std::vector<T>> grad;      // (S) of (H*H + H)
  std::vector<std::vector<T>> abs_grad;  // (S) of (H*H + H): sum over micro-batches of |contribution|
};
template <class T>
reference_result<T> reference(problem const& p) {
  int const S = p.stages, n = p.rows * p.hidden;
  reference_result<T> out;
  out.grad.assign(S, std::vector<T>(p.grad_size(), T(0)));
  out.abs_grad = out.grad;
  for (int mb = 0; mb < p.microbatches; ++mb) {
    std::vector<std::vector<T>> act(S + 1, std::vector<T>(n));
    for (int k = 0; k < n; ++k) act[0][k] = static_cast<T>(p.x[mb][k]);
    for (int s = 0; s < S; ++s) stage_forward<T>(p, s, act[s].data(), act[s + 1].data());
    std::vector<T> g(n), gz(n), gx(n);
    T const l = loss_and_grad<T>(p, mb, act[S].data(), g.data());
    out.losses.push_back(l);
    out.loss += l;
    for (int s = S - 1; s >= 0; --s) {
      stage_backward_input<T>(p, s, act[s + 1].data(), g.data(), gz.data(), s ? gx.data() : nullptr);
      stage_backward_weight<T>(p, act[s].data(), gz.data(), out.grad[s].data());
      std::vector<T> one(p.grad_size(), T(0));
      stage_backward_weight<T>(p, act[s].data(), gz.data(), one.data());
      for (std::size_t k = 0; k < one.size(); ++k) out.abs_grad[s][k] += std::abs(one[k]);
      g = gx;
    }
  }
  return out;
}

/// The per-rank side for the executor: holds each local chunk's saved tensors and gradients.
class stage_model {
 public:
  stage_model(problem const& p, fp8moe::pipeline::schedule const& s, int rank) : p_(&p) {
    for (int k : s.rank_chunks(rank)) grads_[k].assign(p.grad_size(), 0.0f);
  }
  std::size_t activation_bytes(int) const {
    return static_cast<std::size_t>(p_->rows * p_->hidden) * sizeof(float);
  }

  void forward(fp8moe::pipeline::task const& t, std::span<std::byte const> in, std::span<std::byte> out) {
    int const n = p_->rows * p_->hidden;
    auto& sv = saved_[{t.chunk, t.microbatch}];
    sv.x.resize(n);
    sv.y.resize(n);
    if (t.first)
      std::memcpy(sv.x.data(), p_->x[t.global_microbatch].data(), n * sizeof(float));
    else
      std::memcpy(sv.x.data(), in.data(), n * sizeof(float));
    stage_forward<float>(*p_, t.stage, sv.x.data(), sv.y.data());
    if (t.last) {
      sv.g.resize(n);
      losses[t.global_microbatch] = loss_and_grad<float>(*p_, t.global_microbatch, sv.y.data(), sv.g.data());
    } else {
      std::memcpy(out.data(), sv.y.data(), n * sizeof(float));
    }
    ++forwards;
  }
  void backward_input(fp8moe::pipeline::task const& t, std::span<std::byte const> grad_out,
                      std::span<std::byte> grad_in) {
    int const n = p_->rows * p_->hidden;
    auto& sv = saved_.at({t.chunk, t.microbatch});
    if (!t.last) {
      sv.g.resize(n);
      std::memcpy(sv.g.data(), grad_out.data(), n * sizeof(float));
    }
    sv.gz.resize(n);
    std::vector<float> gx(n);
    stage_backward_input<float>(*p_, t.stage, sv.y.data(), sv.g.data(), sv.gz.data(),
                                t.first ? nullptr : gx.data());
    if (!t.first) std::memcpy(grad_in.data(), gx.data(), n * sizeof(float));
    ++input_backwards;
  }
  void backward_weight(fp8moe::pipeline::task const& t) {
    auto it = saved_.find({t.chunk, t.microbatch});
    stage_backward_weight<float>(*p_, it->second.x.data(), it->second.gz.data(), grads_.at(t.chunk).data());
    saved_.erase(it);  // the activation is released once its weight gradient is done
    ++weight_backwards;
  }
  std::span<float> weight_gradients(int chunk) { return grads_.at(chunk); }
  std::size_t live_activations() const { return saved_.size(); }

  std::map<int, float> losses;  // global micro-batch -> loss
  int forwards = 0, input_backwards = 0, weight_backwards = 0;

 private:
  struct saved {
    std::vector<float> x, y, g, gz;
  };
  problem const* p_;
  std::map<int, std::vector<float>> grads_;
  std::map<std::pair<int, int>, saved> saved_;
};

/// Same model with a fused forward/backward hook (sequential inside; counts its calls).
class overlapped_stage_model : public stage_model {
 public:
  using stage_model::stage_model;
  void forward_backward(fp8moe::pipeline::task const& tf, std::span<std::byte const> fi,
                        std::span<std::byte> fo, fp8moe::pipeline::task const& tb,
                        std::span<std::byte const> bi, std::span<std::byte> bo) {
    // Interleave as DualPipe's hook may: the backward's input-gradient first, then the forward.
    backward_input(tb, bi, bo);
    forward(tf, fi, fo);
    backward_weight(tb);
    ++fused;
  }
  int fused = 0;
};

}  // namespace toy
