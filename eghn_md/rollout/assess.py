"""Rollouts as a metric (``eghn-md evaluate --rollout STEPS``): autoregressive rollouts of a trained model from
evenly spaced windows of a dataset split, their RMSD to the true frames per step beside the static and
constant-velocity predictors, and the validity of every rolled-out frame (:mod:`eghn_md.rollout.validity`).

RMSD is without superposition (the surrogate predicts absolute frames) and averaged over the starts that still
have a true frame at that step; validity counts every predicted frame, true frame or not, so a rollout may run past
the end of its trajectory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from eghn_md.choices import PREDICTORS
from eghn_md.errors import UsageError
from eghn_md.rollout.rollout import GuardConfig, const_velocity_rollout, rollout, write_rmsd_csv
from eghn_md.rollout.start import model_dtype
from eghn_md.rollout.validity import validity_report
from eghn_md.utils import Progress, as_progress

__all__ = ["assess_rollouts", "assess_model_rollouts", "rollout_starts", "write_rollout_csv"]


def rollout_starts(window_sets: Sequence, n_starts: int) -> list[tuple[object, int]]:
    """Up to ``n_starts`` ``(window_set, start frame)`` pairs, evenly spaced over all windows of the sets."""
    pairs = [(ws, t) for ws in window_sets for t in ws.starts]
    if not pairs:
        raise UsageError("no window fits in the chosen split for a rollout start; try `split` all", params=("split",))
    idx = np.unique(np.linspace(0, len(pairs) - 1, num=min(n_starts, len(pairs))).round().astype(int))
    return [pairs[int(i)] for i in idx]


def _true_frames(ws, t: int, steps: int) -> np.ndarray:
    """(1 + k, N, 3) [Å] the start frame and the true frames one horizon apart inside the window set's block."""
    frames = [ws.frame(t).numpy()]
    for k in range(1, steps + 1):
        f = t + k * ws.horizon
        if f >= ws.block_stop:
            break
        frames.append(ws.frame(f).numpy())
    return np.stack(frames)


@torch.no_grad()
def _one(model, ws, t: int, steps: int, *, node_kind: str, device, guard: GuardConfig) -> dict:
    """Roll the model out from frame ``t`` of ``ws``; RMSD per step of every predictor and the validity report."""
    dtype = model_dtype(model)
    to = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    x_prev = ws.frame(t - ws.horizon).numpy()
    truth = _true_frames(ws, t, steps)
    res = rollout(model, x_prev=to(x_prev), x0=to(truth[0]), h=ws.h.to(device, dtype), bonds=ws.bonds.to(device),
                  cutoff=ws.cutoff, steps=steps, guard=guard)
    n = min(len(res.frames), len(truth))
    preds = {"model": res.frames[:n], "static": np.repeat(truth[:1], n, axis=0),
             "const_velocity": const_velocity_rollout(x_prev, truth[0], n - 1)}
    rmsd = {k: np.sqrt(((p.astype(np.float64) - truth[:n]) ** 2).sum(axis=2).mean(axis=1)) for k, p in preds.items()}
    report = validity_report(res.frames, bonds=ws.bonds, node_kind=node_kind, truth=truth[: len(res.frames)])
    return {"start": int(t), "window_set": ws.name, "rmsd": rmsd, "validity": report.summary(),
            "stopped": res.stopped, "steps_done": len(res.frames) - 1}


def _mean_curves(runs: list[dict], steps: int) -> dict:
    """Per step, the mean RMSD [Å] over the runs that have that step (None where none has)."""
    out = {}
    for k in PREDICTORS:
        curve = []
        for s in range(steps + 1):
            vals = [r["rmsd"][k][s] for r in runs if len(r["rmsd"][k]) > s]
            curve.append(float(np.mean(vals)) if vals else None)
        out[k] = curve
    return out


