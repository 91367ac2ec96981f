// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// CUDA path of the balance ops (balance_dispatch<cuda_executor>): the bias update with already-global
// counts, and the sequence-wise balance loss and its gradient (same formulas as moe/host/balance.hpp,
// the per-token scores and their derivative from score_trait, the top-k from the shared router code).
// Deterministic: integer counts, sums in a fixed order, no float atomics. Enqueued on exec.stream; the
// loss lands in device memory; the backward ACCUMULATES into dlogits. Caller-owned workspace
// (workspace_bytes(exec, balance_shape), moe/balance.hpp).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <type_traits>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/moe/balance.hpp"

namespace fp8moe::moe {
namespace cuda_detail {

struct balance_scratch {
  std::size_t sn, top, f, seq, total;
};
inline balance_scratch balance_layout(std::int64_t T, std::int64_t E, std::int64_t k, std::int64_t B) {
  auto const a = [](std::size_t b) { return (b + 255) / 256 * 256; };
  balance_scratch s{a(static_cast<std::size_t>(T * E) * 4), a(static_cast<std::size_t>(T * k) * 4),
                    a(static_cast<std::size_t>(B * E) * 4), a(static_cast<std::size_t>(B) * 8), 0};
  s.total = s.sn + s.top + s.f + s.seq;
  return s;
}

/// Thread per token: normalized scores s' = s / sum s (T,E) and the plain top-k of s (T,k).
template <class Logit>
__global__ void balance_scores_kernel(router_config c, matrix_view<Logit> u, float* sn, std::int32_t* top) {
  std::int64_t const t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= u.rows) return;
  score_trait const f(c.score, &u(t, 0), u.col_stride, c.experts);
  detail::top_list<max_k> best;
  double sum = 0.0;
  for (int e = 0; e < c.experts; ++e) {
    float const s = f.value(static_cast<float>(u(t, e)));
    sn[t * c.experts + e] = s;
    sum += s;
    best.offer(c.k, s, e);
  }
  for (int e = 0; e < c.experts; ++e) sn[t * c.experts + e] = static_cast<float>(sn[t * c.experts + e] / sum);
  for (int j = 0; j < c.k; ++j) top[t * c.k + j] = best.index[j];
}

/// Block per sequence: f (integer counts, shared-memory histogram), P in token order, sequence loss.
__global__ void balance_sequence_kernel(router_config c, std::int64_t L, float const* sn,
                                        std::int32_t const* top, std::int32_t* f_out, double* seq_loss) {
  extern __shared__ int f[];  // (E)
  std::int64_t const b = blockIdx.x, E = c.experts;
  for (std::int64_t e = threadIdx.x; e < E; e += blockDim.x) f[e] = 0;
  __syncthreads();
  for (std::int64_t i = threadIdx.x; i < L * c.k; i += blockDim.x) atomicAdd(&f[top[b * L * c.k + i]], 1);
  __syncthreads();
  __shared__ double part[256];
  double acc = 0.0;
  for (std::int64_t e = threadIdx.x; e < E; e += blockDim.x) {
    double P = 0.0;
    for (std::int64_t t = b * L; t < (b + 1) * L; ++t) P += sn[t * E + e];
    f_out[b * E + e] = f[e];
    acc += static_cast<double>(f[e]) * static_cast<double>(E) / (static_cast<double>(c.k) * L) * (P / L);
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (unsigned i = 0; i < blockDim.x; ++i) s += part[i];
    seq_loss[b] = s;
  }
}

__global__ void balance_total_kernel(double const* seq_loss, std::int64_t B, float alpha, float* loss) {
  double s = 0.0;
  for (std::int64_t b = 0; b < B; ++b) s += seq_loss[b];
  *loss = static_cast<float>(static_cast<double>(alpha) * s / static_cast<double>(B));
}

/// Thread per token: dlogits += d(loss)/d(logits) through P (f held fixed).
template <class Logit>
__global__ void balance_backward_kernel(router_config c, matrix_view<Logit> u, std::int64_t L, float alpha,
                                        std::int64_t B, float dloss, std::int32_t const* f,
                                        matrix_view<float> du) {
  std::int64_t const t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= u.rows) return;
  std::int64_t const E = c.experts, b = t / L;
  double const scale = static_cast<double>(dloss) * alpha / static_cast<double>(B) * static_cast<double>(E) /
                       (static_cast<double>(c.k) * L * L);
  score_trait const sf(c.score, &u(t, 0), u.col_stride, c.experts);
  double sum = 0.0, gs = 0.0;
  for (int e = 0; e < E; ++e) sum += sf.value(static_cast<float>(u(t, e)));
  for (int e = 0; e < E; ++e) gs += scale * f[b * E + e] * sf.value(static_cast<float>(u(t, e))) / sum;
  double sds = 0.0;  // the coupled (softmax) term: sum_e ds_e s_e
  if (sf.coupled())
    for (int e = 0; e < E; ++e) {
      double const s = sf.value(static_cast<float>(u(t, e)));
      sds += (scale * f[b * E + e] - gs) / sum * s;
    }
  for (int e = 0; e < E; ++e) {
    double const s = sf.value(static_cast<float>(u(t, e)));
    double const ds = (scale * f[b * E + e] - gs) / sum;
    du(t, e) += static_cast<float>(sf.grad<double>(s, ds, sds));
  }
}

