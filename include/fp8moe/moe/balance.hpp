// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Load balancing for the router: the aux-loss-free bias update (integer counts, optional
// data-parallel sum through a callback or a host communicator) and the complementary sequence-wise
// balance loss with its gradient. update_bias updates `bias` in place; the loss backward ACCUMULATES
// into dlogits. One entry template per op on the `executor` concept, forwarding to
// balance_dispatch<Exec> (host: moe/host/balance.hpp, included below; CUDA: moe/cuda/balance.cuh).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/router.hpp"

namespace fp8moe::moe {

/// Bias update speed (DeepSeek-V3: gamma = 0.001, then 0 for the last 500B tokens).
struct bias_update_config {
  float gamma = 1e-3f;
  bool recenter = false;  ///< subtract the mean of the updated bias (torchtitan #1506); selection unchanged
};

/// No reduction: the counts are already global.
struct no_count_reduce {
  void operator()(std::span<std::int64_t>) const {}
};

/// What update_bias accepts to sum the counts over data-parallel ranks: a callable that sums E int64
/// values in place, or a comm::host_communicator (an int64 all-reduce).
template <class R>
concept count_reducer =
    std::invocable<R&, std::span<std::int64_t>> || comm::host_communicator<std::remove_cvref_t<R>>;

namespace detail {
/// One expert's aux-loss-free bias step gamma * sign(mean load - load), decided exactly in integers
/// as sign(total - E * load) (host update_bias and the device kernel).
constexpr FP8MOE_HOST_DEVICE float bias_step(std::int64_t total, std::int64_t experts, std::int64_t load,
                                             float gamma) {
  std::int64_t const d = total - experts * load;  // E * (mean - load)
  return gamma * (d > 0 ? 1.0f : (d < 0 ? -1.0f : 0.0f));
}
}  // namespace detail

/// Sequence-wise balance loss configuration (DeepSeek-V3 §2.1.2 Eq. 17-20, alpha = 1e-4).
struct sequence_balance_config {
  float alpha = 1e-4f;
  std::int64_t sequence_length = 0;  ///< tokens per sequence; 0 = all T tokens are one sequence
};

/// Per-executor implementations of the balance ops: balance_dispatch<host_executor> in
/// moe/host/balance.hpp, balance_dispatch<cuda_executor> in moe/cuda/balance.cuh.
template <class Exec>
struct balance_dispatch;

namespace detail {

inline void check_balance_args(router_config const& c, std::int64_t T, std::int64_t E,
                               sequence_balance_config const& b, char const* where) {
  check_router_config(c, where);
  require(E == c.experts, where, "logits", "E = " + std::to_string(c.experts) + " columns",
          std::to_string(E));
  require(T >= 1, where, "logits", "at least one token");
  std::int64_t const L = b.sequence_length ? b.sequence_length : T;
  require(L >= 1 && T % L == 0, where, "cfg.sequence_length", "a divisor of T = " + std::to_string(T),
          std::to_string(b.sequence_length));
}

}  // namespace detail

/// The shape of sequence_balance_loss / sequence_balance_loss_backward, the argument of their
/// workspace query: T tokens, E experts, top-k, sequences of sequence_length tokens (0 = all T).
struct balance_shape {
  std::int64_t tokens = 0;           ///< T
  std::int64_t experts = 0;          ///< E (router_config::experts)
  std::int64_t k = 0;                ///< router_config::k
  std::int64_t sequence_length = 0;  ///< sequence_balance_config::sequence_length
};

/// Bytes of scratch sequence_balance_loss and its backward need on `exec` for this shape (the `ws`
/// they take): 0 on the host (it needs none); on the device the per-sequence counts and sums.
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, balance_shape const& s) {
  using D = balance_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::workspace_bytes: this executor has no balance path; for cuda_executor include "
                "\"fp8moe/moe/cuda/balance.cuh\" (nvcc)");
  std::int64_t const L = s.sequence_length ? s.sequence_length : s.tokens;
  require(s.tokens >= 1 && s.experts >= 1 && s.k >= 1 && L >= 1 && s.tokens % L == 0,
          "fp8moe::moe::workspace_bytes", "balance_shape",
          "tokens >= 1, experts >= 1, k >= 1, sequence_length 0 or a divisor of tokens",
          detail::concat(s.tokens, ", ", s.experts, ", ", s.k, ", ", s.sequence_length));
  if constexpr (has_dispatch<D>)
    return D::workspace_bytes(exec, s);
  else
    return 0;
}

