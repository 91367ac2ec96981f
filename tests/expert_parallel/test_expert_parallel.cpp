// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel layer without MPI: placements, the dispatch layout against a brute-force count
// (DeepEP's layout test), and the full EP checks on single_communicator (EP size 1).
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "expert_parallel_checks.hpp"
#include "fp8moe/comm/single_communicator.hpp"
#include "fp8moe/moe/expert_parallel/layout.hpp"

using namespace fp8moe;

TEST_CASE("expert_placement: uniform, uneven, explicit") {
  auto const u = moe::expert_placement::uniform(10, 4, 2);
  CHECK(u.nodes() == 2);
  std::vector<int> owned{3, 3, 2, 2};
  for (int r = 0; r < 4; ++r) CHECK(u.local_experts(r) == owned[static_cast<std::size_t>(r)]);
  CHECK(u.rank_of(0) == 0);
  CHECK(u.rank_of(3) == 1);
  CHECK(u.rank_of(9) == 3);
  CHECK(u.local_of(7) == 1);
  CHECK(u.global_id(2, 1) == 7);
  CHECK(u.node_of_rank(3) == 1);
  auto const x = moe::expert_placement::explicit_placement({2, 0, 2, 2}, 3);
  CHECK(x.local_experts(1) == 0);
  CHECK(x.local_of(3) == 2);
  CHECK(x.global_id(2, 1) == 2);
  CHECK(x.global_id(1, 0) == -1);
  CHECK_THROWS_AS(moe::expert_placement::uniform(0, 2), fp8moe::error);
  CHECK_THROWS_AS(moe::expert_placement::uniform(4, 0), fp8moe::error);
  CHECK_THROWS_AS(moe::expert_placement::explicit_placement({}, 2), fp8moe::error);
  CHECK_THROWS_AS(moe::expert_placement::explicit_placement({0, -1}, 2), fp8moe::error);
  try {
    moe::expert_placement::explicit_placement({0, 1, 2}, 2);
    FAIL("rank 2 of 2 accepted");
  } catch (fp8moe::error const& e) {
    CHECK(std::string(e.what()).find("rank_of[2] = 2") != std::string::npos);
  }
  CHECK_THROWS_AS(moe::expert_placement::explicit_placement({0, 1}, 2, 3), fp8moe::error);
}

TEST_CASE("compute_dispatch_layout equals a brute-force count") {
  host_executor exec;
  int const E = 12, R = 6, k = 4;
  std::int64_t const T = 300;
  auto const pl = moe::expert_placement::uniform(E, R, 3);
  host_matrix<std::int32_t> ids(T, k);
  std::mt19937_64 g(7);
  for (std::int64_t t = 0; t < T; ++t)
    for (int j = 0; j < k; ++j) ids(t, j) = (t % 17 == 0 && j == 1) ? -1 : static_cast<std::int32_t>(g() % E);
  moe::dispatch_layout l;
  l.tokens_per_rank.assign(3, 99);  // stale content is overwritten
  moe::compute_dispatch_layout(exec, test::cview(ids), pl, l);
  for (int r = 0; r < R; ++r) {
    std::int64_t tok = 0, slots = 0;
    for (std::int64_t t = 0; t < T; ++t) {
      bool in = false;
      for (int j = 0; j < k; ++j)
        if (ids(t, j) >= 0 && pl.rank_of(ids(t, j)) == r) in = true, ++slots;
      CHECK(l.is_token_in_rank(t, r) == (in ? 1 : 0));
      tok += in;
    }
    CHECK(l.tokens_per_rank[static_cast<std::size_t>(r)] == tok);
    CHECK(l.slots_per_rank[static_cast<std::size_t>(r)] == slots);
  }
  for (int e = 0; e < E; ++e) {
    std::int64_t n = 0;
    for (std::int64_t t = 0; t < T; ++t)
      for (int j = 0; j < k; ++j) n += ids(t, j) == e;
    CHECK(l.tokens_per_expert[static_cast<std::size_t>(e)] == n);
  }
  for (int nd = 0; nd < 2; ++nd) {
    std::int64_t n = 0;
    for (std::int64_t t = 0; t < T; ++t) {
      bool in = false;
      for (int j = 0; j < k; ++j)
        if (ids(t, j) >= 0 && pl.rank_of(ids(t, j)) / 3 == nd) in = true;
      n += in;
    }
    CHECK(l.tokens_per_node[static_cast<std::size_t>(nd)] == n);
  }
  ids(5, 2) = E;
  CHECK_THROWS_AS(moe::compute_dispatch_layout(exec, test::cview(ids), pl, l), fp8moe::error);
  ids(5, 2) = -2;
  CHECK_THROWS_AS(moe::compute_dispatch_layout(exec, test::cview(ids), pl, l), fp8moe::error);
  // the message (formatted only on failure) names the offending id and the valid range
  std::string msg;
  try {
    moe::compute_dispatch_layout(exec, test::cview(ids), pl, l);
  } catch (fp8moe::error const& e) {
    msg = e.what();
  }
  CHECK(msg.find("ids(5, 2) = -2") != std::string::npos);
  CHECK(msg.find("values in [-1, E = " + std::to_string(E) + ")") != std::string::npos);
}

