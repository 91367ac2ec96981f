// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The GPU tests' run/skip/fail decision (gpu_gate.hpp), on the host: only a missing device skips.
#include <doctest/doctest.h>

#include "gpu_gate.hpp"

namespace ft = fp8moe::test;

namespace {
constexpr int insufficient_driver = 35;  // cudaErrorInsufficientDriver
constexpr int initialization_error = 3;  // cudaErrorInitializationError
ft::gpu_probe probe(int driver, int status, int count, bool require) {
  return {driver, status, count, require, "cudaErrorX: text of the error"};
}
}  // namespace

TEST_CASE("gpu gate: a visible device runs, with or without FP8MOE_REQUIRE_GPU") {
  for (bool req : {false, true}) {
    auto const g = ft::decide_gpu_gate(probe(12040, ft::cuda_success, 1, req));
    CHECK(g.action == ft::gpu_gate::run);
    CHECK(g.exit_code() == 0);
  }
}

TEST_CASE("gpu gate: no device skips (77), and fails under FP8MOE_REQUIRE_GPU") {
  // the three ways the runtime says "no device": no driver installed, cudaErrorNoDevice, count 0
  for (auto const& p :
       {probe(0, insufficient_driver, 0, false), probe(12040, ft::cuda_error_no_device, 0, false),
        probe(12040, ft::cuda_success, 0, false)}) {
    auto g = ft::decide_gpu_gate(p);
    CHECK(g.action == ft::gpu_gate::skip);
    CHECK(g.exit_code() == 77);
    CHECK(g.message.find("skipped") != std::string::npos);
    auto q = p;
    q.require_gpu = true;
    g = ft::decide_gpu_gate(q);
    CHECK(g.action == ft::gpu_gate::fail);
    CHECK(g.exit_code() == 1);
    CHECK(g.message.find("FP8MOE_REQUIRE_GPU") != std::string::npos);
  }
}

TEST_CASE("gpu gate: any other runtime error fails with its text, never skips") {
  for (int status : {insufficient_driver, initialization_error}) {
    for (bool req : {false, true}) {
      auto const g = ft::decide_gpu_gate(probe(11080, status, 0, req));
      CHECK(g.action == ft::gpu_gate::fail);
      CHECK(g.exit_code() == 1);
      CHECK(g.message.find("text of the error") != std::string::npos);
      CHECK(g.message.find("code " + std::to_string(status)) != std::string::npos);
    }
  }
  // driver version unknown (cudaDriverGetVersion itself failed: -1) is not "no driver"
  CHECK(ft::decide_gpu_gate(probe(-1, insufficient_driver, 0, false)).action == ft::gpu_gate::fail);
}

TEST_CASE("gpu gate: FP8MOE_REQUIRE_GPU parsing") {
  CHECK_FALSE(ft::require_gpu_from(nullptr));
  CHECK_FALSE(ft::require_gpu_from(""));
  CHECK_FALSE(ft::require_gpu_from("0"));
  CHECK(ft::require_gpu_from("1"));
  CHECK(ft::require_gpu_from("yes"));
}
