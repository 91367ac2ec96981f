// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Fuzz target: io::parse_safetensors_index over arbitrary text. Rejections must be fp8moe::error;
// an accepted index must name only plain file names, and its re-encoding must parse back equal.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fp8moe/io/checkpoint.hpp"

namespace io = fp8moe::io;

static void require(bool ok) {
  if (!ok) std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::string_view const text(reinterpret_cast<char const*>(data), size);
  io::safetensors_index idx;
  try {
    idx = io::parse_safetensors_index(text, "fuzz.index.json");
  } catch (fp8moe::error const&) {
    return 0;
  }
  for (auto const& [name, file] : idx.weight_map)
    require(!file.empty() && file != "." && file != ".." && file.find('/') == std::string::npos);
  auto const back = io::parse_safetensors_index(io::encode_safetensors_index(idx), "fuzz re-encoded");
  require(back.weight_map == idx.weight_map && back.total_size == idx.total_size &&
          back.metadata == idx.metadata);
  return 0;
}
