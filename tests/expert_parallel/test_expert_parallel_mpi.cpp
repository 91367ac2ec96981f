// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel dispatch/combine over MPI on 1, 2 and 4 ranks: EP == single-rank MoE bit for
// bit (forward and gradients), fixed-order per-rank combine, adjoint identities, FP8/BF16 payloads,
// round trip x * sum(w), zero-token ranks, one-rank routing, uneven placement, node-limited
// routing, more than 65 536 tokens, async start/wait, run-to-run determinism, argument errors.
#include <doctest/doctest.h>

#include "expert_parallel_checks.hpp"
#include "fp8moe/comm/mpi_communicator.hpp"

using namespace fp8moe;

namespace {
comm::mpi_environment const mpi_env;

std::vector<int> all_on_rank0(int E) {
  return std::vector<int>(static_cast<std::size_t>(E), 0);
}
/// Uneven: rank 1 (if any) owns no expert; the others share E experts round-robin, rank 0 twice.
std::vector<int> uneven(int E, int R) {
  std::vector<int> r(static_cast<std::size_t>(E));
  std::vector<int> owners;
  for (int i = 0; i < R; ++i)
    if (R == 1 || i != 1) owners.push_back(i);
  owners.push_back(0);
  for (int e = 0; e < E; ++e)
    r[static_cast<std::size_t>(e)] = owners[static_cast<std::size_t>(e) % owners.size()];
  return r;
}
}  // namespace

TEST_CASE("ep over MPI: EP equals the single-rank MoE, forward and backward") {
  comm::mpi_communicator c;
  int const R = c.size();
  test::check_ep_against_single_rank(
      c, {.name = "uniform", .experts = 8, .k = 3, .hidden = 16, .tokens = {37, 50, 23, 41}});
  test::check_ep_against_single_rank(
      c, {.name = "zero tokens on the last rank, uneven placement",
          .experts = 7,
          .k = 2,
          .hidden = 8,
          .tokens = R == 1 ? std::vector<std::int64_t>{0} : std::vector<std::int64_t>{29, 0, 31, 0},
          .rank_of = uneven(7, R)});
  test::check_ep_against_single_rank(c, {.name = "all experts on rank 0",
                                         .experts = 6,
                                         .k = 4,
                                         .hidden = 8,
                                         .tokens = {19, 21, 17, 25},
                                         .rank_of = all_on_rank0(6)});
  // node-limited: groups = nodes (2 ranks per node when possible), each token on at most 1 node
  int const rpn = R >= 2 ? 2 : 1, nodes = R / rpn;
  test::check_ep_against_single_rank(c, {.name = "node-limited",
                                         .experts = 8,
                                         .k = 4,
                                         .hidden = 8,
                                         .tokens = {33, 27, 30, 12},
                                         .ranks_per_node = rpn,
                                         .groups = nodes,
                                         .topk_groups = 1});
}

TEST_CASE("ep over MPI: the worked example of docs/expert_parallel.md equals the one-rank layer") {
  comm::mpi_communicator c;
  test::check_worked_example(c);
}

TEST_CASE("ep over MPI: node-limited routing reaches at most topk_groups nodes") {
  comm::mpi_communicator c;
  int const R = c.size();
  int const rpn = R >= 2 ? 2 : 1, nodes = R / rpn, E = 8, M = nodes >= 2 ? nodes - 1 : 1;
  host_executor exec;
  auto const placement = moe::expert_placement::uniform(E, R, rpn);
  host_matrix<float> logits(64, E);
  auto lv = test::random_normal(64 * E, 1.0f, 55 + c.rank());
  std::copy(lv.begin(), lv.end(), logits.data());
  auto const r = moe::route(exec, moe::router_config{.experts = E, .groups = nodes, .topk_groups = M, .k = 4},
                            test::cview(logits));
  auto const l = moe::compute_dispatch_layout(exec, test::cview(r.ids), placement);
  std::int64_t node_sum = 0;
  for (std::int64_t t = 0; t < 64; ++t) {
    std::vector<int> hit(static_cast<std::size_t>(nodes), 0);
    for (int q = 0; q < R; ++q)
      if (l.is_token_in_rank(t, q)) hit[static_cast<std::size_t>(placement.node_of_rank(q))] = 1;
    int n = 0;
    for (int v : hit) n += v;
    CHECK(n <= M);
    node_sum += n;
  }
  std::int64_t tpn = 0;
  for (auto v : l.tokens_per_node) tpn += v;
  CHECK(tpn == node_sum);
}

TEST_CASE("ep over MPI: adjoint identities, round trip, FP8 payload, async") {
  comm::mpi_communicator c;
  test::check_ep_adjoint(c, 8, 3, 40 + 3 * c.rank(), 12);
  test::check_ep_round_trip(c, 45 + c.rank(), 256, 8, 4);
}

TEST_CASE("ep over MPI: more than 65536 tokens per rank") {
  comm::mpi_communicator c;
  test::check_ep_against_single_rank(
      c, {.name = "large", .experts = 4, .k = 2, .hidden = 4, .tokens = {66000, 65600, 65537, 70000}});
}

