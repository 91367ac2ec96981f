#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages fp8moe's tests, benchmarks and examples need, if missing.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run repeatedly. The CUDA toolkit is not
# installed here (it is optional: without nvcc the CUDA targets are simply not built).
need=()
dpkg -s doctest-dev >/dev/null 2>&1 || need+=(doctest-dev)
dpkg -s libopenmpi-dev >/dev/null 2>&1 || need+=(libopenmpi-dev)
dpkg -s openmpi-bin >/dev/null 2>&1 || need+=(openmpi-bin)
dpkg -s libopenblas-dev >/dev/null 2>&1 || need+=(libopenblas-dev)
dpkg -s libbenchmark-dev >/dev/null 2>&1 || need+=(libbenchmark-dev)
dpkg -s nlohmann-json3-dev >/dev/null 2>&1 || need+=(nlohmann-json3-dev)
dpkg -s libcli11-dev >/dev/null 2>&1 || need+=(libcli11-dev)
# clang++ with libFuzzer and the sanitizer runtimes: the fp8moe::io fuzz tests (tests/io; without
# them a deterministic mutation loop runs instead)
command -v clang++ >/dev/null 2>&1 || need+=(clang)
dpkg -s libclang-rt-dev >/dev/null 2>&1 || need+=(libclang-rt-dev)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
command -v clang-format >/dev/null 2>&1 || need+=(clang-format)
command -v g++ >/dev/null 2>&1 || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
