#!/usr/bin/env bash
# The whole eghn-md pipeline on the AdK trajectory that MDAnalysisTests ships (PSF + DCD, 214 residues, 98 frames).
# Then an 8-replica ensemble of the generative model shipped in examples/models/ on equilibrium AdK (needs OpenMM).
# Usage: bash examples/demo.sh [OUTDIR]   (make demo runs it after installing into .venv)
set -euo pipefail
OUT=${1:-demo-out}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EQ_MODEL="$HERE/models/adk_eq_generative.pt"   # trained by examples/models/train_adk_eq_generative.py
EQ_FRAMES=${EQ_FRAMES:-1000}                    # reference run: 1,000 frames of 1.6 ps (several transitions)
EQ_STEPS=${EQ_STEPS:-50}                        # ensemble rollout: steps of ΔT = 16 ps (10 frames) per replica
BIN=${EGHN_BIN:-.venv/bin}
EGHN="$BIN/eghn-md"
mkdir -p "$OUT"
read -r PSF DCD < <("$BIN/python" -c "from MDAnalysisTests.datafiles import PSF, DCD; print(PSF, DCD)" 2>/dev/null)

echo "== 1/6 preprocess: AdK Cα graph (214 nodes x 98 frames)"
"$EGHN" preprocess "$PSF" "$DCD" -o "$OUT/adk.h5" --overwrite
"$EGHN" info "$OUT/adk.h5"

echo "== 2/6 train: tiny EGHN preset (a few CPU minutes)"
"$EGHN" train "$OUT/adk.h5" -o "$OUT/run" --preset tiny --overwrite

echo "== 3/6 evaluate on the test block (beside the static and constant-velocity baselines)"
"$EGHN" evaluate "$OUT/run/model.pt" "$OUT/adk.h5" --split test

echo "== 4/6 rollout: 12 autoregressive steps from frame 20, with the true frames for comparison"
"$EGHN" rollout "$OUT/run/model.pt" "$PSF" "$DCD" --frame 20 --steps 12 -o "$OUT/pred.dcd" --truth --overwrite

if "$EGHN" export --help >/dev/null 2>&1; then
  echo "== 5/6 export the learned pooling clusters"
  "$EGHN" export clusters "$OUT/run/model.pt" "$PSF" "$DCD" --frame 20 -o "$OUT/clusters" --overwrite
fi

echo "== 6/6 equilibrium AdK: a short reference run, then an 8-replica ensemble of the shipped generative model"
if "$BIN/python" -c "import openmm" >/dev/null 2>&1; then
  "$EGHN" bench adk-equilibrium generate -o "$OUT/adk-eq" --frames "$EQ_FRAMES" --seed 2 --overwrite -q
  "$EGHN" preprocess "$OUT/adk-eq/adk_cg.pdb" "$OUT/adk-eq/run-2.dcd" -o "$OUT/adk-eq/run-2.h5" --overwrite -q
  echo "-- ensemble rollout from the open structure alone ($EQ_STEPS steps x 8 replicas, one batched pass per step)"
  mkdir -p "$OUT/eq" && cp "$EQ_MODEL" "$OUT/eq/model.pt"   # evaluate writes its tables beside the model
  "$EGHN" rollout "$OUT/eq/model.pt" "$OUT/adk-eq/open.pdb" --steps "$EQ_STEPS" --replicas 8 --seed 0 \
    -o "$OUT/eq/pred.dcd" --overwrite
  echo "-- judged against the reference run: the model rolled out from evenly spaced frames of it (evaluate --rollout)"
  "$EGHN" evaluate "$OUT/eq/model.pt" "$OUT/adk-eq/run-2.h5" --split all --rollout "$EQ_STEPS" --rollout-starts 4 \
    --states "$OUT/adk-eq/closed.pdb" "$OUT/adk-eq/open.pdb"
else
  echo "   skipped: OpenMM is not installed (make install adds it: pip install -e '.[sim]')"
fi

cat <<MSG

Done. Results in $OUT/:
  run/            model.pt, config.yaml, history.csv, metrics.json
  pred.pdb/.dcd   predicted trajectory (pred_truth.dcd: the true frames, pred_rmsd.csv: RMSD vs time)
  adk-eq/         the equilibrium reference run (adk_cg.pdb, run-2.dcd, run-2.h5, closed.pdb, open.pdb)
  eq/             the ensemble: pred.pdb, pred_r0.dcd … pred_r7.dcd, pred_validity.csv
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
