// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// nn::embedding_forward: out (T,C) = wte (V,C) rows gathered by token id (ids checked against V
// before anything is written); nn::embedding_backward: dwte (V,C) += dout rows scattered by id
// (ACCUMULATES; repeated ids add up). Host path in nn/host/embedding.hpp.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/view.hpp"
#include "fp8moe/numeric/bfloat16.hpp"

namespace fp8moe::nn {

/// Undefined primary template; nn/host/embedding.hpp defines the host_executor specialisation.
template <class Exec>
struct embedding_dispatch;

namespace detail {
inline void check_token_ids(char const* where, std::span<std::int32_t const> ids, std::int64_t vocab) {
  for (std::size_t t = 0; t < ids.size(); ++t)
    require(ids[t] >= 0 && ids[t] < vocab, where, "ids", "token ids in [0, " + std::to_string(vocab) + ")",
            std::to_string(ids[t]) + " at position " + std::to_string(t));
}
template <class M>
void check_rows(char const* where, char const* arg, M const& m, std::int64_t rows, std::int64_t cols) {
  check_matrix(m, where, arg);
  require(m.empty() || m.col_stride == 1, where, arg, "row-major (col_stride 1)");
  check_shape(m, rows, cols, where, arg);
}
}  // namespace detail

/// out (T,C) = wte (V,C)[ids (T)]; float or bf16 table and output (converted per element).
template <executor Exec, class W, class O>
void embedding_forward(Exec const& exec, std::span<std::int32_t const> ids, matrix_view<W> wte,
                       matrix_view<O> out) {
  using WC = std::remove_const_t<W>;
  static_assert((std::same_as<WC, float> || std::same_as<WC, bfloat16_t>)&&(std::same_as<O, float> ||
                                                                            std::same_as<O, bfloat16_t>),
                "fp8moe::nn::embedding_forward: wte and out must be float or bfloat16_t (out writable)");
  static_assert(has_dispatch<embedding_dispatch<executor_t<Exec>>>,
                "fp8moe::nn::embedding_forward: this executor has no path here; include "
                "\"fp8moe/nn/host/embedding.hpp\" (a CUDA path is not written yet)");
  constexpr char const* where = "fp8moe::nn::embedding_forward";
  check_matrix(wte, where, "wte");
  require(wte.empty() || wte.col_stride == 1, where, "wte", "row-major (col_stride 1)");
  detail::check_rows(where, "out", out, static_cast<std::int64_t>(ids.size()), wte.cols);
  detail::check_token_ids(where, ids, wte.rows);
  if constexpr (has_dispatch<embedding_dispatch<executor_t<Exec>>>)
    embedding_dispatch<executor_t<Exec>>::forward(exec, ids, matrix_view<WC const>(wte), out);
}

/// dwte (V,C) += scatter of dout (T,C) by ids (T): row ids[t] of dwte gains dout row t.
template <executor Exec>
void embedding_backward(Exec const& exec, std::span<std::int32_t const> ids, matrix_view<float const> dout,
                        matrix_view<float> dwte) {
  static_assert(has_dispatch<embedding_dispatch<executor_t<Exec>>>,
                "fp8moe::nn::embedding_backward: this executor has no path here; include "
                "\"fp8moe/nn/host/embedding.hpp\" (a CUDA path is not written yet)");
  constexpr char const* where = "fp8moe::nn::embedding_backward";
  check_matrix(dwte, where, "dwte");
  require(dwte.empty() || dwte.col_stride == 1, where, "dwte", "row-major (col_stride 1)");
  detail::check_rows(where, "dout", dout, static_cast<std::int64_t>(ids.size()), dwte.cols);
  detail::check_token_ids(where, ids, dwte.rows);
  if constexpr (has_dispatch<embedding_dispatch<executor_t<Exec>>>)
    embedding_dispatch<executor_t<Exec>>::backward(exec, ids, dout, dwte);
}

}  // namespace fp8moe::nn

#include "fp8moe/nn/host/embedding.hpp"
