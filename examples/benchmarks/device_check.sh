#!/usr/bin/env bash
# The GPU checks of issue 12 in one command, for a CUDA machine with PyTorch and pytest but (possibly) neither the
# MD packages nor a network. Build the kit where the package registry is reachable (`make device-kit`: .devkit/),
# then on the GPU machine, from the repository root:
#
#     bash examples/benchmarks/device_check.sh OUTDIR
#
# (device tool: run(command="bash examples/benchmarks/device_check.sh $OUT", carry=[".devkit"], timeout_s=600)).
# Without .devkit/ the packages must already be importable. Writes to OUTDIR (default device-check/), in this order:
#   device.txt          GPU, driver, Python / torch / CUDA / MDAnalysis / mdtraj versions, install problems
#   pytest_device.txt   the device-aware tests (models' equivariance in float64, the edge chain against the unfused
#                       modules, the training loop, train + rollout + evaluate commands) on --device
#   train_speed_b8.json, train_speed_b32.json   train_speed.py --device cuda, both EGHN variants, backbone
#   summary.txt         samples/s of the loop and the model alone, and the time of a paper-size epoch (2,500 samples)
#   pytest_rest.txt     the rest of the suite (not slow); commands there run on a visible GPU by default too
# The steps' time limits add up to 9 minutes. Exit status 1 if any step failed.
# DEVICE=cpu runs the same sequence on the CPU (a smoke test of this script; small steps with QUICK=1).
# Environment: PYTHON (python3), KIT (.devkit), DEVICE (cuda|cpu), XDIST (8 processes; 0: serial), QUICK (0),
# INSTALL (1; 0 where the packages and eghn-md are installed already), REST_TIMEOUT (120 s for the rest of the suite).
set -uo pipefail
OUTDIR=${1:-device-check}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
KIT=${KIT:-.devkit}
XDIST=${XDIST:-8}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
rc=0
log() { echo "$@" | tee -a "$OUTDIR/device.txt"; }
: > "$OUTDIR/device.txt"
log "$(date -u)"
command -v nvidia-smi >/dev/null && log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
log "cpus: $(nproc); python: $("$PY" -c 'import sys; print(sys.version.split()[0], sys.executable)')"

# Into the machine's own Python (a bare, throw-away machine): the kit's wheels and this package, editable, without
# index or build isolation, so the `eghn-md` console script sits beside the interpreter as `make install` puts it.
if [ "${INSTALL:-1}" = 1 ]; then
  if [ -d "$KIT/wheels" ]; then
    want=$(cat "$KIT/PYTHON" 2>/dev/null || echo "?")
    have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$want" = "$have" ] || log "warning: the kit's wheels are for Python $want, this Python is $have"
    "$PY" -m pip install -q --no-index --no-deps --no-compile "$KIT"/wheels/*.whl 2>&1 | tee -a "$OUTDIR/device.txt" \
      || { log "device_check: installing $KIT/wheels failed"; exit 1; }
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tee -a "$OUTDIR/device.txt" \
    || { log "device_check: installing eghn-md failed (setuptools >= 64 needed)"; exit 1; }
fi
if [ -d "$KIT/site" ]; then
  export PYTHONPATH="$(cd "$KIT/site" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" - 2>&1 <<'EOF' | tee -a "$OUTDIR/device.txt" || exit 1
import importlib, sys
missing = []
for name in ("torch", "MDAnalysis", "MDAnalysisTests.datafiles", "mdtraj", "h5py", "click", "rich", "yaml",
             "matplotlib", "scipy", "pytest", "hypothesis", "eghn_md", "cli.main"):
    try:
        importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - report every missing piece at once
        missing.append(f"{name} ({type(err).__name__}: {err})")
if missing:
    sys.exit("device_check: cannot import " + "; ".join(missing))
import torch, MDAnalysis, mdtraj
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("MDAnalysis", MDAnalysis.__version__, "mdtraj", mdtraj.__version__)
EOF

DEVICE_TESTS="tests/test_models_equivariance.py tests/test_edge_chain.py tests/test_train_loop.py tests/test_rollout_cli.py"
timeout -k 10 120 "$PY" -m pytest -q -p no:cacheprovider --device "$DEVICE" $DEVICE_TESTS > "$OUTDIR/pytest_device.txt" 2>&1 \
  || rc=1
tail -n 5 "$OUTDIR/pytest_device.txt"

# AdK has 98 frames: 96 windows of horizon 1, of which the loop trains on batch x steps and validates on one more.
if [ "${QUICK:-0}" = 1 ]; then s8=2; s32=1; else s8=11; s32=2; fi
threads=$(( $(nproc) > 8 ? 8 : $(nproc) ))
workers=$(( threads / 2 ))
for spec in "8 $s8" "32 $s32"; do
  set -- $spec
  timeout -k 10 150 "$PY" examples/benchmarks/train_speed.py --device "$DEVICE" --select bb --batch-size "$1" \
    --steps "$2" --models eghn eghn-published --workers "$workers" --threads "$threads" --json \
    > "$OUTDIR/train_speed_b$1.json" || { echo "train_speed at batch $1 failed" >&2; rc=1; }
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
        print(f"| {f.name}: no result | | | | | |")
        continue
    for model in dict.fromkeys(r["model"] for r in rows):
        get = {r["what"]: r for r in rows if r["model"] == model}
        loop, alone = get.get("loop", {}), get.get("model", {})
        sps = loop.get("samples_per_s", float("nan"))
        print(f"| {model} | {loop.get('batch', alone.get('batch'))} | {alone.get('samples_per_s', float('nan')):.2f} "
              f"| {sps:.2f} | {2500 / sps:.1f} | {loop.get('peak_rss_gib', float('nan')):.2f} |")
EOF

# The rest of the suite, spread over XDIST processes with pytest-xdist when it is there (each with its share of the
# cores), the device-aware files left out (run above).
xdist=""
if [ "$XDIST" != 0 ] && "$PY" -c "import xdist" 2>/dev/null; then
  xdist="-n $XDIST"
  export OMP_NUM_THREADS=$(( $(nproc) / XDIST > 0 ? $(nproc) / XDIST : 1 ))
fi
ignore=""
for f in $DEVICE_TESTS; do ignore="$ignore --ignore=$f"; done
timeout -k 10 "${REST_TIMEOUT:-120}" "$PY" -m pytest -q -p no:cacheprovider --device "$DEVICE" $xdist $ignore \
  > "$OUTDIR/pytest_rest.txt" 2>&1 || rc=1
tail -n 12 "$OUTDIR/pytest_rest.txt"
exit $rc
