// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// attention: the core of multi-head latent attention (DeepSeek-V2/V3 MLA) in its two equal forms.
// NAIVE (prefill, training; with its backward): per head [k_nope | v] rows expanded from the latent.
// ABSORBED (decode over the compressed cache): W_UK folded into the query, W_UV applied after the
// softmax, every head reading the one latent + rope-key row per token. Outputs are OVERWRITTEN;
// float tensors, row-major; scratch comes from a caller workspace (empty: the call allocates).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"

namespace fp8moe::attention {

/// Undefined primary template; attention/host/mla.hpp defines the host_executor specialisation.
template <class Exec>
struct mla_dispatch;

/// The head geometry of one MLA layer (V3: 128, 128, 64, 128, 512, 0.135234) and the softmax
/// scale (qk_head_dim^-0.5 * mscale^2 under YaRN: nn::yarn_softmax_scale).
struct mla_dims {
  std::int64_t heads, qk_nope_head_dim, qk_rope_head_dim, v_head_dim, kv_lora_rank;
  float softmax_scale;

  constexpr FP8MOE_HOST_DEVICE std::int64_t qk_head_dim() const {
    return qk_nope_head_dim + qk_rope_head_dim;
  }
  /// Columns of q: per head [q_nope | q_rope].
  constexpr FP8MOE_HOST_DEVICE std::int64_t q_cols() const { return heads * qk_head_dim(); }
  /// Columns of kv (= rows of wkv_b): per head [k_nope | v].
  constexpr FP8MOE_HOST_DEVICE std::int64_t kv_cols() const {
    return heads * (qk_nope_head_dim + v_head_dim);
  }
  /// Columns of the attention output (the input of wo), head-major.
  constexpr FP8MOE_HOST_DEVICE std::int64_t out_cols() const { return heads * v_head_dim; }
  /// Values the absorbed form caches per token: kv_lora_rank + qk_rope_head_dim (V3: 576).
  constexpr FP8MOE_HOST_DEVICE std::int64_t cache_values_per_token() const {
    return kv_lora_rank + qk_rope_head_dim;
  }
  /// Values a naive K/V cache would hold per token: H * (qk_head_dim + v_head_dim) (V3: 40,960).
  constexpr FP8MOE_HOST_DEVICE std::int64_t naive_cache_values_per_token() const {
    return heads * (qk_head_dim() + v_head_dim);
  }
};

/// Keys query row t sees under the causal mask when row 0 sits at key index q_pos0: s < result.
constexpr FP8MOE_HOST_DEVICE std::int64_t mla_visible_keys(std::int64_t q_pos0, std::int64_t t) {
  return q_pos0 + t + 1;
}

/// Softmax in place over row[0, visible) of a row of n scores (already scaled); row[visible, n)
/// becomes 0. visible >= 1.
FP8MOE_HOST_DEVICE void mla_softmax_row(float* row, std::int64_t visible, std::int64_t n) {
  float m = row[0];
  for (std::int64_t s = 1; s < visible; ++s) m = row[s] > m ? row[s] : m;
  float sum = 0.0f;
  for (std::int64_t s = 0; s < visible; ++s) {
#if FP8MOE_IS_DEVICE_CODE
    row[s] = ::expf(row[s] - m);
#else
    row[s] = std::exp(row[s] - m);
#endif
    sum += row[s];
  }
  float const inv = 1.0f / sum;
  for (std::int64_t s = 0; s < visible; ++s) row[s] *= inv;
  for (std::int64_t s = visible; s < n; ++s) row[s] = 0.0f;
}

/// The softmax backward of one row in place: dp[s] <- p[s] * (dp[s] - sum_s' p[s'] dp[s']).
FP8MOE_HOST_DEVICE void mla_softmax_row_backward(float const* p, float* dp, std::int64_t n) {
  float dot = 0.0f;
  for (std::int64_t s = 0; s < n; ++s) dot += p[s] * dp[s];
  for (std::int64_t s = 0; s < n; ++s) dp[s] = p[s] * (dp[s] - dot);
}

namespace detail {

inline void check_dims(char const* where, mla_dims const& d) {
  require(d.heads > 0, where, "dims.heads", "> 0", std::to_string(d.heads));
  require(d.qk_nope_head_dim > 0, where, "dims.qk_nope_head_dim", "> 0", std::to_string(d.qk_nope_head_dim));
  require(d.qk_rope_head_dim > 0, where, "dims.qk_rope_head_dim", "> 0", std::to_string(d.qk_rope_head_dim));
  require(d.v_head_dim > 0, where, "dims.v_head_dim", "> 0", std::to_string(d.v_head_dim));
  require(d.kv_lora_rank > 0, where, "dims.kv_lora_rank", "> 0", std::to_string(d.kv_lora_rank));
  require(std::isfinite(d.softmax_scale) && d.softmax_scale > 0.0f, where, "dims.softmax_scale",
          "a finite value > 0", std::to_string(d.softmax_scale));
}

/// A row-major (col_stride 1) matrix of exactly rows x cols.
template <class T>
void check_rm(char const* where, char const* arg, matrix_view<T> const& m, std::int64_t rows,
              std::int64_t cols) {
  check_matrix(m, where, arg);
  check_shape(m, rows, cols, where, arg);
  require(m.empty() || m.col_stride == 1, where, arg, "row-major (col_stride 1)");
}

/// q (T, H*(dn+dr)), k_rope (S, dr), out (T, H*dv), 0 <= q_pos0, q_pos0 + T <= S.
inline void check_common(char const* where, mla_dims const& d, matrix_view<float const> const& q,
                         matrix_view<float const> const& k_rope, std::int64_t S, std::int64_t q_pos0,
                         matrix_view<float const> const& out, char const* out_name) {
  check_dims(where, d);
  std::int64_t const T = q.rows;
  check_rm(where, "q", q, T, d.q_cols());
  check_rm(where, "k_rope", k_rope, S, d.qk_rope_head_dim);
  check_rm(where, out_name, out, T, d.out_cols());
  require(q_pos0 >= 0, where, "q_pos0", ">= 0", std::to_string(q_pos0));
  require(q_pos0 + T <= S, where, "q_pos0",
          "q_pos0 + T <= S (keys: " + std::to_string(S) + ", queries T = " + std::to_string(T) + ")",
          std::to_string(q_pos0));
}

}  // namespace detail

/// The workspace query's shape of mla_naive_forward: T queries over S keys (probs not given by the
/// caller). workspace_bytes(exec, mla_naive_shape{dims, T, S}).
struct mla_naive_shape {
  mla_dims dims;
  std::int64_t T, S;
};

/// The workspace query's shape of mla_naive_backward: T queries over S keys.
struct mla_naive_backward_shape {
  mla_dims dims;
  std::int64_t T, S;
};

/// The workspace query's shape of mla_absorbed_forward: T queries over S cached keys.
struct mla_absorbed_shape {
  mla_dims dims;
  std::int64_t T, S;
};

namespace detail {

inline void check_query_shape(char const* where, mla_dims const& d, std::int64_t T, std::int64_t S) {
  check_dims(where, d);
  require(T >= 0, where, "shape.T", ">= 0", std::to_string(T));
  require(S >= 0, where, "shape.S", ">= 0", std::to_string(S));
}

}  // namespace detail

/// Scratch bytes of mla_naive_forward (its `workspace`).
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, mla_naive_shape const& s) {
  static_assert(has_dispatch<mla_dispatch<executor_t<Exec>>>,
                "fp8moe::attention::workspace_bytes: this executor has no path here; include "
                "\"fp8moe/attention/host/mla.hpp\" (a CUDA path is not written yet)");
  detail::check_query_shape("fp8moe::attention::workspace_bytes(mla_naive_shape)", s.dims, s.T, s.S);
  if constexpr (has_dispatch<mla_dispatch<executor_t<Exec>>>)
    return mla_dispatch<executor_t<Exec>>::naive_forward_workspace_bytes(exec, s.dims, s.T, s.S);
  else
    return 0;
}

