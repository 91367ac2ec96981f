// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// core/: views, argument checking and the error type, integer helpers, executors, and (nvcc build)
// the CUDA error check that names the failing call.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fp8moe/core/dispatch.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/core/executor.hpp"
#include "fp8moe/core/math.hpp"
#include "fp8moe/core/view.hpp"
#if FP8MOE_CUDA_COMPILER
#include "fp8moe/core/cuda/executor.hpp"
#endif

using namespace fp8moe;

static_assert(ceil_div(7, 3) == 3 && ceil_div(6, 3) == 2 && round_up(130, 128) == 256 && round_up(0, 4) == 0);
static_assert(fp8moe::bit_cast<std::uint32_t>(1.0f) == 0x3F800000u);
static_assert(executor<host_executor> && !executor<int>);
static_assert(host_executor_like<host_executor const&>);

TEST_CASE("matrix_view indexing: row-major and column-major (MN-major) strides") {
  std::vector<int> v(12);
  for (int i = 0; i < 12; ++i) v[i] = i;
  auto rm = make_matrix(v.data(), 3, 4);  // (3,4) row-major
  CHECK(rm(2, 1) == 9);
  CHECK(rm.row(1)[3] == 7);
  CHECK(rm.is_row_major());
  matrix_view<int> cm{v.data(), 3, 4, 1, 3};  // (3,4) column-major
  CHECK(cm(2, 1) == 5);
  CHECK_FALSE(cm.is_row_major());
  matrix_view<int const> c = rm;  // implicit to const
  CHECK(c(0, 3) == 3);
  CHECK(rm.size() == 12);
  auto vec = make_vector(v.data(), 12);
  CHECK(vec[11] == 11);
  vector_view<int const> cv = vec;
  CHECK(cv.size == 12);
  batched_matrix_view<int> b{v.data(), 2, 2, 3, 6, 3, 1};  // (2,2,3)
  CHECK(b(1, 1, 2) == 11);
  CHECK(b[1](0, 0) == 6);
}

TEST_CASE("check_matrix / check_shape reject bad views with messages naming the argument") {
  std::vector<float> v(16, 1.0f);
  CHECK_NOTHROW(check_matrix(make_matrix(v.data(), 4, 4), "op", "x"));
  CHECK_NOTHROW(check_matrix(matrix_view<float>{nullptr, 0, 5, 5, 1}, "op", "x"));  // empty: null ok
  try {
    check_matrix(make_matrix(v.data(), 4, 4, 3), "fp8moe::op", "x");
    FAIL("expected an error");
  } catch (error const& e) {
    CHECK(e.code() == errc::invalid_argument);
    std::string const m = e.what();
    CHECK(m.find("fp8moe::op") != std::string::npos);
    CHECK(m.find("'x'") != std::string::npos);
    CHECK(m.find("row_stride >= cols") != std::string::npos);
  }
  CHECK_THROWS_AS(check_matrix(make_matrix<float>(nullptr, 2, 2), "op", "y"), error);
  CHECK_THROWS_AS(check_matrix(matrix_view<float>{v.data(), -1, 2, 2, 1}, "op", "y"), error);
  CHECK_THROWS_AS(check_matrix(matrix_view<float>{v.data(), 4, 2, 1, 3}, "op", "y"),
                  error);  // col_stride < rows
  CHECK_NOTHROW(check_shape(make_matrix(v.data(), 4, 4), 4, 4, "op", "x"));
  CHECK_THROWS_WITH_AS(check_shape(make_matrix(v.data(), 4, 4), 2, 8, "op", "x"),
                       "op: argument 'x': expected 2x8, got 4x4", error);
}

TEST_CASE("require and error codes") {
  CHECK_NOTHROW(require(true, "w", "a", "e"));
  CHECK_THROWS_WITH_AS(require(false, "w", "a", "e", "g"), "w: argument 'a': expected e, got g", error);
  CHECK_THROWS_WITH_AS(require(false, "w", "a", "e"), "w: argument 'a': expected e", std::runtime_error);
  CHECK(to_string(errc::cuda) == "CUDA error");
  CHECK(to_string(errc::communication) == "communication error");
  error e(errc::io, "boom");
  CHECK(e.code() == errc::io);
}

TEST_CASE("host_matrix owns row-major storage") {
  host_matrix<float> m(2, 3, 1.5f);
  CHECK(m.rows() == 2);
  CHECK(m.cols() == 3);
  m(1, 2) = 4.0f;
  CHECK(m.view()(1, 2) == 4.0f);
  CHECK(m.storage().size() == 6);
  CHECK(m.data()[0] == 1.5f);
  CHECK_THROWS_AS(host_matrix<float>(-1, 2), error);
}

TEST_CASE("host_executor thread count") {
  CHECK(host_executor{}.num_threads() >= 1);
  CHECK(host_executor{.threads = 1}.num_threads() == 1);
}

#if FP8MOE_CUDA_COMPILER
TEST_CASE("FP8MOE_CUDA_CHECK names the failing call") {
  static_assert(executor<cuda_executor> && device_executor_like<cuda_executor>);
  CHECK(cuda_device_count() >= 1);
  void* p = nullptr;
  try {
    FP8MOE_CUDA_CHECK(cudaMalloc(&p, ~std::size_t{0}));  // cannot succeed
    FAIL("expected an error");
  } catch (error const& e) {
    CHECK(e.code() == errc::cuda);
    CHECK(std::string(e.what()).find("cudaMalloc") != std::string::npos);
  }
}
#endif

namespace dispatch_probe {
template <class Exec>
struct dispatch;  // a module's primary template: undefined
template <>
struct dispatch<fp8moe::host_executor> {
  static int run(fp8moe::host_executor const& e, int x) { return x + e.num_threads() * 0; }
};
template <fp8moe::executor Exec>
int run(Exec const& exec, int x) {
  static_assert(fp8moe::has_dispatch<dispatch<fp8moe::executor_t<Exec>>>, "probe: include the path's header");
  return dispatch<fp8moe::executor_t<Exec>>::run(exec, x);
}
}  // namespace dispatch_probe

TEST_CASE("has_dispatch: a defined specialisation is found, an undefined one is not") {
  CHECK(dispatch_probe::run(fp8moe::host_executor{}, 41) == 41);
  static_assert(fp8moe::has_dispatch<dispatch_probe::dispatch<fp8moe::host_executor>>);
  struct other_executor {};
  static_assert(!fp8moe::has_dispatch<dispatch_probe::dispatch<other_executor>>);
  static_assert(std::is_same_v<fp8moe::executor_t<fp8moe::host_executor const&>, fp8moe::host_executor>);
}
