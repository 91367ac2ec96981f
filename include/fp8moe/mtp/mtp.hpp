// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::mtp_module<Block>: one DeepSeek-V3 multi-token-prediction depth over any transformer_block,
//   h' (T,C) = eh_proj [RMSNorm_e(emb(tok)) ; RMSNorm_h(h_prev)]  (embedding first, as the checkpoint)
//   h  (T,C) = Block(h'),  logits (T,V) = RMSNorm_head(h) head^T  (the shared output head)
// with the MTP loss ((lambda/D) * cross-entropy) and the backward. Every gradient ACCUMULATES; the
// workspace is caller-owned (mtp::workspace_bytes) and holds the state between forward and backward.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/mtp/block.hpp"
#include "fp8moe/nn/embedding.hpp"
#include "fp8moe/nn/matmul.hpp"
#include "fp8moe/nn/rmsnorm.hpp"
#include "fp8moe/nn/softmax.hpp"
#include "fp8moe/nn/workspace.hpp"

namespace fp8moe::mtp {

/// Which main-model hidden state feeds depth 1's hnorm. vLLM and SGLang serve the released
/// checkpoint with the main model's output AFTER its final norm (the default: checkpoint-faithful
/// speculative decoding); torchtitan trains with the last decoder layer's output BEFORE it.
/// DeepSeek's training code is unpublished; hnorm re-normalizes either way, so the two differ by
/// the final norm's element-wise gain.
enum class depth1_input { after_final_norm, before_final_norm };

/// Where h_prev of one forward call comes from.
enum class source {
  main_model,     ///< depth 1: the main model's last decoder-layer output (T,C), before its final norm
  previous_depth  ///< depth k > 1: the previous depth's output hidden state (mtp_state::hidden)
};

struct mtp_options {
  depth1_input depth1 = depth1_input::after_final_norm;
  float eps = 1e-6f;                 ///< of every RMSNorm here
  float loss_weight = 0.3f;          ///< lambda (DeepSeek-V3: 0.3 for the first 10T tokens, then 0.1)
  int depths = 1;                    ///< D, the number of MTP depths the loss averages over
  std::int32_t ignore_index = -100;  ///< targets equal to it add no loss
};

/// The parameters (float, row-major, caller-owned). embed and head are the main model's (shared);
/// head_norm is the checkpoint's shared_head.norm (or the main model's final norm when shared).
struct mtp_weights {
  matrix_view<float const> embed;     // (V,C)
  std::span<float const> final_norm;  // (C) the main model's final norm; read only for depth 1 with
                                      //     depth1_input::after_final_norm (may be empty otherwise)
  std::span<float const> enorm;       // (C)
  std::span<float const> hnorm;       // (C)
  matrix_view<float const> eh_proj;   // (C,2C): columns [0,C) act on enorm(emb), [C,2C) on hnorm(h)
  std::span<float const> head_norm;   // (C)
  matrix_view<float const> head;      // (V,C)
};

/// Their gradients, ACCUMULATED by mtp_backward (views may alias when parameters are shared).
struct mtp_grads {
  matrix_view<float> d_embed;     // (V,C) rows of the tokens embedded
  std::span<float> d_final_norm;  // (C) written only when final_norm is read
  std::span<float> d_enorm;       // (C)
  std::span<float> d_hnorm;       // (C)
  matrix_view<float> d_eh_proj;   // (C,2C)
  std::span<float> d_head_norm;   // (C)
  matrix_view<float> d_head;      // (V,C)
};

/// One MTP depth: its parameters, gradients (needed by mtp_backward only), block and options.
/// Chained depths (drafting d > 1 tokens with one module, as vLLM does) call mtp_forward again with
/// source::previous_depth and the previous call's hidden state.
template <transformer_block Block>
struct mtp_module {
  mtp_weights weights;
  mtp_grads grads{};
  Block* block = nullptr;  ///< the caller's (not owned); non-null
  mtp_options options{};
};

/// What mtp_forward keeps for mtp_backward: the inputs it refers to (keep them alive and unchanged)
/// and views into the workspace. `hidden` (T,C) is this depth's output h^k (the next depth's h_prev).
template <transformer_block Block>
struct mtp_state {
  std::span<std::int32_t const> tokens{};
  matrix_view<float const> h_prev{};
  bool final_norm = false;      // h_prev went through the main model's final norm first
  matrix_view<float> hin{};     // (T,C) final_norm(h_prev), when final_norm
  matrix_view<float> emb{};     // (T,C) emb(tokens)
  matrix_view<float> cat{};     // (T,2C) [enorm(emb) ; hnorm(hin)]
  matrix_view<float> x{};       // (T,C) eh_proj output, the block's input
  matrix_view<float> hidden{};  // (T,C) the block's output
  matrix_view<float> normed{};  // (T,C) head_norm(hidden)
  std::span<float> rstd_f{}, rstd_e{}, rstd_h{}, rstd_o{};  // (T) each
  typename Block::state block{};
};

namespace detail {

inline constexpr char const* forward_where = "fp8moe::mtp::mtp_forward";

template <class Block>
void check_weights(char const* where, mtp_module<Block> const& m) {
  require(m.block != nullptr, where, "m.block", "a block (non-null)");
  auto const& w = m.weights;
  std::int64_t const C = m.block->hidden(), V = w.embed.rows;
  check_rows(where, "weights.embed", w.embed, V, C);
  require(V >= 1, where, "weights.embed", "(V, C) with V >= 1", "V = 0");
  auto vec = [&](std::span<float const> v, char const* arg) {
    require(static_cast<std::int64_t>(v.size()) == C, where, arg,
            "size C = block.hidden() = " + std::to_string(C), "size " + std::to_string(v.size()));
  };
  vec(w.enorm, "weights.enorm");
  vec(w.hnorm, "weights.hnorm");
  vec(w.head_norm, "weights.head_norm");
  if (m.options.depth1 == depth1_input::after_final_norm) vec(w.final_norm, "weights.final_norm");
  check_rows(where, "weights.eh_proj", w.eh_proj, C, 2 * C);
  check_rows(where, "weights.head", w.head, V, C);
  auto const& o = m.options;
  require(std::isfinite(o.eps) && o.eps > 0.0f, where, "options.eps", "a finite value > 0",
          std::to_string(o.eps));
  require(std::isfinite(o.loss_weight) && o.loss_weight >= 0.0f, where, "options.loss_weight",
          "a finite value >= 0", std::to_string(o.loss_weight));
  require(o.depths >= 1, where, "options.depths", ">= 1", std::to_string(o.depths));
}

template <class Block>
mtp_state<Block> carve_state(nn::workspace_arena& a, std::int64_t T, std::int64_t C) {
  mtp_state<Block> st;
  st.hin = a.matrix<float>(T, C);
  st.emb = a.matrix<float>(T, C);
  st.cat = a.matrix<float>(T, 2 * C);
  st.x = a.matrix<float>(T, C);
  st.hidden = a.matrix<float>(T, C);
  st.normed = a.matrix<float>(T, C);
  for (std::span<float>* r : {&st.rstd_f, &st.rstd_e, &st.rstd_h, &st.rstd_o}) {
    float* p = a.take<float>(T);
    *r = p ? std::span<float>(p, static_cast<std::size_t>(T)) : std::span<float>{};
  }
  return st;
}

struct backward_temps {
  matrix_view<float> dnormed, dhidden, dx, dcat, demb, dhin;
};
inline backward_temps carve_backward(nn::workspace_arena& a, std::int64_t T, std::int64_t C) {
  backward_temps b;
  b.dnormed = a.matrix<float>(T, C);
  b.dhidden = a.matrix<float>(T, C);
  b.dx = a.matrix<float>(T, C);
  b.dcat = a.matrix<float>(T, 2 * C);
  b.demb = a.matrix<float>(T, C);
  b.dhin = a.matrix<float>(T, C);
  return b;
}

/// The state, the block's workspace, the backward temporaries and the matmul workspace, in order.
template <class Exec, class Block>
std::size_t carve_all(nn::workspace_arena& a, Exec const& exec, mtp_module<Block> const& m, std::int64_t T) {
  std::int64_t const C = m.block->hidden(), V = m.weights.embed.rows;
  carve_state<Block>(a, T, C);
  a.sub(m.block->workspace_bytes(exec, T));
  carve_backward(a, T, C);
  a.sub(matmul_bytes(exec, {{T, C, 2 * C}, {T, V, C}, {T, C, V}, {V, C, T}, {T, 2 * C, C}, {C, 2 * C, T}}));
  return a.bytes();
}

/// (T,C) column block [c0, c0+C) of a (T,2C) row-major matrix.
inline matrix_view<float> half(matrix_view<float> m, std::int64_t c0, std::int64_t C) {
  return {m.data + c0, m.rows, C, m.row_stride, 1};
}

}  // namespace detail

/// Workspace bytes of mtp_forward + mtp_backward (the state and the block's workspace included)
/// for T tokens.
template <executor Exec, class Block>
std::size_t workspace_bytes(Exec const& exec, mtp_module<Block> const& m, std::int64_t tokens) {
  require(tokens >= 0, "fp8moe::mtp::workspace_bytes", "tokens", ">= 0", std::to_string(tokens));
  require(m.block != nullptr, "fp8moe::mtp::workspace_bytes", "m.block", "a block (non-null)");
  nn::workspace_arena a;
  return detail::carve_all(a, exec, m, tokens);
}

/// Forward of one depth over T positions. tokens (T): the token whose embedding row i combines with
/// h_prev row i (t_{i+k} at depth k; mtp::shift_for_depth builds them from a training window);
/// h_prev (T,C): see `source`; positions (T): the block's positions (not shifted, as torchtitan).
/// logits (T,V) OVERWRITTEN (row i predicts t_{i+k+1}). Returns the state (views into workspace).
template <executor Exec, class Block>
mtp_state<Block> mtp_forward(Exec const& exec, mtp_module<Block> const& m, source src,
                             std::span<std::int32_t const> tokens, matrix_view<float const> h_prev,
                             std::span<std::int32_t const> positions, matrix_view<float> logits,
                             std::span<std::byte> workspace) {
  constexpr char const* where = detail::forward_where;
  detail::check_weights(where, m);
  std::int64_t const T = static_cast<std::int64_t>(tokens.size()), C = m.block->hidden(),
                     V = m.weights.embed.rows;
  detail::check_rows(where, "h_prev", h_prev, T, C);
  detail::check_rows(where, "logits", logits, T, V);
  require(static_cast<std::int64_t>(positions.size()) == T, where, "positions",
          "size T = tokens.size() = " + std::to_string(T), "size " + std::to_string(positions.size()));
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= V)  // message built on failure only
      require(false, where, "tokens", "ids in [0, V = " + std::to_string(V) + ")",
              std::to_string(tokens[i]) + " at " + std::to_string(i));
  nn::check_workspace(workspace, workspace_bytes(exec, m, T), where);
  nn::workspace_arena arena(workspace);
  auto st = detail::carve_state<Block>(arena, T, C);
  auto const bws = arena.sub(m.block->workspace_bytes(exec, T));
  detail::carve_backward(arena, T, C);
  auto const mws = arena.sub(detail::matmul_bytes(exec, {{T, C, 2 * C}, {T, V, C}}));
  auto const& w = m.weights;
  float const eps = m.options.eps;
  st.tokens = tokens;
  st.h_prev = h_prev;
  st.final_norm = src == source::main_model && m.options.depth1 == depth1_input::after_final_norm;
  matrix_view<float const> hin = h_prev;
  if (st.final_norm) {
    nn::rmsnorm_forward(exec, h_prev, w.final_norm, st.hin, st.rstd_f, eps);
    hin = st.hin;
  }
  nn::embedding_forward(exec, tokens, w.embed, st.emb);
  nn::rmsnorm_forward(exec, matrix_view<float const>(st.emb), w.enorm, detail::half(st.cat, 0, C), st.rstd_e,
                      eps);
  nn::rmsnorm_forward(exec, hin, w.hnorm, detail::half(st.cat, C, C), st.rstd_h, eps);
  nn::matmul(exec, matrix_view<float const>(st.cat), nn::transposed(w.eh_proj), st.x, {}, mws);
  st.block = m.block->forward(exec, matrix_view<float const>(st.x), positions, st.hidden, bws);
  nn::rmsnorm_forward(exec, matrix_view<float const>(st.hidden), w.head_norm, st.normed, st.rstd_o, eps);
  nn::matmul(exec, matrix_view<float const>(st.normed), nn::transposed(w.head), logits, {}, mws);
  return st;
}

