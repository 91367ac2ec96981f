// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// fp8moe::error, the one exception type of the library, and argument checking helpers.
// Host entry points validate before touching any output, so a throw leaves outputs untouched.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fp8moe {

/// What went wrong, for callers that want to branch on it without parsing messages.
enum class errc {
  invalid_argument,  ///< a shape, stride, pointer, index or option is not what the op accepts
  unsupported,       ///< a valid request this build or device cannot serve
  cuda,              ///< a CUDA runtime / driver call failed
  communication,     ///< an MPI or NCCL call failed, or ranks disagree
  io,                ///< a file could not be read or written, or is malformed
  internal           ///< a library invariant broke (a bug: please report)
};

constexpr std::string_view to_string(errc c) noexcept {
  switch (c) {
    case errc::invalid_argument:
      return "invalid argument";
    case errc::unsupported:
      return "unsupported";
    case errc::cuda:
      return "CUDA error";
    case errc::communication:
      return "communication error";
    case errc::io:
      return "I/O error";
    case errc::internal:
      return "internal error";
  }
  return "error";
}

/// The exception every fp8moe entry point throws. `what()` names the argument or call and the
/// expectation, e.g. "fp8moe::scaling::quantize: argument 'scales': expected 8x4 floats, got 8x3".
class error : public std::runtime_error {
 public:
  error(errc code, std::string const& message) : std::runtime_error(message), code_(code) {}
  errc code() const noexcept { return code_; }

 private:
  errc code_;
};

namespace detail {

template <class... Args>
std::string concat(Args const&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

/// Throws errc::invalid_argument: "<where>: argument '<arg>': expected <expected>[, got <got>]".
[[noreturn]] inline void throw_argument(std::string_view where, std::string_view arg,
                                        std::string_view expected, std::string_view got = {}) {
  std::string msg = concat(where, ": argument '", arg, "': expected ", expected);
  if (!got.empty()) msg += concat(", got ", got);
  throw error(errc::invalid_argument, msg);
}

}  // namespace detail

/// Checks an argument precondition: `require(ok, "fp8moe::op", "x", "rows >= 0", "rows = -1")`.
inline void require(bool ok, std::string_view where, std::string_view arg, std::string_view expected,
                    std::string_view got = {}) {
  if (!ok) detail::throw_argument(where, arg, expected, got);
}

}  // namespace fp8moe
