// SPDX-License-Identifier: Apache-2.0
// One program, translation units built with and without OpenMP: host_executor::num_threads() is the
// same inline code in each (a weak reference to the OpenMP runtime, not `_OPENMP`), so every unit
// sees the runtime's thread count, whichever definition the linker keeps.
#include <fp8moe/core/executor.hpp>

#include <omp.h>

#include <cstdio>

int fp8moe_odr_threads_plain();
int fp8moe_odr_threads_plain_explicit();
#ifdef FP8MOE_ODR_CUDA
int fp8moe_odr_threads_cuda();
int fp8moe_odr_threads_cuda_explicit();
#endif

int main() {
  int const want = omp_get_max_threads();
  int fails = 0;
  auto check = [&](char const* what, int got, int expect) {
    std::printf("%-28s %d (expected %d)\n", what, got, expect);
    fails += got != expect;
  };
  check("openmp unit", fp8moe::host_executor{}.num_threads(), want);
  check("plain unit", fp8moe_odr_threads_plain(), want);
  check("plain unit, threads = 5", fp8moe_odr_threads_plain_explicit(), 5);
#ifdef FP8MOE_ODR_CUDA
  check("nvcc unit", fp8moe_odr_threads_cuda(), want);
  check("nvcc unit, threads = 5", fp8moe_odr_threads_cuda_explicit(), 5);
#endif
  if (want != 3) {
    std::printf("run with OMP_NUM_THREADS=3 (got %d): the check needs a count other than the default\n",
                want);
    ++fails;
  }
  std::printf(fails == 0 ? "host_executor agrees across translation units\n" : "MISMATCH\n");
  return fails == 0 ? 0 : 1;
}
