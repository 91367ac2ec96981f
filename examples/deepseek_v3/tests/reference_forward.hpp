// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::ref: an independent float64 forward of DeepSeek-V3 read from a Hugging Face checkpoint,
// the oracle the example's tests check the optimized model against. Plain loops over
// std::vector<double>, written from the equations (reference notes §1.2-1.6, §1.4 YaRN, §3.2 MTP);
// fp8moe::io only reads the files: no fp8moe nn/attention/moe/numeric math is used. Every call
// returns fresh tensors (nothing is overwritten); prefill from position 0; one thread; slow by design.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <numbers>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/io/checkpoint.hpp"
#include "fp8moe/io/deepseek_v3_config.hpp"

namespace dsv3::ref {

using config = fp8moe::io::deepseek_v3_config;

// ---------------------------------------------------------------------------------------------
// Tensors

inline std::int64_t element_count(std::span<std::int64_t const> shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

inline std::string shape_text(std::span<std::int64_t const> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// A dense row-major float64 tensor. Activations are 2-D (rows = tokens); weights are [out, in]
/// (as stored by HF) or [n] for norm weights and biases.
struct tensor {
  std::vector<std::int64_t> shape;
  std::vector<double> data;

  tensor() = default;
  explicit tensor(std::vector<std::int64_t> s, double fill = 0.0)
      : shape(std::move(s)), data(static_cast<std::size_t>(element_count(shape)), fill) {}

  std::int64_t rows() const { return shape.at(0); }
  std::int64_t cols() const { return shape.at(1); }
  double& operator()(std::int64_t r, std::int64_t c) {
    return data[static_cast<std::size_t>(r * shape[1] + c)];
  }
  double operator()(std::int64_t r, std::int64_t c) const {
    return data[static_cast<std::size_t>(r * shape[1] + c)];
  }
  double operator[](std::int64_t i) const { return data[static_cast<std::size_t>(i)]; }
  std::span<double> row(std::int64_t r) {
    return std::span<double>(data).subspan(static_cast<std::size_t>(r * shape[1]),
                                           static_cast<std::size_t>(shape[1]));
  }
  std::span<double const> row(std::int64_t r) const {
    return std::span<double const>(data).subspan(static_cast<std::size_t>(r * shape[1]),
                                                 static_cast<std::size_t>(shape[1]));
  }
};

[[noreturn]] inline void fail(std::string const& what) {
  throw fp8moe::error(fp8moe::errc::invalid_argument, "dsv3::ref: " + what);
}

/// Throws, naming `what`, unless t is 2-D with `cols` columns (any rows when rows < 0).
inline void expect_matrix(tensor const& t, std::string_view what, std::int64_t rows, std::int64_t cols) {
  if (t.shape.size() != 2 || (rows >= 0 && t.shape[0] != rows) || t.shape[1] != cols)
    fail(fp8moe::detail::concat("argument '", what, "': expected shape [",
                                rows < 0 ? "T" : std::to_string(rows), ", ", cols, "], got ",
                                shape_text(t.shape)));
}

// ---------------------------------------------------------------------------------------------
// Stored element types, decoded from their bits (independent of fp8moe::numeric)

/// BF16: the top 16 bits of an IEEE binary32.
inline double decode_bf16(std::uint16_t bits) {
  return static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16));
}

/// IEEE binary16: 1 sign, 5 exponent bits (bias 15), 10 mantissa bits.
inline double decode_f16(std::uint16_t bits) {
  int const e = (bits >> 10) & 0x1F, m = bits & 0x3FF;
  double v = e == 0 ? std::ldexp(m, -24)  // subnormal: m * 2^-14 * 2^-10
             : e == 31
                 ? (m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity())
                 : std::ldexp(1024 + m, e - 25);
  return (bits & 0x8000) ? -v : v;
}

/// F8_E4M3 (float8_e4m3fn): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities,
/// S.1111.111 is NaN; max 448 = 0.1111.110; subnormals m * 2^-9.
inline double decode_e4m3(std::uint8_t bits) {
  int const e = (bits >> 3) & 0xF, m = bits & 0x7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  double const v = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);  // (1 + m/8) * 2^(e-7)
  return (bits & 0x80) ? -v : v;
}

