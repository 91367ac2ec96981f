// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Host quantize / dequantize / transpose_requantize per preset on a 4096x7168 matrix (bf16 and
// float input), once per host kernel family the CPU has (rows end in /avx512, /avx2, /portable;
// the label names the family that ran). bytes_per_second counts bytes read plus bytes written
// (input + FP8 + scales); memcpy of N bytes counts 2N. Every row is paired with its baseline:
// each iteration first copies the row's input bytes with std::memcpy split over the same OpenMP
// threads (untimed by the row), then runs the op (timed); counter x_memcpy = the op's GB/s / that
// memcpy's GB/s, so both see the same machine state (this VM's memory bandwidth drifts by up to
// 2x over seconds). All buffers are 2 MiB-aligned, transparent-huge-page advised (madvise) and
// pre-faulted by the same threads. The memcpy/* rows time the baseline alone. Run, and compare
// the x_memcpy medians:
//   OMP_NUM_THREADS=2 build/test/bench/bench_scaling --benchmark_repetitions=3
//     --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

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

int threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Byte range [b, e) of thread t of `nt` over `bytes` (64-byte multiples): the split of the
/// memcpy baseline and of the first touch of every buffer.
std::pair<std::size_t, std::size_t> thread_range(std::size_t bytes, int t, int nt) {
  std::size_t const chunk = (bytes / static_cast<std::size_t>(nt) + 63) / 64 * 64;
  std::size_t const b = std::min(bytes, static_cast<std::size_t>(t) * chunk);
  return {b, std::min(bytes, b + chunk)};
}

/// A benchmark buffer: 2 MiB-aligned, advised for transparent huge pages, pre-faulted (zeroed)
/// by the benchmark's OpenMP threads, so the baseline and the ops run on the same kind of memory.
struct buffer {
  struct release {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, release> p;
  explicit buffer(std::size_t bytes) {
    constexpr std::size_t huge = std::size_t{2} << 20;
    std::size_t const size = (std::max<std::size_t>(bytes, 1) + huge - 1) / huge * huge;
    p.reset(std::aligned_alloc(huge, size));
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p.get(), size, MADV_HUGEPAGE);  // advice only: 4 KiB pages where THP is off
#endif
    int const nt = threads();
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; ++t) {
      auto const [b, e] = thread_range(size, t, nt);
      std::memset(static_cast<char*>(p.get()) + b, 0, e - b);
    }
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p.get());
  }
};

template <class In>
In const* input() {
  static buffer const v = [] {
    auto const f = fm::test::random_normal(static_cast<std::size_t>(R * C), 1.0f, 42);
    buffer b(f.size() * sizeof(In));
    for (std::size_t i = 0; i < f.size(); ++i) b.as<In>()[i] = In(f[i]);
    return b;
  }();
  return v.as<In const>();
}

/// Baseline: memcpy of `bytes` split over the same OpenMP threads the ops use.
void memcpy_parallel(void* dst, void const* src, std::size_t bytes) {
  int const nt = threads();
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int t = 0; t < nt; ++t) {
    auto const [b, e] = thread_range(bytes, t, nt);
    if (b < e) std::memcpy(static_cast<char*>(dst) + b, static_cast<char const*>(src) + b, e - b);
  }
}

