// SPDX-License-Identifier: Apache-2.0
// The first argument of every scaling entry point must satisfy the `executor` concept (a stream or
// an int is not one): rejected at the call, naming the concept.
// EXPECT: executor<Exec>
#include <fp8moe/scaling/quantize.hpp>

void f(fp8moe::matrix_view<float const> x,
       fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t> out) {
  fp8moe::scaling::quantize(42, x, fp8moe::scaling::deepseek_v3.activation, out);
}
