"""The training objective of a generative model (:class:`~eghn_md.models.generative.FlowModel`): flow matching.

For every training sample (x_t, x₁ = x_{t+ΔT}) the source noise z (N, 3) and the flow time τ are drawn from a
generator seeded by ``(seed, epoch, sample index)`` (:func:`sample_flow`, called by the batch feed through
:meth:`FlowObjective.draw`), so the draws are the same whatever the batch pieces, DDP ranks, worker processes or
resume point. The model builds x_τ = (1 − τ)(x_t + σ z̃) + τ x₁ and its denoiser predicts x̂₁; the loss is

* **mse**: the per-coordinate squared error of x̂₁ against x₁ [Å²] (the x-prediction form of conditional flow
  matching; its minimiser at each (x_τ, τ) is E[x₁ | x_τ], which the sampler's dx/dτ = (x̂₁ − x_τ)/(1 − τ) needs);
  in the loss each sample's error is weighted by :func:`flow_time_weight` (τ) (``flow_weight`` p: 0 uniform, 2
  velocity matching's 1/(1 − τ)², clipped at τ = 0.9 and normalised to mean 1); ``mse`` reports it unweighted;
* **bond** (``bond_weight``) and **clash** (``clash_weight``, ``clash_distance``): the structure terms of
  :mod:`eghn_md.train.objective` on x̂₁ against x₁'s geometry, each pair weighted by its graph's τ: late in the flow
  x̂₁ is nearly the sample the sampler returns, so a valid structure is learnt where it matters, while at τ ≈ 0
  (x̂₁ ≈ the conditional mean, which need not be a valid structure) the terms stay out of the way;
* **contact** (``contact_weight``): the τ-weighted squared error of x̂₁'s distances against x₁'s over the contact
  edges of the input frame (the clash term's pairs) [Å²]: the relative positions that hold a state together, which
  the per-coordinate error does not single out;
* **score** (``score_weight``): the :func:`marginal_score` of :data:`SCORE_SAMPLES` frames sampled from x_t by the
  model's own sampler (its steps, guidance and source scale; the noise from the draw) and differentiated through,
  against x₁: the energy score of each node's position and of each contact length of the input frame [Å]. Flow
  matching fits the denoiser at every τ; the samples' spread and their contacts follow only as well as the denoiser
  is accurate. A proper scoring rule trains the sampled kernel itself (the way ensemble weather models are trained
  on the CRPS). Each sample costs the sampler's denoiser passes, forward and backward. With ``score_steps`` S > 1
  each sample is rolled on by the sampler (edges rebuilt from it, as in a rollout, still differentiated through)
  and the score is the mean over the S steps, step k's against x(t + kΔT) (a graph whose true frame lies past the
  data's end leaves that step out): the kernel is trained as the chain a rollout runs;
* **reg**: the pooling regulariser of the denoiser at x_τ, times ``reg_weight``.

* **pushforward steps** (``unroll_steps`` K > 1, Brandstetter et al. 2022's pushforward for a sampled model): the
  model's own sample x̃ from the step before (drawn without gradient, with the draw's sampling noise, edges rebuilt
  from x̃ as in a rollout) becomes the input of the next step, whose flow-matching target is the true frame
  x(t + kΔT). A one-step kernel that loosens a state a little (the closed state of AdK) is shown its own loosened
  frames and the true frames that follow them, so it learns to pull them back. The step terms are averaged over
  the K steps; ``mse_unroll`` reports the error of steps 2..K. ``pushforward`` must stay on: a sample is not
  differentiated through.

Every sum is divided by a count over the whole batch (:meth:`FlowObjective.totals`, the counts of
:meth:`eghn_md.train.objective.Objective.totals`), so processing a batch in pieces gives the same gradient as
processing it whole. Free steps (``free_steps``) do not apply to a sampled model and are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import UsageError
from eghn_md.nn.edges import scatter_sum
from eghn_md.train.objective import Objective, regraph
from eghn_md.train.options import TrainConfig

__all__ = ["FlowObjective", "sample_flow", "flow_columns", "objective_for", "flow_time_weight", "TAU_CLIP",
           "SCORE_SAMPLES", "marginal_score"]

#: the flow time past which :func:`flow_time_weight` stops growing (its weight at τ = 1 is finite)
TAU_CLIP = 0.9
#: samples per training sample drawn for the sample score (``score_weight``): the two an energy score needs, fixed
#: (:func:`marginal_score` takes two); each rolled-on step (``score_steps``) draws two more
SCORE_SAMPLES = 2


def sample_flow(n_nodes: int, *, seed: int, epoch: int, index: int, dtype, device, steps: int = 1,
                samples: int = 0) -> Tensor:
    """The flow draw (n_nodes, :func:`flow_columns` (``steps``, ``samples``)) of training sample ``index`` in
    ``epoch``, from a stream of its own (drawn in float64 on the CPU): unit Gaussian z (columns 0–2) and one
    τ ~ U(0, 1) for the whole graph (column 3) of the first step; then, for each later step of a pushforward unroll,
    the unit Gaussian sampling noise of its input (3 columns) and its own [z, τ] (4 columns); last, the unit Gaussian
    source noise of each of ``samples`` scored samples (3 columns each). Earlier columns do not depend on later
    counts."""
    g = torch.Generator()
    g.manual_seed(((int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + int(index)) * 7 + 5)
    cols = []
    for k in range(int(steps)):
        if k:
            cols.append(torch.randn((n_nodes, 3), generator=g, dtype=torch.float64))
        cols.append(torch.randn((n_nodes, 3), generator=g, dtype=torch.float64))
        cols.append(torch.rand((), generator=g, dtype=torch.float64).expand(n_nodes, 1))
    for _ in range(int(samples)):
        cols.append(torch.randn((n_nodes, 3), generator=g, dtype=torch.float64))
    return torch.cat(cols, dim=1).to(device=device, dtype=dtype)


def flow_time_weight(tau: Tensor, power: float) -> Tensor:
    """The loss weight max(1 − τ, 1 − :data:`TAU_CLIP`)^(−p) / E_{τ ~ U(0, 1)}[same] of flow times ``tau`` (any
    shape, in [0, 1]) for ``power`` p ≥ 0: mean 1 over uniform τ, so p changes where the weight goes, not the
    loss's scale; p = 0 gives ones."""
    p, floor = float(power), 1.0 - TAU_CLIP
    if p == 0:
        return torch.ones_like(tau)
    body = math.log(1.0 / floor) if p == 1 else (1.0 - floor ** (1.0 - p)) / (1.0 - p)
    mean = body + floor * floor ** (-p)  # ∫₀^TAU_CLIP (1 − τ)^(−p) dτ + (1 − TAU_CLIP)·floor^(−p)
    return (1.0 - tau).clamp_min(floor).pow(-p) / mean


