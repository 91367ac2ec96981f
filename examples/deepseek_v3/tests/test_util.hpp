// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Helpers shared by the example's doctest tests: deterministic token ids and the relative error
// max |a - b| / max |b| the logits checks quote.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv3::test {

/// T deterministic token ids spread over the vocabulary; `salt` shifts them (0: (i*37 + 11) % vocab).
inline std::vector<std::int32_t> tokens_for(std::int64_t vocab, std::int64_t T, std::int64_t salt = 0) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i)
    t[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 37 + 11 + salt * 101) % vocab);
  return t;
}

/// max |a - b| / max |b| over equally sized data (b not all zero).
inline double max_rel(std::vector<double> const& a, std::vector<double> const& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(a[i] - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  REQUIRE(den > 0);
  return num / den;
}

}  // namespace dsv3::test
