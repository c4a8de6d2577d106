"""GNN baseline: a plain message-passing network on [x − x̄, v, h] node features (not rotation-equivariant).

Translation-equivariant only (positions are centred per graph); it predicts the displacement as 3 raw outputs.
"""

from __future__ import annotations

from torch import nn

import torch

from eghn_md.data.batch import GraphBatch
from eghn_md.models.config import ModelConfig
from eghn_md.models.output import ModelOutput
from eghn_md.nn.invariants import graph_mean
from eghn_md.nn.mlp import MLP, PairLinear, silu_linear
from eghn_md.nn.scatter import scatter_sum
from torch.nn import functional as F

__all__ = ["GNN"]


class _MPNNLayer(nn.Module):
    def __init__(self, hidden: int, edge_in: int):
        super().__init__()
        self.edge_in = edge_in
        self.first = PairLinear(hidden, edge_in, hidden)
        self.second = nn.Linear(hidden, hidden)
        self.node = MLP(2 * hidden, hidden, hidden, n_layers=2)

    def forward(self, h, edge_index, edge_attr):
        msg = F.silu(silu_linear(self.first(h, edge_attr, edge_index), self.second))
        agg = scatter_sum(msg, edge_index[0], h.shape[0])
        return h + self.node(torch.cat([h, agg], dim=1))


class GNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Linear(c.node_in + 6, c.hidden)
        self.layers = nn.ModuleList(_MPNNLayer(c.hidden, c.edge_in) for _ in range(c.n_layers))
        self.head = MLP(c.hidden, c.hidden, 3, n_layers=2)

    def forward(self, batch: GraphBatch) -> ModelOutput:
        c = self.config
        x = batch.pos / c.length_scale
        xc = x - graph_mean(x, batch.batch, batch.num_graphs).index_select(0, batch.batch)
        h = self.embed(torch.cat([xc, batch.vel / c.vel_scale, batch.h], dim=1))
        ea = batch.edge_attr if c.edge_in else None
        for layer in self.layers:
            h = layer(h, batch.edge_index, ea)
        pos = batch.pos + c.disp_scale * self.head(h).to(batch.pos.dtype)
        return ModelOutput(pos=pos, reg=pos.new_zeros(()), assign=None)
