#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One prepared GPU run (Hopper H100/H200): configures for sm_90a, builds every GPU test and GPU
# benchmark with all cores, runs `ctest -L gpu`, runs the GPU benchmarks, prints a short table last.
# Dependencies the GPU machine lacks come from .deps/ (scripts/gpu-prepare.sh, carried over).
# Results are also written to $OUT (when set) for the device tool to bring back. Target: < 8 min.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/cuda/bin:$PATH
OUT=${OUT:-$PWD/build/gpu-out}
mkdir -p "$OUT"
BUILD=${BUILD_DIR:-build/gpu}
JOBS=${JOBS:-$(nproc)}
MIN_TIME=${MIN_TIME:-0.3}
t0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
[ -d .deps ] && export LD_LIBRARY_PATH=$PWD/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
# NCCL: the toolkit's, else the one PyTorch's image ships as a Python package
nccl_root=$(python3 -c 'import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
[ -n "$nccl_root" ] && export LD_LIBRARY_PATH=$nccl_root/lib:$LD_LIBRARY_PATH
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP8MOE_ENABLE_CUDA=ON -DFP8MOE_ENABLE_MPI=OFF \
  -DFP8MOE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH="$PWD/.deps" ${nccl_root:+-DNCCL_ROOT=$nccl_root} >"$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
tests=$(cd "$BUILD" && ctest -L gpu -N | awk '/Test +#/{print $3}')
benches=$(ninja -C "$BUILD" -t targets all 2>/dev/null | grep -o '^bench_gpu_[A-Za-z0-9_]*' | sort -u)
echo "== building: $tests $benches"
cmake --build "$BUILD" -j "$JOBS" --target $tests $benches >"$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; }
grep -E "spill|Used [0-9]+ registers" "$OUT/build.log" | sort | uniq -c | sort -rn | head -20 > "$OUT/ptxas.txt"
echo "== build done at $(( $(date +%s) - t0 )) s"
(cd "$BUILD" && ctest -L gpu --output-on-failure --timeout 240) 2>&1 | tee "$OUT/ctest.txt"
: > "$OUT/bench.txt"
for b in $benches; do
  exe=$(find "$BUILD" -type f -name "$b" | head -1)
  [ -x "$exe" ] || continue
  timeout 180 "$exe" --benchmark_min_time="$MIN_TIME" --benchmark_out="$OUT/$b.json" --benchmark_out_format=json \
    2>&1 | tee -a "$OUT/bench.txt"
done
echo
echo "================ fp8moe GPU check: $(cat "$OUT/gpu.txt") ================"
echo "-- tests"
grep -E "tests passed|Test +#.*(Passed|Failed|Skipped|Timeout)" "$OUT/ctest.txt" | sed 's/^ *//' | tail -40
echo "-- benchmarks (name, time, counters)"
grep -E "^[A-Za-z_]+.*/" "$OUT/bench.txt" | awk '{ printf "%-60s %s\n", $1, substr($0, index($0,$2)) }' | cut -c1-200 | tail -60
echo "-- total $(( $(date +%s) - t0 )) s"
