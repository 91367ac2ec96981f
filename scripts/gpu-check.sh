#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One prepared GPU run (Hopper H100/H200): configures for sm_90a, builds every GPU test and GPU
# benchmark (ninja -k 0: one broken target does not stop the others) plus the host SIMD test,
# runs the GPU tests with FP8MOE_REQUIRE_GPU=1 (a missing device or any CUDA error is a failure,
# never a skip) and a per-test TIMEOUT of 120 s (FP8MOE_GPU_TEST_TIMEOUT, which ctest honours; its
# --timeout does not override a TIMEOUT property), runs the GPU benchmarks (each under `timeout`),
# runs test_scaling on this host (AVX-512 kernels), prints a table of everything with pass/fail and
# time last, writes it all to $OUT (when set, else build/gpu-out) and exits 1 if anything failed.
# Dependencies the GPU machine lacks come from .deps/ (scripts/gpu-prepare.sh, carried over).
# Time: must fit in 8 minutes on a 16-core H100 with the build. Building these 13 targets from
# scratch took 196 s with 2 jobs on the 2-core dev machine (357 s of compiles in all, the longest
# one 110 s: the host test_scaling.cpp), so about 2 minutes with 16 jobs (docs/testing.md). A
# budget (GPU_CHECK_BUDGET, default 450 s from the start) caps the benchmarks (each at most 150 s);
# what did not run for lack of time is listed as a failure, and so is a benchmark with no results.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/cuda/bin:$PATH
OUT=${OUT:-$PWD/build/gpu-out}
mkdir -p "$OUT"
BUILD=${BUILD_DIR:-build/gpu}
JOBS=${JOBS:-$(nproc)}
MIN_TIME=${MIN_TIME:-0.3}
BUDGET=${GPU_CHECK_BUDGET:-450}
TEST_TIMEOUT=${FP8MOE_GPU_TEST_TIMEOUT:-120}
export FP8MOE_REQUIRE_GPU=1
t0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - t0))); }
table="$OUT/table.txt"
: >"$table"
row() { printf '%-6s %-44s %-10s %s\n' "$1" "$2" "$3" "$4" | tee -a "$table" >/dev/null; }
failed=0

if nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader >"$OUT/gpu.txt" 2>&1 &&
  [ -s "$OUT/gpu.txt" ]; then
  cat "$OUT/gpu.txt"
else
  echo "!! nvidia-smi found no GPU: $(head -c 300 "$OUT/gpu.txt")"
  row setup nvidia-smi FAILED "no GPU visible"
  failed=1
fi
[ -d .deps ] && export LD_LIBRARY_PATH=$PWD/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
# NCCL: the toolkit's, else the one PyTorch's image ships as a Python package
nccl_root=$(python3 -c 'import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
[ -n "$nccl_root" ] && export LD_LIBRARY_PATH=$nccl_root/lib:${LD_LIBRARY_PATH:-}
if ! cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP8MOE_ENABLE_CUDA=ON -DFP8MOE_ENABLE_MPI=OFF \
  -DFP8MOE_CUDA_ARCHITECTURES=90a -DFP8MOE_GPU_TEST_TIMEOUT="$TEST_TIMEOUT" -DCMAKE_PREFIX_PATH="$PWD/.deps" \
  ${nccl_root:+-DNCCL_ROOT=$nccl_root} >"$OUT/configure.log" 2>&1; then
  tail -40 "$OUT/configure.log"
  echo "!! configure failed"
  exit 1
fi
tests=$(cd "$BUILD" && ctest -L gpu -N | awk '/Test +#/{print $3}')
benches=$(ninja -C "$BUILD" -t targets all 2>/dev/null | grep -o '^bench_gpu_[A-Za-z0-9_]*' | sort -u)
if [ -z "$tests" ]; then
  echo "!! no GPU tests registered (CUDA not found?)"
  exit 1
fi
echo "== building (-j $JOBS, keep going): $tests $benches test_scaling"
tb=$(date +%s)
cmake --build "$BUILD" -j "$JOBS" --target $tests $benches test_scaling -- -k 0 >"$OUT/build.log" 2>&1
build_rc=$?
grep -E "spill|Used [0-9]+ registers" "$OUT/build.log" | sort | uniq -c | sort -rn | head -20 >"$OUT/ptxas.txt"
if [ $build_rc -ne 0 ]; then
  grep -E "error|FAILED" "$OUT/build.log" | head -40
  row build "(some targets failed: see build.log)" FAILED "$(($(date +%s) - tb)) s"
  failed=1
else
  row build "$(echo $tests $benches test_scaling | wc -w) targets" Passed "$(($(date +%s) - tb)) s"
fi
echo "== build done at $(($(date +%s) - t0)) s"

# GPU tests: one ctest run, TIMEOUT $TEST_TIMEOUT each (check: ctest --show-only=json-v1)
(cd "$BUILD" && ctest -L gpu --output-on-failure) >"$OUT/ctest.txt" 2>&1
for t in $tests; do
  line=$(grep -E "Test +#[0-9]+: $t " "$OUT/ctest.txt" | tail -1)
  res=$(echo "$line" | sed -E 's/.* \.+ *(\*\*\*)?//; s/ +[0-9.]+ sec.*//; s/^ +//')
  sec=$(echo "$line" | grep -oE '[0-9.]+ sec' | tail -1)
  [ -z "$line" ] && res="not run"
  case "$res" in Passed) ;; *) failed=1 ;; esac
  row test "$t" "${res:-?}" "${sec:-}"
