// SPDX-License-Identifier: Apache-2.0
// The allocating quantize on a device executor without its scaling path: the same error, naming the
// header to include (the owning result type comes from the executor's path too).
// EXPECT: for cuda_executor include "fp8moe/scaling/cuda/quantize.cuh"
#include <fp8moe/scaling/quantize.hpp>

struct fake_device {};
template <>
struct fp8moe::is_device_executor<fake_device> : std::true_type {};

void f(fp8moe::matrix_view<float const> x) {
  auto q = fp8moe::scaling::quantize(fake_device{}, x, fp8moe::scaling::deepseek_v3.activation);
  (void)q;
}
