// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Fuzz target: io::parse_safetensors_header over arbitrary bytes taken as a whole file. Rejections
// must be fp8moe::error (anything else escapes and is reported); an accepted header must keep the
// promises the reader relies on (every tensor inside the data buffer, sorted, no overlap, no hole,
// bytes == shape x dtype size), checked here independently, and its re-encoding must parse back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "fp8moe/io/safetensors.hpp"

namespace io = fp8moe::io;

static void require(bool ok) {
  if (!ok) std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::span<std::byte const> const file(reinterpret_cast<std::byte const*>(data), size);
  io::safetensors_header h;
  try {
    h = io::parse_safetensors_header(file, "fuzz.safetensors");
  } catch (fp8moe::error const&) {
    return 0;
  }
  require(h.data_offset <= size && h.data_offset + h.data_size == size);
  std::uint64_t covered = 0;
  std::vector<io::tensor_entry> again;
  for (auto const& t : h.tensors) {
    require(t.begin == covered && t.begin <= t.end && t.end <= h.data_size);
    std::uint64_t n = io::size_of(t.type);
    for (auto d : t.shape) {
      require(d >= 0);
      n *= static_cast<std::uint64_t>(d);
    }
    require(n == t.nbytes());
    require(h.find(t.name) == &t);
    covered = t.end;
    again.push_back({t.name, t.type, t.shape, file.subspan(h.data_offset + t.begin, t.nbytes())});
  }
  require(covered == h.data_size);
  // what we accept, we can write: the re-encoded file parses to the same tensors
  auto const bytes = io::encode_safetensors(again, h.metadata);
  auto const h2 = io::parse_safetensors_header(bytes, "fuzz re-encoded");
  require(h2.tensors.size() == h.tensors.size() && h2.metadata == h.metadata && h2.data_size == h.data_size);
  return 0;
}
