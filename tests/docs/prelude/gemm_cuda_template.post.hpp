// SPDX-License-Identifier: Apache-2.0
// After docs/gemm_cuda.md's template: its host instantiation.
#pragma once
template void moe_expert_gemms<fp8moe::host_executor>(fp8moe::host_executor const&,
                                                      fg::quantized_matrix_view<e4m3 const>,
                                                      fg::quantized_matrix_view<e4m3 const>,
                                                      fp8moe::matrix_view<bf16>,
                                                      fg::grouped_contiguous<e4m3, e4m3, bf16> const&,
                                                      fg::grouped_masked<e4m3, e4m3, bf16> const&,
                                                      fg::k_grouped<e4m3, e4m3> const&);
