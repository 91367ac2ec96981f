// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Executors pick the path an op runs on: host_executor (loops + OpenMP) here, cuda_executor
// (a stream) in core/cuda/executor.hpp. Entry points are constrained on these concepts.
#pragma once

#include <concepts>
#include <type_traits>

#include "fp8moe/config.hpp"

#if FP8MOE_HAS_OPENMP
#include <omp.h>
#endif

namespace fp8moe {

/// Runs ops on the calling thread, parallelised with OpenMP when the build enables it.
/// `threads` = 0 uses the OpenMP default; 1 runs serially.
struct host_executor {
  int threads = 0;

  int num_threads() const {
#if FP8MOE_HAS_OPENMP
    return threads > 0 ? threads : omp_get_max_threads();
#else
    return 1;
#endif
  }
};

/// Tag trait: specialised to true by every device executor (cuda_executor).
template <class E>
struct is_device_executor : std::false_type {};

template <class E>
concept host_executor_like = std::same_as<std::remove_cvref_t<E>, host_executor>;

template <class E>
concept device_executor_like = is_device_executor<std::remove_cvref_t<E>>::value;

/// The `executor` concept: either the host executor or a registered device executor.
template <class E>
concept executor = host_executor_like<E> || device_executor_like<E>;

namespace detail {
template <class>
inline constexpr bool dependent_false = false;
}

}  // namespace fp8moe
