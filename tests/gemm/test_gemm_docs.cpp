// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The code blocks of docs/gemm.md and docs/gemm_cuda.md are regions of test sources between a
// "// [snippet]" and a "// [/snippet]" line: gemm.md's worked example here (run on the host against
// the float64 reference), gemm_cuda.md's function template in test_gemm_device.cpp (instantiated
// for both executors, compiled by nvcc in test_gemm_device_cuda). The last test case checks that
// every ```cpp block of the two pages equals one of those regions, so the pages cannot drift.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gemm_test_util.hpp"

// [snippet]
#include <fp8moe/gemm/gemm.hpp>
namespace fg = fp8moe::gemm;
using e4m3 = fp8moe::float8_e4m3_t;
using bf16 = fp8moe::bfloat16_t;
// [/snippet]

namespace ft = fp8moe::test;

TEST_CASE("docs/gemm.md worked example: forward, dX on transposed(W), expert weight gradient, workspace") {
  std::int64_t const T = 64, H = 256, N = 384, E = 2;
  std::vector<int> const tokens = {128, 0};  // tokens per expert (multiples of the 128 K tile)
  auto const xq = ft::quantize_gen<e4m3>(ft::value_gen{1}, T, H, fp8moe::scaling::tile_1x128);
  auto const wq = ft::quantize_gen<e4m3>(ft::value_gen{2, 0.02f}, N, H, fp8moe::scaling::block_128x128);
  auto const dyq = ft::quantize_gen<e4m3>(ft::value_gen{3}, T, N, fp8moe::scaling::tile_1x128);
  auto const dy_t = ft::quantize_gen<e4m3>(ft::value_gen{4}, N, 128, fp8moe::scaling::tile_1x128);
  auto const x_t = ft::quantize_gen<e4m3>(ft::value_gen{5}, H, 128, fp8moe::scaling::tile_1x128);
  ft::out_mat<bf16> y_buf(T, N), y2_buf(T, N);
  ft::out_mat<float> dx_buf(T, H), dw_buf(E * N, H);
  std::fill_n(dw_buf.buf.data(), dw_buf.buf.size(), 0.5f);  // dW += ...: the accumulator starts at 0.5
  fp8moe::matrix_view<bf16> y = y_buf.view();
  fp8moe::matrix_view<float> dx = dx_buf.view();
  fp8moe::batched_matrix_view<float> dw{dw_buf.buf.data(), E, N, H, N * dw_buf.ld, dw_buf.ld, 1};
  fp8moe::matrix_view<bf16> y2 = y2_buf.view();
  // clang-format off
  // [snippet]
  fp8moe::host_executor exec;                          // or fp8moe::cuda_executor{stream}: same calls
  // xq: (T,H) e4m3 + (T, H/128) scales, tile 1x128      (activations)
  // wq: (N,H) e4m3 + (N/128, H/128) scales, tile 128x128 (weights)
  fg::fp8_gemm(exec, xq.view(), wq.view(), y);         // y (T,N) bf16, D = A * B^T

  // backward: dX = dY * W on the same 128x128-scaled W, no re-quantization (host path)
  fg::fp8_gemm(exec, dyq.view(), fg::transposed(wq.view()), dx);   // dx (T,H)

  // weight gradient of E experts: dW_e += dY_e^T X_e, operands 1x128 along the token axis
  fg::grouped_gemm(exec, fg::k_grouped<e4m3, e4m3>{dy_t.view(), x_t.view(), {tokens.data(), E}, dw, dw});

  // hot path: caller-owned workspace (inside, only the small job list is allocated)
  std::vector<std::byte> ws(fg::workspace_bytes(exec));
  fg::fp8_gemm(exec, fg::dense<e4m3, e4m3, bf16>{xq.view(), wq.view(), y, {}}, {}, ws);
  // [/snippet]
  // clang-format on

  // every output against the float64 reference (tolerances of gemm_test_util.hpp)
  fg::fp8_gemm(exec, xq.view(), wq.view(), y2);  // the allocating overload: the same bits
  CHECK(std::memcmp(y_buf.buf.data(), y2_buf.buf.data(), y_buf.buf.size() * sizeof(bf16)) == 0);
  auto const wt = fg::transposed(wq.view());
  int bad = 0;
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t n = 0; n < N; ++n) {
      double const exact = fg::reference::block_scaled_dot(xq.view(), t, wq.view(), n, 0, H, 128);
      double const mag = ft::magnitude(xq.view(), t, wq.view(), n, 0, H);
      if (!(std::fabs(y_buf.at(t, n) - exact) <= ft::tolerance(exact, mag, 128, H, true))) ++bad;
    }
    for (std::int64_t h = 0; h < H; ++h) {
      double const exact = fg::reference::block_scaled_dot(dyq.view(), t, wt, h, 0, N, 128);
      double const mag = ft::magnitude(dyq.view(), t, wt, h, 0, N);
      if (!(std::fabs(dx_buf.at(t, h) - exact) <= ft::tolerance(exact, mag, 128, N, false))) ++bad;
    }
  }
  for (std::int64_t n = 0; n < N; ++n) {
    for (std::int64_t h = 0; h < H; ++h) {
      double const exact = fg::reference::block_scaled_dot(dy_t.view(), n, x_t.view(), h, 0, 128, 128, 0.5);
      double const mag = ft::magnitude(dy_t.view(), n, x_t.view(), h, 0, 128, 0.5);
      if (!(std::fabs(dw(0, n, h) - exact) <= ft::tolerance(exact, mag, 128, 128, false))) ++bad;
      if (dw(1, n, h) != 0.5f) ++bad;  // the expert without tokens keeps C
    }
  }
  CHECK(bad == 0);
}

