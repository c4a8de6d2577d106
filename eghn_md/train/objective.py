"""The training objective, injected into :func:`eghn_md.train.loop.fit`: one-step MSE, or a rollout-aware loss.

A rollout feeds the model its own predictions, which one-step training never shows it; the surrogate then drifts off
the data and falls apart (bonds break, the structure swells or freezes). :class:`Objective` adds, each optional:

* **noise injection** (Sanchez-Gonzalez et al. 2020, *Learning to simulate*): Gaussian noise of ``noise_std`` [Å]
  per coordinate on the input frames ``x_{t−ΔT}`` and ``x_t`` (so on the velocity channel too) while the target stays
  clean, so the model learns to undo small errors of its own inputs; ``noise_scale`` adds a random breathing of both
  input frames about their centroid (factor 1 + ``noise_scale`` · N(0, 1)), so it also learns to restore the
  structure's size, the error a rollout accumulates coherently (swelling) and per-node noise never shows. The noise
  of a sample is drawn from a generator seeded by ``(seed, epoch, sample index)``: the same whatever the batch
  pieces, ranks or resume point.
* **multi-step training**: the model is unrolled ``unroll_steps`` = K autoregressive steps (edges rebuilt from every
  predicted frame, velocity = the last predicted displacement, exactly as in a rollout) and the loss averages the
  K steps' errors against the true frames ``x_{t+kΔT}``. Windows too close to the end of their block for K steps
  contribute the steps they have. ``pushforward`` (Brandstetter et al. 2022) detaches each step's input from the
  graph of the steps before, so a step's gradient trains it to correct the inputs it will actually see without
  back-propagating through the whole unroll.
* **free steps** (``free_steps``): F more autoregressive steps after the supervised ones, scored by the bond and clash
  terms only, against the geometry of the sample's first true target frame (bond lengths and contact floors barely
  change over a trajectory). They need no true frame, so they reach past the end of the data (a short training
  trajectory allows few supervised steps: 3 at ΔT = 15 on 64 frames) and teach the model to keep a chain together
  over the longer rollouts users run.
* **bond-length loss** (``bond_weight``): squared deviation of every bond of the node graph (sequence / covalent
  bonds) of the prediction from the true frame's length [Å²].
* **clash loss** (``clash_weight``): ``relu(min(clash_distance, d_true) − d_pred)²`` over the pairs in contact in the
  input frame [Å²]: predicted pairs closer than ``clash_distance`` (or than they truly are, for pairs that are closer
  in the data, e.g. bonded atoms) are pushed apart.

Every term of a batch is a sum over its pieces divided by a count over the whole batch (:meth:`Objective.totals`),
so processing a batch in pieces gives the same gradient as processing it whole.

The terms are data: :data:`TERMS` is the one table of them (name, the per-step quantity, the steps it averages, the
option that weighs it); :class:`Objective` sums the active rows, and the training loop logs every name of
:attr:`Objective.terms` (``train_<name>`` in ``history.csv`` and on the progress line) without a list of its own.
With ``unroll_steps`` = 1 and no free steps the objective is the one-step loss, MSE + ``reg_weight`` · reg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from eghn_md.data.batch import GraphBatch
from eghn_md.data.samples import build_edges
from eghn_md.errors import UsageError
from eghn_md.train.options import GENERATIVE_ONLY, TrainConfig

__all__ = ["Objective", "Term", "TERMS", "objective_from_config", "regraph", "sample_noise", "sample_refine_noise"]


def sample_noise(n_nodes: int, std: float, *, seed: int, epoch: int, index: int, dtype, device,
                 scale_std: float = 0.0) -> tuple[Tensor, float]:
    """Noise for the two input frames of training sample ``index`` in ``epoch``: ``(noise, scale)`` with ``noise``
    (2, n_nodes, 3) [Å] Gaussian of ``std`` per coordinate and ``scale`` = 1 + ``scale_std`` · N(0, 1), a breathing
    factor (clamped to [0.5, 1.5]) of the input frames about their centroid."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + int(index))
    noise = torch.randn((2, n_nodes, 3), generator=g, dtype=torch.float64) * std
    scale = 1.0 + float(scale_std) * float(torch.randn((), generator=g, dtype=torch.float64))
    return noise.to(device=device, dtype=dtype), min(max(scale, 0.5), 1.5)


