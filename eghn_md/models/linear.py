"""Linear (constant-velocity) baseline: ``x(t+ΔT) = x + θ · disp_scale · v / vel_scale`` with one learned θ."""

from __future__ import annotations

import torch
from torch import nn

from eghn_md.data.batch import GraphBatch
from eghn_md.models.config import ModelConfig
from eghn_md.models.output import ModelOutput

__all__ = ["LinearModel"]


class LinearModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.theta = nn.Parameter(torch.ones(()))

    def forward(self, batch: GraphBatch) -> ModelOutput:
        c = self.config
        pos = batch.pos + (self.theta * (c.disp_scale / c.vel_scale)).to(batch.pos.dtype) * batch.vel
        return ModelOutput(pos=pos, reg=pos.new_zeros(()), assign=None)
