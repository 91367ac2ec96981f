// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// comm/: nccl_communicator. Everywhere: the concept holds, NCCL/CUDA codes become fp8moe::error
// naming the call, and without a GPU construction fails with a clear error. With a GPU (one rank:
// NCCL forbids two ranks on one device): all-to-all-v (packed and explicit blocks), size mismatch
// detected before any transfer, all-reduce, all-gather, async forms, self point-to-point (batched and
// stream-ordered), split;
// and (nvcc build) the device EP dispatch / combine against the host path on the same inputs.
#include <doctest/doctest.h>

#include <cuda_runtime_api.h>

#include <concepts>
#include <string>
#include <vector>

#include "device_memory.hpp"
#include "fp8moe/comm/nccl_communicator.hpp"
#include "fp8moe/numeric/numeric.hpp"
#if FP8MOE_CUDA_COMPILER
#include "fp8moe/comm/single_communicator.hpp"
#include "fp8moe/moe/expert_parallel/cuda/dispatch.cuh"
#endif

using namespace fp8moe;

static_assert(comm::communicator<comm::nccl_communicator>);
static_assert(comm::async_communicator<comm::nccl_communicator>);
static_assert(comm::collective_communicator<comm::nccl_communicator>);
static_assert(comm::stream_ordered_communicator<comm::nccl_communicator>);
static_assert(comm::device_communicator<comm::nccl_communicator>);
static_assert(!comm::p2p_communicator<comm::nccl_communicator>);
static_assert(!comm::row_gather_communicator<comm::nccl_communicator>);
static_assert(comm::nccl_communicator::memory == comm::memory_space::device);
static_assert(!comm::host_communicator<comm::nccl_communicator>);

TEST_CASE("nccl_communicator: error translation names the call and the ranks") {
  try {
    comm::detail::nccl_check(ncclInvalidArgument, "ncclSend", 2, 4);
    FAIL("no throw");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == errc::communication);
    std::string const w = e.what();
    CHECK(w.find("ncclSend failed on rank 2 of 4") != std::string::npos);
    CHECK(w.find(ncclGetErrorString(ncclInvalidArgument)) != std::string::npos);
  }
  CHECK_NOTHROW(comm::detail::nccl_check(ncclSuccess, "ncclSend", 0, 1));
  try {
    comm::detail::cuda_check(cudaErrorInvalidValue, "cudaMemcpyAsync", 1, 2);
    FAIL("no throw");
  } catch (fp8moe::error const& e) {
    CHECK(e.code() == errc::cuda);
    CHECK(std::string(e.what()).find("cudaMemcpyAsync failed on rank 1 of 2") != std::string::npos);
  }
}

namespace {
/// A device copy of a host vector (tests/support's device_array, built on fp8moe::device_buffer).
template <class T>
struct device_vector : test::device_array<T> {
  explicit device_vector(std::vector<T> const& h) : test::device_array<T>(h.data(), h.size()) {}
  std::vector<T> host() const { return this->get(); }
  std::span<T> span() { return {this->p, this->n}; }
  std::span<T const> cspan() const { return {this->p, this->n}; }
};
}  // namespace

