"""Edge lists with gathers and incoming-edge sums, and per-graph reductions (plain torch, CPU and CUDA).

Edge→node sums are ``index_add_`` into a zero tensor of a size known from the shapes (never ``bincount`` or
``segment_reduce`` with data-dependent lengths): on CPU an ``index_add_`` over (E, H) rows costs about a fifth of a
``segment_reduce`` (and a sender-side sum needs no permutation gather), it needs no sorted edge list, and nothing in
this module reads a tensor's values on the host, so the models run under ``torch.compile`` without graph breaks.

Under ``torch.compile`` every row sum, forward or backward (the gradient of a gather), is the opaque operator
``eghn_md::scatter_rows``: inductor (torch 2.13, CPU) fuses an inlined ``index_add_`` with its consumers in the wrong
order and reads the sum before the scattered rows are added (wrong gradients; reproduced in
``tests/test_compile.py``). Eagerly the operator is the same ``index_add_``.

Edge lists may come in any order; receiver-sorted lists (as :mod:`eghn_md.graph.edges` builds them) are faster on
CPU (contiguous writes). Graph membership of nodes (``batch``) may be in any order too.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["Edges", "scatter_sum", "gather_rows", "graph_sum", "graph_mean", "graph_gather", "graph_counts"]


_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)


def _scatter_rows_eager(src: Tensor, index: Tensor, size: int) -> Tensor:
    return src.new_zeros((size,) + tuple(src.shape[1:])).index_add_(0, index, src)


if hasattr(torch.library, "custom_op"):  # torch >= 2.4; older versions inline the plain ``index_add_``

    @torch.library.custom_op("eghn_md::scatter_rows", mutates_args=())
    def _scatter_rows(src: Tensor, index: Tensor, size: int) -> Tensor:
        """Rows of ``src`` summed into ``size`` rows by ``index``: (M, *F), (M,) -> (size, *F)."""
        return _scatter_rows_eager(src, index, size)

    @_scatter_rows.register_fake
    def _(src: Tensor, index: Tensor, size: int) -> Tensor:
        return src.new_empty((size,) + tuple(src.shape[1:]))

    def _scatter_setup(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[1])

    def _scatter_backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return grad.index_select(0, index), None, None

    _scatter_rows.register_autograd(_scatter_backward, setup_context=_scatter_setup)
else:  # pragma: no cover
    _scatter_rows = _scatter_rows_eager


class _GatherRows(torch.autograd.Function):
    """``x[index]`` whose backward sums the gradient rows with ``eghn_md::scatter_rows`` (see the module text)."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.num_rows = x.shape[0]
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return _scatter_rows(grad.contiguous(), index, ctx.num_rows), None


def scatter_sum(src: Tensor, index: Tensor, size: int) -> Tensor:
    """Sum rows of ``src`` into ``size`` rows by ``index``: (M, *F), (M,) -> (size, *F) (zero for empty rows).

    ``size == 1`` (one graph: every index is 0) is a plain sum: the same value, and under ``torch.compile`` on CPU it
    avoids an inductor code-generation failure on an ``index_add_`` whose target index folds to a constant.
    """
    if size == 1:
        return src.sum(0, keepdim=True)
    if not _is_compiling():
        return _scatter_rows_eager(src, index, size)
    return _scatter_rows(src, index, size)


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` along the first dimension: (N, *F), (M,) -> (M, *F); backward is an ``index_add_``."""
    if _is_compiling() and x.requires_grad:
        return _GatherRows.apply(x, index)
    return x.index_select(0, index)


def graph_counts(batch: Tensor, num_graphs: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Nodes per graph as ``dtype``: (N,) -> (G,) (a static-shape count, no host read)."""
    return scatter_sum(torch.ones(batch.shape[0], dtype=dtype, device=batch.device), batch, num_graphs)


def graph_sum(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Per-graph sum of node rows: (N, *F) -> (G, *F)."""
    return scatter_sum(x, batch, num_graphs)


def graph_mean(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Per-graph mean of node rows (0 for an empty graph): (N, *F) -> (G, *F)."""
    counts = graph_counts(batch, num_graphs, x.dtype).clamp_min(1)
    return graph_sum(x, batch, num_graphs) / counts.view((-1,) + (1,) * (x.dim() - 1))


def graph_gather(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Per-graph rows broadcast to their nodes, ``x[batch]``: (G, *F) -> (N, *F) (one graph: a broadcast view)."""
    if num_graphs == 1:
        return x.expand((batch.shape[0],) + tuple(x.shape[1:]))
    return gather_rows(x, batch)


class Edges:
    """An edge list with gathers and incoming-edge reductions.

    Shapes: edge_index (2, E) with ``[0]`` receiver i, ``[1]`` sender j. Edges keep their given order;
    ``attr(edge_attr)`` returns per-edge data in that order (kept for callers written for reordering lists).
    """

    def __init__(self, edge_index: Tensor, num_nodes: int):
        self.i, self.j = edge_index[0], edge_index[1]
        self.order: Optional[Tensor] = None
        self.num_nodes = num_nodes
        self.num_edges = int(self.i.shape[0])
        self._inv_deg: dict = {}
        self._pair: Optional[Tensor] = None

    @property
    def edge_index(self) -> Tensor:
        return torch.stack([self.i, self.j])

    @property
    def pair_index(self) -> Tensor:
        """(E, 2) rows ``[i, N + j]``: receiver and sender rows of a stacked (2N, F) node table (cached)."""
        if self._pair is None:
            self._pair = torch.stack([self.i, self.j + self.num_nodes], dim=1)
        return self._pair

    @property
    def counts_i(self) -> Tensor:
        """Incoming edges per node (N,), int64."""
        return scatter_sum(torch.ones_like(self.i), self.i, self.num_nodes)

    @property
    def counts_j(self) -> Tensor:
        """Outgoing edges per node (N,), int64."""
        return scatter_sum(torch.ones_like(self.j), self.j, self.num_nodes)

    def attr(self, edge_attr: Optional[Tensor]) -> Optional[Tensor]:
        return edge_attr

    def gather_i(self, x: Tensor) -> Tensor:
        """``x[i]``: (N, *F) -> (E, *F)."""
        return gather_rows(x, self.i)

    def gather_j(self, x: Tensor) -> Tensor:
        """``x[j]``: (N, *F) -> (E, *F)."""
        return gather_rows(x, self.j)

    def sum_i(self, src: Tensor) -> Tensor:
        """Sum over incoming edges: (E, *F) -> (N, *F)."""
        return scatter_sum(src, self.i, self.num_nodes)

    def sum_j(self, src: Tensor) -> Tensor:
        """Sum over outgoing edges (onto the sender): (E, *F) -> (N, *F)."""
        return scatter_sum(src, self.j, self.num_nodes)

    def inv_degree(self, dtype: torch.dtype, device) -> Tensor:
        """``1 / max(in-degree, 1)`` per node (N,), cached per dtype and device (one per forward)."""
        key = (dtype, device)
        if key not in self._inv_deg:
            deg = scatter_sum(torch.ones(self.num_edges, dtype=dtype, device=device), self.i, self.num_nodes)
            self._inv_deg[key] = 1.0 / deg.clamp_min(1)
        return self._inv_deg[key]

    def mean_i(self, src: Tensor) -> Tensor:
        """Mean over incoming edges (0 for nodes without any): (E, *F) -> (N, *F)."""
        inv = self.inv_degree(src.dtype, src.device)
        return self.sum_i(src) * inv.view((-1,) + (1,) * (src.dim() - 1))
