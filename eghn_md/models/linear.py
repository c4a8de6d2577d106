"""Linear (constant-velocity) baseline: ``x(t+ΔT) = x + θ · disp_scale · v / vel_scale`` with one learned θ."""

from __future__ import annotations

from typing import ClassVar, Iterable

import torch
from torch import nn

from eghn_md.data.batch import GraphBatch
from eghn_md.models.capabilities import ModelCapabilities
from eghn_md.models.config import ModelConfig
from eghn_md.models.output import ModelOutput

__all__ = ["LinearModel"]


class LinearModel(nn.Module):
    """Constant velocity with one learned factor θ (fitted by least squares in the benchmarks)."""

    capabilities: ClassVar[ModelCapabilities] = ModelCapabilities(equivariant=True, reads=("pos", "vel"),
                                                                   closed_form=True)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.theta = nn.Parameter(torch.ones(()))

    def forward(self, batch: GraphBatch) -> ModelOutput:
        c = self.config
        pos = batch.pos + (self.theta * (c.disp_scale / c.vel_scale)).to(batch.pos.dtype) * batch.vel
        return ModelOutput(pos=pos, reg=pos.new_zeros(()), assign=None)

    def fit_closed_form(self, samples: Iterable[GraphBatch]) -> float:
        """Set θ to its least-squares value over ``samples`` (each with ``pos``, ``target`` (N, 3) [Å] and ``vel``
        (N, 3)) and return it (the ``closed_form`` fit the benchmarks use instead of training)."""
        num = den = 0.0
        for g in samples:
            v = g.vel.double()
            num += float(((g.target.double() - g.pos.double()) * v).sum())
            den += float((v * v).sum())
        c = self.config
        theta = (num / max(den, 1e-300)) / (c.disp_scale / c.vel_scale)
        with torch.no_grad():
            self.theta.fill_(theta)
        return theta
