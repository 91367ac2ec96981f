// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The pipeline executor over MPI (comm::mpi_communicator, a p2p_communicator), one process per
// rank (ctest: 2 and 4 ranks): a toy MLP trained one step under every schedule that fits the world
// gives the one-process losses (bitwise) and gradients (float reordering bound); no deadlock on a grid.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "fp8moe/comm/mpi_communicator.hpp"
#include "fp8moe/pipeline/pipeline.hpp"
#include "toy_mlp.hpp"

namespace fp = fp8moe::pipeline;
namespace comm = fp8moe::comm;

namespace {

comm::mpi_environment const mpi_env;  // MPI_Init_thread(FUNNELED) before main, MPI_Finalize after

struct gathered {
  std::vector<float> losses;  // (M)
  std::vector<float> grad;    // (S * grad_size), stage-major
  fp::execution_stats stats;
};

/// Runs this rank's list, sums DualPipe's copies, then all-reduces (sums with zeros elsewhere: exact)
/// the per-micro-batch losses and the per-stage gradients so every rank can compare.
template <class Model>
gathered run_mpi(fp::schedule const& s, toy::problem const& p, comm::mpi_communicator& c,
                 fp::executor_options opt = {}) {
  Model model(p, s, c.rank());
  gathered g;
  g.stats = fp::execute(s, c, model, opt);
  fp::sum_replica_gradients(s, c, model);
  std::vector<float> losses(p.microbatches, 0.0f), grad(s.stages * p.grad_size(), 0.0f);
  for (auto [mb, l] : model.losses) losses[mb] = l;
  for (int k : s.rank_chunks(c.rank())) {
    if (s.locate(k).first != 0) continue;  // DualPipe: the chain-0 copy reports (both hold the sum)
    auto src = model.weight_gradients(k);
    std::copy(src.begin(), src.end(), grad.begin() + s.chunk_stage[k] * p.grad_size());
  }
  CHECK(model.live_activations() == 0);
  g.losses.resize(losses.size());
  g.grad.resize(grad.size());
  c.allreduce(std::span<float const>(losses), std::span<float>(g.losses), comm::reduce_op::sum);
  c.allreduce(std::span<float const>(grad), std::span<float>(g.grad), comm::reduce_op::sum);
  return g;
}

/// Losses: identical float operations, bitwise equal. Gradients: the same M float terms summed in
/// another order, |a - b| <= 2 (M-1) u sum|terms| with u = 2^-24.
void compare(gathered const& got, toy::problem const& p) {
  auto const ref = toy::reference<float>(p);
  auto const ref64 = toy::reference<double>(p);
  double const u = std::ldexp(1.0, -24);
  for (int mb = 0; mb < p.microbatches; ++mb) CHECK(got.losses[mb] == ref.losses[mb]);
  for (int st = 0; st < p.stages; ++st)
    for (std::size_t i = 0; i < p.grad_size(); ++i) {
      double const bound = 2.0 * (p.microbatches - 1) * u * ref64.abs_grad[st][i] + 1e-30;
      CHECK(std::abs(double(got.grad[st * p.grad_size() + i]) - double(ref.grad[st][i])) <= bound);
    }
}

}  // namespace

TEST_CASE("MPI executor: every schedule on this world matches the one-process reference") {
  comm::mpi_communicator c;
  int const R = c.size();
  char const* names[] = {"gpipe", "1f1b", "zb-h1", "zb-h2", "dualpipe", "dualpipev"};
  for (auto name : names) {
    if (std::string(name) == "dualpipe" && R % 2) continue;
    int const m = 2 * R + 2;
    auto const s = fp::make_schedule(name, {.ranks = R, .microbatches = m});
    CAPTURE(name);
    auto const p = toy::problem::make(s.stages, m);
    auto const got = run_mpi<toy::stage_model>(s, p, c);
    compare(got, p);
    if (R > 1) CHECK(got.stats.sends + got.stats.recvs > 0);
  }
}

TEST_CASE("MPI executor: fused forward/backward hook and the single-threaded path") {
  comm::mpi_communicator c;
  int const R = c.size();
  auto const s = R % 2 == 0 ? fp::dualpipe({.ranks = R, .microbatches = 2 * R})
                            : fp::dualpipe_v({.ranks = R, .microbatches = 2 * R});
  auto const p = toy::problem::make(s.stages, s.microbatches);
  compare(run_mpi<toy::overlapped_stage_model>(s, p, c), p);
  compare(run_mpi<toy::stage_model>(s, p, c, fp::executor_options{.progress_thread = false}), p);
}

TEST_CASE("MPI executor: never deadlocks on a grid of valid generated schedules") {
  comm::mpi_communicator c;
  int const R = c.size();
  char const* names[] = {"gpipe", "1f1b", "zb-h1", "zb-h2", "dualpipe", "dualpipev"};
  int runs = 0;
  for (auto name : names)
    for (int m : {2 * R, 2 * R + 1, 3 * R + 2}) {
      fp::schedule s;
      try {
        s = fp::make_schedule(name, {.ranks = R, .microbatches = m});
      } catch (fp8moe::error const&) {
        continue;  // rejected parameters (DualPipe: odd PP or M)
      }
      auto const p = toy::problem::make(s.stages, m, 1, 4);
      auto const got = run_mpi<toy::stage_model>(s, p, c);
      for (float l : got.losses) CHECK(std::isfinite(l));
      ++runs;
    }
  CHECK(runs >= 14);
}
