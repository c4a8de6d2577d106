"""Ensemble rollouts on equilibrium AdK: the generative model against the reference run and the deterministic eghn.

Data: a dual-basin Cα simulation of AdK (``eghn-md bench adk-equilibrium generate``: ``DIR/adk_cg.pdb``,
``DIR/run-1.dcd``, ``DIR/run-2.dcd``). Both models are trained on run 1 (or ``--train-dcd``, another run of the same
model; its last 10 % validates) with ΔT = ``--horizon`` frames; from ``--replicas`` evenly spaced frames of run 2,
``--replicas`` rollouts of ``--steps`` steps are run as one batched ensemble (no ``--constrain``); the table gives, per
model and seed, the validity over every frame of every replica (frames with a Cα–Cα break > 4.19 Å or a clash < 3 Å),
and, when the distributional metrics of :mod:`eghn_md.rollout.distribution` are available, RMSF Pearson r and ratio
against run 2, PC1–PC2 W2, the Rg Jensen–Shannon distance, the open population and the transitions each way.

Usage::

    OMP_NUM_THREADS=1 python examples/benchmarks/generative_equilibrium.py --data /work/data/adk-eq --seeds 1 \\
        --horizon 1 --epochs 20 --steps 2000 --workdir runs/gen_eq [--models generative,eghn]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def _h5(data: Path, work: Path, train_dcd: Path | None = None) -> dict:
    """The training run (``train_dcd``, default ``data/run-1.dcd``) preprocessed (the test run is read as the
    reference trajectory itself)."""
    from eghn_md.data.preprocess import preprocess

    dcd = Path(train_dcd) if train_dcd else data / "run-1.dcd"
    out = {1: work / ("run1.h5" if train_dcd is None else f"{dcd.stem}.h5")}  # one cache per training run
    if not out[1].exists():
        preprocess(data / "adk_cg.pdb", [dcd], out[1], select="name CA", overwrite=True)
    return out


def train(work: Path, h5: dict, model: str, seed: int, args) -> Path:
    """Train (or reuse) ``{model}_s{seed}`` on run 1: the ``generative`` preset, or ``eghn`` with ``default``."""
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    out = work / f"{model}_s{seed}"
    if (out / "metrics.json").exists() or (out / args.checkpoint).exists() and args.checkpoint != "model.pt":
        return out
    preset = "generative" if model == "generative" else "default"
    over = {"data": {"horizon": args.horizon, "split": [0.9, 0.1, 0.0], "window_stride": args.stride},
            "train": {"epochs": args.epochs, "seed": seed, "device": "cpu", **json.loads(args.train)},
            "model": json.loads(args.model_overrides) if model == "generative" else {}}
    init = args.init.format(seed=seed) if args.init and model == "generative" else None
    if init and args.reprior is not None:
        init = reprior(Path(init), out.parent / f"{model}_s{seed}_init.pt", Path(args.data), args.reprior)
    train_run([h5[1]], out, config=resolve_config(preset=preset, overrides=over), init=init, overwrite=True)
    return out


def reprior(init: Path, out: Path, data: Path, fraction: float) -> Path:
    """``init`` (a generative checkpoint with ``contact_prior``) with its prior recomputed from the first 90 % of
    run 1 (the training split) with ``prior_fraction`` ``fraction``, written to ``out`` (the start of a fine-tune;
    the network's weights read any prior pair the same way)."""
    import dataclasses

    from eghn_md.models import ModelConfig
    from eghn_md.models.contact_prior import pair_statistics
    from eghn_md.rollout.start import open_start
    from eghn_md.train.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(init)
    frames, _ = _reference(data, 1)
    bonds = open_start(init, data / "adk_cg.pdb", [], frame=0, device="cpu").system.bonds
    index, mean, std = pair_statistics(frames[: int(0.9 * len(frames))], bonds=bonds,
                                       cutoff=float(ck.data_config["cutoff"]), min_fraction=fraction)
    cfg = dataclasses.replace(ModelConfig.from_dict(ck.model_config), prior_fraction=fraction,
                              prior_pairs=int(index.shape[1]))
    state = {**ck.state_dict, "prior_index": index, "prior_mean": mean.float(), "prior_std": std.float()}
    return save_checkpoint(out, model_config=cfg.to_dict(), data_config=ck.data_config,
                           train_config=ck.train_config, stats=ck.stats, nodes=ck.nodes, state_dict=state,
                           metrics=ck.metrics)


def _reference(data: Path, run: int = 2, path: Path | None = None):
    """Every Cα frame (T, N, 3) [Å] of run ``run`` of ``data`` (or of the DCD ``path``) and its frame spacing [ps]."""
    import MDAnalysis as mda

    u = mda.Universe(str(data / "adk_cg.pdb"), str(path or data / f"run-{run}.dcd"))
    ca = u.select_atoms("name CA")
    frames = np.stack([ca.positions.astype(np.float64) for _ in u.trajectory])
    return frames, float(u.trajectory.dt)


@torch.no_grad()
def roll(run: Path, data: Path, ref: np.ndarray, args, seed: int) -> tuple[list, dict]:
    """The ensemble of ``--replicas`` rollouts from evenly spaced frames of run 2; (frames per replica, info)."""
    from eghn_md.rollout.ensemble import ensemble_rollout
    from eghn_md.rollout.start import open_start

    h = args.horizon
    starts = np.linspace(h, len(ref) - 1, args.replicas).round().astype(int)
    st = open_start(run / args.checkpoint, data / "adk_cg.pdb", [data / "run-2.dcd"], frame=int(starts[0]),
                    device="cpu")
    if args.source_scale is not None and hasattr(st.model, "sample"):  # the generative model's sampler λ
        st.model.set_source_scale(args.source_scale)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=st.dtype)  # noqa: E731
    x_prev = None if st.x_prev is None else torch.stack([t(ref[f - h]) for f in starts])
    t0 = time.perf_counter()
    res = ensemble_rollout(st.model, starts=torch.stack([t(ref[f]) for f in starts]), h=st.system.h,
                           bonds=st.system.bonds, cutoff=st.cutoff, steps=args.steps, x_prev=x_prev, seed=seed,
                           sample_steps=args.sample_steps)
    info = {"wall_s": time.perf_counter() - t0, "starts": starts.tolist(), "stopped": res.stopped,
            "bonds": st.system.bonds, "step_ps": st.step_ps}
    return res.frames, info


