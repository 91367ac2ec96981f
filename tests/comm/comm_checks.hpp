// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Communicator conformance checks, generic over any host communicator: every rank runs the same
// calls, so the expected results are computed independently from (rank, size) formulas.
// Included by the single-communicator test and the MPI test (run with 1, 2 and 4 ranks).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "fp8moe/comm/communicator.hpp"
#include "fp8moe/numeric/numeric.hpp"
#include "test_support.hpp"

namespace fp8moe::test {

/// Elements rank `src` sends to rank `dst` in the all-to-all-v checks (zero for some pairs).
inline std::int64_t a2a_count(int src, int dst) {
  return (src * 7 + dst * 3 + 1) % 5;
}
/// The value of element i of that block: exact in float (< 2^24).
inline float a2a_value(int src, int dst, std::int64_t i) {
  return static_cast<float>(src * 10000 + dst * 100 + i);
}

template <comm::host_communicator C>
void check_alltoallv(C& c) {
  int const r = c.rank(), n = c.size();
  std::vector<std::int64_t> sc(n), rc(n);
  for (int j = 0; j < n; ++j) {
    sc[j] = a2a_count(r, j);
    rc[j] = a2a_count(j, r);
  }
  std::vector<float> send,
      recv(static_cast<std::size_t>(std::accumulate(rc.begin(), rc.end(), std::int64_t{0})));
  for (int j = 0; j < n; ++j)
    for (std::int64_t i = 0; i < sc[j]; ++i) send.push_back(a2a_value(r, j, i));
  poison(recv);
  for (auto check : {comm::size_check::verify, comm::size_check::trusted}) {
    poison(recv);
    c.alltoallv(std::span<float const>(send), std::span<std::int64_t const>(sc), std::span<float>(recv),
                std::span<std::int64_t const>(rc), check);
    std::size_t at = 0;
    for (int j = 0; j < n; ++j)
      for (std::int64_t i = 0; i < rc[j]; ++i) CHECK(recv[at++] == a2a_value(j, r, i));
  }
  // asynchronous form, overlapped with unrelated host work
  poison(recv);
  auto req = c.ialltoallv(std::span<float const>(send), std::span<std::int64_t const>(sc),
                          std::span<float>(recv), std::span<std::int64_t const>(rc));
  double busy = 0;
  for (int i = 0; i < 1000; ++i) busy += i * 0.5;
  req.wait();
  CHECK(busy == 249750.0);
  std::size_t at = 0;
  for (int j = 0; j < n; ++j)
    for (std::int64_t i = 0; i < rc[j]; ++i) CHECK(recv[at++] == a2a_value(j, r, i));

  // explicit block layout: receive blocks in reverse rank order with a one-element gap after each
  {
    std::vector<std::int64_t> rd(n), sd(n);
    std::int64_t at = 0, so = 0;
    for (int j = n - 1; j >= 0; --j) {
      rd[j] = at;
      at += rc[j] + 1;
    }
    for (int j = 0; j < n; ++j) sd[j] = so, so += sc[j];
    std::vector<float> gapped(static_cast<std::size_t>(at), -7.0f);
    auto q = c.ialltoallv(std::span<float const>(send), comm::blocks{sc, sd}, std::span<float>(gapped),
                          comm::blocks{rc, rd});
    q.wait();
    for (int j = 0; j < n; ++j) {
      for (std::int64_t i = 0; i < rc[j]; ++i) CHECK(gapped[rd[j] + i] == a2a_value(j, r, i));
      CHECK(gapped[rd[j] + rc[j]] == -7.0f);  // the gap is untouched
    }
    std::vector<std::int64_t> bad = rd;
    bad[0] = at;  // block 0 would end past the buffer: local error, every rank throws
    CHECK_THROWS_AS(c.alltoallv(std::span<float const>(send), comm::blocks{sc, sd}, std::span<float>(gapped),
                                comm::blocks{rc, r == 0 && rc[0] > 0 ? bad : rd}),
                    fp8moe::error);
  }

  // byte-sized and 2-byte element types travel bit-exactly
  std::vector<bfloat16_t> sb;
  std::vector<float8_e4m3_t> s8;
  for (float v : send) {
    sb.push_back(bfloat16_t(v / 64.0f));
    s8.push_back(float8_e4m3_t(static_cast<float>(static_cast<int>(v) % 17) - 8.0f));
  }
  std::vector<bfloat16_t> rb(recv.size());
  std::vector<float8_e4m3_t> r8(recv.size());
  c.alltoallv(std::span<bfloat16_t const>(sb), std::span<std::int64_t const>(sc), std::span<bfloat16_t>(rb),
              std::span<std::int64_t const>(rc));
  c.alltoallv(std::span<float8_e4m3_t const>(s8), std::span<std::int64_t const>(sc),
              std::span<float8_e4m3_t>(r8), std::span<std::int64_t const>(rc));
  at = 0;
  for (int j = 0; j < n; ++j)
    for (std::int64_t i = 0; i < rc[j]; ++i, ++at) {
      float const v = a2a_value(j, r, i);
      CHECK(rb[at].bits() == bfloat16_t(v / 64.0f).bits());
      CHECK(r8[at].bits() == float8_e4m3_t(static_cast<float>(static_cast<int>(v) % 17) - 8.0f).bits());
    }
}

template <comm::host_communicator C>
void check_alltoallv_mismatch(C& c) {
  int const r = c.rank(), n = c.size();
  std::vector<std::int64_t> sc(n, 2), rc(n, 2);
  if (r == 0) rc[n - 1] = 3;  // rank 0 expects one element more from the last rank than it sends
  std::vector<float> send(2 * n, 1.0f), recv(static_cast<std::size_t>(2 * n + (r == 0 ? 1 : 0)));
  // every rank throws (no rank enters the transfer), with the same message naming the pair
  try {
    c.alltoallv(std::span<float const>(send), std::span<std::int64_t const>(sc), std::span<float>(recv),
                std::span<std::int64_t const>(rc));
    FAIL("alltoallv accepted mismatched counts");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == errc::communication);
    CHECK(std::string(e.what()).find("sends 2 elements to rank 0, which expects 3") != std::string::npos);
  }
  // a rank whose buffer disagrees with its own counts: it throws invalid_argument, the others
  // communication (they learn it from the count exchange)
  std::vector<float> short_recv(static_cast<std::size_t>(2 * n - (r == n - 1 ? 1 : 0)));
  std::vector<std::int64_t> ok(n, 2);
  try {
    c.alltoallv(std::span<float const>(send), std::span<std::int64_t const>(ok), std::span<float>(short_recv),
                std::span<std::int64_t const>(ok));
    FAIL("alltoallv accepted a short receive buffer");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == (r == n - 1 ? errc::invalid_argument : errc::communication));
  }
  // recv arguments still usable afterwards: a correct call succeeds
  std::vector<float> good(2 * n);
  c.alltoallv(std::span<float const>(send), std::span<std::int64_t const>(ok), std::span<float>(good),
              std::span<std::int64_t const>(ok));
  for (float v : good) CHECK(v == 1.0f);
}

