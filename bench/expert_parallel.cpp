// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Expert-parallel dispatch / combine over MPI against a raw MPI_Alltoallv of the same bytes (same
// counts, pre-packed buffers), interleaved in the same run; FP8 (+1x128 scales) vs BF16 payloads.
// Every rank runs the same fixed iteration counts; each op's time is its slowest rank's. Only rank
// 0 reports. Run:  OMP_NUM_THREADS=1 mpirun -np 2 -x OMP_NUM_THREADS build/bench/bench_expert_parallel  (and
// -np 4)
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "fp8moe/comm/mpi_communicator.hpp"
#include "fp8moe/comm/mpi_shared_buffer.hpp"
#include "fp8moe/moe/expert_parallel/expert_parallel.hpp"
#include "fp8moe/moe/expert_parallel/mpi_shared.hpp"
#include "fp8moe/numeric/numeric.hpp"

namespace fm = fp8moe;
namespace moe = fp8moe::moe;

namespace {

constexpr std::int64_t kTokens = 1024;  // per rank
constexpr std::int64_t kHidden = 7168;  // DeepSeek-V3
constexpr int kExperts = 64, kTopk = 8;
constexpr int kIterations = 40;

fm::comm::mpi_communicator* world = nullptr;
std::map<std::string, double> median_s;  // median time per op, by name (for the summary)

double slowest_rank(double dt) {
  double worst = 0;
  MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}
double minimum(std::vector<double> const& v) {
  return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
}

/// Each iteration times the raw MPI_Alltoallv baseline and then our op, each between barriers.
/// Interleaving exposes both to the same machine noise; the ratios use medians (x_raw) and minima
/// (x_raw_min) over the iterations. The manual time Google Benchmark reports is our op's.
template <class Raw, class Mine>
void compare(benchmark::State& st, std::string const& name, std::int64_t bytes, Raw&& raw, Mine&& mine) {
  std::vector<double> tr, tm;
  for (auto _ : st) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    raw();
    tr.push_back(slowest_rank(MPI_Wtime() - t0));
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    mine();
    tm.push_back(slowest_rank(MPI_Wtime() - t0));
    st.SetIterationTime(tm.back());
  }
  median_s[name] = median(tm);
  median_s[name + "/raw"] = median(tr);
  st.counters["ranks"] = world->size();
  st.counters["ms_median"] = 1e3 * median(tm);
  st.counters["raw_ms_median"] = 1e3 * median(tr);
  st.counters["x_raw"] = median(tr) / median(tm);        // goal >= 0.9
  st.counters["x_raw_min"] = minimum(tr) / minimum(tm);  // best case of each
  st.counters["GB_per_s"] = static_cast<double>(bytes) / median(tm) * 1e-9;
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * bytes);
}

/// Uniform random top-k routing (distinct experts), the same statistics on every rank.
struct problem {
  fm::host_matrix<std::int32_t> ids{kTokens, kTopk};  // (T,k)
  fm::host_matrix<float> weights{kTokens, kTopk};     // (T,k)
  fm::host_matrix<fm::float8_e4m3_t> x8{kTokens, kHidden};
  fm::host_matrix<float> scales{kTokens, kHidden / 128};
  fm::host_matrix<fm::bfloat16_t> x16{kTokens, kHidden};
  moe::expert_placement placement;
  problem() {
    int const me = world->rank();
    placement = moe::expert_placement::uniform(kExperts, world->size());
    std::mt19937_64 g(100 + static_cast<std::uint64_t>(me));
    std::vector<int> perm(kExperts);
    for (std::int64_t t = 0; t < kTokens; ++t) {
      for (int e = 0; e < kExperts; ++e) perm[static_cast<std::size_t>(e)] = e;
      for (int j = 0; j < kTopk; ++j) {
        std::swap(perm[static_cast<std::size_t>(j)],
                  perm[static_cast<std::size_t>(j + static_cast<int>(g() % (kExperts - j)))]);
        ids(t, j) = perm[static_cast<std::size_t>(j)];
        weights(t, j) = 0.125f;
      }
    }
    for (std::int64_t i = 0; i < kTokens * kHidden; ++i) {
      x8.data()[i] = fm::float8_e4m3_t(static_cast<float>(i % 97) / 8.0f - 6.0f);
      x16.data()[i] = fm::bfloat16_t(static_cast<float>(i % 89) / 8.0f - 5.0f);
    }
    for (auto& s : scales.storage()) s = 0.5f;
  }
};
problem* prob = nullptr;

