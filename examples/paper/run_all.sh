#!/usr/bin/env bash
# The paper's M-complex and motion-capture tables at a CPU-feasible budget (stated in examples/benchmarks/RESULTS.md).
# Usage: bash examples/paper/run_all.sh [OUTDIR]   (about 1-2 CPU-hours on 2 cores; each step prints its table)
set -euo pipefail
OUT=${1:-runs/paper}
mkdir -p "$OUT"
E=${EGHN_BENCH:-.venv/bin/eghn-md}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TRAIN="--seeds 1,2,3 --batch-size 50 --lr 1e-3 --eval-every 5"

for MA in "3 3" "5 5"; do
  set -- $MA
  DATA="$OUT/mcomplex_$1_$2.npz"
  [ -f "$DATA" ] || $E bench mcomplex generate -o "$DATA" -M "$1" --mean-size "$2"
  $E bench mcomplex train "$DATA" --model linear --model gnn --model rf --model egnn --model eghn \
     --epochs 30 $TRAIN --json > "$OUT/mcomplex_$1_$2.json"
done
$E bench mocap train --model linear --model gnn --model rf --model egnn --model eghn --epochs 100 $TRAIN \
   --json > "$OUT/mocap.json"
python3 examples/paper/tables.py "$OUT"
