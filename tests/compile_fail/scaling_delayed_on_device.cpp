// SPDX-License-Identifier: Apache-2.0
// Delayed scaling keeps its amax history on the host: the delayed quantize on a device executor is
// rejected with a message saying so.
// EXPECT: delayed scaling has a host path only
#include <fp8moe/scaling/delayed.hpp>

struct fake_device {};
template <>
struct fp8moe::is_device_executor<fake_device> : std::true_type {};

void f(fp8moe::matrix_view<float const> x, fp8moe::scaling::delayed_scaling& s,
       fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t> out) {
  fp8moe::scaling::quantize(fake_device{}, x, s, out);
}
