"""``eghn-md train`` as one library call: datasets → splits → model → fit → checkpoints, history and metrics.

Output directory layout::

    RUN/model.pt       best-on-validation weights + config + stats + node metadata (what other commands load)
    RUN/last.pt        last completed epoch, with optimizer/scheduler state (what --resume continues from); its
                       weights are the average when ``train: ema_decay`` is on
    RUN/config.yaml    the resolved configuration
    RUN/history.csv    one row per epoch (losses, validation MSE, learning rate, samples/s)
    RUN/metrics.json   final summary (best epoch, validation/test MSE beside the static and constant-velocity
                       baselines, throughput)
    RUN/loss.png       training / validation curves (written by the ``train`` command through eghn_md.export.figures)
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from eghn_md import __version__
from eghn_md.errors import DivergenceError, UsageError, warn
from eghn_md.io.atomic import atomic_path
from eghn_md.models.registry import has_pooling
from eghn_md.train.checkpoint import load_checkpoint, save_checkpoint
from eghn_md.train.config import RunConfig
from eghn_md.train.flow_objective import objective_for
from eghn_md.train.loop import FitResult, TrainState, fit
from eghn_md.train.sources import build_splits
from eghn_md.utils import Progress, evenly_spaced

__all__ = ["train_run", "write_text_atomic"]

def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _history_csv(history: list) -> str:
    """The history rows as CSV; the columns are the rows' keys in the order the loop writes them (every loss term
    the objective reports is one), so a column is never listed twice."""
    buf = io.StringIO()
    columns = list(dict.fromkeys(k for row in history for k in row))
    w = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def _check_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {str(out)!r} exists and is not a directory")
    existing = [p.name for p in (out / "model.pt", out / "last.pt") if p.exists()]
    if resume:
        if not (out / "last.pt").exists():
            raise UsageError(f"`resume`: {str(out / 'last.pt')!r} does not exist (nothing to resume)",
                             params=("resume",))
        return
    if existing and not overwrite:
        raise UsageError(
            f"run directory {str(out)!r} already holds {', '.join(existing)}; pass `resume` to continue it or "
            "`overwrite` to start again", params=("resume", "overwrite")
        )


def _check_val_size(config: RunConfig, n_val: int, log) -> None:
    """Too few validation windows cannot rank epochs: keep the last epoch instead, and say what to do."""
    from eghn_md.train.options import MIN_VAL_WINDOWS

    if n_val >= MIN_VAL_WINDOWS or config.train.select != "best":
        return
    msg = (f"warning: the validation set has {n_val} window(s), too few to select a model (< {MIN_VAL_WINDOWS}); "
           "keeping the last epoch instead of the best on validation, without early stopping. For model selection "
           "pass an independent trajectory with --val FILE, or give validation a larger share of the frames "
           "(data: split in --config) or a shorter horizon")
    config.train.select = "last"
    warn(msg, log, stacklevel=4)


def _resumed(out: Path, config: RunConfig, resume_epochs: Optional[int]):
    """``(stored config, training state, last checkpoint)`` of the run in ``out`` (device from ``config``)."""
    last = load_checkpoint(out / "last.pt")
    if last.train_state is None:
        raise UsageError(f"{str(out / 'last.pt')!r} holds no training state to resume from")
    stored = RunConfig.from_dict({"model": dict(last.train_config.get("_model_section", {})),
                                  "data": last.data_config, "train": dict(last.train_config["train"])})
    if resume_epochs is not None:
        stored.train.epochs = int(resume_epochs)
    stored.train.device = config.train.device
    # how the samples are built and whether the model is compiled do not change the results: taken from this call
    stored.train.workers, stored.train.compile = config.train.workers, config.train.compile
    return stored, TrainState.from_dict(last.train_state), last


def _starting_point(out: Path, config: RunConfig, *, resume: bool, resume_epochs: Optional[int], init):
    """``(config, training state or None, checkpoint or None)`` of a run: the stored ones when resuming, the model
    of ``init`` for a new run from a model, else ``(config, None, None)``."""
    if resume and init is not None:
        raise UsageError("pass either `resume` (continue a run) or `init` (start a new run from a model), not both",
                         params=("resume", "init"))
    if resume:
        return _resumed(out, config, resume_epochs)
    return config, None, (load_checkpoint(init) if init is not None else None)


def _check_init(init: str | Path, model_cfg, config: RunConfig, splits, stats: dict) -> None:
    """A model a new run starts from (``init``) must read the data's node scalars and, with a contact prior, have
    its node count; else UsageError naming both."""
    want = _model_fields({}, config.data.features, int(splits.system.h.shape[1]), stats)["node_in"]
    if int(model_cfg.node_in) != int(want):
        raise UsageError(f"`init` {str(init)!r} reads {model_cfg.node_in} node scalars, but this data with features "
                         f"{config.data.features!r} gives {want}; use the model's features "
                         f"(data: features in the `config_file`)", params=("init", "config_file"))
    if model_cfg.generative and model_cfg.contact_prior and int(model_cfg.prior_nodes) != splits.system.n_nodes:
        raise UsageError(f"`init` {str(init)!r} carries a contact prior of {model_cfg.prior_nodes} nodes, but the "
                         f"data has {splits.system.n_nodes}: start from a model of this system", params=("init",))


def _model_config(config: RunConfig, splits, stats: dict, last):
    """The model's configuration: the stored one when resuming or starting from a model (``init``), else the model
    section sized by the data."""
    from eghn_md.models import ModelConfig
    from eghn_md.models.registry import check_model_config, model_capabilities, models_with

    if last is not None:
        return ModelConfig.from_dict(last.model_config)
    model_cfg = ModelConfig.from_dict(_model_fields(dict(config.model), config.data.features,
                                                    int(splits.system.h.shape[1]), stats))
    check_model_config(model_cfg)
    if has_pooling(model_cfg.name) and int(model_cfg.n_clusters) > splits.system.n_nodes:
        raise UsageError(f"`n_clusters` {model_cfg.n_clusters} exceeds the {splits.system.n_nodes} nodes of the "
                         f"data; choose K <= {splits.system.n_nodes}", params=("n_clusters",))
    if config.train.refine_noise > 0 and not (model_capabilities(model_cfg.name).refines and model_cfg.refine_layers):
        raise UsageError(f"train: refine_noise {config.train.refine_noise} needs a model with a bond-graph "
                         f"refinement ({', '.join(models_with(refines=True))} with refine_layers > 0), got "
                         f"{model_cfg.name!r} "
                         f"with refine_layers {model_cfg.refine_layers}; set refine_noise: 0")
    return model_cfg


def _check_ignored_options(model_cfg, log) -> None:
    """Options the model does not read (its declared capabilities) are reported, not ignored silently (a preset such
    as ``default`` sets ``refine_layers`` for ``eghn``; the other models train without the refinement)."""
    from eghn_md.errors import warn
    from eghn_md.models.registry import ignored_option_warnings

    for msg in ignored_option_warnings(model_cfg):
        warn(f"warning: {msg}", log, stacklevel=4)


def _check_windows(config: RunConfig, sets: dict) -> None:
    if len(sets["train"]) == 0 or len(sets["val"]) == 0:
        counts = {k: len(v) for k, v in sets.items()}
        raise UsageError(
            f"not enough frames for horizon {config.data.horizon}: windows per split {counts} (a window needs "
            f"2×horizon+1 consecutive frames inside one block); lower `horizon` or pass `val`/`test` files",
            params=("horizon", "val", "test"),
        )


def _diverged(exc: DivergenceError, out: Path) -> DivergenceError:
    """The loop's divergence message with what the run directory keeps: ``last.pt`` of the last good epoch."""
    last = out / "last.pt"
    if not last.exists():
        return DivergenceError(f"{exc.template}; no epoch completed", params=exc.params)
    epoch = (load_checkpoint(last).train_state or {}).get("epoch")
    return DivergenceError(f"{exc.template}; {str(last)!r} keeps epoch {epoch} (continue it with `resume`)",
                           params=(*exc.params, "resume"))


