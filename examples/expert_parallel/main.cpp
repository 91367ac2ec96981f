// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// One DeepSeek-V3-style MoE layer (router, FP8 grouped SwiGLU experts) split over the MPI ranks of
// one node by expert parallelism, through node-shared memory: every rank routes its own tokens,
// dispatches them (each token once per rank that holds one of its experts) straight out of the
// senders' memory, runs the FP8 expert block over the rows it received with its own experts, and
// sums each token's slots back in slot order (combine_slots). The result is checked bit for bit
// against the same layer on one rank with every expert; the DeepEP-style combine of per-rank
// partial sums is checked against it within FP32 reassociation. Run:
//   mpirun -np 4 build/examples/expert_parallel/expert_parallel [--tokens 512]
// Rank 0 prints one screen; exit 0 = every check passed on every rank.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../common/example_util.hpp"
#include "fp8moe/comm/mpi_communicator.hpp"
#include "fp8moe/comm/mpi_shared_buffer.hpp"
#include "fp8moe/fp8moe.hpp"
#include "fp8moe/moe/expert_parallel/mpi_shared.hpp"

namespace fm = fp8moe;
namespace moe = fp8moe::moe;
namespace fs = fp8moe::scaling;

namespace {

using fp8moe::examples::clock_type;
using fp8moe::examples::ms_since;
using fp8moe::examples::normal;
using fp8moe::examples::quantized_stack;

}  // namespace

