// SPDX-License-Identifier: Apache-2.0
// Installed-package consumer compiled by nvcc through fp8moe::cuda (C++20 must reach nvcc).
#include <fp8moe/fp8moe.hpp>
#include <fp8moe/numeric/cuda/convert.cuh>

__global__ void k(std::uint16_t* out) {
  *out = fp8moe::cuda::cvt_float2_to_fp8x2<fp8moe::e4m3_format>(1.0f, 2.0f);
}

int main() {
  static_assert(fp8moe::float8_e4m3_t(1.0f).bits() == 0x38);  // constexpr under nvcc
  return 0;
}
