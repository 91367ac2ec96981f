// SPDX-License-Identifier: Apache-2.0
// Installed-package consumer compiled by nvcc through fp8moe::cuda (C++20 must reach nvcc): the one
// umbrella header gives the host modules and every cuda_executor entry point.
#include <fp8moe/cuda.hpp>

__global__ void k(std::uint16_t* out) {
  *out = fp8moe::cuda::cvt_float2_to_fp8x2<fp8moe::e4m3_format>(1.0f, 2.0f);
}

// Instantiated only (no device here): the umbrella brings the cuda_executor overloads.
[[maybe_unused]] void quantize_on(fp8moe::cuda_executor exec, fp8moe::matrix_view<float const> x,
                                  fp8moe::scaling::quantized_matrix_view<fp8moe::float8_e4m3_t> out) {
  fp8moe::scaling::quantize(exec, x, fp8moe::scaling::deepseek_v3.activation, out);
}

int main() {
  static_assert(fp8moe::float8_e4m3_t(1.0f).bits() == 0x38);  // constexpr under nvcc
  return 0;
}
