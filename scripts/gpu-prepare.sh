#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run HERE (the machine with apt) before a GPU run: copies the test/benchmark dependencies that the
# GPU machine lacks (doctest headers, Google Benchmark headers + library, with their CMake configs)
# into .deps/ (git-ignored), which the device tool then carries (`carry: [".deps"]`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
rm -rf .deps && mkdir -p .deps/include .deps/lib/cmake .deps/lib/x86_64-linux-gnu/cmake
cp -r /usr/include/doctest .deps/include/
cp -r /usr/lib/cmake/doctest .deps/lib/cmake/
cp -r /usr/include/benchmark .deps/include/
cp -a /usr/lib/x86_64-linux-gnu/libbenchmark*.so* /usr/lib/x86_64-linux-gnu/libbenchmark_main.a .deps/lib/x86_64-linux-gnu/ 2>/dev/null || true
cp -r /usr/lib/x86_64-linux-gnu/cmake/benchmark .deps/lib/x86_64-linux-gnu/cmake/
du -sh .deps
