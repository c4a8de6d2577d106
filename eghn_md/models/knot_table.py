"""What the bias's tabulated potentials share (:mod:`eghn_md.models.pair_bias` on distances,
:mod:`eghn_md.models.collective_bias` on ξ): finding a value's segment among evenly spaced knots, and smoothing a
histogram on the knots into a density."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["segment", "smoothed_density"]


def segment(s: Tensor, knots: int) -> tuple[Tensor, Tensor]:
    """Per value ``s`` (...), already in units of the knot spacing from the first knot: the index (...) long of its
    segment [k, k + 1] (the first / last beyond the ``knots`` knots) and its position in it (outside [0, 1] beyond
    the knots)."""
    k = s.floor().clamp(0, knots - 2)
    return k.long(), s - k


def smoothed_density(counts: Tensor, positions: Tensor, width: float) -> Tensor:
    """Histograms ``counts`` (R, K) on knots at ``positions`` (K,) smoothed by a Gaussian of ``width`` (the unit of
    ``positions``), each row normalised to sum to 1 (float64 in, float64 out)."""
    kernel = torch.exp(-0.5 * ((positions[:, None] - positions[None, :]) / width) ** 2)
    smooth = counts @ kernel
    return smooth / smooth.sum(dim=1, keepdim=True).clamp_min(1e-300)
