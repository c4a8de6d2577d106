"""Why a rollout falls apart: how persistent its motion is, beside the MD's (issue "rollouts that stay physical").

For each ``model.pt`` (trained on AdK Cα, e.g. by ``rollout_stability.py``) it rolls out ``--steps`` steps from
MDAnalysisTests ``DCD2`` frame 15 (guard off: every step is kept) and reports, next to the same quantities of the
true trajectories ``DCD`` and ``DCD2`` at the model's horizon:

* ``cos``: the cosine between successive displacements ``x_{k+1} − x_k`` and ``x_k − x_{k−1}`` (centred, all nodes
  as one 3N vector): 1 is motion that keeps its direction, 0 motion that forgets it;
* ``step``: RMS size of a step [Å], centred and after optimal superposition (MDAnalysis ``analysis.rms.rmsd``);
* ``drift``: superposed RMSD of the last frame from the start [Å] (the true closed → open transition is ~7 Å);
* ``rg``: radius of gyration of the start and last frames [Å].

Usage::

    python examples/benchmarks/rollout_persistence.py RUN/model.pt [RUN2/model.pt …] [--steps 100] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from eghn_md.rollout.distribution import radius_of_gyration


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _centred(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0)


def motion_stats(frames: np.ndarray) -> dict:
    """Persistence statistics of (T, N, 3) [Å] frames one horizon apart (see the module docstring)."""
    from MDAnalysis.analysis.rms import rmsd

    x = np.stack([_centred(f) for f in frames.astype(np.float64)])
    d = x[1:] - x[:-1]
    cos = [_cos(d[k], d[k - 1]) for k in range(1, len(d))]
    sup = [rmsd(frames[k + 1], frames[k], center=True, superposition=True) for k in range(len(d))]
    return {
        "n_steps": len(d),
        "cos_mean": float(np.mean(cos)),
        "step_rms_A": float(np.sqrt((d**2).sum(axis=2).mean())),
        "step_superposed_A": float(np.mean(sup)),
        "drift_superposed_A": float(rmsd(frames[-1], frames[0], center=True, superposition=True)),
        "rg_start_A": float(radius_of_gyration(frames[:1])[0]),
        "rg_end_A": float(radius_of_gyration(frames[-1:])[0]),
    }


def _truth(horizon: int) -> dict:
    import MDAnalysis as mda
    from MDAnalysisTests.datafiles import DCD, DCD2, PSF

    out = {}
    for name, path in (("DCD", DCD), ("DCD2", DCD2)):
        u = mda.Universe(PSF, path)
        ca = u.select_atoms("name CA")
        x = np.stack([ca.positions.copy() for _ in u.trajectory])
        # every start offset, so all frames count; the statistics are averaged over offsets
        rows = [motion_stats(x[o::horizon]) for o in range(horizon) if len(x[o::horizon]) >= 3]
        out[name] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return out


def _model(path: str, steps: int) -> dict:
    from MDAnalysisTests.datafiles import DCD2, PSF

    from eghn_md.rollout.rollout import GuardConfig, rollout
    from eghn_md.rollout.start import open_start

    st = open_start(path, PSF, [DCD2], frame=15, device="cpu")
    to = lambda a: torch.as_tensor(a, dtype=st.dtype)  # noqa: E731
    off = GuardConfig(max_bond_dev=None, rg_bounds=None)
    res = rollout(st.model.eval(), x_prev=to(st.x_prev), x0=to(st.frames[0]), h=st.system.h.to(st.dtype),
                  bonds=st.system.bonds, cutoff=st.cutoff, steps=steps, guard=off)
    return {"horizon_frames": st.horizon, **motion_stats(res.frames)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model.pt files")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    results = {f"{Path(m).parent.name}/{Path(m).name}": _model(m, a.steps) for m in a.models}
    horizon = next(iter(results.values()))["horizon_frames"]
    results.update({f"truth {k}": v for k, v in _truth(horizon).items()})
    print("| trajectory | steps | cos(successive steps) | step RMS centred / superposed [Å] | drift [Å] "
          "| Rg start → end [Å] |")
    print("|---|---:|---:|---|---:|---|")
    for name, r in results.items():
        print(f"| {name} | {r['n_steps']:.0f} | {r['cos_mean']:.2f} | {r['step_rms_A']:.2f} / "
              f"{r['step_superposed_A']:.2f} | {r['drift_superposed_A']:.1f} | "
              f"{r['rg_start_A']:.1f} → {r['rg_end_A']:.1f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
