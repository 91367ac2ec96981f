// SPDX-License-Identifier: Apache-2.0
// quantize reads float or bf16 only: an integer input matrix is rejected at compile time.
// EXPECT: the input element type must be float or bfloat16_t
#include <fp8moe/scaling/quantize.hpp>

void f(fp8moe::matrix_view<int const> x, fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t> out) {
  fp8moe::scaling::quantize(fp8moe::host_executor{}, x, fp8moe::scaling::deepseek_v3.activation, out);
}
