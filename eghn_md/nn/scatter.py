"""Index-based reductions in plain torch (no torch_scatter dependency).

All functions reduce ``src`` rows into ``dim_size`` buckets given by ``index``; cost is linear in ``src.shape[0]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["scatter_sum", "scatter_mean", "segment_count"]


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum rows of ``src`` by ``index``.

    Shapes: ``src`` (M, *F), ``index`` (M,) long with values in [0, dim_size) → (dim_size, *F).
    """
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    idx = index.view((-1,) + (1,) * (src.dim() - 1)).expand_as(src)
    return out.scatter_add_(0, idx, src)


def segment_count(index: Tensor, dim_size: int, dtype: torch.dtype) -> Tensor:
    """Number of rows per bucket: (dim_size,) of ``dtype``."""
    out = torch.zeros(dim_size, dtype=dtype, device=index.device)
    return out.scatter_add_(0, index, torch.ones_like(index, dtype=dtype))


def scatter_mean(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Mean of rows of ``src`` by ``index`` (empty buckets give 0). Shapes as :func:`scatter_sum`."""
    total = scatter_sum(src, index, dim_size)
    count = segment_count(index, dim_size, src.dtype).clamp_min(1)
    return total / count.view((-1,) + (1,) * (src.dim() - 1))
