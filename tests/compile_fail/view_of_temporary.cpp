// SPDX-License-Identifier: Apache-2.0
// The view of an owning temporary would dangle at the end of the statement (a use-after-free): it
// does not compile. Keep the quantized_matrix in a variable, then take its view.
// EXPECT: deleted
#include <fp8moe/scaling/quantize.hpp>

void f(fp8moe::matrix_view<float const> x) {
  auto v =
      fp8moe::scaling::quantize(fp8moe::host_executor{}, x, fp8moe::scaling::deepseek_v3.activation).view();
  (void)v;
}
