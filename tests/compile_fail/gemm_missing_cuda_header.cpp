// SPDX-License-Identifier: Apache-2.0
// A device executor whose gemm path was not included (the CUDA header is missing): one readable
// error naming the header. The fake executor stands for cuda_executor (this test builds with g++).
// EXPECT: for cuda_executor include "fp8moe/gemm/cuda/gemm.hpp" (nvcc)
#include <fp8moe/gemm/gemm.hpp>

struct fake_device_executor {};
template <>
struct fp8moe::is_device_executor<fake_device_executor> : std::true_type {};

void f(fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t const> a,
       fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t const> b,
       fp8moe::matrix_view<fp8moe::bfloat16_t> d) {
  fp8moe::gemm::fp8_gemm(fake_device_executor{}, a, b, d);
}
