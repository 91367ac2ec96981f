// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Compiler and platform configuration: host/device annotations, version, feature macros.
// Included by every fp8moe header; without nvcc every annotation degrades to plain `inline`.
#pragma once

#define FP8MOE_VERSION_MAJOR 0
#define FP8MOE_VERSION_MINOR 1
#define FP8MOE_VERSION_PATCH 0

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FP8MOE_HOST_DEVICE __host__ __device__ inline
#define FP8MOE_DEVICE __device__ inline
#define FP8MOE_HOST __host__ inline
#define FP8MOE_CUDA_COMPILER 1
#else
#define FP8MOE_HOST_DEVICE inline
#define FP8MOE_DEVICE inline
#define FP8MOE_HOST inline
#define FP8MOE_CUDA_COMPILER 0
#endif

// True only inside device code compiled for sm_89 or newer (FP8 cvt / mma available).
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 890)
#define FP8MOE_ARCH_FP8 1
#else
#define FP8MOE_ARCH_FP8 0
#endif

#if defined(__CUDA_ARCH__)
#define FP8MOE_IS_DEVICE_CODE 1
#else
#define FP8MOE_IS_DEVICE_CODE 0
#endif

#if defined(_OPENMP)
#define FP8MOE_HAS_OPENMP 1
#else
#define FP8MOE_HAS_OPENMP 0
#endif

#if defined(__CUDACC__) || defined(__clang__) || defined(__GNUC__)
#define FP8MOE_PRAGMA(x) _Pragma(#x)
#else
#define FP8MOE_PRAGMA(x)
#endif

#if defined(__CUDA_ARCH__)
#define FP8MOE_UNROLL FP8MOE_PRAGMA(unroll)
#elif defined(__CUDACC__)
#define FP8MOE_UNROLL  // nvcc's host pass: it warns on GCC's pragma and passes its own to GCC, which warns
#elif defined(__clang__)
#define FP8MOE_UNROLL FP8MOE_PRAGMA(clang loop unroll(enable))
#elif defined(__GNUC__)
#define FP8MOE_UNROLL FP8MOE_PRAGMA(GCC unroll 8)
#else
#define FP8MOE_UNROLL
#endif

namespace fp8moe {
/// Library version as a single comparable integer: major*10000 + minor*100 + patch.
inline constexpr int version =
    FP8MOE_VERSION_MAJOR * 10000 + FP8MOE_VERSION_MINOR * 100 + FP8MOE_VERSION_PATCH;
}  // namespace fp8moe
