"""EGNN baseline (Satorras et al. 2021, with velocity): ``n_layers`` sparse EGNN layers, positions updated in place."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from eghn_md.data.batch import GraphBatch
from eghn_md.models.capabilities import ModelCapabilities
from eghn_md.models.config import ModelConfig
from eghn_md.models.inputs import with_input_features
from eghn_md.models.output import ModelOutput
from eghn_md.nn.edges import Edges, graph_gather, graph_mean
from eghn_md.nn.egnn import EGNNLayer
from eghn_md.nn.refine import BondRefiner
from eghn_md.nn.smoothing import smooth_along_bonds

__all__ = ["EGNN"]


class EGNN(nn.Module):
    """``n_layers`` EGNN layers with velocity on the data's edges; optional output filter and bond refinement."""

    capabilities: ClassVar[ModelCapabilities] = ModelCapabilities(equivariant=True, refines=True, smooths=True)

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Linear(c.node_in, c.hidden)
        self.layers = nn.ModuleList(
            EGNNLayer(
                hidden=c.hidden,
                edge_in=c.edge_in,
                velocity=True,
                residual=True,
                coord_scale=c.disp_scale / c.length_scale,
                update_h=k < c.n_layers - 1 or c.refine_layers > 0,  # the last layer's scalars are not read
            )
            for k in range(c.n_layers)
        )
        self.refine = BondRefiner(hidden=c.hidden, n_layers=c.refine_layers) if c.refine_layers else None

    def forward(self, batch: GraphBatch) -> ModelOutput:
        c = self.config
        batch = with_input_features(batch, c)
        x = batch.pos / c.length_scale
        xbar = graph_gather(graph_mean(x, batch.batch, batch.num_graphs), batch.batch, batch.num_graphs)
        x = x - xbar
        v = batch.vel / c.vel_scale
        h = self.embed(batch.h)
        edges = Edges(batch.edge_index, batch.num_nodes)
        ea = edges.attr(batch.edge_attr) if c.edge_in else None
        for layer in self.layers:
            x, h = layer(x, v, h, edges, ea)
        pos = (x + xbar) * c.length_scale
        pos = batch.pos + smooth_along_bonds(pos - batch.pos, batch.bonds, c.output_smoothing)
        if self.refine is not None:
            noise = None if batch.refine_noise is None else batch.refine_noise / c.length_scale
            pos = self.refine(pos / c.length_scale, h, Edges(batch.bonds, batch.num_nodes), noise) * c.length_scale
        return ModelOutput(pos=pos, reg=x.new_zeros(()), assign=None)