TEST_CASE("ep on single_communicator: EP size 1 equals the single-rank MoE") {
  comm::single_communicator c;
  test::check_ep_against_single_rank(c,
                                     {.name = "single", .experts = 8, .k = 3, .hidden = 16, .tokens = {53}});
  test::check_ep_against_single_rank(
      c, {.name = "single, zero tokens", .experts = 4, .k = 2, .hidden = 8, .tokens = {0}});
  test::check_ep_adjoint(c, 8, 3, 40, 12);
  test::check_ep_round_trip(c, 45, 256, 8, 4);
  test::check_ep_errors(c);
  test::check_ep_views(c);
}

TEST_CASE("the worked example of docs/expert_parallel.md on single_communicator equals the one-rank layer") {
  comm::single_communicator c;
  test::check_worked_example(c);
}

TEST_CASE("buffer_pool: leases reuse free buffers, grow on demand, never share a busy one") {
  auto pool = std::make_shared<moe::buffer_pool>();
  std::byte* first = nullptr;
  {
    auto a = moe::buffer_pool::acquire(pool, 1000);
    first = a.data();
    REQUIRE(first != nullptr);
    auto b = moe::buffer_pool::acquire(pool, 10);  // a is busy: a second buffer
    CHECK(b.data() != first);
    CHECK(pool->buffers() == 2);
  }
  auto c = moe::buffer_pool::acquire(pool, 500);  // both free again: the smallest that fits (1000)
  CHECK(c.data() == first);
  auto d = moe::buffer_pool::acquire(pool, 4096);  // the free 10-byte one grows
  CHECK(pool->buffers() == 2);
  auto moved = std::move(d);
  CHECK(moved.data() != nullptr);
  CHECK(d.data() == nullptr);
  auto e = moe::buffer_pool::acquire(pool, 1);  // none free: a third buffer
  CHECK(pool->buffers() == 3);
  // handles share their thread's pool unless given another
  moe::dispatch_handle h1, h2;
  CHECK(h1.pool == h2.pool);
  CHECK(h1.pool == moe::dispatch_handle::thread_pool());
}

TEST_CASE("buffer_pool: one pool leased from several threads at once never hands a buffer to two") {
  // Run under TSan by scripts/test.sh: without the pool's lock this is a data race on its slots
  // (and, here, two threads may lease the same buffer and see each other's bytes).
  auto pool = std::make_shared<moe::buffer_pool>();
  constexpr int threads = 4, rounds = 2000;
  std::atomic<int> overlaps{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < rounds; ++i) {
        std::size_t const n = 64 + static_cast<std::size_t>((i * 37 + t * 101) % 4096);  // grows some buffers
        auto a = moe::buffer_pool::acquire(pool, n);
        auto b = moe::buffer_pool::acquire(pool, n / 2 + 1);
        std::memset(a.data(), t + 1, n);
        std::memset(b.data(), t + 101, n / 2 + 1);
        std::this_thread::yield();
        for (std::size_t j = 0; j < n; ++j)
          if (a.data()[j] != std::byte(t + 1) || (j <= n / 2 && b.data()[j] != std::byte(t + 101))) {
            overlaps.fetch_add(1);
            break;
          }
      }
    });
  for (auto& th : ts) th.join();
  CHECK(overlaps.load() == 0);
  CHECK(pool->buffers() >= 2);
  CHECK(pool->buffers() <= 2 * threads);  // at most two leases per thread are ever held at once
}
