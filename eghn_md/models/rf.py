"""Radial-field baseline (Köhler et al. 2019, velocity form as in Satorras et al.'s comparison).

``x_i' = x_i + s (φ_v(|v_i|) v_i + mean_j (x_i − x_j) φ(‖x_i − x_j‖², e_ij))``, repeated ``n_layers`` times; no
node features (norms only).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from eghn_md.data.batch import GraphBatch
from eghn_md.models.capabilities import ModelCapabilities
from eghn_md.models.config import ModelConfig
from eghn_md.models.inputs import with_input_features
from eghn_md.models.output import ModelOutput
from eghn_md.nn.edges import Edges
from eghn_md.nn.mlp import MLP

__all__ = ["RF"]


class _RFLayer(nn.Module):
    def __init__(self, hidden: int, edge_in: int, coord_scale: float):
        super().__init__()
        self.edge_in = edge_in
        self.coord_scale = coord_scale
        self.phi = MLP(1 + edge_in, hidden, 1, n_layers=2, out_init_scale=0.01)
        self.phi_v = MLP(1, hidden, 1, n_layers=2)

    def forward(self, x, v, edges, edge_attr):
        rel = edges.gather_i(x) - edges.gather_j(x)
        d2 = (rel * rel).sum(1, keepdim=True)
        feat = torch.cat([d2, edge_attr.to(d2.dtype)], dim=1) if self.edge_in else d2
        agg = edges.mean_i(rel * torch.tanh(self.phi(feat)).to(rel.dtype))
        vn = v.norm(dim=1, keepdim=True)
        return x + self.coord_scale * (agg + self.phi_v(vn).to(v.dtype) * v)


class RF(nn.Module):
    """Radial-field layers: positions move along relative vectors and velocities; no node scalars are read."""

    capabilities: ClassVar[ModelCapabilities] = ModelCapabilities(
        equivariant=True, reads=("pos", "vel", "edge_index", "edge_attr"))

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.config = c
        self.layers = nn.ModuleList(
            _RFLayer(c.hidden, c.edge_in, c.disp_scale / c.length_scale) for _ in range(c.n_layers)
        )

    def forward(self, batch: GraphBatch) -> ModelOutput:
        c = self.config
        batch = with_input_features(batch, c)
        x = batch.pos / c.length_scale
        x0 = x
        v = batch.vel / c.vel_scale
        edges = Edges(batch.edge_index, batch.num_nodes)
        ea = edges.attr(batch.edge_attr) if c.edge_in else None
        for layer in self.layers:
            x = layer(x, v, edges, ea)
        pos = batch.pos + (x - x0) * c.length_scale
        return ModelOutput(pos=pos, reg=pos.new_zeros(()), assign=None)
