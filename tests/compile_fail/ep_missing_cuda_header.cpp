// SPDX-License-Identifier: Apache-2.0
// moe::combine (like every expert-parallel op) on a device executor without its path included: one
// static_assert naming moe/expert_parallel/cuda/dispatch.cuh (a fake device executor stands in for
// cuda_executor).
// EXPECT: include "fp8moe/moe/expert_parallel/cuda/dispatch.cuh"
#include <fp8moe/comm/single_communicator.hpp>
#include <fp8moe/moe/expert_parallel/combine.hpp>

struct fake_device_executor {};
template <>
struct fp8moe::is_device_executor<fake_device_executor> : std::true_type {};

void f(fp8moe::moe::dispatch_handle const& h, fp8moe::matrix_view<float const> partial,
       fp8moe::matrix_view<float> out) {
  fp8moe::comm::single_communicator comm;
  fp8moe::moe::combine(fake_device_executor{}, comm, h, partial, out);
}
