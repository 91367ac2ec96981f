// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The layers of the DeepSeek-V3 forward, one function each (llm.c style): the precision-polymorphic
// linear, RMSNorm, MLA (composed from attention::mla_* + nn::rmsnorm/rope), the SwiGLU MLP (the MoE
// feed-forward built from them is in moe.hpp). Each writes its outputs
// and the state a backward needs into the views of its activation struct (forward.hpp); nothing here
// allocates except the context's scratch, which grows once to the largest request and is then reused.
// Each forward has its backward (the *_backward functions below it, llm.c style).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "fp8moe/attention/mla.hpp"
#include "fp8moe/nn/fp8_linear.hpp"
#include "fp8moe/nn/matmul.hpp"
#include "fp8moe/nn/rmsnorm.hpp"
#include "fp8moe/nn/rope.hpp"
#include "fp8moe/nn/swiglu_mlp.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "params.hpp"

namespace dsv3 {

/// DeepSeek's inference activation quantizer (kernel.py act_quant): 1x128 tiles, s = max(amax,
/// 1e-4)/448, q = x / s (true division), E4M3; weights in 128x128 blocks. The default of precision fp8.
inline constexpr fm::scaling::recipe deepseek_v3_inference{
    .activation = {.tile = fm::scaling::tile_1x128,
                   .formula = fm::scaling::scale_formula::deepseek_v3_inference},
    .weight = weight_block_recipe,
    .gradient = {.tile = fm::scaling::tile_1x128},
};
/// The training recipe's quantizer (DeepGEMM op order: q = x * (1/sf)), the option.
inline constexpr fm::scaling::recipe deepseek_v3_training = fm::scaling::deepseek_v3;

/// Which MLA form the attention layers run: naive (decompressed K/V, what training differentiates) or
/// absorbed (over the compressed latent + rope-key cache, what decoding uses). Same logits.
enum class mla_form { naive, absorbed };

/// A steady clock in seconds (the per-layer-type time split).
inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Seconds spent per layer type in the last forward (the benchmark's time split).
struct layer_timings {
  double embedding = 0, attention = 0, dense_mlp = 0, moe = 0, head = 0;
  double attention_core = 0;  // of `attention`: the MLA core (scores, softmax, P.V), projections excluded
  double total() const { return embedding + attention + dense_mlp + moe + head; }
};

/// The temporary matrices of a backward pass: request i of a pass gets buffer i (grown to the largest
/// request, then reused, so a training loop allocates only in its first steps); mark()/release(m)
/// hand the buffers after m back (a layer's temporaries, once it is done).
class temp_pool {
 public:
  /// A (rows, cols) float matrix, contents unspecified.
  matrix_view<float> matrix(std::int64_t rows, std::int64_t cols) {
    if (next_ == bufs_.size()) bufs_.emplace_back();
    auto& b = bufs_[next_++];
    auto const n = static_cast<std::size_t>(rows * cols);
    if (b.size() < n) b.resize(n);
    return fm::make_matrix(b.data(), rows, cols);
  }
  /// As matrix(), filled with 0.
  matrix_view<float> zeros(std::int64_t rows, std::int64_t cols) {
    auto m = matrix(rows, cols);
    std::fill_n(m.data, rows * cols, 0.0f);
    return m;
  }
  std::size_t mark() const { return next_; }
  void release(std::size_t m) { next_ = m; }

 private:
  std::vector<std::vector<float>> bufs_;  // moving the outer vector keeps each buffer's address
  std::size_t next_ = 0;
};

/// The FP8 training recipe's GEMM switches (issue 16; DeepSeek-V3 §3.3), for fp32 (master) parameters:
/// the linear layers DeepSeek runs in FP8 (linear_weight::fp8_gemm: the attention projections, the
/// dense, expert and shared-expert MLPs; never the router gate, LM head or MTP eh_proj) quantize on the
/// fly with `recipe`: Fprop (1x128 activation tiles x 128x128 weight blocks, nn::fp8_linear), Dgrad
/// (1x128 output-gradient tiles x the 128x128 blocks of W^T, nn::fp8_linear_dgrad), Wgrad (128x1 tiles
/// of the output gradient and of the input along the tokens, nn::fp8_linear_wgrad); E4M3 and FP32
/// promotion every 128 K. Off (the default): every product in the parameters' precision. `gemm`: the
/// FP8 GEMMs' options; on the host the library's FP8 kernel (promotion every 128 K). Its alternative,
/// gemm::host_accumulation::sgemm (sgemm over the dequantized operands), made the trainer slower on the
/// 2-core machine (701 vs 990 tokens/s, docs/training.md), so it is not the default here.
struct fp8_training {
  bool fprop = false, dgrad = false, wgrad = false;
  fm::scaling::recipe recipe = fm::scaling::deepseek_v3;
  fm::gemm::gemm_options gemm{.promotion_k = 128, .host = fm::gemm::host_accumulation::promoted};
  bool any() const { return fprop || dgrad || wgrad; }
};

/// What every layer function needs: the executor, the precision, the FP8 recipe and a scratch buffer.
struct context {
  fm::host_executor exec{};
  precision prec = precision::fp32;
  fm::scaling::recipe recipe = deepseek_v3_inference;  // precision fp8: activation quantizer
  mla_form attention = mla_form::naive;
  std::vector<std::byte> scratch;  // grows to the largest request, then reused
  double core_seconds = 0;         // accumulated time of the MLA core calls
  temp_pool temps;                 // the backward's temporaries
  fp8_training train{};            // the FP8 training recipe's GEMMs (fp32 parameters only)

  /// `bytes` of scratch (valid until the next call).
  std::span<std::byte> workspace(std::size_t bytes) {
    if (scratch.size() < bytes) scratch.resize(bytes);
    return {scratch.data(), bytes};
  }
};

/// Rounds every element of m to bf16 in precision bf16 ("activations rounded to bf16 between layers").
inline void round_activation(context const& ctx, matrix_view<float> m) {
  if (ctx.prec != precision::bf16) return;
  for (std::int64_t r = 0; r < m.rows; ++r)
    for (std::int64_t c = 0; c < m.cols; ++c) m(r, c) = static_cast<float>(bfloat16_t(m(r, c)));
}

/// W (N,K), a float master weight, quantized with recipe.weight (128x128 blocks) and, with `transpose`,
/// its exact transpose (what Dgrad reads), at the front of ctx's scratch; `extra` bytes follow (the
/// returned span). For the FP8 training recipe (fp8_training).
inline std::pair<fm::nn::fp8_weight<float8_e4m3_t>, std::span<std::byte>> quantize_master(
    context& ctx, matrix_view<float const> w, bool transpose, std::size_t extra) {
  auto const tile = ctx.train.recipe.weight.tile;
  auto const carve = [&](fm::nn::workspace_arena& a) {
    auto const q = a.quantized<float8_e4m3_t>(w.rows, w.cols, tile);
    auto const qt =
        transpose ? a.quantized<float8_e4m3_t>(w.cols, w.rows, fm::scaling::tile_shape{tile.cols, tile.rows})
                  : fm::scaling::quantized_matrix_view<float8_e4m3_t>{};
    return std::pair{q, qt};
  };
  fm::nn::workspace_arena count;
  carve(count);
  count.sub(extra);
  fm::nn::workspace_arena a(ctx.workspace(count.bytes()));
  auto const [q, qt] = carve(a);
  if (transpose)
    fm::nn::quantize_weight(ctx.exec, w, q, qt, ctx.train.recipe.weight);
  else
    fm::scaling::quantize(ctx.exec, w, ctx.train.recipe.weight, q);
  return {fm::nn::fp8_weight<float8_e4m3_t>{q, qt}, a.sub(extra)};
}

/// y (R,N) = x (R,K) W^T in the weight's form: float sgemm (nn::matmul), bf16 GEMM with FP32
/// accumulation (x rounded to bf16 on the way in), or FP8 (nn::fp8_linear: x quantized 1x128 with
/// ctx.recipe, 128x128 weight blocks, FP32 promotion every 128 K); with ctx.train.fprop, an fp8_gemm
/// float weight is quantized on the fly (fp8_training). y is overwritten (may be strided).
inline void linear(context& ctx, matrix_view<float const> x, linear_weight const& w, matrix_view<float> y) {
  if (x.rows == 0) return;
  auto const& ex = ctx.exec;
  if (w.f32.data && w.fp8_gemm && ctx.train.fprop) {  // the FP8 training recipe's Fprop
    auto const [fw, ws] =
        quantize_master(ctx, w.f32, false,
                        fm::nn::workspace_bytes(ex, fm::nn::linear_shape{x.rows, w.rows, x.cols},
                                                ctx.train.recipe, ctx.train.gemm));
    fm::nn::fp8_linear(ex, x, fw, y, ws, ctx.train.recipe, ctx.train.gemm);
  } else if (w.f32.data) {
    auto const ws = ctx.workspace(fm::nn::workspace_bytes(ex, fm::nn::matmul_shape{x.rows, w.rows, x.cols}));
    fm::nn::matmul(ex, x, fm::nn::transposed(matrix_view<float const>(w.f32)), y, {}, ws);
  } else if (w.bf16.data) {
    std::size_t const need = fm::nn::workspace_bytes(ex, fm::nn::matmul_shape{x.rows, w.rows, x.cols});
    fm::nn::workspace_arena a;
    a.matrix<bfloat16_t>(x.rows, x.cols);
    a.sub(need);
    fm::nn::workspace_arena arena(ctx.workspace(a.bytes()));
    auto const xb = arena.matrix<bfloat16_t>(x.rows, x.cols);
    for (std::int64_t r = 0; r < x.rows; ++r)
      for (std::int64_t c = 0; c < x.cols; ++c) xb(r, c) = bfloat16_t(x(r, c));
    fm::nn::matmul(ex, matrix_view<bfloat16_t const>(xb),
                   fm::nn::transposed(matrix_view<bfloat16_t const>(w.bf16)), y, {}, arena.sub(need));
  } else {
    fm::nn::fp8_weight<float8_e4m3_t> const fw{w.fp8, {}};
    auto const ws =
        ctx.workspace(fm::nn::workspace_bytes(ex, fm::nn::linear_shape{x.rows, w.rows, x.cols}, ctx.recipe));
    fm::nn::fp8_linear(ex, x, fw, y, ws, ctx.recipe);
  }
  round_activation(ctx, y);
}

/// y (T,C) = rmsnorm(x) * w; rstd (T) saved for the backward. eps = config.rms_norm_eps.
inline void rmsnorm(context& ctx, matrix_view<float const> x, vector_param w, double eps,
                    matrix_view<float> y, std::span<float> rstd) {
  fm::nn::rmsnorm_forward(ctx.exec, x, std::span<float const>(w), y, rstd, static_cast<float>(eps));
  round_activation(ctx, y);
}

// ---- multi-head latent attention -----------------------------------------------------------------

/// The RoPE table of a config: YaRN whenever rope_scaling is set (transformers; reference §0: model.py
/// applies it only when its run-time max length exceeds the original), interleaved pairs (model.py).
struct rope_state {
  std::vector<float> inv_freq;  // (dr/2)
  float attention_factor = 1.0f;
  fm::attention::mla_dims dims{};
  fm::nn::rope_table table() const { return {inv_freq, attention_factor}; }
};

inline rope_state make_rope(fm::io::deepseek_v3_config const& c) {
  fm::nn::rope_config rc{.dim = c.qk_rope_head_dim, .theta = c.rope_theta};
  if (c.rope_scaling) {
    auto const& s = *c.rope_scaling;
    rc.factor = s.factor;
    rc.original_max_position_embeddings = s.original_max_position_embeddings;
    rc.beta_fast = s.beta_fast;
    rc.beta_slow = s.beta_slow;
    rc.mscale = s.mscale;
    rc.mscale_all_dim = s.mscale_all_dim;
  }
  rope_state r;
  r.inv_freq.resize(static_cast<std::size_t>(c.qk_rope_head_dim / 2));
  fm::nn::rope_frequencies(rc, r.inv_freq);
  r.attention_factor = static_cast<float>(fm::nn::yarn_attention_factor(rc));
  // softmax_scale = qk_head_dim^-0.5 * mscale(factor, mscale_all_dim)^2 (reference §1.3)
  r.dims = {c.num_attention_heads, c.qk_nope_head_dim,
            c.qk_rope_head_dim,    c.v_head_dim,
            c.kv_lora_rank,        static_cast<float>(fm::nn::yarn_softmax_scale(rc, c.qk_head_dim()))};
  return r;
}

/// What one MLA layer keeps (T tokens; nh heads; dn, dr, dv head dims; kvr = kv_lora_rank).
struct mla_acts {
  matrix_view<float> cq{};       // (T, q_lora) wq_a x                      (q_lora_rank set)
  std::span<float> cq_rstd;      // (T)
  matrix_view<float> cq_norm{};  // (T, q_lora) q_a_layernorm(cq)
  matrix_view<float> q{};        // (T, nh*(dn+dr)) per head [q_nope | q_rope], q_rope rotated
  matrix_view<float> kv_a{};     // (T, kvr+dr) [latent | k_rope], k_rope rotated in place
  std::span<float> kv_rstd;      // (T)
  matrix_view<float> latent{};   // (T, kvr) kv_a_layernorm(latent): the compressed cache
  matrix_view<float> kv{};       // (T, nh*(dn+dv)) latent wkv_b^T per head [k_nope | v] (naive form)
  matrix_view<float> probs{};    // (nh*T, T) softmax, row h*T + t (naive form; the backward reads it)
  matrix_view<float> o{};        // (T, nh*dv) attention output, head-major (the input of wo)
};

/// out (T,H) = MLA(x (T,H)) at positions (T) (x is the normed layer input; reference §1.3). The
/// projections run through `linear` (the precision's form); the attention core stays float as DeepSeek
/// keeps it (scores, softmax in fp32). `cache` (absorbed form only): the new latent / rope-key rows are
/// appended and the queries attend the whole cache, query 0 at key cache->length() (decoding).
inline void mla_forward(context& ctx, mla_params const& w, rope_state const& rope, double eps,
                        std::span<std::int64_t const> positions, matrix_view<float const> x, mla_acts& a,
                        matrix_view<float> out, fm::attention::mla_cache* cache = nullptr) {
  auto const& d = rope.dims;
  std::int64_t const T = x.rows, dn = d.qk_nope_head_dim, dr = d.qk_rope_head_dim, kvr = d.kv_lora_rank;
  fm::require(!cache || ctx.attention == mla_form::absorbed, "dsv3::mla_forward", "cache",
              "the absorbed form (context.attention)");
  if (w.wq_a.rows > 0) {  // q = wq_b(q_norm(wq_a x))
    linear(ctx, x, w.wq_a, a.cq);
    rmsnorm(ctx, a.cq, w.q_norm, eps, a.cq_norm, a.cq_rstd);
    linear(ctx, a.cq_norm, w.wq_b, a.q);
  } else {
    linear(ctx, x, w.wq, a.q);
  }
  linear(ctx, x, w.wkv_a, a.kv_a);
  // RoPE on q_rope of every head and on the shared k_rope (in place)
  fm::nn::rope_forward(
      ctx.exec, rope.table(), positions,
      fm::batched_matrix_view<float>{a.q.data + dn, T, d.heads, dr, a.q.row_stride, dn + dr, 1});
  fm::nn::rope_forward(ctx.exec, rope.table(), positions,
                       fm::batched_matrix_view<float>{a.kv_a.data + kvr, T, 1, dr, a.kv_a.row_stride, dr, 1});
  round_activation(ctx, a.q);
  round_activation(ctx, a.kv_a);
  auto const latent_raw = fm::make_matrix<float const>(a.kv_a.data, T, kvr, a.kv_a.row_stride);
  auto const k_rope = fm::make_matrix<float const>(a.kv_a.data + kvr, T, dr, a.kv_a.row_stride);
  rmsnorm(ctx, latent_raw, w.kv_norm, eps, a.latent, a.kv_rstd);
  if (ctx.attention == mla_form::naive) linear(ctx, a.latent, w.wkv_b, a.kv);
  double const t0 = now_seconds();
  if (ctx.attention == mla_form::naive) {
    auto const ws =
        ctx.workspace(fm::attention::workspace_bytes(ctx.exec, fm::attention::mla_naive_shape{d, T, T}));
    fm::attention::mla_naive_forward(ctx.exec, d, a.q, a.kv, k_rope, 0, a.o, a.probs, ws);
  } else {
    std::int64_t const q_pos0 = cache ? cache->length() : 0;
    matrix_view<float const> lat = a.latent, kr = k_rope;
    if (cache) cache->append(lat, kr), lat = cache->latent(), kr = cache->k_rope();
    auto const ws = ctx.workspace(
        fm::attention::workspace_bytes(ctx.exec, fm::attention::mla_absorbed_shape{d, T, lat.rows}));
    fm::attention::mla_absorbed_forward(ctx.exec, d, a.q, w.wkv_b_float, lat, kr, q_pos0, a.o, ws);
  }
  ctx.core_seconds += now_seconds() - t0;
  round_activation(ctx, a.o);
  linear(ctx, a.o, w.wo, out);
}

// ---- feed-forward ------------------------------------------------------------------------------------

/// What a SwiGLU MLP keeps for R rows and width I.
struct mlp_acts {
  matrix_view<float> h13{};  // (R, 2I) [gate x | up x]
  matrix_view<float> act{};  // (R, I)  silu(gate x) * up x
};

/// out (R,H) = down(silu(gate x) * up x) for x (R,H) (reference §1.5: w2(silu(w1 x) * w3 x)).
inline void mlp_forward(context& ctx, mlp_params const& w, matrix_view<float const> x, mlp_acts const& a,
                        matrix_view<float> out) {
  std::int64_t const I = w.gate.rows;
  linear(ctx, x, w.gate, fm::make_matrix(a.h13.data, x.rows, I, a.h13.row_stride));
  linear(ctx, x, w.up, fm::make_matrix(a.h13.data + I, x.rows, I, a.h13.row_stride));
  if (x.rows > 0) fm::nn::swiglu(ctx.exec, matrix_view<float const>(a.h13), a.act);
  round_activation(ctx, a.act);
  linear(ctx, a.act, w.down, out);
}

// ---- backward (llm.c style: each next to its forward above) -----------------------------------------
// Gradients are float32 (the master-gradient layout: a params of precision fp32, see make_gradients).
// Weight gradients always ACCUMULATE (+=), so micro-batches sum; each function says whether its input
// gradient is written or accumulated. In precision bf16 the activation roundings of the forward are
// taken as the identity (straight-through), as a BF16 training framework does. Temporaries come from
// ctx.temps (released when a function returns).

/// The backward of `linear` (y = x W^T). dw (N,K) += dy^T x (FP32; ACCUMULATES). dx (R,K) = dy W,
/// WRITTEN, or ADDED with `accumulate_dx` (an x that feeds several linears); dx may be empty (no input
/// gradient wanted). Weight forms: fp32 (sgemm), bf16 (Dgrad as a BF16 GEMM with dy rounded to bf16,
/// FP32 accumulation; Wgrad in FP32 over the bf16-valued activations); with ctx.train.dgrad / .wgrad an
/// fp8_gemm float weight runs Dgrad / Wgrad in FP8 (fp8_training). An fp8 weight has no master copy to
/// train: an fp8moe::error (train from fp32/bf16 parameters).
inline void linear_backward(context& ctx, matrix_view<float const> x, linear_weight const& w,
                            matrix_view<float const> dy, matrix_view<float> dx, bool accumulate_dx,
                            matrix_view<float> dw) {
  constexpr char const* where = "dsv3::linear_backward";
  fm::require(w.f32.data != nullptr || w.bf16.data != nullptr, where, "w",
              "a float or bf16 weight (precision fp8 parameters have no master weights to train)");
  fm::require(dy.rows == x.rows && dy.cols == w.rows && x.cols == w.cols, where, "dy",
              "(R, N) with R = x.rows and N = w.rows");
  fm::require(dw.rows == w.rows && dw.cols == w.cols, where, "dw", "the weight's shape (N, K)");
  fm::require(dx.data == nullptr || (dx.rows == x.rows && dx.cols == x.cols), where, "dx",
              "empty or x's shape (R, K)");
  fm::require(!ctx.train.any() || w.bf16.data == nullptr, where, "ctx.train",
              "fp32 parameters for the FP8 training recipe (its master weights)");
  if (x.rows == 0) return;
  auto const& ex = ctx.exec;
  std::int64_t const R = x.rows, N = w.rows, K = w.cols;
  bool const fp8 = w.fp8_gemm && w.f32.data;
  if (fp8 && ctx.train.wgrad) {  // FP8 Wgrad: dw += dy^T x, 128x1 tiles of dy and x along the tokens
    // The transposed operands (N,R), (K,R) need 16-byte rows: R rounded up to 16 with zero rows (an
    // expert's few tokens), which add nothing to the product nor to any tile's amax.
    std::int64_t const Rp = fm::round_up<std::int64_t>(R, 16);
    auto const mark = ctx.temps.mark();
    matrix_view<float const> dyp = dy, xp = x;
    if (Rp != R) {
      auto const a = ctx.temps.zeros(Rp, N), b = ctx.temps.zeros(Rp, K);
      for (std::int64_t r = 0; r < R; ++r) {
        for (std::int64_t c = 0; c < N; ++c) a(r, c) = dy(r, c);
        for (std::int64_t c = 0; c < K; ++c) b(r, c) = x(r, c);
      }
      dyp = a, xp = b;
    }
    auto const ws = ctx.workspace(
        fm::nn::workspace_bytes(ex, fm::nn::linear_shape{Rp, N, K}, ctx.train.recipe, ctx.train.gemm));
    fm::nn::fp8_linear_wgrad(ex, dyp, xp, dw, true, ws, ctx.train.recipe, ctx.train.gemm);
    ctx.temps.release(mark);
  } else {  // Wgrad: dw (N,K) += dy^T (N,R) x (R,K)
    auto const ws = ctx.workspace(fm::nn::workspace_bytes(ex, fm::nn::matmul_shape{N, K, R}));
    fm::nn::matmul(ex, fm::nn::transposed(dy), x, dw, {.alpha = 1.0f, .beta = 1.0f}, ws);
  }
  if (dx.data == nullptr) return;
  if (fp8 && ctx.train.dgrad) {  // FP8 Dgrad: dx = dy W, 1x128 tiles of dy, the 128x128 blocks of W^T
    auto const mark = ctx.temps.mark();
    auto const out = accumulate_dx ? ctx.temps.matrix(R, K) : dx;
    auto const [fw, ws] = quantize_master(
        ctx, w.f32, true,
        fm::nn::workspace_bytes(ex, fm::nn::linear_shape{R, N, K}, ctx.train.recipe, ctx.train.gemm));
    fm::nn::fp8_linear_dgrad(ex, dy, fw, out, ws, ctx.train.recipe, ctx.train.gemm);
    if (accumulate_dx)
      for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t c = 0; c < K; ++c) dx(r, c) += out(r, c);
    ctx.temps.release(mark);
    return;
  }
  float const beta = accumulate_dx ? 1.0f : 0.0f;
  std::size_t const need = fm::nn::workspace_bytes(ex, fm::nn::matmul_shape{R, K, N});
  if (w.f32.data) {  // Dgrad: dx (R,K) = dy (R,N) W (N,K)
    fm::nn::matmul(ex, dy, matrix_view<float const>(w.f32), dx, {.alpha = 1.0f, .beta = beta},
                   ctx.workspace(need));
    return;
  }
  fm::nn::workspace_arena count;
  count.matrix<bfloat16_t>(R, N);
  count.sub(need);
  fm::nn::workspace_arena arena(ctx.workspace(count.bytes()));
  auto const dyb = arena.matrix<bfloat16_t>(R, N);
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t c = 0; c < N; ++c) dyb(r, c) = bfloat16_t(dy(r, c));
  fm::nn::matmul(ex, matrix_view<bfloat16_t const>(dyb), matrix_view<bfloat16_t const>(w.bf16), dx,
                 {.alpha = 1.0f, .beta = beta}, arena.sub(need));
}

