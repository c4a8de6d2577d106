"""Optimisation settings of a training run (plain data, saved in every checkpoint): the one home of every training
hyper-parameter and of the lists of their choices."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

from eghn_md.choices import OPTIMIZERS, SCHEDULES  # one home, torch-free; re-exported here
from eghn_md.errors import UsageError
from eghn_md.utils import reject_unknown_fields

__all__ = ["TrainConfig", "SCHEDULES", "SELECTIONS", "MIN_VAL_WINDOWS", "OPTIMIZERS", "GENERATIVE_ONLY"]

#: which weights a run keeps: the best on validation (early stopping after ``patience`` bad evaluations) or the last
SELECTIONS = ("best", "last")
#: fewer validation windows than this cannot rank epochs (3 windows of one trajectory's end move like none of the
#: training windows): ``train`` then keeps the last epoch and says so
MIN_VAL_WINDOWS = 8
#: the options that weight terms of a generative model's flow-matching loss only (a deterministic model refuses them)
GENERATIVE_ONLY = ("flow_weight", "contact_weight", "score_weight")


@dataclass(kw_only=True)
class TrainConfig:
    """Optimisation settings (all plain data, saved in every checkpoint).

    ``patience`` counts evaluations without validation improvement (0 disables early stopping); ``max_chunk_nodes``
    splits each batch into pieces of at most that many nodes whose gradients are accumulated (the same gradient;
    per-edge tensors stay cache-sized, which is faster on CPU and needs less memory; 0 disables).

    Rollout stability (:mod:`eghn_md.train.objective`; all off by default, the ``tiny``/``default`` presets turn
    them on): ``noise_std`` [Å] input-frame noise and ``noise_scale`` its relative breathing; ``unroll_steps`` K
    autoregressive steps per sample with ``pushforward`` stop-gradients; ``bond_weight`` / ``clash_weight``
    auxiliary losses with ``clash_distance`` [Å]; ``free_steps`` more unrolled steps past the supervised ones, where
    only the bond and clash terms apply (against the true frame's geometry: no target frame is needed, so they reach
    beyond the end of the data); ``refine_noise``
    [Å] Gaussian noise per coordinate on the input of a model's bond-graph refinement (``model: refine_layers``), so
    it learns to restore bond geometry from errors of that size, the errors a rollout feeds it, not only from the
    network's own small one-step errors. ``time_reversal`` also trains on every training window played backwards
    (:class:`~eghn_md.data.samples.WindowSet`; the epoch doubles): MD samples a statistically time-reversible
    dynamics, and a trajectory that crosses once between two states (AdK's closed → open in MDAnalysisTests) otherwise
    teaches the model to keep moving the same way past the end of the data. ``rotate`` turns every training sample
    by a random rotation (:func:`~eghn_md.train.feed.with_rotation`, seeded per sample and epoch): the augmentation a
    model that is not rotation-equivariant (``gnn``) needs to learn geometry instead of the orientations it saw.

    ``select``: ``"best"`` keeps the best weights on validation (and stops early after ``patience`` evaluations
    without improvement); ``"last"`` keeps the last epoch's (no early stopping; validation is still reported), the
    choice when the validation set is too small to rank models (``train`` switches to it, with a warning, below
    :data:`MIN_VAL_WINDOWS` windows).

    ``ema_decay``: 0 (off) or d in (0, 1): validation, ``model.pt`` and ``last.pt``'s weights are an exponential
    moving average of the optimiser's weights, ``ema ← ema + (1 − d_n)(w − ema)`` after optimiser step n with
    ``d_n = min(d, (1 + n) / (10 + n))`` (the usual warm-up, so the first steps' weights fade quickly); ``last.pt``
    keeps the optimiser's own weights and the average for ``resume``. It averages out the last epochs' optimiser
    noise, which a sampler (``model: generative``) shows in its samples (the flow-matching literature samples from
    such averages: EquiJump, AlphaFlow, MDGen); 0.999 averages over ~1,000 steps.

    ``flow_weight``: p ≥ 0, how a generative model's flow-matching error is weighted over the flow time τ
    (:mod:`eghn_md.train.flow_objective`): w(τ) = max(1 − τ, 0.1)^(−p), normalised to mean 1 over τ ~ U(0, 1).
    0 is the x-prediction's uniform weight; 2 is velocity matching's (the error of dx/dτ = (x̂₁ − x_τ) / (1 − τ)),
    which puts the weight where the sampler's last steps set the sample's fine structure.

    ``contact_weight``: a generative model's τ-weighted error of the distances between the residues in contact in
    the input frame (its contact edges, the clash term's pairs), x̂₁'s against x(t + ΔT)'s [Å²]: the coordinate error
    does not single out the relative positions that hold a state together (AdK's closed-state contacts).

    ``score_weight``: a generative model's energy score of two frames sampled by its own sampler, differentiated
    through, against x(t + ΔT), marginal by marginal: each node's position and each of the input frame's contact
    lengths [Å] (:func:`~eghn_md.train.flow_objective.marginal_score`): a proper scoring rule on the sampled
    one-step kernel (its spread and its contacts), which flow matching reaches only through the denoiser's accuracy.
    Each training sample then costs the sampler's passes twice over (a fine-tune's term). ``score_steps`` S ≥ 1:
    with S > 1 each of the two samples is rolled on S − 1 more steps by the same sampler (edges rebuilt from the
    sample, as in a rollout; differentiated through) and the score is the mean over the S steps, step k's against
    x(t + kΔT) (a step whose true frame lies past the end of the data is left out): the chain of kernels a rollout
    runs is trained as a chain, so a state that one step loosens a little and the next step from that sample
    loosens more (the compounding one-step training cannot see) is scored where it happens. Needs
    ``score_weight`` > 0; costs S times the one-step score.

    Speed (neither changes the results): ``workers`` processes build the training samples ahead of the model
    (:mod:`eghn_md.train.feed`; ``None``: min(4, CPUs − 1) on CUDA, 0 on CPU); ``compile`` runs the model through
    ``torch.compile`` (dynamic shapes; the first steps of a run pay the compilation).
    """

    epochs: int = 100
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    grad_clip: float = 10.0
    patience: int = 20
    eval_every: int = 1
    reg_weight: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    max_chunk_nodes: int = 1024
    noise_std: float = 0.0
    noise_scale: float = 0.0
    unroll_steps: int = 1
    free_steps: int = 0
    refine_noise: float = 0.0
    pushforward: bool = True
    time_reversal: bool = False
    rotate: bool = False
    bond_weight: float = 0.0
    clash_weight: float = 0.0
    clash_distance: float = 3.0
    select: str = "best"
    ema_decay: float = 0.0
    flow_weight: float = 0.0
    contact_weight: float = 0.0
    score_weight: float = 0.0
    score_steps: int = 1
    optimizer: str = "adamw"  #: one of OPTIMIZERS
    workers: Optional[int] = None
    compile: bool = False

    def __post_init__(self) -> None:
        def number(name: str, kind: type) -> float:
            value = getattr(self, name)
            try:
                x = kind(value)
            except (TypeError, ValueError, OverflowError):
                raise UsageError(f"{name} must be a finite number, got {value!r}") from None
            if not math.isfinite(x):
                raise UsageError(f"{name} must be a finite number, got {value!r}")
            return x

        for name in ("epochs", "batch_size", "eval_every", "unroll_steps", "score_steps"):
            if number(name, int) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("lr",):
            if not number(name, float) > 0:
                raise UsageError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "grad_clip", "reg_weight", "patience", "max_chunk_nodes", "noise_std",
                     "noise_scale", "bond_weight", "clash_weight", "clash_distance", "free_steps", "refine_noise",
                     "flow_weight", "contact_weight", "score_weight"):
            if number(name, float) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.workers is not None and (isinstance(self.workers, bool) or number("workers", int) < 0
                                         or int(self.workers) != float(self.workers)):
            raise UsageError(f"workers must be a whole number >= 0 (or null for the default), got {self.workers!r}")
        if self.workers is not None:
            self.workers = int(self.workers)
        if int(self.free_steps) != float(self.free_steps) or isinstance(self.free_steps, bool):
            raise UsageError(f"free_steps must be a whole number >= 0, got {self.free_steps!r}")
        if self.free_steps and not (self.bond_weight > 0 or self.clash_weight > 0):
            raise UsageError(f"free_steps = {self.free_steps} trains nothing without bond_weight or clash_weight > 0")
        self.free_steps = int(self.free_steps)
        if isinstance(self.score_steps, bool) or int(self.score_steps) != float(self.score_steps):
            raise UsageError(f"score_steps must be a whole number >= 1, got {self.score_steps!r}")
        self.score_steps = int(self.score_steps)
        if self.score_steps > 1 and not self.score_weight > 0:
            raise UsageError(f"score_steps = {self.score_steps} scores nothing without score_weight > 0")
        if not 0 <= number("ema_decay", float) < 1:
            raise UsageError(f"ema_decay must be 0 (off) or in (0, 1), e.g. 0.999; got {self.ema_decay!r}")
        if not isinstance(self.time_reversal, bool):
            raise UsageError(f"time_reversal must be true or false, got {self.time_reversal!r}")
        if not isinstance(self.rotate, bool):
            raise UsageError(f"rotate must be true or false, got {self.rotate!r}")
        if not isinstance(self.compile, bool):
            raise UsageError(f"compile must be true or false, got {self.compile!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; valid choices: {', '.join(OPTIMIZERS)}")
        if self.select not in SELECTIONS:
            raise UsageError(f"unknown select {self.select!r}; valid choices: {', '.join(SELECTIONS)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; valid choices: {', '.join(SCHEDULES)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        reject_unknown_fields(d, cls, what="train")
        return cls(**d)