def _checkpoint_writer(out: Path, common: dict):
    """The ``on_epoch_end`` of :func:`fit`: best weights → model.pt, resumable state → last.pt, history.csv."""

    def on_epoch_end(state: TrainState, is_best: bool) -> None:
        if is_best:
            save_checkpoint(out / "model.pt", state_dict=state.best_state,
                            metrics={"best_epoch": state.best_epoch, "best_val_mse": state.best_val,
                                     "epochs": state.epoch}, **common)
        # a rollout of last.pt uses the averaged weights when ema_decay is on; resume reads train_state's own
        weights = state.ema_state if state.ema_state is not None else state.model_state
        save_checkpoint(out / "last.pt", state_dict=weights, train_state=state.to_dict(),
                        metrics={"epochs": state.epoch, "best_epoch": state.best_epoch,
                                 "best_val_mse": state.best_val}, **common)
        write_text_atomic(out / "history.csv", _history_csv(state.history))

    return on_epoch_end


def _metrics(model, model_cfg, config: RunConfig, result: FitResult, splits, stats: dict, t_start: float) -> dict:
    """Evaluate the best weights on validation / test and assemble ``metrics.json``."""
    from eghn_md.train.evaluate import evaluate_sets

    sets = splits.sets
    model.load_state_dict(result.best_state)
    evals = evaluate_sets(model, {k: v for k, v in sets.items() if k != "train" and len(v) > 0},
                          batch_size=config.train.batch_size, device=config.train.device)
    return {
        "eghn_md_version": __version__, "model": model_cfg.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs_run": result.last_state.epoch, "stopped_early": result.stopped_early,
        "best_epoch": result.best_epoch, "selection": config.train.select, "best_val_mse": result.best_val_mse,
        "train_samples_per_s": result.train_samples_per_s, "wall_time_s": time.perf_counter() - t_start,
        "n_windows": {k: len(v) for k, v in sets.items()}, "horizon_frames": config.data.horizon,
        "horizon_ps": stats["horizon_ps"], "frame_dt_ps": stats["frame_dt_ps"], "cutoff_A": splits.cutoff,
        "n_nodes": splits.system.n_nodes,
        "metric": "MSE per coordinate [Å²] at the horizon (the paper's metric; ×3 = mean squared displacement)",
        "splits": evals, "sources": splits.sources,
    }