/// The backward of `rmsnorm`: dx (T,C) and dw (C) both ACCUMULATE (nn::rmsnorm_backward).
inline void rmsnorm_backward(context& ctx, matrix_view<float const> x, vector_param w,
                             std::span<float const> rstd, matrix_view<float const> dy, matrix_view<float> dx,
                             vector_param dw) {
  fm::nn::rmsnorm_backward(ctx.exec, x, std::span<float const>(w), rstd, dy, dx, dw);
}

/// The backward of YaRN RoPE on the rope columns [c0, c0+dr) of each of `heads` groups of `group`
/// columns of m (T, heads*group): in place, the rotation's transpose (nn::rope_backward). OVERWRITES
/// the gradient w.r.t. the rotated values with the gradient w.r.t. the unrotated ones.
inline void rope_backward(context& ctx, rope_state const& rope, std::span<std::int64_t const> positions,
                          matrix_view<float> m, std::int64_t heads, std::int64_t group, std::int64_t c0) {
  std::int64_t const dr = rope.dims.qk_rope_head_dim;
  fm::nn::rope_backward(
      ctx.exec, rope.table(), positions,
      fm::batched_matrix_view<float>{m.data + c0, m.rows, heads, dr, m.row_stride, group, 1});
}

/// The backward of mla_forward (naive form: it reads the forward's kv and probs). dx (T,H) ACCUMULATES
/// dL/dx from dout (T,H); every projection and norm gradient of g ACCUMULATES. Order: o_proj ->
/// attention core (attention::mla_naive_backward) -> kv_b_proj -> kv_a_layernorm and the rotated
/// k_rope (rope_backward) -> kv_a_proj_with_mqa; the rotated q_rope (rope_backward) -> q_b_proj ->
/// q_a_layernorm -> q_a_proj (or q_proj).
inline void mla_backward(context& ctx, mla_params const& w, rope_state const& rope,
                         std::span<std::int64_t const> positions, matrix_view<float const> x,
                         mla_acts const& a, matrix_view<float const> dout, matrix_view<float> dx,
                         mla_params const& g) {
  std::int64_t const T = x.rows;
  if (T == 0) return;
  fm::require(a.probs.data != nullptr, "dsv3::mla_backward", "activations",
              "a naive-form forward (the absorbed form keeps no probs to differentiate)");
  auto const& d = rope.dims;
  std::int64_t const dn = d.qk_nope_head_dim, dr = d.qk_rope_head_dim, kvr = d.kv_lora_rank;
  auto const mark = ctx.temps.mark();
  auto const d_o = ctx.temps.matrix(T, a.o.cols);  // (T, nh*dv)
  linear_backward(ctx, a.o, w.wo, dout, d_o, false, g.wo.f32);
  auto const dq = ctx.temps.matrix(T, a.q.cols);    // (T, nh*(dn+dr))
  auto const dkv = ctx.temps.matrix(T, a.kv.cols);  // (T, nh*(dn+dv))
  auto const dkv_a = ctx.temps.zeros(T, kvr + dr);  // (T, kvr+dr) [d latent_raw | d k_rope]
  auto const dk_rope = fm::make_matrix(dkv_a.data + kvr, T, dr, dkv_a.row_stride);
  auto const k_rope = fm::make_matrix<float const>(a.kv_a.data + kvr, T, dr, a.kv_a.row_stride);
  auto const dk_tmp = ctx.temps.matrix(T, dr);  // mla_naive_backward wants a row-major (T, dr)
  double const t0 = now_seconds();
  fm::attention::mla_naive_backward(ctx.exec, d, a.q, a.kv, k_rope, 0, a.probs, d_o, dq, dkv, dk_tmp);
  ctx.core_seconds += now_seconds() - t0;
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t i = 0; i < dr; ++i) dk_rope(t, i) = dk_tmp(t, i);
  auto const dlatent = ctx.temps.matrix(T, kvr);
  linear_backward(ctx, a.latent, w.wkv_b, dkv, dlatent, false, g.wkv_b.f32);
  auto const latent_raw = fm::make_matrix<float const>(a.kv_a.data, T, kvr, a.kv_a.row_stride);
  rmsnorm_backward(ctx, latent_raw, w.kv_norm, a.kv_rstd, dlatent,
                   fm::make_matrix(dkv_a.data, T, kvr, dkv_a.row_stride), g.kv_norm);
  rope_backward(ctx, rope, positions, dkv_a, 1, kvr + dr, kvr);
  linear_backward(ctx, x, w.wkv_a, dkv_a, dx, true, g.wkv_a.f32);
  rope_backward(ctx, rope, positions, dq, d.heads, dn + dr, dn);
  if (w.wq_a.rows > 0) {
    auto const dcq_norm = ctx.temps.matrix(T, a.cq.cols);
    linear_backward(ctx, a.cq_norm, w.wq_b, dq, dcq_norm, false, g.wq_b.f32);
    auto const dcq = ctx.temps.zeros(T, a.cq.cols);
    rmsnorm_backward(ctx, a.cq, w.q_norm, a.cq_rstd, dcq_norm, dcq, g.q_norm);
    linear_backward(ctx, x, w.wq_a, dcq, dx, true, g.wq_a.f32);
  } else {
    linear_backward(ctx, x, w.wq, dq, dx, true, g.wq.f32);
  }
  ctx.temps.release(mark);
}