TEST_CASE("nccl_communicator: single rank on one GPU") {
  if (cuda_device_count() == 0) {
    // no device: construction reports it instead of crashing inside NCCL
    try {
      (void)comm::nccl_communicator::single(nullptr);
      FAIL("constructed without a device");
    } catch (fp8moe::error const& e) {
      CHECK(e.code() == errc::unsupported);
    }
    return;
  }
  cudaStream_t stream = nullptr;
  FP8MOE_CUDA_CHECK(cudaStreamCreate(&stream));
  {
    auto c = comm::nccl_communicator::single(stream);
    CHECK(c.rank() == 0);
    CHECK(c.size() == 1);
    std::vector<float> hv(37);
    for (std::size_t i = 0; i < hv.size(); ++i) hv[i] = 0.5f * static_cast<float>(i) - 3.0f;
    device_vector<float> s(hv), r(std::vector<float>(37, -1.0f));
    std::vector<std::int64_t> n{37};
    c.alltoallv(s.cspan(), std::span<std::int64_t const>(n), r.span(), std::span<std::int64_t const>(n));
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    CHECK(r.host() == hv);
    // explicit blocks: 10 elements from offset 5 into offset 20 of a 40-element buffer
    device_vector<float> g(std::vector<float>(40, -7.0f));
    std::vector<std::int64_t> cnt{10}, sd{5}, rd{20};
    auto q = c.ialltoallv(s.cspan(), comm::blocks{cnt, sd}, g.span(), comm::blocks{cnt, rd});
    q.wait();
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    auto gh = g.host();
    for (int i = 0; i < 40; ++i)
      CHECK(gh[i] == (i >= 20 && i < 30 ? hv[static_cast<std::size_t>(i - 15)] : -7.0f));
    // mismatch: detected by the count check, nothing transferred
    std::vector<std::int64_t> three{3}, four{4};
    device_vector<float> s3(std::vector<float>(3, 1.0f)), r4(std::vector<float>(4, 9.0f));
    CHECK_THROWS_AS(c.alltoallv(s3.cspan(), std::span<std::int64_t const>(three), r4.span(),
                                std::span<std::int64_t const>(four)),
                    fp8moe::error);
    CHECK(r4.host() == std::vector<float>(4, 9.0f));
    // all-reduce, all-gather (sync and async)
    device_vector<std::int64_t> a(std::vector<std::int64_t>{5, -2}), b(std::vector<std::int64_t>{0, 0});
    c.allreduce(a.cspan(), b.span(), comm::reduce_op::max);
    auto ar = c.iallgather(a.cspan(), a.span());
    ar.wait();
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    CHECK(b.host() == std::vector<std::int64_t>{5, -2});
    // self point-to-point, BF16 payload bytes
    std::vector<bfloat16_t> hb{bfloat16_t(1.5f), bfloat16_t(-2.25f), bfloat16_t(3.0f)};
    device_vector<bfloat16_t> ps(hb), pr(std::vector<bfloat16_t>(3, bfloat16_t(0.0f)));
    std::vector<comm::p2p_op> ops{comm::send_op(ps.cspan(), 0), comm::recv_op(pr.span(), 0)};
    auto pq = c.isend_recv(ops);
    CHECK_NOTHROW(pq.test());
    pq.wait();
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    auto prh = pr.host();
    for (int i = 0; i < 3; ++i) CHECK(prh[i].bits() == hb[i].bits());
    // stream_ordered_communicator: bytes to itself on the caller's stream, in one group
    device_vector<bfloat16_t> pr2(std::vector<bfloat16_t>(3, bfloat16_t(0.0f)));
    c.group_start();
    c.send(ps.p, 3 * sizeof(bfloat16_t), 0, stream);
    c.recv(pr2.p, 3 * sizeof(bfloat16_t), 0, stream);
    c.group_end();
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    auto pr2h = pr2.host();
    for (int i = 0; i < 3; ++i) CHECK(pr2h[i].bits() == hb[i].bits());
    c.barrier();
    auto sub = c.split(0, 0);
    CHECK(sub.size() == 1);
    CHECK_THROWS_AS((void)c.split(-1, 0), fp8moe::error);
  }
  FP8MOE_CUDA_CHECK(cudaStreamDestroy(stream));
}

