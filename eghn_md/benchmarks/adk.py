"""The paper's protein-MD protocol on AdK equilibrium (MDAnalysisData ``adk_equilibrium``).

Protocol (the authors' released code, github.com/hanjq17/EGHN): backbone nodes (855 for AdK), 8 Å contacts +
covalent bonds, ΔT = 15 frames, chronological 0.6 / 0.2 / 0.2 split, the ``paper`` preset (hidden 128, 4 interaction
/ 4 pooling / 2 decoder layers, K = 20, λ = 2, Adam lr 5e-5, weight decay 1e-4, batch 8, validation every 5 epochs,
patience 50 evaluations), test MSE per coordinate at the best validation epoch. Paper (Å², per coordinate): Linear
2.890, RF 2.846, MPNN 2.322, EGNN 2.735, EGHN 1.843.

The trajectory (4187 frames, 240 ps apart) comes from MDAnalysisData, which downloads it once into its cache
(``pip install MDAnalysisData``; ``python -c "from MDAnalysisData import datasets;
datasets.fetch_adk_equilibrium()"``). Any other topology + trajectory can be passed instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from eghn_md.errors import UsageError

__all__ = ["PAPER_MSE", "adk_equilibrium_files", "run_adk"]

PAPER_MSE = {"linear": 2.890, "rf": 2.846, "gnn": 2.322, "egnn": 2.735, "eghn": 1.843}


def adk_equilibrium_files() -> tuple[str, str]:
    """Topology and trajectory of MDAnalysisData's ``adk_equilibrium`` from its local cache (never downloads)."""
    try:
        from MDAnalysisData import datasets
    except ImportError:
        raise UsageError(
            "the AdK equilibrium trajectory needs MDAnalysisData: pip install 'eghn-md[adk]', then fetch it once with "
            "python -c \"from MDAnalysisData import datasets; datasets.fetch_adk_equilibrium()\" "
            "(or pass `topology`/`trajectory`)", params=("topology", "trajectory")
        ) from None
    try:
        d = datasets.fetch_adk_equilibrium(download_if_missing=False)
    except (OSError, IOError) as exc:
        raise UsageError(
            f"adk_equilibrium is not in MDAnalysisData's cache ({exc}); fetch it once with "
            "python -c \"from MDAnalysisData import datasets; datasets.fetch_adk_equilibrium()\""
        ) from None
    return str(d.topology), str(d.trajectory)


def run_adk(
    out_dir: str | Path,
    *,
    topology: Optional[str] = None,
    trajectory: Optional[str] = None,
    models: Sequence[str] = ("eghn", "egnn"),
    seeds: Sequence[int] = (1, 2, 3),
    preset: str = "paper",
    select: str = "backbone",
    overrides: Optional[dict] = None,
    overwrite: bool = False,
    progress_factory=None,
) -> dict:
    """Preprocess, train every model with every seed and return ``{model: {"mse": (mean, std), ...}}``.

    Args:
        out_dir: working directory (dataset ``adk.h5`` and one run directory per model and seed).
        topology, trajectory: input files; default MDAnalysisData's ``adk_equilibrium``.
        preset, overrides: training configuration (default: the paper's), see :func:`resolve_config`.
        progress_factory: ``f(label) -> Progress`` (:class:`eghn_md.utils.Progress`) for preprocessing and for each
            training run, or None (silent).
    """
    from eghn_md.data.preprocess import preprocess
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    if (topology is None) != (trajectory is None):
        raise UsageError("pass both `topology` and `trajectory`, or neither (to use adk_equilibrium)",
                         params=("topology", "trajectory"))
    if topology is None:
        topology, trajectory = adk_equilibrium_files()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "adk.h5"
    if overwrite or not data.exists():
        progress = progress_factory("preprocess") if progress_factory else None
        preprocess(topology, [trajectory], data, select=select, overwrite=True, progress=progress)
    results: dict = {}
    for model in models:
        rows = []
        for seed in seeds:
            ov = {k: dict(v) for k, v in (overrides or {}).items()}
            ov.setdefault("model", {})["name"] = model
            ov.setdefault("train", {})["seed"] = int(seed)
            cfg = resolve_config(preset=preset, overrides=ov)
            progress = progress_factory(f"{model} seed {seed}") if progress_factory else None
            m = train_run([data], out / f"{model}_s{seed}", config=cfg, overwrite=True, progress=progress)
            rows.append(m)
        test = [r["splits"]["test"] for r in rows]
        mse = np.array([t["model"] for t in test])
        results[model] = {
            "mse": (float(mse.mean()), float(mse.std())),
            "static": test[0]["static"],
            "const_velocity": test[0]["const_velocity"],
            "windows": test[0]["windows"],
            "paper": PAPER_MSE.get(model),
            "best_epochs": [r["best_epoch"] for r in rows],
            "train_samples_per_s": float(np.mean([r["train_samples_per_s"] for r in rows])),
        }
    return results