/// F8_E5M2: 1 sign, 5 exponent bits (bias 15), 2 mantissa bits; IEEE-like inf/NaN.
inline double decode_e5m2(std::uint8_t bits) {
  int const e = (bits >> 2) & 0x1F, m = bits & 0x3;
  double v = e == 0 ? std::ldexp(m, -16)  // m/4 * 2^-14
             : e == 31
                 ? (m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity())
                 : std::ldexp(4 + m, e - 17);  // (1 + m/4) * 2^(e-15)
  return (bits & 0x80) ? -v : v;
}

/// Every element of a stored floating-point tensor as double, shape as stored (integer dtypes are
/// rejected: a DeepSeek-V3 checkpoint has none).
inline tensor read_stored(fp8moe::io::tensor_ref const& r) {
  using fp8moe::io::dtype;
  tensor t({r.shape().begin(), r.shape().end()});
  std::byte const* p = r.bytes.data();
  for (std::size_t i = 0; i < t.data.size(); ++i) {
    switch (r.type()) {
      case dtype::f32: {
        float f;
        std::memcpy(&f, p + 4 * i, 4);
        t.data[i] = f;
        break;
      }
      case dtype::bf16:
      case dtype::f16: {
        std::uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        t.data[i] = r.type() == dtype::bf16 ? decode_bf16(b) : decode_f16(b);
        break;
      }
      case dtype::f8_e4m3:
        t.data[i] = decode_e4m3(static_cast<std::uint8_t>(p[i]));
        break;
      case dtype::f8_e5m2:
        t.data[i] = decode_e5m2(static_cast<std::uint8_t>(p[i]));
        break;
      default:
        fail(fp8moe::detail::concat("tensor '", r.name(), "' in '", r.file,
                                    "': expected a floating-point dtype, got ",
                                    fp8moe::io::to_string(r.type())));
    }
  }
  return t;
}

/// The dequantized weight `name` of an HF checkpoint: BF16/F16/F32 as stored; an FP8 weight
/// W (out,in) times its `<name>_scale_inv` S (ceil(out/128), ceil(in/128)) block by block,
/// W[i,j] * S[i/128, j/128], the last row and column blocks partial (§2.1 README_WEIGHTS).
inline tensor load_weight(fp8moe::io::checkpoint const& ck, std::string const& name) {
  using fp8moe::io::dtype;
  auto const ref = ck.tensor(name);
  tensor w = read_stored(ref);
  if (ref.type() != dtype::f8_e4m3 && ref.type() != dtype::f8_e5m2) return w;
  std::string const scale_name = name + "_scale_inv";
  if (w.shape.size() != 2)
    fail(fp8moe::detail::concat("tensor '", name, "': an FP8 weight must be 2-D [out, in], got ",
                                shape_text(w.shape)));
  if (!ck.contains(scale_name))
    fail(fp8moe::detail::concat("tensor '", name, "' is FP8 but '", scale_name, "' is missing"));
  tensor const s = read_stored(ck.tensor(scale_name));  // (ceil(out/128), ceil(in/128))
  std::int64_t const out = w.rows(), in = w.cols(), block = 128;
  std::vector<std::int64_t> const want{(out + block - 1) / block, (in + block - 1) / block};
  if (s.shape != want)
    fail(fp8moe::detail::concat("tensor '", scale_name, "': expected shape ", shape_text(want),
                                " for weight ", shape_text(w.shape), ", got ", shape_text(s.shape)));
  for (std::int64_t i = 0; i < out; ++i)
    for (std::int64_t j = 0; j < in; ++j) w(i, j) *= s(i / block, j / block);
  return w;
}

// ---------------------------------------------------------------------------------------------
// The model: config + every weight by HF name, dequantized to double

struct model {
  config cfg;
  std::map<std::string, tensor, std::less<>> weights;  // HF name -> tensor; no *_scale_inv entries