/// Bytes one dispatched row carries: payload + scales + FP32 weights + int32 local ids + source index.
std::int64_t row_bytes(bool fp8) {
  return (fp8 ? kHidden + 4 * (kHidden / 128) : 2 * kHidden) + 4 * kTopk + 4 * (kTopk + 1);
}

moe::dispatch_handle handle() {
  return moe::make_dispatch_handle(fm::host_executor{}, *world, prob->placement,
                                   fm::matrix_view<std::int32_t const>(prob->ids.view()));
}
auto ids_view() {
  return fm::matrix_view<std::int32_t const>(prob->ids.view());
}
auto weights_view() {
  return fm::matrix_view<float const>(prob->weights.view());
}

/// Raw MPI_Alltoallv of `bytes_per_row` x the handle's row counts (reverse: the combine
/// direction), from and into pre-packed buffers.
struct raw_alltoallv {
  std::vector<int> sc, sd, rc, rd;
  std::vector<std::byte> send, recv;
  std::int64_t sent = 0;
  /// slots: rows per (token, slot) instead of per token (the slot-exact combine's traffic).
  raw_alltoallv(moe::dispatch_handle const& h, std::int64_t bytes_per_row, bool reverse, bool slots = false) {
    int const R = world->size();
    sc.resize(R), sd.resize(R), rc.resize(R), rd.resize(R);
    int so = 0, ro = 0;
    for (int r = 0; r < R; ++r) {
      auto const& out_rows = slots ? h.send_slots : h.send_tokens;
      auto const& in_rows = slots ? h.recv_slots : h.recv_tokens;
      sc[r] = static_cast<int>((reverse ? in_rows : out_rows)[r] * bytes_per_row);
      rc[r] = static_cast<int>((reverse ? out_rows : in_rows)[r] * bytes_per_row);
      sd[r] = so;
      rd[r] = ro;
      so += sc[r];
      ro += rc[r];
    }
    send.assign(static_cast<std::size_t>(so), std::byte{1});
    recv.assign(static_cast<std::size_t>(ro), std::byte{0});
    sent = so;
  }
  void operator()() {
    MPI_Alltoallv(send.data(), sc.data(), sd.data(), MPI_BYTE, recv.data(), rc.data(), rd.data(), MPI_BYTE,
                  MPI_COMM_WORLD);
  }
};

/// Receive buffers sized for the worst case (T x ranks rows), viewed at the handle's N rows.
template <class T>
struct receive_buffers {
  std::int64_t cap = kTokens * world->size();
  fm::host_matrix<T> x{cap, kHidden};
  fm::host_matrix<float> scales{cap, kHidden / 128}, weights{cap, kTopk};
  fm::host_matrix<std::int32_t> ids{cap, kTopk};
  moe::dispatch_outputs<T> views(std::int64_t N, bool with_scales) {
    return {fm::make_matrix(x.data(), N, kHidden),
            with_scales ? fm::make_matrix(scales.data(), N, kHidden / 128) : fm::matrix_view<float>{},
            fm::make_matrix(ids.data(), N, kTopk), fm::make_matrix(weights.data(), N, kTopk)};
  }
};

/// The forward dispatch as a training step runs it: layout + count exchange (a new handle each
/// time: a second synchronization), then x and the routing words (posted together) into caller-owned buffers.
template <class T>
void forward_dispatch(benchmark::State& st, char const* name, fm::matrix_view<T const> x,
                      fm::matrix_view<float const> scales) {
  fm::host_executor exec;
  bool const fp8 = scales.cols > 0;
  raw_alltoallv raw(handle(), row_bytes(fp8), false);
  receive_buffers<T> rb;
  compare(st, name, raw.sent, raw, [&] {
    auto h = handle();
    moe::dispatch_into(exec, *world, h, prob->placement, x, scales, ids_view(), weights_view(),
                       rb.views(h.num_recv(), fp8));
  });
}
void BM_dispatch_fp8(benchmark::State& st) {
  forward_dispatch(st, "dispatch_fp8", fm::matrix_view<fm::float8_e4m3_t const>(prob->x8.view()),
                   fm::matrix_view<float const>(prob->scales.view()));
}
void BM_dispatch_bf16(benchmark::State& st) {
  forward_dispatch(st, "dispatch_bf16", fm::matrix_view<fm::bfloat16_t const>(prob->x16.view()),
                   fm::matrix_view<float const>{});
  st.counters["fp8_bytes_vs_bf16"] =
      static_cast<double>(row_bytes(true)) / static_cast<double>(row_bytes(false));
  if (median_s.count("dispatch_fp8"))
    st.counters["fp8_time_vs_bf16"] = median_s["dispatch_fp8"] / median_s["dispatch_bf16"];
}