def flow_columns(steps: int, samples: int = 0) -> int:
    """Columns of a flow draw for ``steps`` unrolled steps (4 for the first, 7 for each later one) and ``samples``
    scored samples (3 each)."""
    return 4 + 7 * (int(steps) - 1) + 3 * int(samples)


def _step_draw(flow: Tensor, k: int) -> tuple[Optional[Tensor], Tensor]:
    """``(sampling noise of step k's input (N, 3) or None for k = 0, [z, τ] of step k (N, 4))`` of a flow draw."""
    if k == 0:
        return None, flow[:, :4]
    c = flow_columns(k)  # the columns of steps 0 … k − 1 come first
    return flow[:, c:c + 3], flow[:, c + 3:c + 7]


def marginal_score(a: Tensor, b: Tensor, y: Tensor, batch: GraphBatch, pairs: Tensor) -> Tensor:
    """The energy score (Gneiting & Raftery 2007) of two samples against the truth, marginal by marginal, per graph
    (G,) [Å]: the mean over a graph's nodes of ½(‖aᵢ − yᵢ‖ + ‖bᵢ − yᵢ‖) − ½‖aᵢ − bᵢ‖ (each node's position) plus
    the mean over its ``pairs`` of the same for the pair distances (each contact's length: the CRPS). Each term is a
    proper scoring rule for its marginal, least in expectation only for samples whose node positions and contact
    lengths are distributed as the truth's; one energy score over a whole frame would weigh the dependence between
    far-apart residues, where a sampler's error on each contact hides, too lightly.

    Args:
        a, b: (N, 3) [Å] two samples of the batch's graphs; y: (N, 3) [Å] the true frame.
        batch: the graphs (``batch.batch`` (N,) graph ids); pairs: (2, E) long node pairs (contact edges).
    """
    g, n = batch.batch, batch.num_graphs
    i, j = pairs

    def node_es(u: Tensor, v: Tensor, w: Tensor) -> Tensor:
        return 0.5 * ((u - w).norm(dim=1) + (v - w).norm(dim=1)) - 0.5 * (u - v).norm(dim=1)

    da, db, dy = ((x[i] - x[j]).norm(dim=1) for x in (a, b, y))
    per_pair = 0.5 * ((da - dy).abs() + (db - dy).abs()) - 0.5 * (da - db).abs()
    nodes = scatter_sum(torch.ones_like(a[:, 0]), g, n)
    counts = scatter_sum(torch.ones_like(da), g[i], n).clamp_min(1)
    return scatter_sum(node_es(a, b, y), g, n) / nodes + scatter_sum(per_pair, g[i], n) / counts