template <class Count>
__global__ void update_bias_kernel(vector_view<float> bias, vector_view<Count const> counts, float gamma) {
  __shared__ long long total;
  if (threadIdx.x == 0) {
    long long s = 0;
    for (std::int64_t e = 0; e < counts.size; ++e) s += static_cast<long long>(counts[e]);
    total = s;
  }
  __syncthreads();
  for (std::int64_t e = threadIdx.x; e < bias.size; e += blockDim.x) {
    bias[e] += detail::bias_step(total, bias.size, static_cast<std::int64_t>(counts[e]), gamma);
  }
}

}  // namespace cuda_detail

namespace detail {
template <class Logit>
void balance_forward_device(cuda_executor const& exec, router_config const& c, matrix_view<Logit> logits,
                            sequence_balance_config const& b, device_workspace ws, char const* where) {
  check_balance_args(c, logits.rows, logits.cols, b, where);
  std::int64_t const T = logits.rows, L = b.sequence_length ? b.sequence_length : T, B = T / L;
  auto const lay = cuda_detail::balance_layout(T, c.experts, c.k, B);
  require(ws.data != nullptr && ws.bytes >= lay.total, where, "workspace",
          std::to_string(lay.total) + " bytes (workspace_bytes(exec, balance_shape))",
          std::to_string(ws.bytes));
  // one int per expert of dynamic shared memory next to the kernel's 2 KB of static arrays: stay
  // within the 48 KB every device grants without an opt-in
  require(c.experts <= 11776, where, "config.experts", "at most 11776 experts on the device",
          std::to_string(c.experts));
  char* base = static_cast<char*>(ws.data);
  auto* sn = reinterpret_cast<float*>(base);
  auto* top = reinterpret_cast<std::int32_t*>(base + lay.sn);
  auto* f = reinterpret_cast<std::int32_t*>(base + lay.sn + lay.top);
  auto* seq = reinterpret_cast<double*>(base + lay.sn + lay.top + lay.f);
  cuda_detail::
      balance_scores_kernel<<<static_cast<unsigned>(ceil_div<std::int64_t>(T, 128)), 128, 0, exec.stream>>>(
          c, logits, sn, top);
  FP8MOE_CUDA_CHECK_LAUNCH();
  cuda_detail::balance_sequence_kernel<<<static_cast<unsigned>(B), 256,
                                         sizeof(int) * static_cast<std::size_t>(c.experts), exec.stream>>>(
      c, L, sn, top, f, seq);
  FP8MOE_CUDA_CHECK_LAUNCH();
}
}  // namespace detail