/// Backward of one depth from dlogits (T,V) (mtp_loss_backward's) and, for a depth followed by a
/// chained one, d_hidden (T,C) = dL/d state.hidden from that depth's backward (a view with null
/// data: none).
/// dh_prev (T,C) and every gradient of m.grads ACCUMULATE. `workspace` is the forward's.
template <executor Exec, class Block>
void mtp_backward(Exec const& exec, mtp_module<Block> const& m, mtp_state<Block> const& st,
                  matrix_view<float const> dlogits, matrix_view<float const> d_hidden,
                  matrix_view<float> dh_prev, std::span<std::byte> workspace) {
  constexpr char const* where = "fp8moe::mtp::mtp_backward";
  detail::check_weights(where, m);
  std::int64_t const T = static_cast<std::int64_t>(st.tokens.size()), C = m.block->hidden(),
                     V = m.weights.embed.rows;
  require(st.hidden.rows == T && st.hidden.cols == C && st.h_prev.rows == T, where, "state",
          "the state of an mtp_forward call of this module");
  detail::check_rows(where, "dlogits", dlogits, T, V);
  if (d_hidden.data != nullptr) detail::check_rows(where, "d_hidden", d_hidden, T, C);
  detail::check_rows(where, "dh_prev", dh_prev, T, C);
  auto const& g = m.grads;
  detail::check_rows(where, "grads.d_embed", g.d_embed, V, C);
  detail::check_rows(where, "grads.d_eh_proj", g.d_eh_proj, C, 2 * C);
  detail::check_rows(where, "grads.d_head", g.d_head, V, C);
  // (typed array, not a braced list of CTAD pairs: nvcc's front end rejects that form)
  std::pair<std::span<float>, char const*> const norm_grads[] = {
      {g.d_enorm, "grads.d_enorm"}, {g.d_hnorm, "grads.d_hnorm"}, {g.d_head_norm, "grads.d_head_norm"}};
  for (auto const& [v, arg] : norm_grads)
    require(static_cast<std::int64_t>(v.size()) == C, where, arg, "size C = " + std::to_string(C),
            "size " + std::to_string(v.size()));
  if (st.final_norm)
    require(static_cast<std::int64_t>(g.d_final_norm.size()) == C, where, "grads.d_final_norm",
            "size C = " + std::to_string(C) + " (depth 1 reads final_norm)",
            "size " + std::to_string(g.d_final_norm.size()));
  nn::check_workspace(workspace, workspace_bytes(exec, m, T), where);
  nn::workspace_arena arena(workspace);
  detail::carve_state<Block>(arena, T, C);
  auto const bws = arena.sub(m.block->workspace_bytes(exec, T));
  auto const b = detail::carve_backward(arena, T, C);
  auto const mws =
      arena.sub(detail::matmul_bytes(exec, {{T, C, V}, {V, C, T}, {T, 2 * C, C}, {C, 2 * C, T}}));
  auto const& w = m.weights;
  // logits = normed head^T
  nn::matmul(exec, dlogits, w.head, b.dnormed, {}, mws);
  nn::matmul(exec, nn::transposed(dlogits), matrix_view<float const>(st.normed), g.d_head, {.beta = 1.0f},
             mws);
  // normed = head_norm(hidden), plus the chained depth's gradient
  if (d_hidden.data != nullptr && T > 0)
    detail::copy(exec, d_hidden, b.dhidden, false);
  else
    detail::fill(exec, b.dhidden, 0.0f);
  nn::rmsnorm_backward(exec, matrix_view<float const>(st.hidden), w.head_norm,
                       std::span<float const>(st.rstd_o), matrix_view<float const>(b.dnormed), b.dhidden,
                       g.d_head_norm);
  m.block->backward(exec, st.block, matrix_view<float const>(b.dhidden), b.dx, bws);
  // x = cat eh_proj^T
  nn::matmul(exec, matrix_view<float const>(b.dx), w.eh_proj, b.dcat, {}, mws);
  nn::matmul(exec, nn::transposed(matrix_view<float const>(b.dx)), matrix_view<float const>(st.cat),
             g.d_eh_proj, {.beta = 1.0f}, mws);
  // cat = [enorm(emb) ; hnorm(hin)]
  detail::fill(exec, b.demb, 0.0f);
  nn::rmsnorm_backward(exec, matrix_view<float const>(st.emb), w.enorm, std::span<float const>(st.rstd_e),
                       matrix_view<float const>(detail::half(b.dcat, 0, C)), b.demb, g.d_enorm);
  nn::embedding_backward(exec, st.tokens, matrix_view<float const>(b.demb), g.d_embed);
  auto const dcat_h = matrix_view<float const>(detail::half(b.dcat, C, C));
  if (st.final_norm) {
    detail::fill(exec, b.dhin, 0.0f);
    nn::rmsnorm_backward(exec, matrix_view<float const>(st.hin), w.hnorm, std::span<float const>(st.rstd_h),
                         dcat_h, b.dhin, g.d_hnorm);
    nn::rmsnorm_backward(exec, st.h_prev, w.final_norm, std::span<float const>(st.rstd_f),
                         matrix_view<float const>(b.dhin), dh_prev, g.d_final_norm);
  } else {
    nn::rmsnorm_backward(exec, st.h_prev, w.hnorm, std::span<float const>(st.rstd_h), dcat_h, dh_prev,
                         g.d_hnorm);
  }
}

