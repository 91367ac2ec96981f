// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The parameters of DeepSeek-V3 as a struct of views into ONE allocation (llm.c style), bound to the
// Hugging Face tensor names (model.layers.N.self_attn.q_a_proj.weight, ...) and loaded from an HF
// directory through fp8moe::io (sharded index, any of F32/BF16/F8_E4M3 + weight_scale_inv). Every
// linear weight is kept as the precision asks: fp32 (dequantized float), bf16, or fp8 (E4M3 + the
// checkpoint's 128x128 weight_scale_inv blocks, partial blocks included; a float checkpoint is
// quantized on load with DeepSeek's weight_quant formula, amax/448 per block).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/io/checkpoint.hpp"
#include "fp8moe/io/deepseek_v3_config.hpp"
#include "fp8moe/nn/workspace.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "fp8moe/scaling/quantize.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "hf_names.hpp"

namespace dsv3 {

namespace fm = fp8moe;
using fm::bfloat16_t;
using fm::float8_e4m3_t;
using fm::matrix_view;

/// How the model computes (issue 14): fp32 = float32 everywhere with dequantized weights; bf16 =
/// bf16 weights, activations rounded to bf16 between layers; fp8 = the serving path (E4M3 weights
/// with 128x128 block scales, activations quantized 1x128 on the fly, FP8 GEMMs).
enum class precision { fp32, bf16, fp8 };

inline std::string_view to_string(precision p) {
  return p == precision::fp32 ? "fp32" : p == precision::bf16 ? "bf16" : "fp8";
}
/// "fp32" | "bf16" | "fp8"; anything else is an fp8moe::error naming `precision`.
inline precision parse_precision(std::string_view s) {
  if (s == "fp32") return precision::fp32;
  if (s == "bf16") return precision::bf16;
  fm::require(s == "fp8", "dsv3::parse_precision", "precision", "fp32, bf16 or fp8",
              "'" + std::string(s) + "'");
  return precision::fp8;
}

/// The 128x128 weight block of DeepSeek's checkpoints (quantization_config.weight_block_size) and
/// its weight_quant formula (s = amax/448, q = x/s; README_WEIGHTS.md, kernel.py).
inline constexpr fm::scaling::tensor_recipe weight_block_recipe{
    .tile = fm::scaling::block_128x128, .formula = fm::scaling::scale_formula::deepseek_v3_inference};

/// One linear weight W (out, in), as HF stores it. Exactly one form is set: the one the model's
/// precision computes with (FP8 only for the tensors the checkpoint stores in FP8; the router gate,
/// LM head, MTP eh_proj stay float, as DeepSeek keeps them out of FP8).
struct linear_weight {
  matrix_view<float> f32{};        // (out, in)
  matrix_view<bfloat16_t> bf16{};  // (out, in)
  fm::scaling::quantized_matrix_view<float8_e4m3_t>
      fp8{};                        // (out, in) E4M3 + scale_inv (ceil(out/128), ceil(in/128))
  std::int64_t rows = 0, cols = 0;  // out, in
  bool fp8_gemm = false;            // DeepSeek runs this product in FP8 (stored F8_E4M3 in the checkpoint;
                                    // the FP8 training recipe quantizes it, see dsv3::fp8_training)
};

/// A norm weight (C) or a bias (E): float, values rounded to bf16 in precision bf16.
using vector_param = std::span<float>;

/// Multi-head latent attention (reference §1.3): d = H hidden, nh heads, dn/dr/dv head dims.
struct mla_params {
  linear_weight wq;      // (nh*(dn+dr), H)      q_proj: only when q_lora_rank is null
  linear_weight wq_a;    // (q_lora, H)          q_a_proj
  vector_param q_norm;   // (q_lora)             q_a_layernorm
  linear_weight wq_b;    // (nh*(dn+dr), q_lora) q_b_proj: per head [q_nope (dn) | q_rope (dr)]
  linear_weight wkv_a;   // (kv_lora+dr, H)      kv_a_proj_with_mqa: [latent (kv_lora) | k_rope (dr)]
  vector_param kv_norm;  // (kv_lora)            kv_a_layernorm
  linear_weight wkv_b;   // (nh*(dn+dv), kv_lora) kv_b_proj: per head [k_nope (dn) | v (dv)]
  matrix_view<float> wkv_b_float{};  // (nh*(dn+dv), kv_lora) wkv_b as float (the absorbed form reads it;
                                     // dequantized as DeepSeek's model.py does; = wkv_b.f32 in fp32)
  linear_weight wo;                  // (H, nh*dv)           o_proj, input head-major o[h*dv + j]
};

/// A SwiGLU MLP: down(silu(gate x) * up x). Dense: I = intermediate_size; expert: moe_intermediate_size;
/// shared expert: n_shared_experts * moe_intermediate_size.
struct mlp_params {
  linear_weight gate;     // (I, H) gate_proj
  linear_weight up;       // (I, H) up_proj
  linear_weight down;     // (H, I) down_proj
  linear_weight gate_up;  // (2I, H) [gate; up]: one view over both (adjacent in memory), so one GEMM
                          // computes both; empty in fp8 when I % 128 != 0 (a scale block would straddle)
};

/// The MoE feed-forward (reference §1.5): router gate + bias, E routed experts, the shared expert.
struct moe_params {
  linear_weight gate;  // (E, H) mlp.gate.weight: float in every precision (HF routes in fp32)
  vector_param bias;   // (E)    mlp.gate.e_score_correction_bias (F32; topk_method noaux_tc only)
  std::vector<mlp_params> experts;  // E x    mlp.experts.e.{gate,up,down}_proj
  mlp_params shared;                // Is = n_shared_experts * moe_intermediate_size; mlp.shared_experts.*
  bool has_shared = false;
};

/// One decoder block (reference §1.6): x += MLA(attn_norm(x)); x += FFN(ffn_norm(x)).
struct layer_params {
  vector_param attn_norm;  // (H) input_layernorm
  mla_params attn;
  vector_param ffn_norm;  // (H) post_attention_layernorm
  bool is_moe = false;
  mlp_params mlp;  // dense layers (l < first_k_dense_replace)
  moe_params moe;  // MoE layers
};

/// One MTP module as the checkpoint stores it (layer num_hidden_layers + i; reference §2.2, §3.2):
/// eh_proj([enorm(emb(t_{i+1})) ; hnorm(h_i)]) -> decoder block -> shared_head.norm -> shared_head.head.
struct mtp_params {
  matrix_view<float> embed;  // (V, H) embed_tokens (a duplicate of the main embedding)
  vector_param enorm;        // (H)
  vector_param hnorm;        // (H)
  linear_weight eh_proj;     // (H, 2H) BF16 in the checkpoint, float here
  layer_params block;        // a full decoder block
  vector_param head_norm;    // (H) shared_head.norm
  linear_weight head;        // (V, H) shared_head.head
};

/// All parameters: views into `storage` (one allocation).
struct params {
  fm::io::deepseek_v3_config cfg;
  precision prec = precision::fp32;
  matrix_view<float> embed{};        // (V, H) model.embed_tokens
  std::vector<layer_params> layers;  // num_hidden_layers
  vector_param norm;                 // (H) model.norm
  linear_weight lm_head;             // (V, H) lm_head: float in every precision (DeepSeek: BF16, never FP8)
  std::vector<mtp_params> mtp;       // num_nextn_predict_layers
  std::shared_ptr<std::byte[]> storage;
  std::size_t bytes = 0;  // size of storage
};

// ---- binding: every member carved from one arena and named as in the HF checkpoint ----------------

namespace detail {

/// One tensor of the checkpoint and where it goes.
struct slot {
  std::string name;
  std::vector<std::int64_t> shape;
  linear_weight* linear = nullptr;  // a linear weight (fp8 = the checkpoint stores it as F8_E4M3)
  bool fp8 = false;
  float* floats = nullptr;  // or float elements (norm, bias, embedding)
};

/// Carves the parameters of `p.cfg` / `p.prec` from `arena` (counting or carving) and lists the slots.
class binder {
 public:
  binder(params& p, fm::nn::workspace_arena& arena, std::vector<slot>* slots)
      : p_(p), a_(arena), slots_(slots) {}

