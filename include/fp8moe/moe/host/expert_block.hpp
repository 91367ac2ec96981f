// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// expert_block_dispatch<host_executor>: what the host path of the expert block does differently from
// the device: it reads the routing (ids) before planning, so the permuted row count is exact (and
// invalid ids are reported), and the plan build needs no scratch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/moe/permute.hpp"

namespace fp8moe::moe {

template <class Exec>
struct expert_block_dispatch;

template <>
struct expert_block_dispatch<host_executor> {
  /// Rows of the contiguous layout for this routing: sum_e round_up(count_e, m_align).
  static std::int64_t permuted_rows(host_executor const&, contiguous layout,
                                    matrix_view<std::int32_t const> ids, std::int64_t E) {
    std::vector<std::int32_t> counts(static_cast<std::size_t>(E), 0);
    for (std::int64_t t = 0; t < ids.rows; ++t)
      for (std::int64_t j = 0; j < ids.cols; ++j) {
        auto const e = ids(t, j);
        if (e < -1 || e >= E)
          require(false, "fp8moe::moe::expert_block", "ids", "values in [-1, E)",
                  fp8moe::detail::concat("ids(", t, ", ", j, ") = ", e));
        if (e >= 0) ++counts[static_cast<std::size_t>(e)];
      }
    return contiguous_rows(layout, counts.data(), E);
  }
  static std::size_t plan_scratch_bytes(std::int64_t, std::int64_t, std::int64_t) { return 0; }
};

}  // namespace fp8moe::moe