template <>
struct balance_dispatch<cuda_executor> {
  /// Per-sequence counts and sums of the balance loss (shape validated by the entry point).
  static std::size_t workspace_bytes(cuda_executor const&, balance_shape const& s) {
    std::int64_t const L = s.sequence_length ? s.sequence_length : s.tokens;
    return cuda_detail::balance_layout(s.tokens, s.experts, s.k, s.tokens / L).total;
  }
  /// Bias update with already-reduced counts (e.g. after an NCCL all-reduce): no reducer, no recenter.
  template <std::integral Count, class Reduce>
  static void update_bias(cuda_executor const& exec, vector_view<float> bias, vector_view<Count const> counts,
                          bias_update_config cfg, Reduce&&) {
    static_assert(std::same_as<std::remove_cvref_t<Reduce>, no_count_reduce>,
                  "fp8moe::moe::update_bias on the device takes global counts: all-reduce them first (e.g. "
                  "NCCL) and pass no reducer");
    constexpr char const* where = "fp8moe::moe::update_bias";
    require(bias.size >= 1 && bias.data != nullptr, where, "bias", "E >= 1 entries");
    require(counts.size == bias.size, where, "counts", "bias.size entries", std::to_string(counts.size));
    require(std::isfinite(cfg.gamma) && cfg.gamma >= 0.0f, where, "cfg.gamma", "finite and >= 0");
    require(!cfg.recenter, where, "cfg.recenter", "false on the device (use the host executor)");
    cuda_detail::update_bias_kernel<<<1, 256, 0, exec.stream>>>(bias, counts, cfg.gamma);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }

  /// Writes the loss (one float, device memory) to `loss`.
  template <class Logit>
  static void sequence_balance_loss(cuda_executor const& exec, router_config const& c,
                                    matrix_view<Logit> logits, sequence_balance_config b, float* loss,
                                    device_workspace ws) {
    constexpr char const* where = "fp8moe::moe::sequence_balance_loss";
    require(loss != nullptr, where, "loss", "a device float");
    detail::balance_forward_device(exec, c, logits, b, ws, where);
    std::int64_t const T = logits.rows, L = b.sequence_length ? b.sequence_length : T, B = T / L;
    auto const lay = cuda_detail::balance_layout(T, c.experts, c.k, B);
    auto* seq = reinterpret_cast<double*>(static_cast<char*>(ws.data) + lay.sn + lay.top + lay.f);
    cuda_detail::balance_total_kernel<<<1, 1, 0, exec.stream>>>(seq, B, b.alpha, loss);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }

  /// dlogits (T,E) += dloss * dL/dlogits.
  template <class Logit>
  static void sequence_balance_loss_backward(cuda_executor const& exec, router_config const& c,
                                             matrix_view<Logit> logits, matrix_view<float> dlogits,
                                             sequence_balance_config b, float dloss, device_workspace ws) {
    constexpr char const* where = "fp8moe::moe::sequence_balance_loss_backward";
    check_shape(dlogits, logits.rows, logits.cols, where, "dlogits");
    detail::balance_forward_device(exec, c, logits, b, ws, where);
    std::int64_t const T = logits.rows, L = b.sequence_length ? b.sequence_length : T, B = T / L;
    auto const lay = cuda_detail::balance_layout(T, c.experts, c.k, B);
    auto const* f = reinterpret_cast<std::int32_t const*>(static_cast<char*>(ws.data) + lay.sn + lay.top);
    cuda_detail::balance_backward_kernel<<<static_cast<unsigned>(ceil_div<std::int64_t>(T, 128)), 128, 0,
                                           exec.stream>>>(c, logits, L, b.alpha, B, dloss, f, dlogits);
    FP8MOE_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace fp8moe::moe
