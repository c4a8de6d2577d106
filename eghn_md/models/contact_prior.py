"""A contact prior: the native contact map of the training trajectory, given to a generative model as edges.

A structure-based (Gō) model's forces are exactly its native contacts; an AlphaFold template hands the network
the pairs that are close in a known structure. Here the pairs come from the training frames:
:func:`pair_statistics` finds the node pairs whose *mean* distance over the frames is below the cutoff and that are
at least ``min_separation`` bonds apart (non-local: the contacts that hold the fold), with the mean and the standard
deviation of their distance. :func:`add_prior_edges` unites those pairs with a graph's edges and appends three
invariant edge scalars ``[is_prior_pair, mean / 10 Å, std / 1 Å]`` (:data:`PRIOR_EDGE_FEATURES`), so the denoiser of
:class:`~eghn_md.models.generative.FlowModel` sees the native contacts of every graph of a batch even where the
current frame has lost them. Constants per pair: the model stays exactly E(3)-equivariant.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from eghn_md.graph.separation import nonlocal_mask
from eghn_md.utils import evenly_spaced

__all__ = ["pair_statistics", "pair_distances", "pairs_in_graphs", "add_prior_edges", "PRIOR_EDGE_FEATURES",
           "PRIOR_MEAN_UNIT", "PRIOR_STD_UNIT", "SEPARATIONS"]

#: edge scalars a contact prior appends to every edge
PRIOR_EDGE_FEATURES = 3
#: [Å] the prior's mean distance is given to the network in these units (contacts are 4–12 Å)
PRIOR_MEAN_UNIT = 10.0
#: [Å] the prior's distance standard deviation is given in these units (fluctuations of ~0.1–2 Å)
PRIOR_STD_UNIT = 1.0
#: the bond separations a pair may be required to have: 1 (any two nodes), 2 (not bonded), 3 (non-local, the
#: clash definition of :mod:`eghn_md.graph.separation` and of the validity report)
SEPARATIONS = (1, 2, 3)
#: distances computed at once while accumulating (frames × pairs), to bound memory
_CHUNK = 4_000_000


def _separated(pairs: Tensor, bonds: Tensor, n: int, min_separation: int) -> Tensor:
    """Mask (P,) of the ``pairs`` (2, P) at least ``min_separation`` bonds apart in ``bonds`` (2, B) (both
    directions)."""
    if min_separation == 3:
        return nonlocal_mask(pairs, bonds, n)
    keep = pairs[0] != pairs[1]
    if min_separation == 2:
        keep &= ~torch.isin(pairs[0] * n + pairs[1], bonds[0].long() * n + bonds[1].long())
    return keep


def pair_distances(x: Tensor, pairs: Tensor):
    """Yield the distances (t, P) [Å] of ``pairs`` (2, P) long in consecutive runs of the frames ``x`` (T, N, 3)
    [Å], at most :data:`_CHUNK` distances at a time."""
    step = max(1, _CHUNK // max(1, pairs.shape[1]))
    for a in range(0, x.shape[0], step):
        yield (x[a:a + step, pairs[0]] - x[a:a + step, pairs[1]]).norm(dim=2)


def pairs_in_graphs(index: Tensor, ptr: Tensor) -> Tensor:
    """The pairs ``index`` (2, P) long of one graph (node numbers within it) in every graph of a batch whose graphs
    start at ``ptr`` (G + 1,) long: (2, G·P) long batch node numbers, graph by graph."""
    offsets = ptr[:-1].to(index.device).view(1, -1, 1)
    return (index.long().unsqueeze(1) + offsets).reshape(2, -1)


def pair_statistics(frames, *, bonds, cutoff: float, min_separation: int = 3, max_frames: int = 2000,
                    min_fraction: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """The contact pairs of a trajectory and the mean and standard deviation of their distance.

    Args:
        frames: (T, N, 3) [Å] positions (NumPy array or tensor); more than ``max_frames`` frames are subsampled
            evenly (first and last kept).
        bonds: (2, B) long, both directions of every bond of the node graph.
        cutoff: [Å] a pair is a contact when its mean distance over the frames is below it.
        min_separation: a contact's nodes are at least this many bonds apart (:data:`SEPARATIONS`).
        max_frames: at most this many frames are read.
        min_fraction: 0: a pair is a contact when its mean distance is below ``cutoff``; f in (0, 1]: when it is
            below ``cutoff`` in at least a fraction f of the frames (the contacts of a state the trajectory visits
            part of the time, whose mean distance may lie beyond the cutoff).

    Returns:
        ``pairs`` (2, P) long with ``pairs[0] < pairs[1]`` (sorted), ``mean`` (P,) [Å] and ``std`` (P,) [Å] (the
        population standard deviation over the frames) of their distance, float64.

    Raises:
        ValueError: frames of the wrong shape or none, a non-positive cutoff, an unknown ``min_separation``, a
            ``min_fraction`` outside [0, 1].
    """
    x = torch.as_tensor(np.asarray(frames), dtype=torch.float64)
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] == 0:
        raise ValueError(f"frames must be (T, N, 3) with T >= 1, got shape {tuple(x.shape)}")
    if min_separation not in SEPARATIONS:
        raise ValueError(f"min_separation must be one of {', '.join(map(str, SEPARATIONS))}, got {min_separation!r}")
    if not float(cutoff) > 0:
        raise ValueError(f"cutoff must be a distance > 0 [Å], got {cutoff!r}")
    if not 0 <= float(min_fraction) <= 1:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction!r}")
    if x.shape[0] > int(max_frames):
        x = x[torch.from_numpy(evenly_spaced(x.shape[0], max_frames))]
    n = x.shape[1]
    pairs = torch.triu_indices(n, n, offset=1)
    pairs = pairs[:, _separated(pairs, torch.as_tensor(bonds).long(), n, int(min_separation))]
    total = torch.zeros(pairs.shape[1], dtype=torch.float64)
    square, inside = torch.zeros_like(total), torch.zeros_like(total)
    for d in pair_distances(x, pairs):
        total += d.sum(dim=0)
        square += (d * d).sum(dim=0)
        inside += (d < float(cutoff)).sum(dim=0)
    mean = total / x.shape[0]
    std = (square / x.shape[0] - mean * mean).clamp_min(0.0).sqrt()
    keep = mean < float(cutoff) if min_fraction == 0 else inside / x.shape[0] >= float(min_fraction)
    return pairs[:, keep], mean[keep], std[keep]


def add_prior_edges(edge_index: Tensor, edge_attr: Tensor, *, index: Tensor, mean: Tensor, std: Tensor,
                    ptr: Tensor) -> tuple[Tensor, Tensor]:
    """A batch's edges united with the prior's pairs in every graph, with the prior's edge scalars appended.

    Args:
        edge_index: (2, E) long (receiver, sender), without duplicates.
        edge_attr: (E, D) invariant edge scalars.
        index: (2, P) long prior pairs of one graph (node numbers within the graph; one direction each).
        mean: (P,) [Å] mean distance of each pair; std: (P,) [Å] its standard deviation.
        ptr: (G + 1,) long node offsets of the graphs (every graph has the prior's nodes).

    Returns:
        ``edge_index`` (2, E') long sorted by receiver (then sender), without duplicates: the edges and both
        directions of every prior pair of every graph; ``edge_attr`` (E', D + :data:`PRIOR_EDGE_FEATURES`): the
        given scalars (0 on prior-only edges) then ``[1, mean / 10 Å, std / 1 Å]`` on prior pairs, 0 elsewhere.
    """
    dev, dtype = edge_index.device, edge_attr.dtype
    n = int(ptr[-1])
    one = pairs_in_graphs(index.to(dev), ptr)
    both = torch.cat([one, one.flip(0)], dim=1)
    g = ptr.numel() - 1
    vals = torch.stack([torch.ones_like(mean), mean / PRIOR_MEAN_UNIT, std / PRIOR_STD_UNIT], dim=1)
    vals = vals.to(device=dev, dtype=dtype).repeat(2 * g, 1)  # rows in the order of ``both``
    keys = torch.cat([edge_index[0] * n + edge_index[1], both[0] * n + both[1]])
    uniq, inverse = torch.unique(keys, return_inverse=True)
    e = edge_index.shape[1]
    attr = edge_attr.new_zeros((uniq.numel(), edge_attr.shape[1]))
    attr[inverse[:e]] = edge_attr
    prior = edge_attr.new_zeros((uniq.numel(), PRIOR_EDGE_FEATURES))
    prior[inverse[e:]] = vals
    return torch.stack([uniq // n, uniq % n]), torch.cat([attr, prior], dim=1)