/// bias_i += gamma * sign(mean load - load_i) (arXiv:2408.15664 Alg. 1; Megatron get_updated_expert_bias).
/// counts (E) integer tokens per expert of this rank; `reduce` sums them over data-parallel ranks in
/// place: a callback called once with E int64 values, or a comm::host_communicator (all-reduce).
/// sign(0) = 0; the sign is decided exactly in integers: sign(total - E * load_i). On the device the
/// counts must already be global (reduce = no_count_reduce; e.g. after an NCCL all-reduce) and
/// cfg.recenter false.
template <executor Exec, std::integral Count, class Reduce = no_count_reduce>
requires count_reducer<Reduce>
void update_bias(Exec const& exec, vector_view<float> bias, vector_view<Count const> counts,
                 bias_update_config cfg = {}, Reduce&& reduce = {}) {
  using D = balance_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::update_bias: this executor has no balance path; for cuda_executor include "
                "\"fp8moe/moe/cuda/balance.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::update_bias(exec, bias, counts, cfg, static_cast<Reduce&&>(reduce));
}

/// L = alpha * mean over sequences of sum_i f_i P_i, with f_i = E/(k L) * #{t : i in TopK(s_t)} and
/// P_i = (1/L) sum_t s_{t,i} / sum_j s_{t,j} (s = unbiased scores of logits (T,E)), written to *loss
/// (one float; device memory on a device executor, where `ws` holds workspace_bytes(exec, balance_shape)).
template <executor Exec, class Logit>
void sequence_balance_loss(Exec const& exec, router_config const& c, matrix_view<Logit> logits,
                           sequence_balance_config cfg, float* loss, device_workspace ws = {}) {
  using D = balance_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::sequence_balance_loss: this executor has no balance path; for cuda_executor "
                "include \"fp8moe/moe/cuda/balance.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::sequence_balance_loss(exec, c, logits, cfg, loss, ws);
}

/// The loss as a host double (host executor only: a device result would need a sync; there, pass
/// `loss` and a workspace to the form above).
template <executor Exec, class Logit>
double sequence_balance_loss(Exec const& exec, router_config const& c, matrix_view<Logit> logits,
                             sequence_balance_config cfg = {}) {
  static_assert(host_executor_like<Exec>,
                "fp8moe::moe::sequence_balance_loss: the returning form runs on the host only; on a device "
                "executor call sequence_balance_loss(exec, c, logits, cfg, loss, workspace)");
  if constexpr (host_executor_like<Exec>)
    return balance_dispatch<executor_t<Exec>>::sequence_balance_loss(exec, c, logits, cfg);
  else
    return 0.0;
}

/// Gradient of sequence_balance_loss w.r.t. logits (T,E), scaled by `dloss`, ACCUMULATED into
/// dlogits (T,E). f is piecewise constant (not differentiated); the gradient flows through P.
/// A device executor needs `ws` (workspace_bytes(exec, balance_shape)).
template <executor Exec, class Logit>
void sequence_balance_loss_backward(Exec const& exec, router_config const& c, matrix_view<Logit> logits,
                                    matrix_view<float> dlogits, sequence_balance_config cfg = {},
                                    float dloss = 1.0f, device_workspace ws = {}) {
  using D = balance_dispatch<executor_t<Exec>>;
  static_assert(has_dispatch<D>,
                "fp8moe::moe::sequence_balance_loss_backward: this executor has no balance path; for "
                "cuda_executor include \"fp8moe/moe/cuda/balance.cuh\" (nvcc)");
  if constexpr (has_dispatch<D>) D::sequence_balance_loss_backward(exec, c, logits, dlogits, cfg, dloss, ws);
}

}  // namespace fp8moe::moe

#include "fp8moe/moe/host/balance.hpp"  // balance_dispatch<host_executor>