  bool has(std::string_view name) const { return weights.find(name) != weights.end(); }
  /// The weight `name`, its shape checked against `shape`.
  tensor const& get(std::string_view name, std::initializer_list<std::int64_t> shape) const {
    auto const it = weights.find(name);
    if (it == weights.end()) fail(fp8moe::detail::concat("tensor '", name, "': missing from the checkpoint"));
    if (!std::equal(shape.begin(), shape.end(), it->second.shape.begin(), it->second.shape.end()))
      fail(fp8moe::detail::concat("tensor '", name, "': expected shape ",
                                  shape_text(std::span<std::int64_t const>(shape.begin(), shape.size())),
                                  ", got ", shape_text(it->second.shape)));
    return it->second;
  }
};

/// Reads `dir`/config.json and every tensor of the checkpoint in `dir` (model.safetensors or a
/// sharded index). A `*_scale_inv` tensor is folded into its weight; one without a weight is an error.
inline model load(std::filesystem::path const& dir) {
  model m;
  m.cfg = fp8moe::io::read_deepseek_v3_config(dir);
  fp8moe::io::checkpoint const ck(dir);
  std::string_view const suffix = "_scale_inv";
  for (std::string const& name : ck.names()) {
    if (name.ends_with(suffix)) {
      if (!ck.contains(name.substr(0, name.size() - suffix.size())))
        fail(fp8moe::detail::concat("tensor '", name, "': a scale without its weight"));
      continue;
    }
    m.weights.emplace(name, load_weight(ck, name));
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Layers. Dimension letters: T tokens, H hidden, V vocab, E routed experts, k experts per token,
// nh heads, dn/dr/dv the per-head nope/rope/value widths, rq/rkv the q/kv low ranks.

/// y (T,out) = x (T,in) W^T, W (out,in).
inline tensor linear(tensor const& x, tensor const& w) {
  expect_matrix(x, "x", -1, w.cols());
  tensor y({x.rows(), w.rows()});  // (T,out)
  for (std::int64_t t = 0; t < x.rows(); ++t)
    for (std::int64_t o = 0; o < w.rows(); ++o) {
      double acc = 0.0;
      for (std::int64_t i = 0; i < w.cols(); ++i) acc += x(t, i) * w(o, i);
      y(t, o) = acc;
    }
  return y;
}

/// y (T,D) = w (D) * x / sqrt(mean(x^2) + eps), per row.
inline tensor rms_norm(tensor const& x, tensor const& w, double eps) {
  std::int64_t const D = static_cast<std::int64_t>(w.data.size());
  expect_matrix(x, "x", -1, D);
  tensor y(x.shape);  // (T,D)
  for (std::int64_t t = 0; t < x.rows(); ++t) {
    double ss = 0.0;
    for (std::int64_t i = 0; i < D; ++i) ss += x(t, i) * x(t, i);
    double const inv = 1.0 / std::sqrt(ss / static_cast<double>(D) + eps);
    for (std::int64_t i = 0; i < D; ++i) y(t, i) = w[i] * x(t, i) * inv;
  }
  return y;
}

/// h (T,H): rows of table (V,H) picked by tokens; a token outside [0, V) is an error.
inline tensor embedding(tensor const& table, std::span<std::int32_t const> tokens) {
  std::int64_t const T = static_cast<std::int64_t>(tokens.size()), V = table.rows(), H = table.cols();
  tensor h({T, H});  // (T,H)
  for (std::int64_t t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= V)
      fail(fp8moe::detail::concat("argument 'tokens': expected ids in [0, ", V, "), got ", tokens[t],
                                  " at position ", t));
    std::copy_n(table.row(tokens[t]).begin(), H, h.row(t).begin());
  }
  return h;
}

inline double silu(double z) {
  return z / (1.0 + std::exp(-z));
}
inline double sigmoid(double z) {
  return 1.0 / (1.0 + std::exp(-z));
}

/// transformers' yarn_get_mscale: 1 for scale <= 1, else 0.1 * m * ln(scale) + 1.
inline double yarn_mscale(double scale, double m) {
  return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
}

/// The RoPE inverse frequencies (dr/2): theta^(-2i/dr); with rope_scaling (YaRN, applied whenever
/// it is set, as transformers does) blended by the ramp over [low, high] (§1.4):
///   corr(n) = dr ln(orig / (2 pi n)) / (2 ln theta), low = max(floor(corr(beta_fast)), 0),
///   high = min(ceil(corr(beta_slow)), dr - 1), ramp_i = clamp((i - low)/(high - low), 0, 1),
///   f_i = f_i / factor * ramp_i + f_i * (1 - ramp_i).
inline std::vector<double> rope_inv_freq(config const& c) {
  std::int64_t const dr = c.qk_rope_head_dim;
  double const theta = c.rope_theta;
  std::vector<double> f(static_cast<std::size_t>(dr / 2));  // (dr/2)
  for (std::int64_t i = 0; i < dr / 2; ++i)
    f[i] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(dr));
  if (!c.rope_scaling) return f;
  auto const& r = *c.rope_scaling;
  auto const corr = [&](double rotations) {
    return static_cast<double>(dr) *
           std::log(static_cast<double>(r.original_max_position_embeddings) /
                    (rotations * 2.0 * std::numbers::pi)) /
           (2.0 * std::log(theta));
  };
  double const low = std::max(std::floor(corr(r.beta_fast)), 0.0);
  double high = std::min(std::ceil(corr(r.beta_slow)), static_cast<double>(dr - 1));
  if (low == high) high += 0.001;
  for (std::int64_t i = 0; i < dr / 2; ++i) {
    double const ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    f[i] = f[i] / r.factor * ramp + f[i] * (1.0 - ramp);
  }
  return f;
}