/// The baseline's source and destination (the largest input: float), shared by every row.
buffer const& memcpy_src() {
  static buffer const b(static_cast<std::size_t>(R * C) * 4);
  return b;
}
buffer const& memcpy_dst() {
  static buffer const b(static_cast<std::size_t>(R * C) * 4);
  return b;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The paired loop of every op row: per iteration memcpy of `baseline_bytes` (not counted in the
/// row's time), then `op()` (timed). Reports bytes_per_second from `bytes` per iteration, and
/// x_memcpy = (bytes / op time) / (2 * baseline_bytes / memcpy time) over all iterations.
template <class Op>
void paired(benchmark::State& st, std::int64_t bytes, std::int64_t baseline_bytes, Op&& op) {
  double op_s = 0, copy_s = 0;
  for (auto _ : st) {
    auto const c0 = std::chrono::steady_clock::now();
    memcpy_parallel(memcpy_dst().as<char>(), memcpy_src().as<char>(),
                    static_cast<std::size_t>(baseline_bytes));
    benchmark::ClobberMemory();
    copy_s += seconds_since(c0);
    auto const t0 = std::chrono::steady_clock::now();
    op();
    benchmark::ClobberMemory();
    double const s = seconds_since(t0);
    op_s += s;
    st.SetIterationTime(s);
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * bytes);
  st.counters["memcpy_ms"] = 1e3 * copy_s / static_cast<double>(st.iterations());
  st.counters["x_memcpy"] =
      (static_cast<double>(bytes) / op_s) / (2.0 * static_cast<double>(baseline_bytes) / copy_s);
}

void BM_memcpy(benchmark::State& st) {
  std::size_t const bytes = static_cast<std::size_t>(st.range(0));
  for (auto _ : st) {
    memcpy_parallel(memcpy_dst().as<char>(), memcpy_src().as<char>(), bytes);
    benchmark::DoNotOptimize(memcpy_dst().as<char>());
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

/// A quantized (rows, cols) matrix over benchmark buffers.
template <class T>
struct quantized_buffers {
  buffer data, scales;
  fs::quantized_matrix_view<T> q;
  quantized_buffers(std::int64_t rows, std::int64_t cols, fs::tile_shape tile)
      : data(static_cast<std::size_t>(rows * cols)),
        scales(static_cast<std::size_t>(fs::scale_rows(tile, rows) * fs::scale_cols(tile, cols)) * 4),
        q{fm::make_matrix(data.as<T>(), rows, cols),
          fm::make_matrix(scales.as<float>(), fs::scale_rows(tile, rows), fs::scale_cols(tile, cols)), tile} {
  }
  std::int64_t bytes() const { return q.data.rows * q.data.cols + q.scales.rows * q.scales.cols * 4; }
};

/// The host kernel family of a row (avx512, avx2 or portable: the same binary, same run), restored
/// afterwards. The row's label names the family in use.
struct isa_scope {
  fs::host_isa was;
  explicit isa_scope(fs::host_isa i) : was(fs::set_host_isa(i)) {}
  ~isa_scope() { fs::set_host_isa(was); }
};

template <class In, class T = fm::float8_e4m3_t>
void BM_quantize(benchmark::State& st, fs::tensor_recipe r, fs::host_isa isa) {
  In const* const x = input<In>();
  isa_scope const scope(isa);
  st.SetLabel(fs::host_simd_kernel());
  quantized_buffers<T> out(R, C, r.tile);
  fm::host_executor exec;
  std::int64_t const in_bytes = R * C * static_cast<std::int64_t>(sizeof(In));
  paired(st, in_bytes + out.bytes(), in_bytes,
         [&] { fs::quantize(exec, fm::make_matrix(x, R, C), r, out.q); });
}

template <class Out>
void BM_dequantize(benchmark::State& st, fs::tensor_recipe r, fs::host_isa isa) {
  isa_scope const scope(isa);
  st.SetLabel(fs::host_simd_kernel());
  fm::host_executor exec;
  quantized_buffers<fm::float8_e4m3_t> q(R, C, r.tile);
  fs::quantize(exec, fm::make_matrix(input<float>(), R, C), r, q.q);
  buffer y(static_cast<std::size_t>(R * C) * sizeof(Out));
  std::int64_t const out_bytes = R * C * static_cast<std::int64_t>(sizeof(Out));
  fs::quantized_matrix_view<fm::float8_e4m3_t const> const qc = q.q;
  paired(st, q.bytes() + out_bytes, out_bytes,
         [&] { fs::dequantize(exec, qc, fm::make_matrix(y.as<Out>(), R, C)); });
}

template <class In>
void BM_transpose_requantize(benchmark::State& st, fs::tensor_recipe r, fs::host_isa isa) {
  In const* const x = input<In>();
  isa_scope const scope(isa);
  st.SetLabel(fs::host_simd_kernel());
  quantized_buffers<fm::float8_e4m3_t> out(C, R, r.tile);
  fm::host_executor exec;
  std::int64_t const in_bytes = R * C * static_cast<std::int64_t>(sizeof(In));
  paired(st, in_bytes + out.bytes(), in_bytes,
         [&] { fs::transpose_requantize(exec, fm::make_matrix(x, R, C), r, out.q); });
}

}  // namespace

int main(int argc, char** argv) {
  auto reg = [](std::string const& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)
        ->UseManualTime()
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
  {  // whether the madvise above can give huge pages here
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string thp;
    std::getline(f, thp);
    benchmark::AddCustomContext("transparent_hugepage", thp.empty() ? "unknown" : thp);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
