"""Train / evaluate models on a benchmark's splits over several seeds and summarise test MSE (×10⁻²).

Settings (:class:`BenchSettings`) are a :class:`~eghn_md.train.options.TrainConfig` and
:class:`~eghn_md.models.ModelConfig` field overrides: the benchmarks' own defaults are overrides of those homes.

The same harness serves M-complex and motion capture: build each model from :mod:`eghn_md.models`, train it with
:func:`eghn_md.train.loop.fit` (best validation epoch kept), evaluate the per-coordinate test MSE. A model that
declares ``closed_form`` (the ``linear`` baseline ``x + θ v``, one parameter) is set to its least-squares optimum
on the training set instead of being trained, which is the value training converges to.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import DivergenceError, UsageError
from eghn_md.train.options import TrainConfig

__all__ = ["BenchSettings", "BENCH_TRAIN", "BENCH_MODEL", "BENCH_POOLING_MODEL", "BENCH_MODELS", "BENCH_SEEDS",
           "run_benchmark", "summarise", "format_table", "linear_fit_theta"]


#: where the benchmarks' optimisation differs from :class:`~eghn_md.train.options.TrainConfig`'s defaults (the one
#: home of every training hyper-parameter): the authors' M-complex / motion-capture scripts' batch, decay and
#: evaluation cadence, on the CPU
BENCH_TRAIN = {"batch_size": 100, "weight_decay": 1e-12, "patience": 50, "eval_every": 5, "device": "cpu"}
#: where the benchmarks' models differ from :class:`~eghn_md.models.ModelConfig`'s defaults (the one home of every
#: model hyper-parameter); the input sizes and scales come from the training set
BENCH_MODEL = {"n_pool_layers": 3, "n_decoder_layers": 1, "n_clusters": 3}
#: where the models that pool (EGHN, :func:`~eghn_md.models.registry.models_with` ``pools=True``) differ from the
#: others: their interaction layers per level
BENCH_POOLING_MODEL = {"n_layers": 3}
#: the models and training seeds a benchmark runs when none are named
BENCH_MODELS = ("egnn",)
BENCH_SEEDS = (1, 2, 3)
#: ModelConfig fields a benchmark fixes from its data, not from the settings
_DATA_FIELDS = ("name", "node_in", "edge_in", "length_scale", "radius_scale", "vel_scale", "disp_scale")


@dataclass(kw_only=True)
class BenchSettings:
    """Settings of one benchmark run, composed from the library's one home of each hyper-parameter: ``train`` a
    :class:`~eghn_md.train.options.TrainConfig` (its ``seed`` is replaced by each run's), ``model`` the
    :class:`~eghn_md.models.ModelConfig` fields every model gets, ``model_overrides`` maps a model name to the fields
    that differ for it (e.g. EGHN's layer counts). Build it with :meth:`create`, which starts from
    :data:`BENCH_TRAIN` / :data:`BENCH_MODEL` / :data:`BENCH_POOLING_MODEL`."""

    train: TrainConfig
    model: dict = field(default_factory=dict)
    model_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in [self.model, *self.model_overrides.values()]:
            _check_model_fields(what)

    @classmethod
    def create(cls, *, train: Optional[Mapping] = None, model: Optional[Mapping] = None,
               model_overrides: Optional[Mapping] = None) -> "BenchSettings":
        """The benchmark defaults with ``train`` (TrainConfig fields), ``model`` (ModelConfig fields) and
        ``model_overrides`` (per model name, on top of :data:`BENCH_POOLING_MODEL` for the pooling models) on top."""
        from eghn_md.models.registry import models_with

        overrides = {name: dict(BENCH_POOLING_MODEL) for name in models_with(pools=True)}
        for name, fields in (model_overrides or {}).items():
            overrides[name] = {**overrides.get(name, {}), **fields}
        return cls(train=TrainConfig(**{**BENCH_TRAIN, **(train or {})}), model={**BENCH_MODEL, **(model or {})},
                   model_overrides=overrides)

    def model_fields(self, name: str) -> dict:
        """Every ModelConfig field model ``name`` gets from these settings (the library defaults beneath), except
        those its data fixes (sizes and scales)."""
        from dataclasses import MISSING, fields

        from eghn_md.models.config import ModelConfig

        base = {f.name: f.default for f in fields(ModelConfig) if f.default is not MISSING}
        base = {k: v for k, v in base.items() if k not in _DATA_FIELDS}
        return {**base, **self.model, **self.model_overrides.get(name, {})}

    def to_dict(self) -> dict:
        """One flat record (model fields, then training fields) for a benchmark's JSON summary."""
        return {**self.model, **self.train.to_dict(), "model_overrides": self.model_overrides}


def _check_model_fields(d: Mapping) -> None:
    from dataclasses import fields

    from eghn_md.models import ModelConfig

    valid = [f.name for f in fields(ModelConfig) if f.name not in _DATA_FIELDS]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise UsageError(f"unknown benchmark model setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")


def linear_fit_theta(model, train_set: Sequence[GraphBatch]) -> float:
    """Least-squares θ of ``x + θ·(disp_scale/vel_scale)·v`` on ``train_set``; stored into ``model.theta``
    (:meth:`eghn_md.models.linear.LinearModel.fit_closed_form`)."""
    return model.fit_closed_form(train_set)


def _model_config(name: str, train_set: Sequence[GraphBatch], s: BenchSettings):
    from eghn_md.data.samples import compute_stats
    from eghn_md.models import ModelConfig

    g = train_set[0]
    stats = compute_stats(train_set)
    scales = {k: stats[k] for k in ("length_scale", "radius_scale", "vel_scale", "disp_scale")}
    return ModelConfig(name=name, node_in=int(g.h.shape[1]), edge_in=int(g.edge_attr.shape[1]), **scales,
                       **s.model_fields(name))


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
    from eghn_md.models.registry import build_model, model_capabilities, model_names
    from eghn_md.train.loop import evaluate_mse, fit

    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise UsageError(f"unknown model(s) {unknown}; valid: {', '.join(model_names())}")
    rows = []
    for name in models:
        for seed in seeds:
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            np.random.seed(seed)
            cfg = _model_config(name, train_set, settings)
            tc = replace(settings.train, seed=seed)
            model = build_model(cfg)
            if model_capabilities(name).closed_form:
                model.fit_closed_form(train_set)
                best_val = evaluate_mse(model, val_set, batch_size=tc.batch_size, device=tc.device)
                best_epoch, epochs_run = 0, 0
            else:
                try:
                    result = fit(model, train_set, val_set, config=tc)
                except DivergenceError as exc:  # a result too: the other models and seeds still run
                    rows.append(_diverged_row(name, seed, exc, time.perf_counter() - t0, log))
                    continue
                model.load_state_dict(result.best_state)
                best_val, best_epoch, epochs_run = result.best_val_mse, result.best_epoch, len(result.history)
            test = evaluate_mse(model, test_set, batch_size=tc.batch_size, device=tc.device)
            row = {"model": name, "seed": seed, "test_mse": test, "val_mse": best_val, "best_epoch": best_epoch,
                   "epochs_run": epochs_run, "wall_s": time.perf_counter() - t0,
                   "n_params": sum(p.numel() for p in model.parameters())}
            rows.append(row)
            if log:
                log(f"{name} seed {seed}: test {100 * test:.2f}e-2 val {100 * best_val:.2f}e-2 "
                    f"(best epoch {best_epoch}/{epochs_run}, {row['wall_s']:.0f} s)")
    return rows


def _diverged_row(name: str, seed: int, exc: DivergenceError, wall_s: float, log) -> dict:
    """The row of a (model, seed) whose training diverged: NaN errors and the reason (``diverged``)."""
    if log:
        log(f"{name} seed {seed}: {exc}")
    return {"model": name, "seed": seed, "test_mse": math.nan, "val_mse": math.nan, "best_epoch": 0,
            "epochs_run": 0, "wall_s": wall_s, "n_params": 0, "diverged": str(exc)}


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
