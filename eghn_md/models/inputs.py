"""The scalars a model reads: dataset scalars plus features recomputed from every input frame.

``with_input_features(batch, config)`` returns the batch the layers see:

* node scalars ``[|v| / vel_scale, batch.h]`` when ``config.speed_feature`` (the paper's protein node feature is
  ``[|v|, charge / max |charge|]``; the charge column is a dataset feature, see :mod:`eghn_md.graph.features`);
* edge scalars per ``config.edge_features``: the dataset's (``"data"``), ``[d, d²]`` of every edge in
  ``length_scale`` units (``"distance"``, the paper's protein edge features), or both (``"data+distance"``).

|v| and d change at every step of an autoregressive rollout; computing them here, from the model's input, means
training, evaluation and rollout see the same quantities without each sample builder having to know about them.

``bond_edge_scalars(batch)`` gives the edge scalars of every local (bond) edge by looking up the global edge of the
same pair (the published pooling network reads local edge features; in every dataset of this package the bonds are
a subset of the global edges).
"""

from __future__ import annotations

import torch
from torch import Tensor

from eghn_md.data.batch import GraphBatch

__all__ = ["with_input_features", "bond_edge_scalars"]


def with_input_features(batch: GraphBatch, config) -> GraphBatch:
    """The batch with ``h`` (N, node_in) and ``edge_attr`` (E, edge_in) as ``config`` asks (a ModelConfig).

    ``batch.pos`` (N, 3) [Å], ``batch.vel`` (N, 3) [velocity unit]; |v| is divided by ``vel_scale``, d by
    ``length_scale`` (d² by its square). Returns ``batch`` itself when nothing is added.
    """
    speed, mode = config.speed_feature, config.edge_features
    if not speed and mode == "data":
        return batch
    h, ea = batch.h, batch.edge_attr
    if speed:
        s = (batch.vel / config.vel_scale).norm(dim=1, keepdim=True)
        h = torch.cat([s.to(h.dtype), h], dim=1)
    if mode != "data":
        ei = batch.edge_index
        rel = (batch.pos[ei[0]] - batch.pos[ei[1]]) / config.length_scale
        d2 = (rel * rel).sum(dim=1, keepdim=True)
        dist = torch.cat([d2.sqrt(), d2], dim=1).to(ea.dtype)
        ea = dist if mode == "distance" else torch.cat([ea, dist], dim=1)
    return batch.replace(h=h, edge_attr=ea)


def bond_edge_scalars(batch: GraphBatch) -> Tensor:
    """Edge scalars (B, D) of the local edges ``batch.bonds`` (2, B), read from the global edge of the same pair.

    Raises:
        ValueError: a bond is not among the global edges (naming the first such pair).
    """
    if batch.local_edge_index is None:
        return batch.edge_attr
    n = batch.num_nodes
    ei, bonds = batch.edge_index, batch.local_edge_index
    keys = ei[0] * n + ei[1]
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    query = bonds[0] * n + bonds[1]
    if sorted_keys.numel() == 0:
        if query.numel():
            raise ValueError("the batch has bonds but no global edges; bond edge scalars are read from global edges")
        return batch.edge_attr[:0]
    at = torch.searchsorted(sorted_keys, query).clamp_max(sorted_keys.numel() - 1)
    missing = sorted_keys[at] != query
    if bool(missing.any()):
        k = int(missing.nonzero()[0])
        raise ValueError(
            f"bond ({int(bonds[0, k])}, {int(bonds[1, k])}) is not among the global edges ({int(missing.sum())} "
            "bonds missing); the published pooling network reads a bond's edge scalars from its global edge"
        )
    return batch.edge_attr[order[at]]