def _model_fields(model_section: dict, features: str, n_node_scalars: int, stats: dict) -> dict:
    """ModelConfig fields of a new run: the model section, input sizes of the feature set, scales.

    ``residue`` / ``sequence``: the dataset's node scalars and its bond flag; ``paper``: [|v|, dataset scalars]
    and [d, d²] (the bond flag is not read); ``both``: [|v|, dataset scalars] and [bond flag, d, d²]. Length /
    velocity / displacement scales come from the training statistics unless the model section sets them (the
    ``paper`` preset sets 1: the authors' raw Å).
    """
    speed = features in ("paper", "both")
    edge_mode = {"residue": "data", "sequence": "data", "paper": "distance", "both": "data+distance"}[features]
    scales = {k: stats[k] for k in ("length_scale", "radius_scale", "vel_scale", "disp_scale", "bond_range",
                                    "contact_floor") if k in stats}
    return {
        **scales,
        **model_section,
        "node_in": n_node_scalars + int(speed),
        "edge_in": {"data": 1, "distance": 2, "data+distance": 3}[edge_mode],
        "speed_feature": speed,
        "edge_features": edge_mode,
    }


def _training_frames(splits, max_frames: int):
    """(T, N, 3) [Å] frames of the training split of the first dataset (at most ``max_frames``, evenly spaced).

    Raises:
        UsageError: training trajectories with different node counts (one prior per model).
    """
    import numpy as np

    train = [s for s in splits.sources if s["split"] == "train"]
    parts = [p for p, s in zip(splits.sets["train"].parts, train, strict=True) if s["file"] == train[0]["file"]]
    counts = sorted({int(p.h.shape[0]) for p in splits.sets["train"].parts})
    if len(counts) > 1:
        raise UsageError(f"model: contact_prior in the `config_file` needs one system, but the training datasets "
                         f"have different node counts ({counts})", params=("config_file",))
    where = [(p, t) for p in parts for t in range(p.block_start, p.block_stop)]
    pick = evenly_spaced(len(where), max_frames)
    return np.stack([where[k][0].frame(where[k][1]).numpy() for k in pick])


