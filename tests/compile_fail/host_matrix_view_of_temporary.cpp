// SPDX-License-Identifier: Apache-2.0
// The view of a temporary host_matrix would dangle at the end of the statement: it does not compile.
// EXPECT: deleted
#include <fp8moe/core/view.hpp>

fp8moe::host_matrix<float> make();

void f() {
  auto v = make().view();
  (void)v;
}
