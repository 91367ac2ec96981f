// SPDX-License-Identifier: Apache-2.0
// The router form of moe::route is constrained by `expert_router`: a router type without k() and
// route(exec, logits, ids, weights, counts) is rejected at the call, naming the concept.
// EXPECT: [with Router = half_router
#include <fp8moe/moe/router.hpp>

struct half_router {  // experts() only
  int experts() const { return 8; }
};

void f(fp8moe::matrix_view<float const> logits, fp8moe::matrix_view<std::int32_t> ids,
       fp8moe::matrix_view<float> w, fp8moe::vector_view<std::int32_t> n) {
  fp8moe::moe::route(fp8moe::host_executor{}, half_router{}, logits, ids, w, n);
}
