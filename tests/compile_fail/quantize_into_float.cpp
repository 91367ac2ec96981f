// SPDX-License-Identifier: Apache-2.0
// quantize() writes FP8 only: a float output element type is rejected at compile time.
// EXPECT: the output element type must be float8_e4m3_t or float8_e5m2_t
#include <fp8moe/scaling/quantize.hpp>

void f(fp8moe::matrix_view<float const> x, fp8moe::scaling::quantized_matrix_view<float> out) {
  fp8moe::scaling::quantize(fp8moe::host_executor{}, x, fp8moe::scaling::deepseek_v3.activation, out);
}
