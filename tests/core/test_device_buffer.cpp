// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// core/cuda/device_buffer.hpp: device_buffer / device_matrix. Built with the host compiler (linked to
// the CUDA runtime) and with nvcc. Argument checks, empty buffers and move-only ownership run
// everywhere; allocation, copies and strides run where a device is visible, and where none is the
// allocation must fail with an fp8moe::error that names cudaMallocAsync.
#include <doctest/doctest.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fp8moe/core/cuda/device_buffer.hpp"

using namespace fp8moe;

static_assert(!std::is_copy_constructible_v<device_buffer<float>> &&
              !std::is_copy_assignable_v<device_buffer<float>>);
static_assert(std::is_nothrow_move_constructible_v<device_buffer<float>> &&
              std::is_nothrow_move_assignable_v<device_buffer<float>>);
static_assert(!std::is_copy_constructible_v<device_matrix<float>> &&
              std::is_nothrow_move_constructible_v<device_matrix<float>>);
// views and spans of a temporary do not compile (they would dangle at the end of the statement)
template <class M>
concept viewable = requires(M&& m) {
  static_cast<M&&>(m).view();
};
template <class B>
concept spannable = requires(B&& b) {
  static_cast<B&&>(b).span();
};
static_assert(viewable<device_matrix<float>&> && viewable<device_matrix<float> const&>);
static_assert(!viewable<device_matrix<float>> && !viewable<device_matrix<float> const>);
static_assert(spannable<device_buffer<float>&> && !spannable<device_buffer<float>>);
static_assert(std::is_same_v<decltype(std::declval<device_matrix<float>&>().view()), matrix_view<float>>);
static_assert(
    std::is_same_v<decltype(std::declval<device_matrix<float> const&>().view()), matrix_view<float const>>);

namespace {

bool has_device() {
  return cuda_device_count() > 0;
}

template <class F>
std::string error_text(F&& f, errc* code = nullptr) {
  try {
    f();
  } catch (error const& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return {};
}

}  // namespace

TEST_CASE("device_buffer / device_matrix: empty ones hold no allocation and move") {
  cuda_executor const exec{};
  device_buffer<float> a;
  CHECK(a.data() == nullptr);
  CHECK(a.size() == 0);
  CHECK(a.empty());
  device_buffer<float> b(0, exec);  // no CUDA call: works without a device
  CHECK(b.data() == nullptr);
  CHECK(b.span().empty());
  b.fill_bytes(0xFF);                          // nothing to fill
  b.copy_from_host(std::span<float const>{});  // nothing to copy
  device_buffer<float> c = std::move(b);
  CHECK(c.empty());
  device_matrix<float> m(0, 5, exec);
  CHECK(m.rows() == 0);
  CHECK(m.cols() == 5);
  CHECK(m.row_stride() == 5);
  CHECK(m.data() == nullptr);
  matrix_view<float const> const v = std::as_const(m).view();
  CHECK(v.empty());
}

TEST_CASE("device_matrix rejects bad extents and strides before allocating") {
  cuda_executor const exec{};
  errc code = errc::internal;
  std::string const neg = error_text([&] { device_matrix<float>(-1, 4, exec); }, &code);
  CHECK(code == errc::invalid_argument);
  CHECK(neg.find("fp8moe::device_matrix") != std::string::npos);
  CHECK(neg.find("rows/cols") != std::string::npos);
  std::string const stride = error_text([&] { device_matrix<float>(2, 8, exec, 4); });
  CHECK(stride.find("row_stride") != std::string::npos);
  CHECK(stride.find("got 4") != std::string::npos);
  std::string const huge = error_text([&] { device_buffer<double>(~std::size_t{0} / 4, exec); });
  CHECK(huge.find("argument 'n'") != std::string::npos);
}

TEST_CASE("device_buffer without a device: the allocation throws an error naming cudaMallocAsync") {
  if (has_device()) return;  // the next case runs instead
  errc code = errc::internal;
  std::string const msg = error_text([] { device_buffer<float>(16, cuda_executor{}); }, &code);
  CHECK(code == errc::cuda);
  CHECK(msg.find("cudaMallocAsync") != std::string::npos);
}

TEST_CASE("device_buffer / device_matrix on a device: stream-ordered allocation, copies, strides, moves") {
  if (!has_device()) return;  // checked by the case above
  cudaStream_t s = nullptr;
  FP8MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cuda_executor const exec{s};
  {
    std::vector<std::int32_t> h(1000);
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<std::int32_t>(i * 7 - 3);
    device_buffer<std::int32_t> d(h.size(), exec);
    REQUIRE(d.data() != nullptr);
    CHECK(d.size() == 1000);
    CHECK(d.bytes() == 4000);
    CHECK(d.stream() == s);
    d.copy_from_host(h);
    std::vector<std::int32_t> back(h.size(), -1);
    d.copy_to_host(back);
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(s));
    CHECK(back == h);
    // a size mismatch is refused before anything is copied
    std::vector<std::int32_t> small(999, 5);
    CHECK(error_text([&] { d.copy_to_host(small); }).find("999") != std::string::npos);
    CHECK(small[0] == 5);
    d.fill_bytes(0xFF);
    d.copy_to_host(back);
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(s));
    CHECK(back[0] == -1);
    CHECK(back[999] == -1);
    // moves hand the allocation over; the source is empty and frees nothing
    std::int32_t* const p = d.data();
    device_buffer<std::int32_t> e = std::move(d);
    CHECK(e.data() == p);
    CHECK(d.data() == nullptr);  // NOLINT(bugprone-use-after-move): moved-from state is specified
    CHECK(d.size() == 0);
    device_buffer<std::int32_t> f(3, exec);
    f = std::move(e);  // frees f's three elements, takes e's
    CHECK(f.data() == p);
    CHECK(f.size() == 1000);
    f.reset();
    CHECK(f.empty());
  }
  {
    // a padded device matrix: the padding is never written by the copies
    std::int64_t const R = 5, C = 7, ld = 16;
    std::vector<float> h(static_cast<std::size_t>(R * C));
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = 0.5f * static_cast<float>(i) - 3.0f;
    device_matrix<float> m(R, C, exec, ld);
    CHECK(m.row_stride() == ld);
    CHECK(m.buffer().size() == static_cast<std::size_t>(R * ld));
    m.buffer().fill_bytes(0xFF);
    m.copy_from_host(make_matrix<float const>(h.data(), R, C));
    matrix_view<float> const v = m.view();
    CHECK(v.rows == R);
    CHECK(v.cols == C);
    CHECK(v.row_stride == ld);
    CHECK(v.col_stride == 1);
    std::vector<float> raw(static_cast<std::size_t>(R * ld));
    m.buffer().copy_to_host(raw);
    std::vector<float> back(static_cast<std::size_t>(R * C), 9.0f);
    m.copy_to_host(make_matrix(back.data(), R, C));
    FP8MOE_CUDA_CHECK(cudaStreamSynchronize(s));
    CHECK(back == h);
    CHECK(raw[static_cast<std::size_t>(ld + 2)] == h[static_cast<std::size_t>(C + 2)]);
    CHECK(raw[static_cast<std::size_t>(C)] != raw[static_cast<std::size_t>(C)]);  // padding still NaN
    // a host matrix of another shape is refused
    std::string const msg = error_text([&] { m.copy_to_host(make_matrix(back.data(), C, R)); });
    CHECK(msg.find("argument 'host'") != std::string::npos);
  }
  FP8MOE_CUDA_CHECK(cudaStreamSynchronize(s));
  FP8MOE_CUDA_CHECK(cudaStreamDestroy(s));
}
