#!/usr/bin/env bash
# The paper's M-complex and motion-capture tables at a CPU-feasible budget (stated in examples/benchmarks/RESULTS.md).
# Usage: bash examples/paper/run_all.sh [OUTDIR]
#   M-complex: every column, single and multiple systems, 5 models x 3 seeds (about 2 hours on 2 cores; resumable:
#   run it again after an interruption and only the missing cells run). Motion capture: 5 models x 3 seeds.
set -euo pipefail
OUT=${1:-runs/paper}
mkdir -p "$OUT"
PY=${EGHN_PYTHON:-.venv/bin/python}
E=${EGHN_BENCH:-.venv/bin/eghn-md}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

$PY examples/paper/mcomplex_table.py --out "$OUT" --jobs "${JOBS:-2}" --exe "$E"
$E bench mocap train --model linear --model gnn --model rf --model egnn --model eghn --epochs 200 \
   --seeds 1,2,3 --batch-size 50 --lr 1e-3 --eval-every 5 --json > "$OUT/mocap.json"
$PY examples/paper/tables.py "$OUT"
