// SPDX-License-Identifier: Apache-2.0
// The FP8 GEMM writes float or bfloat16_t: an FP8 output element type is rejected at compile time
// (on every executor: the check is in the entry point, before the dispatch).
// EXPECT: D must be float or bfloat16_t (FP8 output is not supported)
#include <fp8moe/gemm/gemm.hpp>

void f(fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t const> a,
       fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t const> b,
       fp8moe::matrix_view<fp8moe::float8_e4m3_t> d) {
  fp8moe::gemm::fp8_gemm(fp8moe::host_executor{}, a, b, d);
}