/// Scratch bytes of mla_naive_backward (its `workspace`).
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, mla_naive_backward_shape const& s) {
  static_assert(has_dispatch<mla_dispatch<executor_t<Exec>>>,
                "fp8moe::attention::workspace_bytes: this executor has no path here; include "
                "\"fp8moe/attention/host/mla.hpp\" (a CUDA path is not written yet)");
  detail::check_query_shape("fp8moe::attention::workspace_bytes(mla_naive_backward_shape)", s.dims, s.T, s.S);
  if constexpr (has_dispatch<mla_dispatch<executor_t<Exec>>>)
    return mla_dispatch<executor_t<Exec>>::naive_backward_workspace_bytes(exec, s.dims, s.T, s.S);
  else
    return 0;
}

/// Scratch bytes of mla_absorbed_forward (its `workspace`).
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, mla_absorbed_shape const& s) {
  static_assert(has_dispatch<mla_dispatch<executor_t<Exec>>>,
                "fp8moe::attention::workspace_bytes: this executor has no path here; include "
                "\"fp8moe/attention/host/mla.hpp\" (a CUDA path is not written yet)");
  detail::check_query_shape("fp8moe::attention::workspace_bytes(mla_absorbed_shape)", s.dims, s.T, s.S);
  if constexpr (has_dispatch<mla_dispatch<executor_t<Exec>>>)
    return mla_dispatch<executor_t<Exec>>::absorbed_forward_workspace_bytes(exec, s.dims, s.T, s.S);
  else
    return 0;
}

