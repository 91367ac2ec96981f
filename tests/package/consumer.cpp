// SPDX-License-Identifier: Apache-2.0
// Installed-package consumer: includes the umbrella header and uses a few types.
#include <fp8moe/fp8moe.hpp>

#include <cstdio>

int main() {
  fp8moe::float8_e4m3_t x(1.0f);
  std::printf("fp8moe %d: e4m3(1.0) = 0x%02x\n", fp8moe::version, x.bits());
  return x.bits() == 0x38 ? 0 : 1;
}
