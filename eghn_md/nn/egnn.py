"""E(n)-equivariant graph convolution with velocity (Satorras et al. 2021, "EGNN_vel").

::

    m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖², e_ij)
    x_i' = x_i + s · (φ_v(h_i) v_i + mean_j (x_i − x_j) φ_x(m_ij))     (mean optionally clamped, as published)
    h_i' = [h_i +] φ_h(h_i, Σ_j m_ij)

``s`` (``coord_scale``) converts the network's O(1) output to the coordinate units (``disp_scale / length_scale``).
The h_i, h_j parts of φ_e's first layer are computed per node (:class:`~eghn_md.nn.mlp.PairLinear`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from eghn_md.nn.edges import Edges
from eghn_md.nn.mlp import MLP, EdgeMLP

__all__ = ["EGNNLayer"]


class EGNNLayer(nn.Module):
    """One EGNN layer (``update_h=False``: the last layer of a stack whose scalars are not read, no φ_h).

    ``clamp`` bounds the aggregated coordinate message element-wise in the network's units (before ``coord_scale``);
    ``coord_bias`` gives φ_x's output layer a bias (as in the published EGHN code).

    Shapes: x (N, 3), v (N, 3) or None, h (N, H), edges (:class:`~eghn_md.nn.edges.Edges`), edge_attr (E, D) or
    None -> x' (N, 3), h' (N, H).
    """

    def __init__(
        self,
        *,
        hidden: int,
        edge_in: int = 0,
        velocity: bool = True,
        residual: bool = True,
        coord_scale: float = 1.0,
        clamp: Optional[float] = None,
        update_h: bool = True,
        coord_bias: bool = False,
    ):
        super().__init__()
        self.edge_in = edge_in
        self.residual = residual
        self.coord_scale = float(coord_scale)
        self.clamp = clamp
        self.edge_mlp = EdgeMLP(hidden, 1 + edge_in, hidden)
        self.coord1 = nn.Linear(hidden, hidden)
        self.coord2 = nn.Linear(hidden, 1, bias=coord_bias)  # the published code's φ_x has a bias
        nn.init.xavier_uniform_(self.coord2.weight, gain=0.001)
        self.vel = MLP(hidden, hidden, 1, n_layers=2) if velocity else None
        self.node = MLP(2 * hidden, hidden, hidden, n_layers=2) if update_h else None

    def forward(self, x: Tensor, v: Optional[Tensor], h: Tensor, edges: Edges, edge_attr: Optional[Tensor]):
        rel = edges.gather_i(x) - edges.gather_j(x)  # (E, 3)
        d2 = (rel * rel).sum(1, keepdim=True)
        feat = torch.cat([d2, edge_attr.to(d2.dtype)], dim=1) if self.edge_in else d2
        agg_h, phi = self.edge_mlp.chain(h, feat.to(h.dtype), edges, agg="sum" if self.node is not None else None,
                                         head=self.coord1, tail=self.coord2)  # phi: (E, 1)
        agg = edges.mean_i(rel * phi.to(rel.dtype))
        if self.clamp is not None:
            agg = agg.clamp(-self.clamp, self.clamp)
        if self.vel is not None and v is not None:
            agg = agg + self.vel(h).to(v.dtype) * v
        x = x + self.coord_scale * agg
        if self.node is None:  # last layer of a stack whose h is not used
            return x, h
        out = self.node(torch.cat([h, agg_h.to(h.dtype)], dim=1))
        h = h + out if self.residual else out
        return x, h
