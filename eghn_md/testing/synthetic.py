"""Tiny random graphs and protein-like chains for tests and benchmarks (no files needed)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from eghn_md.data.batch import GraphBatch, collate
from eghn_md.graph.edges import merge_edges, radius_graph, sequence_edges

__all__ = ["random_graph", "random_batch", "protein_chain", "chain_graph"]


def random_graph(
    n: int,
    *,
    node_in: int = 4,
    edge_in: int = 0,
    p: float = 0.4,
    dtype: torch.dtype = torch.float64,
    generator: Optional[torch.Generator] = None,
    box: float = 5.0,
) -> GraphBatch:
    """A random graph of ``n`` nodes: symmetric random edges, a bond chain, positions off the origin, a target."""
    g = generator
    pos = torch.randn(n, 3, generator=g, dtype=dtype) * box + 10.0
    vel = torch.randn(n, 3, generator=g, dtype=dtype)
    h = torch.randn(n, node_in, generator=g, dtype=dtype)
    upper = torch.rand(n, n, generator=g) < p
    upper = torch.triu(upper, diagonal=1)
    adj = upper | upper.t()
    ei = adj.nonzero().t().contiguous()
    bonds = sequence_edges(torch.zeros(n, dtype=torch.long), k=1)
    ei = merge_edges(ei, bonds, n)
    ea = torch.randn(ei.shape[1], edge_in, generator=g, dtype=dtype)
    if edge_in:  # invariant edge scalars must be symmetric per undirected edge
        key = torch.minimum(ei[0], ei[1]) * n + torch.maximum(ei[0], ei[1])
        _, inv = torch.unique(key, return_inverse=True)
        ea = torch.randn(int(inv.max()) + 1, edge_in, generator=g, dtype=dtype)[inv]
    target = pos + torch.randn(n, 3, generator=g, dtype=dtype)
    return GraphBatch.single(pos=pos, vel=vel, h=h, edge_index=ei, edge_attr=ea, local_edge_index=bonds, target=target)


def random_batch(
    sizes: Sequence[int] = (5, 8, 3),
    *,
    node_in: int = 4,
    edge_in: int = 0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> GraphBatch:
    """A disjoint-union batch of random graphs of the given (different) sizes."""
    gen = torch.Generator().manual_seed(seed)
    return collate([random_graph(n, node_in=node_in, edge_in=edge_in, dtype=dtype, generator=gen) for n in sizes])


def protein_chain(n: int, *, step: float = 3.8, density: float = 0.01, seed: int = 0) -> Tensor:
    """Cα-like chain: a self-avoiding-ish random walk of ``n`` steps of ``step`` Å kept inside a sphere whose volume
    gives ``density`` nodes per Å³ (so the neighbour count per node is the same for every ``n``). Returns (n, 3)."""
    gen = torch.Generator().manual_seed(seed)
    radius = (3.0 * n / (4.0 * math.pi * density)) ** (1.0 / 3.0)
    pos = torch.zeros(n, 3, dtype=torch.float64)
    d = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    cur = torch.zeros(3, dtype=torch.float64)
    prev = torch.zeros(3, dtype=torch.float64)
    for k in range(1, n):
        step_dir = d[k] + 0.8 * prev  # persistent walk
        # fold back towards the centre when outside the sphere
        r = cur.norm()
        if r > radius:
            step_dir = step_dir - 2.0 * cur / r
        step_dir = step_dir / step_dir.norm()
        cur = cur + step * step_dir
        prev = step_dir
        pos[k] = cur
    return pos


def chain_graph(
    n: int,
    *,
    cutoff: float = 8.0,
    node_in: int = 20,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    density: float = 0.01,
) -> GraphBatch:
    """A protein-like chain of ``n`` nodes as one graph: cutoff + sequence edges, bonds, one-hot h, random v."""
    pos = protein_chain(n, seed=seed, density=density)
    gen = torch.Generator().manual_seed(seed + 1)
    vel = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    h = torch.nn.functional.one_hot(torch.randint(0, node_in, (n,), generator=gen), node_in).double()
    bonds = sequence_edges(torch.zeros(n, dtype=torch.long), k=1)
    ei = merge_edges(radius_graph(pos, cutoff), bonds, n)
    target = pos + vel
    g = GraphBatch.single(pos=pos, vel=vel, h=h, edge_index=ei, local_edge_index=bonds, target=target)
    return g.to(dtype=dtype)
