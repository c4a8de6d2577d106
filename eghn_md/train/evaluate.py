"""Evaluation at the horizon: the model beside the static (x_t) and constant-velocity (x_t + v_t) predictors.

All errors are the paper's metric: mean squared error per coordinate [Å²] (nodes and the 3 coordinates pooled;
multiply by 3 for the mean squared displacement per node).

A generative model can also be judged as a distribution (:func:`sample_calibration`): ``n`` samples per window,
the error of their mean and of one sample, and how often the truth lies in the samples' central 50 % interval
(25th–75th percentile, ``torch.quantile``'s linear interpolation). For ``n`` samples and a truth drawn from the
same distribution that share is about 0.5 (n − 1) / (n + 1) (:func:`ideal_coverage`: 44.1 % for 16), the value a
calibrated sampler scores; less means the samples are too narrow, more too wide. The sampler's source
scale λ (``source_scale``) widens or narrows them, and can be chosen on a held-out split.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from eghn_md.choices import EVAL_SPLITS, PREDICTORS
from eghn_md.data.batch import GraphBatch, collate
from eghn_md.errors import UsageError
from eghn_md.io.atomic import atomic_path, check_output_path
from eghn_md.utils import resolve_device

__all__ = ["PREDICTORS", "evaluate_sets", "evaluate_model", "ideal_coverage", "calibrate_source_scale",
           "per_node_errors", "physical_data_config", "sample_calibration"]


@torch.no_grad()
def per_node_errors(
    model: torch.nn.Module, samples: Sequence[GraphBatch], *, batch_size: int = 8, device="cpu"
) -> dict:
    """Squared errors per node, averaged over windows and coordinates [Å²], for every predictor.

    All samples must be graphs of the same system (same node count). Returns ``{predictor: (N,) ndarray}`` and
    ``"windows"``.
    """
    device = resolve_device(device)
    model.eval()
    sums: dict = {}
    n_windows = 0
    for start in range(0, len(samples), batch_size):
        chunk = [samples[i] for i in range(start, min(start + batch_size, len(samples)))]
        batch = collate(chunk).to(device)
        preds = {
            "model": model(batch).pos,
            "static": batch.pos,
            "const_velocity": batch.pos + batch.vel,
        }
        n = chunk[0].num_nodes
        for k, p in preds.items():
            err = ((p.double() - batch.target.double()) ** 2).mean(dim=1).view(len(chunk), n).sum(dim=0)
            sums[k] = sums.get(k, 0) + err.cpu().numpy()
        n_windows += len(chunk)
    out = {k: v / max(n_windows, 1) for k, v in sums.items()}
    out["windows"] = n_windows
    return out


def ideal_coverage(n_samples: int) -> float:
    """The share of truths inside the central-50 % interval of ``n_samples`` samples when truth and samples come from
    one distribution: 0.5 (n − 1) / (n + 1), exact for uniform variables (ranks 1 + q (n − 1) interpolated,
    E[U_(k)] = k / (n + 1)) and close for smooth ones (Gaussian: 44.5 % against 44.1 % for n = 16, 32 % against
    30 % for n = 4: interpolated quantiles do not map linearly through the CDF)."""
    return 0.5 * (n_samples - 1) / (n_samples + 1)


@torch.no_grad()
def sample_calibration(model: torch.nn.Module, windows: Sequence[GraphBatch], *, n_samples: int, seed: int = 0,
                       device="cpu", sample_steps: Optional[int] = None) -> dict:
    """A generative ``model`` judged as a distribution over the ``windows`` (module docstring; each a graph with
    ``pos`` x_t and ``target`` x(t + ΔT), (N, 3) [Å]):
    ``n_samples`` samples of every window in one batched pass (``sample_steps`` integration steps, default the
    model's), the noise drawn from a CPU generator seeded ``seed``. Returns ``mse_mean`` and ``mse_one`` [Å² per
    coordinate] (the samples' mean, the first sample), ``coverage50`` and its ``ideal`` (fractions), ``spread``
    (the samples' mean per-coordinate variance [Å²]), ``step_msd`` and ``data_step_msd`` [Å² per coordinate] (how
    far a sample and the truth lie from x_t: the step a rollout takes against the data's; their ratio
    ``step_ratio`` < 1 means the sampler's steps are shorter than the trajectory's) and ``n_samples``."""
    _check_count(n_samples)
    device = resolve_device(device)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    sums = {"mse_mean": 0.0, "mse_one": 0.0, "coverage50": 0.0, "spread": 0.0, "step_msd": 0.0, "data_step_msd": 0.0}
    count = 0
    for s in windows:
        x = model(collate([s] * n_samples).to(device), generator=gen, steps=sample_steps).pos.double().cpu()
        x = x.reshape(n_samples, s.num_nodes, 3)
        y = s.target.double().cpu()
        lo, hi = torch.quantile(x, 0.25, dim=0), torch.quantile(x, 0.75, dim=0)
        sums["mse_mean"] += float(((x.mean(0) - y) ** 2).sum())
        sums["mse_one"] += float(((x[0] - y) ** 2).sum())
        sums["coverage50"] += float(((y >= lo) & (y <= hi)).double().sum())
        sums["spread"] += float(x.var(0, unbiased=True).sum())
        x_t = s.pos.double().cpu()
        sums["step_msd"] += float(((x - x_t) ** 2).sum()) / n_samples
        sums["data_step_msd"] += float(((y - x_t) ** 2).sum())
        count += y.numel()
    out = {k: v / max(count, 1) for k, v in sums.items()}
    return {**out, "step_ratio": out["step_msd"] / out["data_step_msd"] if out["data_step_msd"] > 0 else float("nan"),
            "ideal": ideal_coverage(n_samples), "n_samples": n_samples}


#: the most :func:`sample_calibration` passes :func:`calibrate_source_scale` spends on one search
MAX_CALIBRATION_PASSES = 8
#: [fraction] a coverage this close to the ideal ends the search
CALIBRATION_TOLERANCE = 0.01


def calibrate_source_scale(model: torch.nn.Module, windows: Sequence[GraphBatch], *, n_samples: int = 16,
                           seed: int = 0, device="cpu", sample_steps: Optional[int] = None,
                           max_passes: int = MAX_CALIBRATION_PASSES) -> dict:
    """The source scale λ under which a generative ``model``'s samples of ``windows`` are calibrated: the truth in
    their central 50 % as often as :func:`ideal_coverage` says (within :data:`CALIBRATION_TOLERANCE`).

    From the model's own λ, each pass (:func:`sample_calibration`, the same ``seed`` every time, so the coverage
    grows smoothly with λ) widens λ by 1.5 while the samples are too narrow, narrows it while too wide, and once the
    ideal is bracketed interpolates log λ between the bracket's ends (λ to 0.01); at most ``max_passes`` passes.
    The model is left at the λ whose coverage lies nearest the ideal. Returns ``source_scale`` (that λ),
    ``coverage50``, ``ideal``, ``bracketed`` (whether passes on both sides of the ideal were seen) and ``passes``
    (each pass's :func:`sample_calibration` result with its ``source_scale``, in the order run)."""
    from eghn_md.models.registry import set_source_scale

    target, passes = ideal_coverage(n_samples), []

    def covered(lam: float) -> float:
        set_source_scale(model, lam)
        passes.append({"source_scale": lam, **sample_calibration(model, windows, n_samples=n_samples, seed=seed,
                                                                 device=device, sample_steps=sample_steps)})
        return passes[-1]["coverage50"]

    lam = float(model.config.source_scale)
    below, above = {}, {}  # λ -> coverage of the passes too narrow / wide enough
    while len(passes) < max(int(max_passes), 1):
        c = covered(lam)
        (below if c < target else above)[lam] = c
        if abs(c - target) <= CALIBRATION_TOLERANCE:
            break
        nxt = _next_scale(lam, below, above, target)
        if nxt is None:
            break
        lam = nxt
    best = min(passes, key=lambda p: abs(p["coverage50"] - target))
    set_source_scale(model, best["source_scale"])
    return {"source_scale": best["source_scale"], "coverage50": best["coverage50"], "ideal": target,
            "bracketed": bool(below and above), "passes": passes}


def _next_scale(lam: float, below: dict, above: dict, target: float) -> Optional[float]:
    """The next λ of :func:`calibrate_source_scale` (rounded to 0.01), or None when it was already tried."""
    import math

    if not above:
        nxt = lam * 1.5
    elif not below:
        nxt = lam / 1.5
    else:  # between the widest λ still too narrow and the narrowest wide enough, interpolated in log λ
        lo, hi = max(below), min(above)
        w = (target - below[lo]) / max(above[hi] - below[lo], 1e-12)
        nxt = math.exp(math.log(lo) + min(max(w, 0.2), 0.8) * (math.log(hi) - math.log(lo)))
    nxt = max(round(nxt, 2), 0.01)
    return None if nxt in below or nxt in above else nxt


def _check_count(n_samples) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise UsageError(f"`samples` must be an integer >= 2 (samples per window, to judge their spread), got "
                         f"{n_samples!r}", params=("samples",))


def evaluate_sets(model: torch.nn.Module, sets: dict, *, batch_size: int = 8, device="cpu") -> dict:
    """``{split: {"model": mse, "static": mse, "const_velocity": mse, "windows": n}}`` [Å² per coordinate]."""
    out = {}
    for name, samples in sets.items():
        if len(samples) == 0:
            continue
        errs = per_node_errors(model, samples, batch_size=batch_size, device=device)
        out[name] = {k: float(np.mean(errs[k])) for k in PREDICTORS}
        out[name]["windows"] = errs["windows"]
    return out


def evaluate_model(
    model_path: str | Path,
    data: Sequence[str | Path],
    *,
    split: str = "test",
    device: str = "auto",
    batch_size: int = 8,
    per_node_csv: Optional[str | Path] = None,
    whole: bool = False,
    samples: Optional[int] = None,
    source_scale: Optional[float] = None,
    seed: int = 0,
    sample_steps: Optional[int] = None,
    calibrate: bool = False,
) -> dict:
    """Evaluate a trained model on dataset files.

    Args:
        model_path: ``RUN/model.pt``.
        data: dataset files with the model's nodes.
        split: which time block of each trajectory (``train``/``val``/``test``, the model's split fractions), or
            ``all`` for every window of the files (e.g. an independent trajectory).
        per_node_csv: where to write the per-node errors (node, residue, atom, one column per predictor).
        samples: a generative model only: also judge ``samples`` samples per window as a distribution
            (:func:`sample_calibration`, noise seeded ``seed``; key ``"sampled"``).
        source_scale: a generative model only: sample with this source scale λ (default: the checkpoint's).
        sample_steps: with ``samples``: integration steps per sample (default: the checkpoint's).
        calibrate: a generative model only: first search the source scale λ whose ``samples`` (16 when not given)
            are calibrated on the split (:func:`calibrate_source_scale`, from ``source_scale`` or the checkpoint's;
            key ``"calibration"``), then evaluate everything at that λ.
    """
    from eghn_md.train.checkpoint import load_model

    if split not in EVAL_SPLITS:
        raise UsageError(f"unknown split {split!r}; valid choices: {', '.join(EVAL_SPLITS)}")
    if not data:
        raise UsageError("no dataset given")
    model, ckpt = load_model(model_path, device=device)  # the inputs first: a missing model is named as such
    samples = _check_sampling(model, samples=samples, source_scale=source_scale, sample_steps=sample_steps,
                              calibrate=calibrate)
    for d in data:
        if not Path(d).exists():
            raise UsageError(f"dataset file {str(d)!r} does not exist")
    if per_node_csv is not None:  # then the output, before the work
        check_output_path(per_node_csv, overwrite=True)
    splits, split_key = _eval_splits(data, ckpt, split)
    with splits:
        windows, kw = splits.sets[split_key], {"n_samples": samples, "seed": seed, "device": device,
                                               "sample_steps": sample_steps}
        # the model is left at the λ found, which everything below then uses
        calibration = calibrate_source_scale(model, windows, **kw) if calibrate else None
        result = _evaluate(model, windows, ckpt, batch_size, device, per_node_csv, horizon=splits.horizon_frames)
        if samples is not None:
            sampled = sample_calibration(model, windows, **kw) if calibration is None else _found(calibration)
            result["sampled"] = {**sampled, "seed": seed, "sample_steps": sample_steps}
        if calibration is not None:
            result["calibration"] = calibration
    if source_scale is not None or samples is not None:  # the λ behind the model's errors and the samples
        result["source_scale"] = float(model.config.source_scale)
    result.update({"model_file": str(model_path), "data": [str(d) for d in data], "split": split,
                   "horizon_frames": splits.horizon_frames, "horizon_ps": splits.horizon_ps,
                   "frame_dt_ps": splits.frame_dt_ps, "trained_horizon_frames": int(ckpt.data_config["horizon"]),
                   "trained_frame_dt_ps": ckpt.stats.get("frame_dt_ps"),
                   "horizon_frames_per_trajectory": {f"{s['file']}:{s['trajectory']}": s["horizon_frames"]
                                                     for s in splits.sources},
                   "notes": _step_notes(splits, ckpt) + splits.notes, "model_name": ckpt.model_config.get("name")})
    return result


def _found(calibration: dict) -> dict:
    """The :func:`sample_calibration` result of the pass at the λ :func:`calibrate_source_scale` chose."""
    best = next(p for p in calibration["passes"] if p["source_scale"] == calibration["source_scale"])
    return {k: v for k, v in best.items() if k != "source_scale"}


def _eval_splits(data: Sequence[str | Path], ckpt, split: str):
    """The windows ``evaluate_model`` reads: (the built splits, the key of the one evaluated); ``all``: every window
    of the files."""
    from eghn_md.train.sources import build_splits

    dc = physical_data_config(ckpt)
    if split == "all":
        return build_splits([], config=dc, test=list(data), only=["test"], expected_nodes=ckpt.nodes), "test"
    return build_splits(list(data), config=dc, only=[split], expected_nodes=ckpt.nodes), split


def _check_sampling(model: torch.nn.Module, *, samples: Optional[int], source_scale: Optional[float],
                    sample_steps: Optional[int], calibrate: bool = False) -> Optional[int]:
    """Refuse the sampling options for a deterministic model (and ``sample_steps`` without ``samples``); set a
    generative model's source scale. Returns the samples per window (16 for ``calibrate`` when not given)."""
    from eghn_md.models.registry import is_generative, set_source_scale

    if sample_steps is not None and samples is None and not calibrate:
        raise UsageError("`sample_steps` sets how the `samples` are drawn: give `samples` too",
                         params=("sample_steps", "samples"))
    if samples is not None:
        _check_count(samples)
    if (calibrate or samples is not None) and not is_generative(model):
        asked = ("calibrate", "`calibrate` searches the source scale of") if calibrate else \
            ("samples", f"`samples` {samples} judges")
        raise UsageError(f"{asked[1]} a generative model's samples, but this model is deterministic; drop it or train "
                         "one with the generative `preset`", params=(asked[0], "preset"))
    if calibrate and samples is None:
        samples = 16
    if source_scale is not None:
        set_source_scale(model, source_scale)
    return samples


def _step_notes(splits, ckpt) -> list[str]:
    """One note per trajectory whose frames per step differ from training ('spans 5 frames', issue 14)."""
    trained = int(ckpt.data_config["horizon"])
    notes = {}
    for s in splits.sources:
        if s["horizon_frames"] != trained:
            notes[f"{s['file']}:{s['trajectory']}"] = (
                f"trajectory {s['trajectory']!r} of {s['file']!r}: one step of the model's {splits.horizon_ps:.6g} ps "
                f"horizon spans {s['horizon_frames']} frames (trained on {trained} frames "
                f"{float(ckpt.stats.get('frame_dt_ps') or float('nan')):.6g} ps apart)")
    return list(notes.values())


def physical_data_config(ckpt):
    """The model's data config with its horizon as physical time (``stats["horizon_ps"]``) where it has one, so
    that each dataset steps over the matching number of its own frames."""
    import math

    from eghn_md.data.samples import DataConfig

    dc = DataConfig.from_dict(ckpt.data_config)
    horizon_ps = ckpt.stats.get("horizon_ps")
    if dc.horizon_ps is None and horizon_ps is not None and math.isfinite(float(horizon_ps)) and horizon_ps > 0:
        dc.horizon_ps = float(horizon_ps)
    return dc


def _evaluate(model, samples, ckpt, batch_size, device, per_node_csv, *, horizon: int) -> dict:
    if len(samples) == 0:
        raise UsageError(
            f"no window of 2×{horizon}+1 frames fits in the chosen split; "
            "try `split` all or a longer trajectory", params=("split",)
        )
    errs = per_node_errors(model, samples, batch_size=batch_size, device=device)
    result = {k: float(np.mean(errs[k])) for k in PREDICTORS}
    result["windows"] = errs["windows"]
    result["metric"] = "MSE per coordinate [Å²] at the horizon"
    if per_node_csv is not None:
        nodes = ckpt.nodes
        with atomic_path(per_node_csv) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["node", "segid", "resid", "resname", "atom", *[f"{p}_mse_A2" for p in PREDICTORS]])
            for i in range(len(errs["model"])):
                w.writerow([i, nodes["segid"][i], nodes["resid"][i], nodes["resname"][i], nodes["name"][i],
                            *[f"{errs[p][i]:.6g}" for p in PREDICTORS]])
        result["per_node_csv"] = str(per_node_csv)
    return result