/// The cos/sin multiplier of YaRN (transformers' attention_factor): 1 without rope_scaling;
/// mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both are non-zero; else
/// mscale(factor, 1). DeepSeek-V3's config (mscale = mscale_all_dim = 1) gives 1.
inline double rope_attention_factor(config const& c) {
  if (!c.rope_scaling) return 1.0;
  auto const& r = *c.rope_scaling;
  if (r.mscale != 0.0 && r.mscale_all_dim != 0.0)
    return yarn_mscale(r.factor, r.mscale) / yarn_mscale(r.factor, r.mscale_all_dim);
  return yarn_mscale(r.factor, 1.0);
}

/// The attention softmax scale: (dn + dr)^-0.5, times mscale(factor, mscale_all_dim)^2 when
/// rope_scaling is set with a non-zero mscale_all_dim (§1.3: 0.135234 for the 671B config).
inline double softmax_scale(config const& c) {
  double s = 1.0 / std::sqrt(static_cast<double>(c.qk_nope_head_dim + c.qk_rope_head_dim));
  if (c.rope_scaling && c.rope_scaling->mscale_all_dim != 0.0) {
    double const m = yarn_mscale(c.rope_scaling->factor, c.rope_scaling->mscale_all_dim);
    s *= m * m;
  }
  return s;
}

/// Rotates x (dr) in place for position `pos`: interleaved pairs (2i, 2i+1) by angle pos * f_i,
/// y0 = x0 cos - x1 sin, y1 = x0 sin + x1 cos, both times `attention_factor`.
inline void rope_rotate(std::span<double> x, std::int64_t pos, std::span<double const> inv_freq,
                        double attention_factor) {
  for (std::size_t i = 0; i < inv_freq.size(); ++i) {
    double const a = static_cast<double>(pos) * inv_freq[i];
    double const x0 = x[2 * i], x1 = x[2 * i + 1];
    x[2 * i] = (x0 * std::cos(a) - x1 * std::sin(a)) * attention_factor;
    x[2 * i + 1] = (x0 * std::sin(a) + x1 * std::cos(a)) * attention_factor;
  }
}

