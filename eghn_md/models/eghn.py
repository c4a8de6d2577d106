"""EGHN: EMMP → E-Pool → high-level message passing → E-UpPool, in two variants that share every block.

``eghn`` (:data:`EQUATIONS`) follows eqs. 1–13 of the paper; ``eghn-published`` (:data:`PUBLISHED`) reproduces the
authors' released code (``paper/IMPLEMENTATION-NOTES.md``). They differ only through :class:`EGHNOptions`:

================  ==========================================  =============================================
option            eghn (equations)                            eghn-published
================  ==========================================  =============================================
low / high        EMMP layers (Gram invariants)               embedding + EGNN layers (no h residual, mean
                                                              clamped at ±100 Å whatever the scales)
pool_edges        global edges (A_low of eq. 5)               local (bond) edges with their edge scalars
pool vectors      Z = [x − x̄, v]                              Z = [x − x̄, nf = x_low − x, v] centred once,
                                                              cross-block inv., two-layer coefficient head
pooled vectors    EMMP output (eq. 7)                         input positions / velocities
cluster graph     complete, no self loops, [rownorm A, log1p A]  embedding; complete with self loops, raw
                                                              (Sᵀ A_global S)_pq
decoder           one step, V = [Z_low−Z̄, Z_agg−Z̄, Z_low−Z_0],  stacked scalar nets (each step gets the previous
                                                              step's scalars), V = [SΔX, x−SX, v−SV, nf],
                                                              whole c×c Gram L2-normalised
output            x + disp_scale · decoder vector             S(X + ΔX) + decoder vector (+ decoder scalars)
regulariser       ‖rownorm(Sᵀ A_global S) − I‖_F²             ‖l2rows(Sᵀ A_local S) − I‖_F (rows / L2 norm)
================  ==========================================  =============================================

Where ``eghn`` departs from eqs. 1–13 (the README has the same table with reasons; ``tests/test_models_reference.py``
restates exactly this maths densely and compares output for output):

=====================  =============================  ===========================================================
eq.                    paper                          ``eghn``
=====================  =============================  ===========================================================
3, 4 aggregation       Σ over neighbours              mean over neighbours (vectors and scalars)
3 scalar update        h' = MLP(h, ΣH)                h' = h + MLP(h, mean H) (residual)
1 invariants           Ẑ_ijᵀẐ_ij                      cross block Z_iᵀZ_j, per-node blocks Z_iᵀZ_i and the
                                                      relative Gram (Z_i − Z_j)ᵀ(Z_i − Z_j), each soft-normalised
                                                      g / √(1 + ‖g‖²)
1 scaling              raw                            cross and per-node blocks from channels divided by their
                                                      per-graph RMS norm; relative Gram from unscaled channels
2 message              Ẑ_ij H_ij                      [Z_i − Z_j, Z_j − Z̄] C(H_ij), C a linear head
1 edge input           —                              dataset edge scalars e_ij appended
9 cluster graph        A_high = SᵀAS                  complete on the K clusters, no self loops, edge scalars
                                                      [rownorm(A_high), log1p(A_high)]
12, 13 decoder         Ẑ = [Z_low − Z̄, Z_agg − Z̄]      third block Z_low − Z_0, channels RMS-scaled,
                                                      soft-normalised Gram
13 output              Z_out = Ẑ h_out (all channels)  one vector: x' = x + disp_scale · Ẑ c (residual)
loss                   Σ_i ‖·‖² + λ Σ ‖SᵀAS − I‖²      per-coordinate MSE + λ · mean_g ‖rownorm(SᵀA_global S) − I‖²
                                                      (squared; rows divided by their sums)
=====================  =============================  ===========================================================

λ: the paper's loss sums over N nodes × 3 coordinates where ours averages, so its λ_paper is λ_paper / (3N) here.
``eghn-published`` follows the authors' code (mean MSE + λ · ‖l2rows(SᵀA_local S) − I‖_F, unsquared), so its λ is
theirs (2 on AdK); the same number weighs different quantities in the two variants (squared vs not, sum- vs
L2-normalised rows) and does not transfer between them.

Internally positions are in units of ``length_scale`` and velocities of ``vel_scale``. ``eghn-published`` is the
authors' model exactly when all three scales are 1 (their raw Å): weights trained with their code load through
:func:`eghn_md.models.convert.from_authors_state_dict`, and ``tests/test_models_convert.py`` checks every output
against their code's to ≤ 1e-9 (float64). At the paper's AdK size it has their 1,904,849 parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import Tensor, nn

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import UsageError
from eghn_md.models.capabilities import ModelCapabilities
from eghn_md.models.config import ModelConfig
from eghn_md.models.inputs import bond_edge_scalars, with_input_features
from eghn_md.models.output import ModelOutput
from eghn_md.nn.edges import Edges, gather_rows, graph_gather, graph_mean
from eghn_md.nn.egnn import EGNNLayer
from eghn_md.nn.emmp import EMMP
from eghn_md.nn.invariants import centre, channel_scale
from eghn_md.nn.pool import (
    AssignHead,
    cluster_adjacency,
    complete_graph,
    pool_mean,
    pooling_regulariser,
    published_regulariser,
    row_normalise,
    unpool,
)
from eghn_md.nn.refine import BondRefiner
from eghn_md.nn.smoothing import smooth_along_bonds
from eghn_md.nn.uppool import ScalarNetDecoder, VectorDecoder

__all__ = ["EGHN", "PublishedEGHN", "EGHNOptions", "EQUATIONS", "PUBLISHED"]


@dataclass(frozen=True)
class EGHNOptions:
    """The switches between the two EGHN variants (see the module docstring)."""

    published: bool = False


EQUATIONS = EGHNOptions(published=False)
PUBLISHED = EGHNOptions(published=True)


class EGHN(nn.Module):
    """Equivariant graph hierarchy network with one pooling level (N nodes → K clusters per graph): ``eghn``, the
    equations variant (:class:`PublishedEGHN` is the authors' code)."""

    capabilities: ClassVar[ModelCapabilities] = ModelCapabilities(equivariant=True, pools=True, refines=True,
                                                                   smooths=True, extra_vectors=True)
    options: ClassVar[EGHNOptions] = EQUATIONS

    @classmethod
    def check_config(cls, config: ModelConfig) -> None:
        """``eghn`` needs two clusters or more (its cluster graph is complete without self loops)."""
        if not cls.options.published and config.n_clusters < 2:
            raise UsageError(
                f"eghn needs n_clusters >= 2, got {config.n_clusters}: its cluster graph is complete without self "
                "loops, so one cluster has no high-level edges (eghn-published, whose cluster graph keeps self loops, "
                "accepts 1)"
            )

    def __init__(self, config: ModelConfig, *, extra_vectors: int = 0):
        """``extra_vectors``: free vector channels read besides the velocity (``eghn`` only, which declares
        ``extra_vectors``; :mod:`eghn_md.models.capabilities`): Z = [x − x̄, v, extra] then has 2 + ``extra_vectors``
        channels through the EMMP layers, pooling and the decoder (3 (2 + e) vectors)."""
        super().__init__()
        c = config
        self.config = c
        self.n_clusters = c.n_clusters
        if extra_vectors < 0 or (extra_vectors and not self.capabilities.extra_vectors):
            raise ValueError(f"{type(self).__name__} reads no extra vector channels, got extra_vectors="
                             f"{extra_vectors!r}")
        self.extra_vectors = int(extra_vectors)
        #: per channel of Z, whether it translates (positions) or is a free vector
        self.translating = (True, False) + (False,) * self.extra_vectors
        H = c.hidden
        pub = self.options.published
        self.embed = nn.Linear(c.node_in, H)
        coord_scale = c.disp_scale / c.length_scale
        self.refine = None  # bond-graph refinement: the equations variant only
        if pub:
            self._build_published(c, coord_scale)
        else:
            tr, m = self.translating, len(self.translating)
            # fixed scales (training statistics) of [x − x̄, v, extra] in internal units, or None: per-graph RMS
            # (v0.1); the free vectors arrive divided by their own scales
            vs = (c.radius_scale / c.length_scale,) + (1.0,) * (m - 1) if c.vector_norm == "fixed" else None
            self.low = nn.ModuleList(
                EMMP(hidden=H, n_vectors=m, translating=tr, edge_in=c.edge_in, vector_scale=vs)
                for _ in range(c.n_layers)
            )
            self.pool_net = nn.ModuleList(
                EMMP(hidden=H, n_vectors=m, translating=tr, edge_in=c.edge_in, vector_scale=vs)
                for _ in range(c.n_pool_layers)
            )
            self.high = nn.ModuleList(
                EMMP(hidden=H, n_vectors=m, translating=tr, edge_in=2, vector_scale=vs) for _ in range(c.n_layers)
            )
            # the decoder's vectors stay divided by their per-graph RMS in both modes: its basis is bounded, so a
            # step grows at most linearly with the structure (fixed scales there made it grow geometrically); the
            # absolute geometry reaches the decoder through the scalars of the layers above
            self.assign = AssignHead(H, c.n_clusters, init_scale=10.0)
            self.decoder = VectorDecoder(n_vectors=3 * m, scalar_in=2 * H, hidden=H, n_stack=1,
                                         mlp_layers=c.n_decoder_layers, gram_norm="soft")
            self.refine = BondRefiner(hidden=H, n_layers=c.refine_layers) if c.refine_layers else None

    def _build_published(self, c: ModelConfig, coord_scale: float) -> None:
        """The authors' modules, one for one (see :mod:`eghn_md.models.convert` for the name mapping)."""
        H = c.hidden
        # the authors clamp the mean coordinate message at ±100 Å; Δx [Å] = disp_scale · (message in our units)
        clamp = 100.0 / c.disp_scale
        mk_egnn = lambda edge_in: EGNNLayer(  # noqa: E731
            hidden=H, edge_in=edge_in, velocity=True, residual=False, coord_scale=coord_scale, clamp=clamp,
            coord_bias=True,
        )
        self.low_embed = nn.Linear(H, H)  # their EGNN's own embedding after the model's (two linear maps, kept)
        self.low = nn.ModuleList(mk_egnn(c.edge_in) for _ in range(c.n_layers))
        self.high_embed = nn.Linear(H, H)
        self.high = nn.ModuleList(mk_egnn(1) for _ in range(c.n_layers))
        # Z = [x − x̄, nf, v] is centred once on input; the published layers do not re-centre
        self.pool_net = nn.ModuleList(
            EMMP(hidden=H, n_vectors=3, translating=(False, False, False), edge_in=c.edge_in, invariants="cross",
                 h_agg="sum", coef_layers=2)
            for _ in range(c.n_pool_layers)
        )
        self.assign = AssignHead(H, c.n_clusters, width=8, act="tanh")
        self.decoder = ScalarNetDecoder(n_vectors=4, scalar_in=2 * H, hidden=H, n_layers=c.n_decoder_layers)
        # Two heads the authors' model holds reach no loss term: the last pooling layer's vector head (only the
        # scalars of the score network are read) and the last decoder step's scalar head (it yields the returned
        # node scalars). They are kept, so converted weights load one for one and the parameter count is the
        # authors', and frozen, so optimisers and DistributedDataParallel skip them.
        for p in [*self.pool_net[-1].coef.parameters(), *self.decoder.layers[-1].out.parameters()]:
            p.requires_grad_(False)

    # ------------------------------------------------------------------ shared steps
    def _cluster_graph(self, A: Tensor, G: int):
        """Complete graph on each graph's K clusters and its invariant edge features from A = Sᵀ A S (G, K, K)."""
        K = self.n_clusters
        pub = self.options.published
        edges = complete_graph(G, K, self_loops=pub, device=A.device)
        a = A.reshape(-1)
        flat = edges[0] * K + edges[1] % K  # (g·K + p)·K + q: index of A[g, p, q]
        if pub:
            feat = gather_rows(a, flat).unsqueeze(1)
        else:
            feat = gather_rows(torch.stack([row_normalise(A).reshape(-1), torch.log1p(a)], dim=1), flat)
        batch_high = torch.arange(G, device=A.device).repeat_interleave(K)
        return Edges(edges, G * K), feat, batch_high

    def forward(self, batch: GraphBatch, *, extra: Optional[Tensor] = None) -> ModelOutput:
        """The prediction for ``batch``; ``extra`` (N, 3, ``extra_vectors``) dimensionless free vectors (each
        divided by its scale), required exactly when the model was built with ``extra_vectors`` > 0."""
        c = self.config
        self._check_extra(extra, batch.num_nodes)
        batch = with_input_features(batch, c)
        G = batch.num_graphs
        b = batch.batch
        x = batch.pos / c.length_scale
        xbar = graph_mean(x, b, G)  # (G, 3)
        xbar_n = graph_gather(xbar, b, G)
        xc = x - xbar_n
        v = batch.vel / c.vel_scale
        h = self.embed(batch.h)
        edges = Edges(batch.edge_index, batch.num_nodes)
        ea = edges.attr(batch.edge_attr) if c.edge_in else None
        scalars = h_low = None
        if self.options.published:
            out, S, reg, scalars = self._forward_published(batch, edges, xc, v, h, ea, G)
        else:
            out, S, reg, h_low = self._forward_equations(batch, edges, xc, v, h, ea, G, extra)
        pos = (xbar_n + out) * c.length_scale
        pos = batch.pos + smooth_along_bonds(pos - batch.pos, batch.bonds, c.output_smoothing)
        if self.refine is not None:
            noise = None if batch.refine_noise is None else batch.refine_noise / c.length_scale
            bonds = Edges(batch.bonds, batch.num_nodes)
            pos = self.refine(pos / c.length_scale, h_low, bonds, noise) * c.length_scale
        return ModelOutput(pos=pos, reg=reg, assign=S, scalars=scalars)

    def _check_extra(self, extra: Optional[Tensor], n: int) -> None:
        """``extra`` must be (n, 3, ``extra_vectors``), or None for a model built without extra channels."""
        want = (n, 3, self.extra_vectors) if self.extra_vectors else None
        got = None if extra is None else tuple(extra.shape)
        if got != want:
            raise ValueError(f"{type(self).__name__} built with extra_vectors={self.extra_vectors} needs extra "
                             f"of shape {want}, got {got}")

    # ------------------------------------------------------------------ eghn (equations)
    def _forward_equations(self, batch, edges, xc, v, h, ea, G, extra=None):
        c = self.config
        b = batch.batch
        Z0 = torch.stack([xc, v], dim=2)  # (N, 3, 2)
        if extra is not None:
            Z0 = torch.cat([Z0, extra.to(Z0.dtype)], dim=2)  # (N, 3, m)
        m, tr = Z0.shape[2], self.translating
        Z = Z0
        for layer in self.low:
            Z, h = layer(Z, h, edges, ea, b, G)
        Zl, hl = Z, h
        for layer in self.pool_net:  # eq. 5
            Z, h = layer(Z, h, edges, ea, b, G)
        S = self.assign(h)  # eq. 6
        Zh = pool_mean(S, Z, b, G).reshape(G * self.n_clusters, 3, m)  # eq. 7
        hh = pool_mean(S, hl, b, G).reshape(G * self.n_clusters, -1)  # eq. 8
        A = cluster_adjacency(S, edges, b, G)  # eq. 9
        high, feat, bh = self._cluster_graph(A, G)
        for layer in self.high:
            Zh, hh = layer(Zh, hh, high, feat.to(hh.dtype), bh, G)
        K = self.n_clusters
        Zagg = unpool(S, Zh.reshape(G, K, 3, m), b)  # eq. 10
        hagg = unpool(S, hh.reshape(G, K, -1), b)  # eq. 11
        V = torch.cat([centre(Zl, b, G, tr), centre(Zagg, b, G, tr), Zl - Z0], dim=2)  # (N, 3, 3m)
        V = V / channel_scale(V, b, G)
        d = self.decoder(V, torch.cat([hl, hagg.to(hl.dtype)], dim=1))  # eqs. 12-13
        out = xc + (c.disp_scale / c.length_scale) * d
        reg = pooling_regulariser(A, squared=True)
        return out, S, reg, hl

    # ------------------------------------------------------------------ eghn-published
    def _forward_published(self, batch, edges, xc, v, h, ea, G):
        """Positions, S, regulariser and decoder scalars of the authors' model (module docstring, right column)."""
        b = batch.batch
        K = self.n_clusters
        x, h = xc, self.low_embed(h)
        for layer in self.low:
            x, h = layer(x, v, h, edges, ea)
        nf = x - xc
        bonds = Edges(batch.bonds, batch.num_nodes)
        bond_attr = bonds.attr(bond_edge_scalars(batch)) if self.config.edge_in else None
        Z, hp = torch.stack([xc, nf, v], dim=2), h
        for layer in self.pool_net:
            Z, hp = layer(Z, hp, bonds, bond_attr, b, G)
        S = self.assign(hp)
        X = pool_mean(S, xc, b, G).reshape(G * K, 3)
        Vh = pool_mean(S, v, b, G).reshape(G * K, 3)
        Hh = self.high_embed(pool_mean(S, h, b, G).reshape(G * K, -1))
        A = cluster_adjacency(S, edges, b, G)
        high, feat, _ = self._cluster_graph(A, G)
        Xh = X
        for layer in self.high:
            Xh, Hh = layer(Xh, Vh, Hh, high, feat.to(Hh.dtype))
        dX = unpool(S, (Xh - X).reshape(G, K, 3), b)
        SX = unpool(S, X.reshape(G, K, 3), b)
        SV = unpool(S, Vh.reshape(G, K, 3), b)
        SH = unpool(S, Hh.reshape(G, K, -1), b)
        V = torch.stack([dX, xc - SX, v - SV, nf], dim=2)
        d, scalars = self.decoder(V, torch.cat([h, SH.to(h.dtype)], dim=1))
        out = SX + dX + d
        reg = published_regulariser(cluster_adjacency(S, bonds, b, G))
        return out, S, reg, scalars


class PublishedEGHN(EGHN):
    """``eghn-published``: the authors' released EGHN (module docstring, right column), sharing every block with
    :class:`EGHN`; it has no bond-graph refinement."""

    capabilities: ClassVar[ModelCapabilities] = ModelCapabilities(equivariant=True, pools=True, smooths=True)
    options: ClassVar[EGHNOptions] = PUBLISHED
