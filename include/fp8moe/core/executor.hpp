// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Executors pick the path an op runs on: host_executor (loops + OpenMP) here, cuda_executor
// (a stream) in core/cuda/executor.hpp. Entry points are constrained on these concepts.
#pragma once

#include <concepts>
#include <type_traits>

#include "fp8moe/config.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define FP8MOE_DETAIL_STR2(x) #x
#define FP8MOE_DETAIL_STR(x) FP8MOE_DETAIL_STR2(x)
#if defined(_OPENMP)
#define FP8MOE_DETAIL_OMP_WEAK  // built with OpenMP: the runtime is linked, a plain reference
#else
#define FP8MOE_DETAIL_OMP_WEAK __attribute__((weak))  // null unless some other unit links the runtime
#endif
/// The OpenMP runtime's omp_get_max_threads, declared under a name of our own (so it never clashes
/// with <omp.h>'s declaration, whichever is seen first). In a unit built without OpenMP it is a
/// weak reference: null when no unit of the program (or of the shared library holding this code)
/// links an OpenMP runtime. (The weak binding is per unit and per symbol: in such a unit a direct
/// call of omp_get_max_threads() is weak too, so a program that calls it only from units built
/// without OpenMP must still link the runtime through some unit built with it, as -fopenmp does.)
extern "C" int fp8moe_detail_omp_get_max_threads() __asm__(
    FP8MOE_DETAIL_STR(__USER_LABEL_PREFIX__) "omp_get_max_threads") FP8MOE_DETAIL_OMP_WEAK;
#define FP8MOE_HAS_WEAK_OPENMP_QUERY 1
#else
#define FP8MOE_HAS_WEAK_OPENMP_QUERY 0
#if FP8MOE_HAS_OPENMP
#include <omp.h>
#endif
#endif

namespace fp8moe {

namespace detail {
/// q() when the (possibly weak) function q is linked, else 1.
inline int call_if_linked(int (*q)()) {
  return q != nullptr ? q() : 1;
}

/// omp_get_max_threads() of the OpenMP runtime linked into the program, 1 when there is none.
/// Decided by the linker (a weak reference), not by `_OPENMP`, so this inline function has the same
/// body in every translation unit whatever its flags. Otherwise a program whose nvcc sources are
/// built without -fopenmp and whose C++ sources with it holds two definitions of it (an ODR
/// violation whose result depends on link order), and a workspace sized in one translation unit
/// disagrees with the threads a kernel of the other runs. (Other compilers: `_OPENMP` decides.)
inline int openmp_max_threads() {
#if FP8MOE_HAS_WEAK_OPENMP_QUERY
  return call_if_linked(&fp8moe_detail_omp_get_max_threads);
#elif FP8MOE_HAS_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
}  // namespace detail

/// Runs ops on the calling thread, parallelised with OpenMP where the code was compiled with it.
/// `threads` = 0 uses the OpenMP runtime's default (omp_get_max_threads(); 1 when the program links
/// no OpenMP runtime); 1 runs serially.
struct host_executor {
  int threads = 0;

  int num_threads() const { return threads > 0 ? threads : detail::openmp_max_threads(); }
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
