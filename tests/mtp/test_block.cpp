// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::transformer_block and mtp::tiny_block: the concept accepts the block and rejects types
// missing a piece; the forward against the float64 reference (mtp_reference.hpp, 1..3 threads);
// the backward against float64 central differences of L = sum(dy * y); accumulation; bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/mtp/block.hpp"
#include "mtp_checks.hpp"
#include "mtp_reference.hpp"
#include "test_support.hpp"

using namespace fp8moe;

namespace {

struct no_backward {
  struct state {};
  std::int64_t hidden() const { return 1; }
  std::size_t workspace_bytes(host_executor const&, std::int64_t) const { return 0; }
  state forward(host_executor const&, matrix_view<float const>, std::span<std::int32_t const>,
                matrix_view<float>, std::span<std::byte>) const {
    return {};
  }
};
struct no_state {
  std::int64_t hidden() const { return 1; }
};
static_assert(mtp::transformer_block<mtp::tiny_block>);
static_assert(!mtp::transformer_block<no_backward>, "a block without backward is not a transformer_block");
static_assert(!mtp::transformer_block<no_state>, "a block without a state type is not a transformer_block");
static_assert(!mtp::transformer_block<int>);

/// A tiny_block over float copies of the reference parameters, with its gradient buffers.
struct tiny {
  std::int64_t C, F;
  std::vector<float> g, w1, w2, dg, dw1, dw2;
  mtp::tiny_block block;
  tiny(mtp_ref::block_params const& p, std::int64_t C_, std::int64_t F_)
      : C(C_),
        F(F_),
        g(mtp_ref::to_float(p.g)),
        w1(mtp_ref::to_float(p.w1)),
        w2(mtp_ref::to_float(p.w2)),
        dg(g.size()),
        dw1(w1.size()),
        dw2(w2.size()),
        block({g, make_matrix<float const>(w1.data(), F, C), make_matrix<float const>(w2.data(), C, F)},
              {dg, make_matrix(dw1.data(), F, C), make_matrix(dw2.data(), C, F)}) {}
};

mtp_ref::block_params random_block(std::int64_t C, std::int64_t F, std::uint64_t seed) {
  auto const p = mtp_ref::random_params(3, C, F, seed);
  return p.blk;
}

}  // namespace

