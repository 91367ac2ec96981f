// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Shared by the host benchmarks: timing an op and its baseline alternately, so a change of machine
// load (or of this VM's memory speed) hits both alike.
#pragma once

#include <algorithm>
#include <chrono>
#include <utility>

namespace fp8moe::test {

/// Best wall seconds of `ours` and `base`, run alternately `reps` times.
template <class Ours, class Base>
std::pair<double, double> interleaved_best(Ours&& ours, Base&& base, int reps = 5) {
  double best_ours = 1e30, best_base = 1e30;
  auto once = [](auto&& fn, double& best) {
    auto const t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
  for (int r = 0; r < reps; ++r) {
    once(ours, best_ours);
    once(base, best_base);
  }
  return {best_ours, best_base};
}

}  // namespace fp8moe::test