def sample_refine_noise(n_nodes: int, std: float, *, seed: int, epoch: int, index: int, dtype, device) -> Tensor:
    """Noise (n_nodes, 3) [Å], Gaussian of ``std`` per coordinate, for the refinement input of training sample
    ``index`` in ``epoch`` (``train: refine_noise``); a stream of its own, so switching it on leaves the input noise of
    :func:`sample_noise` unchanged."""
    g = torch.Generator()
    g.manual_seed(((int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + int(index)) * 7 + 3)
    return (torch.randn((n_nodes, 3), generator=g, dtype=torch.float64) * std).to(device=device, dtype=dtype)


def _full(t: Tensor) -> Tensor:
    """Half-precision (autocast) values promoted to float32; float32/float64 kept."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _detached(x, like: Tensor) -> Tensor:
    """``x`` (a tensor or a float 0) as a detached tensor."""
    return x.detach() if isinstance(x, Tensor) else like.new_tensor(float(x))


def _n_steps(sample: GraphBatch) -> int:
    """How many of the unrolled steps' targets sample (one graph) has: 1 + its finite future frames."""
    if sample.future is None:
        return 1
    finite = torch.isfinite(sample.future[0, :, 0])
    return 1 + int(finite.long().cumprod(0).sum())


@dataclass(frozen=True)
class Term:
    """One term of the training loss (a row of :data:`TERMS`).

    ``name``: the history column is ``train_<name>``; ``kind``: the per-step quantity it averages (``mse``,
    ``bond``, ``clash`` of :meth:`Objective._step_terms`, or ``reg``, the model's pooling regulariser); ``steps``:
    which steps it averages (``first``: the one-step prediction; ``unrolled``: supervised steps 2..``unroll_steps``;
    ``supervised``: steps 1..``unroll_steps``; ``free``: the ``free_steps``; ``sample``: once per sample, outside
    the average over steps); ``weight``: the :class:`TrainConfig` field that weighs it (``None``: 1); ``optional``:
    left out while that weight is 0; ``doc``: what it measures, for messages."""

    name: str
    kind: str
    steps: str
    weight: Optional[str]
    doc: str
    optional: bool = True

    def weight_in(self, config: TrainConfig) -> float:
        return 1.0 if self.weight is None else float(getattr(config, self.weight))

    def n_steps(self, n_supervised: int, n_free: int) -> int:
        """How many steps the term averages when a batch has ``n_supervised`` and ``n_free`` steps."""
        return {"first": 1, "unrolled": n_supervised - 1, "supervised": n_supervised, "free": n_free,
                "sample": 1}[self.steps]

    def active(self, config: TrainConfig) -> bool:
        """Whether a run with ``config`` computes (and logs) the term."""
        steps = self.n_steps(int(config.unroll_steps), int(config.free_steps))
        return steps > 0 and (not self.optional or self.weight_in(config) > 0)


#: every term of the loss, in the order of the history columns: the one home of their names and weights. The loss
#: is Σ weight · (sum over the term's steps) / (supervised + free steps) over the step terms, plus weight · value of
#: the ``sample`` terms.
TERMS = (
    Term("mse", "mse", "first", None, "position error of the one-step prediction", optional=False),
    Term("reg", "reg", "sample", "reg_weight", "pooling regulariser of the model", optional=False),
    Term("mse_unroll", "mse", "unrolled", None, "position error of the unrolled steps"),
    Term("bond", "bond", "supervised", "bond_weight", "bond-length error of the supervised steps"),
    Term("clash", "clash", "supervised", "clash_weight", "contact error of the supervised steps"),
    Term("bond_free", "bond", "free", "bond_weight", "bond-length error of the free steps"),
    Term("clash_free", "clash", "free", "clash_weight", "contact error of the free steps"),
)


@dataclass
class Objective:
    """Loss of a model on a batch; see the module docstring. Lengths in Å, losses in Å². The weights and switches
    are those of ``config`` (their one home); ``cutoff`` [Å] rebuilds contact edges between unrolled steps.

    An objective (this one, or another a model declares) is called as ``objective(net, batch, totals)`` →
    ``(loss, parts)``, with ``parts`` one detached value per name of :attr:`terms`; ``totals(samples)`` gives the
    batch denominators. The training loop logs every term of :attr:`terms` and knows no term by name."""

    config: TrainConfig
    cutoff: float = float("nan")

    @property
    def unroll_steps(self) -> int:
        return int(self.config.unroll_steps)

    @property
    def terms(self) -> tuple[str, ...]:
        """The names of the terms this objective computes and reports (its rows of :data:`TERMS` that are active)."""
        return tuple(t.name for t in TERMS if t.active(self.config))

    @property
    def term_docs(self) -> dict:
        """``{name: what it measures}`` of :attr:`terms` (for messages)."""
        return {t.name: t.doc for t in TERMS if t.active(self.config)}

    def totals(self, samples: Sequence[GraphBatch]) -> dict:
        """Denominators over a whole (global) batch of samples (single graphs, or collated batches for one-step
        training: ``objective(net, batch, objective.totals([batch]))`` is the one-step loss of any batch): per
        unrolled step, the nodes, bonds and contact pairs that have a target; the graphs; the most steps any sample
        has. Under DDP each rank counts its share and :func:`eghn_md.train.loop` all-reduces them (sums; the maximum
        for ``steps``)."""
        steps = [min(_n_steps(s), self.unroll_steps) for s in samples]
        out = {"graphs": sum(s.num_graphs for s in samples)}
        for key, count in (("nodes", lambda s: s.num_nodes), ("bonds", lambda s: s.bonds.shape[1]),
                           ("pairs", lambda s: s.edge_index.shape[1])):
            out[key] = [sum(count(s) for s, k in zip(samples, steps, strict=True) if k > j)
                        for j in range(self.unroll_steps)]
        out["steps"] = max(steps)
        return out

    def __call__(self, net, batch: GraphBatch, totals: dict) -> tuple[Tensor, dict]:
        """``(loss, parts)`` of a piece of a batch: the loss sums the active rows of :data:`TERMS`; ``parts``
        (detached) holds each active term's mean over its steps, already divided by the batch totals."""
        out = net(batch)
        n_sup, n_free = totals["steps"], int(self.config.free_steps)
        values = self._supervised_steps(net, batch, totals, _full(out.pos))
        values["reg"] = [_full(out.reg) * (batch.num_graphs / totals["graphs"])]
        loss, parts = 0.0, {}
        for term in TERMS:
            if not term.active(self.config):
                continue
            n = term.n_steps(n_sup, n_free)
            selected = {"first": slice(0, 1), "unrolled": slice(1, n_sup), "supervised": slice(0, n_sup),
                        "free": slice(n_sup, n_sup + n_free), "sample": slice(0, 1)}[term.steps]
            total = sum(values[term.kind][selected], 0.0)
            parts[term.name] = _detached(total / max(n, 1), out.pos)
            scale = 1.0 if term.steps == "sample" else 1.0 / (n_sup + n_free)
            loss = loss + term.weight_in(self.config) * scale * total
        return loss, parts

    def _supervised_steps(self, net, batch: GraphBatch, totals: dict, pred: Tensor) -> dict:
        """``{kind: [value of step 1, …]}`` of the supervised steps (``totals["steps"]`` of them), then the free
        steps (bond and clash only; ``mse`` has no value there) from the first prediction ``pred``."""
        values: dict = {"mse": [], "bond": [], "clash": []}
        prev, n_steps = batch.pos, totals["steps"]
        for k in range(n_steps):
            target = batch.target if k == 0 else batch.future[:, k - 1]
            valid = torch.isfinite(target[:, 0])
            for key, v in self._step_terms(pred, target, valid, batch, totals, k).items():
                values[key].append(v)
            if k + 1 < n_steps:
                prev, pred = self._advance(net, batch, prev, pred, valid)
        if self.config.free_steps:
            for key, v in self._free_steps(net, batch, totals, prev, pred).items():
                values[key].extend(v)
        return values

    def _free_steps(self, net, batch: GraphBatch, totals: dict, prev: Tensor, pred: Tensor) -> dict:
        """``{"bond": [...], "clash": [...]}``, one value per step of ``free_steps`` more steps from the last
        supervised prediction ``pred``, against the first true target's geometry (every node of the batch counts;
        denominators of step 0)."""
        ref = _full(batch.target)
        ref = torch.where(torch.isfinite(ref), ref, batch.pos.to(ref.dtype))
        every = torch.ones(batch.num_nodes, dtype=torch.bool, device=pred.device)
        out: dict = {"bond": [], "clash": []}
        for _ in range(self.config.free_steps):
            prev, pred = self._advance(net, batch, prev, pred, every)
            terms = self._step_terms(pred, ref, every, batch, totals, 0, mse=False)
            for key in out:
                out[key].append(terms[key])
        return out

    def _step_terms(self, pred: Tensor, target: Tensor, valid: Tensor, batch: GraphBatch, totals: dict, k: int,
                    mse: bool = True):
        """The error terms of unrolled step ``k`` (0-based), over the nodes with a target (``valid``); ``mse=False``
        leaves the position error out (free steps: ``target`` then only gives the reference geometry)."""
        target = torch.where(valid.unsqueeze(1), _full(target), pred.detach())  # no NaN reaches the graph
        terms = {"mse": 0.0, "bond": 0.0, "clash": 0.0}
        if mse:
            diff = pred - target
            terms["mse"] = (diff * diff).sum() / (3 * max(totals["nodes"][k], 1))
        if self.config.bond_weight > 0:
            i, j = batch.bonds
            keep = (valid[i] & valid[j]).to(pred.dtype)
            dd = (pred[i] - pred[j]).norm(dim=1) - (target[i] - target[j]).norm(dim=1)
            terms["bond"] = (keep * dd * dd).sum() / max(totals["bonds"][k], 1)
        if self.config.clash_weight > 0:
            i, j = batch.edge_index
            keep = (valid[i] & valid[j]).to(pred.dtype)
            floor = (target[i] - target[j]).norm(dim=1).clamp_max(self.config.clash_distance)
            short = torch.relu(floor - (pred[i] - pred[j]).norm(dim=1))
            terms["clash"] = (keep * short * short).sum() / max(totals["pairs"][k], 1)
        return terms

    def _advance(self, net, batch: GraphBatch, prev: Tensor, pred: Tensor, valid: Tensor):
        """One more autoregressive step from the prediction ``pred``: ``(new prev, new prediction)``."""
        cur = pred.detach() if self.config.pushforward else pred
        cur = torch.where(valid.unsqueeze(1), cur, cur.detach())  # graphs without targets carry no gradient
        step = regraph(batch, cur, self.cutoff).replace(vel=cur - prev)
        return cur, _full(net(step).pos)


def regraph(batch: GraphBatch, pos: Tensor, cutoff: float) -> GraphBatch:
    """``batch`` moved to positions ``pos`` (N, 3) [Å] with the edges of ``pos`` (radius graph of ``cutoff`` [Å]
    united with the bonds, as the data builds them): the input of an unrolled training step, as in a rollout.

    A non-finite position (a diverging model) must reach the loss, where the loop reports it, not crash the edge
    search: edges are searched among finite stand-ins (``batch.pos``), with no host sync.

    Raises:
        ValueError: the data's edges carry scalars besides the bond flag (they cannot be rebuilt).
    """
    finite = torch.isfinite(pos.detach()).all(dim=1, keepdim=True)
    search = torch.where(finite, pos.detach(), batch.pos.to(pos.dtype))
    edge_index, edge_attr = build_edges(search, cutoff, batch.bonds, batch=batch.batch)
    d = batch.edge_attr.shape[1]
    if d > edge_attr.shape[1]:
        raise ValueError(f"multi-step training rebuilds edges with the bond flag only, but the data has {d} edge "
                         "scalars")
    return batch.replace(pos=pos, edge_index=edge_index, edge_attr=edge_attr[:, :d].to(batch.edge_attr.dtype))



def objective_from_config(config: TrainConfig, *, cutoff: Optional[float] = None) -> Objective:
    """The :class:`Objective` a :class:`TrainConfig` asks for; ``cutoff`` [Å] of the data's contact edges is needed
    to rebuild edges in multi-step training (``unroll_steps > 1``). (A model trained by another objective, e.g. a
    generative one, gets its own; any objective with ``terms``, ``totals`` and ``__call__`` plugs into the loop.)"""
    if int(config.unroll_steps) > 1 and cutoff is None:
        raise UsageError("unroll_steps > 1 needs the contact cutoff of the data to rebuild edges between steps")
    for name in GENERATIVE_ONLY:
        if getattr(config, name):
            raise UsageError(f"train: {name} ({getattr(config, name)}) weights a term of a generative model's "
                             f"flow-matching loss; this model is deterministic: set model: {{generative: true}} or "
                             f"leave {name} at 0", params=("config_file",))
    return Objective(config=config, cutoff=float(cutoff) if cutoff is not None else float("nan"))