int main(int argc, char** argv) {
  fm::comm::mpi_environment env(&argc, &argv);
  fm::comm::mpi_communicator world;
  int const R = world.size(), me = world.rank();
  std::int64_t T0 = 512;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--tokens") T0 = std::atoll(argv[i + 1]);
  std::int64_t const T = T0 + 16 * me;  // ranks hold different token counts
  constexpr std::int64_t H = 512, I = 256;
  constexpr int E = 32;
  constexpr moe::router_config rc{.experts = E,
                                  .groups = 8,
                                  .topk_groups = 4,
                                  .k = 8,
                                  .score = moe::score_function::sigmoid,
                                  .route_scale = 2.5f};
  constexpr std::int64_t k = rc.k;
  fm::host_executor exec;
  auto const placement = moe::expert_placement::uniform(E, R, R);  // one node of R ranks
  int const E_local = placement.local_experts(me);
  int first_local = 0;
  for (int r = 0; r < me; ++r) first_local += placement.local_experts(r);
  if (me == 0)
    std::printf(
        "expert_parallel: %d ranks on one node, %lld+16*rank tokens each, H=%lld, %d experts (I=%lld), "
        "top-%lld; "
        "experts %d..%d on rank 0\n",
        R, static_cast<long long>(T0), static_cast<long long>(H), E, static_cast<long long>(I),
        static_cast<long long>(k), 0, placement.local_experts(0) - 1);

  // ---- every rank: the same weights (same seeds), its own tokens
  auto const gate = normal(static_cast<std::size_t>(E * H), 0.05f, 2);
  auto const w13 = normal(static_cast<std::size_t>(E * 2 * I * H), 0.044f, 3);
  auto const w2 = normal(static_cast<std::size_t>(E * H * I), 0.0625f, 4);
  quantized_stack const q13(exec, w13, E, 2 * I, H), q2(exec, w2, E, H, I);
  auto const xf = normal(static_cast<std::size_t>(T * H), 1.0f, 100 + static_cast<std::uint64_t>(me));
  fm::host_matrix<fm::bfloat16_t> x(T, H);  // the layer input, BF16
  for (std::int64_t i = 0; i < T * H; ++i) x.data()[i] = fm::bfloat16_t(xf[static_cast<std::size_t>(i)]);
  fm::host_matrix<float> logits(T, E);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t e = 0; e < E; ++e) {
      float acc = 0;
      for (std::int64_t h = 0; h < H; ++h)
        acc += static_cast<float>(x(t, h)) * gate[static_cast<std::size_t>(e * H + h)];
      logits(t, e) = acc;
    }
  auto const route = moe::route(exec, rc, fm::matrix_view<float const>(logits.view()));

  // ---- reference: the whole layer on this rank with every expert
  moe::expert_block_config const cfg{};
  moe::expert_block_state st_ref;
  fm::host_matrix<float> out_ref(T, H);
  moe::expert_block(exec, cfg, fm::matrix_view<fm::bfloat16_t const>(x.view()),
                    fm::matrix_view<std::int32_t const>(route.ids.view()),
                    fm::matrix_view<float const>(route.weights.view()),
                    moe::expert_weights<>{q13.view(0, E), q2.view(0, E)}, moe::shared_expert_weights<>{},
                    out_ref.view(), st_ref);

  // ---- expert parallel through shared memory
  auto h = moe::make_dispatch_handle(exec, world, placement,
                                     fm::matrix_view<std::int32_t const>(route.ids.view()));
  std::int64_t const N = h.num_recv();
  std::int64_t sizes[3] = {
      T, N, static_cast<std::int64_t>(moe::plan_rows(moe::contiguous{cfg.m_align}, N, k, E_local))};
  MPI_Allreduce(MPI_IN_PLACE, sizes, 3, MPI_INT64_T, MPI_MAX, world.native());
  std::int64_t const Tmax = sizes[0], Nmax = sizes[1], Mmax = sizes[2];
  // this rank's part: x (T,H) bf16 | ids (T,k) | weights (T,k) | y (M,H) fp32 | slot_rows (N,k) | partial
  // (N,H) fp32
  std::size_t const o_ids = static_cast<std::size_t>(Tmax * H) * 2,
                    o_w = o_ids + static_cast<std::size_t>(Tmax * k) * 4,
                    o_y = o_w + static_cast<std::size_t>(Tmax * k) * 4,
                    o_slot = o_y + static_cast<std::size_t>(Mmax * H) * 4,
                    o_part = o_slot + static_cast<std::size_t>(Nmax * k) * 4,
                    bytes = o_part + static_cast<std::size_t>(Nmax * H) * 4;
  fm::comm::mpi_shared_buffer buf(world, bytes);
  fm::comm::shared_matrix<fm::bfloat16_t> sx(buf, 0, T, H);
  fm::comm::shared_matrix<std::int32_t> sids(buf, o_ids, T, k);
  fm::comm::shared_matrix<float> sw(buf, o_w, T, k);
  std::memcpy(sx.local().data, x.data(), static_cast<std::size_t>(T * H) * 2);              // in a model the
  std::memcpy(sids.local().data, route.ids.data(), static_cast<std::size_t>(T * k) * 4);    // previous op
  std::memcpy(sw.local().data, route.weights.data(), static_cast<std::size_t>(T * k) * 4);  // writes here

  MPI_Barrier(world.native());  // time the ops, not the ranks' different reference runs
  auto t0 = clock_type::now();
  fm::host_matrix<fm::bfloat16_t> rx(N, H);
  fm::host_matrix<std::int32_t> rids(N, k);
  fm::host_matrix<float> rw(N, k);
  moe::dispatch_into(exec, h, placement, sx, nullptr, sids, sw,
                     moe::dispatch_outputs<fm::bfloat16_t>{rx.view(), {}, rids.view(), rw.view()});
  double const t_dispatch = ms_since(t0);
  // the FP8 expert block over the received rows with this rank's experts (local ids, -1 elsewhere);
  // its output is the DeepEP-style partial sum of this rank's slots, and st.y / st.plan keep every
  // (row, slot) expert output for the slot-exact combine
  t0 = clock_type::now();
  moe::expert_block_state st;
  fm::host_matrix<float> partial(N, H);
  moe::expert_block(exec, cfg, fm::matrix_view<fm::bfloat16_t const>(rx.view()),
                    fm::matrix_view<std::int32_t const>(rids.view()), fm::matrix_view<float const>(rw.view()),
                    moe::expert_weights<>{q13.view(first_local, E_local), q2.view(first_local, E_local)},
                    moe::shared_expert_weights<>{}, partial.view(), st);
  double const t_experts = ms_since(t0);
  std::int64_t const M = st.y.rows;
  fm::comm::shared_matrix<float> sy(buf, o_y, M, H), spart(buf, o_part, N, H);
  fm::comm::shared_matrix<std::int32_t> sslot(buf, o_slot, N, k);
  std::memcpy(sy.local().data, st.y.data, static_cast<std::size_t>(M * H) * 4);
  if (N > 0) std::memcpy(sslot.local().data, st.plan.slot_row, static_cast<std::size_t>(N * k) * 4);
  std::memcpy(spart.local().data, partial.data(), static_cast<std::size_t>(N * H) * 4);
  MPI_Barrier(world.native());
  t0 = clock_type::now();
  fm::host_matrix<float> out(T, H), out_deepep(T, H);
  moe::combine_slots(exec, h, sslot, sy, fm::matrix_view<float const>(route.weights.view()), out.view());
  double const t_combine = ms_since(t0);
  moe::combine(exec, h, spart, out_deepep.view());

  // ---- checks
  std::int64_t mismatches = 0;
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < T * H; ++i) {
    mismatches += out.data()[i] != out_ref.data()[i];
    double const d = static_cast<double>(out_deepep.data()[i]) - out_ref.data()[i];
    num += d * d;
    den += static_cast<double>(out_ref.data()[i]) * out_ref.data()[i];
  }
  double stats[2] = {num, den}, times[3] = {t_dispatch, t_experts, t_combine};
  std::int64_t counts[3] = {mismatches, N, T};
  MPI_Allreduce(MPI_IN_PLACE, stats, 2, MPI_DOUBLE, MPI_SUM, world.native());
  MPI_Allreduce(MPI_IN_PLACE, times, 3, MPI_DOUBLE, MPI_MAX, world.native());
  MPI_Allreduce(MPI_IN_PLACE, counts, 3, MPI_INT64_T, MPI_SUM, world.native());
  double const rel = std::sqrt(stats[0] / std::max(stats[1], 1e-300));
  bool const ok = counts[0] == 0 && rel < 1e-6;
  if (me == 0) {
    std::printf(
        "  tokens %lld in all; rows received %lld (each token once per rank holding one of its experts)\n",
        static_cast<long long>(counts[2]), static_cast<long long>(counts[1]));
    std::printf("  slowest rank: dispatch %.2f ms, FP8 expert block %.2f ms, combine_slots %.2f ms\n",
                times[0], times[1], times[2]);
    std::printf("  combine_slots vs the one-rank layer: %lld of %lld values differ (bit for bit)\n",
                static_cast<long long>(counts[0]), static_cast<long long>(counts[2] * H));
    std::printf(
        "  DeepEP combine (per-rank partials, ranks ascending) vs the one-rank layer: rel L2 %.2e "
        "(FP32 reassociation)\n",
        rel);
    std::printf("expert_parallel: %s\n", ok ? "OK" : "FAILED");
  }
  return ok ? 0 : 1;
}
