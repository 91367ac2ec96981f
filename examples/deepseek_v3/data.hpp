// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The trainer's data: a token stream (a text file through the byte-level tokenizer, or given ids) cut
// into a training part and a held-out tail, and batches of B windows of S+1 tokens (inputs = the first
// S, targets = the last S). Training windows start at offsets drawn by a counter-based generator from
// (seed, batch index, row): the sampler's whole state is the number of batches drawn, so a resumed run
// draws the same batches. The held-out batch is fixed (evenly spaced windows of the tail).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/io/file.hpp"
#include "tokenizer.hpp"

namespace dsv3 {

/// B rows of S+1 tokens, row-major (B, S+1): row b is a window of the stream.
struct token_batch {
  std::int64_t rows = 0;             // B
  std::int64_t seq = 0;              // S (each row holds S+1 tokens)
  std::vector<std::int32_t> tokens;  // (B, S+1)
  std::span<std::int32_t const> row(std::int64_t b) const {
    return {tokens.data() + b * (seq + 1), static_cast<std::size_t>(seq + 1)};
  }
};

/// A token stream split into training and held-out parts.
struct token_corpus {
  std::vector<std::int32_t> train;    // the first part
  std::vector<std::int32_t> heldout;  // the tail
};

/// The bytes of text file `path` as tokens, the last `heldout_fraction` held out. One clear error
/// (fp8moe::error naming --data and the path) for a missing file, a directory or an empty file.
inline token_corpus read_corpus(std::filesystem::path const& path, double heldout_fraction = 0.1) {
  std::error_code ec;
  fp8moe::require(std::filesystem::is_regular_file(path, ec), "dsv3::read_corpus", "--data",
                  "a readable text file",
                  "\"" + path.string() + "\" (" +
                      (std::filesystem::exists(path, ec) ? "not a regular file" : "no such file") + ")");
  fp8moe::require(std::filesystem::file_size(path, ec) > 0, "dsv3::read_corpus", "--data",
                  "a non-empty text file", "\"" + path.string() + "\" (empty)");
  std::string const text = fp8moe::io::read_text_file(path, std::size_t{1} << 30);
  fp8moe::require(heldout_fraction >= 0.0 && heldout_fraction < 1.0, "dsv3::read_corpus", "heldout_fraction",
                  "a value in [0, 1)", std::to_string(heldout_fraction));
  auto const ids = encode_bytes(text);
  auto const cut = static_cast<std::size_t>(static_cast<double>(ids.size()) * (1.0 - heldout_fraction));
  return {std::vector<std::int32_t>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(cut)),
          std::vector<std::int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(cut), ids.end())};
}

namespace detail {
/// splitmix64 of (seed, i): the sampler's counter-based draw.
constexpr std::uint64_t draw64(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline void check_windows(std::span<std::int32_t const> s, std::int64_t B, std::int64_t S, char const* what) {
  fp8moe::require(B >= 1, "dsv3::batch_sampler", "batch", ">= 1", std::to_string(B));
  fp8moe::require(S >= 1, "dsv3::batch_sampler", "seq", ">= 1", std::to_string(S));
  fp8moe::require(static_cast<std::int64_t>(s.size()) >= S + 1, "dsv3::batch_sampler", what,
                  "at least seq + 1 = " + std::to_string(S + 1) + " tokens",
                  std::to_string(s.size()) + " tokens");
}
}  // namespace detail

/// Draws training batches from a token stream (not owned; it must outlive the sampler).
class batch_sampler {
 public:
  batch_sampler(std::span<std::int32_t const> stream, std::int64_t batch, std::int64_t seq,
                std::uint64_t seed)
      : s_(stream), B_(batch), S_(seq), seed_(seed) {
    detail::check_windows(s_, B_, S_, "training data");
  }
  /// The next batch (advances the position by one).
  token_batch next() { return at(drawn_++); }
  /// Batch number i (0-based) of this seed, without moving.
  token_batch at(std::uint64_t i) const {
    token_batch b{B_, S_, std::vector<std::int32_t>(static_cast<std::size_t>(B_ * (S_ + 1)))};
    auto const starts = static_cast<std::uint64_t>(static_cast<std::int64_t>(s_.size()) - S_);  // >= 1
    for (std::int64_t r = 0; r < B_; ++r) {
      auto const o =
          detail::draw64(seed_, i * static_cast<std::uint64_t>(B_) + static_cast<std::uint64_t>(r)) % starts;
      for (std::int64_t j = 0; j <= S_; ++j)
        b.tokens[static_cast<std::size_t>(r * (S_ + 1) + j)] =
            s_[static_cast<std::size_t>(o) + static_cast<std::size_t>(j)];
    }
    return b;
  }
  /// Batches drawn so far: the data position a checkpoint saves.
  std::uint64_t position() const { return drawn_; }
  /// Continues from a saved position.
  void seek(std::uint64_t position) { drawn_ = position; }
  std::uint64_t seed() const { return seed_; }

 private:
  std::span<std::int32_t const> s_;
  std::int64_t B_, S_;
  std::uint64_t seed_;
  std::uint64_t drawn_ = 0;
};

/// The held-out batch: B windows of S+1 tokens evenly spaced over `stream` (the same every call).
inline token_batch heldout_batch(std::span<std::int32_t const> stream, std::int64_t batch, std::int64_t seq) {
  detail::check_windows(stream, batch, seq, "held-out data");
  token_batch b{batch, seq, std::vector<std::int32_t>(static_cast<std::size_t>(batch * (seq + 1)))};
  auto const span = static_cast<std::int64_t>(stream.size()) - seq - 1;  // last valid start
  for (std::int64_t r = 0; r < batch; ++r) {
    std::int64_t const o = batch > 1 ? span * r / (batch - 1) : 0;
    for (std::int64_t j = 0; j <= seq; ++j)
      b.tokens[static_cast<std::size_t>(r * (seq + 1) + j)] = stream[static_cast<std::size_t>(o + j)];
  }
  return b;
}

}  // namespace dsv3