def judge(frames: list, ref: np.ndarray, info: dict, data: Path, horizon: int) -> dict:
    """Validity over the ensemble and, when available, the distributional metrics against run 2."""
    from eghn_md.rollout.ensemble import ensemble_validity
    from eghn_md.rollout.validity import validity_report

    v = ensemble_validity([validity_report(f, bonds=info["bonds"], node_kind="residue") for f in frames])
    out = {"frames_with_break": v["frames_with_break"], "frames_with_clash": v["frames_with_clash"],
           "n_frames": v["n_frames"], "steps_done": [len(f) - 1 for f in frames], "wall_s": info["wall_s"],
           "rg_ratio": v["rg_ratio"], "stopped": [s["reason"] if s else None for s in info["stopped"]]}
    try:
        out.update(distribution(ref, frames, step_ps=info["step_ps"], horizon=horizon))
    except ImportError:  # MDAnalysisTests (the crystal structures of the states) absent
        pass
    return out


def distribution(ref: np.ndarray | list, frames: list, *, step_ps: float, horizon: int) -> dict:
    """The distributional metrics of ``frames`` (list of (T, N, 3) [Å], one frame per ``step_ps``) against the
    reference run ``ref`` (T, N, 3) [Å] or several runs pooled (a list of them; their states read every
    ``horizon``-th frame): RMSF r and ratio, PC1–PC2 W2, Rg Jensen–Shannon distance and the two-state summary."""
    from MDAnalysisTests.datafiles import PDB_closed, PDB_small

    from eghn_md.rollout.distribution import compare_ensembles
    from eghn_md.rollout.states import states_from_files

    refs = ref if isinstance(ref, list) else [ref]
    states = states_from_files(PDB_closed, PDB_small, n_nodes=refs[0].shape[1], names=("closed", "open"))
    m = compare_ensembles(reference=refs, model=frames, states=states, step_ps=step_ps, reference_stride=horizon)
    return {"rmsf_r": m["rmsf"]["pearson_r"], "rmsf_ratio": m["rmsf"]["ratio"], "w2_A": m["pca"]["w2_A"],
            "js_rg": m["js"]["rg"], "states": m.get("states")}


