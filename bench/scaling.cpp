// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host quantize / dequantize / transpose_requantize per preset on a 4096x7168 matrix (bf16 and
// float input), with a memcpy baseline in the same run, once per host kernel family the CPU has
// (rows end in /avx512, /avx2, /portable; the label names the family that ran). bytes_per_second
// counts bytes read plus bytes written (input + FP8 + scales); memcpy of N bytes counts 2N. On a
// shared machine compare medians (or the "min" aggregates) of interleaved repetitions:
//   OMP_NUM_THREADS=2 build/test/bench/bench_scaling --benchmark_repetitions=3
//     --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "fp8moe/scaling/scaling.hpp"
#include "test_support.hpp"

namespace fm = fp8moe;
namespace fs = fp8moe::scaling;

namespace {

/// Fastest repetition: interference from other processes only ever adds time.
double min_of(std::vector<double> const& v) {
  return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
}

constexpr std::int64_t R = 4096, C = 7168;  // (T,H) of a DeepSeek-V3 activation block

template <class In>
std::vector<In> const& input() {
  static std::vector<In> const v = [] {
    auto const f = fm::test::random_normal(static_cast<std::size_t>(R * C), 1.0f, 42);
    std::vector<In> out(f.size());
    for (std::size_t i = 0; i < f.size(); ++i) out[i] = In(f[i]);
    return out;
  }();
  return v;
}

/// Baseline: memcpy of `bytes` split over the same OpenMP threads the ops use.
void memcpy_parallel(void* dst, void const* src, std::size_t bytes) {
  int nt = 1;
#if defined(_OPENMP)
  nt = omp_get_max_threads();
#endif
  std::size_t const chunk = (bytes / static_cast<std::size_t>(nt) + 63) / 64 * 64;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int t = 0; t < nt; ++t) {
    std::size_t const b = static_cast<std::size_t>(t) * chunk;
    if (b < bytes)
      std::memcpy(static_cast<char*>(dst) + b, static_cast<char const*>(src) + b, std::min(chunk, bytes - b));
  }
}

void BM_memcpy(benchmark::State& st) {
  std::size_t const bytes = static_cast<std::size_t>(st.range(0));
  std::vector<char> a(bytes, 1), b(bytes, 0);
  for (auto _ : st) {
    memcpy_parallel(b.data(), a.data(), bytes);
    benchmark::DoNotOptimize(b.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * 2 * static_cast<std::int64_t>(bytes));
}
// the input sizes of the quantize benchmarks: bf16 (2 B/elem) and float (4 B/elem)
BENCHMARK(BM_memcpy)
    ->Name("memcpy/bf16_input_bytes")
    ->Arg(R* C * 2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->ComputeStatistics("min", min_of);
BENCHMARK(BM_memcpy)
    ->Name("memcpy/float_input_bytes")
    ->Arg(R* C * 4)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->ComputeStatistics("min", min_of);

/// The host kernel family of a row (avx512, avx2 or portable: the same binary, same run), restored
/// afterwards. The row's label names the family in use.
struct isa_scope {
  fs::host_isa was;
  explicit isa_scope(fs::host_isa i) : was(fs::set_host_isa(i)) {}
  ~isa_scope() { fs::set_host_isa(was); }
};

template <class In, class T = fm::float8_e4m3_t>
void BM_quantize(benchmark::State& st, fs::tensor_recipe r, fs::host_isa isa) {
  auto const& x = input<In>();
  isa_scope const scope(isa);
  st.SetLabel(fs::host_simd_kernel());
  fs::quantized_matrix<T> q(R, C, r.tile);
  fm::host_executor exec;
  for (auto _ : st) {
    fs::quantize(exec, fm::make_matrix(x.data(), R, C), r, q.view());
    benchmark::DoNotOptimize(q.data.data());
    benchmark::ClobberMemory();
  }
  std::int64_t const bytes =
      R * C * static_cast<std::int64_t>(sizeof(In)) + R * C + q.scales.rows() * q.scales.cols() * 4;
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * bytes);
}

template <class Out>
void BM_dequantize(benchmark::State& st, fs::tensor_recipe r, fs::host_isa isa) {
  isa_scope const scope(isa);
  st.SetLabel(fs::host_simd_kernel());
  auto const& x = input<float>();
  fm::host_executor exec;
  auto const q = fs::quantize(exec, fm::make_matrix(x.data(), R, C), r);
  fm::host_matrix<Out> y(R, C);
  for (auto _ : st) {
    fs::dequantize(exec, q.view(), y.view());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  std::int64_t const bytes =
      R * C + q.scales.rows() * q.scales.cols() * 4 + R * C * static_cast<std::int64_t>(sizeof(Out));
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * bytes);
}

template <class In>
void BM_transpose_requantize(benchmark::State& st, fs::tensor_recipe r, fs::host_isa isa) {
  auto const& x = input<In>();
  isa_scope const scope(isa);
  st.SetLabel(fs::host_simd_kernel());
  fs::quantized_matrix<fm::float8_e4m3_t> q(C, R, r.tile);
  fm::host_executor exec;
  for (auto _ : st) {
    fs::transpose_requantize(exec, fm::make_matrix(x.data(), R, C), r, q.view());
    benchmark::DoNotOptimize(q.data.data());
    benchmark::ClobberMemory();
  }
  std::int64_t const bytes =
      R * C * static_cast<std::int64_t>(sizeof(In)) + R * C + q.scales.rows() * q.scales.cols() * 4;
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * bytes);
}

}  // namespace