/// The depth-k inputs of a training window (torchtitan's alignment): tokens (T) and labels (T)
/// (labels_i = t_{i+1}, the main model's targets) give emb_tokens_i = tokens_{i+k} and
/// targets_i = labels_{i+k}; past the window's end, pad (token 0 by default) and ignore_index.
/// Host-side token ids; both outputs OVERWRITTEN.
inline void shift_for_depth(std::span<std::int32_t const> tokens, std::span<std::int32_t const> labels,
                            int depth, std::span<std::int32_t> emb_tokens, std::span<std::int32_t> targets,
                            std::int32_t ignore_index = -100, std::int32_t pad = 0) {
  constexpr char const* where = "fp8moe::mtp::shift_for_depth";
  std::size_t const T = tokens.size();
  require(depth >= 1, where, "depth", ">= 1", std::to_string(depth));
  std::pair<std::size_t, char const*> const sizes[] = {
      {labels.size(), "labels"}, {emb_tokens.size(), "emb_tokens"}, {targets.size(), "targets"}};
  for (auto const& [n, arg] : sizes)
    require(n == T, where, arg, "size T = tokens.size() = " + std::to_string(T), "size " + std::to_string(n));
  auto const d = static_cast<std::size_t>(depth);
  for (std::size_t i = 0; i < T; ++i) {
    emb_tokens[i] = i + d < T ? tokens[i + d] : pad;
    targets[i] = i + d < T ? labels[i + d] : ignore_index;
  }
}

