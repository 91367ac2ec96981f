// SPDX-License-Identifier: Apache-2.0
// quantize on a device executor whose scaling path was not included (here a fake device executor,
// registered with is_device_executor): one error that names the header to include.
// EXPECT: for cuda_executor include "fp8moe/scaling/cuda/quantize.cuh"
#include <fp8moe/scaling/quantize.hpp>

struct fake_device {};
template <>
struct fp8moe::is_device_executor<fake_device> : std::true_type {};

void f(fp8moe::matrix_view<float const> x,
       fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t> out) {
  fp8moe::scaling::quantize(fake_device{}, x, fp8moe::scaling::deepseek_v3.activation, out);
}
