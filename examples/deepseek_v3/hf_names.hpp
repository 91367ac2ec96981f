// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The Hugging Face checkpoint of a DeepSeek-V3 config, tensor by tensor: names and shapes [out, in]
// as deepseek-ai/DeepSeek-V3 stores them (reference/deepseek_v3_model.md §2.2), in a fixed order
// (embedding, main layers, final norm, head, then MTP layers `model.layers.<num_hidden_layers+i>.*`),
// and check_checkpoint(), which holds an opened checkpoint against that list.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/io/checkpoint.hpp"

namespace dsv3 {

/// The side of a weight block of the FP8 checkpoints (quantization_config.weight_block_size).
inline constexpr std::int64_t fp8_block = 128;

/// One tensor of the checkpoint. `fp8`: a linear weight DeepSeek stores as F8_E4M3 with a float32
/// `<name>_scale_inv` companion of shape scale_inv_shape() (not listed separately).
struct hf_tensor {
  std::string name;
  std::vector<std::int64_t> shape;  // [out, in] for matrices, [n] for norms and the router bias
  bool fp8 = false;

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  /// "<name>_scale_inv" (fp8 tensors only).
  std::string scale_inv_name() const { return name + "_scale_inv"; }
  /// [ceil(out/128), ceil(in/128)]: one float32 multiplier per 128x128 block, partial blocks included.
  std::vector<std::int64_t> scale_inv_shape() const {
    return {(shape[0] + fp8_block - 1) / fp8_block, (shape[1] + fp8_block - 1) / fp8_block};
  }
  /// The routing bias `mlp.gate.e_score_correction_bias` (stored as F32 in every checkpoint).
  bool is_router_bias() const { return name.ends_with(".e_score_correction_bias"); }
  /// An RMSNorm gain (every 1-D tensor that is not the router bias).
  bool is_norm() const { return shape.size() == 1 && !is_router_bias(); }
};

namespace detail {

struct inventory_builder {
  config const& c;
  std::vector<hf_tensor>& out;

