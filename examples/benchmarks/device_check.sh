#!/usr/bin/env bash
# The GPU checks of issue 12 in one command, for a CUDA machine with PyTorch and pytest but (possibly) neither the
# MD packages nor a network. Build the kit where the package registry is reachable (`make device-kit`: .devkit/),
# then on the GPU machine, from the repository root:
#
#     bash examples/benchmarks/device_check.sh OUTDIR
#
# (device tool: run(command="bash examples/benchmarks/device_check.sh $OUT", carry=[".devkit"], timeout_s=600)).
# Without .devkit/ the packages must already be importable. Writes to OUTDIR (default device-check/):
#   device.txt          GPU, driver, torch / CUDA / MDAnalysis / mdtraj versions
#   pytest_device.txt   the device-aware tests (models' equivariance in float64, the edge chain against the unfused
#                       modules, the training loop, train + rollout + evaluate commands) on --device
#   pytest_all.txt      the whole suite (not slow) with those tests on --device, the rest on the CPU as in CI
#   train_speed_b8.json, train_speed_b32.json   train_speed.py --device cuda, both EGHN variants, backbone
#   summary.txt         samples/s of the loop and model alone, and the time of a paper-size epoch (2,500 samples)
# DEVICE=cpu runs the same sequence on the CPU (a smoke test of this script; small steps with QUICK=1).
# Environment: PYTHON (python3), KIT (.devkit), DEVICE (cuda), XDIST (8 processes; 0: serial), QUICK (0).
set -uo pipefail
OUTDIR=${1:-device-check}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
KIT=${KIT:-.devkit}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# Into the machine's own Python (a bare, throw-away machine): the kit's wheels and this package, editable, without
# index or build isolation, so the `eghn-md` console script sits beside the interpreter as `make install` puts it.
# INSTALL=0 skips this where both are installed already.
if [ "${INSTALL:-1}" = 1 ]; then
  if [ -d "$KIT/wheels" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile "$KIT"/wheels/*.whl \
      || { echo "device_check: installing $KIT/wheels failed" >&2; exit 1; }
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    || { echo "device_check: installing eghn-md failed" >&2; exit 1; }
fi
if [ -d "$KIT/site" ]; then
  export PYTHONPATH="$(cd "$KIT/site" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  date -u
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "cpus: $(nproc)"
  "$PY" -c "import torch, MDAnalysis, mdtraj
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
print('MDAnalysis', MDAnalysis.__version__, 'mdtraj', mdtraj.__version__)"
} 2>&1 | tee "$OUTDIR/device.txt"

DEVICE_TESTS="tests/test_models_equivariance.py tests/test_edge_chain.py tests/test_train_loop.py tests/test_rollout_cli.py"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider --device "$DEVICE" $DEVICE_TESTS 2>&1 \
  | tee "$OUTDIR/pytest_device.txt" | tail -n 15
xdist=""  # pytest-xdist, when there, spreads the CPU-side tests over XDIST processes (0: off)
[ "${XDIST:-8}" != 0 ] && "$PY" -c "import xdist" 2>/dev/null && xdist="-n ${XDIST:-8}"
timeout 300 "$PY" -m pytest -q -p no:cacheprovider --device "$DEVICE" $xdist 2>&1 \
  | tee "$OUTDIR/pytest_all.txt" | tail -n 15

# AdK has 98 frames: 96 windows of horizon 1, of which the loop trains on batch x steps and validates on one more.
if [ "${QUICK:-0}" = 1 ]; then s8=2; s32=1; else s8=11; s32=2; fi
threads=$(( $(nproc) > 8 ? 8 : $(nproc) ))
workers=$(( threads / 2 ))
for spec in "8 $s8" "32 $s32"; do
  set -- $spec
  timeout 240 "$PY" examples/benchmarks/train_speed.py --device "$DEVICE" --select bb --batch-size "$1" --steps "$2" \
    --models eghn eghn-published --workers "$workers" --threads "$threads" --json > "$OUTDIR/train_speed_b$1.json" \
    || echo "train_speed at batch $1 failed" >&2
done

"$PY" - "$OUTDIR" <<'EOF' | tee "$OUTDIR/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| model | batch | model only (samples/s) | train loop (samples/s) | paper epoch, 2,500 samples (s) | peak RSS (GiB) |")
print("|---|---:|---:|---:|---:|---:|")
for f in sorted(out.glob("train_speed_b*.json"), key=lambda f: int(f.stem.rsplit("b", 1)[1])):
    try:
        rows = json.loads(f.read_text())
    except ValueError:
        print(f"| {f.name}: no result | | | | |")
        continue
    for model in dict.fromkeys(r["model"] for r in rows):
        get = {r["what"]: r for r in rows if r["model"] == model}
        loop, alone = get.get("loop", {}), get.get("model", {})
        sps = loop.get("samples_per_s", float("nan"))
        print(f"| {model} | {loop.get('batch', alone.get('batch'))} | {alone.get('samples_per_s', float('nan')):.2f} "
              f"| {sps:.2f} | {2500 / sps:.1f} | {loop.get('peak_rss_gib', float('nan')):.2f} |")
EOF
