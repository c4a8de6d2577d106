"""Does a generative model hold the closed state of AdK? Its one-step kernel and short rollouts on the slow coordinate.

The ensemble metrics of ``generative_equilibrium.py`` say *that* a model misses a state; this script says *where*.
On the equilibrium AdK benchmark (``eghn-md bench adk-equilibrium generate``: ``DIR/adk_cg.pdb``, ``DIR/run-2.dcd``)
it reads the fraction of closed-only contacts Q_closed and of open-only contacts Q_open
(:mod:`eghn_md.rollout.states`, 1AKE / 4AKE from MDAnalysisTests) and the radius of gyration Rg [Å]:

* **kernel**: from ``--starts`` frames of run 2 drawn in each state (ΔQ < −0.5: closed, > 0.5: open), one and two
  model steps (one sample each, batched) against the MD's own frames one and two horizons later: quantiles of
  Q_closed. A model whose one-step quantiles match the MD's but whose two-step ones do not loses the state by
  compounding, not in one step.
* **trace**: rollouts of ``--steps`` steps from 4 closed and 4 open frames: Q_closed and Rg every few steps, beside the
  MD from the same closed frames. A drift of Rg out of the MD's range (swelling or compaction) shows here first.
* **exposure** (``--exposure``): from ``--starts`` closed frames, the second model step taken from the model's own
  sample against one taken from the MD's own next frame (quartiles of Q_closed), and the local geometry (Cα–Cα bond
  and i, i+2 distances, mean ± std) of the samples against the MD's frames. A model that loses more from its own
  frames than from the MD's has an exposure bias: its samples differ from MD frames in a way its next step reads.

Usage::

    OMP_NUM_THREADS=1 python examples/benchmarks/state_kernel.py RUN/model.pt --data /work/data/adk-eq \\
        [--horizon 10] [--starts 32] [--steps 45] [--run 1] [--scan 0.8,0.9,1 | --exposure] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from eghn_md.rollout.distribution import radius_of_gyration

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _reference(data: Path, run: int) -> np.ndarray:
    import MDAnalysis as mda

    u = mda.Universe(str(data / "adk_cg.pdb"), str(data / f"run-{run}.dcd"))
    return np.stack([u.atoms.positions.astype(np.float64) for _ in u.trajectory])


def _roll(run: Path, data: Path, ref: np.ndarray, starts: np.ndarray, steps: int, seed: int,
          scale: float | None = None) -> list[np.ndarray]:
    """One ensemble rollout of ``steps`` steps from the frames ``starts`` of ``ref`` (the reference run):
    (steps + 1, N, 3) per replica; ``scale``: the sampler's ``source_scale`` (None: the model's own)."""
    from eghn_md.rollout.ensemble import ensemble_rollout
    from eghn_md.rollout.start import open_start

    st = open_start(run, data / "adk_cg.pdb", [data / "run-2.dcd"], frame=int(starts[0]), device="cpu")
    if st.x_prev is not None:
        raise SystemExit(f"{run}: this script is for Markov (generative) models")
    if scale is not None:
        st.model.set_source_scale(scale)
    x = torch.as_tensor(ref[starts], dtype=st.dtype)
    res = ensemble_rollout(st.model, starts=x, h=st.system.h, bonds=st.system.bonds, cutoff=st.cutoff, steps=steps,
                           seed=seed)
    return [np.asarray(f, dtype=np.float64) for f in res.frames]


def _state_frames(q: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """The frames of the reference run (``q``: (T, 2) Q_closed, Q_open) with two horizons after them that are closed
    (ΔQ < −0.5) and open (ΔQ > 0.5)."""
    dq = q[:, 1] - q[:, 0]
    valid = np.arange(len(dq) - 2 * horizon)
    return valid[dq[valid] < -0.5], valid[dq[valid] > 0.5]


def _draw(sel: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``n`` of the frames ``sel``, drawn without replacement from ``rng``, sorted."""
    return np.sort(rng.choice(sel, min(n, len(sel)), replace=False))


def _q_closed(st, frames) -> np.ndarray:
    """Q_closed of each of ``frames`` (a list of (N, 3) [Å]) under the states ``st``."""
    from eghn_md.rollout.states import contact_fractions

    return np.array([contact_fractions(st, f)[0, 0] for f in frames])


