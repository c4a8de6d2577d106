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

__all__ = ["RunConfig", "PRESETS", "resolve_config", "load_yaml", "migrate_legacy", "LEGACY_KEYS"]

#: rollout-stability training of the tiny / default presets (eghn_md.train.objective; measured in RESULTS.md)
_STABLE = {"noise_std": 0.3, "noise_scale": 0.05, "unroll_steps": 2, "pushforward": True, "bond_weight": 20.0,
           "clash_weight": 5.0}

#: per-model values of the tiny / default presets: where a model of the registry needs other values than eghn's to
#: train without diverging and to beat the static predictor, measured on AdK DCD → DCD2 (ΔT = 15, Cα; the backbone
#: size for divergence): examples/benchmarks/results/presets.md. The input noise that eghn's refinement learns to
#: undo costs the other models their accuracy (egnn 1.02 → 0.48 Å²); gnn, not rotation-equivariant, overfits the
#: orientations of 35 windows unless they are rotated (1.43 → 0.44 Å²); eghn-published's own predictions, fed back
#: unrolled, turn non-finite at the AdK backbone size (855 nodes) before its first update: it trains one step ahead.
#: Models without a bond-graph refinement get refine_layers 0 (they have nothing it would set).
_PER_MODEL = {
    "egnn": {"train": {"noise_std": 0.0, "noise_scale": 0.0}},
    "gnn": {"model": {"refine_layers": 0}, "train": {"noise_std": 0.0, "noise_scale": 0.0, "rotate": True}},
    "rf": {"model": {"refine_layers": 0}, "train": {"noise_std": 0.0, "noise_scale": 0.0}},
    "linear": {"model": {"refine_layers": 0}},
    "eghn-published": {"model": {"refine_layers": 0},
                       "train": {"lr": 5e-4, "noise_std": 0.0, "noise_scale": 0.0, "unroll_steps": 1,
                                 "free_steps": 0}},
}

