// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// moe/balance over data-parallel ranks (1, 2, 4 through mpiexec): the bias update sums the integer
// counts of every rank through the communicator, so all ranks end with the same bias, equal to the
// update computed from the global counts; plus the single-process communicator.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "fp8moe/comm/mpi_communicator.hpp"
#include "fp8moe/comm/single_communicator.hpp"
#include "fp8moe/moe/balance.hpp"

using namespace fp8moe;
namespace moe = fp8moe::moe;

namespace {
comm::mpi_environment const mpi_env;  // MPI_Init before main, MPI_Finalize after

/// Rank-dependent counts whose per-rank sign pattern differs from the global one.
std::vector<std::int32_t> counts_of(int rank, int E) {
  std::vector<std::int32_t> c(static_cast<std::size_t>(E));
  for (int e = 0; e < E; ++e)
    c[static_cast<std::size_t>(e)] =
        30000 + ((e * 7 + rank * 13) % 17) * 1000 + (rank == 0 && e == 0 ? 40000 : 0);
  return c;
}
}  // namespace

TEST_CASE("update_bias: counts summed over the communicator; every rank gets the global update") {
  comm::mpi_communicator dp;
  int const E = 16;
  std::vector<std::int64_t> global(E, 0);
  for (int r = 0; r < dp.size(); ++r) {
    auto const c = counts_of(r, E);
    for (int e = 0; e < E; ++e) global[e] += c[e];
  }
  std::vector<float> expected(E, 0.25f);
  moe::update_bias(host_executor{}, make_vector(expected.data(), E),
                   vector_view<std::int64_t const>{global.data(), E});
  auto const mine = counts_of(dp.rank(), E);
  std::vector<float> bias(E, 0.25f);
  moe::update_bias(host_executor{}, make_vector(bias.data(), E),
                   vector_view<std::int32_t const>{mine.data(), E}, {.gamma = 1e-3f}, dp);
  CHECK(bias == expected);
  // all ranks agree bit for bit
  std::vector<float> all(static_cast<std::size_t>(E * dp.size()));
  dp.allgather(std::span<float const>(bias), std::span<float>(all));
  for (int r = 0; r < dp.size(); ++r)
    for (int e = 0; e < E; ++e) CHECK(all[static_cast<std::size_t>(r * E + e)] == bias[e]);
  // counts above 2^16 per expert: the global sum exceeds bf16's exact range on 2+ ranks
  CHECK(global[0] > 65536);
}

TEST_CASE("update_bias: single-process communicator is the identity reduction") {
  comm::single_communicator one;
  std::vector<std::int32_t> const c{5, 1, 3};  // mean 3
  std::vector<float> b{0.0f, 0.0f, 0.0f};
  moe::update_bias(host_executor{}, make_vector(b.data(), 3), vector_view<std::int32_t const>{c.data(), 3},
                   {.gamma = 0.5f}, one);
  CHECK(b == std::vector<float>{-0.5f, 0.5f, 0.0f});
}