def kernel(run: Path, data: Path, ref: np.ndarray, q: np.ndarray, st, *, horizon: int, n: int, seed: int,
           scale: float | None = None) -> dict:
    """Quantiles of Q_closed one and two steps after closed and after open frames: the model from ``n`` of them
    drawn at random, the MD over every such frame (``q``: (T, 2) Q_closed, Q_open of the reference run; ``st`` the
    states); ``distance``: the mean absolute difference of the model's quantiles from the MD's."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, sel in zip(("closed", "open"), _state_frames(q, horizon), strict=True):
        starts = _draw(sel, n, rng)
        frames = _roll(run, data, ref, starts, 2, seed, scale)
        model = [_q_closed(st, [f[k] for f in frames]) for k in (1, 2)]
        md = [q[sel + k * horizon, 0] for k in (1, 2)]
        out[name] = {f"{who}_{k + 1}": np.quantile(v[k], QUANTILES).round(3).tolist()
                     for who, v in (("md", md), ("model", model)) for k in (0, 1)}
        out[name]["n_starts"] = len(starts)
    out["distance"] = round(float(np.mean([np.abs(np.subtract(out[s][f"model_{k}"], out[s][f"md_{k}"])).mean()
                                           for s in ("closed", "open") for k in (1, 2)])), 4)
    return out


def scan(args, ref: np.ndarray, q: np.ndarray, st) -> dict:
    """The kernel for every ``source_scale`` of ``--scan``: the λ whose kernel is nearest the MD's is the one to
    sample with (choose it on the training run, ``--run 1``, and judge on another)."""
    out = {}
    for scale in (float(v) for v in args.scan.split(",")):
        k = kernel(args.model, args.data, ref, q, st, horizon=args.horizon, n=args.starts, seed=args.seed,
                   scale=scale)
        out[str(scale)] = k
        print(f"source_scale {scale:4.2f}: distance {k['distance']:.3f} | from closed, median Q_closed after 1 / 2 "
              f"steps {k['closed']['model_1'][2]:.2f} / {k['closed']['model_2'][2]:.2f} (MD "
              f"{k['closed']['md_1'][2]:.2f} / {k['closed']['md_2'][2]:.2f}) | from open, 75th pct "
              f"{k['open']['model_1'][3]:.2f} (MD {k['open']['md_1'][3]:.2f})")
    best = min(out, key=lambda key: out[key]["distance"])
    print(f"nearest the MD's kernel: source_scale {best}")
    return {"model": str(args.model), "run": args.run, "scan": out, "best": float(best)}


def _states(n_nodes: int):
    """The closed / open state definition (:mod:`eghn_md.rollout.states`) from 1AKE / 4AKE for ``n_nodes`` Cα."""
    from MDAnalysisTests.datafiles import PDB_closed, PDB_small

    from eghn_md.rollout.states import states_from_files

    return states_from_files(PDB_closed, PDB_small, n_nodes=n_nodes, names=("closed", "open"))


def trace(run: Path, data: Path, ref: np.ndarray, q: np.ndarray, st, *, horizon: int, steps: int, seed: int,
          scale: float | None = None) -> dict:
    """Q_closed and Rg every few steps of rollouts from the first 4 closed and first 4 open frames of run 2."""
    from eghn_md.rollout.states import contact_fractions

    dq = q[:, 1] - q[:, 0]
    starts = np.concatenate([np.flatnonzero(dq < -0.5)[:4], np.flatnonzero(dq > 0.5)[:4]])
    every = max(1, steps // 15)
    md_rg = np.quantile(radius_of_gyration(ref), [0.01, 0.5, 0.99]).round(2).tolist()
    out = {"every_steps": every, "md_rg_quantiles_1_50_99": md_rg, "replicas": []}
    for s, f in zip(starts, _roll(run, data, ref, starts, steps, seed, scale), strict=True):
        qc = contact_fractions(st, f)[::every, 0]
        out["replicas"].append({"start": int(s), "q_closed": qc.round(2).tolist(),
                                "rg": radius_of_gyration(f)[::every].round(1).tolist()})
    out["md_from_closed"] = [q[s:s + horizon * steps + 1:horizon * every, 0].round(2).tolist() for s in starts[:2]]
    return out


def _local_geometry(frames: np.ndarray) -> dict:
    """Mean and standard deviation [Å] of the Cα–Cα bond and the i, i+2 distances over ``frames`` (F, N, 3) [Å]."""
    bond = np.linalg.norm(frames[:, 1:] - frames[:, :-1], axis=-1)
    skip = np.linalg.norm(frames[:, 2:] - frames[:, :-2], axis=-1)
    return {"bond": [round(float(bond.mean()), 3), round(float(bond.std()), 3)],
            "i_i2": [round(float(skip.mean()), 3), round(float(skip.std()), 3)]}


def exposure(run: Path, data: Path, ref: np.ndarray, q: np.ndarray, st, *, horizon: int, n: int, seed: int,
             scale: float | None = None) -> dict:
    """From ``n`` closed frames (ΔQ < −0.5) drawn at random: quartiles of Q_closed one and two horizons on in the MD,
    after one and two model steps, and after one model step from the MD's frame one horizon on; the local geometry
    of the MD's frames one horizon on and of the model's samples."""
    starts = _draw(_state_frames(q, horizon)[0], n, np.random.default_rng(seed))  # kernel()'s closed starts
    own = _roll(run, data, ref, starts, 2, seed, scale)
    from_md = _roll(run, data, ref, starts + horizon, 1, seed + 1, scale)
    quart = lambda v: np.quantile(v, (0.25, 0.5, 0.75)).round(3).tolist()  # noqa: E731
    return {"n_starts": len(starts),
            "md_1": quart(q[starts + horizon, 0]), "md_2": quart(q[starts + 2 * horizon, 0]),
            "model_1": quart(_q_closed(st, [f[1] for f in own])),
            "model_2_from_own": quart(_q_closed(st, [f[2] for f in own])),
            "model_1_from_md_next": quart(_q_closed(st, [f[1] for f in from_md])),
            "geometry": {"md": _local_geometry(ref[starts + horizon]),
                         "model_1": _local_geometry(np.stack([f[1] for f in own])),
                         "model_2": _local_geometry(np.stack([f[2] for f in own]))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, default=Path("/work/data/adk-eq"))
    ap.add_argument("--horizon", type=int, default=10, help="The model's ΔT in frames of run 2.")
    ap.add_argument("--starts", type=int, default=32, help="Kernel: start frames per state.")
    ap.add_argument("--steps", type=int, default=45, help="Trace: rollout steps.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--run", type=int, default=2, help="Reference run whose frames start the model (default 2, the "
                    "test run; 1 is the training run, where --scan chooses λ).")
    ap.add_argument("--source-scale", type=float, default=None, help="The sampler's λ (default: the model's own).")
    ap.add_argument("--scan", default=None, help="Comma-separated λ values: the kernel of each, and the nearest.")
    ap.add_argument("--exposure", action="store_true", help="Only the exposure test: the second step from the "
                    "model's own sample against one from the MD's next frame, from --starts closed frames.")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from eghn_md.rollout.states import contact_fractions

    ref = _reference(args.data, args.run)
    st = _states(ref.shape[1])
    q = contact_fractions(st, ref)
    if args.exposure:
        res = exposure(args.model, args.data, ref, q, st, horizon=args.horizon, n=args.starts, seed=args.seed,
                       scale=args.source_scale)
        for key in ("md_1", "md_2", "model_1", "model_1_from_md_next", "model_2_from_own"):
            print(f"Q_closed quartiles, {key:22s}: {res[key]}")
        for who, g in res["geometry"].items():
            print(f"{who:8s} bond {g['bond'][0]:.3f} ± {g['bond'][1]:.3f} Å, "
                  f"i,i+2 {g['i_i2'][0]:.2f} ± {g['i_i2'][1]:.2f} Å")
        if args.json:
            args.json.write_text(json.dumps({"model": str(args.model), "run": args.run, "exposure": res}, indent=2))
        return
    if args.scan:
        res = scan(args, ref, q, st)
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
        return
    res = {"model": str(args.model),
           "kernel": kernel(args.model, args.data, ref, q, st, horizon=args.horizon, n=args.starts, seed=args.seed,
                            scale=args.source_scale),
           "trace": trace(args.model, args.data, ref, q, st, horizon=args.horizon, steps=args.steps, seed=args.seed,
                          scale=args.source_scale)}
    for name in ("closed", "open"):
        for key in ("md_1", "model_1", "md_2", "model_2"):
            print(f"from {name:6s} Q_closed after {key[-1]} step(s), {key[:-2]:5s}: {res['kernel'][name][key]}")
    print(f"kernel distance to the MD (mean |Δ quantile|): {res['kernel']['distance']:.3f}")
    for r in res["trace"]["replicas"]:
        print(f"start {r['start']:5d} Q_closed {' '.join(f'{v:.2f}' for v in r['q_closed'])}")
        print(f"{'':11s} Rg       {' '.join(f'{v:.1f}' for v in r['rg'])}")
    print("MD Rg 1/50/99 %:", res["trace"]["md_rg_quantiles_1_50_99"])
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