/// The handle reused (no layout, no count exchange): the same bytes as the raw call, one
/// collective for x and one for the routing words. `start`: the start/wait form the DualPipe
/// executor overlaps with compute.
template <class T>
void cached_dispatch(benchmark::State& st, char const* name, bool start, fm::matrix_view<T const> x,
                     fm::matrix_view<float const> sc, bool in_place = true) {
  fm::host_executor exec;
  auto h = handle();
  h.gather_rows_in_place = in_place;
  bool const fp8 = sc.cols > 0;
  raw_alltoallv raw(h, row_bytes(fp8), false);
  receive_buffers<T> rb;
  auto const out = rb.views(h.num_recv(), fp8);
  compare(st, name, raw.sent, raw, [&] {
    if (start)
      moe::dispatch_into_start(exec, *world, h, prob->placement, x, sc, ids_view(), weights_view(), out)
          .wait();
    else
      moe::dispatch_into(exec, *world, h, prob->placement, x, sc, ids_view(), weights_view(), out);
  });
}
auto x8() {
  return fm::matrix_view<fm::float8_e4m3_t const>(prob->x8.view());
}
auto x16() {
  return fm::matrix_view<fm::bfloat16_t const>(prob->x16.view());
}
auto scales8() {
  return fm::matrix_view<float const>(prob->scales.view());
}
void BM_dispatch_fp8_cached(benchmark::State& st) {
  cached_dispatch(st, "dispatch_fp8_cached", false, x8(), scales8());
}
void BM_dispatch_fp8_cached_start(benchmark::State& st) {
  cached_dispatch(st, "dispatch_fp8_cached_start", true, x8(), scales8());
}
void BM_dispatch_bf16_cached(benchmark::State& st) {
  cached_dispatch(st, "dispatch_bf16_cached", false, x16(), fm::matrix_view<float const>{});
  if (median_s.count("dispatch_fp8_cached"))
    st.counters["fp8_time_vs_bf16"] = median_s["dispatch_fp8_cached"] / median_s["dispatch_bf16_cached"];
}

/// Combine: BF16 partials (N,H) back to their sources, FP32 sum over ranks, BF16 output (T,H).
void BM_combine_bf16(benchmark::State& st) {
  fm::host_executor exec;
  auto h = handle();
  raw_alltoallv raw(h, 2 * kHidden, true);
  fm::host_matrix<fm::bfloat16_t> partial(h.num_recv(), kHidden, fm::bfloat16_t(0.25f)),
      out(kTokens, kHidden);
  compare(st, "combine_bf16", raw.sent, raw, [&] {
    moe::combine(exec, *world, h, fm::matrix_view<fm::bfloat16_t const>(partial.view()), out.view());
  });
}
/// The same tokens in node-shared memory (the quantize step of a training step would write them
/// there; the raw baseline likewise starts from pre-packed bytes): x8 | scales | ids | weights | x16
/// | partial (worst case T*R rows). The shared ops read peers' rows in place.
struct shared_inputs {
  static constexpr std::size_t o_x8 = 0, o_sc = o_x8 + kTokens * kHidden,
                               o_ids = o_sc + kTokens * (kHidden / 128) * 4,
                               o_w = o_ids + kTokens * kTopk * 4, o_x16 = o_w + kTokens * kTopk * 4,
                               o_p = o_x16 + kTokens * kHidden * 2;
  fm::comm::mpi_shared_buffer buf{*world,
                                  o_p + static_cast<std::size_t>(kTokens * world->size() * kHidden) * 2};
  fm::comm::shared_matrix<fm::float8_e4m3_t> x8{buf, o_x8, kTokens, kHidden};
  fm::comm::shared_matrix<float> scales{buf, o_sc, kTokens, kHidden / 128};
  fm::comm::shared_matrix<std::int32_t> ids{buf, o_ids, kTokens, kTopk};
  fm::comm::shared_matrix<float> weights{buf, o_w, kTokens, kTopk};
  fm::comm::shared_matrix<fm::bfloat16_t> x16{buf, o_x16, kTokens, kHidden};
  template <class T>
  static void put(fm::comm::shared_matrix<T> const& m, fm::host_matrix<T> const& v) {
    std::memcpy(m.local().data, v.data(), static_cast<std::size_t>(v.rows() * v.cols()) * sizeof(T));
  }
  shared_inputs() {
    put(x8, prob->x8);
    put(scales, prob->scales);
    put(ids, prob->ids);
    put(weights, prob->weights);
    put(x16, prob->x16);
  }
};

