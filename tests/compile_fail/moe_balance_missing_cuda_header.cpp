// SPDX-License-Identifier: Apache-2.0
// moe::update_bias on a device executor without its path included: one static_assert naming
// moe/cuda/balance.cuh (a fake device executor stands in for cuda_executor).
// EXPECT: include "fp8moe/moe/cuda/balance.cuh"
#include <fp8moe/moe/balance.hpp>

struct fake_device_executor {};
template <>
struct fp8moe::is_device_executor<fake_device_executor> : std::true_type {};

void f(fp8moe::vector_view<float> bias, fp8moe::vector_view<std::int32_t const> counts) {
  fp8moe::moe::update_bias(fake_device_executor{}, bias, counts);
}
