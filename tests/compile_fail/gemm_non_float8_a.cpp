// SPDX-License-Identifier: Apache-2.0
// The FP8 GEMM's operands are FP8: a bfloat16_t A is rejected at compile time (on every executor:
// the check is in the entry point, before the dispatch).
// EXPECT: A and B must be float8_e4m3_t or float8_e5m2_t
#include <fp8moe/gemm/gemm.hpp>

void f(fp8moe::scaling::quantized_matrix_view<fp8moe::bfloat16_t const> a,
       fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t const> b, fp8moe::matrix_view<float> d) {
  fp8moe::gemm::fp8_gemm(fp8moe::host_executor{}, a, b, d);
}
