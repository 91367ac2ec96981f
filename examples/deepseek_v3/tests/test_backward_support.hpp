// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// What the backward tests share: a random checkpoint of a preset in a fresh temp directory (removed at
// scope exit), and the (T) token ids with their next-token targets (the last one ignore_index).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "config.hpp"
#include "init.hpp"

namespace dsv3::test {

/// A random f32 checkpoint of preset `name` written under the temp directory, removed at scope exit.
struct temp_checkpoint {
  std::filesystem::path dir;
  temp_checkpoint(std::string const& name, std::uint64_t seed) {
    namespace fs = std::filesystem;
    dir = fs::temp_directory_path() / ("dsv3_test_backward_" + name + "_" + std::to_string(seed) + "_" +
                                       std::to_string(static_cast<unsigned long long>(
                                           std::hash<std::string>{}(fs::current_path().string()))));
    fs::remove_all(dir);
    dsv3::write_random_checkpoint(dsv3::preset(name), dir, "f32", seed);
  }
  ~temp_checkpoint() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

/// T token ids (i * step + offset) % vocab and their next-token targets, the last target -100.
inline std::vector<std::int32_t> token_ids(std::int64_t T, std::int64_t step, std::int64_t offset,
                                           std::int64_t vocab) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i)
    t[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * step + offset) % vocab);
  return t;
}
inline std::vector<std::int32_t> next_targets(std::vector<std::int32_t> const& t) {
  std::vector<std::int32_t> y(t.begin() + 1, t.end());
  y.push_back(-100);
  return y;
}

}  // namespace dsv3::test
