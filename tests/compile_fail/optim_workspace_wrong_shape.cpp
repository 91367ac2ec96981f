// SPDX-License-Identifier: Apache-2.0
// optim::workspace_bytes answers for grad_norm_shape only: a bare tensor count (the query's form
// before it took a shape) or another module's shape does not compile.
// EXPECT: no matching function for call to
#include <cstddef>
#include <fp8moe/optim/clip.hpp>

std::size_t f() {
  return fp8moe::optim::workspace_bytes(fp8moe::host_executor{}, std::size_t{12});
}
