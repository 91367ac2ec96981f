// SPDX-License-Identifier: Apache-2.0
// The first parameter of every moe entry point is constrained by the `executor` concept: a value
// that is neither host_executor nor a registered device executor (here a stream-like int) is rejected
// at the call, with the concept named in the diagnostic.
// EXPECT: [with Exec = int]
#include <fp8moe/moe/router.hpp>

void f(fp8moe::matrix_view<float const> logits) {
  auto r = fp8moe::moe::route(0, fp8moe::moe::deepseek_v3_router, logits);
  (void)r;
}