/// Multi-head latent attention, the naive form (§1.3), causal, positions 0..T-1.
/// `p` is the HF prefix "model.layers.L.self_attn."; x (T,H) is the normed layer input; returns (T,H).
inline tensor mla(model const& m, std::string const& p, tensor const& x) {
  config const& c = m.cfg;
  std::int64_t const T = x.rows(), H = c.hidden_size, nh = c.num_attention_heads;
  std::int64_t const dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim, dv = c.v_head_dim, dq = dn + dr;
  std::int64_t const rkv = c.kv_lora_rank;
  expect_matrix(x, "x", -1, H);

  tensor q;  // (T, nh*dq): per head [q_nope (dn) | q_pe (dr)]
  if (c.q_lora_rank) {
    std::int64_t const rq = *c.q_lora_rank;
    tensor const cq = rms_norm(linear(x, m.get(p + "q_a_proj.weight", {rq, H})),  // (T,rq)
                               m.get(p + "q_a_layernorm.weight", {rq}), c.rms_norm_eps);
    q = linear(cq, m.get(p + "q_b_proj.weight", {nh * dq, rq}));
  } else {
    q = linear(x, m.get(p + "q_proj.weight", {nh * dq, H}));
  }
  tensor const kva = linear(x, m.get(p + "kv_a_proj_with_mqa.weight", {rkv + dr, H}));  // (T, rkv+dr)
  tensor ckv({T, rkv});                                                                 // (T,rkv) latent
  tensor kpe({T, dr});  // (T,dr) rope key, one per token, shared by the heads
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t i = 0; i < rkv; ++i) ckv(t, i) = kva(t, i);
    for (std::int64_t i = 0; i < dr; ++i) kpe(t, i) = kva(t, rkv + i);
  }
  tensor const kv =
      linear(rms_norm(ckv, m.get(p + "kv_a_layernorm.weight", {rkv}), c.rms_norm_eps),
             m.get(p + "kv_b_proj.weight", {nh * (dn + dv), rkv}));  // (T, nh*(dn+dv)): [k_nope|v]

  std::vector<double> const f = rope_inv_freq(c);  // (dr/2)
  double const af = rope_attention_factor(c);
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t h = 0; h < nh; ++h) rope_rotate(q.row(t).subspan(h * dq + dn, dr), t, f, af);
    rope_rotate(kpe.row(t), t, f, af);
  }

  double const scale = softmax_scale(c);
  tensor o({T, nh * dv});  // (T, nh*dv), head-major
  std::vector<double> score(static_cast<std::size_t>(T));
  for (std::int64_t h = 0; h < nh; ++h)
    for (std::int64_t t = 0; t < T; ++t) {
      double mx = -std::numeric_limits<double>::infinity();
      for (std::int64_t s = 0; s <= t; ++s) {  // causal: keys 0..t
        double dot = 0.0;
        for (std::int64_t i = 0; i < dn; ++i) dot += q(t, h * dq + i) * kv(s, h * (dn + dv) + i);
        for (std::int64_t i = 0; i < dr; ++i) dot += q(t, h * dq + dn + i) * kpe(s, i);
        score[s] = scale * dot;
        mx = std::max(mx, score[s]);
      }
      double sum = 0.0;
      for (std::int64_t s = 0; s <= t; ++s) sum += (score[s] = std::exp(score[s] - mx));
      for (std::int64_t j = 0; j < dv; ++j) {
        double acc = 0.0;
        for (std::int64_t s = 0; s <= t; ++s) acc += score[s] / sum * kv(s, h * (dn + dv) + dn + j);
        o(t, h * dv + j) = acc;
      }
    }
  return linear(o, m.get(p + "o_proj.weight", {H, nh * dv}));
}

/// SwiGLU MLP: down( silu(gate x) * (up x) ), width `inter`. `p` is "....mlp." or
/// "....mlp.experts.E." or "....mlp.shared_experts."; x (T,H); returns (T,H).
inline tensor swiglu_mlp(model const& m, std::string const& p, tensor const& x, std::int64_t inter) {
  std::int64_t const H = m.cfg.hidden_size;
  tensor g = linear(x, m.get(p + "gate_proj.weight", {inter, H}));  // (T,inter)
  tensor const u = linear(x, m.get(p + "up_proj.weight", {inter, H}));
  for (std::size_t i = 0; i < g.data.size(); ++i) g.data[i] = silu(g.data[i]) * u.data[i];
  return linear(g, m.get(p + "down_proj.weight", {H, inter}));
}