def _contact_prior(model_cfg, splits, last):
    """``(model config with the prior's sizes, (index, mean, std))`` of a new generative run with
    ``contact_prior``: the contacts of its training frames within the data cutoff (``prior_fraction``: by their
    mean distance, or by how often they are within it); ``(model_cfg, None)``
    otherwise (a resumed run's checkpoint carries its prior)."""
    import dataclasses

    from eghn_md.models.contact_prior import pair_statistics

    if last is not None or not (model_cfg.generative and model_cfg.contact_prior):
        return model_cfg, None
    frames = _training_frames(splits, max_frames=2000)
    prior = pair_statistics(frames, bonds=splits.system.bonds, cutoff=splits.cutoff,
                            min_fraction=model_cfg.prior_fraction)
    cfg = dataclasses.replace(model_cfg, prior_nodes=int(frames.shape[1]), prior_pairs=int(prior[0].shape[1]))
    return cfg, prior


def _training_pairs(splits, max_pairs: int):
    """``(starts, ends)`` (P, N, 3) [Å]: frames of the training split and the frames one horizon later (each part's
    own horizon), at most ``max_pairs`` evenly spaced, from the parts with the first part's node count."""
    import torch

    parts = splits.sets["train"].parts
    n = int(parts[0].h.shape[0])
    where = [(p, t) for p in parts if int(p.h.shape[0]) == n for t in range(p.block_start, p.block_stop - p.horizon)]
    if not where:
        raise UsageError("model: spectral_source needs training frames one horizon apart, and the training split "
                         "has none", params=("config_file",))
    pick = evenly_spaced(len(where), max_pairs)
    starts = torch.stack([where[k][0].frame(where[k][1]) for k in pick])
    ends = torch.stack([where[k][0].frame(where[k][1] + where[k][0].horizon) for k in pick])
    return starts, ends


def _source_spectrum(model_cfg, splits, last):
    """``model_cfg`` of a new generative run with ``spectral_source`` and no ``source_spectrum``: with the
    spectrum of its training pairs (:func:`~eghn_md.models.source_spectrum.fit_spectrum`); as is otherwise (a
    resumed or initialised run's checkpoint carries its spectrum)."""
    import dataclasses

    from eghn_md.models.source_spectrum import fit_spectrum

    if last is not None or not (model_cfg.generative and model_cfg.spectral_source) or model_cfg.source_spectrum:
        return model_cfg
    return dataclasses.replace(model_cfg, source_spectrum=fit_spectrum(*_training_pairs(splits, max_pairs=512)))


def _prepare_run(out: Path, config: RunConfig, splits, last, log, init=None):
    """The training statistics, the model configuration and the contact prior (or None) of a run (``last``: the
    checkpoint resumed or, with ``init``, started from; or None); creates the run directory (only now: bad input
    never leaves an empty one) and writes its ``config.yaml``."""
    from eghn_md.data.samples import compute_stats

    stats = {**compute_stats(splits.sets["train"]), "frame_dt_ps": splits.frame_dt_ps,
             "horizon_ps": splits.horizon_ps}
    model_cfg, prior = _contact_prior(_model_config(config, splits, stats, last), splits, last)
    model_cfg = _source_spectrum(model_cfg, splits, last)
    if init is not None:
        _check_init(init, model_cfg, config, splits, stats)
    _check_ignored_options(model_cfg, log)
    out.mkdir(parents=True, exist_ok=True)
    config.data.cutoff = splits.cutoff
    if int(os.environ.get("RANK", "0")) == 0:
        write_text_atomic(out / "config.yaml",
                          RunConfig(model=model_cfg.to_dict(), data=config.data, train=config.train).to_yaml())
    return stats, model_cfg, prior


