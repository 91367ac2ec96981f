// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// comm/: mpi_communicator conformance on 1, 2 and 4 ranks (ctest runs it through mpiexec):
// all-to-all-v with zero blocks, byte types, size mismatches that throw on every rank, collectives,
// point-to-point rings, split; and MPI errors turned into fp8moe::error.
#include <doctest/doctest.h>

#include "comm_checks.hpp"
#include "fp8moe/comm/mpi_communicator.hpp"

using namespace fp8moe;

static_assert(comm::p2p_communicator<comm::mpi_communicator>);
static_assert(comm::row_gather_communicator<comm::mpi_communicator>);
static_assert(comm::host_communicator<comm::mpi_communicator>);
static_assert(!comm::stream_ordered_communicator<comm::mpi_communicator>);

namespace {
comm::mpi_environment const mpi_env;  // MPI_Init before main, MPI_Finalize after
}

TEST_CASE("mpi_communicator: conformance") {
  comm::mpi_communicator c;
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  CHECK(c.size() == world);
  test::check_conformance(c);
}

TEST_CASE("mpi_communicator: move keeps the communicator, split groups are independent") {
  comm::mpi_communicator a;
  comm::mpi_communicator b = std::move(a);
  CHECK(b.size() >= 1);
  comm::mpi_communicator self = b.split(b.rank(), 0);  // one group per rank
  CHECK(self.size() == 1);
  CHECK(self.rank() == 0);
  test::check_alltoallv(self);
}