  void vec(vector_param& v, std::string name, std::int64_t n) {
    float* d = a_.take<float>(n);
    v = a_.counting() ? vector_param{} : vector_param{d, static_cast<std::size_t>(n)};
    add({std::move(name), {n}, nullptr, false, d});
  }
  void mat(matrix_view<float>& m, std::string name, std::int64_t r, std::int64_t c) {
    m = fm::make_matrix(a_.take<float>(r * c), r, c);
    add({std::move(name), {r, c}, nullptr, false, m.data});
  }
  /// A linear weight; `fp8`: the checkpoint stores it as F8_E4M3 (then it takes the precision's form).
  void linear(linear_weight& w, std::string name, std::int64_t r, std::int64_t c, bool fp8) {
    w = {};
    w.rows = r, w.cols = c;
    w.fp8_gemm = fp8;
    precision const form = fp8 ? p_.prec : precision::fp32;
    if (form == precision::fp32) {
      w.f32 = fm::make_matrix(a_.take<float>(r * c), r, c);
    } else if (form == precision::bf16) {
      w.bf16 = fm::make_matrix(a_.take<bfloat16_t>(r * c), r, c);
    } else {
      auto const t = weight_block_recipe.tile;
      w.fp8.data = fm::make_matrix(a_.take<float8_e4m3_t>(r * c), r, c);
      std::int64_t const sr = fm::scaling::scale_rows(t, r), sc = fm::scaling::scale_cols(t, c);
      w.fp8.scales = fm::make_matrix(a_.take<float>(sr * sc), sr, sc);
      w.fp8.tile = t;
    }
    add({std::move(name), {r, c}, &w, fp8, nullptr});
  }
  /// Two FP8-stored linear weights a, b (each r x c) adjacent in memory (data, then the scales), and
  /// `both` (2r x c) viewing them as one weight where that view is exact.
  void linear_pair(linear_weight& a, linear_weight& b, linear_weight& both, std::string name_a,
                   std::string name_b, std::int64_t r, std::int64_t c) {
    a = {}, b = {}, both = {};
    a.rows = b.rows = r, a.cols = b.cols = c;
    a.fp8_gemm = b.fp8_gemm = true;
    if (p_.prec == precision::fp32) {
      float* d = a_.take<float>(2 * r * c);
      a.f32 = fm::make_matrix(d, r, c), b.f32 = fm::make_matrix(d ? d + r * c : d, r, c);
      both = {.f32 = fm::make_matrix(d, 2 * r, c), .rows = 2 * r, .cols = c, .fp8_gemm = true};
    } else if (p_.prec == precision::bf16) {
      bfloat16_t* d = a_.take<bfloat16_t>(2 * r * c);
      a.bf16 = fm::make_matrix(d, r, c), b.bf16 = fm::make_matrix(d ? d + r * c : d, r, c);
      both = {.bf16 = fm::make_matrix(d, 2 * r, c), .rows = 2 * r, .cols = c, .fp8_gemm = true};
    } else {
      auto const t = weight_block_recipe.tile;
      std::int64_t const sr = fm::scaling::scale_rows(t, r), sc = fm::scaling::scale_cols(t, c);
      float8_e4m3_t* d = a_.take<float8_e4m3_t>(2 * r * c);
      float* s = a_.take<float>(2 * sr * sc);
      a.fp8 = {fm::make_matrix(d, r, c), fm::make_matrix(s, sr, sc), t};
      b.fp8 = {fm::make_matrix(d ? d + r * c : d, r, c), fm::make_matrix(s ? s + sr * sc : s, sr, sc), t};
      if (r % t.rows == 0)
        both = {.fp8 = {fm::make_matrix(d, 2 * r, c), fm::make_matrix(s, 2 * sr, sc), t},
                .rows = 2 * r,
                .cols = c,
                .fp8_gemm = true};
    }
    add({std::move(name_a), {r, c}, &a, true, nullptr});
    add({std::move(name_b), {r, c}, &b, true, nullptr});
  }