/// new_handle: a training step's dispatch (layout + count exchange over MPI, then the shared-memory copy).
template <class T>
void shared_dispatch(benchmark::State& st, char const* name, fm::comm::shared_matrix<T> const& x,
                     fm::comm::shared_matrix<float> const* scales, shared_inputs const& in,
                     bool new_handle = false) {
  fm::host_executor exec;
  auto h = handle();
  bool const fp8 = scales != nullptr;
  raw_alltoallv raw(h, row_bytes(fp8), false);
  receive_buffers<T> rb;
  auto const out = rb.views(h.num_recv(), fp8);
  compare(st, name, raw.sent, raw, [&] {
    if (new_handle) h = handle();
    moe::dispatch_into(exec, h, prob->placement, x, scales, in.ids, in.weights, out);
  });
}
void BM_dispatch_fp8_shared_new_handle(benchmark::State& st) {
  shared_inputs in;
  shared_dispatch(st, "dispatch_fp8_shared_new_handle", in.x8, &in.scales, in, true);
}
void BM_dispatch_fp8_shared(benchmark::State& st) {
  shared_inputs in;
  shared_dispatch(st, "dispatch_fp8_shared", in.x8, &in.scales, in);
}
void BM_dispatch_bf16_shared(benchmark::State& st) {
  shared_inputs in;
  shared_dispatch(st, "dispatch_bf16_shared", in.x16, nullptr, in);
}
void BM_combine_bf16_shared(benchmark::State& st) {
  fm::host_executor exec;
  shared_inputs in;
  auto h = handle();
  raw_alltoallv raw(h, 2 * kHidden, true);
  fm::comm::shared_matrix<fm::bfloat16_t> partial(in.buf, shared_inputs::o_p, h.num_recv(), kHidden);
  auto pv = partial.local();
  for (std::int64_t i = 0; i < pv.rows * pv.cols; ++i) pv.data[i] = fm::bfloat16_t(0.25f);
  fm::host_matrix<fm::bfloat16_t> out(kTokens, kHidden);
  compare(st, "combine_bf16_shared", raw.sent, raw, [&] { moe::combine(exec, h, partial, out.view()); });
}