/// The experts a token goes to and their weights.
struct routing {
  std::int64_t k = 0;
  std::vector<std::int64_t> experts;  // (T,k), in selection order
  std::vector<double> weights;        // (T,k)
};

/// The MoE gate (§1.5), per token: scores s = sigmoid(logits) or softmax(logits); choice = s + bias
/// (when a bias is given); with n_group > 1 and topk_method != "greedy", a group's score is the sum
/// of its top-2 choice values (noaux_tc) or its max (group_limited_greedy), the topk_group best
/// groups are kept and the others' choice values set to `masked_fill` (-inf, as DeepSeek's model.py;
/// transformers' 0.0 is the known bug); the k largest choice values are selected (ties: lower
/// index); weights = unbiased s of those, divided by their sum when norm_topk_prob, times
/// routed_scaling_factor. logits (T,E); bias (E) or empty.
inline routing moe_gate(config const& c, tensor const& logits, std::span<double const> bias,
                        double masked_fill = -std::numeric_limits<double>::infinity()) {
  std::int64_t const E = c.n_routed_experts, k = c.num_experts_per_tok, G = c.n_group;
  expect_matrix(logits, "logits", -1, E);
  if (!bias.empty() && static_cast<std::int64_t>(bias.size()) != E)
    fail(fp8moe::detail::concat("argument 'bias': expected ", E, " values, got ", bias.size()));
  std::int64_t const T = logits.rows(), per_group = E / G;
  routing r;
  r.k = k;
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<double> s(static_cast<std::size_t>(E));  // (E) scores
    if (c.scoring_func == "sigmoid") {
      for (std::int64_t e = 0; e < E; ++e) s[e] = sigmoid(logits(t, e));
    } else {
      double mx = -std::numeric_limits<double>::infinity(), sum = 0.0;
      for (std::int64_t e = 0; e < E; ++e) mx = std::max(mx, logits(t, e));
      for (std::int64_t e = 0; e < E; ++e) sum += (s[e] = std::exp(logits(t, e) - mx));
      for (auto& v : s) v /= sum;
    }
    std::vector<double> choice = s;  // (E) biased, for selection only
    if (!bias.empty())
      for (std::int64_t e = 0; e < E; ++e) choice[e] += bias[e];
    if (G > 1 && c.topk_method != "greedy") {
      std::vector<double> gscore(static_cast<std::size_t>(G));  // (G)
      for (std::int64_t g = 0; g < G; ++g) {
        std::vector<double> v(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
        std::sort(v.begin(), v.end(), std::greater<>());
        gscore[g] = c.topk_method == "noaux_tc" ? v[0] + v[1] : v[0];
      }
      std::vector<std::int64_t> order(static_cast<std::size_t>(G));  // groups, best first
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return gscore[a] > gscore[b]; });
      for (std::int64_t j = c.topk_group; j < G; ++j)
        for (std::int64_t e = order[j] * per_group; e < (order[j] + 1) * per_group; ++e)
          choice[e] = masked_fill;
    }
    std::vector<std::int64_t> order(static_cast<std::size_t>(E));  // experts, best first
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return choice[a] > choice[b]; });
    double sum = 0.0;
    for (std::int64_t j = 0; j < k; ++j) sum += s[order[j]];
    for (std::int64_t j = 0; j < k; ++j) {
      r.experts.push_back(order[j]);
      r.weights.push_back((c.norm_topk_prob ? s[order[j]] / sum : s[order[j]]) * c.routed_scaling_factor);
    }
  }
  return r;
}

