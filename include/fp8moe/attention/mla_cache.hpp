// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// attention::mla_cache: the compressed KV cache the absorbed form reads, one per layer: per token
// the normed latent (kv_lora_rank) and the rotated rope key (qk_rope_head_dim): 576 floats for V3
// against 40,960 for a naive per-head K/V cache. Owning host memory of `capacity` rows, zero-filled;
// append() copies rows in, truncate() rolls back (speculative decoding) and re-zeroes what it drops,
// so the storage is bit-identical to never having appended past the new length. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/attention/mla_core.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"

namespace fp8moe::attention {

class mla_cache {
 public:
  mla_cache() = default;
  /// A cache of `capacity` tokens of kv_lora_rank latent + rope_dim rope-key values (empty).
  mla_cache(std::int64_t capacity, std::int64_t kv_lora_rank, std::int64_t rope_dim)
      : capacity_(checked(capacity, "capacity", 0)),
        rank_(checked(kv_lora_rank, "kv_lora_rank", 1)),
        rope_(checked(rope_dim, "rope_dim", 1)),
        latent_(static_cast<std::size_t>(capacity_ * rank_), 0.0f),
        k_rope_(static_cast<std::size_t>(capacity_ * rope_), 0.0f) {}
  /// The cache one layer of `dims` needs for `capacity` tokens.
  mla_cache(mla_dims const& dims, std::int64_t capacity)
      : mla_cache(capacity, dims.kv_lora_rank, dims.qk_rope_head_dim) {}

  std::int64_t capacity() const { return capacity_; }
  std::int64_t length() const { return length_; }
  std::int64_t kv_lora_rank() const { return rank_; }
  std::int64_t rope_dim() const { return rope_; }
  /// Values stored per token (V3: 512 + 64 = 576) and their bytes.
  std::int64_t values_per_token() const { return rank_ + rope_; }
  std::size_t bytes_per_token() const { return static_cast<std::size_t>(values_per_token()) * sizeof(float); }

  /// Appends latent (n, kv_lora_rank) and k_rope (n, rope_dim) rows (kv_norm applied, rope rotated);
  /// throws, leaving the cache unchanged, on a shape mismatch or when length() + n > capacity().
  void append(matrix_view<float const> latent, matrix_view<float const> k_rope) {
    constexpr char const* where = "fp8moe::attention::mla_cache::append";
    check_matrix(latent, where, "latent");
    check_matrix(k_rope, where, "k_rope");
    require(latent.cols == rank_, where, "latent", "(n, kv_lora_rank = " + std::to_string(rank_) + ")",
            fp8moe::detail::shape_string(latent.rows, latent.cols));
    check_shape(k_rope, latent.rows, rope_, where, "k_rope");
    require(length_ + latent.rows <= capacity_, where, "latent",
            "at most capacity - length = " + std::to_string(capacity_ - length_) + " rows (capacity " +
                std::to_string(capacity_) + ")",
            std::to_string(latent.rows) + " rows");
    for (std::int64_t r = 0; r < latent.rows; ++r) {
      for (std::int64_t c = 0; c < rank_; ++c) latent_[idx(length_ + r, c, rank_)] = latent(r, c);
      for (std::int64_t c = 0; c < rope_; ++c) k_rope_[idx(length_ + r, c, rope_)] = k_rope(r, c);
    }
    length_ += latent.rows;
  }

  /// Keeps the first n tokens (0 <= n <= length()) and zeroes the rest of the storage back.
  void truncate(std::int64_t n) {
    require(n >= 0 && n <= length_, "fp8moe::attention::mla_cache::truncate", "n",
            "0 <= n <= length() = " + std::to_string(length_), std::to_string(n));
    std::fill(latent_.begin() + static_cast<std::ptrdiff_t>(n * rank_),
              latent_.begin() + static_cast<std::ptrdiff_t>(length_ * rank_), 0.0f);
    std::fill(k_rope_.begin() + static_cast<std::ptrdiff_t>(n * rope_),
              k_rope_.begin() + static_cast<std::ptrdiff_t>(length_ * rope_), 0.0f);
    length_ = n;
  }
  void clear() { truncate(0); }

  /// (length(), kv_lora_rank) and (length(), rope_dim) views of the cached rows.
  matrix_view<float const> latent() const { return make_matrix(latent_.data(), length_, rank_); }
  matrix_view<float const> k_rope() const { return make_matrix(k_rope_.data(), length_, rope_); }
  /// The whole storage (capacity rows of each), for bit-exact comparisons.
  std::span<float const> latent_storage() const { return latent_; }
  std::span<float const> k_rope_storage() const { return k_rope_; }

 private:
  static std::int64_t checked(std::int64_t v, char const* arg, std::int64_t min) {
    require(v >= min, "fp8moe::attention::mla_cache", arg, ">= " + std::to_string(min), std::to_string(v));
    return v;
  }
  static std::size_t idx(std::int64_t r, std::int64_t c, std::int64_t cols) {
    return static_cast<std::size_t>(r * cols + c);
  }
  std::int64_t capacity_ = 0, rank_ = 0, rope_ = 0, length_ = 0;
  std::vector<float> latent_;  // (capacity, kv_lora_rank)
  std::vector<float> k_rope_;  // (capacity, rope_dim)
};

}  // namespace fp8moe::attention
