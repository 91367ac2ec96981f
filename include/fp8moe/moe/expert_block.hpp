// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The grouped SwiGLU expert block of a DeepSeek-V3 MoE layer, one sequence for every executor:
// quantize (1x128) -> permute (grouped contiguous) -> grouped gate+up FP8 GEMM -> SwiGLU -> quantize
// -> grouped down FP8 GEMM -> weighted combine (+ the shared expert: nn::swiglu_mlp), and its full
// backward (dgrad grouped GEMMs on the transposed 128x128 weights, K-grouped wgrad GEMMs). Element
// formats come from the config's recipes and the weight type. Outputs are overwritten. Hot calls use
// a caller workspace of workspace_bytes(exec, shape, cfg) bytes (host or device memory) that holds
// the forward activations (expert_block_state views into it) and the backward's temporaries.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "fp8moe/config.hpp"
#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/gemm/gemm.hpp"
#include "fp8moe/moe/host/expert_block.hpp"
#include "fp8moe/moe/permute.hpp"
#include "fp8moe/nn/activation.hpp"
#include "fp8moe/nn/swiglu_mlp.hpp"
#include "fp8moe/nn/workspace.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "fp8moe/scaling/recipe.hpp"

namespace fp8moe::moe {

// SwiGLU per-element math (nn/activation.hpp), also under moe:: as before.
using nn::sigmoid_f32;
using nn::swiglu;
using nn::swiglu_backward;

/// Routed expert weights, FP8 with 128x128 block scales (DeepSeek-V3 recipe).
template <class W = float8_e4m3_t>
struct expert_weights {
  gemm::quantized_batched_view<W const> w13;  // (E, 2I, H): gate rows [0, I), up rows [I, 2I)
  gemm::quantized_batched_view<W const> w2;   // (E, H, I)
};

/// Optional shared expert (applied to every token with weight 1); empty views = none.
template <class W = float8_e4m3_t>
struct shared_expert_weights {
  scaling::quantized_matrix_view<W const> w13{};  // (2Is, H)
  scaling::quantized_matrix_view<W const> w2{};   // (H, Is)
  bool present() const { return w13.data.data != nullptr; }
};

struct expert_block_config {
  int m_align = 128;  ///< rows per expert segment; a multiple of the 1x128 tile (the wgrad K tile)
  scaling::tensor_recipe activation = scaling::deepseek_v3.activation;  ///< x and SwiGLU output (format too)
  scaling::tensor_recipe gradient = scaling::deepseek_v3.gradient;      ///< dY and dH13 (format too)
  gemm::gemm_options gemm{};
};

/// Extents of one call: T tokens, H hidden, I expert intermediate, E experts, k slots, Is shared
/// intermediate (0: no shared expert), and the weights' tile (sizes the device's transposed copy).
struct expert_block_shape {
  std::int64_t tokens = 0, hidden = 0, inter = 0, experts = 0, k = 0, shared_inter = 0;
  scaling::tile_shape weight_tile = scaling::block_128x128;
};

/// Forward activations kept for the backward: views into the workspace the forward was given (the
/// same type on every executor). The allocating overloads keep that workspace in `storage`.
struct expert_block_state {
  permute_plan plan{};
  nn::fp8_matrix xq{}, a{}, actq{};         // (T,H) quantized input, (M,H) permuted, (M,I) SwiGLU output
  matrix_view<float> h13{}, act{}, y{};     // (M,2I) gate|up, (M,I) SwiGLU output, (M,H) expert outputs
  nn::swiglu_mlp_state shared{};            // the shared expert's h13 (T,2Is) and act (T,Is)
  std::span<std::byte> shared_workspace{};  // the shared expert's (nn::swiglu_mlp) workspace
  std::span<std::byte> workspace{};         // the whole workspace; the backward uses it past forward_bytes
  std::size_t forward_bytes = 0;
  expert_block_shape shape{};
  std::shared_ptr<void> storage{};  // the allocating overload's workspace, and its bytes
  std::span<std::byte> storage_span{};
};

/// Weight gradients (FP32, overwritten). Shared ones may be empty when there is no shared expert.
struct expert_block_grads {
  batched_matrix_view<float> dw13;  // (E, 2I, H)
  batched_matrix_view<float> dw2;   // (E, H, I)
  matrix_view<float> dsw13{};       // (2Is, H)
  matrix_view<float> dsw2{};        // (H, Is)
};

/// A contiguous permute plan of T tokens x k slots over E experts (segments of layout.m_align rows,
/// `rows` in use) whose arrays are carved from `ws` for a capacity of `capacity` >= rows rows (a
/// counting arena sizes them); build_permute_plan fills them. Host or device memory, as ws's.
inline permute_plan carve_contiguous_plan(nn::workspace_arena& ws, contiguous layout, std::int64_t T,
                                          std::int64_t k, std::int64_t E, std::int64_t capacity,
                                          std::int64_t rows) {
  require(rows >= 0 && capacity >= rows, "fp8moe::moe::carve_contiguous_plan", "rows",
          "0 <= rows <= capacity = " + std::to_string(capacity), std::to_string(rows));
  permute_plan p{};
  p.layout = layout_kind::contiguous;
  p.tokens = T, p.k = k, p.experts = E, p.rows = rows, p.align = layout.m_align;
  p.row_token = ws.take<std::int32_t>(capacity);
  p.row_slot = ws.take<std::int32_t>(capacity);
  p.row_expert = ws.take<std::int32_t>(capacity);
  p.slot_row = ws.take<std::int32_t>(T * k);
  p.expert_offset = ws.take<std::int32_t>(E + 1);
  p.counts = ws.take<std::int32_t>(E);
  return p;
}

namespace detail {

inline constexpr char const* block_where = "fp8moe::moe::expert_block";

template <class W>
void check_block_weights(expert_weights<W> const& w, shared_expert_weights<W> const& s, std::int64_t H,
                         expert_block_config const& cfg) {
  constexpr char const* where = block_where;
  std::int64_t const E = w.w13.batches(), I2 = w.w13.rows();
  require(E >= 1, where, "weights.w13", "E >= 1 experts", std::to_string(E));
  require(w.w13.cols() == H, where, "weights.w13", "(E, 2I, H = " + std::to_string(H) + ")",
          std::to_string(w.w13.cols()) + " columns");
  require(I2 >= 2 && I2 % 2 == 0, where, "weights.w13", "an even row count 2I", std::to_string(I2));
  require(
      w.w2.batches() == E && w.w2.rows() == H && w.w2.cols() == I2 / 2, where, "weights.w2",
      "(E, H, I) = " + std::to_string(E) + "x" + std::to_string(H) + "x" + std::to_string(I2 / 2),
      std::to_string(w.w2.batches()) + "x" + std::to_string(w.w2.rows()) + "x" + std::to_string(w.w2.cols()));
  require(cfg.m_align >= 1 && cfg.activation.tile.rows == 1 && cfg.activation.tile.cols > 0 &&
              cfg.m_align % cfg.activation.tile.cols == 0,
          where, "config.m_align", "a multiple of the 1 x K activation tile (the wgrad K tile)",
          std::to_string(cfg.m_align));
  require(cfg.gradient.tile.rows == 1 && cfg.gradient.tile.cols == cfg.activation.tile.cols, where,
          "config.gradient.tile", "1 x K with the activation's K");
  if (s.present()) {
    require(s.w13.cols() == H && s.w13.rows() % 2 == 0 && s.w13.rows() >= 2, where, "shared.w13", "(2Is, H)");
    require(s.w2.rows() == H && s.w2.cols() == s.w13.rows() / 2, where, "shared.w2", "(H, Is)");
  }
}

/// The forward's argument checks (views only, no data read): x (T,H), the weights against H and
/// cfg, ids (T,k) with k >= 1, weights (T,k), out (T,H).
template <class In, class Out, class W>
void check_block_args(expert_block_config const& cfg, matrix_view<In> const& x,
                      matrix_view<std::int32_t const> const& ids, matrix_view<float const> const& weights,
                      expert_weights<W> const& w, shared_expert_weights<W> const& sw,
                      matrix_view<Out> const& out) {
  constexpr char const* where = block_where;
  check_matrix(x, where, "x");
  std::int64_t const T = x.rows, H = x.cols, k = ids.cols;
  check_block_weights(w, sw, H, cfg);
  check_matrix(ids, where, "ids");
  require(ids.rows == T && k >= 1, where, "ids", "(T, k) with T = " + std::to_string(T),
          std::to_string(ids.rows));
  check_shape(weights, T, k, where, "weights");
  check_matrix(out, where, "out");
  check_shape(out, T, H, where, "out");
}

/// The backward's gradient-shape checks: weights and dweights (T,k), dout / dx (T,H), dw13 (E,2I,H),
/// dw2 (E,H,I) and, with a shared expert (Is > 0), dsw13 (2Is,H) and dsw2 (H,Is).
template <class G>
void check_block_grad_args(expert_block_shape const& s, matrix_view<float const> const& weights,
                           matrix_view<G> const& dout, matrix_view<float> const& dx,
                           matrix_view<float> const& dweights, expert_block_grads const& g,
                           char const* where) {
  std::int64_t const T = s.tokens, H = s.hidden, I = s.inter, E = s.experts, k = s.k, Is = s.shared_inter;
  check_shape(weights, T, k, where, "weights");
  check_matrix(dout, where, "dout");
  check_shape(dout, T, H, where, "dout");
  check_shape(dx, T, H, where, "dx");
  check_shape(dweights, T, k, where, "dweights");
  require(g.dw13.batches == E && g.dw13.rows == 2 * I && g.dw13.cols == H, where, "grads.dw13", "(E, 2I, H)");
  require(g.dw2.batches == E && g.dw2.rows == H && g.dw2.cols == I, where, "grads.dw2", "(E, H, I)");
  if (Is > 0) {
    check_shape(g.dsw13, 2 * Is, H, where, "grads.dsw13");
    check_shape(g.dsw2, H, Is, where, "grads.dsw2");
  }
}

/// The recipe of the shared expert's fp8_linear layers.
template <class W>
scaling::recipe shared_recipe(expert_block_config const& cfg, scaling::tile_shape weight_tile) {
  return {cfg.activation, {.format = scaling::format_of<W>(), .tile = weight_tile}, cfg.gradient};
}

template <class Exec>
constexpr bool check_block_dispatch() {
  static_assert(
      has_dispatch<expert_block_dispatch<executor_t<Exec>>> && has_dispatch<nn::dispatch<executor_t<Exec>>>,
      "fp8moe::moe::expert_block: this executor has no path here; for cuda_executor include "
      "\"fp8moe/moe/cuda/expert_block.cuh\" (nvcc)");
  return has_dispatch<expert_block_dispatch<executor_t<Exec>>> &&
         has_dispatch<nn::dispatch<executor_t<Exec>>>;
}

/// The forward part of the workspace: carves the state (M rows in use of a capacity of Mcap).
template <class Exec>
void carve_forward(Exec const& exec, nn::workspace_arena& ws, expert_block_shape const& s,
                   expert_block_config const& cfg, std::int64_t M, expert_block_state& st) {
  std::int64_t const T = s.tokens, H = s.hidden, I = s.inter, E = s.experts, k = s.k, Is = s.shared_inter;
  std::int64_t const Mcap = plan_rows(contiguous{cfg.m_align}, T, k, E);
  st.plan = carve_contiguous_plan(ws, contiguous{cfg.m_align}, T, k, E, Mcap, M);
  st.xq = ws.fp8(T, T, H, cfg.activation);
  st.a = ws.fp8(Mcap, M, H, cfg.activation);
  st.h13 = make_matrix(ws.take<float>(Mcap * 2 * I), M, 2 * I);
  st.act = make_matrix(ws.take<float>(Mcap * I), M, I);
  st.actq = ws.fp8(Mcap, M, I, cfg.activation);
  st.y = make_matrix(ws.take<float>(Mcap * H), M, H);
  st.shared_workspace = {};
  if (Is > 0) {
    auto const r = scaling::recipe{cfg.activation, {.tile = s.weight_tile}, cfg.gradient};
    st.shared_workspace = ws.sub(nn::workspace_bytes(exec, nn::mlp_shape{T, H, Is}, r, cfg.gemm));
  }
}

/// The forward's temporaries after the state: plan scratch, GEMM workspace, routed/shared outputs.
struct forward_temps {
  device_workspace plan_scratch{};
  std::span<std::byte> gemm{};
  matrix_view<float> routed{}, shared{};
};
template <class Exec>
forward_temps carve_forward_temps(Exec const& exec, nn::workspace_arena& ws, expert_block_shape const& s,
                                  expert_block_config const& cfg) {
  forward_temps t;
  std::size_t const scratch =
      expert_block_dispatch<executor_t<Exec>>::plan_scratch_bytes(s.tokens, s.k, s.experts);
  t.plan_scratch = {ws.take<std::byte>(static_cast<std::int64_t>(scratch)), scratch};
  t.gemm = ws.sub(gemm::workspace_bytes(exec, cfg.gemm));
  if (s.shared_inter > 0) {
    t.routed = ws.matrix<float>(s.tokens, s.hidden);
    t.shared = ws.matrix<float>(s.tokens, s.hidden);
  }
  return t;
}

/// The backward's temporaries (after forward_bytes).
struct backward_temps {
  matrix_view<float> dy{}, dact{}, dh13{}, dxp{}, dxs{};
  nn::fp8_matrix dyq{}, dh13q{};
  std::span<std::byte> gemm{};
};
template <class Exec>
backward_temps carve_backward_temps(Exec const&, nn::workspace_arena& ws, expert_block_shape const& s,
                                    expert_block_config const& cfg, std::int64_t M,
                                    std::span<std::byte> gemm_ws) {
  std::int64_t const Mcap = plan_rows(contiguous{cfg.m_align}, s.tokens, s.k, s.experts);
  std::int64_t const H = s.hidden, I = s.inter;
  backward_temps t;
  t.dy = make_matrix(ws.take<float>(Mcap * H), M, H);
  t.dact = make_matrix(ws.take<float>(Mcap * I), M, I);
  t.dh13 = make_matrix(ws.take<float>(Mcap * 2 * I), M, 2 * I);
  t.dxp = make_matrix(ws.take<float>(Mcap * H), M, H);
  t.dyq = ws.fp8(Mcap, M, H, cfg.gradient);
  t.dh13q = ws.fp8(Mcap, M, 2 * I, cfg.gradient);
  if (s.shared_inter > 0) t.dxs = ws.matrix<float>(s.tokens, H);
  t.gemm = gemm_ws;
  return t;
}

/// The K-grouped wgrad operands over the rows in use (used <= Mcap).
struct wgrad_temps {
  nn::fp8_matrix dyt{}, actt{}, dh13t{}, at{};
};
inline wgrad_temps carve_wgrad_temps(nn::workspace_arena& ws, expert_block_shape const& s,
                                     expert_block_config const& cfg, std::int64_t used) {
  std::int64_t const H = s.hidden, I = s.inter;
  wgrad_temps t;
  t.dyt = ws.fp8(H, H, used, cfg.gradient);
  t.actt = ws.fp8(I, I, used, cfg.activation);
  t.dh13t = ws.fp8(2 * I, 2 * I, used, cfg.gradient);
  t.at = ws.fp8(H, H, used, cfg.activation);
  return t;
}

/// Transposed copies of the weights for the dgrad GEMMs (host: views, no bytes; device: copies).
template <class Exec, class W>
struct transposed_weights {
  gemm::quantized_batched_view<W const> w13t, w2t;
  scaling::quantized_matrix_view<W const> s13t{}, s2t{};
};
template <class Exec, class W>
transposed_weights<Exec, W> carve_transposed(Exec const& exec, nn::workspace_arena& ws,
                                             expert_weights<W> const& w, shared_expert_weights<W> const& sw,
                                             bool shared) {
  using ND = nn::dispatch<executor_t<Exec>>;
  transposed_weights<Exec, W> t{ND::transposed_weight(exec, w.w13, ws),
                                ND::transposed_weight(exec, w.w2, ws)};
  if (shared) {
    t.s13t = ND::transposed_weight(exec, sw.w13, ws);
    t.s2t = ND::transposed_weight(exec, sw.w2, ws);
  }
  return t;
}

/// Null-data weight views of a shape (for the counting pass of workspace_bytes).
template <class W>
gemm::quantized_batched_view<W const> shape_only(std::int64_t B, std::int64_t R, std::int64_t C,
                                                 scaling::tile_shape t) {
  std::int64_t const sr = scaling::scale_rows(t, R), sc = scaling::scale_cols(t, C);
  return {{nullptr, B, R, C, R * C, C, 1}, {nullptr, B, sr, sc, sr * sc, sc, 1}, t};
}

/// Every region of a call, in order: forward state, forward temporaries | backward temporaries.
template <class Exec>
std::size_t block_bytes(Exec const& exec, expert_block_shape const& s, expert_block_config const& cfg) {
  std::int64_t const Mcap = plan_rows(contiguous{cfg.m_align}, s.tokens, s.k, s.experts);
  nn::workspace_arena fwd;
  expert_block_state st;
  carve_forward(exec, fwd, s, cfg, Mcap, st);
  std::size_t const state = fwd.bytes();
  carve_forward_temps(exec, fwd, s, cfg);
  nn::workspace_arena bwd;
  auto const gw = bwd.sub(gemm::workspace_bytes(exec, cfg.gemm));
  carve_backward_temps(exec, bwd, s, cfg, Mcap, gw);
  using W = float8_e4m3_t;  // one byte per element either way
  expert_weights<W> const w{shape_only<W>(s.experts, 2 * s.inter, s.hidden, s.weight_tile),
                            shape_only<W>(s.experts, s.hidden, s.inter, s.weight_tile)};
  shared_expert_weights<W> sw{};
  if (s.shared_inter > 0) {
    sw.w13 = shape_only<W>(1, 2 * s.shared_inter, s.hidden, s.weight_tile)[0];
    sw.w2 = shape_only<W>(1, s.hidden, s.shared_inter, s.weight_tile)[0];
  }
  carve_transposed(exec, bwd, w, sw, s.shared_inter > 0);
  carve_wgrad_temps(bwd, s, cfg, Mcap);
  return state + std::max(fwd.bytes() - state, bwd.bytes());
}

}  // namespace detail

/// Workspace bytes of expert_block + expert_block_backward on `exec` for this shape.
template <executor Exec>
std::size_t workspace_bytes(Exec const& exec, expert_block_shape const& s,
                            expert_block_config const& cfg = {}) {
  if constexpr (detail::check_block_dispatch<Exec>())
    return detail::block_bytes(exec, s, cfg);
  else
    return 0;
}

/// Forward. x (T,H) float or bf16; ids (T,k) in [0,E) or -1 (not routed here); weights (T,k)
/// FP32; out (T,H) float or bf16 = sum_j weights(t,j) * expert_{ids(t,j)}(x_t) [+ shared(x_t)],
/// accumulated in FP32 in slot order, then the shared expert, rounded once. `workspace` (host or
/// device memory, workspace_bytes(exec, shape, cfg) bytes) must outlive the backward that uses st.
/// The device plans with the row capacity plan_rows(contiguous, T, k, E) (ids are not read there).
template <executor Exec, class In, class Out, class W>
void expert_block(Exec const& exec, expert_block_config const& cfg, matrix_view<In> x,
                  matrix_view<std::int32_t const> ids, matrix_view<float const> weights,
                  expert_weights<W> const& w, shared_expert_weights<W> const& sw, matrix_view<Out> out,
                  expert_block_state& st, std::span<std::byte> workspace) {
  static_assert(float8_type<W>, "fp8moe::moe::expert_block: weights must be float8_e4m3_t or float8_e5m2_t");
  if constexpr (detail::check_block_dispatch<Exec>()) {
    using BD = expert_block_dispatch<executor_t<Exec>>;
    detail::check_block_args(cfg, x, ids, weights, w, sw, out);
    nn::check_formats(exec, {cfg.activation.format, cfg.gradient.format});
    std::int64_t const T = x.rows, H = x.cols, k = ids.cols, E = w.w13.batches(), I = w.w13.rows() / 2;
    expert_block_shape const s{T, H, I, E, k, sw.present() ? sw.w13.rows() / 2 : 0, w.w13.tile};
    std::size_t const need = workspace_bytes(exec, s, cfg);
    nn::check_workspace(workspace, need, detail::block_where);
    contiguous const layout{cfg.m_align};
    std::int64_t const M = BD::permuted_rows(exec, layout, ids, E);  // validates ids on the host
    nn::workspace_arena ws(workspace);
    detail::carve_forward(exec, ws, s, cfg, M, st);
    st.forward_bytes = ws.bytes();
    st.workspace = workspace;
    st.shape = s;
    auto const tmp = detail::carve_forward_temps(exec, ws, s, cfg);
    auto const& p = st.plan;
    vector_view<int const> const m_idx{p.row_expert, M};
    nn::with_format(exec, cfg.activation.format, [&]<class A>(A) {
      auto const xq = st.xq.template as<A>();
      auto const a = st.a.template as<A>();
      auto const actq = st.actq.template as<A>();
      // 1-2. quantize x, plan, permute the FP8 rows with their scales
      scaling::quantize(exec, x, cfg.activation, xq);
      build_permute_plan(exec, ids, p, tmp.plan_scratch);
      permute(exec, p, scaling::quantized_matrix_view<A const>(xq), a);
      // 3. gate+up grouped GEMM, 4. SwiGLU, 5. quantize, 6. down grouped GEMM
      gemm::grouped_gemm(exec,
                         gemm::grouped_contiguous<A, W, float>{a, w.w13, m_idx, st.h13, {}, cfg.m_align},
                         cfg.gemm, tmp.gemm);
      nn::swiglu(exec, matrix_view<float const>(st.h13), st.act);
      scaling::quantize(exec, matrix_view<float const>(st.act), cfg.activation, actq);
      gemm::grouped_gemm(exec,
                         gemm::grouped_contiguous<A, W, float>{actq, w.w2, m_idx, st.y, {}, cfg.m_align},
                         cfg.gemm, tmp.gemm);
      // 7. combine (+ the shared expert)
      if (!sw.present()) {
        combine(exec, p, matrix_view<float const>(st.y), weights, out);
        return;
      }
      nn::swiglu_mlp_weights<W> const mw{{sw.w13, {}}, {sw.w2, {}}};
      st.shared = nn::swiglu_mlp(exec, scaling::quantized_matrix_view<A const>(xq), mw, tmp.shared,
                                 st.shared_workspace, detail::shared_recipe<W>(cfg, s.weight_tile), cfg.gemm);
      combine(exec, p, matrix_view<float const>(st.y), weights, tmp.routed);
      nn::dispatch<executor_t<Exec>>::add(exec, matrix_view<float const>(tmp.routed),
                                          matrix_view<float const>(tmp.shared), out);
    });
  }
}

/// Backward. dout (T,H) = dL/dout. Writes dx (T,H) FP32 = dL/dx (through the FP8 path, as a
/// straight-through estimator of the quantizers), dweights (T,k) = dL/dweights (for the router
/// backward; 0 for -1 slots), and the FP32 weight gradients (K-grouped over each expert's tokens).
/// Takes W (the forward's weights) on every executor; the device transposes them into the
/// workspace for its K-major dgrad GEMMs and synchronizes exec.stream once (the E+1 segment offsets
/// the K-grouped GEMM needs on the host).
template <executor Exec, class G, class W>
void expert_block_backward(Exec const& exec, expert_block_config const& cfg, expert_block_state const& st,
                           matrix_view<float const> weights, expert_weights<W> const& w,
                           shared_expert_weights<W> const& sw, matrix_view<G> dout, matrix_view<float> dx,
                           matrix_view<float> dweights, expert_block_grads const& g) {
  constexpr char const* where = "fp8moe::moe::expert_block_backward";
  if constexpr (detail::check_block_dispatch<Exec>()) {
    using ND = nn::dispatch<executor_t<Exec>>;
    auto const& s = st.shape;
    std::int64_t const H = s.hidden, I = s.inter, E = s.experts, Is = s.shared_inter;
    require(E > 0 && !st.workspace.empty(), where, "state", "the state of a forward call");
    detail::check_block_weights(w, sw, H, cfg);
    require(w.w13.batches() == E && w.w13.rows() == 2 * I, where, "weights",
            "the weights of the forward call");
    require(sw.present() == (Is > 0), where, "shared", "the shared expert of the forward call");
    require(st.xq.format == cfg.activation.format && st.a.rows == st.plan.rows, where, "config",
            "the config of the forward call");
    detail::check_block_grad_args(s, weights, dout, dx, dweights, g, where);
    nn::check_formats(exec, {cfg.activation.format, cfg.gradient.format});
    auto const& p = st.plan;
    std::int64_t const M = p.rows;
    vector_view<int const> const m_idx{p.row_expert, M};
    nn::workspace_arena ws(st.workspace.subspan(st.forward_bytes));
    auto const gw = ws.sub(gemm::workspace_bytes(exec, cfg.gemm));
    auto const t = detail::carve_backward_temps(exec, ws, s, cfg, M, gw);
    auto const wt = detail::carve_transposed(exec, ws, w, sw, Is > 0);
    // combine backward: dY (M,H) and dweights
    combine_backward(exec, p, matrix_view<float const>(st.y), weights, dout, t.dy, dweights);
    nn::with_format(exec, cfg.gradient.format, [&]<class GQ>(GQ) {
      auto const dyq = t.dyq.template as<GQ>();
      auto const dh13q = t.dh13q.template as<GQ>();
      // dgrad through the down projection: dact (M,I) = dY * W2_e, then SwiGLU', then dX
      scaling::quantize(exec, matrix_view<float const>(t.dy), cfg.gradient, dyq);
      gemm::grouped_gemm(exec,
                         gemm::grouped_contiguous<GQ, W, float>{dyq, wt.w2t, m_idx, t.dact, {}, cfg.m_align},
                         cfg.gemm, t.gemm);
      nn::swiglu_backward(exec, matrix_view<float const>(st.h13), matrix_view<float const>(t.dact), t.dh13);
      scaling::quantize(exec, matrix_view<float const>(t.dh13), cfg.gradient, dh13q);
      gemm::grouped_gemm(
          exec, gemm::grouped_contiguous<GQ, W, float>{dh13q, wt.w13t, m_idx, t.dxp, {}, cfg.m_align},
          cfg.gemm, t.gemm);
    });
    permute_backward(exec, p, matrix_view<float const>(t.dxp), dx);
    // wgrad: K-grouped over each expert's rows in use (padding rows are zero in both operands)
    std::vector<std::int32_t> off(static_cast<std::size_t>(E + 1));
    ND::copy_to_host(exec, p.expert_offset, E + 1, off.data());
    std::int64_t const used = off[static_cast<std::size_t>(E)];
    std::vector<int> k_sizes(static_cast<std::size_t>(E));
    for (std::int64_t e = 0; e < E; ++e)
      k_sizes[static_cast<std::size_t>(e)] =
          off[static_cast<std::size_t>(e + 1)] - off[static_cast<std::size_t>(e)];
    vector_view<int const> const ks{k_sizes.data(), E};
    if (used > 0) {
      auto const wg = detail::carve_wgrad_temps(ws, s, cfg, used);
      auto rows_of = [used](matrix_view<float> m) {
        return matrix_view<float const>{m.data, used, m.cols, m.row_stride, 1};
      };
      nn::with_format(exec, cfg.gradient.format, [&]<class GQ>(GQ) {
        nn::with_format(exec, cfg.activation.format, [&]<class A>(A) {
          auto const dyt = wg.dyt.template as<GQ>();
          auto const actt = wg.actt.template as<A>();
          auto const dh13t = wg.dh13t.template as<GQ>();
          auto const at = wg.at.template as<A>();
          scaling::transpose_requantize(exec, rows_of(t.dy), cfg.gradient, dyt);
          scaling::transpose_requantize(exec, rows_of(st.act), cfg.activation, actt);
          gemm::grouped_gemm(exec, gemm::k_grouped<GQ, A>{dyt, actt, ks, g.dw2, {}}, cfg.gemm, t.gemm);
          scaling::transpose_requantize(exec, rows_of(t.dh13), cfg.gradient, dh13t);
          auto ac = scaling::quantized_matrix_view<A const>(st.a.template as<A>());
          ac.data.rows = used;
          ac.scales.rows = scaling::scale_rows(ac.tile, used);
          scaling::transpose_requantize(exec, ac, cfg.activation, at);
          gemm::grouped_gemm(exec, gemm::k_grouped<GQ, A>{dh13t, at, ks, g.dw13, {}}, cfg.gemm, t.gemm);
        });
      });
    } else {  // no routed rows: the weight gradients are 0
      ND::fill_zero(exec, g.dw13);
      ND::fill_zero(exec, g.dw2);
    }
    if (Is == 0) return;
    // the shared expert (nn::swiglu_mlp): dx += its dgrad; its weight gradients over all T tokens
    nn::swiglu_mlp_weights<W> const mw{{sw.w13, wt.s13t}, {sw.w2, wt.s2t}};
    nn::with_format(exec, st.xq.format, [&]<class A>(A) {
      nn::swiglu_mlp_backward(exec, scaling::quantized_matrix_view<A const>(st.xq.template as<A>()),
                              st.shared, mw, dout, t.dxs, {g.dsw13, g.dsw2}, false, st.shared_workspace,
                              detail::shared_recipe<W>(cfg, s.weight_tile), cfg.gemm);
    });
    ND::add(exec, matrix_view<float const>(dx), matrix_view<float const>(t.dxs), dx);
  }
}

// ---- allocating overload: the state keeps its workspace (reallocated only when it must grow) ------

/// Forward with a workspace the state owns (host memory, or stream-ordered on exec.stream).
template <executor Exec, class In, class Out, class W>
void expert_block(Exec const& exec, expert_block_config const& cfg, matrix_view<In> x,
                  matrix_view<std::int32_t const> ids, matrix_view<float const> weights,
                  expert_weights<W> const& w, shared_expert_weights<W> const& sw, matrix_view<Out> out,
                  expert_block_state& st) {
  if constexpr (detail::check_block_dispatch<Exec>()) {
    detail::check_block_args(cfg, x, ids, weights, w, sw, out);  // before sizing anything
    expert_block_shape const s{x.rows,          x.cols,   w.w13.rows() / 2,
                               w.w13.batches(), ids.cols, sw.present() ? sw.w13.rows() / 2 : 0,
                               w.w13.tile};
    std::size_t const bytes = workspace_bytes(exec, s, cfg);
    if (!st.storage || st.storage_span.size() < bytes) {
      using Buf = decltype(nn::dispatch<executor_t<Exec>>::allocate(exec, bytes));
      auto buf = std::make_shared<Buf>(nn::dispatch<executor_t<Exec>>::allocate(exec, bytes));
      st.storage_span = buf->span();
      st.storage = std::move(buf);
    }
    expert_block(exec, cfg, x, ids, weights, w, sw, out, st, st.storage_span.first(bytes));
  }
}

}  // namespace fp8moe::moe