/// All-to-all-v from gathered rows (row_gather_communicator): rank src sends to rank dst the rows
/// rows_for(src, dst) of its matrix x (value = src * 1e4 + row * 10 + col, exact in float), in that
/// order (repeats and reversed orders included), from a strided x; the receiver places the blocks
/// in reverse rank order with gaps. Then FP8 rows, and errors on one rank reaching every rank.
inline std::vector<std::int32_t> rows_for(int src, int dst, std::int32_t x_rows) {
  std::vector<std::int32_t> v;
  std::int32_t const n = (src * 3 + dst * 5 + 2) % 6;  // 0..5 rows, zero for some pairs
  for (std::int32_t i = 0; i < n; ++i) v.push_back((x_rows - 1 - i * (dst + 1) + 4 * x_rows) % x_rows);
  if (n > 2) v.push_back(v[1]);  // a row sent twice
  return v;
}
inline float row_value(int src, std::int32_t row, std::int64_t col) {
  return static_cast<float>(src * 10000 + row * 10 + col);
}

template <comm::row_gather_communicator C>
void check_alltoallv_rows(C& c) {
  int const r = c.rank(), n = c.size();
  std::int32_t const X = 9;
  std::int64_t const W = 3, stride = 5;  // 3 elements per row, rows 5 apart (a column slice)
  std::vector<float> x(static_cast<std::size_t>(X * stride), -1.0f);
  for (std::int32_t i = 0; i < X; ++i)
    for (std::int64_t j = 0; j < W; ++j) x[static_cast<std::size_t>(i * stride + j)] = row_value(r, i, j);
  // index blocks stored in reverse rank order (explicit row displacements)
  std::vector<std::int32_t> index;
  std::vector<std::int64_t> counts(n), displs(n), rc(n), rd(n);
  for (int j = n - 1; j >= 0; --j) {
    auto const v = rows_for(r, j, X);
    displs[j] = static_cast<std::int64_t>(index.size());
    counts[j] = static_cast<std::int64_t>(v.size());
    index.insert(index.end(), v.begin(), v.end());
  }
  std::int64_t at = 0;
  for (int j = n - 1; j >= 0; --j) {
    rc[j] = static_cast<std::int64_t>(rows_for(j, r, X).size()) * W;
    rd[j] = at;
    at += rc[j] + 1;  // one-element gap after each block
  }
  comm::gathered_rows<float> const g{x.data(), X, W, stride, index, comm::blocks{counts, displs}};
  for (auto check : {comm::size_check::verify, comm::size_check::trusted}) {
    std::vector<float> recv(static_cast<std::size_t>(at), -7.0f);
    c.ialltoallv_rows(g, std::span<float>(recv), comm::blocks{rc, rd}, check).wait();
    for (int j = 0; j < n; ++j) {
      auto const v = rows_for(j, r, X);
      for (std::size_t q = 0; q < v.size(); ++q)
        for (std::int64_t col = 0; col < W; ++col)
          CHECK(recv[static_cast<std::size_t>(rd[j] + static_cast<std::int64_t>(q) * W + col)] ==
                row_value(j, v[q], col));
      CHECK(recv[static_cast<std::size_t>(rd[j] + rc[j])] == -7.0f);  // the gap is untouched
    }
  }
  // dense rows (stride = row length): runs of adjacent rows travel as one block each
  {
    std::vector<float> xd(static_cast<std::size_t>(X * W));
    for (std::int32_t i = 0; i < X; ++i)
      for (std::int64_t j = 0; j < W; ++j) xd[static_cast<std::size_t>(i * W + j)] = row_value(r, i, j);
    auto runs_for = [&](int src, int dst) {  // e.g. 2,3,4 | 7,8 | 0: three runs, one row repeated
      std::vector<std::int32_t> v;
      std::int32_t const s0 = (src + dst) % 3;
      for (std::int32_t i = s0; i < s0 + 3; ++i) v.push_back(i);
      v.push_back(7), v.push_back(8), v.push_back(static_cast<std::int32_t>(dst % 2));
      if ((src + dst) % 2) v.push_back(8);
      return v;
    };
    std::vector<std::int32_t> idx;
    std::vector<std::int64_t> cnt(n), rcnt(n);
    std::int64_t total = 0;
    for (int j = 0; j < n; ++j) {
      auto const v = runs_for(r, j);
      idx.insert(idx.end(), v.begin(), v.end());
      cnt[j] = static_cast<std::int64_t>(v.size());
      rcnt[j] = static_cast<std::int64_t>(runs_for(j, r).size()) * W;
      total += rcnt[j];
    }
    std::vector<float> recv(static_cast<std::size_t>(total), -7.0f);
    c.ialltoallv_rows(comm::gathered_rows<float>{xd.data(), X, W, W, idx, comm::blocks{cnt, {}}},
                      std::span<float>(recv), comm::blocks{rcnt, {}})
        .wait();
    std::size_t q = 0;
    for (int j = 0; j < n; ++j)
      for (std::int32_t row : runs_for(j, r))
        for (std::int64_t col = 0; col < W; ++col, ++q) CHECK(recv[q] == row_value(j, row, col));
  }
  // FP8 rows, packed blocks on both sides, travel bit-exactly
  {
    std::vector<float8_e4m3_t> x8(x.size());
    for (std::size_t i = 0; i < x.size(); ++i)
      x8[i] = float8_e4m3_t(static_cast<float>(static_cast<int>(x[i]) % 29) - 14.0f);
    std::vector<std::int32_t> idx;
    std::vector<std::int64_t> cnt(n), rcnt(n);
    std::int64_t total = 0;
    for (int j = 0; j < n; ++j) {
      auto const v = rows_for(r, j, X);
      idx.insert(idx.end(), v.begin(), v.end());
      cnt[j] = static_cast<std::int64_t>(v.size());
      rcnt[j] = static_cast<std::int64_t>(rows_for(j, r, X).size()) * W;
      total += rcnt[j];
    }
    std::vector<float8_e4m3_t> recv(static_cast<std::size_t>(total));
    c.ialltoallv_rows(comm::gathered_rows<float8_e4m3_t>{x8.data(), X, W, stride, idx, comm::blocks{cnt, {}}},
                      std::span<float8_e4m3_t>(recv), comm::blocks{rcnt, {}})
        .wait();
    std::size_t q = 0;
    for (int j = 0; j < n; ++j)
      for (std::int32_t row : rows_for(j, r, X))
        for (std::int64_t col = 0; col < W; ++col, ++q)
          CHECK(recv[q].bits() ==
                float8_e4m3_t(static_cast<float>(static_cast<int>(row_value(j, row, col)) % 29) - 14.0f)
                    .bits());
  }
  // an index outside x on the last rank only: it throws invalid_argument, every other rank
  // communication, before any transfer; then a count mismatch throws communication everywhere
  {
    std::vector<std::int32_t> bad = index;
    REQUIRE((r != n - 1 || counts[n - 1] > 0));  // index[0] is in the block the last rank sends itself
    if (r == n - 1) bad[0] = X;
    std::vector<float> recv(static_cast<std::size_t>(at));
    try {
      c.ialltoallv_rows(comm::gathered_rows<float>{x.data(), X, W, stride, bad, comm::blocks{counts, displs}},
                        std::span<float>(recv), comm::blocks{rc, rd})
          .wait();
      FAIL("alltoallv_rows accepted a row index outside x");
    } catch (fp8moe::error const& e) {
      CHECK(e.code() == (r == n - 1 ? errc::invalid_argument : errc::communication));
    }
    std::vector<std::int64_t> more = rc;
    more[0] += W;  // this rank expects one row more from rank 0 than rank 0 sends
    std::vector<float> bigger(static_cast<std::size_t>(at + W));
    try {
      c.ialltoallv_rows(g, std::span<float>(bigger), comm::blocks{r == 0 ? more : rc, rd}).wait();
      FAIL("alltoallv_rows accepted mismatched counts");
    } catch (fp8moe::error const& e) {
      CHECK(e.code() == errc::communication);
      CHECK(std::string(e.what()).find("which expects") != std::string::npos);
    }
  }
}

