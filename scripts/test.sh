#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: installs what is missing (Debian/apt), configures, builds (host tests, and the
# CUDA targets with nvcc where it exists: compile only without a GPU), and runs every ctest test
# that can run here, MPI and packaging tests included.
#   scripts/test.sh                 # everything
#   FP8MOE_TEST_ARGS="-L mpi" scripts/test.sh   # pass extra arguments to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

BUILD_DIR=${BUILD_DIR:-build/test}
JOBS=${JOBS:-$(nproc)}
cuda_opt=-DFP8MOE_ENABLE_CUDA=ON
command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || cuda_opt=-DFP8MOE_ENABLE_CUDA=OFF
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH

start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release $cuda_opt
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "== build took $(( $(date +%s) - start )) s"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" ${FP8MOE_TEST_ARGS:-}
echo "== scripts/test.sh took $(( $(date +%s) - start )) s"
