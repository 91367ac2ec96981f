// SPDX-License-Identifier: Apache-2.0
// A module's workspace query takes the shape of one of its own ops: attention::workspace_bytes with
// mtp's sampling_shape (or any shape that is not attention's) matches no overload; it does not
// silently answer for another op.
// EXPECT: no matching function for call to
#include <fp8moe/attention/mla.hpp>
#include <fp8moe/mtp/sampling.hpp>

std::size_t f() {
  return fp8moe::attention::workspace_bytes(fp8moe::host_executor{}, fp8moe::mtp::sampling_shape{1000});
}