template <comm::host_communicator C>
void check_collectives(C& c) {
  int const r = c.rank(), n = c.size();
  // all-gather of (rank, rank^2)
  std::vector<std::int64_t> mine{r, r * r}, all(2 * n, -1);
  c.allgather(std::span<std::int64_t const>(mine), std::span<std::int64_t>(all));
  for (int j = 0; j < n; ++j) {
    CHECK(all[2 * j] == j);
    CHECK(all[2 * j + 1] == j * j);
  }
  // all-reduce: sum of (rank + 1) = n(n+1)/2; max and min; float sum of exact small integers
  std::vector<std::int64_t> v{r + 1, r + 1, r + 1}, s(3);
  c.allreduce(std::span<std::int64_t const>(v.data(), 1), std::span<std::int64_t>(s.data(), 1),
              comm::reduce_op::sum);
  c.allreduce(std::span<std::int64_t const>(v.data() + 1, 1), std::span<std::int64_t>(s.data() + 1, 1),
              comm::reduce_op::max);
  c.allreduce(std::span<std::int64_t const>(v.data() + 2, 1), std::span<std::int64_t>(s.data() + 2, 1),
              comm::reduce_op::min);
  CHECK(s[0] == n * (n + 1) / 2);
  CHECK(s[1] == n);
  CHECK(s[2] == 1);
  std::vector<float> f{0.5f * static_cast<float>(r), 1.0f}, fs(2, poison_float());
  auto req = c.iallreduce(std::span<float const>(f), std::span<float>(fs), comm::reduce_op::sum);
  req.wait();
  CHECK(fs[0] == 0.25f * static_cast<float>(n * (n - 1)));
  CHECK(fs[1] == static_cast<float>(n));
  // in place
  std::vector<double> d{1.0 + r};
  c.allreduce(std::span<double const>(d), std::span<double>(d), comm::reduce_op::prod);
  double fact = 1;
  for (int j = 1; j <= n; ++j) fact *= j;
  CHECK(d[0] == fact);
  // asynchronous all-gather
  std::vector<float> g(n, poison_float());
  float const mv = static_cast<float>(3 * r);
  auto gq = c.iallgather(std::span<float const>(&mv, 1), std::span<float>(g));
  CHECK_NOTHROW(gq.test());
  gq.wait();
  for (int j = 0; j < n; ++j) CHECK(g[j] == static_cast<float>(3 * j));
  // equal-block all-to-all: block j of rank r = {r, j}
  std::vector<std::int32_t> as(2 * n), ar(2 * n, -1);
  for (int j = 0; j < n; ++j) {
    as[2 * j] = r;
    as[2 * j + 1] = j;
  }
  c.alltoall(std::span<std::int32_t const>(as), std::span<std::int32_t>(ar));
  for (int j = 0; j < n; ++j) {
    CHECK(ar[2 * j] == j);
    CHECK(ar[2 * j + 1] == r);
  }
  c.barrier();
  // ranks disagreeing on an all-reduce length: all throw, nobody hangs
  std::vector<std::int64_t> odd(r == 0 ? 2 : 1, 1), odd_out(odd.size());
  if (n > 1) {
    CHECK_THROWS_AS(c.allreduce(std::span<std::int64_t const>(odd), std::span<std::int64_t>(odd_out),
                                comm::reduce_op::sum),
                    fp8moe::error);
  }
  // a local shape error is reported on every rank
  std::vector<float> small(n > 1 && r == 1 ? 0 : n);
  if (n > 1) {
    CHECK_THROWS_AS(c.allgather(std::span<float const>(&mv, 1), std::span<float>(small)), fp8moe::error);
  } else {
    std::vector<float> wrong(2);
    CHECK_THROWS_AS(c.allgather(std::span<float const>(&mv, 1), std::span<float>(wrong)), fp8moe::error);
  }
}

