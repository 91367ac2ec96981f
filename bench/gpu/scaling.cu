// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// GPU quantize / dequantize / transpose_requantize per preset on 4096x7168, timed with CUDA
// events around each launch (manual time), against a cudaMemcpyAsync device-to-device copy of
// the input in the same run. bytes_per_second = bytes read + bytes written (copy of N counts 2N).
// Goal: >= 85% of the copy's bandwidth. Run: build/bench/bench_gpu_scaling
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "fp8moe/core/cuda/executor.hpp"
#include "fp8moe/scaling/cuda/quantize.cuh"
#include "fp8moe/scaling/scaling.hpp"
#include "test_support.hpp"

namespace fm = fp8moe;
namespace fs = fp8moe::scaling;

namespace {

constexpr std::int64_t R = 4096, C = 7168;  // (T,H)

struct device_state {
  cudaStream_t stream{};
  cudaEvent_t start{}, stop{};
  void* x = nullptr;               // (R,C) float input
  void* xb = nullptr;              // (R,C) the same values in bf16
  void* y = nullptr;               // copy destination / dequantized output, as large as a float input
  fm::float8_e4m3_t* q = nullptr;  // (R,C)
  float* s = nullptr;              // scales, large enough for every recipe (C/32 per row)
  device_state() {
    FP8MOE_CUDA_CHECK(cudaStreamCreate(&stream));
    FP8MOE_CUDA_CHECK(cudaEventCreate(&start));
    FP8MOE_CUDA_CHECK(cudaEventCreate(&stop));
    FP8MOE_CUDA_CHECK(cudaMalloc(&x, R * C * 4));
    FP8MOE_CUDA_CHECK(cudaMalloc(&y, R * C * 4));
    FP8MOE_CUDA_CHECK(cudaMalloc(&q, R * C));
    FP8MOE_CUDA_CHECK(cudaMalloc(&s, R * (C / 32 + 4) * 4));
    auto const h = fm::test::random_normal(static_cast<std::size_t>(R * C), 1.0f, 9);  // never zeros
    FP8MOE_CUDA_CHECK(cudaMemcpy(x, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    std::vector<fm::bfloat16_t> hb(h.size());
    for (std::size_t i = 0; i < h.size(); ++i) hb[i] = fm::bfloat16_t(h[i]);
    FP8MOE_CUDA_CHECK(cudaMalloc(&xb, R * C * 2));
    FP8MOE_CUDA_CHECK(cudaMemcpy(xb, hb.data(), hb.size() * 2, cudaMemcpyHostToDevice));
  }
};

device_state& dev() {
  static device_state d;
  return d;
}

/// Times `f` (enqueued on the stream) with events; manual time in seconds.
template <class F>
void time_loop(benchmark::State& st, F&& f, std::int64_t bytes) {
  auto& d = dev();
  f();  // warm-up
  FP8MOE_CUDA_CHECK(cudaStreamSynchronize(d.stream));
  for (auto _ : st) {
    FP8MOE_CUDA_CHECK(cudaEventRecord(d.start, d.stream));
    f();
    FP8MOE_CUDA_CHECK(cudaEventRecord(d.stop, d.stream));
    FP8MOE_CUDA_CHECK(cudaEventSynchronize(d.stop));
    float ms = 0;
    FP8MOE_CUDA_CHECK(cudaEventElapsedTime(&ms, d.start, d.stop));
    st.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * bytes);
}

void copy_baseline(benchmark::State& st, std::int64_t bytes) {
  auto& d = dev();
  time_loop(
      st,
      [&] {
        FP8MOE_CUDA_CHECK(
            cudaMemcpyAsync(d.y, d.x, static_cast<std::size_t>(bytes), cudaMemcpyDeviceToDevice, d.stream));
      },
      2 * bytes);
}

template <class In>
void quantize_bench(benchmark::State& st, fs::tensor_recipe r) {
  auto& d = dev();
  fm::cuda_executor exec{d.stream};
  auto const x = fm::make_matrix(static_cast<In const*>(std::is_same_v<In, float> ? d.x : d.xb), R, C);
  fs::quantized_matrix_view<fm::float8_e4m3_t> out{
      fm::make_matrix(d.q, R, C), fm::make_matrix(d.s, fs::scale_rows(r.tile, R), fs::scale_cols(r.tile, C)),
      r.tile};
  std::int64_t const bytes = R * C * static_cast<std::int64_t>(sizeof(In)) + R * C + out.scales.size() * 4;
  time_loop(
      st, [&] { fs::quantize(exec, x, r, out); }, bytes);
}

template <class Out>
void dequantize_bench(benchmark::State& st, fs::tensor_recipe r) {
  auto& d = dev();
  fm::cuda_executor exec{d.stream};
  fs::quantized_matrix_view<fm::float8_e4m3_t const> q{
      fm::make_matrix<fm::float8_e4m3_t const>(d.q, R, C),
      fm::make_matrix<float const>(d.s, fs::scale_rows(r.tile, R), fs::scale_cols(r.tile, C)), r.tile};
  fs::quantize(exec, fm::make_matrix(static_cast<float const*>(d.x), R, C), r,
               fs::quantized_matrix_view<fm::float8_e4m3_t>{
                   fm::make_matrix(d.q, R, C), fm::make_matrix(d.s, q.scales.rows, q.scales.cols), r.tile});
  auto const y = fm::make_matrix(static_cast<Out*>(d.y), R, C);
  std::int64_t const bytes = R * C + q.scales.size() * 4 + R * C * static_cast<std::int64_t>(sizeof(Out));
  time_loop(
      st, [&] { fs::dequantize(exec, q, y); }, bytes);
}

void transpose_bench(benchmark::State& st, fs::tensor_recipe r) {
  auto& d = dev();
  fm::cuda_executor exec{d.stream};
  auto const x = fm::make_matrix(static_cast<fm::bfloat16_t const*>(d.xb), R, C);
  fs::quantized_matrix_view<fm::float8_e4m3_t> out{
      fm::make_matrix(d.q, C, R), fm::make_matrix(d.s, C, fs::scale_cols(r.tile, R)), r.tile};
  std::int64_t const bytes = R * C * 2 + R * C + out.scales.size() * 4;
  time_loop(
      st, [&] { fs::transpose_requantize(exec, x, r, out); }, bytes);
}

}  // namespace

int main(int argc, char** argv) {
  if (fm::cuda_device_count() == 0) {
    std::printf("no CUDA device: GPU benchmarks skipped\n");
    return 0;
  }
  auto reg = [](std::string const& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(0.2);
  };
  reg("copy_d2d/bf16_input_bytes", [](benchmark::State& st) { copy_baseline(st, R * C * 2); });
  reg("copy_d2d/float_input_bytes", [](benchmark::State& st) { copy_baseline(st, R * C * 4); });
  struct named {
    char const* name;
    fs::tensor_recipe r;
  };
  named const cases[] = {{"deepseek_v3.activation_1x128", fs::deepseek_v3.activation},
                         {"deepseek_v3.weight_128x128", fs::deepseek_v3.weight},
                         {"deepseek_v3_ue8m0.activation", fs::deepseek_v3_ue8m0.activation},
                         {"te_current_per_tensor", fs::te_current.activation},
                         {"te_blockwise.activation", fs::te_blockwise.activation},
                         {"mxfp8", fs::mxfp8.activation}};
  for (auto const& c : cases) {
    fs::tensor_recipe const r = c.r;
    reg(std::string("quantize/bf16/") + c.name,
        [r](benchmark::State& st) { quantize_bench<fm::bfloat16_t>(st, r); });
    reg(std::string("quantize/float/") + c.name, [r](benchmark::State& st) { quantize_bench<float>(st, r); });
  }
  reg("dequantize/to_bf16/deepseek_v3.activation",
      [](benchmark::State& st) { dequantize_bench<fm::bfloat16_t>(st, fs::deepseek_v3.activation); });
  reg("dequantize/to_float/deepseek_v3.weight",
      [](benchmark::State& st) { dequantize_bench<float>(st, fs::deepseek_v3.weight); });
  reg("transpose_requantize/bf16/deepseek_v3_ue8m0.activation",
      [](benchmark::State& st) { transpose_bench(st, fs::deepseek_v3_ue8m0.activation); });
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