TEST_CASE("tiny_block forward matches the float64 reference (1..3 threads, positions from 0 and from 5)") {
  std::int64_t const T = 11, C = 32, F = 48;
  auto const p = random_block(C, F, 100);
  tiny t(p, C, F);
  auto const x = mtp_ref::random_vec(static_cast<std::size_t>(T * C), 1.5, 101);
  auto const xf = mtp_ref::to_float(x);
  for (int offset : {0, 5}) {
    std::vector<std::int32_t> pos(static_cast<std::size_t>(T));
    for (std::int64_t i = 0; i < T; ++i)
      pos[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(offset + 2 * i);
    auto const ref = mtp_ref::block(p, x, pos, T, C, F, 1e-6);
    for (int threads : {1, 2, 3}) {
      host_executor const exec{threads};
      std::vector<std::byte> ws(t.block.workspace_bytes(exec, T));
      std::vector<float> y(static_cast<std::size_t>(T * C));
      test::poison(y);
      t.block.forward(exec, make_matrix(xf.data(), T, C), pos, make_matrix(y.data(), T, C), ws);
      // float: rmsnorm (C = 32 squares), a running sum of <= 11 rows, two products with K <= 48, each
      // adding a relative error <= K * 2^-24 ~ 3e-6 of its terms' magnitude (<= ~10): 2e-5 absolute.
      for (std::size_t i = 0; i < y.size(); ++i)
        REQUIRE(std::abs(y[i] - ref[i]) <= 2e-5 * (1.0 + std::abs(ref[i])));
    }
  }
}

TEST_CASE("tiny_block backward matches float64 central differences of L = sum(dy * y) and accumulates") {
  std::int64_t const T = 7, C = 12, F = 10;
  auto p = random_block(C, F, 200);
  tiny t(p, C, F);
  auto x = mtp_ref::random_vec(static_cast<std::size_t>(T * C), 1.0, 201);
  auto const dy = mtp_ref::random_vec(static_cast<std::size_t>(T * C), 1.0, 202);
  std::vector<std::int32_t> pos(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i) pos[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  host_executor const exec{2};
  auto const xf = mtp_ref::to_float(x), dyf = mtp_ref::to_float(dy);
  std::vector<std::byte> ws(t.block.workspace_bytes(exec, T));
  std::vector<float> y(static_cast<std::size_t>(T * C)), dx(y.size());
  test::poison(dx);
  auto const st = t.block.forward(exec, make_matrix(xf.data(), T, C), pos, make_matrix(y.data(), T, C), ws);
  t.block.backward(exec, st, make_matrix(dyf.data(), T, C), make_matrix(dx.data(), T, C), ws);

  auto loss = [&] {
    auto const yr = mtp_ref::block(p, x, pos, T, C, F, 1e-6);
    double s = 0;
    for (std::size_t i = 0; i < yr.size(); ++i) s += dy[i] * yr[i];
    return s;
  };
  mtp_checks::check_gradient(x, dx, "dx", loss);
  mtp_checks::check_gradient(p.g, t.dg, "d_norm", loss);
  mtp_checks::check_gradient(p.w1, t.dw1, "d_w1", loss);
  mtp_checks::check_gradient(p.w2, t.dw2, "d_w2", loss);

  // a second backward from the same state ADDS the same parameter gradients; dx is overwritten
  auto const dw1_once = t.dw1, dx_once = dx;
  t.block.backward(exec, st, make_matrix(dyf.data(), T, C), make_matrix(dx.data(), T, C), ws);
  for (std::size_t i = 0; i < dw1_once.size(); ++i)
    REQUIRE(t.dw1[i] == doctest::Approx(2 * dw1_once[i]).epsilon(1e-5));
  CHECK(dx == dx_once);
}

TEST_CASE("tiny_block rejects bad input before writing, naming the argument") {
  std::int64_t const T = 4, C = 8, F = 6;
  auto const p = random_block(C, F, 300);
  tiny t(p, C, F);
  host_executor const exec;
  std::vector<std::byte> ws(t.block.workspace_bytes(exec, T));
  std::vector<float> x(static_cast<std::size_t>(T * C), 1.0f), y(x.size(), 7.0f);
  std::vector<std::int32_t> pos{0, 1, 1, 2};
  CHECK(mtp_checks::error_of([&] {
          t.block.forward(exec, make_matrix<float const>(x.data(), T, C), pos, make_matrix(y.data(), T, C),
                          ws);
        }).find("'positions'") != std::string::npos);
  pos = {0, 1, 2, 3};
  CHECK(mtp_checks::error_of([&] {
          t.block.forward(exec, make_matrix<float const>(x.data(), T, C - 1), pos,
                          make_matrix(y.data(), T, C), ws);
        }).find("'x'") != std::string::npos);
  std::vector<std::byte> small(ws.size() - 1);
  CHECK(mtp_checks::error_of([&] {
          t.block.forward(exec, make_matrix<float const>(x.data(), T, C), pos, make_matrix(y.data(), T, C),
                          small);
        }).find("'workspace'") != std::string::npos);
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 7.0f; }));
  mtp::tiny_block no_grads(
      {t.g, make_matrix<float const>(t.w1.data(), F, C), make_matrix<float const>(t.w2.data(), C, F)});
  auto const st =
      no_grads.forward(exec, make_matrix<float const>(x.data(), T, C), pos, make_matrix(y.data(), T, C), ws);
  std::vector<float> dx(x.size());
  CHECK(mtp_checks::error_of([&] {
          no_grads.backward(exec, st, make_matrix<float const>(x.data(), T, C), make_matrix(dx.data(), T, C),
                            ws);
        }).find("'grads'") != std::string::npos);
  CHECK(mtp_checks::error_of([&] {
          mtp::tiny_block({t.g, make_matrix<float const>(t.w1.data(), F, C),
                           make_matrix<float const>(t.w2.data(), C, F - 1)});
        }).find("'w.w2'") != std::string::npos);
}
