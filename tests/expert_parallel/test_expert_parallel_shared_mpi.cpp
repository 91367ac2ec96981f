// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel dispatch / combine through node-shared memory (mpi_shared_buffer, shared_matrix,
// moe/mpi_shared_dispatch.hpp) on 1, 2 and 4 ranks: the same bits as the message-passing ops of
// dispatch.hpp (FP8 + scales and FP32 payloads, ids, weights, the handle's receive bookkeeping,
// the cached dispatch, the combine and the slot-exact combine), zero-token ranks, inputs rewritten between
// calls, and argument errors that reach every rank.
#include <doctest/doctest.h>

#include <cstring>

#include "expert_parallel_checks.hpp"
#include "fp8moe/comm/mpi_communicator.hpp"
#include "fp8moe/comm/mpi_shared_buffer.hpp"
#include "fp8moe/moe/expert_parallel/mpi_shared.hpp"
#include "fp8moe/numeric/numeric.hpp"

using namespace fp8moe;

namespace {
comm::mpi_environment const mpi_env;

/// A rank's tokens: ids over E experts (k distinct), weights, FP8 x + 1x128-like scales, FP32 x.
struct tokens {
  host_matrix<std::int32_t> ids;
  host_matrix<float> w, x32, scales;
  host_matrix<float8_e4m3_t> x8;
  tokens(std::int64_t T, int k, int E, std::int64_t H, int me, int salt)
      : ids(T, k), w(T, k), x32(T, H), scales(T, 2), x8(T, H) {
    for (std::int64_t t = 0; t < T; ++t) {
      for (int j = 0; j < k; ++j) {
        ids(t, j) = static_cast<std::int32_t>((t * 7 + j * 3 + me * 5 + salt) % E);
        if (j > 0 && (t + j + salt) % 5 == 0) ids(t, j) = -1;  // some slots not routed
        w(t, j) = 0.125f * static_cast<float>(j + 1 + salt);
      }
      for (std::int64_t h = 0; h < H; ++h) {
        x32(t, h) = test::ep_value(me, t, h) + static_cast<float>(salt);
        x8(t, h) = float8_e4m3_t(static_cast<float>((t * 13 + h * 7 + me + salt) % 31) - 15.0f);
      }
      scales(t, 0) = 0.5f * static_cast<float>(t + 1);
      scales(t, 1) = 2.0f + static_cast<float>(me + salt);
    }
  }
};

template <class T>
void put(comm::shared_matrix<T> const& m, host_matrix<T> const& src) {
  auto v = m.local();
  REQUIRE(v.rows == src.rows());
  if (v.rows > 0) std::memcpy(v.data, src.data(), static_cast<std::size_t>(v.rows * v.cols) * sizeof(T));
}

std::vector<std::uint8_t> bits(host_matrix<float8_e4m3_t> const& m) {
  std::vector<std::uint8_t> b;
  for (auto v : m.storage()) b.push_back(v.bits());
  return b;
}
}  // namespace

