#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The FP8-vs-BF16 experiment of docs/training.md: the tiny DeepSeek-V3 trained twice from the same seed
# on the same batches of the shipped corpus (N steps each, default 200), once with the FP8 recipe
# (FP8 Fprop/Dgrad/Wgrad) and once with the BF16 recipe; prints both final losses, the relative
# difference of the final held-out loss (DeepSeek reports < 0.25% at scale) and the speed ratio, and
# leaves both loss curves (CSV + SVG) in $BUILD_DIR/fp8_vs_bf16/{fp8,bf16}.
# Usage: scripts/fp8_vs_bf16.sh [STEPS]   (BUILD_DIR: a configured build, default build/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-200}
BUILD_DIR=${BUILD_DIR:-build/demo}
if [ ! -x "$BUILD_DIR"/examples/deepseek_v3/deepseek_v3 ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFP8MOE_ENABLE_CUDA=OFF -DFP8MOE_BUILD_TESTS=OFF \
    -DFP8MOE_BUILD_BENCHMARKS=OFF >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$(nproc)" --target deepseek_v3 >/dev/null
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
OUT="$BUILD_DIR"/fp8_vs_bf16
rm -rf "$OUT"
mkdir -p "$OUT"
for p in fp8 bf16; do
  "$BUILD_DIR"/examples/deepseek_v3/deepseek_v3 train --config tiny --steps "$STEPS" --batch 4 --seq 64 \
    --precision $p --lr 3e-3 --seed 1 --eval-every 25 --log-every 50 --out "$OUT/$p" | tee "$OUT/$p.log" | tail -n 1
done
summary() { sed -n "s/.*recipe $1, .* (\([0-9.]*\) tokens\/s): train loss [0-9.]* -> \([0-9.]*\), held-out [0-9.]* -> \([0-9.]*\) .*/\1 \2 \3/p" "$OUT/$1.log"; }
read -r f_tps f_train f_held <<<"$(summary fp8)"
read -r b_tps b_train b_held <<<"$(summary bf16)"
awk -v ft="$f_train" -v bt="$b_train" -v fh="$f_held" -v bh="$b_held" -v fs="$f_tps" -v bs="$b_tps" -v n="$STEPS" 'BEGIN {
  printf "fp8 vs bf16, tiny, %d steps, same seed and batches:\n", n
  printf "  final train loss     fp8 %.4f  bf16 %.4f  relative difference %+.2f%%\n", ft, bt, 100 * (ft - bt) / bt
  printf "  final held-out loss  fp8 %.4f  bf16 %.4f  relative difference %+.2f%%\n", fh, bh, 100 * (fh - bh) / bh
  printf "  speed                fp8 %.0f  bf16 %.0f tokens/s: fp8 / bf16 = %.2fx\n", fs, bs, fs / bs
}'
echo "curves: $OUT/fp8/loss.svg, $OUT/bf16/loss.svg (CSV beside them)"
