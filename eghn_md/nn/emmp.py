"""Equivariant Matrix Message Passing (EMMP, eqs. 1–4 of the EGHN paper).

Every node carries vectors ``Z_i`` (3, m) and scalars ``h_i`` (H)::

    H_ij = MLP(inv(Ẑ_ij), h_i, h_j, e_ij)          (1)   Ẑ_ij = [Z_i − Z̄, Z_j − Z̄]
    M_ij = Ẑ_ij C(H_ij)                            (2)   C: linear head, (2m × m) coefficients
    h_i' = h_i + MLP(h_i, mean_j H_ij)             (3)
    Z_i' = Z_i + mean_j M_ij                       (4)

``Z̄`` is the per-graph mean for translating channels (positions) and zero for the others.

Two invariant/message forms are provided (the only difference between ``eghn`` and ``eghn-published``):

* ``invariants="gram"`` (equations): the Gram matrix ``Ẑ_ijᵀẐ_ij``. Its diagonal blocks ``Z_iᵀZ_i`` / ``Z_jᵀZ_j``
  are per-node terms (computed per node, gathered by the first layer); the cross block ``Z_iᵀZ_j`` is per edge. To
  keep them O(1) on real proteins each channel is divided by a fixed scale from the training statistics (so the
  layer sees absolute geometry: a structure that swells gets larger invariants), or, for v0.1 checkpoints, by its
  per-graph RMS norm (an invariant, but blind to the structure's overall size). The relative
  Gram ``(Z_i − Z_j)ᵀ(Z_i − Z_j)`` (a function of ``Ẑ_ijᵀẐ_ij``) is added explicitly so local distances are not a
  difference of large numbers. The message spans ``[Z_i − Z_j, Z_j − Z̄]`` (the same span as ``Ẑ_ij``).
* ``invariants="cross"`` (published code): only the cross block ``Z_jᵀZ_i``, L2-normalised, and ``M_ij = (Z_j − Z̄)
  C_ij``; scalars aggregate with a sum. The published code computes ``C_ij`` with a two-layer head
  (``coef_layers=2``: Linear–SiLU–Linear on the edge message) and does not re-centre between layers (pass
  ``translating`` all False with already centred positions).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from eghn_md.nn.edges import Edges
from eghn_md.nn.invariants import centre, channel_scale, gram_features, soft_normalise
from eghn_md.nn.mlp import MLP, EdgeMLP

__all__ = ["EMMP"]


class EMMP(nn.Module):
    """One EMMP layer.

    Args:
        hidden: width H of scalars and edge messages.
        n_vectors: m, vector channels per node (kept).
        translating: per channel, whether it is a position (centred per graph) or a free vector.
        edge_in: D, invariant edge scalars.
        invariants: ``"gram"`` (equations) or ``"cross"`` (published).
        h_agg: ``"mean"`` or ``"sum"`` aggregation of scalar messages.
        update_vectors: False for a last layer whose vectors are not read (Z is returned unchanged).
        vector_scale: per channel, a fixed divisor of the vectors before their Gram invariants are taken (training
            statistics: the model then sees absolute geometry, e.g. a swelling structure); ``None`` divides every
            channel by its per-graph RMS instead (v0.1 checkpoints; blind to the structure's overall size).
        coef_layers: 1 (a linear head on the edge message, initialised small) or 2 (Linear–SiLU–Linear, default
            initialisation: the published code's ``out_vector_net``).

    Shapes:
        Z (N, 3, m), h (N, H), edges (:class:`~eghn_md.nn.edges.Edges`), edge_attr (E, D) in edge order or None,
        batch (N,) -> Z' (N, 3, m), h' (N, H).
    """

    def __init__(
        self,
        *,
        hidden: int,
        n_vectors: int,
        translating: Sequence[bool],
        edge_in: int = 0,
        invariants: str = "gram",
        h_agg: str = "mean",
        update_vectors: bool = True,
        vector_scale: Optional[Sequence[float]] = None,
        coef_layers: int = 1,
    ):
        super().__init__()
        if invariants not in ("gram", "cross"):
            raise ValueError(f"unknown invariants {invariants!r}; valid: gram, cross")
        if coef_layers not in (1, 2):
            raise ValueError(f"coef_layers must be 1 or 2, got {coef_layers!r}")
        if h_agg not in ("mean", "sum"):
            raise ValueError(f"unknown h_agg {h_agg!r}; valid: mean, sum")
        if len(translating) != n_vectors:
            raise ValueError(f"translating has {len(translating)} entries for {n_vectors} vector channels")
        m = n_vectors
        self.m = m
        self.translating = tuple(bool(t) for t in translating)
        self.invariants = invariants
        self.h_agg = h_agg
        self.edge_in = edge_in
        tri = m * (m + 1) // 2
        if invariants == "gram":
            node_dim, edge_dim, n_basis = hidden + tri, m * m + tri + edge_in, 2 * m
        else:
            node_dim, edge_dim, n_basis = hidden, m * m + edge_in, m
        self.n_basis = n_basis
        self.edge_mlp = EdgeMLP(node_dim, edge_dim, hidden)
        self.coef: Optional[nn.Module] = None
        if update_vectors and coef_layers == 2:
            self.coef = MLP(hidden, hidden, n_basis * m, n_layers=2)
        elif update_vectors:
            self.coef = nn.Linear(hidden, n_basis * m)
            with torch.no_grad():
                self.coef.weight.mul_(0.01)
                self.coef.bias.zero_()
        self.node = MLP(2 * hidden, hidden, hidden, n_layers=2)
        if vector_scale is not None and len(vector_scale) != m:
            raise ValueError(f"vector_scale has {len(vector_scale)} entries for {m} vector channels")
        scale = None if vector_scale is None else torch.tensor([float(x) for x in vector_scale],
                                                               dtype=torch.float64).view(1, 1, m)
        self.register_buffer("vector_scale", scale, persistent=False)
        mask = torch.tensor([float(t) for t in self.translating], dtype=torch.float64).view(1, 1, m)
        self.register_buffer("centre_mask", mask, persistent=False)

    def forward(
        self,
        Z: Tensor,
        h: Tensor,
        edges: Edges,
        edge_attr: Optional[Tensor],
        batch: Tensor,
        num_graphs: int,
    ):
        Zc = centre(Z, batch, num_graphs, self.translating, mask=self.centre_mask)
        m = self.m
        if self.invariants == "gram":
            scale = channel_scale(Zc, batch, num_graphs) if self.vector_scale is None else self.vector_scale
            Zn = Zc / scale.to(Zc.dtype)
            node_feat = torch.cat([h, soft_normalise(gram_features(Zn, symmetric=True)).to(h.dtype)], dim=1)
            both = torch.cat([Zc, Zn], dim=2)  # one gather per side for the raw and the scaled channels
            Gi, Gj = edges.gather_i(both), edges.gather_j(both)  # (E, 3, 2m)
            Zj = Gj[:, :, :m]
            rel = Gi[:, :, :m] - Zj
            inv = [soft_normalise(gram_features(Gi[:, :, m:], Gj[:, :, m:])),
                   soft_normalise(gram_features(rel, symmetric=True))]
            basis = torch.cat([rel, Zj], dim=2)  # (E, 3, 2m): span of Ẑ_ij
        else:
            Zj = edges.gather_j(Zc)
            node_feat = h
            inv = [F.normalize(gram_features(Zj, edges.gather_i(Zc)), dim=1)]
            basis = Zj
        if self.edge_in:
            inv.append(edge_attr.to(inv[0].dtype))
        edge_feat = torch.cat(inv, dim=1).to(h.dtype) if len(inv) > 1 else inv[0].to(h.dtype)
        if isinstance(self.coef, nn.Linear):
            head, tail = self.coef, None
        elif self.coef is not None:  # two-layer head (published)
            head, tail = self.coef.layers
        else:
            head = tail = None
        agg, coef = self.edge_mlp.chain(node_feat, edge_feat, edges, agg=self.h_agg, head=head, tail=tail)
        if coef is not None:
            M = torch.bmm(basis, coef.view(-1, self.n_basis, m).to(basis.dtype))  # (E, 3, m)
            Z = Z + edges.mean_i(M)
        h = h + self.node(torch.cat([h, agg.to(h.dtype)], dim=1))
        return Z, h