/// The MoE feed-forward: y = sum_j w_j Expert_{e_j}(x) + SharedExperts(x), the shared block of
/// width n_shared_experts * moe_intermediate_size. `p` is "model.layers.L.mlp."; x (T,H); returns (T,H).
inline tensor moe(model const& m, std::string const& p, tensor const& x) {
  config const& c = m.cfg;
  std::int64_t const T = x.rows(), H = c.hidden_size, E = c.n_routed_experts;
  tensor const logits = linear(x, m.get(p + "gate.weight", {E, H}));  // (T,E)
  std::string const bias_name = p + "gate.e_score_correction_bias";
  std::span<double const> bias;  // (E), used whenever the checkpoint has it
  if (m.has(bias_name)) bias = m.get(bias_name, {E}).data;
  routing const r = moe_gate(c, logits, bias);
  tensor y({T, H});  // (T,H)
  for (std::int64_t t = 0; t < T; ++t) {
    tensor xt({1, H});  // (1,H)
    std::copy_n(x.row(t).begin(), H, xt.data.begin());
    for (std::int64_t j = 0; j < r.k; ++j) {
      std::size_t const at = static_cast<std::size_t>(t * r.k + j);
      tensor const ye =
          swiglu_mlp(m, p + "experts." + std::to_string(r.experts[at]) + ".", xt, c.moe_intermediate_size);
      for (std::int64_t i = 0; i < H; ++i) y(t, i) += r.weights[at] * ye(0, i);
    }
  }
  if (c.n_shared_experts > 0) {
    tensor const ys = swiglu_mlp(m, p + "shared_experts.", x, c.n_shared_experts * c.moe_intermediate_size);
    for (std::size_t i = 0; i < y.data.size(); ++i) y.data[i] += ys.data[i];
  }
  return y;
}

inline void add_in_place(tensor& a, tensor const& b) {
  for (std::size_t i = 0; i < a.data.size(); ++i) a.data[i] += b.data[i];
}

/// One pre-norm decoder layer L (L >= num_hidden_layers: an MTP layer's block):
/// h += MLA(input_layernorm(h)); h += FFN(post_attention_layernorm(h)), FFN = MoE when
/// cfg.is_moe_layer(L), else the dense SwiGLU of intermediate_size. h (T,H); returns (T,H).
inline tensor decoder_layer(model const& m, std::int64_t L, tensor h) {
  config const& c = m.cfg;
  std::int64_t const H = c.hidden_size;
  std::string const p = "model.layers." + std::to_string(L) + ".";
  add_in_place(
      h, mla(m, p + "self_attn.", rms_norm(h, m.get(p + "input_layernorm.weight", {H}), c.rms_norm_eps)));
  tensor const xn = rms_norm(h, m.get(p + "post_attention_layernorm.weight", {H}), c.rms_norm_eps);  // (T,H)
  add_in_place(
      h, c.is_moe_layer(L) ? moe(m, p + "mlp.", xn) : swiglu_mlp(m, p + "mlp.", xn, c.intermediate_size));
  return h;
}

// ---------------------------------------------------------------------------------------------
// The whole model

/// The output of the last decoder layer, before the final norm: (T,H).
inline tensor hidden_states(model const& m, std::span<std::int32_t const> tokens) {
  config const& c = m.cfg;
  tensor h = embedding(m.get("model.embed_tokens.weight", {c.vocab_size, c.hidden_size}), tokens);  // (T,H)
  for (std::int64_t L = 0; L < c.num_hidden_layers; ++L) h = decoder_layer(m, L, std::move(h));
  return h;
}

/// The name of the LM head weight (V,H): lm_head.weight, or the embedding when tie_word_embeddings.
inline std::string lm_head_name(model const& m) {
  return m.cfg.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
}

/// Logits (T,V) for every position: lm_head(norm(hidden_states)).
inline tensor logits_tensor(model const& m, std::span<std::int32_t const> tokens) {
  config const& c = m.cfg;
  return linear(
      rms_norm(hidden_states(m, tokens), m.get("model.norm.weight", {c.hidden_size}), c.rms_norm_eps),
      m.get(lm_head_name(m), {c.vocab_size, c.hidden_size}));
}

