// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// comm/: the communicator concept family, single_communicator (size 1, host) and thread_communicator
// (threads as ranks): the generic conformance checks, the self-messaging rules (tag matching, an
// unmatched wait throws instead of hanging) and MPI matching between threads.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "comm_checks.hpp"
#include "fp8moe/comm/comm.hpp"
#include "fp8moe/comm/thread_communicator.hpp"

using namespace fp8moe;

// Which refinements each host implementation models (the table in comm/communicator.hpp).
static_assert(comm::communicator<comm::single_communicator>);
static_assert(comm::async_communicator<comm::single_communicator>);
static_assert(comm::p2p_communicator<comm::single_communicator>);
static_assert(comm::collective_communicator<comm::single_communicator>);
static_assert(comm::row_gather_communicator<comm::single_communicator>);
static_assert(comm::host_communicator<comm::single_communicator>);
static_assert(!comm::stream_ordered_communicator<comm::single_communicator>);
static_assert(comm::communicator<comm::thread_communicator>);
static_assert(comm::async_communicator<comm::thread_communicator>);
static_assert(comm::p2p_communicator<comm::thread_communicator>);
static_assert(!comm::collective_communicator<comm::thread_communicator>);
static_assert(!comm::host_communicator<comm::thread_communicator>);
static_assert(!comm::stream_ordered_communicator<comm::thread_communicator>);
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

TEST_CASE("thread_communicator: MPI matching (source, tag, order), either side first, size checks") {
  comm::thread_world world(2);
  comm::thread_communicator a(world, 0), b(world, 1);
  std::vector<int> x{1, 2, 3}, y{4, 5, 6}, r1(3, -1), r2(3, -1), r3(3, -1);
  auto s1 = a.isend(std::as_bytes(std::span<int const>(x)), 1, 0);  // send first (eager)
  auto s2 = a.isend(std::as_bytes(std::span<int const>(y)), 1, 7);
  auto q2 = b.irecv(std::as_writable_bytes(std::span<int>(r2)), 0, 7);  // tag 7 matches y
  auto q1 = b.irecv(std::as_writable_bytes(std::span<int>(r1)), 0, 0);
  q1.wait();
  q2.wait();
  s1.wait();
  s2.wait();
  CHECK(r1 == x);
  CHECK(r2 == y);
  auto q3 = b.irecv(std::as_writable_bytes(std::span<int>(r3)), 0, 0);  // receive first
  CHECK(!q3.test());
  std::thread t([&] { a.isend(std::as_bytes(std::span<int const>(y)), 1, 0); });
  q3.wait();
  t.join();
  CHECK(r3 == y);
  std::vector<int> small(2);
  a.isend(std::as_bytes(std::span<int const>(x)), 1, 3);
  CHECK_THROWS_AS(b.irecv(std::as_writable_bytes(std::span<int>(small)), 0, 3), fp8moe::error);
  CHECK_THROWS_AS(a.isend(std::as_bytes(std::span<int const>(x)), 0, 0), fp8moe::error);  // to itself
  CHECK_THROWS_AS(comm::thread_communicator(world, 2), fp8moe::error);
}

TEST_CASE("thread_communicator: ring exchange and barrier on 2..4 threads") {
  for (int n : {2, 3, 4}) {
    comm::thread_world world(n);
    std::vector<std::thread> th;
    std::atomic<int> arrived{0};
    std::vector<int> seen(static_cast<std::size_t>(n), -1);
    for (int r = 0; r < n; ++r)
      th.emplace_back([&, r] {
        comm::thread_communicator c(world, r);
        test::check_p2p_ring(c);
        ++arrived;
        c.barrier();  // nobody passes before everybody arrived
        seen[static_cast<std::size_t>(r)] = arrived.load();
        c.barrier();  // a second generation works the same
      });
    for (auto& t : th) t.join();
    for (int v : seen) CHECK(v == n);
  }
  comm::thread_world one(1);
  comm::thread_communicator c(one, 0);
  c.barrier();  // a world of one never waits
  CHECK(c.size() == 1);
}