template <comm::host_communicator C>
void check_point_to_point(C& c) {
  int const r = c.rank(), n = c.size();
  int const next = (r + 1) % n, prev = (r + n - 1) % n;
  // ring: two messages with different tags, posted in one batch with the receives
  std::vector<float> a(5), b(3), ra(5, poison_float()), rb(3, poison_float());
  for (int i = 0; i < 5; ++i) a[i] = static_cast<float>(100 * r + i);
  for (int i = 0; i < 3; ++i) b[i] = static_cast<float>(-100 * r - i);
  std::vector<comm::p2p_op> ops{
      comm::send_op(std::span<float const>(a), next, 1), comm::send_op(std::span<float const>(b), next, 2),
      comm::recv_op(std::span<float>(rb), prev, 2), comm::recv_op(std::span<float>(ra), prev, 1)};
  auto req = c.isend_recv(ops);
  while (!req.test()) {
  }  // polling to completion runs the receive-size checks; a later wait() is a no-op
  req.wait();
  for (int i = 0; i < 5; ++i) CHECK(ra[i] == static_cast<float>(100 * prev + i));
  for (int i = 0; i < 3; ++i) CHECK(rb[i] == static_cast<float>(-100 * prev - i));
  // blocking form, zero-byte message
  std::vector<comm::p2p_op> empty_ops{comm::send_op(std::span<float const>(), next, 3),
                                      comm::recv_op(std::span<float>(), prev, 3)};
  CHECK_NOTHROW(c.send_recv(empty_ops));
  // a receive expecting more bytes than were sent is an error naming the ranks, not a silent short read
  std::vector<float> big(6);
  std::vector<comm::p2p_op> bad{comm::send_op(std::span<float const>(a), next, 4),
                                comm::recv_op(std::span<float>(big), prev, 4)};
  try {
    c.send_recv(bad);
    FAIL("short message accepted");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == errc::communication);
    CHECK(std::string(e.what()).find("rank") != std::string::npos);
  }
  CHECK_THROWS_AS(c.isend_recv(std::vector<comm::p2p_op>{comm::send_op(std::span<float const>(a), n, 0)}),
                  fp8moe::error);
}

