"""Fitting a generative model's pair bias (:mod:`eghn_md.models.pair_bias`) by iterative Boltzmann inversion, so
that its ensembles keep the pair-distance distributions of the training trajectory: ``eghn-md fit-bias`` as
library calls.

Each round rolls out an ensemble (:func:`~eghn_md.rollout.ensemble.ensemble_rollout`: ``replicas`` replicas,
``steps`` steps, a seed per round; the first round starts them from evenly spaced frames of the training split,
every later round continues each replica from where the last one left it, so the chains run on towards the biased
model's own equilibrium instead of restarting from the reference's, whose slow states a short round would never
leave), estimates every bias pair's distance
density over its frames and raises the pair's table where the ensemble goes more often than the reference, lowers
it where less (:func:`~eghn_md.models.pair_bias.boltzmann_correction`, step ``weight``). The pairs are those closer
than ``cutoff`` in at least ``min_fraction`` of the reference frames and at least 3 bonds apart: the contacts of
every state the trajectory visits. A last ensemble measures the fitted bias. Only the training split is read: the
bias is fitted on what the model was trained on, and judged like the model on an independent run.

With ``collective`` (the default) a collective term U(ξ) on the contacts' leading principal component
(:mod:`eghn_md.models.collective_bias`) is corrected the same way from ξ's density each round: the slow state
populations that the pair tables correct only pair by pair. Its densities are smoothed over one model step's spread
of ξ on the training windows (:func:`~eghn_md.models.collective_bias.step_width`, reported as
``collective_width`` in knot spacings).

With ``average`` = A > 1 the bias written is the mean of the tables after the last A corrections (Polyak–Ruppert
averaging), measured by the last ensemble: each round's densities come from a few hundred correlated steps, so the
tables a constant step leaves behind wander with that round's sampling noise (a few hundredths in the slow states'
populations); their mean over rounds does not.

With ``source_scale`` λ the ensembles sample with that λ on the source noise and the checkpoint written keeps it
(``rollout`` then samples with it by default), so the tables are fitted for the sampler they will be used with.
Measured on equilibrium AdK (``examples/benchmarks/results/generative_equilibrium.md`` §15): the λ that calibrates
the one-step samples' coverage (``eghn-md evaluate --calibrate``, 1.75–2.25) widens the steps beyond the MD's and the
tables, whose move is bounded, no longer hold the pair distances (mismatch 0.18–0.38 against 0.06 at λ = 1).

The mismatch reported per round is each pair's total-variation distance between the ensemble's and the reference's
densities (0: the same, 1: disjoint), averaged over the pairs, and its largest value; ``collective_mismatch`` the
same distance for ξ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from eghn_md.errors import DataError, UsageError
from eghn_md.models.collective_bias import (
    CV_DENSITY_WIDTH,
    Collective,
    collective_density,
    collective_values,
    contact_component,
    step_width,
)
from eghn_md.models.pair_bias import KNOTS, boltzmann_correction, pair_densities
from eghn_md.rollout.ensemble import ensemble_rollout
from eghn_md.rollout.guard import GuardConfig
from eghn_md.utils import Progress, as_progress, evenly_spaced

__all__ = ["FitBiasConfig", "bias_pair_index", "fit_pair_bias", "fit_bias_run", "MAX_REFERENCE_FRAMES"]

#: the reference's densities are computed from at most this many of its frames, evenly spaced
MAX_REFERENCE_FRAMES = 5000


@dataclass(frozen=True, kw_only=True)
class FitBiasConfig:
    """How a pair bias is fitted (module docstring): ``rounds`` corrections, each from an ensemble of ``replicas``
    × ``steps`` steps seeded ``seed`` + round; ``weight`` the step of each correction; the pairs within
    ``cutoff`` [Å] in at least ``min_fraction`` of the reference frames; ``average``: the bias written is the mean of
    the tables after the last ``average`` corrections (1: the last correction's); ``source_scale``: the sampler's λ
    the ensembles run with and the written model keeps (None: the model's own)."""

    rounds: int = 16
    replicas: int = 8
    steps: int = 300
    weight: float = 0.7
    seed: int = 0
    cutoff: float = 12.0
    min_fraction: float = 0.01
    collective: bool = True
    average: int = 1
    source_scale: Optional[float] = None

    def __post_init__(self) -> None:
        if not isinstance(self.collective, bool):
            raise UsageError(f"fit-bias: collective must be true or false, got {self.collective!r}",
                             params=("collective",))
        for key, low in (("rounds", 1), ("replicas", 1), ("steps", 1)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise UsageError(f"fit-bias: {key} must be an integer >= {low}, got {v!r}", params=(key,))
        if isinstance(self.average, bool) or not isinstance(self.average, int) or not 1 <= self.average <= self.rounds:
            raise UsageError(f"fit-bias: `average` must be an integer in [1, `rounds` = {self.rounds}] (the "
                             f"corrections whose tables are averaged), got {self.average!r}",
                             params=("average", "rounds"))
        v = self.source_scale
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
            raise UsageError(f"fit-bias: `source_scale` must be a finite number > 0 (the sampler's λ) or None (the "
                             f"model's own), got {v!r}", params=("source_scale",))
        for key, lo, hi in (("weight", 0.0, 10.0), ("cutoff", 3.0, 100.0), ("min_fraction", 0.0, 1.0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v <= hi:
                raise UsageError(f"fit-bias: {key} must be a number in ({lo:g}, {hi:g}], got {v!r}", params=(key,))


def bias_pair_index(reference: np.ndarray, bonds: torch.Tensor, *, cutoff: float, min_fraction: float
                    ) -> torch.Tensor:
    """The bias pairs (2, P) long, i < j: at least 3 bonds apart in ``bonds`` (2, B) and closer than ``cutoff``
    [Å] in at least ``min_fraction`` of the ``reference`` frames (T, N, 3) [Å]."""
    from eghn_md.models.contact_prior import pair_statistics

    pairs, _, _ = pair_statistics(reference, bonds=bonds, cutoff=cutoff, min_separation=3,
                                  max_frames=MAX_REFERENCE_FRAMES, min_fraction=min_fraction)
    return pairs


def _mismatch(model_density: torch.Tensor, reference_density: torch.Tensor) -> dict:
    tv = 0.5 * (model_density - reference_density).abs().sum(dim=1)
    return {"mismatch_mean": float(tv.mean()), "mismatch_max": float(tv.max())}


def _start_bias(model: torch.nn.Module, index: torch.Tensor, reference: np.ndarray, *, collective: bool
                ) -> tuple[torch.Tensor, Optional[Collective]]:
    """The tables (P, KNOTS) [kT] and the collective term (None without ``collective``) a fit starts from: the
    model's own where its bias is on the same pairs, else zeros and the reference's contact component with a zero
    table."""
    same = bool(model.config.bias_pairs) and torch.equal(model.bias_index.cpu(), index)
    table = (model.bias_table.detach().cpu().double().clone() if same
             else torch.zeros(index.shape[1], KNOTS, dtype=torch.float64))
    if not collective:
        return table, None
    own = model.collective_bias if same else None
    if own is None:
        return table, contact_component(reference, index)
    return table, Collective(**{k: getattr(own, k).detach().cpu().double().clone()
                                for k in ("weight", "mean", "grid", "table")})


def _chain_ends(result, starts: torch.Tensor) -> torch.Tensor:
    """The frames (R, N, 3) the next round continues from: each replica's last frame, or its first start where the
    guard stopped it."""
    ends = [torch.as_tensor(f[-1]) if stop is None else starts[k].cpu()
            for k, (f, stop) in enumerate(zip(result.frames, result.stopped, strict=True))]
    return torch.stack(ends).to(device=starts.device, dtype=starts.dtype)


class _TableMean:
    """The running mean of the pair tables and of the collective table over the corrections that are averaged."""

    def __init__(self) -> None:
        self.count, self.table, self.cv_table = 0, None, None

    def add(self, table: torch.Tensor, cv_table: Optional[torch.Tensor]) -> None:
        self.count += 1
        self.table = table.clone() if self.table is None else self.table + table
        if cv_table is not None:
            self.cv_table = cv_table.clone() if self.cv_table is None else self.cv_table + cv_table

    def result(self, table: torch.Tensor, cv: Optional[Collective]) -> tuple[torch.Tensor, Optional[Collective]]:
        """The averaged (table, collective term); ``cv`` gives the collective term's other fields."""
        cv = None if cv is None else replace(cv, table=self.cv_table / self.count)
        return self.table / self.count, cv


def _corrected(table: torch.Tensor, cv: Optional[Collective], p_model: torch.Tensor, p_ref: torch.Tensor,
               cv_densities: Optional[tuple[torch.Tensor, torch.Tensor]], *, r: int, config: FitBiasConfig,
               mean: _TableMean) -> tuple[torch.Tensor, Optional[Collective]]:
    """The tables after round ``r``'s correction (pair densities (P, KNOTS), ξ's (model, reference) (1, CV_KNOTS)),
    added to ``mean`` when among the last ``config.average``; after the last round, their mean."""
    table = table + boltzmann_correction(p_model, p_ref, weight=config.weight)
    if cv is not None:
        cv = replace(cv, table=cv.table + boltzmann_correction(*cv_densities, weight=config.weight)[0])
    if r >= config.rounds - config.average:
        mean.add(table, None if cv is None else cv.table)
    return mean.result(table, cv) if r == config.rounds - 1 else (table, cv)


def fit_pair_bias(model: torch.nn.Module, *, reference: np.ndarray, starts: torch.Tensor, h: torch.Tensor,
                  bonds: torch.Tensor, cutoff: float, config: FitBiasConfig,
                  step_pairs: Optional[tuple[np.ndarray, np.ndarray]] = None,
                  progress: Optional[Progress] = None) -> list[dict]:
    """Fit ``model``'s pair bias in place (a generative :class:`~eghn_md.models.generative.FlowModel`; a bias it
    already has on the same pairs is refined, one on other pairs replaced); returns one record per round (the
    mismatch of that round's ensemble and the largest |U| [kT] it sampled with), the last one measuring the fitted
    bias.

    Args:
        reference: (T, N, 3) [Å] frames of the training trajectory.
        starts: (R, N, 3) [Å] the replicas' start frames (R = ``config.replicas``), on the model's device / dtype;
            each later round continues every replica from where the previous round left it.
        h: (N, F) node scalars; ``bonds``: (2, B) long, both directions; ``cutoff``: [Å] the data's edge cutoff.
        step_pairs: two (S, N, 3) [Å] arrays of training frames one model step (ΔT) apart, from which the collective
            term's densities take their smoothing width; without them the narrowest,
            :data:`~eghn_md.models.collective_bias.CV_DENSITY_WIDTH`.
    """
    index = bias_pair_index(reference, bonds.cpu(), cutoff=config.cutoff, min_fraction=config.min_fraction)
    if index.shape[1] == 0:
        raise UsageError(f"fit-bias: no node pair is closer than {config.cutoff:g} Å in {config.min_fraction:g} of "
                         "the training frames", params=("cutoff", "min_fraction"))
    table, cv = _start_bias(model, index, reference, collective=config.collective)
    model.set_pair_bias(index, table, nodes=int(reference.shape[1]), collective=cv)
    p_ref = pair_densities(reference, index)
    width = step_width(*step_pairs, index, cv) if cv is not None and step_pairs is not None else CV_DENSITY_WIDTH
    cv_ref = (collective_density(collective_values(reference, index, cv), cv.grid, width=width)
              if cv is not None else None)
    history: list[dict] = []
    chains, mean = starts, _TableMean()
    progress = as_progress(progress)
    progress.start(config.rounds + 1)
    try:
        for r in range(config.rounds + 1):
            res = ensemble_rollout(model, starts=chains, h=h, bonds=bonds, cutoff=cutoff, steps=config.steps,
                                   seed=config.seed + r, guard=GuardConfig(max_step_rms=10.0))
            if not any(len(f) > 1 for f in res.frames):
                raise DataError(f"fit-bias: every replica of round {r} left the guard's bounds at its first step; "
                                "the model does not roll out on these data")
            frames = np.concatenate([f[1:] for f in res.frames if len(f) > 1])
            chains = _chain_ends(res, starts)
            p_model = pair_densities(frames, index)
            rec = {"round": r, "frames": int(len(frames)), **_mismatch(p_model, p_ref),
                   "stopped": sum(s is not None for s in res.stopped), "table_max_kT": float(table.abs().max())}
            if cv is not None:
                cv_model = collective_density(collective_values(frames, index, cv), cv.grid, width=width)
                rec["collective_mismatch"] = _mismatch(cv_model, cv_ref)["mismatch_mean"]
                rec["collective_width"] = width
            if r < config.rounds:
                table, cv = _corrected(table, cv, p_model, p_ref, (cv_model, cv_ref) if cv is not None else None,
                                       r=r, config=config, mean=mean)
                model.set_pair_bias(index, table, nodes=int(reference.shape[1]), collective=cv)
            history.append(rec)
            progress.update({"done": r + 1, "info": f"mismatch {rec['mismatch_mean']:.4f} (round {r})"})
    finally:
        progress.stop()
    return history


def _evenly_thinned(n: int) -> np.ndarray:
    """Indices of at most :data:`MAX_REFERENCE_FRAMES` of ``n`` items, evenly spaced, first and last included."""
    return evenly_spaced(n, MAX_REFERENCE_FRAMES)


def _reference_and_starts(sets: Sequence, replicas: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every frame of the training blocks (evenly thinned to :data:`MAX_REFERENCE_FRAMES`) and ``replicas`` start
    frames evenly spaced over the blocks' windows."""
    from eghn_md.rollout.assess import rollout_starts

    where = [(ws, f) for ws in sets for f in range(ws.block_start, ws.block_stop)]  # read only the frames kept
    kept = [where[int(k)] for k in _evenly_thinned(len(where))]
    reference = np.stack([ws.frame(f).numpy() for ws, f in kept])
    pairs = rollout_starts(sets, replicas)
    starts = [ws.frame(t).numpy() for ws, t in pairs]
    return reference, [starts[k % len(starts)] for k in range(replicas)]


def _step_pairs(sets: Sequence) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Training frames and the frames one horizon after them (each (S, N, 3) [Å], S ≤ :data:`MAX_REFERENCE_FRAMES`,
    evenly thinned), within each block; None where no block is longer than the horizon."""
    pairs = [(ws, t) for ws in sets for t in range(ws.block_start, ws.block_stop - ws.horizon)]
    if not pairs:
        return None
    keep = _evenly_thinned(len(pairs))
    before = np.stack([pairs[k][0].frame(pairs[k][1]).numpy() for k in keep])
    after = np.stack([pairs[k][0].frame(pairs[k][1] + pairs[k][0].horizon).numpy() for k in keep])
    return before, after


def fit_bias_run(model_path: str | Path, data: Sequence[str | Path], output: str | Path, *, config: FitBiasConfig,
                 overwrite: bool = False, device: str = "auto", progress: Optional[Progress] = None) -> dict:
    """Fit the pair bias of the generative checkpoint ``model_path`` on the training split of ``data`` (the
    model's own split fractions) and write the checkpoint with it to ``output``; returns the summary."""
    from eghn_md.io.atomic import check_output_path
    from eghn_md.models.registry import is_generative, set_source_scale
    from eghn_md.rollout.start import model_dtype
    from eghn_md.train.checkpoint import load_model, save_checkpoint
    from eghn_md.train.evaluate import physical_data_config
    from eghn_md.train.sources import build_splits
    from eghn_md.utils import resolve_device

    output = Path(output)
    check_output_path(output, overwrite=overwrite)
    dev = resolve_device(device)
    model, ckpt = load_model(model_path, device=dev)
    if not is_generative(model):
        raise UsageError(f"fit-bias: {str(model_path)!r} is a deterministic model; a pair bias is descended by a "
                         "generative model's sampler (train with the generative preset)")
    if config.source_scale is not None:
        set_source_scale(model, config.source_scale)
    with build_splits(list(data), config=physical_data_config(ckpt), only=["train"],
                      expected_nodes=ckpt.nodes) as splits:
        sets = splits.sets["train"].parts
        if not sets:
            raise UsageError("fit-bias: the data have no training frames for the model's split", params=("split",))
        reference, starts = _reference_and_starts(sets, config.replicas)
        dtype = model_dtype(model)
        history = fit_pair_bias(model, reference=reference, starts=torch.as_tensor(np.stack(starts), dtype=dtype,
                                                                                   device=dev),
                                h=sets[0].h.to(dev, dtype), bonds=sets[0].bonds.to(dev), cutoff=sets[0].cutoff,
                                config=config, step_pairs=_step_pairs(sets) if config.collective else None,
                                progress=progress)
    summary = {"model": str(model_path), "output": str(output), "pairs": int(model.config.bias_pairs),
               "reference_frames": int(len(reference)), "config": asdict(config), "rounds": history}
    save_checkpoint(output, model_config=model.config.to_dict(), data_config=ckpt.data_config,
                    train_config=ckpt.train_config, stats=ckpt.stats, nodes=ckpt.nodes,
                    state_dict=model.state_dict(), metrics={**ckpt.metrics, "pair_bias": summary})
    return summary
