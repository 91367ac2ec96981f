// SPDX-License-Identifier: Apache-2.0
// Compiled WITHOUT OpenMP flags (as nvcc sources often are): its host_executor must agree with the
// OpenMP translation unit of the same program.
#include <fp8moe/core/executor.hpp>

int fp8moe_odr_threads_plain() {
  return fp8moe::host_executor{}.num_threads();
}
int fp8moe_odr_threads_plain_explicit() {
  return fp8moe::host_executor{.threads = 5}.num_threads();
}