template <comm::host_communicator C>
void check_split(C& c) {
  int const r = c.rank(), n = c.size();
  // even/odd groups, reversed order inside each group (key = -rank)
  C sub = c.split(r % 2, -r);
  int const expect_size = (n - (r % 2) + 1) / 2;
  CHECK(sub.size() == expect_size);
  CHECK(sub.rank() == expect_size - 1 - r / 2);
  std::int64_t one = r, sum = 0;
  sub.allreduce(std::span<std::int64_t const>(&one, 1), std::span<std::int64_t>(&sum, 1),
                comm::reduce_op::sum);
  std::int64_t expect = 0;
  for (int j = r % 2; j < n; j += 2) expect += j;
  CHECK(sum == expect);
  CHECK_THROWS_AS((void)c.split(-1, 0), fp8moe::error);
}

/// p2p_communicator: a ring (to rank + 1, from rank - 1, possibly itself) of messages whose size
/// and contents depend on the sender; even ranks post the receive first, odd ranks the send. A
/// default request is complete; a completed request tests true; then a barrier.
template <comm::p2p_communicator C>
void check_p2p_ring(C& c) {
  int const r = c.rank(), n = c.size(), to = (r + 1) % n, from = (r + n - 1) % n;
  std::vector<std::int32_t> send(static_cast<std::size_t>(5 + r)), recv(static_cast<std::size_t>(5 + from));
  for (std::size_t i = 0; i < send.size(); ++i) send[i] = r * 100 + static_cast<std::int32_t>(i);
  poison(recv);
  typename C::request none;
  CHECK(none.test());
  none.wait();
  typename C::request s, q;
  auto post_recv = [&] { q = c.irecv(std::as_writable_bytes(std::span<std::int32_t>(recv)), from, 5); };
  auto post_send = [&] { s = c.isend(std::as_bytes(std::span<std::int32_t const>(send)), to, 5); };
  if (r % 2 == 0)
    post_recv(), post_send();
  else
    post_send(), post_recv();
  q.wait();
  s.wait();
  CHECK(q.test());
  for (std::size_t i = 0; i < recv.size(); ++i) CHECK(recv[i] == from * 100 + static_cast<std::int32_t>(i));
  c.barrier();
}

/// Every check above, in order: the conformance suite a host communicator must pass.
template <comm::host_communicator C>
void check_conformance(C& c) {
  check_alltoallv(c);
  check_alltoallv_mismatch(c);
  if constexpr (comm::row_gather_communicator<C>) check_alltoallv_rows(c);
  check_collectives(c);
  check_point_to_point(c);
  if constexpr (comm::p2p_communicator<C>) check_p2p_ring(c);
  check_split(c);
}

}  // namespace fp8moe::test
