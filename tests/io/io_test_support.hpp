// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Helpers for the fp8moe::io tests: a scratch directory removed at scope exit, raw file writes that
// bypass the library (to plant corrupt files), and "this call throws an fp8moe::error whose message
// holds these pieces" checks.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "test_support.hpp"

namespace fp8moe::test {

/// A fresh directory under the system temp directory, removed with everything in it at scope exit.
class scratch_dir {
 public:
  scratch_dir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("fp8moe_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  scratch_dir(scratch_dir const&) = delete;
  scratch_dir& operator=(scratch_dir const&) = delete;
  std::filesystem::path const& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }
  /// Names of the entries in the directory (to see that no temp file was left behind).
  std::vector<std::string> entries() const {
    std::vector<std::string> v;
    for (auto const& e : std::filesystem::directory_iterator(path_))
      v.push_back(e.path().filename().string());
    return v;
  }

 private:
  std::filesystem::path path_;
};

inline void write_raw(std::filesystem::path const& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}
inline void write_raw(std::filesystem::path const& p, std::vector<std::byte> const& bytes) {
  write_raw(p, std::string_view(reinterpret_cast<char const*>(bytes.data()), bytes.size()));
}
inline std::string read_raw(std::filesystem::path const& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// A safetensors file from a header text and `data_bytes` bytes of data (values 0, 1, 2, ...).
inline std::string safetensors_bytes(std::string_view header, std::size_t data_bytes) {
  std::string out(8, '\0');
  std::uint64_t const n = header.size();
  std::memcpy(out.data(), &n, 8);
  out += header;
  for (std::size_t i = 0; i < data_bytes; ++i) out += static_cast<char>(i & 0xFF);
  return out;
}

/// The message of the fp8moe::error `f` throws, or "" when it throws none (other exception
/// types escape, failing the test).
template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (fp8moe::error const& e) {
    return e.what();
  }
  return "";
}

/// Checks that `f` throws an fp8moe::error and that its message contains every piece.
template <class F>
void check_error(F&& f, std::initializer_list<std::string_view> pieces) {
  std::string const msg = error_message(f);
  INFO("message: ", msg);
  CHECK_FALSE(msg.empty());
  for (auto p : pieces) {
    INFO("expected piece: ", p);
    CHECK(msg.find(p) != std::string::npos);
  }
}

}  // namespace fp8moe::test
