// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::training_recipe: every choice of a training run as ONE value (the precision of each GEMM kind,
// the FP8 tiles, the moment dtype, AdamW, clipping, the learning-rate schedule, the router's bias
// update and balance loss, the MTP weight), with the presets fp8 / bf16 / fp32 of DeepSeek-V3
// (arXiv:2412.19437 §3.3 and §4.2; reference/deepseek_v3_model.md §3.2-3.4). Plain data: copy a preset,
// change a field, compare.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "fp8moe/core/error.hpp"
#include "fp8moe/moe/balance.hpp"
#include "fp8moe/optim/adamw.hpp"
#include "fp8moe/optim/schedule.hpp"
#include "fp8moe/scaling/recipe.hpp"
#include "params.hpp"

namespace dsv3 {

/// The element type of a GEMM's inputs (outputs and accumulation are FP32 in every case).
enum class gemm_precision { fp8, bf16, fp32 };
/// The element type of AdamW's two moments.
enum class moment_dtype { bf16, fp32 };

inline std::string_view to_string(gemm_precision p) {
  return p == gemm_precision::fp8 ? "fp8" : p == gemm_precision::bf16 ? "bf16" : "fp32";
}
inline std::string_view to_string(moment_dtype m) {
  return m == moment_dtype::bf16 ? "bf16" : "fp32";
}

/// One training run's choices. The presets below fill every field; a user switches any one.
struct training_recipe {
  std::string name = "fp8";
  // -- the linear layers' three GEMMs (§3.3: all three in FP8 for every Linear) ----------------------
  gemm_precision fprop = gemm_precision::fp8;  // y = x W^T
  gemm_precision dgrad = gemm_precision::fp8;  // dx = dy W
  gemm_precision wgrad = gemm_precision::fp8;  // dW = dy^T x
  // -- FP8 granularity (§3.3): activations and gradients 1x128, weights 128x128, Wgrad operands
  //    128x1 (the gradient tile of the recipe, used transposed); E4M3 everywhere; FP32 scales
  fm::scaling::recipe fp8 = fm::scaling::deepseek_v3;
  // -- kept out of FP8 (§3.3): embedding, output head, router gate, norms, attention core; these
  //    run in `other` (BF16 as DeepSeek; FP32 to compare). With an FP8 GEMM kind this example runs
  //    them in FP32 (see model_precision)
  gemm_precision other = gemm_precision::bf16;
  // -- optimizer (§3.3: FP32 master weights and gradients, BF16 moments; §4.2: AdamW 0.9/0.95/0.1)
  moment_dtype moments = moment_dtype::bf16;
  fm::optim::adamw_config adamw{
      .lr = 2.2e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
  float clip_norm = 1.0f;  // §4.2: gradient clipping norm 1.0
  // -- learning rate (§4.2: linear warm-up 0 -> 2.2e-4 over 2K steps, then cosine down to 2.2e-5);
  //    the trainer runs warmup_cosine over its own step count (with_steps)
  fm::optim::warmup_cosine schedule{
      .peak_lr = 2.2e-4f, .floor_lr = 2.2e-5f, .warmup_steps = 2000, .total_steps = 2000};
  // -- load balance (§4.2: bias update speed gamma 0.001, sequence balance alpha 0.0001)
  fm::moe::bias_update_config bias_update{.gamma = 1e-3f};
  float balance_alpha = 1e-4f;
  // -- multi-token prediction (§2.2, §4.2: lambda 0.3 for the first 10T tokens, then 0.1)
  float mtp_lambda = 0.3f;

  /// True when any of the three GEMM kinds is FP8 (the model then keeps FP32 parameters and quantizes
  /// them per GEMM: dsv3::fp8_training; the GEMMs and ops not in FP8 run in FP32 there, since the
  /// model's BF16 path needs BF16 parameters).
  bool any_fp8() const {
    return fprop == gemm_precision::fp8 || dgrad == gemm_precision::fp8 || wgrad == gemm_precision::fp8;
  }
  /// The precision of the model's parameters: fp32 with any FP8 GEMM (fp8_training quantizes them),
  /// else bf16 when a GEMM kind or `other` is BF16, else fp32.
  precision model_precision() const {
    if (any_fp8()) return precision::fp32;
    bool const bf = fprop == gemm_precision::bf16 || dgrad == gemm_precision::bf16 ||
                    wgrad == gemm_precision::bf16 || other == gemm_precision::bf16;
    return bf ? precision::bf16 : precision::fp32;
  }

  /// This recipe with peak learning rate `peak_lr` (floor = peak / 10, DeepSeek's 2.2e-4 -> 2.2e-5
  /// ratio) over `steps` steps, warm-up 10% of them (at most DeepSeek's 2000).
  training_recipe with_steps(std::int64_t steps, float peak_lr) const {
    fm::require(steps >= 1, "dsv3::training_recipe::with_steps", "steps", ">= 1", std::to_string(steps));
    fm::require(peak_lr > 0.0f && peak_lr < 1.0f, "dsv3::training_recipe::with_steps", "peak_lr",
                "a value in (0, 1)", std::to_string(peak_lr));
    training_recipe r = *this;
    r.adamw.lr = peak_lr;
    r.schedule = {.peak_lr = peak_lr,
                  .floor_lr = peak_lr / 10.0f,
                  .warmup_steps = std::min<std::int64_t>(2000, steps / 10),
                  .total_steps = steps};
    return r;
  }
};

/// The presets' names, for messages and help text.
inline constexpr std::string_view recipe_names = "fp8, bf16 or fp32";

/// DeepSeek-V3's recipe (§3.3, §4.2): FP8 Fprop/Dgrad/Wgrad, BF16 elsewhere, BF16 moments.
inline training_recipe fp8_recipe() {
  return {};
}
/// The BF16 baseline DeepSeek compares against (§3.3 "relative loss error below 0.25%"): every GEMM
/// BF16, FP32 master weights, BF16 moments (the rest as fp8_recipe).
inline training_recipe bf16_recipe() {
  training_recipe r;
  r.name = "bf16";
  r.fprop = r.dgrad = r.wgrad = r.other = gemm_precision::bf16;
  return r;
}
/// Everything FP32 (a reference): FP32 GEMMs and FP32 moments.
inline training_recipe fp32_recipe() {
  training_recipe r;
  r.name = "fp32";
  r.fprop = r.dgrad = r.wgrad = r.other = gemm_precision::fp32;
  r.moments = moment_dtype::fp32;
  return r;
}

/// "fp8" | "bf16" | "fp32" -> the preset; anything else is an fp8moe::error naming `precision`.
inline training_recipe recipe_preset(std::string_view name) {
  if (name == "fp8") return fp8_recipe();
  if (name == "bf16") return bf16_recipe();
  fm::require(name == "fp32", "dsv3::recipe_preset", "precision", "fp8, bf16 or fp32",
              "'" + std::string(name) + "'");
  return fp32_recipe();
}

/// One line naming every field (the trainer prints it at start).
inline std::string describe(training_recipe const& r) {
  auto const f = [](float v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", static_cast<double>(v));
    return std::string(b);
  };
  return "recipe " + r.name + ": fprop " + std::string(to_string(r.fprop)) + ", dgrad " +
         std::string(to_string(r.dgrad)) + ", wgrad " + std::string(to_string(r.wgrad)) + ", other " +
         std::string(to_string(r.other)) + "; moments " + std::string(to_string(r.moments)) + "; AdamW b1 " +
         f(r.adamw.beta1) + " b2 " + f(r.adamw.beta2) + " eps " + f(r.adamw.eps) + " wd " +
         f(r.adamw.weight_decay) + "; clip " + f(r.clip_norm) + "; lr " + f(r.schedule.peak_lr) + " -> " +
         f(r.schedule.floor_lr) + " (warm-up " + std::to_string(r.schedule.warmup_steps) + " of " +
         std::to_string(r.schedule.total_steps) + " steps, cosine); gamma " + f(r.bias_update.gamma) +
         ", alpha " + f(r.balance_alpha) + ", MTP lambda " + f(r.mtp_lambda);
}

}  // namespace dsv3