namespace {
std::string read_text(std::string const& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(std::string const& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

/// Lines with the indentation common to the non-empty ones removed, trailing blanks trimmed.
std::string dedent(std::vector<std::string> const& lines) {
  std::size_t ind = std::string::npos;
  for (auto const& l : lines)
    if (l.find_first_not_of(' ') != std::string::npos) ind = std::min(ind, l.find_first_not_of(' '));
  std::string out;
  for (auto const& l : lines) {
    std::string t = l.size() > ind ? l.substr(ind) : std::string();
    t.erase(t.find_last_not_of(' ') + 1);
    out += t + "\n";
  }
  return out;
}

/// The blocks between an opening line equal to `open` and the next line equal to `close`.
std::vector<std::string> blocks(std::string const& text, std::string const& open, std::string const& close) {
  std::vector<std::string> out, cur;
  bool in = false;
  for (auto const& l : lines_of(text)) {
    std::string const t = l.substr(std::min(l.size(), l.find_first_not_of(' ')));
    if (!in && t == open) {
      in = true;
      cur.clear();
    } else if (in && t == close) {
      in = false;
      out.push_back(dedent(cur));
    } else if (in) {
      cur.push_back(l);
    }
  }
  return out;
}
}  // namespace

TEST_CASE("every ```cpp block of docs/gemm.md and docs/gemm_cuda.md is a snippet region of a compiled test") {
  std::string const root = FP8MOE_SOURCE_DIR;
  std::vector<std::string> regions;
  for (char const* src : {"/tests/gemm/test_gemm_docs.cpp", "/tests/gemm/test_gemm_device.cpp"})
    for (auto const& r : blocks(read_text(root + src), "// [snippet]", "// [/snippet]")) regions.push_back(r);
  REQUIRE(regions.size() == 3);  // this file's two, test_gemm_device.cpp's one
  std::vector<int> shown(regions.size(), 0);
  for (char const* doc : {"/docs/gemm.md", "/docs/gemm_cuda.md"}) {
    for (auto const& b : blocks(read_text(root + doc), "```cpp", "```")) {
      CAPTURE(doc);
      CAPTURE(b);
      auto const it = std::find(regions.begin(), regions.end(), b);
      CHECK(it != regions.end());  // a block that is no region: the page shows code no test compiles
      if (it != regions.end()) ++shown[static_cast<std::size_t>(it - regions.begin())];
    }
  }
  for (std::size_t i = 0; i < regions.size(); ++i) {
    CAPTURE(regions[i]);
    CHECK(shown[i] == 1);  // each region appears once in the pages
  }
}
