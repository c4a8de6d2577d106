"""The reference's own floor: the distributional rollout metrics between two independent reference runs.

What perfect sampling scores on :func:`eghn_md.rollout.distribution.compare_ensembles` (RMSF r / ratio, PC1–PC2 W2,
Jensen–Shannon of Rg and pair distances, state populations / transitions / dwell): run A plays the reference, run B
the "model", both read every ``--step-frames`` frames (the model's ΔT, so transitions per 1,000 steps compare with
a rollout's). Also times the metrics (the cost ``evaluate --rollout`` adds).

Usage (on the equilibrium AdK benchmark, ``eghn-md bench adk-equilibrium generate -o DIR --seed 1`` and ``--seed 2``)::

    python examples/benchmarks/ensemble_floor.py DIR/adk_cg.pdb DIR/run-1.dcd DIR/run-2.dcd \\
        --states DIR/closed.pdb DIR/open.pdb --step-frames 5 [--json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from eghn_md.rollout.distribution import compare_ensembles
from eghn_md.rollout.states import states_from_files


def _frames(topology: str, trajectory: str, step: int) -> tuple[np.ndarray, float]:
    """(T, N, 3) [Å] Cα every ``step`` frames and the time between them [ps]."""
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(topology, trajectory)
        ca = u.select_atoms("name CA")
        pos = np.stack([ca.positions.copy() for _ in u.trajectory[::step]])
        return pos.astype(np.float64), float(u.trajectory.dt) * step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("topology")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--states", nargs=2, metavar=("A.pdb", "B.pdb"))
    p.add_argument("--step-frames", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    a, dt = _frames(args.topology, args.run_a, args.step_frames)
    b, _ = _frames(args.topology, args.run_b, args.step_frames)
    states = states_from_files(*args.states, n_nodes=a.shape[1]) if args.states else None
    t0 = time.perf_counter()
    out = compare_ensembles(reference=[a], model=[b], states=states, step_ps=dt)
    out["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps({k: v for k, v in out.items() if k != "rmsf"} | {"rmsf": {
            k: v for k, v in out["rmsf"].items() if not k.endswith("_A") or k.endswith("mean_A")}}, indent=1))
        return
    r = out["rmsf"]
    print(f"{len(a)} vs {len(b)} frames, {dt:g} ps apart; metrics computed in {out['seconds']:.1f} s")
    print(f"RMSF Pearson r {r['pearson_r']:.3f}, ratio {r['ratio']:.3f}; PC1-PC2 W2 {out['pca']['w2_A']:.3f} Å; "
          f"JS Rg {out['js']['rg']:.3f}, JS pair distances {out['js']['pairwise_distances']:.3f}")
    if states is not None:
        for who in ("reference", "model"):
            s = out["states"][who]
            print(f"run {'A' if who == 'reference' else 'B'}: population {s['population']}, per 1,000 steps "
                  f"{s['per_1000_steps']}, mean dwell [ps] {s['mean_dwell_ps']}")


if __name__ == "__main__":
    main()