/// This depth's share of the MTP loss: (lambda / D) * mean over the valid rows of the cross-entropy
/// of logits (T,V) against targets (T) (ignore_index rows add nothing); losses (T) receives the
/// unweighted per-row values. The total loss is L_main + the sum of this over the D depths.
template <executor Exec, class Block>
float mtp_loss(Exec const& exec, mtp_module<Block> const& m, matrix_view<float const> logits,
               std::span<std::int32_t const> targets, std::span<float> losses) {
  detail::check_weights("fp8moe::mtp::mtp_loss", m);
  float const ce = nn::cross_entropy_forward(exec, logits, targets, losses, m.options.ignore_index);
  return m.options.loss_weight / static_cast<float>(m.options.depths) * ce;
}

/// dlogits (T,V) = dloss * d mtp_loss / d logits, OVERWRITTEN (may alias logits).
template <executor Exec, class Block>
void mtp_loss_backward(Exec const& exec, mtp_module<Block> const& m, matrix_view<float const> logits,
                       std::span<std::int32_t const> targets, matrix_view<float> dlogits,
                       float dloss = 1.0f) {
  detail::check_weights("fp8moe::mtp::mtp_loss_backward", m);
  nn::cross_entropy_backward(exec, logits, targets, dlogits,
                             dloss * m.options.loss_weight / static_cast<float>(m.options.depths),
                             m.options.ignore_index);
}

}  // namespace fp8moe::mtp