 private:
  void add(slot s) {
    if (slots_) slots_->push_back(std::move(s));
  }
  params& p_;
  fm::nn::workspace_arena& a_;
  std::vector<slot>* slots_;
};

inline void bind_mlp(binder& b, mlp_params& m, std::string const& prefix, std::int64_t H, std::int64_t I) {
  b.linear_pair(m.gate, m.up, m.gate_up, prefix + "gate_proj.weight", prefix + "up_proj.weight", I, H);
  b.linear(m.down, prefix + "down_proj.weight", H, I, true);
}

inline void bind_block(binder& b, fm::nn::workspace_arena& a, params const& p, layer_params& L,
                       std::int64_t l) {
  auto const& c = p.cfg;
  std::int64_t const H = c.hidden_size, nh = c.num_attention_heads, dn = c.qk_nope_head_dim,
                     dr = c.qk_rope_head_dim, dv = c.v_head_dim, kvr = c.kv_lora_rank;
  std::string const pre = "model.layers." + std::to_string(l) + ".";
  b.vec(L.attn_norm, pre + "input_layernorm.weight", H);
  std::string const at = pre + "self_attn.";
  if (c.q_lora_rank) {
    b.linear(L.attn.wq_a, at + "q_a_proj.weight", *c.q_lora_rank, H, true);
    b.vec(L.attn.q_norm, at + "q_a_layernorm.weight", *c.q_lora_rank);
    b.linear(L.attn.wq_b, at + "q_b_proj.weight", nh * (dn + dr), *c.q_lora_rank, true);
  } else {
    b.linear(L.attn.wq, at + "q_proj.weight", nh * (dn + dr), H, true);
  }
  b.linear(L.attn.wkv_a, at + "kv_a_proj_with_mqa.weight", kvr + dr, H, true);
  b.vec(L.attn.kv_norm, at + "kv_a_layernorm.weight", kvr);
  b.linear(L.attn.wkv_b, at + "kv_b_proj.weight", nh * (dn + dv), kvr, true);
  b.linear(L.attn.wo, at + "o_proj.weight", H, nh * dv, true);
  if (p.prec == precision::fp32)
    L.attn.wkv_b_float = L.attn.wkv_b.f32;
  else
    L.attn.wkv_b_float = fm::make_matrix(a.take<float>(nh * (dn + dv) * kvr), nh * (dn + dv), kvr);
  b.vec(L.ffn_norm, pre + "post_attention_layernorm.weight", H);
  L.is_moe = c.is_moe_layer(l);
  std::string const mp = pre + "mlp.";
  if (!L.is_moe) {
    bind_mlp(b, L.mlp, mp, H, c.intermediate_size);
    return;
  }
  std::int64_t const E = c.n_routed_experts, I = c.moe_intermediate_size;
  b.linear(L.moe.gate, mp + "gate.weight", E, H, false);
  if (c.topk_method == "noaux_tc") b.vec(L.moe.bias, mp + "gate.e_score_correction_bias", E);
  L.moe.experts.resize(static_cast<std::size_t>(E));
  for (std::int64_t e = 0; e < E; ++e)
    bind_mlp(b, L.moe.experts[static_cast<std::size_t>(e)], mp + "experts." + std::to_string(e) + ".", H, I);
  L.moe.has_shared = c.n_shared_experts > 0;
  if (L.moe.has_shared) bind_mlp(b, L.moe.shared, mp + "shared_experts.", H, c.n_shared_experts * I);
}

/// Carves every member of p (p.cfg, p.prec set) from `a`, in the checkpoint's order.
inline void bind_all(params& p, fm::nn::workspace_arena& a, std::vector<slot>* slots) {
  auto const& c = p.cfg;
  std::int64_t const V = c.vocab_size, H = c.hidden_size;
  binder b(p, a, slots);
  b.mat(p.embed, "model.embed_tokens.weight", V, H);
  p.layers.assign(static_cast<std::size_t>(c.num_hidden_layers), {});
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
    bind_block(b, a, p, p.layers[static_cast<std::size_t>(l)], l);
  b.vec(p.norm, "model.norm.weight", H);
  if (c.tie_word_embeddings)  // the head reads the embedding table
    p.lm_head = {.f32 = p.embed, .rows = V, .cols = H};
  else
    b.linear(p.lm_head, "lm_head.weight", V, H, false);
  p.mtp.assign(static_cast<std::size_t>(c.num_nextn_predict_layers), {});
  for (std::int64_t i = 0; i < c.num_nextn_predict_layers; ++i) {
    auto& m = p.mtp[static_cast<std::size_t>(i)];
    std::int64_t const l = c.num_hidden_layers + i;
    std::string const pre = "model.layers." + std::to_string(l) + ".";
    b.mat(m.embed, pre + "embed_tokens.weight", V, H);
    b.vec(m.enorm, pre + "enorm.weight", H);
    b.vec(m.hnorm, pre + "hnorm.weight", H);
    b.linear(m.eh_proj, pre + "eh_proj.weight", H, 2 * H, false);
    bind_block(b, a, p, m.block, l);
    b.vec(m.head_norm, pre + "shared_head.norm.weight", H);
    b.linear(m.head, pre + "shared_head.head.weight", V, H, false);
  }
}

// ---- loading ----------------------------------------------------------------------------------------

/// Reads tensor `name` of shape `shape` into `out` (numel floats), whatever its dtype: F32, BF16, or
/// F8_E4M3 dequantized with `<name>_scale_inv` (ceil(rows/128), ceil(cols/128)), partial blocks included.
inline void read_float(fm::io::checkpoint const& ck, std::string const& name,
                       std::span<std::int64_t const> shape, float* out) {
  namespace io = fm::io;
  io::tensor_ref const t = ck.tensor(name);
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  t.expect(t.type(), shape);  // shape checked (any dtype)
  std::byte const* src = t.bytes.data();
  switch (t.type()) {
    case io::dtype::f32:
      std::memcpy(out, src, static_cast<std::size_t>(n) * sizeof(float));
      return;
    case io::dtype::bf16:
      for (std::int64_t i = 0; i < n; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        out[i] = static_cast<float>(bfloat16_t::from_bits(bits));
      }
      return;
    case io::dtype::f8_e4m3: {
      fm::require(shape.size() == 2, "dsv3::load", name, "a 2-D weight when stored as F8_E4M3");
      std::int64_t const R = shape[0], C = shape[1];
      std::int64_t const SR = fm::ceil_div<std::int64_t>(R, 128), SC = fm::ceil_div<std::int64_t>(C, 128);
      io::tensor_ref const s = ck.tensor(name + "_scale_inv");
      s.expect(io::dtype::f32, {SR, SC});
      std::vector<float> sc(static_cast<std::size_t>(SR * SC));
      s.copy_to(std::as_writable_bytes(std::span(sc)));
      for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t c = 0; c < C; ++c) {
          auto const q = float8_e4m3_t::from_bits(static_cast<std::uint8_t>(src[r * C + c]));
          out[r * C + c] = static_cast<float>(q) * sc[static_cast<std::size_t>((r / 128) * SC + c / 128)];
        }
      return;
    }
    default:
      fm::io::detail::throw_tensor(
          t.file, name, "expected dtype F32, BF16 or F8_E4M3, got " + std::string(to_string(t.type())));
  }
}

/// Fills one linear weight from the checkpoint in its form (f32 / bf16 / fp8). `tmp`: reused scratch.
inline void load_linear(fm::io::checkpoint const& ck, slot const& s, precision prec,
                        std::vector<float>& tmp) {
  linear_weight& w = *s.linear;
  std::int64_t const R = w.rows, C = w.cols;
  if (w.fp8.data.data != nullptr) {
    fm::io::tensor_ref const t = ck.tensor(s.name);
    if (t.type() == fm::io::dtype::f8_e4m3) {  // keep the checkpoint's FP8 bytes and scale_inv blocks
      t.expect(fm::io::dtype::f8_e4m3, s.shape);
      t.copy_to({reinterpret_cast<std::byte*>(w.fp8.data.data), static_cast<std::size_t>(R * C)});
      fm::io::tensor_ref const sc = ck.tensor(s.name + "_scale_inv");
      sc.expect(fm::io::dtype::f32, {w.fp8.scales.rows, w.fp8.scales.cols});
      sc.copy_to({reinterpret_cast<std::byte*>(w.fp8.scales.data),
                  static_cast<std::size_t>(w.fp8.scales.size()) * sizeof(float)});
      return;
    }
    tmp.resize(static_cast<std::size_t>(R * C));  // a float/bf16 checkpoint: quantize as weight_quant does
    read_float(ck, s.name, s.shape, tmp.data());
    fm::scaling::quantize(fm::host_executor{}, fm::make_matrix<float const>(tmp.data(), R, C),
                          weight_block_recipe, w.fp8);
    return;
  }
  if (w.f32.data != nullptr) {
    read_float(ck, s.name, s.shape, w.f32.data);
    if (prec == precision::bf16)  // every weight is BF16 in precision bf16
      for (std::int64_t i = 0; i < R * C; ++i) w.f32.data[i] = static_cast<float>(bfloat16_t(w.f32.data[i]));
    return;
  }
  tmp.resize(static_cast<std::size_t>(R * C));
  read_float(ck, s.name, s.shape, tmp.data());
  for (std::int64_t i = 0; i < R * C; ++i) w.bf16.data[i] = bfloat16_t(tmp[static_cast<std::size_t>(i)]);
}

/// wkv_b as float for the absorbed form: the dequantized weight (DeepSeek's weight_dequant).
inline void fill_wkv_b_float(mla_params& a, precision prec) {
  if (prec == precision::fp32) return;  // an alias of wkv_b.f32
  auto& d = a.wkv_b_float;
  for (std::int64_t r = 0; r < d.rows; ++r)
    for (std::int64_t c = 0; c < d.cols; ++c)
      d(r, c) = prec == precision::bf16
                    ? static_cast<float>(a.wkv_b.bf16(r, c))
                    : static_cast<float>(a.wkv_b.fp8.data(r, c)) * a.wkv_b.fp8.scale_at(r, c);
}

}  // namespace detail

