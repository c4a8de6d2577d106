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
#: pairs whose float32 distance is within this relative margin of the cutoff are decided again in float64; float32
#: differences and sums of three squares are off by a few units of 6e-8 relative, far inside it
_RECHECK = 1e-5


def _within(p: Tensor, i: Tensor, j: Tensor, dist: Tensor, cutoff: float) -> Tensor:
    """Mask of pairs (i, j) closer than ``cutoff``: ``dist`` (float32) decides, except in a thin band around the
    cutoff, where the float64 distance of ``p`` (the caller's float64 positions) does, so the pair set is that of an
    exact float64 computation."""
    keep = dist < cutoff
    near = (dist - cutoff).abs() <= _RECHECK * cutoff
    if bool(near.any()):
        k = near.nonzero().squeeze(1)
        d64 = ((p[i[k]] - p[j[k]]) ** 2).sum(1)
        keep[k] = d64 < cutoff * cutoff
    return keep


def _sort_unique(ei: Tensor, n: int) -> Tensor:
    key = torch.unique(ei[0] * n + ei[1])
    return torch.stack([key // n, key % n])


def radius_graph(pos: Tensor, cutoff: float, batch: Optional[Tensor] = None, *, method: str = "auto") -> Tensor:
    """Pairs of nodes of the same graph closer than ``cutoff`` (strictly) [Å].

    A cell list (cells of edge ``cutoff``; each node looks at the 27 cells around its own) makes it
    O(N · neighbours) in time and memory. ``method``: ``"cells"``, ``"dense"`` (Gram matrices, O(N²); one block per
    graph when the graphs follow one another with equal sizes, O(N · nodes per graph)) or ``"auto"`` (dense up to
    2048 nodes, or up to 2048 nodes per graph for graphs of equal size, an ensemble's replicas).
    Shapes: pos (N, 3), batch (N,) or None -> (2, E).
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff!r}")
    if method not in ("auto", "cells", "dense"):
        raise ValueError(f"unknown method {method!r}; valid: auto, cells, dense")
    n = pos.shape[0]
    device = pos.device
    if n == 0:
        return torch.zeros((2, 0), dtype=torch.long, device=device)
    single = batch is None
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=device)
    p32 = pos.detach().float()
    if not bool(torch.isfinite(p32).all()):
        raise ValueError("radius_graph: positions contain NaN or inf")
    p = pos.detach().double()
    m = n if single else 0 if method == "cells" else _equal_blocks(batch, n)  # replicas: a dense block per graph
    if method == "dense" or (method == "auto" and (n <= _DENSE_MAX or 0 < m <= _DENSE_MAX)):
        return _dense(p, cutoff, None if single else batch, m)
    # integer cell coordinates, shifted by one so that neighbour offsets stay >= 0
    lo = p.min(0).values
    cell = torch.floor((p - lo) / cutoff).long() + 1  # (N, 3)
    dims = cell.max(0).values + 2
    key = ((batch * dims[0] + cell[:, 0]) * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
    sorted_key, order = torch.sort(key)
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
                d = p32[i] - p32[j]
                keep = _within(p, i, j, (d * d).sum(1).sqrt(), cutoff) & (i != j)
                out.append(torch.stack([i[keep], j[keep]]))
    if not out:
        return torch.zeros((2, 0), dtype=torch.long, device=device)
    return _sort_unique(torch.cat(out, dim=1), n)


def _equal_blocks(batch: Tensor, n: int) -> int:
    """The size m of the graphs when ``batch`` (N,) holds them one after another, all of m nodes (an ensemble's
    replicas); 0 otherwise."""
    g = int(batch[-1]) + 1
    if n % g:
        return 0
    m = n // g
    same = torch.equal(batch, torch.arange(g, device=batch.device).repeat_interleave(m))
    return m if same else 0


def _dense(p: Tensor, cutoff: float, batch: Optional[Tensor], m: int) -> Tensor:
    """All-pairs radius graph from float32 Gram matrices of the centred coordinates (|x_i|² + |x_j|² − 2 x_i·x_j,
    the fast matrix-product form), one block per graph when the graphs follow one another with equal sizes (else
    one block masked by ``batch``). Its rounding error is at most ~9 float32 units times the largest |x|², so pairs
    within 32 units of it (plus ``_RECHECK``) of the cutoff are decided again from float64 differences.
    ``m``: the size of every graph when they follow one another with equal sizes (:func:`_equal_blocks`; N for one
    graph), else 0. Shapes: p (N, 3) float64, batch (N,) or None -> (2, E), sorted by (i, j)."""
    n = p.shape[0]
    blocks = p.view(n // m, m, 3) if m else p.unsqueeze(0)
    centred = blocks - blocks.mean(1, keepdim=True)
    x = centred.float()
    sq = (x * x).sum(2)  # (G, m)
    d2 = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * torch.bmm(x, x.transpose(1, 2))).clamp_min_(0.0)
    c2 = cutoff * cutoff
    tol = 32 * torch.finfo(torch.float32).eps * float(sq.max()) + 2 * _RECHECK * c2
    adj = d2 < c2 + tol
    if not m:
        adj[0] &= batch.view(-1, 1) == batch.view(1, -1)
    adj.diagonal(dim1=1, dim2=2).fill_(False)
    g, i, j = adj.nonzero().unbind(1)
    dij = d2[g, i, j]
    if m:
        i, j = i + g * m, j + g * m
    keep = dij < c2
    near = (dij - c2).abs() <= tol
    if bool(near.any()):
        k = near.nonzero().squeeze(1)
        keep[k] = ((p[i[k]] - p[j[k]]) ** 2).sum(1) < c2
    return torch.stack([i[keep], j[keep]])


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