#if FP8MOE_CUDA_COMPILER
TEST_CASE("expert parallel over NCCL (one rank): device dispatch / combine equal the host path") {
  if (cuda_device_count() == 0) return;
  cudaStream_t stream = nullptr;
  FP8MOE_CUDA_CHECK(cudaStreamCreate(&stream));
  {
    auto c = comm::nccl_communicator::single(stream);
    cuda_executor exec{stream};
    std::int64_t const T = 300, H = 256, S = 2;
    int const E = 8, k = 3;
    auto const placement = moe::expert_placement::uniform(E, 1);
    host_matrix<std::int32_t> ids(T, k);
    host_matrix<float> w(T, k), sc(T, S);
    host_matrix<float8_e4m3_t> x(T, H);
    for (std::int64_t t = 0; t < T; ++t) {
      for (int j = 0; j < k; ++j) {
        ids(t, j) = static_cast<std::int32_t>((t * 3 + j * 5) % E);
        w(t, j) = 0.25f + 0.125f * static_cast<float>(j);
      }
      for (std::int64_t h = 0; h < H; ++h)
        x(t, h) = float8_e4m3_t(static_cast<float>((t * 7 + h) % 29) - 14.0f);
      for (std::int64_t q = 0; q < S; ++q) sc(t, q) = static_cast<float>(1 + (t + q) % 4);
    }
    // host reference on the size-1 host communicator
    comm::single_communicator hc;
    auto ref = moe::dispatch(host_executor{}, hc, placement,
                             scaling::quantized_matrix_view<float8_e4m3_t const>(
                                 matrix_view<float8_e4m3_t const>(x.view()),
                                 matrix_view<float const>(sc.view()), scaling::tile_1x128),
                             matrix_view<std::int32_t const>(ids.view()), matrix_view<float const>(w.view()));
    device_vector<std::int32_t> d_ids(ids.storage());
    device_vector<float> d_w(w.storage()), d_sc(sc.storage());
    device_vector<float8_e4m3_t> d_x(x.storage());
    auto dh = moe::make_dispatch_handle(exec, c, placement,
                                        make_matrix(static_cast<std::int32_t const*>(d_ids.p), T, k));
    std::int64_t const N = dh.host.num_recv();
    CHECK(N == ref.handle.num_recv());
    device_vector<float8_e4m3_t> rx(std::vector<float8_e4m3_t>(static_cast<std::size_t>(N * H)));
    device_vector<float> rs(std::vector<float>(static_cast<std::size_t>(N * S))),
        rw(std::vector<float>(static_cast<std::size_t>(N * k)));
    device_vector<std::int32_t> ri(std::vector<std::int32_t>(static_cast<std::size_t>(N * k)));
    moe::dispatch_into(
        exec, c, dh, placement, make_matrix(static_cast<float8_e4m3_t const*>(d_x.p), T, H),
        make_matrix(static_cast<float const*>(d_sc.p), T, S),
        make_matrix(static_cast<std::int32_t const*>(d_ids.p), T, k),
        make_matrix(static_cast<float const*>(d_w.p), T, k),
        moe::dispatch_outputs<float8_e4m3_t>{make_matrix(rx.p, N, H), make_matrix(rs.p, N, S),
                                             make_matrix(ri.p, N, k), make_matrix(rw.p, N, k)});
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    auto hx = rx.host();
    bool same = true;
    for (std::int64_t i = 0; i < N * H; ++i)
      same = same &&
             hx[static_cast<std::size_t>(i)].bits() == ref.x.storage()[static_cast<std::size_t>(i)].bits();
    CHECK(same);
    CHECK(rs.host() == ref.scales.storage());
    CHECK(rw.host() == ref.weights.storage());
    CHECK(ri.host() == ref.ids.storage());
    // the allocating dispatch: the same received rows, owned in device_matrix on exec.stream
    auto const dres =
        moe::dispatch(exec, c, placement,
                      scaling::quantized_matrix_view<float8_e4m3_t const>(
                          make_matrix(static_cast<float8_e4m3_t const*>(d_x.p), T, H),
                          make_matrix(static_cast<float const*>(d_sc.p), T, S), scaling::tile_1x128),
                      make_matrix(static_cast<std::int32_t const*>(d_ids.p), T, k),
                      make_matrix(static_cast<float const*>(d_w.p), T, k));
    static_assert(std::same_as<decltype(dres), moe::device_dispatch_result<float8_e4m3_t> const>);
    REQUIRE(dres.x.rows() == N);
    host_matrix<float8_e4m3_t> ax(N, H);
    host_matrix<float> as(N, S), aw(N, k);
    host_matrix<std::int32_t> ai(N, k);
    dres.x.copy_to_host(ax.view());
    dres.scales.copy_to_host(as.view());
    dres.weights.copy_to_host(aw.view());
    dres.ids.copy_to_host(ai.view());
    // a float payload (the weights as rows): received like the routing weights
    auto const fres = moe::dispatch(exec, c, placement, make_matrix(static_cast<float const*>(d_w.p), T, k),
                                    make_matrix(static_cast<std::int32_t const*>(d_ids.p), T, k),
                                    make_matrix(static_cast<float const*>(d_w.p), T, k));
    host_matrix<float> fx(N, k);
    fres.x.copy_to_host(fx.view());
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    same = true;
    for (std::int64_t i = 0; i < N * H; ++i)
      same = same && ax.storage()[static_cast<std::size_t>(i)].bits() ==
                         ref.x.storage()[static_cast<std::size_t>(i)].bits();
    CHECK(same);
    CHECK(as.storage() == ref.scales.storage());
    CHECK(aw.storage() == ref.weights.storage());
    CHECK(ai.storage() == ref.ids.storage());
    CHECK(fx.storage() == ref.weights.storage());
    CHECK(fres.scales.cols() == 0);
    // combine of FP32 partials: bit-identical to the host combine
    std::vector<float> part(static_cast<std::size_t>(N * H));
    for (std::size_t i = 0; i < part.size(); ++i) part[i] = static_cast<float>(i % 97) * 0.03125f - 1.5f;
    host_matrix<float> out_ref(T, H);
    moe::combine(host_executor{}, hc, ref.handle, make_matrix(static_cast<float const*>(part.data()), N, H),
                 out_ref.view());
    device_vector<float> d_part(part), d_out(std::vector<float>(static_cast<std::size_t>(T * H), -9.0f));
    moe::combine(exec, c, dh, make_matrix(static_cast<float const*>(d_part.p), N, H),
                 make_matrix(d_out.p, T, H));
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    CHECK(d_out.host() == out_ref.storage());
    // slot-exact combine: y rows in the local permute layout, weighted sum in slot order
    auto lr = moe::local_route(ref);
    host_matrix<float> xf(N, H);
    for (std::int64_t i = 0; i < N; ++i)
      for (std::int64_t h = 0; h < H; ++h) xf(i, h) = ref.x(i, h).to_float() * ref.scales(i, h / 128);
    auto lp =
        moe::permute(host_executor{}, matrix_view<float const>(xf.view()), lr, moe::contiguous{.m_align = 8});
    std::int64_t const M = lp.plan.view().rows;
    host_matrix<float> y(M, H);
    for (std::int64_t r = 0; r < M; ++r)
      for (std::int64_t h = 0; h < H; ++h) y(r, h) = lp.x(r, h) * 0.75f + static_cast<float>(r % 5);
    host_matrix<float> slots_ref(T, H);
    moe::combine_slots(host_executor{}, hc, ref.handle, lp.plan.view(), matrix_view<float const>(y.view()),
                       matrix_view<float const>(w.view()), slots_ref.view());
    device_vector<std::int32_t> d_slot_row(lp.plan.slot_row());
    device_vector<float> d_y(y.storage()),
        d_slots(std::vector<float>(static_cast<std::size_t>(T * H), -9.0f));
    moe::permute_plan dplan = lp.plan.view();
    dplan.slot_row = d_slot_row.p;  // combine_slots reads only tokens, k, rows and slot_row
    moe::combine_slots(exec, c, dh, dplan, make_matrix(static_cast<float const*>(d_y.p), M, H),
                       make_matrix(static_cast<float const*>(d_w.p), T, k), make_matrix(d_slots.p, T, H));
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
    CHECK(d_slots.host() == slots_ref.storage());
  }
  FP8MOE_CUDA_CHECK(cudaStreamDestroy(stream));
}
#endif