done

# host SIMD kernels on this (AVX-512) host
simd=$(grep -o -m1 -E 'avx512f' /proc/cpuinfo || echo "no avx512f")
if [ -x "$BUILD/tests/scaling/test_scaling" ]; then
  ts=$(date +%s)
  if timeout 300 "$BUILD/tests/scaling/test_scaling" >"$OUT/test_scaling.txt" 2>&1; then r=Passed; else r=FAILED; failed=1; fi
  row host "test_scaling ($simd)" $r "$(($(date +%s) - ts)) s"
else
  row host "test_scaling" "not built" ""
  failed=1
fi

: >"$OUT/bench.txt"
for b in $benches; do
  exe=$(find "$BUILD" -type f -name "$b" | head -1)
  if [ ! -x "$exe" ]; then
    row bench "$b" "not built" ""
    failed=1
    continue
  fi
  cap=$(left)
  [ "$cap" -gt 150 ] && cap=150
  if [ "$cap" -lt 20 ]; then
    row bench "$b" "no time" "budget ${BUDGET} s spent"
    failed=1
    continue
  fi
  tb=$(date +%s)
  timeout "$cap" "$exe" --benchmark_min_time="$MIN_TIME" --benchmark_out="$OUT/$b.json" \
    --benchmark_out_format=json >>"$OUT/bench.txt" 2>&1
  rc=$?
  case $rc in 0) r=Passed ;; 124) r="Timeout"; failed=1 ;; *) r="FAILED($rc)"; failed=1 ;; esac
  # a benchmark that skipped itself (no device) exits 0 but measured nothing
  if [ $rc -eq 0 ] && ! grep -q '"real_time"' "$OUT/$b.json" 2>/dev/null; then
    r="no results"
    failed=1
  fi
  row bench "$b" "$r" "$(($(date +%s) - tb)) s"
done

echo
echo "================ fp8moe GPU check: $(head -1 "$OUT/gpu.txt") ================"
echo "-- benchmarks (name, time, counters)"
grep -E "^[A-Za-z_]+.*/" "$OUT/bench.txt" | awk '{ printf "%-60s %s\n", $1, substr($0, index($0,$2)) }' | cut -c1-200 | tail -60
echo "-- failures (output)"
grep -E -B2 -A12 "ERROR|FAILED|Failed|Timeout|failed" "$OUT/ctest.txt" | head -60
echo "-- every GPU test and benchmark"
printf '%-6s %-44s %-10s %s\n' kind name result time
cat "$table"
total=$(($(date +%s) - t0))
echo "-- total $total s; $( [ $failed -eq 0 ] && echo 'ALL PASSED' || echo 'SOMETHING FAILED (exit 1)')"
echo "total $total s failed=$failed" >>"$table"
exit $failed
