"""Run configuration: model + data + train sections, built-in presets, YAML files and command-line overrides.

Resolution order (later wins): built-in defaults → ``--preset`` → ``--config FILE.yaml`` → explicit command-line
options. The resolved configuration is saved as ``RUN/config.yaml`` and inside every checkpoint.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from eghn_md.choices import PRESET_NAMES
from eghn_md.data.samples import DataConfig
from eghn_md.errors import UsageError
from eghn_md.train.options import TrainConfig

__all__ = ["RunConfig", "PRESETS", "resolve_config", "load_yaml"]

#: rollout-stability training of the tiny / default presets (eghn_md.train.objective; measured in RESULTS.md)
_STABLE = {"noise_std": 0.3, "noise_scale": 0.05, "unroll_steps": 2, "pushforward": True, "bond_weight": 20.0,
           "clash_weight": 5.0}

PRESETS: dict[str, dict] = {
    # CPU minutes on the MDAnalysisTests AdK Cα trajectory (214 nodes, 98 frames): used by `make demo` and tests.
    "tiny": {
        "model": {"name": "eghn", "hidden": 32, "n_layers": 2, "n_pool_layers": 1, "n_decoder_layers": 1,
                  "n_clusters": 6},
        "data": {"horizon": 5},
        "train": {"epochs": 30, "batch_size": 8, "lr": 2e-3, "weight_decay": 1e-4, "schedule": "cosine",
                  "reg_weight": 0.1, "patience": 15, "eval_every": 1, **_STABLE},
    },
    # A default for a new system, chosen by measurement on the AdK rollouts (examples/benchmarks/RESULTS.md,
    # "Rollout stability"): the small EGHN of the AdK accuracy table (hidden 32, 2 layers, K = 6, λ = 0.1) with four
    # bond-graph refinement layers, trained for rollouts (noise, breathing, 3 back-propagated unrolled steps and 2
    # free steps, bond and clash losses).
    "default": {
        "model": {"name": "eghn", "hidden": 32, "n_layers": 2, "n_pool_layers": 1, "n_decoder_layers": 1,
                  "n_clusters": 6, "refine_layers": 4},
        "data": {"horizon": 15},
        "train": {"epochs": 60, "batch_size": 8, "lr": 2e-3, "weight_decay": 1e-4, "schedule": "cosine",
                  "reg_weight": 0.1, "patience": 20, "eval_every": 1, **_STABLE, "unroll_steps": 3,
                  "pushforward": False, "noise_scale": 0.15, "free_steps": 2},
    },
    # The authors' protein protocol (IMPLEMENTATION-NOTES.md; their config.json + main_mdanalysis.py): their model
    # (eghn-published) in their raw units (scales 1: positions in Å, velocity channel in Å per horizon), their features
    # (node [|v|, charge / max|charge|], edge [d, d²]: preprocess with --select backbone from a topology with
    # charges), 8 Å, ΔT = 15, hidden 128, 4 interaction / 4 pooling / 2 decoder layers, K = 20, λ = 2, Adam (L2 weight
    # decay, not AdamW) lr 5e-5, weight decay 1e-4, batch 8, no schedule, no gradient clipping, validation every
    # 5 epochs, early stopping after 50 evaluations without improvement. (Their epoch cap is 15 000; early stopping
    # ends a run long before on AdK.) Our velocity channel is x_t − x_{t−ΔT}, theirs x_{t+1} − x_t.
    "paper": {
        "model": {"name": "eghn-published", "hidden": 128, "n_layers": 4, "n_pool_layers": 4, "n_decoder_layers": 2,
                  "n_clusters": 20, "length_scale": 1.0, "vel_scale": 1.0, "disp_scale": 1.0},
        "data": {"horizon": 15, "cutoff": 8.0, "split": [0.6, 0.2, 0.2], "features": "paper"},
        "train": {"epochs": 1000, "batch_size": 8, "optimizer": "adam", "lr": 5e-5, "weight_decay": 1e-4,
                  "reg_weight": 2.0, "schedule": "none", "grad_clip": 0.0, "patience": 50, "eval_every": 5},
    },
    # The equations variant (eghn) at the paper's sizes, as `paper` was before it became the authors' protocol:
    # residue features, scales from the training statistics, AdamW (decoupled weight decay 1e-4), gradient norm
    # clipped at 10, lr 5e-5, batch 8, no schedule, validation every 5 epochs, patience 50 evaluations. Its λ = 2
    # weighs a *squared* regulariser with sum-normalised rows (eghn) where `paper`'s weighs the unsquared L2-row one.
    "paper-eghn": {
        "model": {"name": "eghn", "hidden": 128, "n_layers": 4, "n_pool_layers": 4, "n_decoder_layers": 2,
                  "n_clusters": 20},
        "data": {"horizon": 15, "cutoff": 8.0, "split": [0.6, 0.2, 0.2]},
        "train": {"epochs": 1000, "batch_size": 8, "optimizer": "adamw", "lr": 5e-5, "weight_decay": 1e-4,
                  "reg_weight": 2.0, "schedule": "none", "grad_clip": 10.0, "patience": 50, "eval_every": 5},
    },
}


@dataclass
class RunConfig:
    """The resolved configuration of a training run (model section stays a dict until the data fixes its sizes)."""

    model: dict
    data: DataConfig
    train: TrainConfig

    def to_dict(self) -> dict:
        return {"model": dict(self.model), "data": self.data.to_dict(), "train": self.train.to_dict()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        unknown = sorted(set(d) - {"model", "data", "train"})
        if unknown:
            raise UsageError(f"unknown config section(s) {unknown}; valid: ['data', 'model', 'train']")
        d = _move_reg_weight(d)
        return cls(
            model=dict(d.get("model") or {}),
            data=DataConfig.from_dict(dict(d.get("data") or {})),
            train=TrainConfig.from_dict(dict(d.get("train") or {})),
        )


assert tuple(PRESETS) == PRESET_NAMES  # the list users pick from (eghn_md.choices)


def _move_reg_weight(d: dict) -> dict:
    """``d`` with λ in its train section: a ``model: reg_weight`` (config files and checkpoints of earlier versions,
    where it was also a model field) moves there, unless the same source names a different ``train: reg_weight``."""
    model = d.get("model")
    if not isinstance(model, dict) or "reg_weight" not in model:
        return d
    train = d.get("train") or {}
    if not isinstance(train, dict):
        return d  # reported by the section check
    legacy = model["reg_weight"]
    if "reg_weight" in train and train["reg_weight"] != legacy:
        raise UsageError(f"reg_weight is given twice, model: reg_weight {legacy!r} and train: reg_weight "
                         f"{train['reg_weight']!r}; λ is a training setting: keep train: reg_weight only")
    rest = {k: v for k, v in model.items() if k != "reg_weight"}
    return {**d, "model": rest, "train": {**train, "reg_weight": legacy}}


def load_yaml(path: str | Path) -> dict:
    """Read a YAML config file (``model:``, ``data:``, ``train:`` sections)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {str(path)!r} does not exist")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {str(path)!r} is not a text (UTF-8) YAML file") from None
    if not isinstance(d, dict):
        raise UsageError(f"config file {str(path)!r} must hold a mapping with model/data/train sections")
    return d


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for section, values in over.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise UsageError(f"config section {section!r} must be a mapping, got {type(values).__name__}")
        out.setdefault(section, {}).update(values)
    return out


def resolve_config(
    *, preset: Optional[str] = "default", config_file: Optional[str | Path] = None, overrides: Optional[dict] = None
) -> RunConfig:
    """Combine preset, YAML file and explicit overrides (``{"model": {...}, "data": {...}, "train": {...}}``)."""
    if preset is None:
        preset = "default"
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; valid choices: {', '.join(PRESETS)}")
    d: dict[str, Any] = copy.deepcopy(PRESETS[preset])
    if config_file is not None:
        d = _merge(d, _move_reg_weight(load_yaml(config_file)))
    if overrides:
        d = _merge(d, _move_reg_weight({k: {kk: vv for kk, vv in v.items() if vv is not None}
                                        for k, v in overrides.items()}))
    return RunConfig.from_dict(d)