PRESETS: dict[str, dict] = {
    # CPU minutes on the MDAnalysisTests AdK Cα trajectory (214 nodes, 98 frames): used by `make demo` and tests.
    "tiny": {
        "model": {"name": "eghn", "hidden": 32, "n_layers": 2, "n_pool_layers": 1, "n_decoder_layers": 1,
                  "n_clusters": 6},
        "data": {"horizon": 5},
        "train": {"epochs": 30, "batch_size": 8, "lr": 2e-3, "weight_decay": 1e-4, "schedule": "cosine",
                  "reg_weight": 0.1, "patience": 15, "eval_every": 1, **_STABLE},
        "models": _PER_MODEL,
    },
    # A default for a new system, chosen by measurement on the AdK rollouts (examples/benchmarks/RESULTS.md,
    # "Rollout stability"): the small EGHN of the AdK accuracy table (hidden 32, 2 layers, K = 6, λ = 0.1) with four
    # bond-graph refinement layers, trained for rollouts (noise, breathing, 3 back-propagated unrolled steps and 2
    # free steps, bond and clash losses); `models`: the other models' own values (_PER_MODEL).
    "default": {
        "model": {"name": "eghn", "hidden": 32, "n_layers": 2, "n_pool_layers": 1, "n_decoder_layers": 1,
                  "n_clusters": 6, "refine_layers": 4},
        "data": {"horizon": 15},
        "train": {"epochs": 60, "batch_size": 8, "lr": 2e-3, "weight_decay": 1e-4, "schedule": "cosine",
                  "reg_weight": 0.1, "patience": 20, "eval_every": 1, **_STABLE, "unroll_steps": 3,
                  "pushforward": False, "noise_scale": 0.15, "free_steps": 2},
        "models": _PER_MODEL,
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
    # The generative model (eghn_md.models.generative): the small EGHN of `default` as the denoiser of a
    # conditional flow from x_t to x_{t+ΔT}, Markov (a rollout starts from one structure), sampled with 8 Euler
    # steps; trained by flow matching with the bond and clash terms on the denoised frame
    # (eghn_md.train.flow_objective) and on every window played backwards too (equilibrium MD is time-reversible;
    # a Markov model must not learn a direction). Measured in examples/benchmarks/results/generative.md; the
    # sequence features, input noise and breathing (without them the rollouts swell: a model never shown a frame
    # larger than the MD's extrapolates), the contact prior (the training run's native contacts as edges: RMSF r
    # 0.10-0.21 -> 0.90) and 4 sampling steps in results/generative_equilibrium.md; the spectral source (noise
    # shaped like the training motion on x_t's contact-graph modes: RMSF ratio 0.74-0.86 -> 1.00-1.08 on 3 seeds, more
    # crossings) in its section 6. It keeps the last epoch's
    # weights (the cosine schedule anneals into them): the validation MSE of one sample ranks a sampler that
    # spreads less as better (a perfect sampler's is twice the conditional variance), so "best" picks collapse.
    # Those weights are the moving average of the optimiser's (ema_decay 0.999, section 7: W2 and Rg JS better on
    # two seeds of three, mean W2 1.23 -> 1.07 Å, mean Rg JS 0.42 -> 0.37).
    "generative": {
        "model": {"name": "eghn", "generative": True, "hidden": 32, "n_layers": 2, "n_pool_layers": 1,
                  "n_decoder_layers": 1, "n_clusters": 6, "sample_steps": 4, "guide_steps": 2, "contact_prior": True,
                  "spectral_source": True},
        "data": {"horizon": 15, "features": "sequence"},
        "train": {"epochs": 60, "batch_size": 8, "lr": 2e-3, "weight_decay": 1e-4, "schedule": "cosine",
                  "reg_weight": 0.1, "patience": 20, "eval_every": 1, "bond_weight": 20.0, "clash_weight": 5.0,
                  "time_reversal": True, "noise_std": 0.3, "noise_scale": 0.1, "select": "last", "ema_decay": 0.999},
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
        d = migrate_legacy(d)
        return cls(
            model=dict(d.get("model") or {}),
            data=DataConfig.from_dict(dict(d.get("data") or {})),
            train=TrainConfig.from_dict(dict(d.get("train") or {})),
        )


assert tuple(PRESETS) == PRESET_NAMES  # the list users pick from (eghn_md.choices)


#: keys that earlier versions wrote in another section: ``(section, key)`` → the ``(section, key)`` of their one home
#: now. λ (``reg_weight``) was also a model field; it is a training setting.
LEGACY_KEYS = {("model", "reg_weight"): ("train", "reg_weight")}


def migrate_legacy(d: dict, *, recorded: bool = False) -> dict:
    """``d`` (a mapping of config sections) with every key of :data:`LEGACY_KEYS` moved to its home: the one home of
    this migration (config files, command-line overrides, stored run configurations, checkpoints).

    A legacy value moves unless the home already has one: the same value is fine, a different one is refused (one
    source naming λ twice); with ``recorded`` (a checkpoint, whose home section holds the value the run used) the
    home's value wins and the legacy copy is dropped."""
    out = dict(d)
    for (old_sec, key), (new_sec, new_key) in LEGACY_KEYS.items():
        old = out.get(old_sec)
        if not isinstance(old, dict) or key not in old:
            continue
        home = out.get(new_sec) or {}
        if not isinstance(home, dict):
            continue  # reported by the section check
        legacy = old[key]
        if new_key in home and home[new_key] != legacy and not recorded:
            raise UsageError(f"{key} is given twice, {old_sec}: {key} {legacy!r} and {new_sec}: {new_key} "
                             f"{home[new_key]!r}; it is a {new_sec} setting: keep {new_sec}: {new_key} only")
        out[old_sec] = {k: v for k, v in old.items() if k != key}
        out[new_sec] = home if (recorded and new_key in home) else {**home, new_key: legacy}
    return out


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
    """Combine preset, YAML file and explicit overrides (``{"model": {...}, "data": {...}, "train": {...}}``).

    A preset's ``models`` entry holds per-model values (``{model name: {section: {...}}}``) for the model the
    resolved configuration names: they apply over the preset's own sections and under the file and the overrides."""
    if preset is None:
        preset = "default"
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; valid choices: {', '.join(PRESETS)}")
    d: dict[str, Any] = copy.deepcopy(PRESETS[preset])
    per_model = d.pop("models", {})
    layers = [migrate_legacy(load_yaml(config_file))] if config_file is not None else []
    if overrides:
        layers.append(migrate_legacy({k: {kk: vv for kk, vv in v.items() if vv is not None}
                                      for k, v in overrides.items()}))
    names = [layer["model"]["name"] for layer in layers
             if isinstance(layer.get("model"), dict) and layer["model"].get("name") is not None]
    d = _merge(d, per_model.get(names[-1] if names else d["model"].get("name"), {}))
    for layer in layers:
        d = _merge(d, layer)
    return RunConfig.from_dict(d)