  void add(std::string name, std::vector<std::int64_t> shape, bool fp8 = false) {
    out.push_back({std::move(name), std::move(shape), fp8});
  }
  void linear(std::string const& name, std::int64_t rows, std::int64_t cols) {
    add(name + ".weight", {rows, cols}, true);
  }
  void swiglu(std::string const& p, std::int64_t inter) {  // p: "...mlp." or "...experts.E."
    linear(p + "gate_proj", inter, c.hidden_size);
    linear(p + "up_proj", inter, c.hidden_size);
    linear(p + "down_proj", c.hidden_size, inter);
  }
  /// model.layers.<l>.*: pre-norm MLA, then a dense SwiGLU or the MoE block.
  void decoder_layer(std::int64_t l) {
    std::int64_t const H = c.hidden_size, nh = c.num_attention_heads;
    std::string const p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H});
    std::string const a = p + "self_attn.";
    if (c.q_lora_rank) {
      linear(a + "q_a_proj", *c.q_lora_rank, H);
      add(a + "q_a_layernorm.weight", {*c.q_lora_rank});
      linear(a + "q_b_proj", nh * c.qk_head_dim(), *c.q_lora_rank);
    } else {
      linear(a + "q_proj", nh * c.qk_head_dim(), H);
    }
    linear(a + "kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, H);
    add(a + "kv_a_layernorm.weight", {c.kv_lora_rank});
    linear(a + "kv_b_proj", nh * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    linear(a + "o_proj", H, nh * c.v_head_dim);
    add(p + "post_attention_layernorm.weight", {H});
    if (!c.is_moe_layer(l)) {
      swiglu(p + "mlp.", c.intermediate_size);
      return;
    }
    add(p + "mlp.gate.weight", {c.n_routed_experts, H});  // BF16 in DeepSeek's checkpoint
    if (c.topk_method == "noaux_tc") add(p + "mlp.gate.e_score_correction_bias", {c.n_routed_experts});
    for (std::int64_t e = 0; e < c.n_routed_experts; ++e)
      swiglu(p + "mlp.experts." + std::to_string(e) + ".", c.moe_intermediate_size);
    if (c.n_shared_experts > 0)
      swiglu(p + "mlp.shared_experts.", c.n_shared_experts * c.moe_intermediate_size);
  }
  /// MTP layer l = num_hidden_layers + i: its own copies of embedding and head, enorm/hnorm,
  /// eh_proj [H, 2H] (BF16: not FP8 in DeepSeek's checkpoint), a decoder layer, shared_head.norm.
  void mtp_layer(std::int64_t l) {
    std::int64_t const H = c.hidden_size;
    std::string const p = "model.layers." + std::to_string(l) + ".";
    add(p + "embed_tokens.weight", {c.vocab_size, H});
    add(p + "enorm.weight", {H});
    add(p + "hnorm.weight", {H});
    add(p + "eh_proj.weight", {H, 2 * H});
    decoder_layer(l);
    add(p + "shared_head.norm.weight", {H});
    add(p + "shared_head.head.weight", {c.vocab_size, H});
  }
};

}  // namespace detail

/// Every tensor of the HF checkpoint of `c` (validated first), in a fixed order: embed_tokens,
/// layers 0..L-1, model.norm, lm_head (absent when tie_word_embeddings), then the MTP layers.
inline std::vector<hf_tensor> hf_inventory(config const& c) {
  fp8moe::io::validate(c, "dsv3::hf_inventory config");
  std::vector<hf_tensor> out;
  detail::inventory_builder b{c, out};
  b.add("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) b.decoder_layer(l);
  b.add("model.norm.weight", {c.hidden_size});
  if (!c.tie_word_embeddings) b.add("lm_head.weight", {c.vocab_size, c.hidden_size});
  for (std::int64_t i = 0; i < c.num_nextn_predict_layers; ++i) b.mtp_layer(c.num_hidden_layers + i);
  return out;
}

/// What check_checkpoint found.
struct checkpoint_summary {
  std::size_t tensors = 0;      // in the inventory
  std::size_t fp8_weights = 0;  // stored as F8_E4M3 with a weight_scale_inv
  std::size_t files = 0;        // safetensors files
  std::uint64_t bytes = 0;      // tensor data bytes, scale_inv included
};

/// Throws (errc::io, naming the file and the tensor) unless `ck` holds exactly the tensors of
/// hf_inventory(c) with their shapes, each as F32 or BF16, except that a weight marked fp8 may be
/// F8_E4M3 with its float32 `weight_scale_inv` of scale_inv_shape(), and the router bias is F32.
inline checkpoint_summary check_checkpoint(config const& c, fp8moe::io::checkpoint const& ck) {
  using fp8moe::io::dtype;
  std::vector<hf_tensor> const inv = hf_inventory(c);
  std::vector<std::string> names;
  checkpoint_summary s{.tensors = inv.size(), .files = ck.files().size()};
  for (auto const& t : inv) {
    names.push_back(t.name);
    auto const r = ck.tensor(t.name);
    dtype const got = r.type();
    bool const fp8 = t.fp8 && got == dtype::f8_e4m3;
    if (fp8) {
      ++s.fp8_weights;
      names.push_back(t.scale_inv_name());
      auto const sr = ck.tensor(t.scale_inv_name());
      sr.expect(dtype::f32, t.scale_inv_shape());
      s.bytes += sr.bytes.size();
    } else if (t.is_router_bias() ? got != dtype::f32 : got != dtype::f32 && got != dtype::bf16) {
      fp8moe::io::detail::throw_tensor(ck.file_of(t.name).path().string(), t.name,
                                       fp8moe::detail::concat("expected dtype ",
                                                              t.is_router_bias() ? "F32"
                                                              : t.fp8            ? "F8_E4M3, BF16 or F32"
                                                                                 : "BF16 or F32",
                                                              ", got ", fp8moe::io::to_string(got)));
    }
    r.expect(got, t.shape);
    s.bytes += r.bytes.size();
  }
  ck.expect_tensors(names);
  return s;
}

}  // namespace dsv3
