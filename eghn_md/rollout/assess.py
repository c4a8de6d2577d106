"""Rollouts as a metric (``eghn-md evaluate --rollout STEPS``): autoregressive rollouts of a trained model from
evenly spaced windows of a dataset split, their RMSD to the true frames per step beside the static and
constant-velocity predictors, and the validity of every rolled-out frame (:mod:`eghn_md.rollout.validity`).

RMSD is without superposition (the surrogate predicts absolute frames) and averaged over the starts that still
have a true frame at that step; validity counts every predicted frame, true frame or not, so a rollout may run past
the end of its trajectory.

Rollouts of at least :data:`MIN_DISTRIBUTION_STEPS` steps are also judged as a distribution
(:func:`eghn_md.rollout.distribution.compare_ensembles`): every rollout of every start pooled as the model ensemble
against the split's frames read one horizon apart (the reference, sampled at the model's step), beside the
reference's own floor (:func:`~eghn_md.rollout.distribution.reference_floor`: its two halves compared); with a
two-state definition also populations, transitions per 1,000 steps and dwell times. Shorter rollouts sample too
little for a distribution, so they get none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from eghn_md.choices import PREDICTORS
from eghn_md.errors import UsageError
from eghn_md.rollout.distribution import compare_ensembles, reference_floor
from eghn_md.rollout.rollout import GuardConfig, const_velocity_rollout, rollout, write_rmsd_csv
from eghn_md.rollout.start import model_dtype
from eghn_md.rollout.states import TwoStates, states_from_files
from eghn_md.rollout.validity import validity_report
from eghn_md.utils import Progress, as_progress, evenly_spaced

__all__ = ["assess_rollouts", "assess_model_rollouts", "rollout_starts", "write_rollout_csv"]

MIN_DISTRIBUTION_STEPS = 20  #: shortest rollout judged as a distribution


def rollout_starts(window_sets: Sequence, n_starts: int) -> list[tuple[object, int]]:
    """Up to ``n_starts`` ``(window_set, start frame)`` pairs, evenly spaced over all windows of the sets."""
    pairs = [(ws, t) for ws in window_sets for t in ws.starts]
    if not pairs:
        raise UsageError("no window fits in the chosen split for a rollout start; try `split` all", params=("split",))
    return [pairs[int(i)] for i in evenly_spaced(len(pairs), n_starts)]


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
            "stopped": res.stopped, "steps_done": len(res.frames) - 1, "frames": np.asarray(res.frames)}


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


def _reference_frames(window_sets: Sequence) -> list[np.ndarray]:
    """(T_k, N, 3) [Å] every window set's block read one horizon apart (the model's step), those of >= 2 frames."""
    return [np.stack([ws.frame(f).numpy() for f in range(ws.block_start, ws.block_stop, ws.horizon)])
            for ws in window_sets if ws.block_stop - ws.block_start > ws.horizon]


def _distribution(runs: list[dict], window_sets: Sequence, *, states: Optional[TwoStates], step_ps: float) -> dict:
    """The rollouts as an ensemble against the split's frames one horizon apart, and the reference's floor."""
    reference = _reference_frames(window_sets)
    model = [r["frames"] for r in runs if len(r["frames"]) >= 2]
    if not reference or not model:
        return {"skipped": "the reference or the rollouts have fewer than 2 frames"}
    out = compare_ensembles(reference=reference, model=model, states=states, step_ps=step_ps)
    try:
        out["floor"] = reference_floor(reference, states=states, step_ps=step_ps)
    except UsageError as exc:  # a reference too short to halve
        out["floor"] = {"skipped": str(exc)}
    out["reference_frames_apart"] = int(window_sets[0].horizon)
    return out


def assess_rollouts(model: torch.nn.Module, window_sets: Sequence, *, steps: int, n_starts: int = 4,
                    node_kind: str = "residue", device="cpu", guard: Optional[GuardConfig] = None,
                    step_ps: float = float("nan"), states: Optional[TwoStates] = None,
                    keep_frames: bool = False, seed: int = 0, progress: Optional[Progress] = None) -> dict:
    """Roll ``model`` out ``steps`` horizons from up to ``n_starts`` evenly spaced windows of ``window_sets``
    (:class:`~eghn_md.data.samples.WindowSet`); returns RMSD-vs-step curves [Å] of the model, static and
    constant-velocity predictors, the pooled validity and one entry per rollout, and with ``steps`` >=
    :data:`MIN_DISTRIBUTION_STEPS` the ``distribution`` of the pooled rollouts against the split (``states``: a
    two-state definition for populations and transitions). ``keep_frames`` adds ``frames``: the model's (T, N, 3) [Å]
    rollouts and the reference's frames one horizon apart (arrays, for figures; not JSON). A generative model
    samples the k-th start's rollout from torch's CPU generator seeded with ``seed + k`` (the same numbers on every
    call; the caller's random state is restored)."""
    if states is not None and steps < MIN_DISTRIBUTION_STEPS:
        raise UsageError(f"`states` needs rollouts of at least {MIN_DISTRIBUTION_STEPS} steps, got {steps}",
                         params=("states",))
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
        for k, (ws, t) in enumerate(starts):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + k)
                runs.append(_one(model, ws, t, steps, node_kind=node_kind, device=device,
                                 guard=guard or GuardConfig()))
            progress.update({"done": len(runs)})
    finally:
        progress.stop()
    curves = _mean_curves(runs, steps)
    out = {
        "steps": steps, "horizon_frames": int(window_sets[0].horizon) if len(window_sets) else None,
        "step_ps": float(step_ps),
        "rmsd_A": curves, "validity": _pooled_validity(runs),
        "rollouts": [{k: v for k, v in r.items() if k not in ("rmsd", "frames")} for r in runs],
    }
    if steps >= MIN_DISTRIBUTION_STEPS:
        out["distribution"] = _distribution(runs, window_sets, states=states, step_ps=float(step_ps))
    if keep_frames:
        out["frames"] = {"model": [r["frames"] for r in runs], "reference": _reference_frames(window_sets)}
    return out


