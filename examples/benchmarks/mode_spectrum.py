"""Where the motion over one horizon lies: the contact-graph Laplacian modes of x_t, MD against generative models.

For ``--pairs`` frames x_t of a reference run of the equilibrium AdK benchmark (``DIR/adk_cg.pdb``,
``DIR/run-N.dcd``) the centred displacement to x(t + ΔT) is projected on the Laplacian modes of x_t's 10 Å contact
graph (:func:`eghn_md.models.source_spectrum.laplacian_modes`, the modes the ``spectral_source`` option shapes its
noise with). The table gives the fraction of the displacement variance in the k softest modes (isotropic noise:
k / (N − 1)) and the total [Å² per node and coordinate], for the MD and for one sampled step of each ``--model``
from the same frames (one batched ensemble step; a model that under-does the soft collective motion has a small
fraction there and a small total).

Usage::

    OMP_NUM_THREADS=1 python examples/benchmarks/mode_spectrum.py --data /work/data/adk-eq --run 2 --horizon 10 \\
        --pairs 256 [--model RUN/model.pt …] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from eghn_md.models.source_spectrum import laplacian_modes

KS = (1, 2, 3, 5, 10, 20, 50)


def _reference(data: Path, run: int) -> np.ndarray:
    import MDAnalysis as mda

    u = mda.Universe(str(data / "adk_cg.pdb"), str(data / f"run-{run}.dcd"))
    return np.stack([u.atoms.positions.astype(np.float64) for _ in u.trajectory])


def spectrum(starts: np.ndarray, ends: np.ndarray) -> dict:
    """Cumulative fraction of the centred displacement variance over the softest modes of each start, and the
    total: ``starts``, ``ends`` (P, N, 3) [Å]."""
    x0 = torch.as_tensor(starts, dtype=torch.float64)
    disp = torch.as_tensor(ends, dtype=torch.float64) - x0
    disp = disp - disp.mean(dim=1, keepdim=True)
    _, u = laplacian_modes(x0)
    power = (u.transpose(1, 2) @ disp).pow(2).sum(dim=2).mean(dim=0)[1:]  # (N − 1,) softest first, zero mode out
    cum = torch.cumsum(power, 0) / power.sum()
    n = x0.shape[1]
    return {"fraction_in_softest": {k: round(float(cum[k - 1]), 3) for k in KS if k < n},
            "isotropic": {k: round(k / (n - 1), 3) for k in KS if k < n},
            "total_A2_per_coordinate": round(float(power.sum()) / (3 * n), 3)}


def _model_step(model: Path, data: Path, run: int, frames: np.ndarray, seed: int) -> np.ndarray:
    """One sampled step of ``model`` from each of ``frames`` (P, N, 3) [Å]: (P, N, 3) [Å]."""
    from eghn_md.rollout.ensemble import ensemble_rollout
    from eghn_md.rollout.start import open_start

    st = open_start(model, data / "adk_cg.pdb", [data / f"run-{run}.dcd"], frame=0, device="cpu")
    if st.x_prev is not None:
        raise SystemExit(f"{model}: this script is for Markov (generative) models")
    res = ensemble_rollout(st.model, starts=torch.as_tensor(frames, dtype=st.dtype), h=st.system.h,
                           bonds=st.system.bonds, cutoff=st.cutoff, steps=1, seed=seed)
    return np.stack([np.asarray(f[1], dtype=np.float64) for f in res.frames])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=10, help="ΔT in frames of the run")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--model", type=Path, action="append", default=[])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    ref = _reference(args.data, args.run)
    t = np.unique(np.linspace(0, len(ref) - 1 - args.horizon, args.pairs).round().astype(np.int64))
    out = {"run": args.run, "horizon_frames": args.horizon, "pairs": len(t),
           "md": spectrum(ref[t], ref[t + args.horizon])}
    for m in args.model:
        out[str(m)] = spectrum(ref[t], _model_step(m, args.data, args.run, ref[t], args.seed))
    print(f"{'':40s} " + " ".join(f"k={k:<5d}" for k in out["md"]["fraction_in_softest"]) + " total [Å²]")
    print(f"{'isotropic noise':40s} " + " ".join(f"{v:<7.3f}" for v in out["md"]["isotropic"].values()))
    for name, s in out.items():
        if isinstance(s, dict):
            print(f"{name[-40:]:40s} " + " ".join(f"{v:<7.3f}" for v in s["fraction_in_softest"].values())
                  + f" {s['total_A2_per_coordinate']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