def floor(data: Path, ref: np.ndarray, horizon: int) -> dict:
    """The reference's own floor: run 3 (an independent MD run, one frame per ``horizon``) judged as if it were a
    model against run 2, with the same metrics as :func:`judge`."""
    import MDAnalysis as mda

    u = mda.Universe(str(data / "adk_cg.pdb"), str(data / "run-3.dcd"))
    other = np.stack([u.atoms.positions.astype(np.float64) for _ in u.trajectory[::horizon]])
    m = distribution(ref, [other], step_ps=float(u.trajectory.dt) * horizon, horizon=horizon)
    return {**m, "n_frames": len(other)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/data/adk-eq")
    ap.add_argument("--workdir", default="runs/gen_eq")
    ap.add_argument("--models", default="generative,eghn")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--horizon", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--stride", type=int, default=1, help="Training windows: every k-th start frame.")
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--sample-steps", type=int, default=None)
    ap.add_argument("--source-scale", type=float, default=None, help="The generative sampler's λ (default: the "
                    "model's own); choose it on the training run with state_kernel.py --run 1 --scan.")
    ap.add_argument("--train", default="{}", help="JSON overrides of the train section.")
    ap.add_argument("--model-overrides", default="{}", help="JSON overrides of the generative model section.")
    ap.add_argument("--train-dcd", type=Path, default=None, help="The training run (default DATA/run-1.dcd): another "
                    "run of the same model, e.g. a longer one (`generate --seed 11 --frames 25000`).")
    ap.add_argument("--train-only", action="store_true", help="Train the runs and stop.")
    ap.add_argument("--init", default=None, help="Start the generative runs from this model (a fine-tune, `train "
                    "--init`); '{seed}' in the path is replaced by the seed.")
    ap.add_argument("--reprior", type=float, default=None, help="With --init: recompute the init model's contact "
                    "prior with this prior_fraction first (pairs within the cutoff in at least this fraction of "
                    "run 1's frames).")
    ap.add_argument("--checkpoint", default="model.pt",
                    help="Checkpoint of each run to roll out (last.pt: the last epoch of an unfinished run).")
    ap.add_argument("--floor", action="store_true", help="Also judge run 3 (MD) against run 2: the floor.")
    ap.add_argument("--judge-run", type=int, default=2, help="The reference run the ensembles start from and are "
                    "judged against (2, the test run; 1, the training run, to choose a sampler setting on).")
    ap.add_argument("--pooled", default=None, help="Comma-separated DCDs of further independent MD runs (same "
                    "topology): each ensemble is also judged against them and the judge run pooled (key 'pooled').")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    data, work = Path(args.data), Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    h5 = _h5(data, work, args.train_dcd)
    runs = {(model, seed): train(work, h5, model, seed, args) for model in args.models.split(",") if model
            for seed in (int(s) for s in args.seeds.split(","))}
    if args.train_only:
        return
    ref, dt = _reference(data, args.judge_run)
    pooled = [ref]
    for path in (args.pooled.split(",") if args.pooled else []):
        other, other_dt = _reference(data, path=Path(path))
        if abs(other_dt - dt) > 1e-6 * dt:
            ap.error(f"--pooled {path}: frames {other_dt:g} ps apart, the judge run's {dt:g} ps")
        pooled.append(other)
    results = {}
    if args.floor:
        results["floor_md_run3"] = r = floor(data, ref, args.horizon)
        print("floor (run 3)", json.dumps({k: v for k, v in r.items() if k != "states"}), flush=True)
        print("  states", json.dumps(r["states"]), flush=True)
    for (model, seed), run in runs.items():
        frames, info = roll(run, data, ref, args, seed)
        results[f"{model}_s{seed}"] = r = judge(frames, ref, info, data, args.horizon)
        if len(pooled) > 1 and "states" in r:
            r["pooled"] = distribution(pooled, frames, step_ps=info["step_ps"], horizon=args.horizon)
            print("  pooled", json.dumps(r["pooled"]), flush=True)
        print(model, seed, json.dumps({k: v for k, v in r.items() if k != "states"}), flush=True)
        if r.get("states"):
            print("  states", json.dumps(r["states"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