/// Logits (T,V), row-major, for every position.
inline std::vector<double> logits(model const& m, std::span<std::int32_t const> tokens) {
  return logits_tensor(m, tokens).data;
}
/// Logits (T,V) of the checkpoint in `dir` (config.json + safetensors).
inline std::vector<double> logits(std::filesystem::path const& dir, std::span<std::int32_t const> tokens) {
  return logits(load(dir), tokens);
}

/// Which main-model hidden state feeds the first MTP module's hnorm (reference §3.2, OPEN):
/// after the final norm (vLLM, checkpoint-faithful speculative decoding) or before it (torchtitan).
enum class mtp_input { post_final_norm, pre_final_norm };

/// Logits of MTP module `depth` (1..num_nextn_predict_layers), (T-depth, V): row i predicts token
/// i+depth+1. Module j (layer L = num_hidden_layers + j - 1) maps h^{j-1} (T-j+1 rows) to
///   h'_i = eh_proj( [enorm(Emb(t_{i+j})) ; hnorm(h^{j-1}_i)] )   (embedding first, §3.2), i < T-j,
///   h^j  = decoder_layer(L, h')                                   (positions 0..T-j-1, causal),
/// and the logits are shared_head.head(shared_head.norm(h^depth)). h^0 is the main model's hidden
/// state (see mtp_input). Emb and head are the MTP layer's own copies (embed_tokens,
/// shared_head.head) when the checkpoint has them, else the main model's.
inline std::vector<double> mtp_logits(model const& m, std::span<std::int32_t const> tokens,
                                      std::int64_t depth = 1, mtp_input input = mtp_input::post_final_norm) {
  config const& c = m.cfg;
  std::int64_t const T = static_cast<std::int64_t>(tokens.size()), H = c.hidden_size, V = c.vocab_size;
  if (depth < 1 || depth > c.num_nextn_predict_layers)
    fail(fp8moe::detail::concat("argument 'depth': expected 1..num_nextn_predict_layers (",
                                c.num_nextn_predict_layers, "), got ", depth));
  if (T <= depth)
    fail(fp8moe::detail::concat("argument 'tokens': expected more than ", depth, " tokens, got ", T));
  tensor h = hidden_states(m, tokens);  // (T,H)
  if (input == mtp_input::post_final_norm) h = rms_norm(h, m.get("model.norm.weight", {H}), c.rms_norm_eps);
  std::string p;
  for (std::int64_t j = 1; j <= depth; ++j) {
    std::int64_t const L = c.num_hidden_layers + j - 1, n = T - j;
    p = "model.layers." + std::to_string(L) + ".";
    std::string const emb_name =
        m.has(p + "embed_tokens.weight") ? p + "embed_tokens.weight" : "model.embed_tokens.weight";
    tensor const e =
        embedding(m.get(emb_name, {V, H}), tokens.subspan(static_cast<std::size_t>(j)));  // (n,H)
    tensor hp({n, H});  // (n,H): h^{j-1} rows 0..n-1
    std::copy_n(h.data.begin(), n * H, hp.data.begin());
    tensor const en = rms_norm(e, m.get(p + "enorm.weight", {H}), c.rms_norm_eps);   // (n,H)
    tensor const hn = rms_norm(hp, m.get(p + "hnorm.weight", {H}), c.rms_norm_eps);  // (n,H)
    tensor cat({n, 2 * H});  // (n,2H): [embedding | hidden]
    for (std::int64_t i = 0; i < n; ++i) {
      std::copy_n(en.row(i).begin(), H, cat.row(i).begin());
      std::copy_n(hn.row(i).begin(), H, cat.row(i).begin() + H);
    }
    h = decoder_layer(m, L, linear(cat, m.get(p + "eh_proj.weight", {H, 2 * H})));  // (n,H)
  }
  std::string const head_name =
      m.has(p + "shared_head.head.weight") ? p + "shared_head.head.weight" : lm_head_name(m);
  return linear(rms_norm(h, m.get(p + "shared_head.norm.weight", {H}), c.rms_norm_eps),
                m.get(head_name, {V, H}))
      .data;
}

}  // namespace dsv3::ref
