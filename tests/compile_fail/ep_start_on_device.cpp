// SPDX-License-Identifier: Apache-2.0
// The *_start forms of the expert-parallel ops are host only: on a device executor whose path is
// included (a fake device executor with a stream-ordered path stands in for cuda_executor) the
// call is one static_assert that says what to call instead.
// EXPECT: combine_start: host only
#include <fp8moe/comm/single_communicator.hpp>
#include <fp8moe/moe/expert_parallel/combine.hpp>

struct fake_device_executor {};
template <>
struct fp8moe::is_device_executor<fake_device_executor> : std::true_type {};
template <>
struct fp8moe::moe::expert_parallel_dispatch<fake_device_executor> {
  static constexpr bool asynchronous = false;
  static constexpr bool allocating = false;
};

void f(fp8moe::moe::dispatch_handle const& h, fp8moe::matrix_view<float const> partial,
       fp8moe::matrix_view<float> out) {
  fp8moe::comm::single_communicator comm;
  fp8moe::moe::combine_start(fake_device_executor{}, comm, h, partial, out);
}
