"""A generative next-frame model: any registry network as the denoiser of a conditional flow x(t) → x(t + ΔT).

At a horizon of picoseconds the future of a protein is a distribution; a deterministic model predicts its mean,
whose rollouts drift or freeze. :class:`FlowModel` samples it instead (conditional flow matching / a stochastic
interpolant whose source is the current frame plus isotropic noise, as EquiJump, Costa et al. 2024):

* **source** x₀ = x_t + σ·z, z (N, 3) unit Gaussian per coordinate with its per-graph mean removed (so the source
  is centred on x_t: translation equivariance), σ = ``config.flow_sigma`` [Å];
  With ``config.spectral_source`` z is shaped like the training data's motion over the horizon: most of the noise
  goes into the soft collective modes of x_t's contact graph (:mod:`eghn_md.models.source_spectrum`);
* **path** x_τ = (1 − τ)·x₀ + τ·x₁, τ ∈ [0, 1], x₁ = x(t + ΔT);
* **denoiser**: the inner network (``config.name``: ``eghn``, ``egnn``, …) reads a graph with positions x_τ, the
  vector channel x_τ − x_t (translation invariant; where the velocity goes in a deterministic model), the edges of
  x_t and node scalars [residue features, τ embedding], and predicts x̂₁ (its ``pos``);
* **sampler**: ``sample_steps`` K steps of dx/dτ = (x̂₁ − x_τ) / (1 − τ) from τ = 0 (Euler, or Heun with an Euler
  last step); the last step lands on x̂₁ exactly. The sampler's source is x_t + λσz with λ = ``source_scale``
  (low-temperature sampling, 1 as trained);
* **guidance** (``guide_steps`` > 0, BioEmu's pattern): in the last sampling steps x̂₁ first takes
  :data:`GUIDE_ITERATIONS` gradient steps (rate :data:`GUIDE_RATE`) on flat-bottom restraints, both taken from the
  training data: bonds into ``bond_range``, and every non-local pair (≥ 3 bonds apart) no closer than
  ``contact_floor``. The clash term acts on a Verlet list (:func:`clash_candidates`: the non-local pairs closer than
  ``contact_floor`` + :data:`GUIDE_MARGIN`, rebuilt once a node has moved by half the margin), so it is exact for
  every non-local pair at every iteration while an iteration visits only the pairs near contact. The restraints
  depend on distances only, so sampling stays E(3)-equivariant;
* **pair bias** (``config.bias_pairs`` > 0, fitted by ``eghn-md fit-bias``): in the last sampling step x̂₁ is first
  moved down the gradient of tabulated potentials on node-pair distances (:mod:`eghn_md.models.pair_bias`,
  buffers ``bias_index`` / ``bias_table``), fitted so that the model's ensembles keep the training run's
  pair-distance distributions; with ``config.bias_collective`` also a table on one collective variable of those
  pairs' contacts (:mod:`eghn_md.models.collective_bias`, buffers ``bias_cv_*``); distances only, so equivariance
  is kept;
* **contact prior** (``config.contact_prior``): the native contacts of the training trajectory
  (:mod:`eghn_md.models.contact_prior`, buffers ``prior_index`` / ``prior_mean`` / ``prior_std`` set by training
  through :meth:`FlowModel.set_contact_prior`) are added to the edges of every graph the denoiser reads, with three
  edge scalars [is prior pair, mean / 10 Å, std / 1 Å]: constants per pair, so equivariance is kept.
* **distance conditioning** (``config.condition_distances``): every edge the denoiser reads also carries its length
  in x_t, expanded in :data:`CONDITION_FEATURES` Gaussian radial basis functions (:func:`distance_features`). The
  denoiser's own geometry is x_τ, whose distances carry the source noise (≈ σ√2 per pair at τ = 0); without these
  scalars it sees x_t's exact contacts only through the vector channel. On equilibrium AdK a short run with them
  held the closed state no better (``examples/benchmarks/results/generative_equilibrium.md`` §4), so the preset
  leaves them off. Distances are invariant, so equivariance is kept.

The model is **Markov**: it reads x_t only (``batch.vel`` is ignored), so a rollout starts from one structure. It is
E(3)-equivariant as a conditional density whenever the inner network is: rotating / reflecting x_t *and* z rotates
the sample, translating x_t translates it (``tests/test_generative.py`` checks both in float64). Replicas are graphs
of one disjoint-union batch: the inner networks are batch independent, so replica r's sample depends on its own
noise only.

Training (:mod:`eghn_md.train.flow_objective`) calls ``model(batch, flow=batch.flow)``: z and τ per node, drawn per
sample from a seeded generator; the forward then returns the denoiser's x̂₁ at x_τ built from ``batch.target``.
Without ``flow`` the forward *samples* (``model(batch).pos`` is one draw of x(t + ΔT)), so ``evaluate`` and
``rollout`` use a generative model as a drop-in.

**Velocity conditioning** (``config.flow_velocity``): the denoiser also reads the velocity v_t = x_t − x_{t−ΔT}
[Å] (``batch.vel``, divided by ``config.vel_scale``) as a second free vector channel beside the flow state
x_τ − x_t (the network's ``extra`` input, which ``eghn`` declares: ``ModelCapabilities.extra_vectors``). The samples
can then follow the direction of motion, but the model is **not Markov** (it declares ``reads`` "vel"; a rollout
needs the frame one horizon before its start). Rotating / reflecting x_t, v_t and z rotates the sample
(``tests/test_generative_velocity.py``, float64).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
from torch import Tensor, nn

from eghn_md.data.batch import GraphBatch
from eghn_md.graph.edges import radius_graph
from eghn_md.graph.separation import nonlocal_mask
from eghn_md.models.capabilities import flow_capabilities
from eghn_md.models.collective_bias import CV_KNOTS, Collective
from eghn_md.models.config import ModelConfig
from eghn_md.models.contact_prior import PRIOR_EDGE_FEATURES, add_prior_edges
from eghn_md.models.output import ModelOutput
from eghn_md.models.pair_bias import KNOTS, bias_shift
from eghn_md.models.source_spectrum import spectral_noise
from eghn_md.nn.edges import graph_gather, graph_mean, scatter_sum

__all__ = ["FlowModel", "TIME_FEATURES", "time_features", "inner_config", "centred_noise", "GUIDE_ITERATIONS",
           "GUIDE_RATE", "GUIDE_MARGIN", "CONDITION_FEATURES", "distance_features", "clash_candidates"]

#: frequencies of the τ embedding: node scalars [τ, sin(π k τ), cos(π k τ) for k = 1 … 4]
_FREQUENCIES = (1, 2, 3, 4)
#: node scalars the τ embedding adds to the inner network's input
TIME_FEATURES = 1 + 2 * len(_FREQUENCIES)
#: gradient steps of the guidance on each guided x̂₁, and their rate: a node moves by rate × the summed violations
#: of its restraints [Å] (0.4: one bond alone is put back into range within 20 % in one step; chains need a few)
GUIDE_ITERATIONS = 20
GUIDE_RATE = 0.4
#: [Å] skin of the guidance's Verlet list: it holds the non-local pairs closer than contact_floor + this, and is
#: rebuilt once a node has moved by half of it since it was built (until then no pair outside the list can be
#: closer than the floor: each of its nodes has moved less than margin / 2)
GUIDE_MARGIN = 2.0
#: centres [Å] and width [Å] of the Gaussian radial basis of the conditioning distances (``condition_distances``):
#: 3 to 14.25 Å covers the Cα contacts and the radius graph; one width apart, so a 1 Å change moves every feature
_RBF_CENTRES = tuple(3.0 + 1.25 * k for k in range(10))
_RBF_WIDTH = 1.25
#: edge scalars that ``condition_distances`` adds to the denoiser's input
CONDITION_FEATURES = len(_RBF_CENTRES)


def time_features(tau: Tensor) -> Tensor:
    """The τ embedding (N, :data:`TIME_FEATURES`) of per-node flow times ``tau`` (N,) in [0, 1]."""
    k = torch.tensor(_FREQUENCIES, dtype=tau.dtype, device=tau.device) * math.pi
    a = tau.unsqueeze(1) * k
    return torch.cat([tau.unsqueeze(1), torch.sin(a), torch.cos(a)], dim=1)


def distance_features(pos: Tensor, edge_index: Tensor) -> Tensor:
    """Edge scalars (E, :data:`CONDITION_FEATURES`): the length of every edge in ``pos`` (N, 3) [Å], expanded in
    Gaussian radial basis functions exp(−((d − c) / w)²) (``edge_index`` (2, E) long)."""
    d = (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=1, keepdim=True)
    c = torch.tensor(_RBF_CENTRES, dtype=pos.dtype, device=pos.device)
    return torch.exp(-(((d - c) / _RBF_WIDTH) ** 2))


def inner_config(config: ModelConfig) -> ModelConfig:
    """The denoiser's configuration: ``config`` without the flow's own options (``generative``, ``flow_velocity``,
    the contact prior, ``condition_distances``, the spectral source), with τ features added to the node scalars
    and the vector channel (x_τ − x_t, of typical size ``disp_scale``) scaled like the displacement; with a contact
    prior, its :data:`~eghn_md.models.contact_prior.PRIOR_EDGE_FEATURES` edge scalars added, with
    ``condition_distances`` the :data:`CONDITION_FEATURES` (``edge_features`` ``"distance"`` becomes
    ``"data+distance"`` whose data scalars are the added ones)."""
    edges = {}
    extra = PRIOR_EDGE_FEATURES * config.contact_prior + CONDITION_FEATURES * config.condition_distances
    if extra:  # "distance": edge_in 2 ([d, d²]) + the added scalars, which become its data scalars
        mode = "data+distance" if config.edge_features == "distance" else config.edge_features
        edges = {"edge_in": config.edge_in + extra, "edge_features": mode}
    return dataclasses.replace(config, generative=False, node_in=config.node_in + TIME_FEATURES,
                               vel_scale=config.disp_scale, flow_velocity=False, contact_prior=False,
                               prior_fraction=0.0, condition_distances=False, spectral_source=False,
                               source_spectrum=None,
                               prior_nodes=0, prior_pairs=0, bias_nodes=0, bias_pairs=0,
                               bias_collective=False, **edges)


def centred_noise(z: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """``z`` (N, 3) with its mean over each graph removed (``batch`` (N,) graph ids)."""
    return z - graph_gather(graph_mean(z, batch, num_graphs), batch, num_graphs)


def clash_candidates(x: Tensor, floor: float, batch: Tensor, bonds: Tensor) -> Tensor:
    """The guidance's Verlet list (2, P) long: the non-local pairs (≥ 3 bonds apart in ``bonds`` (2, B), both
    directions of each; :func:`~eghn_md.graph.separation.nonlocal_mask`) of one graph (``batch`` (N,) graph ids)
    closer than ``floor`` + :data:`GUIDE_MARGIN` [Å] in ``x`` (N, 3) [Å]; both directions of each pair, sorted by
    (receiver, sender)."""
    pairs = radius_graph(x.detach(), floor + GUIDE_MARGIN, batch)
    return pairs[:, nonlocal_mask(pairs, bonds, x.shape[0])]


def _check_graph_nodes(batch: GraphBatch, n: int, message: str) -> None:
    """ValueError ``message`` (formatted with the first wrong graph ``g``, its node count ``k`` and ``n``) unless every
    graph of ``batch`` has ``n`` nodes: the contact prior and the pair bias name the nodes of one system."""
    counts = batch.ptr[1:] - batch.ptr[:-1]
    wrong = (counts != n).nonzero()
    if wrong.numel():
        g = int(wrong[0])
        raise ValueError(message.format(g=g, k=int(counts[g]), n=n))


def _max_shift(x: Tensor, ref: Tensor) -> float:
    """[Å] the largest displacement of any node between ``ref`` and ``x`` (N, 3) [Å], N ≥ 1."""
    return float((x.detach() - ref).norm(dim=1).max())


class FlowModel(nn.Module):
    """Conditional flow x(t) → x(t + ΔT) around an inner network (see the module docstring).

    Args:
        config: the model's configuration (``generative`` true; ``flow_sigma`` [Å], ``sample_steps``, ``sampler``).
        net: the denoiser, built from :func:`inner_config` of ``config``.
    """

    def __init__(self, *, config: ModelConfig, net: nn.Module):
        super().__init__()
        self.config = config
        self.net = net
        #: what this model is (read through :func:`~eghn_md.models.registry.capabilities_of`): the network's
        #: declaration, but it samples and reads x_t only (the network's ``vel`` is x_τ − x_t, not a velocity),
        #: or with ``flow_velocity`` x_t and the velocity
        self.capabilities = flow_capabilities(net.capabilities, velocity=config.flow_velocity)
        self.sigma = float(config.flow_sigma)
        if config.contact_prior:  # zeros of the configured sizes: set_contact_prior or load_state_dict fills them
            self.register_buffer("prior_index", torch.zeros((2, config.prior_pairs), dtype=torch.long))
            self.register_buffer("prior_mean", torch.zeros(config.prior_pairs))
            self.register_buffer("prior_std", torch.zeros(config.prior_pairs))
        if config.bias_pairs:  # zeros of the configured sizes: set_pair_bias or load_state_dict fills them
            self.register_buffer("bias_index", torch.zeros((2, config.bias_pairs), dtype=torch.long))
            self.register_buffer("bias_table", torch.zeros((config.bias_pairs, KNOTS)))
        if config.bias_collective:
            self._collective_buffers(torch.zeros(config.bias_pairs), torch.zeros(config.bias_pairs),
                                     torch.zeros(2), torch.zeros(CV_KNOTS))

    def extra_repr(self) -> str:
        c = self.config
        prior = f", contact_prior={c.prior_pairs} pairs of {c.prior_nodes} nodes" if c.contact_prior else ""
        bias = f", pair_bias={c.bias_pairs} pairs of {c.bias_nodes} nodes" if c.bias_pairs else ""
        bias += " + collective" if c.bias_collective else ""
        return f"sigma={self.sigma:.4g} Å, sample_steps={c.sample_steps}, sampler={c.sampler!r}{prior}{bias}"

    @property
    def bias_rate(self) -> float:
        """[Å²] how far the pair bias moves a node per unit gradient [kT / Å]: σ² / 2, D·ΔT of a step whose
        per-coordinate variance is the flow source's σ² (:mod:`~eghn_md.models.pair_bias`)."""
        return 0.5 * self.sigma**2

    def set_pair_bias(self, index: Tensor, table: Tensor, *, nodes: int, collective: Optional[Collective] = None
                      ) -> None:
        """Give the model a pair bias (:mod:`eghn_md.models.pair_bias`), replacing any it has: ``config.bias_pairs``,
        ``config.bias_nodes`` and ``config.bias_collective`` follow, so a checkpoint of the model rebuilds its
        buffers.

        Args:
            index: (2, P) long node pairs, P ≥ 1, numbers in [0, ``nodes``).
            table: (P, :data:`~eghn_md.models.pair_bias.KNOTS`) [kT] the pairs' potentials on the knots.
            nodes: the nodes of every graph the model will sample (the system the bias was fitted on).
            collective: a collective term over the same P pairs (:mod:`eghn_md.models.collective_bias`), or None.

        Raises:
            ValueError: shapes that do not fit, or node numbers outside [0, ``nodes``).
        """
        index = torch.as_tensor(index).long()
        table = torch.as_tensor(table)
        p = int(index.shape[1]) if index.ndim == 2 else 0
        if index.ndim != 2 or index.shape[0] != 2 or p == 0 or tuple(table.shape) != (p, KNOTS):
            raise ValueError(f"set_pair_bias: expected index (2, P) with P >= 1 and table (P, {KNOTS}), got "
                             f"{tuple(index.shape)}, {tuple(table.shape)}")
        if not (0 <= int(index.min()) and int(index.max()) < int(nodes)):
            raise ValueError(f"set_pair_bias: node numbers must lie in [0, {int(nodes)}), got "
                             f"{int(index.min())}..{int(index.max())}")
        if collective is not None and (tuple(collective.weight.shape) != (p,) or tuple(collective.mean.shape) != (p,)
                                       or tuple(collective.table.shape) != (CV_KNOTS,)):
            raise ValueError(f"set_pair_bias: the collective term needs weight and mean ({p},) and table "
                             f"({CV_KNOTS},), got {tuple(collective.weight.shape)}, {tuple(collective.mean.shape)}, "
                             f"{tuple(collective.table.shape)}")
        like = next(self.parameters())  # the model's device and dtype
        self.config = dataclasses.replace(self.config, bias_pairs=p, bias_nodes=int(nodes),
                                          bias_collective=collective is not None)
        self.register_buffer("bias_index", index.clone().to(like.device))
        self.register_buffer("bias_table", table.detach().to(device=like.device, dtype=like.dtype).clone())
        if collective is not None:
            self._collective_buffers(collective.weight, collective.mean, collective.grid, collective.table)

    def _collective_buffers(self, weight: Tensor, mean: Tensor, grid: Tensor, table: Tensor) -> None:
        like = next(self.parameters())
        for name, value in (("weight", weight), ("mean", mean), ("grid", grid), ("table", table)):
            self.register_buffer(f"bias_cv_{name}", value.detach().to(device=like.device, dtype=like.dtype).clone())

    @property
    def collective_bias(self) -> Optional[Collective]:
        """The pair bias's collective term (:mod:`eghn_md.models.collective_bias`), or None."""
        if not self.config.bias_collective:
            return None
        return Collective(weight=self.bias_cv_weight, mean=self.bias_cv_mean, grid=self.bias_cv_grid,
                          table=self.bias_cv_table)

    def _biased(self, x: Tensor, batch: GraphBatch) -> Tensor:
        """``x`` (N, 3) [Å] moved by the pair bias (unchanged without one); every graph of ``batch`` must have
        ``config.bias_nodes`` nodes, else ValueError."""
        c = self.config
        if not c.bias_pairs:
            return x
        _check_graph_nodes(batch, c.bias_nodes, "pair bias: graph {g} of the batch has {k} nodes, but the bias was "
                           "fitted for {n} nodes")
        return x + bias_shift(x, index=self.bias_index, table=self.bias_table, ptr=batch.ptr, rate=self.bias_rate,
                              collective=self.collective_bias)

    def set_source_scale(self, value: float) -> None:
        """Sample from now on with λ = ``value`` on the source noise (``config.source_scale``, checked by
        :class:`~eghn_md.models.config.ModelConfig`: UsageError unless a finite number > 0)."""
        self.config = dataclasses.replace(self.config, source_scale=value)

    def set_contact_prior(self, index: Tensor, mean: Tensor, std: Tensor) -> None:
        """Set the contact prior (:func:`~eghn_md.models.contact_prior.pair_statistics`).

        Args:
            index: (2, P) long node pairs, one direction each, numbers in [0, ``config.prior_nodes``).
            mean: (P,) [Å] mean distance of each pair; std: (P,) [Å] its standard deviation.

        Raises:
            ValueError: a model without ``contact_prior``, or sizes that differ from the configuration's.
        """
        c = self.config
        if not c.contact_prior:
            raise ValueError("set_contact_prior: this model was built without contact_prior")
        index = torch.as_tensor(index).long()
        if tuple(index.shape) != (2, c.prior_pairs) or tuple(mean.shape) != (c.prior_pairs,) or \
                tuple(std.shape) != (c.prior_pairs,):
            raise ValueError(f"set_contact_prior: expected index (2, {c.prior_pairs}) and mean, std "
                             f"({c.prior_pairs},) (prior_pairs), got {tuple(index.shape)}, {tuple(mean.shape)}, "
                             f"{tuple(std.shape)}")
        if index.numel() and not (0 <= int(index.min()) and int(index.max()) < c.prior_nodes):
            raise ValueError(f"set_contact_prior: node numbers must lie in [0, {c.prior_nodes}) (prior_nodes), "
                             f"got {int(index.min())}..{int(index.max())}")
        with torch.no_grad():
            self.prior_index.copy_(torch.sort(index, dim=0).values)  # i < j
            self.prior_mean.copy_(mean)
            self.prior_std.copy_(std)

    def conditioned(self, batch: GraphBatch) -> GraphBatch:
        """``batch`` (positions x_t) with what the denoiser reads of x_t on its edges: the contact prior's pairs and
        scalars (:meth:`_with_prior`), then, with ``condition_distances``, every edge's length in x_t
        (:func:`distance_features`). Computed once per sample: the edges belong to x_t."""
        c = self.config
        if not (c.contact_prior or c.condition_distances):
            return batch
        if c.edge_features == "distance":  # the network computes [d, d²] itself: the added scalars are its data
            batch = batch.replace(edge_attr=batch.edge_attr[:, :0])
        batch = self._with_prior(batch)
        if not c.condition_distances:
            return batch
        feat = distance_features(batch.pos, batch.edge_index).to(batch.edge_attr.dtype)
        return batch.replace(edge_attr=torch.cat([batch.edge_attr, feat], dim=1))

    def _with_prior(self, batch: GraphBatch) -> GraphBatch:
        """``batch`` with the contact prior's pairs among its edges and their scalars appended to its edge scalars
        (unchanged without a prior; :meth:`conditioned` has already dropped the data scalars in ``"distance"``
        mode); every graph must have ``config.prior_nodes`` nodes, else ValueError."""
        c = self.config
        if not c.contact_prior:
            return batch
        _check_graph_nodes(batch, c.prior_nodes, "contact prior: graph {g} of the batch has {k} nodes, but the prior "
                           "was computed for {n} nodes (the training data's)")
        edge_index, edge_attr = add_prior_edges(batch.edge_index, batch.edge_attr, index=self.prior_index,
                                                mean=self.prior_mean, std=self.prior_std, ptr=batch.ptr)
        return batch.replace(edge_index=edge_index, edge_attr=edge_attr)

    def forward(self, batch: GraphBatch, *, flow: Optional[Tensor] = None, noise: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None, steps: Optional[int] = None) -> ModelOutput:
        """Training (``flow`` given): the denoiser's x̂₁ at x_τ; otherwise one sample of x(t + ΔT).

        Args:
            batch: positions x_t (N, 3) [Å]; ``target`` x(t + ΔT) (N, 3) [Å] when training.
            flow: (N, 4) [z (unit Gaussian), τ] per node (``GraphBatch.flow``), training only.
            noise: (N, 3) unit Gaussian source noise of the sample (its per-graph mean is removed), or None: drawn
                from ``generator``.
            generator: a CPU ``torch.Generator`` the noise is drawn from (None: torch's global generator).
            steps: integration steps (None: ``config.sample_steps``).
        """
        if flow is not None:
            if batch.target is None:
                raise ValueError("training a generative model needs batch.target, the frame x(t + ΔT)")
            z = self.source_noise(batch, flow[:, :3].to(batch.pos.dtype))
            tau = flow[:, 3].to(batch.pos.dtype).unsqueeze(1)
            x_tau = (1.0 - tau) * (batch.pos + self.sigma * z) + tau * batch.target.to(batch.pos.dtype)
            return self._denoise(self.conditioned(batch), x_tau, tau.squeeze(1))
        return self.sample(batch, noise=noise, generator=generator, steps=steps)

    def denoise(self, batch: GraphBatch, x_tau: Tensor, tau: Tensor) -> ModelOutput:
        """The inner network's prediction x̂₁ (N, 3) [Å] from ``x_tau`` (N, 3) [Å] at flow times ``tau`` (N,)
        (what the denoiser reads of x_t is added to ``batch``'s edges first: :meth:`conditioned`)."""
        return self._denoise(self.conditioned(batch), x_tau, tau)

    def _denoise(self, batch: GraphBatch, x_tau: Tensor, tau: Tensor) -> ModelOutput:
        """:meth:`denoise` of a ``batch`` that already carries its conditioning edges (:meth:`conditioned`)."""
        h = torch.cat([batch.h, time_features(tau).to(batch.h.dtype)], dim=1)
        inner = batch.replace(pos=x_tau, vel=x_tau - batch.pos, h=h, target=None, future=None, flow=None)
        if self.config.flow_velocity:  # the velocity, in its own scale, as the network's extra vector channel
            out = self.net(inner, extra=(batch.vel / self.config.vel_scale).to(x_tau.dtype).unsqueeze(2))
        else:
            out = self.net(inner)
        return ModelOutput(pos=out.pos, reg=out.reg, assign=out.assign)

    def source_noise(self, batch: GraphBatch, z: Tensor) -> Tensor:
        """The source's unit noise (N, 3) from unit Gaussian ``z`` (N, 3): ``z`` with each graph's mean removed, or
        with ``spectral_source`` shaped by the spectrum on the Laplacian modes of x_t (``batch.pos``;
        :func:`~eghn_md.models.source_spectrum.spectral_noise`)."""
        c = self.config
        if not c.spectral_source:
            return centred_noise(z, batch.batch, batch.num_graphs)
        if c.source_spectrum is None:
            raise ValueError("spectral_source: this model has no source_spectrum (training fits it; a model built "
                             "outside training must be given one)")
        xi = spectral_noise(z, batch.pos, batch.ptr, c.source_spectrum)
        return centred_noise(xi, batch.batch, batch.num_graphs)

    def draw_noise(self, batch: GraphBatch, generator: Optional[torch.Generator] = None) -> Tensor:
        """Unit Gaussian noise (N, 3) for a sample of ``batch``, drawn on the CPU in float64 (the same numbers on
        every device for a seed), in the batch's dtype and device."""
        z = torch.randn((batch.num_nodes, 3), generator=generator, dtype=torch.float64)
        return z.to(device=batch.pos.device, dtype=batch.pos.dtype)

    def sample(self, batch: GraphBatch, *, noise: Optional[Tensor] = None,
               generator: Optional[torch.Generator] = None, steps: Optional[int] = None) -> ModelOutput:
        """One sample of x(t + ΔT) per graph of ``batch`` (see :meth:`forward` for the arguments)."""
        k_steps = int(self.config.sample_steps if steps is None else steps)
        if k_steps < 1:
            raise ValueError(f"sample steps must be >= 1, got {k_steps}")
        z = self.draw_noise(batch, generator) if noise is None else noise.to(batch.pos.dtype)
        x = batch.pos + (self.sigma * self.config.source_scale) * self.source_noise(batch, z)
        ones = batch.pos.new_ones(batch.num_nodes)
        out = None
        graph = self.conditioned(batch)  # once per sample: the edges belong to x_t
        for k in range(k_steps):
            tau, dt = k / k_steps, 1.0 / k_steps
            out = self._denoise(graph, x, ones * tau)
            if k == k_steps - 1:
                out = dataclasses.replace(out, pos=self._biased(out.pos, batch))
            if k >= k_steps - self.config.guide_steps:
                out = dataclasses.replace(out, pos=self.guide(out.pos, batch.bonds, batch.batch))
            drift = (out.pos - x) / (1.0 - tau)
            if self.config.sampler == "heun" and k < k_steps - 1:
                x_next = x + dt * drift
                ahead = self._denoise(graph, x_next, ones * (tau + dt))
                drift = 0.5 * (drift + (ahead.pos - x_next) / (1.0 - tau - dt))
            x = x + dt * drift
        return ModelOutput(pos=x, reg=out.reg, assign=out.assign)

    def guide(self, x: Tensor, bonds: Tensor, batch: Tensor) -> Tensor:
        """``x`` after :data:`GUIDE_ITERATIONS` gradient steps (rate :data:`GUIDE_RATE`) on the flat-bottom
        restraints: ``bonds`` into ``config.bond_range``, every non-local pair of a graph no closer than
        ``config.contact_floor``; a term whose range is None is left out.

        The clash term sums over a Verlet list (:func:`clash_candidates`), built from the first ``x`` and rebuilt
        from the current one once twice the largest displacement of a node since it was built reaches
        :data:`GUIDE_MARGIN`: a pair outside it is then farther than the floor, so its force is zero and the sum is
        that over all non-local pairs.

        Args:
            x: (N, 3) [Å] the denoised frame x̂₁ (the batch's graphs side by side).
            bonds: (2, B) long, both directions of every bond.
            batch: (N,) long graph id of each node (pairs of different graphs are never restrained).
        """
        lo_hi, floor = self.config.bond_range, self.config.contact_floor
        n = x.shape[0]
        pairs, ref = None, None
        for _ in range(GUIDE_ITERATIONS if n else 0):
            push = torch.zeros_like(x)
            if lo_hi is not None and bonds.numel():
                d = x[bonds[0]] - x[bonds[1]]
                r = d.norm(dim=1, keepdim=True).clamp_min(1e-6)
                f = torch.relu(r - lo_hi[1]) - torch.relu(lo_hi[0] - r)  # > 0: too long, pull together
                push = push + scatter_sum(f * d / r, bonds[0], n)
            if floor is not None:
                if pairs is None or 2.0 * _max_shift(x, ref) >= GUIDE_MARGIN:
                    pairs, ref = clash_candidates(x, floor, batch, bonds), x.detach()
                d = x[pairs[0]] - x[pairs[1]]
                r = d.norm(dim=1, keepdim=True).clamp_min(1e-6)
                push = push - scatter_sum(torch.relu(floor - r) * d / r, pairs[0], n)
            x = x - GUIDE_RATE * push
        return x
