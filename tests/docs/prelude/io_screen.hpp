// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/io.md's "In one screen" (statements in a function body; the block includes its own
// header): xs (T,H) and logits (T,vocab) float, host memory.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include <fp8moe/io/io.hpp>  // first: the block's own #include then adds nothing inside the function
#define FP8MOE_SNIPPET_PARAMS                                                                     \
  std::vector<float> const &xs, std::vector<float> const &logits, std::int64_t T, std::int64_t H, \
      std::int64_t vocab
