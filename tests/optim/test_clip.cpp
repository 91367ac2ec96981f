// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// optim::grad_norm / clip_grad_norm: exact on a hand-made example, a float64 reference on random
// tensors (with empty ones and slices crossing tensors), bit-identical for 1..5 threads, the first
// NaN/Inf located (tensor, element) with the gradients and the weights untouched (the trainer's skip),
// clip_coefficient as PyTorch, bad input. The _cuda variant compares the device with the host.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/optim/adamw.hpp"
#include "fp8moe/optim/clip.hpp"
#include "test_support.hpp"
#if FP8MOE_TEST_GPU
#include "device_memory.hpp"
#include "fp8moe/optim/cuda/clip.cuh"
#endif

using namespace fp8moe;

namespace {

/// Tensors of the given sizes, N(0, sigma) values, as owned storage plus a list of views.
struct grads {
  std::vector<std::vector<float>> data;
  std::vector<std::span<float>> views() {
    std::vector<std::span<float>> r;
    for (auto& d : data) r.emplace_back(d);
    return r;
  }
  std::vector<std::span<float const>> const_views() const {
    std::vector<std::span<float const>> r;
    for (auto const& d : data) r.emplace_back(d);
    return r;
  }
  grads(std::vector<std::size_t> const& sizes, float sigma, std::uint64_t seed) {
    for (std::size_t i = 0; i < sizes.size(); ++i)
      data.push_back(test::random_normal(sizes[i], sigma, seed + i));
  }
  double ref_norm() const {
    long double s = 0;
    for (auto const& d : data)
      for (float x : d) s += static_cast<long double>(x) * x;
    return static_cast<double>(std::sqrt(s));
  }
};

std::vector<std::size_t> const sizes_mixed{0, 1, 4097, 0, 33, 100000, 7, 256, 255, 3};

}  // namespace

TEST_CASE("grad_norm: exact on a hand-made example; clip_grad_norm scales by max_norm / (norm + 1e-6)") {
  std::vector<float> a{3.0f, 0.0f}, b{-4.0f}, c{12.0f};
  std::vector<std::span<float>> gs{a, b, c};
  optim::grad_norm_result r;
  r.norm = -1;
  optim::clip_grad_norm(host_executor{}, gs, 1.0f, &r);
  CHECK(r.norm == 13.0);  // sqrt(9 + 16 + 144), exact in double
  CHECK(r.finite());
  float const coef = static_cast<float>(1.0 / (13.0 + 1e-6));
  CHECK(optim::clip_coefficient(13.0, 1.0f) == coef);
  CHECK(a == std::vector<float>{3.0f * coef, 0.0f});
  CHECK(b == std::vector<float>{-4.0f * coef});
  CHECK(c == std::vector<float>{12.0f * coef});
  // the clipped norm is max_norm (up to the 1e-6 and float rounding)
  CHECK(optim::grad_norm(host_executor{}, gs).norm == doctest::Approx(1.0).epsilon(2e-6));
  // below max_norm nothing changes (PyTorch multiplies by the clamped 1.0)
  auto const a0 = a;
  optim::clip_grad_norm(host_executor{}, gs, 20.0f, &r);
  CHECK(a == a0);
  CHECK(optim::clip_coefficient(0.5, 1.0f) == 1.0f);
  CHECK(optim::clip_coefficient(0.0, 1.0f) == 1.0f);
  CHECK(optim::clip_coefficient(4.0, 2.0f) == static_cast<float>(2.0 / (4.0 + 1e-6)));
}

TEST_CASE("grad_norm: equals the float64 reference; empty lists and tensors") {
  grads const g(sizes_mixed, 0.01f, 5);
  auto const r = optim::grad_norm(host_executor{}, g.const_views());
  // double sums of exact squares (g^2 of a float is exact in double): relative error <= N u64, N ~ 1e5
  CHECK(r.norm == doctest::Approx(g.ref_norm()).epsilon(1e-11));
  CHECK(r.finite());
  CHECK(r.nonfinite_element == -1);
  CHECK(optim::grad_norm(host_executor{}, std::vector<std::span<float const>>{}).norm == 0.0);
  grads const tiny({5}, 1.0f, 9);  // fewer elements than slices
  CHECK(optim::grad_norm(host_executor{}, tiny.const_views()).norm ==
        doctest::Approx(tiny.ref_norm()).epsilon(1e-15));
}

