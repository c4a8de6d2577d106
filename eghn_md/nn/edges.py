"""Receiver-sorted edge lists with fast gathers and segment reductions (plain torch, CPU and CUDA).

On CPU, ``scatter_add_`` / ``index_add_`` over (E, H) rows is an order of magnitude slower than a segment reduction
over contiguous rows (``torch.segment_reduce``). :class:`Edges` sorts an edge list by receiver once per forward; sums
over incoming edges are then segment sums, and the backward of the per-edge gathers ``x[i]`` / ``x[j]`` (a scatter)
is a segment sum too (over a precomputed sender-sorted permutation for ``x[j]``).

Graph membership of nodes (``batch``) is contiguous by the :class:`~eghn_md.data.batch.GraphBatch` contract, so
per-graph reductions are segment sums with the graph sizes as lengths.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["Edges", "segment_sum", "gather_rows", "graph_sum", "graph_mean", "graph_gather"]


class _SegmentSum(torch.autograd.Function):
    """Sum of consecutive row blocks: (M, *F) with lengths (S,) -> (S, *F); backward repeats the grad rows."""

    @staticmethod
    def forward(ctx, src: Tensor, lengths: Tensor, seg_index: Optional[Tensor]):
        ctx.save_for_backward(lengths, seg_index)
        return torch.segment_reduce(src, "sum", lengths=lengths, axis=0, unsafe=True)

    @staticmethod
    def backward(ctx, grad: Tensor):
        lengths, seg_index = ctx.saved_tensors
        if seg_index is None:
            seg_index = torch.repeat_interleave(torch.arange(lengths.numel(), device=grad.device), lengths)
        return grad.index_select(0, seg_index), None, None


class _GatherRows(torch.autograd.Function):
    """``x[index]`` whose backward sums grad rows per source row as a segment sum over ``perm`` (index sorted)."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, perm: Optional[Tensor], counts: Tensor):
        ctx.save_for_backward(perm, counts)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        perm, counts = ctx.saved_tensors
        g = grad if perm is None else grad.index_select(0, perm)
        return torch.segment_reduce(g, "sum", lengths=counts, axis=0, unsafe=True), None, None, None


def segment_sum(src: Tensor, lengths: Tensor, seg_index: Optional[Tensor] = None) -> Tensor:
    """Sum consecutive blocks of rows of ``src`` of the given ``lengths`` (zero for empty blocks).

    ``seg_index`` (M,) is the block id of every row (derived from ``lengths`` when None), used by backward.
    """
    if src.shape[0] == 0:
        return src.new_zeros((lengths.numel(),) + tuple(src.shape[1:]))
    return _SegmentSum.apply(src, lengths, seg_index)


def gather_rows(x: Tensor, index: Tensor, perm: Optional[Tensor], counts: Tensor) -> Tensor:
    """``x[index]`` with a segment-sum backward; ``index[perm]`` must be sorted, ``counts`` = bincount(index)."""
    return _GatherRows.apply(x, index, perm, counts)


def graph_sum(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Per-graph sum of node rows (nodes of a graph are contiguous): (N, *F) -> (G, *F)."""
    return segment_sum(x, torch.bincount(batch, minlength=num_graphs), batch)


def graph_mean(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Per-graph mean of node rows: (N, *F) -> (G, *F)."""
    counts = torch.bincount(batch, minlength=num_graphs).clamp_min(1).to(x.dtype)
    return graph_sum(x, batch, num_graphs) / counts.view((-1,) + (1,) * (x.dim() - 1))


def graph_gather(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Per-graph rows broadcast to their nodes, ``x[batch]``: (G, *F) -> (N, *F) (segment-sum backward)."""
    return gather_rows(x, batch, None, torch.bincount(batch, minlength=num_graphs))


def _argsort_stable(x: Tensor) -> Tensor:
    """Stable argsort; on CPU through numpy (torch's multi-threaded CPU sort stalls badly on a busy machine)."""
    if x.device.type != "cpu":
        return torch.argsort(x, stable=True)
    return torch.from_numpy(np.argsort(x.numpy(), kind="stable"))


class Edges:
    """An edge list sorted by receiver, with gathers and incoming-edge reductions.

    Shapes: edge_index (2, E) with ``[0]`` receiver i, ``[1]`` sender j. ``attr(edge_attr)`` reorders per-edge data
    given in the original order.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int):
        i, j = edge_index[0], edge_index[1]
        self.order: Optional[Tensor] = None
        if i.numel() > 1 and not bool((i[1:] >= i[:-1]).all()):
            self.order = _argsort_stable(i)
            i, j = i[self.order], j[self.order]
        self.i, self.j = i, j
        self.num_nodes = num_nodes
        self.num_edges = int(i.numel())
        self.counts_i = torch.bincount(i, minlength=num_nodes)
        self.counts_j = torch.bincount(j, minlength=num_nodes)
        self.perm_j = _argsort_stable(j)
        self._inv_deg: dict = {}

    @property
    def edge_index(self) -> Tensor:
        return torch.stack([self.i, self.j])

    def attr(self, edge_attr: Optional[Tensor]) -> Optional[Tensor]:
        if edge_attr is None or self.order is None:
            return edge_attr
        return edge_attr.index_select(0, self.order)

    def gather_i(self, x: Tensor) -> Tensor:
        """``x[i]``: (N, *F) -> (E, *F)."""
        return gather_rows(x, self.i, None, self.counts_i)

    def gather_j(self, x: Tensor) -> Tensor:
        """``x[j]``: (N, *F) -> (E, *F)."""
        return gather_rows(x, self.j, self.perm_j, self.counts_j)

    def sum_i(self, src: Tensor) -> Tensor:
        """Sum over incoming edges: (E, *F) -> (N, *F)."""
        return segment_sum(src, self.counts_i, self.i)

    def mean_i(self, src: Tensor) -> Tensor:
        """Mean over incoming edges (0 for nodes without any): (E, *F) -> (N, *F)."""
        key = (src.dtype, src.device)
        if key not in self._inv_deg:
            self._inv_deg[key] = 1.0 / self.counts_i.clamp_min(1).to(src.dtype)
        inv = self._inv_deg[key]
        return self.sum_i(src) * inv.view((-1,) + (1,) * (src.dim() - 1))