def write_rollout_csv(result: dict, path: str | Path) -> Path:
    """RMSD vs step and time of every predictor (mean over the rollouts), for the steps that have a true frame,
    written atomically (:func:`~eghn_md.rollout.rollout.write_rmsd_csv`)."""
    return write_rmsd_csv(path, result["rmsd_A"], step_ps=result["step_ps"])


def assess_model_rollouts(model_path: str | Path, data: Sequence[str | Path], *, split: str, steps: int,
                          n_starts: int = 4, device: str = "auto", states: Optional[Sequence[str | Path]] = None,
                          keep_frames: bool = False, progress: Optional[Progress] = None,
                          source_scale: Optional[float] = None) -> dict:
    """:func:`assess_rollouts` of a checkpoint on the ``split`` windows of dataset files (``all``: every window);
    ``states``: two structure files (Cα of the data's nodes) of states A and B
    (:func:`~eghn_md.rollout.states.states_from_files`); ``source_scale``: a generative model's sampler λ
    (default: the checkpoint's)."""
    from eghn_md.train.checkpoint import load_model
    from eghn_md.train.evaluate import physical_data_config
    from eghn_md.train.sources import build_splits
    from eghn_md.utils import resolve_device

    dev = resolve_device(device)
    model, ckpt = load_model(model_path, device=dev)
    if source_scale is not None:
        from eghn_md.models.registry import set_source_scale

        set_source_scale(model, source_scale)
    dc = physical_data_config(ckpt)
    which = "test" if split == "all" else split
    files = {"data": [], "test": list(data)} if split == "all" else {"data": list(data), "test": []}
    with build_splits(files["data"], config=dc, test=files["test"], only=[which],
                      expected_nodes=ckpt.nodes) as splits:
        sets = splits.sets[which].parts
        n_nodes = int(sets[0].h.shape[0]) if sets else None
        two = None if states is None else states_from_files(*states, n_nodes=n_nodes)
        return assess_rollouts(model, sets, steps=steps, n_starts=n_starts, node_kind=splits.system.nodes.level,
                               device=dev, step_ps=float(ckpt.stats.get("horizon_ps", float("nan"))),
                               guard=GuardConfig.for_model(ckpt.stats), states=two, keep_frames=keep_frames,
                               progress=progress)
