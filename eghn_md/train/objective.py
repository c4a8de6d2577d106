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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from eghn_md.data.batch import GraphBatch
from eghn_md.data.samples import build_edges
from eghn_md.train.options import TrainConfig

__all__ = ["Objective", "sample_noise", "sample_refine_noise"]


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


@dataclass
class Objective:
    """Loss of a model on a batch; see the module docstring. Lengths in Å, losses in Å². The weights and switches
    are those of ``config`` (their one home); ``cutoff`` [Å] rebuilds contact edges between unrolled steps."""

    config: TrainConfig
    cutoff: float = float("nan")

    @property
    def unroll_steps(self) -> int:
        return int(self.config.unroll_steps)

    def totals(self, samples: Sequence[GraphBatch]) -> dict:
        """Denominators over a whole (global) batch of single-graph samples: per unrolled step, the nodes, bonds
        and contact pairs that have a target; the graphs; the most steps any sample has. Under DDP each rank counts
        its share and :func:`eghn_md.train.loop` all-reduces them (sums; the maximum for ``steps``)."""
        steps = [min(_n_steps(s), self.unroll_steps) for s in samples]
        out = {"graphs": len(samples)}
        for key, count in (("nodes", lambda s: s.num_nodes), ("bonds", lambda s: s.bonds.shape[1]),
                           ("pairs", lambda s: s.edge_index.shape[1])):
            out[key] = [sum(count(s) for s, k in zip(samples, steps, strict=True) if k > j)
                        for j in range(self.unroll_steps)]
        out["steps"] = max(steps)
        return out

    def __call__(self, net, batch: GraphBatch, totals: dict) -> tuple[Tensor, dict]:
        """``(loss, parts)`` of a piece of a batch; ``parts`` (detached): ``mse`` (first step), ``reg``, and, when
        used, ``mse_unroll`` (mean over steps), ``bond``, ``clash``, each already divided by the batch totals."""
        out = net(batch)
        c = self.config
        reg = _full(out.reg) * (batch.num_graphs / totals["graphs"])
        n_steps = totals["steps"]
        sums = {"mse": 0.0, "bond": 0.0, "clash": 0.0}
        prev, pred, first_mse = batch.pos, _full(out.pos), None
        for k in range(n_steps):
            target = batch.target if k == 0 else batch.future[:, k - 1]
            valid = torch.isfinite(target[:, 0])
            terms = self._step_terms(pred, target, valid, batch, totals, k)
            first_mse = terms["mse"] if k == 0 else first_mse
            for key in sums:
                sums[key] = sums[key] + terms[key]
            if k + 1 < n_steps:
                prev, pred = self._advance(net, batch, prev, pred, valid)
        free = self._free_steps(net, batch, totals, prev, pred) if c.free_steps else {"bond": 0.0, "clash": 0.0}
        n_terms = n_steps + c.free_steps
        loss = (sums["mse"] + c.bond_weight * (sums["bond"] + free["bond"])
                + c.clash_weight * (sums["clash"] + free["clash"])) / n_terms
        loss = loss + c.reg_weight * reg
        parts = {"mse": first_mse.detach(), "reg": reg.detach()}
        if n_steps > 1:
            parts["mse_unroll"] = (sums["mse"] / n_steps).detach()
        for key, w in (("bond", c.bond_weight), ("clash", c.clash_weight)):
            if w > 0:
                parts[key] = (sums[key] / n_steps).detach()
                if c.free_steps:
                    parts[f"{key}_free"] = _detached(free[key] / c.free_steps, loss)
        return loss, parts

    def _free_steps(self, net, batch: GraphBatch, totals: dict, prev: Tensor, pred: Tensor) -> dict:
        """Bond and clash sums of ``free_steps`` more steps from the last supervised prediction ``pred``, against
        the first true target's geometry (every node of the batch counts; denominators of step 0)."""
        ref = _full(batch.target)
        ref = torch.where(torch.isfinite(ref), ref, batch.pos.to(ref.dtype))
        every = torch.ones(batch.num_nodes, dtype=torch.bool, device=pred.device)
        sums = {"bond": 0.0, "clash": 0.0}
        for _ in range(self.config.free_steps):
            prev, pred = self._advance(net, batch, prev, pred, every)
            terms = self._step_terms(pred, ref, every, batch, totals, 0, mse=False)
            sums = {key: sums[key] + terms[key] for key in sums}
        return sums

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
        edge_index, edge_attr = build_edges(cur.detach(), self.cutoff, batch.bonds, batch=batch.batch)
        d = batch.edge_attr.shape[1]
        if d > edge_attr.shape[1]:
            raise ValueError(f"multi-step training rebuilds edges with the bond flag only, but the data has {d} edge "
                             "scalars")
        step = batch.replace(pos=cur, vel=cur - prev, edge_index=edge_index,
                             edge_attr=edge_attr[:, :d].to(batch.edge_attr.dtype))
        return cur, _full(net(step).pos)
