#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job: builds and runs the fp8moe demos on the host (installs missing Debian packages first):
#   1. quantize_tour  - FP8 conversions and every scaling recipe on a random activation
#   2. moe_layer      - one DeepSeek-V3-style MoE layer (router, FP8 experts, forward + backward) checked
#                       against a float64 model, the bias update, and the DualPipe schedule it trains in
#   3. pipeline_timeline - the DualPipe timeline for PP=8, 20 micro-batches, written as an SVG
#   4. expert_parallel - the MoE layer split over 2 MPI ranks by expert parallelism (shared-memory
#                       dispatch / combine), bit for bit equal to the same layer on one rank
# (The full DeepSeek-V3 model demo replaces this once it exists.) Exit status 0 = every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build/demo}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP8MOE_ENABLE_CUDA=OFF -DFP8MOE_BUILD_TESTS=OFF \
  -DFP8MOE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target quantize_tour moe_layer pipeline_timeline expert_parallel >/dev/null
echo "=================== 1. numerics and scaling (examples/quantize_tour) ==================="
"$BUILD_DIR"/examples/quantize_tour/quantize_tour
echo
echo "=================== 2. one MoE layer on one rank (examples/moe_layer) =================="
"$BUILD_DIR"/examples/moe_layer/moe_layer "$@"
echo
echo "=================== 3. DualPipe timeline (examples/pipeline_timeline) ==================="
"$BUILD_DIR"/examples/pipeline_timeline/pipeline_timeline --schedule dualpipe --pp 8 --mb 20 \
  --svg "$BUILD_DIR"/dualpipe.svg --json "$BUILD_DIR"/dualpipe.json | tail -n 12
echo "timeline picture: $BUILD_DIR/dualpipe.svg (per-rank actions: $BUILD_DIR/dualpipe.json)"
echo
echo "=================== 4. expert parallelism over 2 MPI ranks (examples/expert_parallel) ==="
OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS \
  "$BUILD_DIR"/examples/expert_parallel/expert_parallel
