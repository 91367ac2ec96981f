// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::model: config + parameters (one allocation) + activations (one allocation, re-used while the
// token count fits) + the layer context; forward(tokens) returns the logits (T, vocab) as a view into
// the activations, valid until the next forward. compute_logits(dir, tokens, precision) is the
// one-call form the `deepseek_v3 logits` command uses. backward(targets, grads) differentiates the last
// forward's mean cross-entropy into make_gradients() gradients.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <span>
#include <vector>

#include "backward.hpp"
#include "forward.hpp"
#include "layers.hpp"
#include "params.hpp"

namespace dsv3 {

/// Options of a model beyond its precision.
struct model_options {
  mla_form attention = mla_form::naive;                    // naive or absorbed MLA (same logits)
  fm::scaling::recipe fp8_recipe = deepseek_v3_inference;  // precision fp8: DeepSeek's act_quant (default)
                                                           // or deepseek_v3_training (DeepGEMM's quantizer)
  fp8_training train{};  // the FP8 training recipe's Fprop/Dgrad/Wgrad switches (fp32 parameters)
  fm::host_executor exec{};
};

class model {
 public:
  /// Loads the HF checkpoint directory `dir` in precision `p`.
  model(std::filesystem::path const& dir, precision p, model_options const& o = {})
      : model(load_params(dir, p), o) {}
  /// Takes loaded parameters.
  explicit model(params prm, model_options const& o = {}) : p_(std::move(prm)), rope_(make_rope(p_.cfg)) {
    ctx_.exec = o.exec;
    ctx_.prec = p_.prec;
    ctx_.recipe = o.fp8_recipe;
    ctx_.attention = o.attention;
    ctx_.train = o.train;
    fm::require(!o.train.any() || p_.prec == precision::fp32, "dsv3::model", "options.train",
                "fp32 parameters (the FP8 training recipe quantizes float master weights)");
  }

  fm::io::deepseek_v3_config const& config() const { return p_.cfg; }
  params const& parameters() const { return p_; }
  activations const& acts() const { return acts_; }
  precision prec() const { return p_.prec; }
  /// Seconds per layer type of the last forward.
  layer_timings const& timings() const { return tm_; }

  /// Logits (T, vocab) of every position for `tokens` (ids in [0, vocab), checked before anything is
  /// written); a view into the activations, valid until the next call. `routing_from`: hold every MoE
  /// layer's expert selection fixed to another model's last forward over the same tokens (or nullptr).
  matrix_view<float const> forward(std::span<std::int32_t const> tokens,
                                   activations const* routing_from = nullptr) {
    check_tokens(p_.cfg, tokens);
    fm::require(!routing_from || std::equal(tokens.begin(), tokens.end(), routing_from->ids.begin(),
                                            routing_from->ids.end()),
                "dsv3::model::forward", "routing_from", "the activations of a forward over the same tokens");
    auto const T = static_cast<std::int64_t>(tokens.size());
    if (acts_.tokens != T) acts_ = make_activations(p_.cfg, ctx_.attention, T);
    acts_.ids.assign(tokens.begin(), tokens.end());
    acts_.positions.resize(tokens.size());
    std::iota(acts_.positions.begin(), acts_.positions.end(), std::int64_t{0});
    return dsv3::forward(ctx_, p_, rope_, acts_, tm_, routing_from);
  }

  /// The backward of the last forward (issue 16): loss = mean cross-entropy of its logits against
  /// `targets` (T; o.ignore_index rows add nothing) + the balance term when o.balance.alpha > 0; every
  /// gradient of `grads` (make_gradients(config())) ACCUMULATES (zero_gradients first for one step);
  /// routing is the forward's (held fixed when it was). With o.mtp_weight = lambda > 0 and an MTP layer
  /// in the config, the MTP term (backward.hpp: mtp_training) is added, its gradients included. Needs
  /// the naive MLA form and fp32 or bf16
  /// parameters. `d_embedded` (T,H), when non-empty, receives dL/d(embedding output). Checked before
  /// anything is written.
  loss_terms backward(std::span<std::int32_t const> targets, params& grads, backward_options const& o = {},
                      matrix_view<float> d_embedded = {}) {
    fm::require(acts_.tokens > 0, "dsv3::model::backward", "model", "a forward before the backward");
    fm::require(ctx_.attention == mla_form::naive, "dsv3::model::backward", "model",
                "the naive MLA form (mla_form::naive)");
    fm::require(p_.prec != precision::fp8, "dsv3::model::backward", "model",
                "fp32 or bf16 parameters (precision fp8 has no master weights to train)");
    if (o.mtp_weight == 0.0f || p_.mtp.empty())
      return dsv3::backward(ctx_, p_, rope_, acts_, targets, grads, o, d_embedded);
    check_backward(p_, acts_, targets, grads, o, d_embedded);  // before the MTP term writes anything
    dh_mtp_.resize(static_cast<std::size_t>(acts_.tokens * p_.cfg.hidden_size));
    auto const dh = fm::make_matrix(dh_mtp_.data(), acts_.tokens, p_.cfg.hidden_size);
    double const mtp = mtp_.run(ctx_, p_, rope_, acts_, targets, grads, o.mtp_weight, o.ignore_index, dh);
    auto loss =
        dsv3::backward(ctx_, p_, rope_, acts_, targets, grads, o, d_embedded, matrix_view<float const>(dh));
    loss.mtp = mtp;
    return loss;
  }

 private:
  params p_;
  rope_state rope_;
  context ctx_;
  activations acts_;
  layer_timings tm_;
  mtp_training mtp_;           // the MTP loss term's state (backward with o.mtp_weight > 0)
  std::vector<float> dh_mtp_;  // (T, H) its gradient into the last block's output
};

/// Logits (T x vocab, row-major) of the model in `dir` for `tokens` in precision `p`.
inline std::vector<float> compute_logits(std::filesystem::path const& dir,
                                         std::span<std::int32_t const> tokens, precision p) {
  model m(dir, p);
  auto const v = m.forward(tokens);
  std::vector<float> out(static_cast<std::size_t>(v.rows * v.cols));
  for (std::int64_t t = 0; t < v.rows; ++t)
    for (std::int64_t j = 0; j < v.cols; ++j) out[static_cast<std::size_t>(t * v.cols + j)] = v(t, j);
  return out;
}

}  // namespace dsv3
