// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The checker of the `deepseek_v3 logits` command tests: the .npy holds float32 [T, vocab], every
// value finite and not all equal; with --twin, DeepGEMM's calc_diff (1 - 2 sum(xy) / sum(x^2 + y^2),
// in float64) against another logits file is at most --max-calc-diff. Prints one line, exit 0 = OK.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "fp8moe/io/npy.hpp"

namespace {

fp8moe::io::npy_array<float> read_logits(std::string const& file, std::int64_t T, std::int64_t vocab) {
  auto a = fp8moe::io::read_npy<float>(file);
  if (a.shape != std::vector<std::int64_t>{T, vocab})
    throw std::runtime_error(file + ": expected shape [" + std::to_string(T) + ", " + std::to_string(vocab) +
                             "]");
  auto const bad = std::find_if(a.data.begin(), a.data.end(), [](float x) { return !std::isfinite(x); });
  if (bad != a.data.end())
    throw std::runtime_error(file + ": non-finite value at index " + std::to_string(bad - a.data.begin()));
  auto const [lo, hi] = std::minmax_element(a.data.begin(), a.data.end());
  if (*lo == *hi) throw std::runtime_error(file + ": every value is " + std::to_string(*lo));
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"check a logits .npy written by deepseek_v3 logits"};
  std::string file, twin;
  std::int64_t T = 0, vocab = 0;
  double max_diff = 0.0;
  app.add_option("file", file, "the .npy")->required();
  app.add_option("--tokens", T, "T: expected rows")->required();
  app.add_option("--vocab", vocab, "expected columns")->required();
  app.add_option("--twin", twin, "another logits .npy of the same tokens");
  app.add_option("--max-calc-diff", max_diff, "bound on calc_diff against --twin")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    auto const a = read_logits(file, T, vocab);
    if (twin.empty()) {
      std::printf("check_logits: OK: %s is float32 [%lld, %lld], finite\n", file.c_str(),
                  static_cast<long long>(T), static_cast<long long>(vocab));
      return 0;
    }
    auto const b = read_logits(twin, T, vocab);
    double xy = 0, xx_yy = 0;
    for (std::size_t i = 0; i < a.data.size(); ++i) {
      xy += double(a.data[i]) * b.data[i];
      xx_yy += double(a.data[i]) * a.data[i] + double(b.data[i]) * b.data[i];
    }
    double const diff = 1.0 - 2.0 * xy / xx_yy;
    if (!(diff <= max_diff))
      throw std::runtime_error("calc_diff " + std::to_string(diff) + " > " + std::to_string(max_diff));
    std::printf("check_logits: OK: [%lld, %lld], finite, calc_diff vs %s = %.3g <= %g\n",
                static_cast<long long>(T), static_cast<long long>(vocab), twin.c_str(), diff, max_diff);
    return 0;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "check_logits: FAILED: %s\n", e.what());
    return 1;
  }
}
