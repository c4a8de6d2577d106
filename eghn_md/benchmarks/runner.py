"""Train / evaluate models on a benchmark's splits over several seeds and summarise test MSE (×10⁻²).

The same harness serves M-complex and motion capture: build each model from :mod:`eghn_md.models`, train it with
:func:`eghn_md.train.loop.fit` (best validation epoch kept), evaluate the per-coordinate test MSE. The ``linear``
baseline (``x + θ v``, one parameter) is set to its least-squares optimum on the training set instead of being
trained, which is the value training converges to.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import UsageError

__all__ = ["BenchSettings", "run_benchmark", "summarise", "format_table", "linear_fit_theta"]


@dataclass(kw_only=True)
class BenchSettings:
    """Model and optimisation settings of one benchmark run (``model_overrides`` maps a model name to
    :class:`~eghn_md.models.ModelConfig` fields that differ for it, e.g. EGHN's layer counts)."""

    hidden: int = 64
    n_layers: int = 4
    n_pool_layers: int = 3
    n_decoder_layers: int = 1
    n_clusters: int = 3
    reg_weight: float = 1.0
    epochs: int = 100
    batch_size: int = 100
    lr: float = 5e-4
    weight_decay: float = 1e-12
    schedule: str = "cosine"
    patience: int = 50
    eval_every: int = 5
    grad_clip: float = 10.0
    device: str = "cpu"
    model_overrides: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def linear_fit_theta(model, train_set: Sequence[GraphBatch]) -> float:
    """Least-squares θ of ``x + θ·(disp_scale/vel_scale)·v`` on ``train_set``; stored into ``model.theta``."""
    num = den = 0.0
    for g in train_set:
        v = g.vel.double()
        num += float(((g.target.double() - g.pos.double()) * v).sum())
        den += float((v * v).sum())
    c = model.config
    theta = (num / max(den, 1e-300)) / (c.disp_scale / c.vel_scale)
    with torch.no_grad():
        model.theta.fill_(theta)
    return theta


def _model_config(name: str, train_set: Sequence[GraphBatch], s: BenchSettings):
    from eghn_md.data.samples import compute_stats
    from eghn_md.models import ModelConfig

    g = train_set[0]
    stats = compute_stats(train_set)
    fields_ = dict(name=name, node_in=int(g.h.shape[1]), edge_in=int(g.edge_attr.shape[1]), hidden=s.hidden,
                   n_layers=s.n_layers, n_pool_layers=s.n_pool_layers, n_decoder_layers=s.n_decoder_layers,
                   n_clusters=s.n_clusters, reg_weight=s.reg_weight, length_scale=stats["length_scale"],
                   radius_scale=stats["radius_scale"],
                   vel_scale=stats["vel_scale"], disp_scale=stats["disp_scale"])
    fields_.update(s.model_overrides.get(name, {}))
    return ModelConfig(**fields_)


def run_benchmark(
    train_set: Sequence[GraphBatch],
    val_set: Sequence[GraphBatch],
    test_set: Sequence[GraphBatch],
    *,
    models: Sequence[str],
    seeds: Sequence[int],
    settings: BenchSettings,
    log: Optional[Callable[[str], None]] = None,
) -> list[dict]:
    """One row per (model, seed): test / best-validation MSE per coordinate, best epoch, epochs run, wall time."""
    from eghn_md.models import MODEL_NAMES, build_model
    from eghn_md.train.loop import evaluate_mse, fit
    from eghn_md.train.options import TrainConfig

    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        raise UsageError(f"unknown model(s) {unknown}; valid: {', '.join(MODEL_NAMES)}")
    rows = []
    for name in models:
        for seed in seeds:
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            np.random.seed(seed)
            cfg = _model_config(name, train_set, settings)
            model = build_model(cfg)
            if name == "linear":
                linear_fit_theta(model, train_set)
                best_val = evaluate_mse(model, val_set, batch_size=settings.batch_size, device=settings.device)
                best_epoch, epochs_run = 0, 0
            else:
                tc = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                                 weight_decay=settings.weight_decay, schedule=settings.schedule,
                                 grad_clip=settings.grad_clip, patience=settings.patience,
                                 eval_every=settings.eval_every, reg_weight=cfg.reg_weight, seed=seed,
                                 device=settings.device)
                result = fit(model, train_set, val_set, config=tc, progress=None)
                model.load_state_dict(result.best_state)
                best_val, best_epoch, epochs_run = result.best_val_mse, result.best_epoch, len(result.history)
            test = evaluate_mse(model, test_set, batch_size=settings.batch_size, device=settings.device)
            row = {"model": name, "seed": seed, "test_mse": test, "val_mse": best_val, "best_epoch": best_epoch,
                   "epochs_run": epochs_run, "wall_s": time.perf_counter() - t0,
                   "n_params": sum(p.numel() for p in model.parameters())}
            rows.append(row)
            if log:
                log(f"{name} seed {seed}: test {100 * test:.2f}e-2 val {100 * best_val:.2f}e-2 "
                    f"(best epoch {best_epoch}/{epochs_run}, {row['wall_s']:.0f} s)")
    return rows


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Mean ± sample std over seeds of the test MSE, ×10⁻² (per model, in the order first seen)."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        vals = np.array([100.0 * r["test_mse"] for r in rows if r["model"] == name])
        out.append({"model": name, "mean_e2": float(vals.mean()),
                    "std_e2": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, "n_seeds": int(len(vals)),
                    "wall_s": float(sum(r["wall_s"] for r in rows if r["model"] == name))})
    return out


def format_table(summary: Sequence[dict], paper: Optional[dict] = None) -> str:
    """A plain-text table: model, ours (mean ± std ×10⁻²), paper's value when given."""
    lines = [f"{'model':<16}{'test MSE (x1e-2)':>20}{'paper':>16}{'seeds':>7}"]
    for r in summary:
        p = (paper or {}).get(r["model"])
        ps = f"{p[0]:.2f} ± {p[1]:.2f}" if p else "—"
        ours = f"{r['mean_e2']:.2f} ± {r['std_e2']:.2f}" if math.isfinite(r["mean_e2"]) else "nan"
        lines.append(f"{r['model']:<16}{ours:>20}{ps:>16}{r['n_seeds']:>7}")
    return "\n".join(lines)
