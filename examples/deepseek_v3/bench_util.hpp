// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// What the example's benchmarks share: the random checkpoint they load, written once per process.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include <unistd.h>

#include "config.hpp"
#include "init.hpp"

namespace dsv3 {

/// A random checkpoint of `c` (dtype, seed 1) written into a fresh temp directory `<name>_<pid>` on
/// construction and removed on destruction. Not copyable.
class bench_checkpoint {
 public:
  bench_checkpoint(std::string_view name, config const& c, std::string_view dtype)
      : dir_(std::filesystem::temp_directory_path() /
             (std::string(name) + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(dir_);
    write_random_checkpoint(c, dir_, dtype, 1);
  }
  ~bench_checkpoint() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  bench_checkpoint(bench_checkpoint const&) = delete;
  bench_checkpoint& operator=(bench_checkpoint const&) = delete;

  std::filesystem::path const& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

}  // namespace dsv3