/// NAIVE form. q (T, H*(dn+dr)): per head [q_nope | q_rope], q_rope rotated; kv (S, H*(dn+dv)): per
/// head [k_nope | v]; k_rope (S, dr) rotated, shared by the heads. Query t attends keys
/// s < q_pos0 + t + 1 (causal; q_pos0 + T <= S; keys past q_pos0 + T are never read).
/// out (T, H*dv) head-major is OVERWRITTEN; probs (H*T, S), row h*T + t, when non-empty receives
/// the softmax (0 on masked keys) for mla_naive_backward. `workspace`: workspace_bytes(exec,
/// mla_naive_shape{dims, T, S}) (empty: allocated here).
template <executor Exec>
void mla_naive_forward(Exec const& exec, mla_dims const& dims, matrix_view<float const> q,
                       matrix_view<float const> kv, matrix_view<float const> k_rope, std::int64_t q_pos0,
                       matrix_view<float> out, matrix_view<float> probs = {},
                       std::span<std::byte> workspace = {}) {
  static_assert(has_dispatch<mla_dispatch<executor_t<Exec>>>,
                "fp8moe::attention::mla_naive_forward: this executor has no path here; include "
                "\"fp8moe/attention/host/mla.hpp\" (a CUDA path is not written yet)");
  constexpr char const* where = "fp8moe::attention::mla_naive_forward";
  detail::check_common(where, dims, q, k_rope, kv.rows, q_pos0, out, "out");
  detail::check_rm(where, "kv", kv, k_rope.rows, dims.kv_cols());
  if (probs.data != nullptr || probs.rows != 0 || probs.cols != 0)
    detail::check_rm(where, "probs", matrix_view<float const>(probs), dims.heads * q.rows, kv.rows);
  if constexpr (has_dispatch<mla_dispatch<executor_t<Exec>>>)
    mla_dispatch<executor_t<Exec>>::naive_forward(exec, dims, q, kv, k_rope, q_pos0, out, probs, workspace);
}