def _full(t: Tensor) -> Tensor:
    """Half-precision (autocast) values promoted to float32; float32/float64 kept."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


@dataclass
class FlowObjective:
    """Flow-matching loss of a generative model on a batch; see the module docstring. Lengths in Å, the error terms
    in Å², the score in Å. The weights are those of ``config`` (``flow_weight``, ``bond_weight``, ``clash_weight``,
    ``clash_distance``, ``contact_weight``, ``score_weight``, ``score_steps``, ``reg_weight``, ``unroll_steps``);
    ``cutoff`` [Å] rebuilds the contact edges of the pushforward steps' and the rolled-on score's inputs."""

    config: TrainConfig
    cutoff: float = float("nan")

    def __post_init__(self) -> None:
        c = self.config
        if int(c.free_steps) > 0 or (int(c.unroll_steps) > 1 and not c.pushforward):
            raise UsageError(f"a generative model trains its unrolled steps on its own samples, which are not "
                             f"differentiated through: set train: {{free_steps: 0, pushforward: true}} in the "
                             f"`config_file` (got {c.free_steps} and {c.pushforward}), or start from the generative "
                             "`preset`", params=("config_file", "preset"))
        if (int(c.unroll_steps) > 1 or self.score_steps > 1) and not math.isfinite(self.cutoff):
            raise UsageError("unroll_steps > 1 and score_steps > 1 need the contact cutoff of the data to rebuild "
                             "edges between steps")

    @property
    def unroll_steps(self) -> int:
        return int(self.config.unroll_steps)

    @property
    def score_steps(self) -> int:
        """Steps of the sampled score's rollout (``score_steps``; 0 without the score)."""
        return int(self.config.score_steps) if self.config.score_weight > 0 else 0

    @property
    def score_samples(self) -> int:
        """Sampling-noise draws per training sample for the energy score: :data:`SCORE_SAMPLES` per scored step, or
        0 without it."""
        return SCORE_SAMPLES * self.score_steps

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
        if self.unroll_steps > 1:
            docs.append(("mse_unroll", "flow-matching error of the steps from the model's own samples [Å²]"))
        if c.bond_weight > 0:
            docs.append(("bond", "τ-weighted bond-length error of x̂₁ [Å²]"))
        if c.clash_weight > 0:
            docs.append(("clash", "τ-weighted clash penalty of x̂₁ [Å²]"))
        if c.contact_weight > 0:
            docs.append(("contact", "τ-weighted contact-distance error of x̂₁ [Å²]"))
        if c.score_weight > 0:
            what = "x(t + ΔT)" if self.score_steps == 1 else \
                f"x(t + ΔT) … x(t + {self.score_steps}ΔT), mean over the steps"
            docs.append(("score", f"marginal energy score of two sampled frames against {what} [Å]"))
        return docs

    def draw(self, sample: GraphBatch, *, seed: int, epoch: int, index: int) -> GraphBatch:
        """``sample`` with its flow draw (:func:`sample_flow`) in ``GraphBatch.flow``."""
        return sample.replace(flow=sample_flow(sample.num_nodes, seed=seed, epoch=epoch, index=index,
                                               dtype=sample.pos.dtype, device=sample.pos.device,
                                               steps=self.unroll_steps, samples=self.score_samples))

    def totals(self, samples: Sequence[GraphBatch]) -> dict:
        """Denominators over a whole (global) batch, per unrolled step: nodes, bonds and contact pairs with a
        target; graphs; the most steps any sample has (those of :meth:`Objective.totals`, so the loop all-reduces
        them alike under DDP)."""
        return Objective(config=self.config).totals(samples)

    def __call__(self, net, batch: GraphBatch, totals: dict) -> tuple[Tensor, dict]:
        """``(loss, parts)`` of a piece of a batch; ``parts`` (detached): ``mse``, ``reg`` and, when active,
        ``mse_unroll``, ``bond``, ``clash`` and ``contact`` (means over the steps) and ``score`` (first step only),
        each already divided by the batch totals."""
        if batch.flow is None:
            raise ValueError("a generative model's batch needs its flow draw (FlowObjective.draw, by the feed)")
        c, n_steps = self.config, int(totals["steps"])
        every = torch.ones(batch.num_nodes, dtype=torch.bool, device=batch.pos.device)
        out = net(batch, flow=_step_draw(batch.flow, 0)[1])
        steps = [self._terms(out.pos, batch, every, totals, 0, batch.edge_index)]
        cur = batch
        for k in range(1, n_steps):
            cur, valid = self._pushed(net, batch, cur, k)
            pred = net(cur, flow=_step_draw(batch.flow, k)[1]).pos
            steps.append(self._terms(pred, cur, valid, totals, k, batch.edge_index))
        reg = _full(out.reg) * (batch.num_graphs / totals["graphs"])
        loss, parts = c.reg_weight * reg, {"mse": steps[0]["mse"].detach(), "reg": reg.detach()}
        if self.score_samples:
            score = self._score(net, batch).sum() / totals["graphs"]
            loss, parts["score"] = loss + c.score_weight * score, score.detach()
        if self.unroll_steps > 1:
            parts["mse_unroll"] = sum((s["mse"].detach() for s in steps[1:]), reg.new_zeros(())) / max(n_steps - 1, 1)
        for key, weight in (("weighted", 1.0), ("bond", c.bond_weight), ("clash", c.clash_weight),
                            ("contact", c.contact_weight)):
            if weight > 0:
                total = sum(s[key] for s in steps)
                loss = loss + weight * total / n_steps
                if key != "weighted":
                    parts[key] = total.detach() / n_steps
        return loss, parts

    def _score(self, net, batch: GraphBatch) -> Tensor:
        """:func:`marginal_score` (G,) [Å] of the two (:data:`SCORE_SAMPLES`) samples drawn by the model's own
        sampler and differentiated through, over the input frame's contact edges: of x(t + ΔT) from the draw's
        last six columns or, with ``score_steps`` S > 1, the mean over the S steps of two rollouts (step k from
        the columns 6(k − 1) … 6k − 1 of the draw's last 6S, against x(t + kΔT); a graph leaves out the steps whose
        true frame it lacks)."""
        first = flow_columns(self.unroll_steps)
        g, n = batch.batch, batch.num_graphs
        if self.score_steps > 1 and (batch.future is None or batch.future.shape[1] < self.score_steps - 1):
            raise ValueError(f"score_steps = {self.score_steps} needs {self.score_steps - 1} future frames per "
                             "window (build the data with future_steps >= score_steps)")
        cur, total, count = [batch, batch], None, None
        for k in range(self.score_steps):
            cols = [first + 3 * (SCORE_SAMPLES * k + s) for s in range(SCORE_SAMPLES)]
            a, b = (_full(net(x, noise=batch.flow[:, c:c + 3]).pos) for x, c in zip(cur, cols, strict=True))
            target = _full(batch.target if k == 0 else batch.future[:, k - 1]).to(a.dtype)
            known = torch.isfinite(target).all(dim=1)
            whole = scatter_sum((~known).to(a.dtype), g, n) == 0  # (G,) graphs with the step's true frame
            score = marginal_score(a, b, torch.where(known.unsqueeze(1), target, a.detach()), batch,
                                   batch.edge_index)
            score, whole = torch.where(whole, score, torch.zeros_like(score)), whole.to(a.dtype)
            total, count = (score, whole) if total is None else (total + score, count + whole)
            if k + 1 < self.score_steps:
                moved = (x.to(batch.pos.dtype) for x in (a, b))
                cur = [regraph(batch, x, self.cutoff).replace(vel=x - c.pos) for x, c in zip(moved, cur, strict=True)]
        return total / count.clamp_min(1.0)

    def _pushed(self, net, batch: GraphBatch, cur: GraphBatch, k: int) -> tuple[GraphBatch, Tensor]:
        """The input of unrolled step ``k`` (≥ 1): the model's sample from ``cur`` (no gradient; the draw's
        sampling noise), with its own edges and velocity, and as target the true frame x(t + (k+1)ΔT) where the
        window has one (``valid`` (N,) bool; elsewhere the sample stands in, out of the loss)."""
        with torch.no_grad():
            x = _full(net(cur, noise=_step_draw(batch.flow, k)[0]).pos).to(batch.pos.dtype)
        target = batch.future[:, k - 1].to(x.dtype)
        valid = torch.isfinite(target).all(dim=1)
        target = torch.where(valid.unsqueeze(1), target, x)
        return regraph(batch, x, self.cutoff).replace(vel=x - cur.pos, target=target), valid

    def _terms(self, pred: Tensor, batch: GraphBatch, valid: Tensor, totals: dict, k: int, pairs: Tensor) -> dict:
        """Step ``k``'s summed error terms of the denoised frame ``pred`` (N, 3) [Å] against ``batch.target``,
        over the nodes with a target (``valid`` (N,) bool), each divided by the step's batch totals: ``mse`` (and
        its τ-weighted form ``weighted``), the τ-weighted ``bond`` over the bonds, and ``clash`` and ``contact``
        over ``pairs`` (2, E) (the first input frame's contact edges, those the denominators count), against the
        target's geometry."""
        c = self.config
        pred = _full(pred)
        target = _full(batch.target).to(pred.dtype)
        keep = valid.to(pred.dtype)
        tau = _step_draw(batch.flow, k)[1][:, 3].to(pred.dtype) * keep
        diff = pred - target
        err = keep * (diff * diff).sum(dim=1) / (3 * max(totals["nodes"][k], 1))
        out = {"mse": err.sum()}
        out["weighted"] = (err * flow_time_weight(tau, c.flow_weight)).sum() if c.flow_weight else out["mse"]
        if c.bond_weight > 0:
            i, j = batch.bonds
            dd = (pred[i] - pred[j]).norm(dim=1) - (target[i] - target[j]).norm(dim=1)
            out["bond"] = (tau[i] * keep[j] * dd * dd).sum() / max(totals["bonds"][k], 1)
        i, j = pairs
        if c.clash_weight > 0 or c.contact_weight > 0:
            d_true, d_pred = (target[i] - target[j]).norm(dim=1), (pred[i] - pred[j]).norm(dim=1)
            w = tau[i] * keep[j] / max(totals["pairs"][k], 1)
        if c.clash_weight > 0:
            short = torch.relu(d_true.clamp_max(c.clash_distance) - d_pred)
            out["clash"] = (w * short * short).sum()
        if c.contact_weight > 0:
            out["contact"] = (w * (d_pred - d_true) ** 2).sum()
        return out


def objective_for(model, config: TrainConfig, *, cutoff: Optional[float] = None):
    """The objective that trains ``model``: :class:`FlowObjective` for a generative model, else
    :func:`eghn_md.train.loop.objective_from_config` of ``config`` (``cutoff`` [Å] of the data's contact edges)."""
    from eghn_md.models.registry import is_generative
    from eghn_md.train.loop import objective_from_config

    if is_generative(model):
        return FlowObjective(config=config, cutoff=float("nan") if cutoff is None else float(cutoff))
    return objective_from_config(config, cutoff=cutoff)