def train_run(
    data: Sequence[str | Path],
    out_dir: str | Path,
    *,
    config: RunConfig,
    val: Sequence[str | Path] = (),
    test: Sequence[str | Path] = (),
    resume: bool = False,
    resume_epochs: Optional[int] = None,
    init: Optional[str | Path] = None,
    overwrite: bool = False,
    progress: Optional[Progress] = None,
    log=None,
) -> dict:
    """Train a model and write the run directory; returns the metrics summary (also in ``metrics.json``).

    With ``resume`` the configuration stored in ``RUN/last.pt`` is used (``config`` is ignored but for the device,
    ``workers`` and ``compile``;
    ``resume_epochs`` may raise the epoch budget) and training continues from its last completed epoch, following
    the same curve as an uninterrupted run.

    With ``init`` (a checkpoint, ``RUN/model.pt``) training starts from that model: its configuration (architecture,
    scales, contact prior) and weights; ``config``'s model section is not used, its data and train sections are
    (a fine-tune: e.g. the generative model trained on with pushforward steps, ``train: unroll_steps``).
    """
    from eghn_md.models import build_model
    from eghn_md.utils import seed_everything

    out = Path(out_dir)
    _check_run_dir(out, resume=resume, overwrite=overwrite)
    config, resume_state, last = _starting_point(out, config, resume=resume, resume_epochs=resume_epochs, init=init)
    t_start = time.perf_counter()
    with build_splits(data, config=config.data, val=val, test=test, expected_nodes=last.nodes if resume else None,
                      future_steps=max(config.train.unroll_steps, config.train.score_steps),  # both train on x(t + kΔT)
                      time_reversal=config.train.time_reversal) as splits:
        sets = splits.sets
        config.data.horizon = splits.horizon_frames  # with --horizon-ps: the frames of the first trajectory
        _check_windows(config, sets)
        _check_val_size(config, len(sets["val"]), log)
        stats, model_cfg, prior = _prepare_run(out, config, splits, last, log, init=init)
        is_main = int(os.environ.get("RANK", "0")) == 0
        seed_everything(config.train.seed)  # weight initialisation is part of the seeded run
        model = build_model(model_cfg)
        if prior is not None:
            model.set_contact_prior(*prior)
        if init is not None:  # a new run from a model: its weights (prior buffers included)
            model.load_state_dict(last.state_dict)
        common = dict(model_config=model_cfg.to_dict(), data_config=config.data.to_dict(),
                      train_config={"train": config.train.to_dict(), "_model_section": dict(config.model),
                                    **({"_init": str(init)} if init is not None else {})},
                      stats=stats, nodes=splits.system.metadata())
        try:
            result: FitResult = fit(model, sets["train"], sets["val"], config=config.train,
                                    objective=objective_for(model, config.train, cutoff=splits.cutoff),
                                    resume=resume_state, on_epoch_end=_checkpoint_writer(out, common),
                                    progress=progress)
        except KeyboardInterrupt:
            if log is not None:
                done = (out / "last.pt").exists()
                how = f"resume with --resume from {out / 'last.pt'}" if done else "no epoch completed"
                log(f"Interrupted: {how}")
            raise
        except DivergenceError as exc:
            raise _diverged(exc, out) from None
        metrics = _metrics(model, model_cfg, config, result, splits, stats, t_start)
        if is_main:
            write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2, default=float) + "\n")
            # the best checkpoint carries the final metrics too
            save_checkpoint(out / "model.pt", state_dict=result.best_state,
                            metrics={"best_epoch": result.best_epoch, "best_val_mse": result.best_val_mse,
                                     "epochs": result.last_state.epoch,
                                     **{f"{k}_mse": v["model"] for k, v in metrics["splits"].items()}}, **common)
    return metrics
