// SPDX-License-Identifier: Apache-2.0
// Installed-package consumer of the fp8moe::mpi component: an all-reduce over mpi_communicator.
#include <fp8moe/comm/mpi_communicator.hpp>
#include <fp8moe/fp8moe.hpp>

#include <array>
#include <cstdio>

int main(int argc, char** argv) {
  fp8moe::comm::mpi_environment env(&argc, &argv);
  fp8moe::comm::mpi_communicator world;
  std::array<float, 2> send{1.0f, static_cast<float>(world.rank())};
  std::array<float, 2> recv{};
  world.allreduce(std::span<float const>(send), std::span<float>(recv), fp8moe::comm::reduce_op::sum);
  int const n = world.size();
  bool const ok = recv[0] == static_cast<float>(n) && recv[1] == static_cast<float>(n * (n - 1) / 2);
  if (world.rank() == 0) std::printf("mpi consumer: %d ranks, all-reduce %s\n", n, ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
