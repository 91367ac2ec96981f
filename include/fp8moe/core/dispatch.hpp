// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Per-executor dispatch (CUB's Device -> Dispatch shape). Each module declares one primary template
// `template <class Exec> struct dispatch;` next to its entry points and leaves it undefined; each
// path defines its specialisation (host: `dispatch<host_executor>` in <module>/host/, CUDA:
// `dispatch<cuda_executor>` in <module>/cuda/) with one static member function per op. The public
// entry point is one function template constrained on `executor`:
//
//   template <executor Exec, class T>
//   void quantize(Exec const& exec, matrix_view<T const> x, ...) {
//     static_assert(has_dispatch<dispatch<std::remove_cvref_t<Exec>>>,
//                   "fp8moe::scaling::quantize: this executor has no path here; for cuda_executor "
//                   "include \"fp8moe/scaling/cuda/quantize.cuh\" (nvcc)");
//     if constexpr (has_dispatch<dispatch<std::remove_cvref_t<Exec>>>)
//       dispatch<std::remove_cvref_t<Exec>>::quantize(exec, x, ...);
//   }
//
// so a function template written once runs on either executor, and a missing include is one
// readable error that names the header (tests/compile_fail/*_missing_cuda_header.cpp).
#pragma once

#include <type_traits>

#include "fp8moe/core/executor.hpp"

namespace fp8moe {

/// True when the dispatch specialisation D is defined (its path's header was included). Evaluate
/// it only inside an entry point's body, after every header of the translation unit is seen.
template <class D>
concept has_dispatch = requires {
  sizeof(D);
};

/// The executor type an entry point dispatches on (cv/ref removed).
template <class Exec>
using executor_t = std::remove_cvref_t<Exec>;

}  // namespace fp8moe
