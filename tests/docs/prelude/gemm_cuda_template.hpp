// SPDX-License-Identifier: Apache-2.0
// Prelude of docs/gemm_cuda.md's function template (namespace scope): the names of docs/gemm.md's
// include block. gemm_cuda_template.post.hpp instantiates it for the host executor; nvcc compiles
// the same template for both executors in test_gemm_device_cuda.
#pragma once
#include <cstddef>
#include <vector>

#include <fp8moe/gemm/gemm.hpp>
namespace fg = fp8moe::gemm;
using e4m3 = fp8moe::float8_e4m3_t;
using bf16 = fp8moe::bfloat16_t;
