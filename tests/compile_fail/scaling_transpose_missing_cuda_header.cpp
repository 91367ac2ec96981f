// SPDX-License-Identifier: Apache-2.0
// transpose_requantize on a device executor whose scaling path was not included: the error names
// the op and the header.
// EXPECT: fp8moe::scaling::transpose_requantize: this executor has no scaling path
#include <fp8moe/scaling/quantize.hpp>

struct fake_device {};
template <>
struct fp8moe::is_device_executor<fake_device> : std::true_type {};

void f(fp8moe::matrix_view<fp8moe::bfloat16_t const> x,
       fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t> out) {
  fp8moe::scaling::transpose_requantize(fake_device{}, x, fp8moe::scaling::deepseek_v3.activation, out);
}
