// SPDX-License-Identifier: Apache-2.0
// dequantize writes float or bf16 only: an FP8 output matrix is rejected at compile time.
// EXPECT: y must be a mutable float or bfloat16_t matrix
#include <fp8moe/scaling/quantize.hpp>

void f(fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t const> q,
       fp8moe::matrix_view<fp8moe::float8_e4m3_t> y) {
  fp8moe::scaling::dequantize(fp8moe::host_executor{}, q, y);
}