/// The backward of mla_naive_forward from its probs (H*T, S) and dout (T, H*dv): dq (T, H*(dn+dr)),
/// dkv (S, H*(dn+dv)) and dk_rope (S, dr) are OVERWRITTEN (keys never attended get 0). The rope
/// parts are gradients with respect to the ROTATED q_rope / k_rope (apply nn::rope_backward after).
/// `workspace`: workspace_bytes(exec, mla_naive_backward_shape{dims, T, S}) (empty: allocated here).
template <executor Exec>
void mla_naive_backward(Exec const& exec, mla_dims const& dims, matrix_view<float const> q,
                        matrix_view<float const> kv, matrix_view<float const> k_rope, std::int64_t q_pos0,
                        matrix_view<float const> probs, matrix_view<float const> dout, matrix_view<float> dq,
                        matrix_view<float> dkv, matrix_view<float> dk_rope,
                        std::span<std::byte> workspace = {}) {
  static_assert(has_dispatch<mla_dispatch<executor_t<Exec>>>,
                "fp8moe::attention::mla_naive_backward: this executor has no path here; include "
                "\"fp8moe/attention/host/mla.hpp\" (a CUDA path is not written yet)");
  constexpr char const* where = "fp8moe::attention::mla_naive_backward";
  detail::check_common(where, dims, q, k_rope, kv.rows, q_pos0, dout, "dout");
  std::int64_t const T = q.rows, S = kv.rows;
  detail::check_rm(where, "kv", kv, S, dims.kv_cols());
  detail::check_rm(where, "probs", probs, dims.heads * T, S);
  detail::check_rm(where, "dq", matrix_view<float const>(dq), T, dims.q_cols());
  detail::check_rm(where, "dkv", matrix_view<float const>(dkv), S, dims.kv_cols());
  detail::check_rm(where, "dk_rope", matrix_view<float const>(dk_rope), S, dims.qk_rope_head_dim);
  if constexpr (has_dispatch<mla_dispatch<executor_t<Exec>>>)
    mla_dispatch<executor_t<Exec>>::naive_backward(exec, dims, q, kv, k_rope, q_pos0, probs, dout, dq, dkv,
                                                   dk_rope, workspace);
}

/// ABSORBED form over the compressed cache. q as in the naive form; wkv_b (H*(dn+dv), kv_lora)
/// float (per head rows [W_UK (dn) | W_UV (dv)], dequantized when the checkpoint is FP8, as
/// DeepSeek's model.py does); latent (S, kv_lora) with kv_norm applied; k_rope (S, dr) rotated.
/// score = scale * ((q_nope W_UK) . latent_s + q_rope . k_rope_s); out_h = (sum_s p_s latent_s) W_UV^T.
/// Equal to mla_naive_forward on kv = latent wkv_b^T up to float rounding. out (T, H*dv) OVERWRITTEN.
/// `workspace`: workspace_bytes(exec, mla_absorbed_shape{dims, T, S}) (empty: allocated here).
template <executor Exec>
void mla_absorbed_forward(Exec const& exec, mla_dims const& dims, matrix_view<float const> q,
                          matrix_view<float const> wkv_b, matrix_view<float const> latent,
                          matrix_view<float const> k_rope, std::int64_t q_pos0, matrix_view<float> out,
                          std::span<std::byte> workspace = {}) {
  static_assert(has_dispatch<mla_dispatch<executor_t<Exec>>>,
                "fp8moe::attention::mla_absorbed_forward: this executor has no path here; include "
                "\"fp8moe/attention/host/mla.hpp\" (a CUDA path is not written yet)");
  constexpr char const* where = "fp8moe::attention::mla_absorbed_forward";
  detail::check_common(where, dims, q, k_rope, latent.rows, q_pos0, out, "out");
  detail::check_rm(where, "wkv_b", wkv_b, dims.kv_cols(), dims.kv_lora_rank);
  detail::check_rm(where, "latent", latent, k_rope.rows, dims.kv_lora_rank);
  if constexpr (has_dispatch<mla_dispatch<executor_t<Exec>>>)
    mla_dispatch<executor_t<Exec>>::absorbed_forward(exec, dims, q, wkv_b, latent, k_rope, q_pos0, out,
                                                     workspace);
}

}  // namespace fp8moe::attention
