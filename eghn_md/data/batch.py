"""The one data structure every model consumes: a disjoint union of graphs of (possibly) different sizes.

Conventions
-----------
* ``edge_index[0]`` is the *receiving* node ``i``, ``edge_index[1]`` the *sending* node ``j``; messages ``m_ij`` are
  aggregated onto ``i``. Both directions of an undirected edge are present; there are no self loops.
* Node indices of graph ``g`` are contiguous: ``ptr[g] <= node < ptr[g + 1]`` and ``batch[node] == g``.
* Positions are absolute (not centred): models centre per graph themselves, so a translation of ``pos`` (and of
  ``target``) is a translation of the problem. Velocities are free vectors (never translated).
* ``edge_attr`` holds invariant edge scalars only (bond flag, charges product, ...). Distances are computed by the
  models from ``pos``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["GraphBatch", "collate"]


@dataclass
class GraphBatch:
    """A batch of graphs as one disjoint-union graph.

    Shapes (N nodes in the batch, E directed edges, G graphs, F node scalars, D edge scalars):

    * ``pos``: (N, 3) [Å] positions at the input time t.
    * ``vel``: (N, 3) [Å per horizon, or the dataset's velocity unit] velocity channel (see ``eghn_md.data.samples``).
    * ``h``: (N, F) invariant node scalars.
    * ``edge_index``: (2, E) long, global edges (cutoff + sequence neighbours).
    * ``edge_attr``: (E, D) invariant edge scalars (D may be 0).
    * ``batch``: (N,) long, graph id of every node.
    * ``ptr``: (G + 1,) long, node offsets of each graph.
    * ``local_edge_index``: (2, E_loc) long or None, covalent / sequence bonds (used by pooling networks; falls back
      to ``edge_index`` when None).
    * ``target``: (N, 3) [Å] or None, positions at t + ΔT.
    * ``future``: (N, K − 1, 3) [Å] or None, positions at t + 2ΔT … t + KΔT for multi-step training (NaN where a
      window has no such frame).
    * ``refine_noise``: (N, 3) [Å] or None, training only: noise a model in training mode adds to its raw prediction
      before its bond-graph refinement (``train: refine_noise``; :mod:`eghn_md.nn.refine`); an unrolled training
      step built with :meth:`replace` keeps it, so every step of a sample sees the same noise.
    * ``flow``: (N, C) or None, training a generative model only (:mod:`eghn_md.models.generative`): columns 0–2
      the unit Gaussian source noise z of the node (dimensionless; the model scales it by its σ and removes its
      per-graph mean), column 3 the flow time τ ∈ [0, 1) of the node's graph; then the columns of later unrolled
      steps and of scored samples (C = :func:`eghn_md.train.flow_objective.flow_columns`, which says which).
    """

    pos: Tensor
    vel: Tensor
    h: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    batch: Tensor
    ptr: Tensor
    local_edge_index: Optional[Tensor] = None
    target: Optional[Tensor] = None
    future: Optional[Tensor] = None
    refine_noise: Optional[Tensor] = None
    flow: Optional[Tensor] = None

    @property
    def num_graphs(self) -> int:
        return int(self.ptr.numel() - 1)

    @property
    def num_nodes(self) -> int:
        return int(self.pos.shape[0])

    @property
    def bonds(self) -> Tensor:
        """Local (bond) edges, or the global edges when no bonds were given."""
        return self.edge_index if self.local_edge_index is None else self.local_edge_index

    def to(self, device=None, dtype: Optional[torch.dtype] = None, *, non_blocking: bool = False) -> "GraphBatch":
        """Move to ``device``; floating tensors are cast to ``dtype`` when given, index tensors are kept long.
        ``non_blocking`` overlaps host-to-device copies from pinned memory with compute (CUDA)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                if v.is_floating_point() and dtype is not None:
                    v = v.to(device=device, dtype=dtype, non_blocking=non_blocking)
                else:
                    v = v.to(device=device, non_blocking=non_blocking)
            out[f.name] = v
        return GraphBatch(**out)

    def pin_memory(self) -> "GraphBatch":
        """A copy in page-locked host memory (what ``DataLoader(pin_memory=True)`` calls), for ``non_blocking``
        copies to a CUDA device."""
        return GraphBatch(**{f.name: (v.pin_memory() if isinstance(v := getattr(self, f.name), Tensor) else v)
                             for f in fields(self)})

    def replace(self, **changes) -> "GraphBatch":
        return replace(self, **changes)

    @staticmethod
    def single(
        *,
        pos: Tensor,
        vel: Tensor,
        h: Tensor,
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        local_edge_index: Optional[Tensor] = None,
        target: Optional[Tensor] = None,
        future: Optional[Tensor] = None,
    ) -> "GraphBatch":
        """A batch holding one graph."""
        n = pos.shape[0]
        if edge_attr is None:
            edge_attr = pos.new_zeros((edge_index.shape[1], 0))
        return GraphBatch(
            pos=pos,
            vel=vel,
            h=h,
            edge_index=edge_index.long(),
            edge_attr=edge_attr,
            batch=torch.zeros(n, dtype=torch.long, device=pos.device),
            ptr=torch.tensor([0, n], dtype=torch.long, device=pos.device),
            local_edge_index=None if local_edge_index is None else local_edge_index.long(),
            target=target,
            future=future,
        )


def collate(graphs: Sequence[GraphBatch]) -> GraphBatch:
    """Concatenate batches (each holding one or more graphs) into one disjoint-union batch.

    Edge indices are shifted by the node offset of their graph. ``target`` / ``local_edge_index`` / ``future`` /
    ``refine_noise`` must be present in all inputs or in none (``future`` of equal length K − 1).
    """
    if len(graphs) == 0:
        raise ValueError("collate() needs at least one graph")
    if len(graphs) == 1:
        return graphs[0]
    offsets = []
    n = 0
    g = 0
    batches = []
    ptrs = [graphs[0].ptr[:1]]
    for gb in graphs:
        offsets.append(n)
        batches.append(gb.batch + g)
        ptrs.append(gb.ptr[1:] + n)
        n += gb.num_nodes
        g += gb.num_graphs
    has_target = [gb.target is not None for gb in graphs]
    has_local = [gb.local_edge_index is not None for gb in graphs]
    has_future = [gb.future is not None for gb in graphs]
    has_noise = [gb.refine_noise is not None for gb in graphs]
    has_flow = [gb.flow is not None for gb in graphs]
    if any(len(set(flags)) != 1 for flags in (has_target, has_local, has_future, has_noise, has_flow)):
        raise ValueError("collate(): target/local_edge_index/future/refine_noise/flow must be present in all graphs "
                         "or in none")
    return GraphBatch(
        pos=torch.cat([gb.pos for gb in graphs]),
        vel=torch.cat([gb.vel for gb in graphs]),
        h=torch.cat([gb.h for gb in graphs]),
        edge_index=torch.cat([gb.edge_index + o for gb, o in zip(graphs, offsets, strict=True)], dim=1),
        edge_attr=torch.cat([gb.edge_attr for gb in graphs]),
        batch=torch.cat(batches),
        ptr=torch.cat(ptrs),
        local_edge_index=(
            torch.cat([gb.local_edge_index + o for gb, o in zip(graphs, offsets, strict=True)], dim=1)
            if has_local[0] else None
        ),
        target=torch.cat([gb.target for gb in graphs]) if has_target[0] else None,
        future=torch.cat([gb.future for gb in graphs]) if has_future[0] else None,
        refine_noise=torch.cat([gb.refine_noise for gb in graphs]) if has_noise[0] else None,
        flow=torch.cat([gb.flow for gb in graphs]) if has_flow[0] else None,
    )