TEST_CASE("ep over MPI: deterministic across runs") {
  comm::mpi_communicator c;
  host_executor exec;
  int const R = c.size(), me = c.rank();
  auto const placement = moe::expert_placement::uniform(8, R);
  std::int64_t const T = 64, H = 32;
  host_matrix<std::int32_t> ids(T, 4);
  host_matrix<float> w(T, 4), x(T, H);
  auto xv = test::random_normal(static_cast<std::size_t>(T * H), 1.0f, 9 + me);
  auto wv = test::random_uniform(static_cast<std::size_t>(T * 4), 0.1f, 1.0f, 19 + me);
  std::copy(xv.begin(), xv.end(), x.data());
  std::copy(wv.begin(), wv.end(), w.data());
  for (std::int64_t t = 0; t < T; ++t)
    for (int j = 0; j < 4; ++j) ids(t, j) = static_cast<std::int32_t>((t * 3 + j * 2 + me) % 8);
  std::vector<std::vector<float>> runs;
  for (int run = 0; run < 2; ++run) {
    auto d = moe::dispatch(exec, c, placement, test::cview(x), test::cview(ids), test::cview(w));
    host_matrix<float> partial(d.handle.num_recv(), H), out(T, H, test::poison_float());
    for (std::int64_t i = 0; i < partial.rows(); ++i)
      for (std::int64_t h = 0; h < H; ++h)
        partial(i, h) = d.x(i, h) * d.weights(i, 0) + 0.1f * static_cast<float>(i % 5);
    auto p = moe::combine_start(exec, c, d.handle, test::cview(partial), out.view());
    p.wait();
    runs.push_back(out.storage());
  }
  CHECK(runs[0] == runs[1]);
}

TEST_CASE("ep over MPI: caller-owned strided views, polling") {
  comm::mpi_communicator c;
  test::check_ep_views(c);
}

TEST_CASE("ep over MPI: argument errors reach every rank") {
  comm::mpi_communicator c;
  test::check_ep_errors(c);
}

TEST_CASE("ep over MPI without row gathering: the pack path gives the same bits") {
  comm::mpi_communicator c;
  test::packing_only<comm::mpi_communicator> packing(c);
  static_assert(comm::host_communicator<decltype(packing)>);
  static_assert(!comm::row_gather_communicator<decltype(packing)>);
  test::check_ep_against_single_rank(
      packing, {.name = "uniform, packed", .experts = 8, .k = 3, .hidden = 16, .tokens = {37, 50, 23, 41}});
  test::check_ep_against_single_rank(packing, {.name = "all experts on rank 0, packed",
                                               .experts = 6,
                                               .k = 4,
                                               .hidden = 8,
                                               .tokens = {19, 0, 17, 25},
                                               .rank_of = all_on_rank0(6)});
  test::check_ep_round_trip(packing, 45 + c.rank(), 256, 8, 4);
  test::check_ep_views(packing);
}

TEST_CASE("ep over MPI with gather_rows_in_place = false: packed rows, same bits") {
  comm::mpi_communicator c;
  host_executor exec;
  int const E = 8, k = 3;
  std::int64_t const T = 40 + 3 * c.rank(), H = 24;
  auto const placement = moe::expert_placement::uniform(E, c.size());
  host_matrix<std::int32_t> ids(T, k);
  host_matrix<float> w(T, k), x(T, H);
  for (std::int64_t t = 0; t < T; ++t) {
    for (int j = 0; j < k; ++j) {
      ids(t, j) = static_cast<std::int32_t>((t * 3 + j * 5 + c.rank()) % E);
      w(t, j) = 0.25f * static_cast<float>(j + 1);
    }
    for (std::int64_t h = 0; h < H; ++h) x(t, h) = test::ep_value(c.rank(), t, h);
  }
  auto in_place = moe::dispatch(exec, c, placement, test::cview(x), test::cview(ids), test::cview(w));
  auto h = moe::make_dispatch_handle(exec, c, placement, test::cview(ids));
  h.gather_rows_in_place = false;
  std::int64_t const N = h.num_recv();
  host_matrix<float> rx(N, H, test::poison_float()), rw(N, k);
  host_matrix<std::int32_t> ri(N, k);
  moe::dispatch_into(exec, c, h, placement, test::cview(x), matrix_view<float const>{}, test::cview(ids),
                     test::cview(w), moe::dispatch_outputs<float>{rx.view(), {}, ri.view(), rw.view()});
  CHECK(rx.storage() == in_place.x.storage());
  host_matrix<float> partial(N, H), out_a(T, H, test::poison_float()), out_b(T, H, test::poison_float());
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t col = 0; col < H; ++col)
      partial(i, col) = rx(i, col) * 0.5f + static_cast<float>(i % 5);
  moe::combine(exec, c, h, test::cview(partial), out_a.view());
  moe::combine(exec, c, in_place.handle, test::cview(partial), out_b.view());
  CHECK(out_a.storage() == out_b.storage());
}
