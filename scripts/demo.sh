#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job: builds and runs the fp8moe demo (for now the numerics/quantization tour; the
# DeepSeek-V3 model demo replaces it once it exists). Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build/demo}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP8MOE_ENABLE_CUDA=OFF -DFP8MOE_BUILD_TESTS=OFF \
  -DFP8MOE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target quantize_tour >/dev/null
"$BUILD_DIR"/examples/quantize_tour/quantize_tour "$@"
