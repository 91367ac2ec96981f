// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::warmup_cosine and deepseek_v3_schedule at their boundaries (first step, warm-up end = peak,
// cosine midpoint, floor, tails), monotonicity inside each phase, the published DeepSeek-V3 values
// and token boundaries, bad values.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <numbers>

#include "fp8moe/optim/schedule.hpp"

using namespace fp8moe;

TEST_CASE("warmup_cosine: linear warm-up to the peak, cosine to the floor, floor after") {
  constexpr optim::warmup_cosine s{
      .peak_lr = 1e-3f, .floor_lr = 1e-4f, .warmup_steps = 100, .total_steps = 1100};
  double const peak = 1e-3f, floor = 1e-4f;  // the float fields as the schedule reads them
  CHECK(s.lr(1) == static_cast<float>(peak / 100));
  CHECK(s.lr(50) == static_cast<float>(peak * 50 / 100));
  CHECK(s.lr(100) == 1e-3f);  // warm-up end = peak
  CHECK(s.lr(101) < 1e-3f);   // the decay has begun
  CHECK(s.lr(101) ==
        static_cast<float>(floor + (peak - floor) * 0.5 * (1 + std::cos(std::numbers::pi * 1e-3))));
  CHECK(s.lr(600) == doctest::Approx(0.55e-3).epsilon(1e-6));  // halfway: (peak + floor) / 2
  CHECK(s.lr(1100) == 1e-4f);                                  // floor at total_steps
  CHECK(s.lr(5000) == 1e-4f);                                  // and after
  for (std::int64_t t = 1; t < 100; ++t) CHECK(s.lr(t) < s.lr(t + 1));
  for (std::int64_t t = 100; t < 1100; ++t) CHECK(s.lr(t) >= s.lr(t + 1));
  constexpr optim::warmup_cosine no_warmup{
      .peak_lr = 2e-4f, .floor_lr = 0.0f, .warmup_steps = 0, .total_steps = 10};
  CHECK(no_warmup.lr(1) == static_cast<float>(double{2e-4f} * 0.5 * (1 + std::cos(std::numbers::pi * 0.1))));
  CHECK(no_warmup.lr(10) == 0.0f);
}

TEST_CASE("deepseek_v3_schedule: the published shape (2.2e-4 peak, 2.2e-5 after the cosine, 7.3e-6 tail)") {
  auto const s = optim::deepseek_v3_schedule::for_steps(14800, 200);  // 1 step = 1B tokens
  CHECK(s.warmup_steps == 200);
  CHECK(s.constant_end == 10000);  // 10T tokens
  CHECK(s.decay_end == 14300);     // + 4.3T cosine
  CHECK(s.tail_start == 14633);    // + 333B at 2.2e-5, then 167B at 7.3e-6
  CHECK(s.lr(1) == static_cast<float>(double{2.2e-4f} / 200));
  CHECK(s.lr(200) == 2.2e-4f);
  CHECK(s.lr(201) == 2.2e-4f);
  CHECK(s.lr(10000) == 2.2e-4f);
  CHECK(s.lr(10001) < 2.2e-4f);
  CHECK(s.lr(12150) == doctest::Approx((2.2e-4 + 2.2e-5) / 2).epsilon(1e-6));  // cosine midpoint
  CHECK(s.lr(14300) == 2.2e-5f);
  CHECK(s.lr(14633) == 2.2e-5f);
  CHECK(s.lr(14634) == 7.3e-6f);
  CHECK(s.lr(14800) == 7.3e-6f);
  for (std::int64_t t = 10000; t < 14300; t += 7) CHECK(s.lr(t) >= s.lr(t + 7));
  auto const small = optim::deepseek_v3_schedule::for_steps(10, 5);  // boundaries never precede warm-up
  CHECK(small.constant_end >= 5);
  CHECK(small.lr(5) == 2.2e-4f);
}

TEST_CASE("schedules: bad values throw fp8moe::error naming the field") {
  constexpr optim::warmup_cosine s{
      .peak_lr = 1e-3f, .floor_lr = 1e-4f, .warmup_steps = 10, .total_steps = 100};
  CHECK_THROWS_WITH_AS(s.lr(0),
                       doctest::Contains("argument 'step': expected the 1-based step count (>= 1), got 0"),
                       fp8moe::error);
  optim::warmup_cosine bad = s;
  bad.warmup_steps = 101;
  CHECK_THROWS_WITH_AS(bad.lr(1), doctest::Contains("argument 'warmup_steps'"), fp8moe::error);
  bad = s;
  bad.peak_lr = -1.0f;
  CHECK_THROWS_WITH_AS(bad.lr(1), doctest::Contains("argument 'peak_lr'"), fp8moe::error);
  optim::deepseek_v3_schedule d = optim::deepseek_v3_schedule::for_steps(1000, 10);
  d.decay_end = d.constant_end - 1;
  CHECK_THROWS_WITH_AS(d.lr(5),
                       doctest::Contains("argument 'steps': expected 0 <= warmup_steps <= constant_end"),
                       fp8moe::error);
  CHECK_THROWS_WITH_AS(optim::deepseek_v3_schedule::for_steps(0), doctest::Contains("argument 'total_steps'"),
                       fp8moe::error);
}
