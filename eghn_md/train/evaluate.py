"""Evaluation at the horizon: the model beside the static (x_t) and constant-velocity (x_t + v_t) predictors.

All errors are the paper's metric: mean squared error per coordinate [Å²] (nodes and the 3 coordinates pooled;
multiply by 3 for the mean squared displacement per node).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from eghn_md.data.batch import GraphBatch, collate
from eghn_md.errors import UsageError
from eghn_md.io.atomic import atomic_path, check_output_path
from eghn_md.utils import resolve_device

__all__ = ["PREDICTORS", "evaluate_sets", "evaluate_model", "per_node_errors"]

PREDICTORS = ("model", "static", "const_velocity")


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
) -> dict:
    """Evaluate a trained model on dataset files.

    Args:
        model_path: ``RUN/model.pt``.
        data: dataset files with the model's nodes.
        split: which time block of each trajectory (``train``/``val``/``test``, the model's split fractions), or
            ``all`` for every window of the files (e.g. an independent trajectory).
        per_node_csv: where to write the per-node errors (node, residue, atom, one column per predictor).
    """
    from eghn_md.data.samples import DataConfig
    from eghn_md.train.checkpoint import load_model
    from eghn_md.train.sources import build_splits

    valid = ("train", "val", "test", "all")
    if split not in valid:
        raise UsageError(f"unknown split {split!r}; valid choices: {', '.join(valid)}")
    if not data:
        raise UsageError("no dataset given")
    if per_node_csv is not None:  # fail before the work, not after it
        check_output_path(per_node_csv, overwrite=True)
    model, ckpt = load_model(model_path, device=device)
    dc = DataConfig.from_dict(ckpt.data_config)
    if split == "all":
        with build_splits([], config=dc, test=list(data), only=["test"], expected_nodes=ckpt.nodes) as splits:
            samples = splits.sets["test"]
            result = _evaluate(model, samples, ckpt, batch_size, device, per_node_csv)
    else:
        with build_splits(list(data), config=dc, only=[split], expected_nodes=ckpt.nodes) as splits:
            samples = splits.sets[split]
            result = _evaluate(model, samples, ckpt, batch_size, device, per_node_csv)
    result.update({"model_file": str(model_path), "data": [str(d) for d in data], "split": split,
                   "horizon_frames": dc.horizon, "model_name": ckpt.model_config.get("name")})
    return result


def _evaluate(model, samples, ckpt, batch_size, device, per_node_csv) -> dict:
    if len(samples) == 0:
        raise UsageError(
            f"no window of 2×{ckpt.data_config.get('horizon')}+1 frames fits in the chosen split; "
            "try --split all or a longer trajectory"
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
