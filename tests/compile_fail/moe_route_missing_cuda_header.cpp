// SPDX-License-Identifier: Apache-2.0
// moe::route is one template on the executor concept; a device executor whose router path was not
// included (here a fake one registered with is_device_executor; for cuda_executor the missing
// include is moe/cuda/router.cuh) is one static_assert that names the header to include.
// EXPECT: include "fp8moe/moe/cuda/router.cuh"
#include <fp8moe/moe/router.hpp>

struct fake_device_executor {};
template <>
struct fp8moe::is_device_executor<fake_device_executor> : std::true_type {};

void f(fp8moe::matrix_view<float const> logits, fp8moe::matrix_view<std::int32_t> ids,
       fp8moe::matrix_view<float> w, fp8moe::vector_view<std::int32_t> n) {
  fp8moe::moe::route(fake_device_executor{}, fp8moe::moe::deepseek_v3_router, logits, {}, ids, w, n);
}