def _pooled_validity(runs: list[dict]) -> dict:
    """Validity over every frame of every rollout: counts, fractions, worst values, first invalid step."""
    vs = [r["validity"] for r in runs]
    n = sum(v["n_frames"] for v in vs)
    firsts = [v["first_invalid_frame"] for v in vs if v["first_invalid_frame"] is not None]
    return {
        "n_rollouts": len(vs), "n_frames": n,
        "frames_with_break": sum(v["frames_with_break"] for v in vs),
        "frames_with_clash": sum(v["frames_with_clash"] for v in vs),
        "frac_frames_with_break": sum(v["frames_with_break"] for v in vs) / max(n, 1),
        "frac_frames_with_clash": sum(v["frames_with_clash"] for v in vs) / max(n, 1),
        "first_invalid_step": min(firsts) if firsts else None,
        "max_bond_dev_A": max(v["max_bond_dev_A"] for v in vs),
        "rg_ratio": {"min": min(v["rg_ratio"]["min"] for v in vs), "max": max(v["rg_ratio"]["max"] for v in vs)},
        "thresholds_A": vs[0]["thresholds_A"],
        "rollouts_stopped": sum(r["stopped"] is not None for r in runs),
        "rmsf_r_mean": (float(np.mean([v["rmsf_r"] for v in vs if v["rmsf_r"] is not None]))
                        if any(v["rmsf_r"] is not None for v in vs) else None),
    }


def assess_rollouts(model: torch.nn.Module, window_sets: Sequence, *, steps: int, n_starts: int = 4,
                    node_kind: str = "residue", device="cpu", guard: Optional[GuardConfig] = None,
                    step_ps: float = float("nan"), progress: Optional[Progress] = None) -> dict:
    """Roll ``model`` out ``steps`` horizons from up to ``n_starts`` evenly spaced windows of ``window_sets``
    (:class:`~eghn_md.data.samples.WindowSet`); returns RMSD-vs-step curves [Å] of the model, static and
    constant-velocity predictors, the pooled validity and one entry per rollout."""
    if steps < 1:
        raise UsageError(f"rollout steps must be >= 1, got {steps}")
    if n_starts < 1:
        raise UsageError(f"rollout starts must be >= 1, got {n_starts}")
    model.eval()
    runs = []
    starts = rollout_starts(window_sets, n_starts)
    progress = as_progress(progress)
    progress.start(len(starts))
    try:
        for ws, t in starts:
            runs.append(_one(model, ws, t, steps, node_kind=node_kind, device=device, guard=guard or GuardConfig()))
            progress.update({"done": len(runs)})
    finally:
        progress.stop()
    curves = _mean_curves(runs, steps)
    return {
        "steps": steps, "horizon_frames": int(window_sets[0].horizon) if len(window_sets) else None,
        "step_ps": float(step_ps),
        "rmsd_A": curves, "validity": _pooled_validity(runs),
        "rollouts": [{k: v for k, v in r.items() if k != "rmsd"} for r in runs],
    }


def write_rollout_csv(result: dict, path: str | Path) -> Path:
    """RMSD vs step and time of every predictor (mean over the rollouts), for the steps that have a true frame,
    written atomically (:func:`~eghn_md.rollout.rollout.write_rmsd_csv`)."""
    return write_rmsd_csv(path, result["rmsd_A"], step_ps=result["step_ps"])


def assess_model_rollouts(model_path: str | Path, data: Sequence[str | Path], *, split: str, steps: int,
                          n_starts: int = 4, device: str = "auto", progress: Optional[Progress] = None) -> dict:
    """:func:`assess_rollouts` of a checkpoint on the ``split`` windows of dataset files (``all``: every window)."""
    from eghn_md.train.checkpoint import load_model
    from eghn_md.train.evaluate import physical_data_config
    from eghn_md.train.sources import build_splits
    from eghn_md.utils import resolve_device

    dev = resolve_device(device)
    model, ckpt = load_model(model_path, device=dev)
    dc = physical_data_config(ckpt)
    which = "test" if split == "all" else split
    files = {"data": [], "test": list(data)} if split == "all" else {"data": list(data), "test": []}
    with build_splits(files["data"], config=dc, test=files["test"], only=[which],
                      expected_nodes=ckpt.nodes) as splits:
        sets = splits.sets[which].parts
        return assess_rollouts(model, sets, steps=steps, n_starts=n_starts, node_kind=splits.system.nodes.level,
                               device=dev, step_ps=float(ckpt.stats.get("horizon_ps", float("nan"))),
                               guard=GuardConfig.for_model(ckpt.stats), progress=progress)
