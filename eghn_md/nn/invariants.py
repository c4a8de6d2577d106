"""Per-graph centring and numerically tame invariants of vector channels.

Vector channels are stored as ``Z`` (N, 3, m). Only *translating* channels (positions) are centred; the others
(velocities, displacements) are free vectors. All per-graph reductions use ``batch`` (N,) and segment sums, so a graph's
result never depends on the other graphs in its batch.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from eghn_md.nn.edges import graph_gather, graph_mean

__all__ = ["centre", "graph_mean", "channel_scale", "gram_features", "soft_normalise", "tri_indices"]


def centre(
    Z: Tensor, batch: Tensor, num_graphs: int, translating: Sequence[bool], *, mask: Optional[Tensor] = None
) -> Tensor:
    """Subtract each graph's mean from the translating channels of ``Z`` (N, 3, m); others are returned as is.

    ``mask`` (1, 1, m): the 0/1 float tensor of ``translating`` if the caller holds one (a module buffer: no tensor
    built per call). Nothing is read back to the host.
    """
    if not any(translating):
        return Z
    mean = graph_gather(graph_mean(Z, batch, num_graphs), batch, num_graphs)  # (N, 3, m)
    if all(translating):
        return Z - mean
    if mask is None:
        mask = torch.tensor([float(t) for t in translating], device=Z.device)
    return Z - mean * mask.to(Z.dtype)


def channel_scale(Z: Tensor, batch: Tensor, num_graphs: int, eps: float = 1e-6) -> Tensor:
    """Per-graph RMS norm of every channel, gathered per node: (N, 3, m) -> (N, 1, m), invariant and > 0.

    Dividing a channel by it keeps the channel equivariant and makes its entries O(1) whatever the protein's size
    (centred coordinates reach ±50 Å on real proteins).
    """
    sq = (Z * Z).sum(1)  # (N, m)
    rms = (graph_mean(sq, batch, num_graphs) + eps).sqrt()  # (G, m)
    return graph_gather(rms, batch, num_graphs).unsqueeze(1)


def tri_indices(m: int, device=None):
    """Upper-triangle (incl. diagonal) indices of an m×m symmetric matrix."""
    return torch.triu_indices(m, m, device=device)


def gram_features(A: Tensor, B: Optional[Tensor] = None, *, symmetric: bool = False) -> Tensor:
    """Flattened ``Aᵀ B`` for stacks of 3×m matrices: (M, 3, a), (M, 3, b) -> (M, a·b) (upper triangle if symmetric).

    One batched matrix product (forward and backward are ``bmm``: on CPU ~3× cheaper than a broadcast
    multiply-and-sum over the 3 coordinates at these tiny sizes). The upper triangle is taken row by row in the
    order of :func:`tri_indices` as slices, not an ``index_select`` along the columns: under ``torch.compile`` on
    CPU the backward of the latter (an accumulating ``index_put`` into a column index) is miscompiled by inductor
    (heap corruption, torch 2.13).
    """
    g = torch.bmm(A.transpose(1, 2), A if B is None else B)  # (M, a, b)
    if symmetric:
        return torch.cat([g[:, r, r:] for r in range(g.shape[-1])], dim=1)
    return g.reshape(g.shape[0], -1)


def soft_normalise(g: Tensor) -> Tensor:
    """``g / sqrt(1 + ‖g‖²)`` row-wise: (M, F) -> (M, F), every row of norm < 1.

    Keeps small invariants as they are (unlike L2 normalisation, magnitude information survives) but bounds large
    ones, so an MLP of the result is bounded and a vector update ``V · coef(inv)`` grows at most linearly with the
    vectors. Without it, a node whose velocity doubles gets a 4× larger Gram entry and a super-linear response, and
    autoregressive rollouts explode within a few steps.
    """
    return g * torch.rsqrt(1.0 + (g * g).sum(dim=1, keepdim=True))
