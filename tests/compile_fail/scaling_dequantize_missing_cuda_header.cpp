// SPDX-License-Identifier: Apache-2.0
// dequantize on a device executor whose scaling path was not included: the error names the header.
// EXPECT: fp8moe::scaling::dequantize: this executor has no scaling path
#include <fp8moe/scaling/quantize.hpp>

struct fake_device {};
template <>
struct fp8moe::is_device_executor<fake_device> : std::true_type {};

void f(fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t const> q, fp8moe::matrix_view<float> y) {
  fp8moe::scaling::dequantize(fake_device{}, q, y);
}