TEST_CASE("grad_norm: bit-identical for 1, 2, 3 and 5 threads") {
  grads const g(sizes_mixed, 1.0f, 15);
  double const n1 = optim::grad_norm(host_executor{1}, g.const_views()).norm;
  for (int t : {2, 3, 5}) {
    CAPTURE(t);
    double const nt = optim::grad_norm(host_executor{t}, g.const_views()).norm;
    CHECK(std::memcmp(&n1, &nt, sizeof(double)) == 0);
  }
}

TEST_CASE("grad_norm: the first NaN/Inf is located in the right tensor; clipping and the step are skipped") {
  for (int threads : {1, 2}) {
    for (float badv : {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
      CAPTURE(threads);
      CAPTURE(badv);
      grads g(sizes_mixed, 1.0f, 25);
      g.data[5][71234] = badv;                                  // tensor 5 (100000 elements)
      g.data[8][200] = std::numeric_limits<float>::infinity();  // a later one: not the first
      auto const before = g.data;
      // the weights of a model with these gradients, as a trainer holds them
      std::vector<std::vector<float>> p, m, v;
      std::vector<optim::adamw_tensor<float>> ts;
      for (std::size_t i = 0; i < g.data.size(); ++i) {
        p.push_back(test::random_normal(g.data[i].size(), 1.0f, 99 + i));
        m.emplace_back(g.data[i].size(), 0.0f);
        v.emplace_back(g.data[i].size(), 0.0f);
      }
      for (std::size_t i = 0; i < g.data.size(); ++i) ts.push_back({p[i], g.data[i], m[i], v[i]});
      auto const p0 = p;
      optim::grad_norm_result r;
      optim::clip_grad_norm(host_executor{threads}, g.views(), 1.0f, &r);
      CHECK_FALSE(r.finite());
      CHECK(r.nonfinite_tensor == 5);
      CHECK(r.nonfinite_element == 71234);
      CHECK_FALSE(std::isfinite(r.norm));
      // the gradients are untouched (bitwise: NaN != NaN, so compare bytes)
      for (std::size_t i = 0; i < g.data.size(); ++i)
        CHECK((before[i].empty() ||
               std::memcmp(g.data[i].data(), before[i].data(), before[i].size() * 4) == 0));
      if (r.finite()) optim::adamw_step(host_executor{threads}, optim::adamw_config{}, 1, ts);  // the skip
      CHECK(p == p0);
      std::vector<std::string> const names{"a", "b", "c", "d", "e", "model.layers.1.mlp.gate_proj.weight"};
      CHECK(optim::to_string(r, names) ==
            "non-finite gradient (NaN or Inf) in tensor 5 'model.layers.1.mlp.gate_proj.weight', element "
            "71234");
    }
  }
  // first element of the first tensor, and the very last element
  grads g({3, 4}, 1.0f, 7);
  g.data[0][0] = std::numeric_limits<float>::quiet_NaN();
  auto r = optim::grad_norm(host_executor{}, g.const_views());
  CHECK((r.nonfinite_tensor == 0 && r.nonfinite_element == 0));
  g.data[0][0] = 1.0f;
  g.data[1][3] = std::numeric_limits<float>::infinity();
  r = optim::grad_norm(host_executor{}, g.const_views());
  CHECK((r.nonfinite_tensor == 1 && r.nonfinite_element == 3));
  CHECK(r.norm == std::numeric_limits<double>::infinity());
  CHECK(optim::to_string(r) == "non-finite gradient (NaN or Inf) in tensor 1, element 3");
  // a huge finite gradient is finite: g^2 in double does not overflow
  g.data[1][3] = std::numeric_limits<float>::max();
  r = optim::grad_norm(host_executor{}, g.const_views());
  CHECK(r.finite());
  CHECK(r.norm == doctest::Approx(static_cast<double>(std::numeric_limits<float>::max())));
}

TEST_CASE("grad_norm / clip_grad_norm: bad input throws fp8moe::error naming the argument") {
  std::vector<float> a{1.0f, 2.0f};
  std::vector<std::span<float>> gs{a};
  optim::grad_norm_result r;
  CHECK_THROWS_WITH_AS(
      optim::clip_grad_norm(host_executor{}, gs, 0.0f, &r),
      doctest::Contains("fp8moe::optim::clip_grad_norm: argument 'max_norm': expected a finite value > 0"),
      fp8moe::error);
  CHECK_THROWS_WITH_AS(optim::clip_grad_norm(host_executor{}, gs, NAN, &r),
                       doctest::Contains("argument 'max_norm'"), fp8moe::error);
  CHECK_THROWS_WITH_AS(optim::grad_norm(host_executor{}, gs, nullptr), doctest::Contains("argument 'out'"),
                       fp8moe::error);
  std::vector<std::span<float>> null_data{std::span<float>(static_cast<float*>(nullptr), 0), {}};
  CHECK_NOTHROW(optim::grad_norm(host_executor{}, null_data, &r));
  CHECK(a == std::vector<float>{1.0f, 2.0f});
}

TEST_CASE("optim::workspace_bytes(exec, grad_norm_shape): the host path needs none and runs with none") {
  static_assert(optim::workspace_bytes(host_executor{}, optim::grad_norm_shape{300}) == 0);
  std::vector<float> a{3.0f, 4.0f}, b{12.0f};
  std::vector<std::span<float>> gs{a, b};
  std::size_t const bytes = optim::workspace_bytes(host_executor{}, optim::grad_norm_shape{gs.size()});
  CHECK(bytes == 0);
  optim::grad_norm_result r;
  optim::clip_grad_norm(host_executor{}, gs, 1.0f, &r, std::span<std::byte>{});
  CHECK(r.norm == 13.0);
  CHECK(a[0] == optim::clip_coefficient(13.0, 1.0f) * 3.0f);
}

#if FP8MOE_TEST_GPU
TEST_CASE("grad_norm / clip_grad_norm (CUDA): the device result equals the host's, NaN located") {
  if (cuda_device_count() == 0) return;
  std::vector<std::size_t> sizes = sizes_mixed;
  for (int i = 0; i < 140; ++i) sizes.push_back(static_cast<std::size_t>(17 * i));  // two groups of 128
  grads g(sizes, 1.0f, 35);
  std::vector<test::device_array<float>*> dev;
  std::vector<std::span<float>> dviews;
  for (auto& d : g.data) {
    dev.push_back(new test::device_array<float>(d.data(), d.size()));
    dviews.emplace_back(dev.back()->p, d.size());
  }
  test::device_array<std::byte> ws(
      optim::workspace_bytes(cuda_executor{}, optim::grad_norm_shape{dviews.size()}));
  test::device_array<optim::grad_norm_result> out(1);
  CHECK(ws.n > optim::workspace_bytes(cuda_executor{}, optim::grad_norm_shape{128}));  // two groups
  CHECK_THROWS_WITH_AS(optim::grad_norm(cuda_executor{}, dviews, out.p, {ws.p, ws.n - 1}),
                       doctest::Contains("argument 'workspace'"), fp8moe::error);
  optim::grad_norm(cuda_executor{}, dviews, out.p, {ws.p, ws.n});
  auto const r = out.get()[0];
  double const host = optim::grad_norm(host_executor{}, g.const_views()).norm;
  CHECK(r.finite());
  CHECK(r.norm == doctest::Approx(host).epsilon(1e-12));  // another fixed order of double sums
  optim::clip_grad_norm(cuda_executor{}, dviews, 1.0f, out.p, {ws.p, ws.n});
  float const c = optim::clip_coefficient(out.get()[0].norm, 1.0f);
  auto const t5 = dev[5]->get();
  for (std::size_t i = 0; i < t5.size(); ++i) REQUIRE(t5[i] == g.data[5][i] * c);
  // a NaN in tensor 140 (second group): located, gradients untouched
  g.data[140][5] = NAN;
  FP8MOE_CUDA_CHECK(
      cudaMemcpy(dev[140]->p, g.data[140].data(), g.data[140].size() * 4, cudaMemcpyHostToDevice));
  auto const t7 = dev[7]->get();
  optim::clip_grad_norm(cuda_executor{}, dviews, 1e-3f, out.p, {ws.p, ws.n});
  auto const rb = out.get()[0];
  CHECK(rb.nonfinite_tensor == 140);
  CHECK(rb.nonfinite_element == 5);
  CHECK(dev[7]->get() == t7);
  for (auto* d : dev) delete d;
}
#endif
