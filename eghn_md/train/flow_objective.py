"""The training objective of a generative model (:class:`~eghn_md.models.generative.FlowModel`): flow matching.

For every training sample (x_t, x₁ = x_{t+ΔT}) the source noise z (N, 3) and the flow time τ are drawn from a
generator seeded by ``(seed, epoch, sample index)`` (:func:`sample_flow`, called by the batch feed through
:meth:`FlowObjective.draw`), so the draws are the same whatever the batch pieces, DDP ranks, worker processes or
resume point. The model builds x_τ = (1 − τ)(x_t + σ z̃) + τ x₁ and its denoiser predicts x̂₁; the loss is

* **mse**: the per-coordinate squared error of x̂₁ against x₁ [Å²] (the x-prediction form of conditional flow
  matching; its minimiser at each (x_τ, τ) is E[x₁ | x_τ], which the sampler's dx/dτ = (x̂₁ − x_τ)/(1 − τ) needs);
* **bond** (``bond_weight``) and **clash** (``clash_weight``, ``clash_distance``): the structure terms of
  :mod:`eghn_md.train.objective` on x̂₁ against x₁'s geometry, each pair weighted by its graph's τ: late in the flow
  x̂₁ is nearly the sample the sampler returns, so a valid structure is learnt where it matters, while at τ ≈ 0
  (x̂₁ ≈ the conditional mean, which need not be a valid structure) the terms stay out of the way;
* **reg**: the pooling regulariser of the denoiser at x_τ, times ``reg_weight``.

Every sum is divided by a count over the whole batch (:meth:`FlowObjective.totals`), so processing a batch in
pieces gives the same gradient as processing it whole. Multi-step training (``unroll_steps``, ``free_steps``) does not
apply to a sampled model and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import UsageError
from eghn_md.train.options import TrainConfig

__all__ = ["FlowObjective", "sample_flow", "objective_for"]


def sample_flow(n_nodes: int, *, seed: int, epoch: int, index: int, dtype, device) -> Tensor:
    """The flow draw (n_nodes, 4) of training sample ``index`` in ``epoch``: unit Gaussian z (columns 0–2) and one
    τ ~ U(0, 1) for the whole graph (column 3); a stream of its own (drawn in float64 on the CPU)."""
    g = torch.Generator()
    g.manual_seed(((int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + int(index)) * 7 + 5)
    z = torch.randn((n_nodes, 3), generator=g, dtype=torch.float64)
    tau = torch.rand((), generator=g, dtype=torch.float64).expand(n_nodes, 1)
    return torch.cat([z, tau], dim=1).to(device=device, dtype=dtype)


def _full(t: Tensor) -> Tensor:
    """Half-precision (autocast) values promoted to float32; float32/float64 kept."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


@dataclass
class FlowObjective:
    """Flow-matching loss of a generative model on a batch; see the module docstring. Lengths in Å, losses in Å².
    The weights are those of ``config`` (``bond_weight``, ``clash_weight``, ``clash_distance``, ``reg_weight``)."""

    config: TrainConfig

    def __post_init__(self) -> None:
        c = self.config
        if int(c.unroll_steps) > 1 or int(c.free_steps) > 0:
            raise UsageError(f"a generative model trains one step at a time: set train: {{unroll_steps: 1, "
                             f"free_steps: 0}} in the `config_file` (got {c.unroll_steps} and {c.free_steps}), or "
                             "start from the generative `preset`", params=("config_file", "preset"))

    @property
    def unroll_steps(self) -> int:
        return 1

    @property
    def terms(self) -> tuple[str, ...]:
        """The names of the terms this objective computes and reports (the loop logs each to ``history.csv``)."""
        return tuple(name for name, _ in self._docs())

    @property
    def term_docs(self) -> dict:
        """``{name: what it measures}`` of :attr:`terms` (for messages)."""
        return dict(self._docs())

    def _docs(self) -> list[tuple[str, str]]:
        c = self.config
        docs = [("mse", "flow-matching error of the denoised frame x̂₁ against x(t + ΔT) [Å²]"),
                ("reg", "the pooling regulariser of the denoiser")]
        if c.bond_weight > 0:
            docs.append(("bond", "τ-weighted bond-length error of x̂₁ [Å²]"))
        if c.clash_weight > 0:
            docs.append(("clash", "τ-weighted clash penalty of x̂₁ [Å²]"))
        return docs

    def draw(self, sample: GraphBatch, *, seed: int, epoch: int, index: int) -> GraphBatch:
        """``sample`` with its flow draw (:func:`sample_flow`) in ``GraphBatch.flow``."""
        return sample.replace(flow=sample_flow(sample.num_nodes, seed=seed, epoch=epoch, index=index,
                                               dtype=sample.pos.dtype, device=sample.pos.device))

    def totals(self, samples: Sequence[GraphBatch]) -> dict:
        """Denominators over a whole (global) batch: nodes, bonds and contact pairs (one step), graphs; the same
        keys as :meth:`eghn_md.train.objective.Objective.totals`, so the loop all-reduces them alike under DDP."""
        return {"graphs": len(samples), "steps": 1,
                "nodes": [sum(s.num_nodes for s in samples)],
                "bonds": [sum(s.bonds.shape[1] for s in samples)],
                "pairs": [sum(s.edge_index.shape[1] for s in samples)]}

    def __call__(self, net, batch: GraphBatch, totals: dict) -> tuple[Tensor, dict]:
        """``(loss, parts)`` of a piece of a batch; ``parts`` (detached): ``mse``, ``reg`` and, when weighted,
        ``bond`` and ``clash``, each already divided by the batch totals."""
        if batch.flow is None:
            raise ValueError("a generative model's batch needs its flow draw (FlowObjective.draw, by the feed)")
        c = self.config
        out = net(batch, flow=batch.flow)
        pred, target = _full(out.pos), _full(batch.target).to(_full(out.pos).dtype)
        reg = _full(out.reg) * (batch.num_graphs / totals["graphs"])
        diff = pred - target
        mse = (diff * diff).sum() / (3 * max(totals["nodes"][0], 1))
        tau = batch.flow[:, 3].to(pred.dtype)
        loss = mse + c.reg_weight * reg
        parts = {"mse": mse.detach(), "reg": reg.detach()}
        if c.bond_weight > 0:
            i, j = batch.bonds
            dd = (pred[i] - pred[j]).norm(dim=1) - (target[i] - target[j]).norm(dim=1)
            bond = (tau[i] * dd * dd).sum() / max(totals["bonds"][0], 1)
            loss, parts["bond"] = loss + c.bond_weight * bond, bond.detach()
        if c.clash_weight > 0:
            i, j = batch.edge_index
            floor = (target[i] - target[j]).norm(dim=1).clamp_max(c.clash_distance)
            short = torch.relu(floor - (pred[i] - pred[j]).norm(dim=1))
            clash = (tau[i] * short * short).sum() / max(totals["pairs"][0], 1)
            loss, parts["clash"] = loss + c.clash_weight * clash, clash.detach()
        return loss, parts


def objective_for(model, config: TrainConfig, *, cutoff: Optional[float] = None):
    """The objective that trains ``model``: :class:`FlowObjective` for a generative model, else
    :func:`eghn_md.train.loop.objective_from_config` of ``config`` (``cutoff`` [Å] of the data's contact edges)."""
    from eghn_md.models.registry import is_generative
    from eghn_md.train.loop import objective_from_config

    if is_generative(model):
        return FlowObjective(config=config)
    return objective_from_config(config, cutoff=cutoff)
