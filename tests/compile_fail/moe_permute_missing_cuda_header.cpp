// SPDX-License-Identifier: Apache-2.0
// moe::combine (like every permute-family op) on a device executor without its path included: one
// static_assert naming moe/cuda/permute.cuh (a fake device executor stands in for cuda_executor).
// EXPECT: include "fp8moe/moe/cuda/permute.cuh"
#include <fp8moe/moe/permute.hpp>

struct fake_device_executor {};
template <>
struct fp8moe::is_device_executor<fake_device_executor> : std::true_type {};

void f(fp8moe::moe::permute_plan const& p, fp8moe::matrix_view<float const> y,
       fp8moe::matrix_view<float const> w, fp8moe::matrix_view<float> out) {
  fp8moe::moe::combine(fake_device_executor{}, p, y, w, out);
}