/// The backward of mlp_forward: dx (R,H) = dL/dx, WRITTEN, or ADDED with `accumulate_dx`; the gate,
/// up and down gradients of g ACCUMULATE. down_proj -> SwiGLU (nn::swiglu_backward) -> gate/up_proj.
inline void mlp_backward(context& ctx, mlp_params const& w, matrix_view<float const> x, mlp_acts const& a,
                         matrix_view<float const> dout, matrix_view<float> dx, bool accumulate_dx,
                         mlp_params const& g) {
  std::int64_t const R = x.rows, I = w.gate.rows;
  if (R == 0) return;
  auto const mark = ctx.temps.mark();
  auto const dact = ctx.temps.matrix(R, I);  // (R, I)
  linear_backward(ctx, a.act, w.down, dout, dact, false, g.down.f32);
  auto const dh13 = ctx.temps.matrix(R, 2 * I);  // (R, 2I) [d gate x | d up x]
  fm::nn::swiglu_backward(ctx.exec, matrix_view<float const>(a.h13), matrix_view<float const>(dact), dh13);
  linear_backward(ctx, x, w.gate, fm::make_matrix<float const>(dh13.data, R, I, 2 * I), dx, accumulate_dx,
                  g.gate.f32);
  linear_backward(ctx, x, w.up, fm::make_matrix<float const>(dh13.data + I, R, I, 2 * I), dx, true, g.up.f32);
  ctx.temps.release(mark);
}

}  // namespace dsv3
