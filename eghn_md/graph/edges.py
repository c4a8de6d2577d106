"""Edge construction: cutoff (radius) graphs with a cell list, sequence edges, and edge-set union.

All functions return ``edge_index`` (2, E) long with both directions of every undirected edge, no self loops,
``edge_index[0]`` the receiver; output is sorted by (receiver, sender).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["radius_graph", "sequence_edges", "merge_edges"]

_DENSE_MAX = 2048  # below this many nodes per call a blocked cdist is cheaper than a cell list


def _sort_unique(ei: Tensor, n: int) -> Tensor:
    key = torch.unique(ei[0] * n + ei[1])
    return torch.stack([key // n, key % n])


def radius_graph(pos: Tensor, cutoff: float, batch: Optional[Tensor] = None, *, method: str = "auto") -> Tensor:
    """Pairs of nodes of the same graph closer than ``cutoff`` (strictly) [Å].

    A cell list (cells of edge ``cutoff``; each node looks at the 27 cells around its own) makes it
    O(N · neighbours) in time and memory. ``method``: ``"cells"``, ``"dense"`` (cdist, O(N²)) or ``"auto"`` (dense
    up to 2048 nodes). Shapes: pos (N, 3), batch (N,) or None -> (2, E).
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff!r}")
    if method not in ("auto", "cells", "dense"):
        raise ValueError(f"unknown method {method!r}; valid: auto, cells, dense")
    n = pos.shape[0]
    device = pos.device
    if n == 0:
        return torch.zeros((2, 0), dtype=torch.long, device=device)
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=device)
    p = pos.detach().double()
    if not bool(torch.isfinite(p).all()):
        raise ValueError("radius_graph: positions contain NaN or inf")
    if method == "dense" or (method == "auto" and n <= _DENSE_MAX):
        d = torch.cdist(p, p)
        adj = (d < cutoff) & (batch.view(-1, 1) == batch.view(1, -1))
        adj.fill_diagonal_(False)
        return adj.nonzero().t().contiguous()
    # integer cell coordinates, shifted by one so that neighbour offsets stay >= 0
    lo = p.min(0).values
    cell = torch.floor((p - lo) / cutoff).long() + 1  # (N, 3)
    dims = cell.max(0).values + 2
    key = ((batch * dims[0] + cell[:, 0]) * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
    sorted_key, order = torch.sort(key)
    c2 = cutoff * cutoff
    out = []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                nkey = key + (dx * dims[1] + dy) * dims[2] + dz
                start = torch.searchsorted(sorted_key, nkey, right=False)
                count = torch.searchsorted(sorted_key, nkey, right=True) - start
                total = int(count.sum())
                if total == 0:
                    continue
                i = torch.repeat_interleave(torch.arange(n, device=device), count)
                first = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
                j = order[torch.repeat_interleave(start, count) + torch.arange(total, device=device) - first]
                d = p[i] - p[j]
                keep = ((d * d).sum(1) < c2) & (i != j)
                out.append(torch.stack([i[keep], j[keep]]))
    if not out:
        return torch.zeros((2, 0), dtype=torch.long, device=device)
    return _sort_unique(torch.cat(out, dim=1), n)


def sequence_edges(ids: Tensor, k: int = 1) -> Tensor:
    """Edges between nodes ``i`` and ``i + d`` (1 <= d <= k) that carry the same id (chain or graph id).

    Pass ``batch`` for one chain per graph, or per-node chain ids (unique across graphs) for several chains.
    Shapes: ids (N,) -> (2, E).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = ids.shape[0]
    parts = []
    for d in range(1, k + 1):
        if d >= n:
            break
        a = torch.arange(n - d, device=ids.device)
        a = a[ids[:-d] == ids[d:]]
        parts += [torch.stack([a, a + d]), torch.stack([a + d, a])]
    if not parts:
        return torch.zeros((2, 0), dtype=torch.long, device=ids.device)
    return _sort_unique(torch.cat(parts, dim=1), n)


def merge_edges(a: Tensor, b: Tensor, num_nodes: Optional[int] = None) -> Tensor:
    """Union of two edge sets, deduplicated and sorted. Shapes: (2, Ea), (2, Eb) -> (2, E)."""
    ei = torch.cat([a.long(), b.long()], dim=1)
    if ei.shape[1] == 0:
        return ei
    n = int(ei.max()) + 1 if num_nodes is None else int(num_nodes)
    return _sort_unique(ei, n)
