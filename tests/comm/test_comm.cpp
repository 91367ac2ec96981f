// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// comm/: the communicator concept and single_communicator (size 1, host): the generic conformance
// checks, plus the self-messaging rules (tag matching, an unmatched wait throws instead of hanging).
#include <doctest/doctest.h>

#include "comm_checks.hpp"
#include "fp8moe/comm/comm.hpp"

using namespace fp8moe;

static_assert(comm::communicator<comm::single_communicator>);
static_assert(!comm::communicator<int>);
static_assert(comm::transferable<bfloat16_t> && comm::transferable<float8_e4m3_t>);
static_assert(comm::reducible<float> && !comm::reducible<bfloat16_t>);

TEST_CASE("single_communicator: conformance") {
  comm::single_communicator c;
  CHECK(c.rank() == 0);
  CHECK(c.size() == 1);
  test::check_conformance(c);
}

TEST_CASE("single_communicator: self messages match by tag in posting order") {
  comm::single_communicator c;
  std::vector<int> a{1, 2}, b{3, 4}, ra(2, -1), rb(2, -1);
  // receives posted first (separate batches), sends later in the opposite tag order
  auto r1 = c.isend_recv(std::vector<comm::p2p_op>{comm::recv_op(std::span<int>(ra), 0, 7)});
  auto r2 = c.isend_recv(std::vector<comm::p2p_op>{comm::recv_op(std::span<int>(rb), 0, 8)});
  CHECK_FALSE(r1.test());
  c.send_recv(std::vector<comm::p2p_op>{comm::send_op(std::span<int const>(b), 0, 8)});
  CHECK(r2.test());
  CHECK_FALSE(r1.test());
  c.send_recv(std::vector<comm::p2p_op>{comm::send_op(std::span<int const>(a), 0, 7)});
  r1.wait();
  r2.wait();
  CHECK(ra == a);
  CHECK(rb == b);
  // a send nobody receives: wait throws (it would never complete) rather than hang
  auto lonely = c.isend_recv(std::vector<comm::p2p_op>{comm::send_op(std::span<int const>(a), 0, 9)});
  try {
    lonely.wait();
    FAIL("unmatched wait returned");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == errc::communication);
  }
}