int main(int argc, char** argv) {
  auto reg = [](std::string const& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->ComputeStatistics("min", min_of);
  };
  struct named {
    char const* name;
    fs::tensor_recipe r;
  };
  named const bf16_cases[] = {{"deepseek_v3.activation_1x128", fs::deepseek_v3.activation},
                              {"deepseek_v3.weight_128x128", fs::deepseek_v3.weight},
                              {"deepseek_v3_ue8m0.activation", fs::deepseek_v3_ue8m0.activation},
                              {"te_current_per_tensor", fs::te_current.activation},
                              {"te_blockwise.activation", fs::te_blockwise.activation},
                              {"mxfp8", fs::mxfp8.activation},
                              {"mxfp8_ocp", fs::mxfp8_ocp.activation}};
  // every hand-written family the CPU has, and the portable loops for the main cases
  std::vector<fs::host_isa> isas;
  for (fs::host_isa const i : {fs::host_isa::avx512, fs::host_isa::avx2})
    if (fs::host_isa_supported(i)) isas.push_back(i);
  std::vector<fs::host_isa> with_portable = isas;
  with_portable.push_back(fs::host_isa::portable);
  auto const suffix = [](fs::host_isa i) { return std::string("/") + fs::host_isa_name(i); };
  for (auto const& c : bf16_cases) {
    fs::tensor_recipe const r = c.r;
    bool const main_case = &c == &bf16_cases[0] || &c == &bf16_cases[1] || &c == &bf16_cases[5];
    for (fs::host_isa const i : main_case ? with_portable : isas)
      reg(std::string("quantize/bf16/") + c.name + suffix(i),
          [r, i](benchmark::State& st) { BM_quantize<fm::bfloat16_t>(st, r, i); });
  }
  named const float_cases[] = {{"deepseek_v3.activation_1x128", fs::deepseek_v3.activation},
                               {"deepseek_v3.weight_128x128", fs::deepseek_v3.weight},
                               {"te_current_per_tensor", fs::te_current.activation}};
  for (auto const& c : float_cases) {
    fs::tensor_recipe const r = c.r;
    for (fs::host_isa const i : &c == &float_cases[0] ? with_portable : isas)
      reg(std::string("quantize/float/") + c.name + suffix(i),
          [r, i](benchmark::State& st) { BM_quantize<float>(st, r, i); });
  }
  for (fs::host_isa const i : isas) {
    reg("quantize/bf16/te_current.gradient_e5m2" + suffix(i), [i](benchmark::State& st) {
      BM_quantize<fm::bfloat16_t, fm::float8_e5m2_t>(st, fs::te_current.gradient, i);
    });
  }
  for (fs::host_isa const i : with_portable) {
    reg("dequantize/to_bf16/deepseek_v3.activation" + suffix(i),
        [i](benchmark::State& st) { BM_dequantize<fm::bfloat16_t>(st, fs::deepseek_v3.activation, i); });
    reg("dequantize/to_float/deepseek_v3.weight" + suffix(i),
        [i](benchmark::State& st) { BM_dequantize<float>(st, fs::deepseek_v3.weight, i); });
    reg("transpose_requantize/bf16/deepseek_v3_ue8m0.activation" + suffix(i), [i](benchmark::State& st) {
      BM_transpose_requantize<fm::bfloat16_t>(st, fs::deepseek_v3_ue8m0.activation, i);
    });
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
