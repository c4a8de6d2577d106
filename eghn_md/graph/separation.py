"""Topological separation in the bond graph: which node pairs are *non-local* (may clash), in torch.

A pair is non-local when its nodes are at least 3 bonds apart in the bond graph (pairs of different graphs or
chains always are): the definition of a clash pair in :mod:`eghn_md.rollout.validity` (``min_separation`` = 3), here
for the tensors a model or a data statistic works on (any device, batched graphs).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["nonlocal_mask"]


def _two_bond_keys(bonds: Tensor, n: int) -> Tensor:
    """Keys ``i · n + j`` of the ordered pairs two bonds apart through a common neighbour (i ≠ j or not)."""
    recv, send = bonds[0], bonds[1]
    order = torch.argsort(recv, stable=True)
    recv, send = recv[order], send[order]
    deg = torch.bincount(recv, minlength=n)
    width = int(deg.max()) if deg.numel() else 0
    if width == 0:
        return recv.new_zeros(0)
    start = torch.cumsum(deg, 0) - deg
    slot = torch.arange(recv.numel(), device=recv.device) - start[recv]
    nbr = torch.full((n, width), -1, dtype=torch.long, device=recv.device)
    nbr[recv, slot] = send
    a = nbr.unsqueeze(2).expand(n, width, width)
    b = nbr.unsqueeze(1).expand(n, width, width)
    ok = (a >= 0) & (b >= 0)
    return a[ok] * n + b[ok]


def nonlocal_mask(pairs: Tensor, bonds: Tensor, n_nodes: int) -> Tensor:
    """Mask (P,) bool of the ``pairs`` (2, P) long that are at least 3 bonds apart in ``bonds`` (2, B) long (both
    directions of every bond) over ``n_nodes`` nodes; a pair of a node with itself is local."""
    n = int(n_nodes)
    bonds = bonds.to(pairs.device).long()
    near = torch.cat([bonds[0] * n + bonds[1], _two_bond_keys(bonds, n),
                      torch.arange(n, device=pairs.device) * (n + 1)])
    return ~torch.isin(pairs[0].long() * n + pairs[1].long(), near)
