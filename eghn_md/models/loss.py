"""Training objective: MSE of positions + λ · pooling regulariser."""

from __future__ import annotations

import torch
from torch import Tensor

from eghn_md.models.output import ModelOutput

__all__ = ["compute_loss"]


def _full(t: Tensor) -> Tensor:
    """Half-precision (autocast) values promoted to float32; float32/float64 kept."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def compute_loss(out: ModelOutput, target: Tensor, *, reg_weight: float):
    """Return ``(total, mse, reg)``.

    ``mse`` is the mean over nodes *and* the 3 coordinates [Å²] (the paper's per-coordinate metric; the mean squared
    displacement per node is 3× it). ``target``: (N, 3) [Å] absolute positions at t + ΔT.
    """
    if out.pos.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(out.pos.shape)} != target shape {tuple(target.shape)}")
    diff = _full(out.pos) - _full(target)
    mse = (diff * diff).mean()
    reg = _full(out.reg)
    return mse + reg_weight * reg, mse, reg