/// The HF names of every tensor the parameters bind, in binding order, with their shapes and whether
/// the checkpoint stores them as F8_E4M3 (no allocation of the weights).
inline std::vector<detail::slot> bound_tensors(fm::io::deepseek_v3_config const& cfg) {
  params p;
  p.cfg = cfg;
  fm::nn::workspace_arena counting;
  std::vector<detail::slot> slots;
  detail::bind_all(p, counting, &slots);
  for (auto& s : slots) s.linear = nullptr, s.floats = nullptr;
  return slots;
}

/// Bytes of the one allocation for this config and precision.
inline std::size_t param_bytes(fm::io::deepseek_v3_config const& cfg, precision prec) {
  params p;
  p.cfg = cfg;
  p.prec = prec;
  fm::nn::workspace_arena counting;
  detail::bind_all(p, counting, nullptr);
  return counting.bytes();
}

/// Loads the parameters of the HF checkpoint directory `dir` (config.json + model.safetensors or a
/// sharded index) in precision `prec`. Throws fp8moe::error naming the file/tensor when one is missing
/// or has another shape, or when the config is invalid.
inline params load_params(std::filesystem::path const& dir, precision prec) {
  params p;
  p.cfg = fm::io::read_deepseek_v3_config(dir / "config.json");
  p.prec = prec;
  p.bytes = param_bytes(p.cfg, prec);
  p.storage = std::shared_ptr<std::byte[]>(new std::byte[p.bytes]);
  fm::nn::workspace_arena arena({p.storage.get(), p.bytes});
  std::vector<detail::slot> slots;
  detail::bind_all(p, arena, &slots);
  fm::io::checkpoint const ck(dir);
  check_checkpoint(p.cfg, ck);  // exactly the tensors of hf_inventory(cfg), shapes and dtypes checked
  std::vector<float> tmp;
  for (auto const& s : slots) {
    if (s.linear) {
      detail::load_linear(ck, s, prec, tmp);
      continue;
    }
    detail::read_float(ck, s.name, s.shape, s.floats);
    std::int64_t n = 1;
    for (auto d : s.shape) n *= d;
    bool const is_bias = s.name.ends_with("e_score_correction_bias");  // F32 in the checkpoint: kept
    if (prec == precision::bf16 && !is_bias)
      for (std::int64_t i = 0; i < n; ++i) s.floats[i] = static_cast<float>(bfloat16_t(s.floats[i]));
  }
  for (auto& L : p.layers) detail::fill_wkv_b_float(L.attn, prec);
  for (auto& m : p.mtp) detail::fill_wkv_b_float(m.block.attn, prec);
  return p;
}

/// The gradients of the parameters of `cfg` (issue 16): a params of precision fp32 (every linear as
/// .f32, the float32 master-gradient layout, HF names and shapes as the parameters), in one allocation,
/// zero-filled. Tied embeddings tie here too (the head's gradient adds into the embedding's).
/// `slots`, when given, receives each gradient tensor's HF name, shape and storage (as load_params').
inline params make_gradients(fm::io::deepseek_v3_config const& cfg,
                             std::vector<detail::slot>* slots = nullptr) {
  params g;
  g.cfg = cfg;
  g.prec = precision::fp32;
  g.bytes = param_bytes(cfg, precision::fp32);
  g.storage = std::shared_ptr<std::byte[]>(new std::byte[g.bytes]());
  fm::nn::workspace_arena arena({g.storage.get(), g.bytes});
  detail::bind_all(g, arena, slots);
  return g;
}

/// Sets every gradient of g (make_gradients) to 0 (before the first micro-batch of a step).
inline void zero_gradients(params& g) {
  fm::require(g.prec == precision::fp32 && g.storage != nullptr, "dsv3::zero_gradients", "g",
              "gradients from make_gradients");
  std::fill_n(g.storage.get(), g.bytes, std::byte{0});
}

}  // namespace dsv3
