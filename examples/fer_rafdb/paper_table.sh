#!/usr/bin/env bash
# Reproduce the paper's RAF-DB tables with noisylabel-fer:
#   * the noise table: `full` at 10 / 20 / 30% label noise;
#   * Table I (ablation at 30%): baseline, aea, full.
# Each run prints final / last-5 mean / best (optimistic) test accuracy; a summary table of all
# runs is printed at the end and written to OUT/table.md.
#
# Usage:
#   examples/fer_rafdb/paper_table.sh --data PATH/TO/RAF-DB/basic --pretrained resnet18_msceleb.pth \
#       [--noise-dir DIR_WITH_noise01.txt...] [--seeds "0 1 2"] [--out runs/paper] \
#       [--image-size 100] [--paper-exact] [-- extra noisylabel-fer train options]
#
# --noise-dir uses EAC's files noise01.txt / noise02.txt / noise03.txt (10.1 / 20.4 / 30.3% of
# the labels flipped); without it, symmetric noise is injected with each seed.
set -euo pipefail

DATA=""; PRETRAINED=""; NOISE_DIR=""; SEEDS="0"; OUT="runs/paper"; IMAGE_SIZE="100"; EXACT=""
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --pretrained) PRETRAINED="$2"; shift 2 ;;
    --noise-dir) NOISE_DIR="$2"; shift 2 ;;
    --seeds) SEEDS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --image-size) IMAGE_SIZE="$2"; shift 2 ;;
    --paper-exact) EXACT="--paper-exact"; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$DATA" ]] || { echo "--data is required (RAF-DB basic folder)" >&2; exit 2; }
[[ -n "$PRETRAINED" ]] || { echo "--pretrained is required (resnet18_msceleb.pth, or 'none')" >&2; exit 2; }

run() {  # run VARIANT RATE SEED
  local variant="$1" rate="$2" seed="$3" noise_args
  local pct; pct=$(printf '%02d' "$(python3 -c "print(round($rate*100))")")
  if [[ -n "$NOISE_DIR" ]]; then
    noise_args=(--noise-file "$NOISE_DIR/noise$(printf '%02d' $((10#$pct / 10))).txt")
  else
    noise_args=(--noise "$rate")
  fi
  local dir="$OUT/${variant}-noise${pct}-seed${seed}"
  echo "=== $variant, ${pct}% noise, seed $seed -> $dir"
  noisylabel-fer train --data "$DATA" --pretrained "$PRETRAINED" --variant "$variant" \
    "${noise_args[@]}" --seed "$seed" --image-size "$IMAGE_SIZE" --out "$dir" --resume \
    $EXACT "${EXTRA[@]}"
}

for seed in $SEEDS; do
  for rate in 0.1 0.2 0.3; do run full "$rate" "$seed"; done   # noise table
  for variant in baseline aea; do run "$variant" 0.3 "$seed"; done  # Table I (full at 30% above)
done

python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import json, statistics, sys
from collections import defaultdict
from pathlib import Path

runs = defaultdict(list)
for f in sorted(Path(sys.argv[1]).glob("*/summary.json")):
    s = json.loads(f.read_text())
    variant, noise, _ = f.parent.name.split("-")
    runs[(variant, noise)].append(s)
print("| variant | noise | runs | final | last-5 mean | best (optimistic) |")
print("|---|---|---|---|---|---|")
for (variant, noise), ss in sorted(runs.items()):
    def col(key):
        v = [100 * s[key] for s in ss]
        return f"{statistics.mean(v):.2f}" + (f" +- {statistics.stdev(v):.2f}" if len(v) > 1 else "")
    print(f"| {variant} | {noise[5:]}% | {len(ss)} | {col('final')} | {col('last5_mean')} | {col('best')} |")
PY
