"""GNN baseline: a plain message-passing network on [x − x̄, v, h] node features (not rotation-equivariant).

Translation-equivariant only (positions are centred per graph); it predicts the displacement as 3 raw outputs.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from eghn_md.data.batch import GraphBatch
from eghn_md.models.capabilities import ModelCapabilities
from eghn_md.models.config import ModelConfig
from eghn_md.models.inputs import with_input_features
from eghn_md.models.output import ModelOutput
from eghn_md.nn.edges import Edges, graph_gather, graph_mean
from eghn_md.nn.mlp import MLP, EdgeMLP

__all__ = ["GNN"]


class _MPNNLayer(nn.Module):
    def __init__(self, hidden: int, edge_in: int):
        super().__init__()
        self.edge_in = edge_in
        self.edge_mlp = EdgeMLP(hidden, edge_in, hidden)
        self.node = MLP(2 * hidden, hidden, hidden, n_layers=2)

    def forward(self, h, edges, edge_attr):
        msg = F.silu(self.edge_mlp(h, edge_attr, edges))
        agg = edges.sum_i(msg)
        return h + self.node(torch.cat([h, agg], dim=1))


class GNN(nn.Module):
    """Message passing on ``[x − x̄, v, h]``; the displacement is a 3-vector head (translation-equivariant only)."""

    capabilities: ClassVar[ModelCapabilities] = ModelCapabilities(
        equivariant=False, reads=("pos", "vel", "h", "edge_index", "edge_attr"))

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Linear(c.node_in + 6, c.hidden)
        self.layers = nn.ModuleList(_MPNNLayer(c.hidden, c.edge_in) for _ in range(c.n_layers))
        self.head = MLP(c.hidden, c.hidden, 3, n_layers=2)

    def forward(self, batch: GraphBatch) -> ModelOutput:
        c = self.config
        batch = with_input_features(batch, c)
        x = batch.pos / c.length_scale
        xc = x - graph_gather(graph_mean(x, batch.batch, batch.num_graphs), batch.batch, batch.num_graphs)
        h = self.embed(torch.cat([xc, batch.vel / c.vel_scale, batch.h], dim=1))
        edges = Edges(batch.edge_index, batch.num_nodes)
        ea = edges.attr(batch.edge_attr) if c.edge_in else None
        for layer in self.layers:
            h = layer(h, edges, ea)
        pos = batch.pos + c.disp_scale * self.head(h).to(batch.pos.dtype)
        return ModelOutput(pos=pos, reg=pos.new_zeros(()), assign=None)
