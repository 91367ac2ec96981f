// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The byte-level tokenizer of the trainer and of generation's --prompt: token id = byte value
// (0..255), one token per byte of the UTF-8 (or any) text, no merges, no special tokens. A model needs
// vocab_size >= 256 for it (tiny: 1024; ids 256..1023 are never produced). Decoding maps ids < 256 back
// to their byte and anything else to '?'.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fp8moe/core/error.hpp"

namespace dsv3 {

/// The number of ids the byte-level tokenizer produces.
inline constexpr std::int64_t byte_vocab = 256;

/// Token ids of `text`: one per byte, id = the byte's value.
inline std::vector<std::int32_t> encode_bytes(std::string_view text) {
  std::vector<std::int32_t> ids(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

/// The text of byte-level ids: id < 256 -> that byte, other ids -> '?'.
inline std::string decode_bytes(std::span<std::int32_t const> ids) {
  std::string s(ids.size(), '?');
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= 0 && ids[i] < byte_vocab) s[i] = static_cast<char>(static_cast<unsigned char>(ids[i]));
  return s;
}

/// Throws fp8moe::error naming `vocab_size` when a model cannot take byte-level tokens.
inline void check_byte_vocab(std::int64_t vocab_size, char const* where) {
  fp8moe::require(vocab_size >= byte_vocab, where, "vocab_size",
                  "at least 256 (byte-level tokens: id = byte value)", std::to_string(vocab_size));
}

}  // namespace dsv3
