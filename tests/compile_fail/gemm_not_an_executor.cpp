// SPDX-License-Identifier: Apache-2.0
// The first argument of every gemm entry point must satisfy the `executor` concept: an int is
// rejected at the call, and the diagnostic names the concept.
// EXPECT: executor<Exec>
#include <fp8moe/gemm/gemm.hpp>

void f(fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t const> a,
       fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t const> b,
       fp8moe::matrix_view<fp8moe::bfloat16_t> d) {
  fp8moe::gemm::fp8_gemm(0, a, b, d);
}
