// SPDX-License-Identifier: Apache-2.0
// Installed-package consumer of the fp8moe::mpi component (compile and link only).
#include <mpi.h>

#include <fp8moe/fp8moe.hpp>

int main(int argc, char** argv) {
  (void)argc;
  (void)argv;
  return fp8moe::float8_e5m2_t(2.0f).bits() == 0x40 ? 0 : 1;
}