/// Slot-exact combine (one BF16 row per (token, slot) back to its source, weighted FP32 sum in slot
/// order): message passing, or through shared memory (expert outputs and the local plan's slot_row
/// in shared matrices). The received rows are permuted once, as the expert block would.
void slot_combine(benchmark::State& st, bool shared) {
  fm::host_executor exec;
  auto h = handle();
  std::int64_t const N = h.num_recv();
  receive_buffers<fm::bfloat16_t> rb;
  auto const v = rb.views(N, false);
  moe::dispatch_into(exec, *world, h, prob->placement, x16(), fm::matrix_view<float const>{}, ids_view(),
                     weights_view(), v);
  moe::route_result local{fm::host_matrix<std::int32_t>(N, kTopk), fm::host_matrix<float>(N, kTopk),
                          std::vector<std::int32_t>(static_cast<std::size_t>(h.local_experts))};
  for (std::int64_t i = 0; i < N; ++i)
    for (int j = 0; j < kTopk; ++j) local.ids(i, j) = v.ids(i, j), local.weights(i, j) = v.weights(i, j);
  for (int l = 0; l < h.local_experts; ++l)
    local.counts[static_cast<std::size_t>(l)] =
        static_cast<std::int32_t>(h.tokens_per_local_expert[static_cast<std::size_t>(l)]);
  auto perm =
      moe::permute(exec, fm::matrix_view<fm::bfloat16_t const>(v.x), local, moe::contiguous{.m_align = 128});
  auto const& plan = perm.plan.view();
  raw_alltoallv raw(h, 2 * kHidden, true, true);
  fm::host_matrix<fm::bfloat16_t> out(kTokens, kHidden);
  if (!shared) {
    compare(st, "combine_slots_bf16", raw.sent, raw, [&] {
      moe::combine_slots(exec, *world, h, plan, fm::matrix_view<fm::bfloat16_t const>(perm.x.view()),
                         weights_view(), out.view());
    });
    return;
  }
  std::int64_t M = plan.rows, Nmax = N;
  MPI_Allreduce(MPI_IN_PLACE, &M, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &Nmax, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
  auto const y_bytes = static_cast<std::size_t>(M * kHidden) * 2;
  fm::comm::mpi_shared_buffer buf(*world, y_bytes + static_cast<std::size_t>(Nmax * kTopk) * 4);
  fm::comm::shared_matrix<fm::bfloat16_t> y(buf, 0, plan.rows, kHidden);
  fm::comm::shared_matrix<std::int32_t> slot_rows(buf, y_bytes, N, kTopk);
  std::memcpy(y.local().data, perm.x.data(), static_cast<std::size_t>(plan.rows * kHidden) * 2);
  std::memcpy(slot_rows.local().data, plan.slot_row, static_cast<std::size_t>(N * kTopk) * 4);
  compare(st, "combine_slots_bf16_shared", raw.sent, raw,
          [&] { moe::combine_slots(exec, h, slot_rows, y, weights_view(), out.view()); });
}
void BM_combine_slots_bf16(benchmark::State& st) {
  slot_combine(st, false);
}
void BM_combine_slots_bf16_shared(benchmark::State& st) {
  slot_combine(st, true);
}

/// Combine with the partial rows packed before the return trip (gather_rows_in_place = false).
void BM_combine_bf16_packed(benchmark::State& st) {
  fm::host_executor exec;
  auto h = handle();
  h.gather_rows_in_place = false;
  raw_alltoallv raw(h, 2 * kHidden, true);
  fm::host_matrix<fm::bfloat16_t> partial(h.num_recv(), kHidden, fm::bfloat16_t(0.25f)),
      out(kTokens, kHidden);
  compare(st, "combine_bf16_packed", raw.sent, raw, [&] {
    moe::combine(exec, *world, h, fm::matrix_view<fm::bfloat16_t const>(partial.view()), out.view());
  });
}

BENCHMARK(BM_dispatch_fp8)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dispatch_fp8_cached)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dispatch_fp8_cached_start)
    ->Iterations(kIterations)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dispatch_bf16_cached)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dispatch_bf16)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_combine_bf16)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_combine_bf16_packed)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_combine_slots_bf16)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_combine_slots_bf16_shared)
    ->Iterations(kIterations)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dispatch_fp8_shared)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dispatch_fp8_shared_new_handle)
    ->Iterations(kIterations)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dispatch_bf16_shared)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_combine_bf16_shared)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);

/// Ranks other than 0 run every benchmark (they take part in each collective) but print nothing.
class silent_reporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(Context const&) override { return true; }
  void ReportRuns(std::vector<Run> const&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  fm::comm::mpi_environment env(&argc, &argv);
  fm::comm::mpi_communicator comm;
  world = &comm;
  problem p;
  prob = &p;
  benchmark::Initialize(&argc, argv);
  if (comm.rank() == 0) {
    benchmark::RunSpecifiedBenchmarks();
    std::printf(
        "\nranks %d, T %lld tokens/rank, H %lld, E %d, top-%d (uniform routing), medians of %d iterations\n",
        comm.size(), static_cast<long long>(kTokens), static_cast<long long>(kHidden), kExperts, kTopk,
        kIterations);
    for (char const* name : {"dispatch_fp8", "dispatch_fp8_cached", "dispatch_fp8_cached_start",
                             "dispatch_bf16_cached", "dispatch_bf16", "combine_bf16", "combine_bf16_packed",
                             "dispatch_fp8_shared", "dispatch_fp8_shared_new_handle", "dispatch_bf16_shared",
                             "combine_bf16_shared", "combine_slots_bf16", "combine_slots_bf16_shared"})
      if (median_s.count(name))
        std::printf("  %-31s %8.3f ms   raw MPI_Alltoallv %8.3f ms   x_raw %.3f\n", name,
                    1e3 * median_s[name], 1e3 * median_s[std::string(name) + "/raw"],
                    median_s[std::string(name) + "/raw"] / median_s[name]);
  } else {
    silent_reporter quiet;
    benchmark::RunSpecifiedBenchmarks(&quiet);
  }
  benchmark::Shutdown();
  return 0;
}
