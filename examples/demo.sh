#!/usr/bin/env bash
# The whole eghn-md pipeline on the AdK trajectory that MDAnalysisTests ships (PSF + DCD, 214 residues, 98 frames).
# Usage: bash examples/demo.sh [OUTDIR]   (make demo runs it after installing into .venv)
set -euo pipefail
OUT=${1:-demo-out}
BIN=${EGHN_BIN:-.venv/bin}
EGHN="$BIN/eghn-md"
mkdir -p "$OUT"
read -r PSF DCD < <("$BIN/python" -c "from MDAnalysisTests.datafiles import PSF, DCD; print(PSF, DCD)" 2>/dev/null)

echo "== 1/5 preprocess: AdK Cα graph (214 nodes x 98 frames)"
"$EGHN" preprocess "$PSF" "$DCD" -o "$OUT/adk.h5" --overwrite
"$EGHN" info "$OUT/adk.h5"

echo "== 2/5 train: tiny EGHN preset (a few CPU minutes)"
"$EGHN" train "$OUT/adk.h5" -o "$OUT/run" --preset tiny --overwrite

echo "== 3/5 evaluate on the test block (beside the static and constant-velocity baselines)"
"$EGHN" evaluate "$OUT/run/model.pt" "$OUT/adk.h5" --split test

echo "== 4/5 rollout: 12 autoregressive steps from frame 20, with the true frames for comparison"
"$EGHN" rollout "$OUT/run/model.pt" "$PSF" "$DCD" --frame 20 --steps 12 -o "$OUT/pred.dcd" --truth --overwrite

if "$EGHN" export --help >/dev/null 2>&1; then
  echo "== 5/5 export the learned pooling clusters"
  "$EGHN" export clusters "$OUT/run/model.pt" "$PSF" "$DCD" --frame 20 -o "$OUT/clusters" --overwrite
fi

cat <<MSG

Done. Results in $OUT/:
  run/            model.pt, config.yaml, history.csv, metrics.json
  pred.pdb/.dcd   predicted trajectory (pred_truth.dcd: the true frames, pred_rmsd.csv: RMSD vs time)
Open them:
  vmd $OUT/pred.pdb $OUT/pred.dcd
  pymol $OUT/pred.pdb -d 'load_traj $OUT/pred.dcd, pred'
MSG
if [ -d "$OUT/clusters" ]; then
  cat <<MSG
  vmd -e $OUT/clusters/clusters.tcl        (clusters coloured, one representation each)
  pymol $OUT/clusters/clusters.pml         (cartoon coloured by cluster, selections cluster_0 …)
MSG
fi
