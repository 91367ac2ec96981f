// SPDX-License-Identifier: Apache-2.0
// Instantiates the README's taste template on the host executor (a template that is never
// instantiated is only parsed). tests/docs/test_taste.cpp runs it on both executors.
[[maybe_unused]] static auto fp8moe_snippet_taste_on_host(fp8moe::matrix_view<fp8moe::bfloat16_t const> x,
                                                          fp8moe::matrix_view<float const> w,
                                                          fp8moe::matrix_view<float> y,
                                                          fp8moe::matrix_view<float const> logits,
                                                          fp8moe::vector_view<float const> bias) {
  return taste(fp8moe::host_executor{}, x, w, y, logits, bias);
}
