// SPDX-License-Identifier: Apache-2.0
// The first parameter of every expert-parallel entry point is constrained by the `executor`
// concept: a value that is neither host_executor nor a registered device executor (here a
// stream-like int) is rejected at the call, with the concept named in the diagnostic.
// EXPECT: [with Exec = int]
#include <fp8moe/comm/single_communicator.hpp>
#include <fp8moe/moe/expert_parallel/dispatch.hpp>

void f(fp8moe::moe::dispatch_handle const& h, fp8moe::matrix_view<float const> x,
       fp8moe::matrix_view<float> recv) {
  fp8moe::comm::single_communicator comm;
  fp8moe::moe::dispatch_rows(0, comm, h, x, recv);
}
