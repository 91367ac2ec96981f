// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Learning-rate schedules as aggregate values with a pure `lr(step)` (step 1-based, the count
// optim::adamw_step takes): warmup_cosine (linear warm-up, cosine decay to a floor) and
// deepseek_v3_schedule (DeepSeek-V3 §4.2: warm-up, constant, cosine decay, then two constant tails).
// Math in double, rounded to float once. Bad values throw fp8moe::error naming the field.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>

#include "fp8moe/core/error.hpp"

namespace fp8moe::optim {

namespace detail {
/// floor + (peak - floor) * (1 + cos(pi * progress)) / 2 for progress in [0, 1].
inline double cosine_between(double peak, double floor, double progress) {
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}
inline void check_lr_value(char const* where, char const* field, float v) {
  require(std::isfinite(v) && v >= 0.0f, where, field, "a finite value >= 0", std::to_string(v));
}
inline void check_step(char const* where, std::int64_t step) {
  require(step >= 1, where, "step", "the 1-based step count (>= 1)", std::to_string(step));
}
}  // namespace detail

/// Linear warm-up then cosine decay (the shape of most LLM recipes, e.g. Loshchilov & Hutter's SGDR
/// cosine without restarts):
///   step <= warmup_steps:               peak_lr * step / warmup_steps   (peak at step = warmup_steps)
///   warmup_steps < step <= total_steps: floor_lr + (peak_lr - floor_lr) (1 + cos(pi p)) / 2,
///                                       p = (step - warmup_steps) / (total_steps - warmup_steps)
///   step > total_steps:                 floor_lr
/// warmup_steps = 0 starts at the peak.
struct warmup_cosine {
  float peak_lr = 2.2e-4f;
  float floor_lr = 2.2e-5f;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;

  float lr(std::int64_t step) const {
    constexpr char const* where = "fp8moe::optim::warmup_cosine::lr";
    detail::check_lr_value(where, "peak_lr", peak_lr);
    detail::check_lr_value(where, "floor_lr", floor_lr);
    require(warmup_steps >= 0 && warmup_steps <= total_steps, where, "warmup_steps",
            "0 <= warmup_steps <= total_steps = " + std::to_string(total_steps),
            std::to_string(warmup_steps));
    require(total_steps >= 1, where, "total_steps", ">= 1", std::to_string(total_steps));
    detail::check_step(where, step);
    if (step <= warmup_steps)
      return static_cast<float>(static_cast<double>(peak_lr) * static_cast<double>(step) /
                                static_cast<double>(warmup_steps));
    if (step >= total_steps) return floor_lr;
    double const p =
        static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
    return static_cast<float>(detail::cosine_between(peak_lr, floor_lr, p));
  }
  friend constexpr bool operator==(warmup_cosine const&, warmup_cosine const&) = default;
};

/// DeepSeek-V3's published schedule shape (arXiv:2412.19437 §4.2), in steps:
///   step <= warmup_steps:             peak_lr * step / warmup_steps   (0 -> 2.2e-4 over 2K steps)
///   step <= constant_end:             peak_lr                         (until 10T tokens)
///   step <= decay_end:                cosine peak_lr -> decay_lr      (over 4.3T tokens, to 2.2e-5)
///   step <= tail_start:               decay_lr                        (333B tokens)
///   step >  tail_start:               tail_lr                         (7.3e-6, the last 167B tokens)
/// Boundaries must be ordered: warmup_steps <= constant_end <= decay_end <= tail_start.
struct deepseek_v3_schedule {
  float peak_lr = 2.2e-4f;
  float decay_lr = 2.2e-5f;
  float tail_lr = 7.3e-6f;
  std::int64_t warmup_steps = 2000;
  std::int64_t constant_end = 0;
  std::int64_t decay_end = 0;
  std::int64_t tail_start = 0;

  /// The published token boundaries (10T, 14.3T, 14.633T of 14.8T) mapped onto `total_steps` steps of
  /// equal tokens (DeepSeek ramps the batch size early on, which this ignores), with `warmup_steps`.
  static deepseek_v3_schedule for_steps(std::int64_t total_steps, std::int64_t warmup_steps = 2000) {
    constexpr char const* where = "fp8moe::optim::deepseek_v3_schedule::for_steps";
    require(total_steps >= 1, where, "total_steps", ">= 1", std::to_string(total_steps));
    require(warmup_steps >= 0 && warmup_steps <= total_steps, where, "warmup_steps",
            "0 <= warmup_steps <= total_steps = " + std::to_string(total_steps),
            std::to_string(warmup_steps));
    auto const at = [&](double tokens_t) {  // step that ends `tokens_t` trillion of the 14.8T tokens
      auto const s =
          static_cast<std::int64_t>(std::llround(static_cast<double>(total_steps) * tokens_t / 14.8));
      return s < warmup_steps ? warmup_steps : s;
    };
    deepseek_v3_schedule r;
    r.warmup_steps = warmup_steps;
    r.constant_end = at(10.0);
    r.decay_end = at(14.3);
    r.tail_start = at(14.3 + 0.333);
    return r;
  }

  float lr(std::int64_t step) const {
    constexpr char const* where = "fp8moe::optim::deepseek_v3_schedule::lr";
    detail::check_lr_value(where, "peak_lr", peak_lr);
    detail::check_lr_value(where, "decay_lr", decay_lr);
    detail::check_lr_value(where, "tail_lr", tail_lr);
    require(0 <= warmup_steps && warmup_steps <= constant_end && constant_end <= decay_end &&
                decay_end <= tail_start,
            where, "steps", "0 <= warmup_steps <= constant_end <= decay_end <= tail_start",
            std::to_string(warmup_steps) + ", " + std::to_string(constant_end) + ", " +
                std::to_string(decay_end) + ", " + std::to_string(tail_start));
    detail::check_step(where, step);
    if (step <= warmup_steps)
      return static_cast<float>(static_cast<double>(peak_lr) * static_cast<double>(step) /
                                static_cast<double>(warmup_steps));
    if (step <= constant_end) return peak_lr;
    if (step <= decay_end) {
      double const p =
          static_cast<double>(step - constant_end) / static_cast<double>(decay_end - constant_end);
      return static_cast<float>(detail::cosine_between(peak_lr, decay_lr, p));
    }
    return step <= tail_start ? decay_lr : tail_lr;
  }
  friend constexpr bool operator==(deepseek_v3_schedule const&, deepseek_v3_schedule const&) = default;
};

}  // namespace fp8moe::optim