TEST_CASE(
    "shared-memory EP: dispatch, cached dispatch and combine equal the message-passing ops bit for bit") {
  comm::mpi_communicator c;
  host_executor exec;
  int const R = c.size(), me = c.rank(), E = 8, k = 3;
  std::int64_t const H = 40;
  // rank 1 (when there is one) has no tokens at all
  std::int64_t const T = (R > 1 && me == 1) ? 0 : 30 + 7 * me;
  auto const placement = moe::expert_placement::uniform(E, R);
  std::int64_t Tmax = 0;
  for (int r = 0; r < R; ++r) Tmax = std::max<std::int64_t>(Tmax, (R > 1 && r == 1) ? 0 : 30 + 7 * r);
  // layout of this rank's part: x8 | scales | ids | weights | x32 | partial (worst case N = R * Tmax)
  std::size_t const o_x8 = 0, o_sc = o_x8 + static_cast<std::size_t>(Tmax * H),
                    o_ids = o_sc + static_cast<std::size_t>(Tmax * 2) * 4,
                    o_w = o_ids + static_cast<std::size_t>(Tmax * k) * 4,
                    o_x32 = o_w + static_cast<std::size_t>(Tmax * k) * 4,
                    o_p = o_x32 + static_cast<std::size_t>(Tmax * H) * 4,
                    bytes = o_p + static_cast<std::size_t>(R * Tmax * H) * 4;
  comm::mpi_shared_buffer buf(c, bytes);
  comm::shared_matrix<float8_e4m3_t> sx8(buf, o_x8, T, H);
  comm::shared_matrix<float> ssc(buf, o_sc, T, 2), sw(buf, o_w, T, k), sx32(buf, o_x32, T, H);
  comm::shared_matrix<std::int32_t> sids(buf, o_ids, T, k);
  CHECK(sx8.rows(me) == T);
  CHECK(sx8.cols() == H);

  for (int salt : {0, 1}) {  // twice: inputs rewritten between the calls
    CAPTURE(salt);
    tokens tk(T, k, E, H, me, salt);
    // message-passing reference
    auto ref8h = moe::make_dispatch_handle(exec, c, placement, test::cview(tk.ids));
    std::int64_t const N = ref8h.num_recv();
    host_matrix<float8_e4m3_t> ref8x(N, H);
    host_matrix<float> ref8s(N, 2), ref8w(N, k);
    host_matrix<std::int32_t> ref8i(N, k);
    moe::dispatch_into(
        exec, c, ref8h, placement, test::cview(tk.x8), test::cview(tk.scales), test::cview(tk.ids),
        test::cview(tk.w),
        moe::dispatch_outputs<float8_e4m3_t>{ref8x.view(), ref8s.view(), ref8i.view(), ref8w.view()});
    auto ref32 =
        moe::dispatch(exec, c, placement, test::cview(tk.x32), test::cview(tk.ids), test::cview(tk.w));
    // shared memory
    put(sx8, tk.x8);
    put(ssc, tk.scales);
    put(sids, tk.ids);
    put(sw, tk.w);
    put(sx32, tk.x32);
    auto h = moe::make_dispatch_handle(exec, c, placement, test::cview(tk.ids));
    host_matrix<float8_e4m3_t> rx(N, H);
    host_matrix<float> rs(N, 2, test::poison_float()), rw(N, k, test::poison_float());
    host_matrix<std::int32_t> ri(N, k, -99);
    moe::dispatch_into(exec, h, placement, sx8, &ssc, sids, sw,
                       moe::dispatch_outputs<float8_e4m3_t>{rx.view(), rs.view(), ri.view(), rw.view()});
    CHECK(bits(rx) == bits(ref8x));
    CHECK(rs.storage() == ref8s.storage());
    CHECK(ri.storage() == ref8i.storage());
    CHECK(rw.storage() == ref8w.storage());
    CHECK(h.recv_src_token == ref8h.recv_src_token);
    CHECK(h.recv_src_rank == ref8h.recv_src_rank);
    CHECK(h.tokens_per_local_expert == ref8h.tokens_per_local_expert);

    // cached dispatch of FP32 rows into a strided view
    host_matrix<float> rx32(N, H + 3, test::poison_float());
    moe::dispatch_rows(exec, h, sx32, make_matrix(rx32.data(), N, H, H + 3));
    bool same = true;
    for (std::int64_t i = 0; i < N; ++i)
      for (std::int64_t col = 0; col < H; ++col) same = same && rx32(i, col) == ref32.x(i, col);
    CHECK(same);

    // combine of partials (N,H): FP32 and BF16 outputs equal the message-passing combine
    host_matrix<float> partial(N, H);
    for (std::int64_t i = 0; i < N; ++i)
      for (std::int64_t col = 0; col < H; ++col)
        partial(i, col) = ref32.x(i, col) * 0.75f + static_cast<float>((i + col) % 7) - 3.0f;
    comm::shared_matrix<float> sp(buf, o_p, N, H);
    put(sp, partial);
    host_matrix<float> out(T, H, test::poison_float()), out_ref(T, H, test::poison_float());
    host_matrix<bfloat16_t> out16(T, H), out16_ref(T, H);
    moe::combine(exec, h, sp, out.view());
    moe::combine(exec, c, ref32.handle, test::cview(partial), out_ref.view());
    CHECK(out.storage() == out_ref.storage());
    moe::combine(exec, h, sp, out16.view());
    moe::combine(exec, c, ref32.handle, test::cview(partial), out16_ref.view());
    bool same16 = true;
    for (std::size_t i = 0; i < out16.storage().size(); ++i)
      same16 = same16 && out16.storage()[i].bits() == out16_ref.storage()[i].bits();
    CHECK(same16);

    // slot-exact combine: the local plan's slot_row and the expert outputs y in shared memory
    moe::route_result local{ri, rw, std::vector<std::int32_t>(static_cast<std::size_t>(h.local_experts))};
    for (int l = 0; l < h.local_experts; ++l)
      local.counts[static_cast<std::size_t>(l)] =
          static_cast<std::int32_t>(h.tokens_per_local_expert[static_cast<std::size_t>(l)]);
    auto perm = moe::permute(exec, matrix_view<float const>(make_matrix(rx32.data(), N, H, H + 3)), local,
                             moe::contiguous{.m_align = 4});
    auto const& plan = perm.plan.view();
    host_matrix<float> y(plan.rows, H);
    for (std::int64_t r = 0; r < plan.rows; ++r)
      for (std::int64_t col = 0; col < H; ++col)
        y(r, col) = perm.x(r, col) * 1.5f - static_cast<float>((r * 3 + col) % 11);
    std::int64_t Mmax = plan.rows;
    MPI_Allreduce(MPI_IN_PLACE, &Mmax, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    comm::mpi_shared_buffer ybuf(
        c, static_cast<std::size_t>(Mmax * H) * 4 + static_cast<std::size_t>(R * Tmax * k) * 4);
    comm::shared_matrix<float> sy(ybuf, 0, plan.rows, H);
    comm::shared_matrix<std::int32_t> sslot(ybuf, static_cast<std::size_t>(Mmax * H) * 4, N, k);
    put(sy, y);
    if (N > 0) std::memcpy(sslot.local().data, plan.slot_row, static_cast<std::size_t>(N * k) * 4);
    host_matrix<float> os(T, H, test::poison_float()), os_ref(T, H, test::poison_float());
    moe::combine_slots(exec, h, sslot, sy, test::cview(tk.w), os.view());
    moe::combine_slots(exec, c, ref32.handle, plan, test::cview(y), test::cview(tk.w), os_ref.view());
    CHECK(os.storage() == os_ref.storage());
    host_matrix<float> ou(T, H, test::poison_float()), ou_ref(T, H, test::poison_float());  // unweighted
    moe::combine_slots(exec, h, sslot, sy, matrix_view<float const>{}, ou.view());
    moe::combine_slots(exec, c, ref32.handle, plan, test::cview(y), matrix_view<float const>{},
                       ou_ref.view());
    CHECK(ou.storage() == ou_ref.storage());
  }
}

TEST_CASE("shared-memory EP: argument errors reach every rank, nobody hangs") {
  comm::mpi_communicator c;
  host_executor exec;
  int const R = c.size(), me = c.rank(), E = 4, k = 2;
  std::int64_t const T = 12, H = 8;
  auto const placement = moe::expert_placement::uniform(E, R);
  comm::mpi_shared_buffer buf(c, 1 << 16);
  CHECK(buf.size() == R);
  CHECK(buf.rank() == me);
  CHECK(buf.local().size() >= (1u << 16));
  CHECK(buf.peer(me).data() == buf.local().data());
  CHECK_THROWS_AS((void)buf.peer(R), fp8moe::error);  // rank out of range, local check
  CHECK(buf.fence_and_agree(true));
  CHECK(buf.fence_and_agree(me != R - 1) == false);  // one rank says no: every rank learns it
  // a matrix that does not fit this rank's part: every rank throws at construction
  try {
    comm::shared_matrix<float> big(buf, me == R - 1 ? (1u << 16) - 4 : 0, 4, 4);
    FAIL("shared_matrix accepted a layout outside the buffer");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == (me == R - 1 ? errc::invalid_argument : errc::communication));
  }
  tokens tk(T, k, E, H, me, 0);
  comm::shared_matrix<float> sx(buf, 0, T, H), sw(buf, 4096, T, k);
  comm::shared_matrix<std::int32_t> sids(buf, 8192, T, k);
  put(sx, tk.x32);
  put(sw, tk.w);
  put(sids, tk.ids);
  auto h = moe::make_dispatch_handle(exec, c, placement, test::cview(tk.ids));
  std::int64_t const N = h.num_recv();
  // the cached dispatch before any forward dispatch: recv_src_token is unknown
  host_matrix<float> rx(N, H);
  // (a rank that receives nothing learns of the others' error and throws too)
  CHECK_THROWS_AS(moe::dispatch_rows(exec, h, sx, rx.view()), fp8moe::error);
  // a wrong receive view on the last rank only
  host_matrix<float> rw(N, k);
  host_matrix<std::int32_t> ri(N, k);
  host_matrix<float> bad(N + (me == R - 1 ? 1 : 0), H);
  try {
    moe::dispatch_into(exec, h, placement, sx, nullptr, sids, sw,
                       moe::dispatch_outputs<float>{bad.view(), {}, ri.view(), rw.view()});
    FAIL("dispatch_into accepted a wrong receive view");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == (me == R - 1 ? errc::invalid_argument : errc::communication));
    if (me == R - 1) CHECK(std::string(e.what()).find("out") != std::string::npos);
  }
  // the buffer is still usable: a correct call goes through, then the cached dispatch works
  moe::dispatch_into(exec, h, placement, sx, nullptr, sids, sw,
                     moe::dispatch_outputs<float>{rx.view(), {}, ri.view(), rw.view()});
  auto ref = moe::dispatch(exec, c, placement, test::cview(tk.x32), test::cview(tk.ids), test::cview(tk.w));
  CHECK(rx.storage() == ref.x.storage());
  host_matrix<float> again(N, H, test::poison_float());
  moe::dispatch_rows(exec, h, sx, again.view());
  CHECK(again.storage() == ref.x.storage());
}
