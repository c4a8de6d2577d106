"""Bond-graph refinement of a predicted structure (the ``refine_layers`` of a model's output).

A one-step prediction built from per-node coefficients of large vectors (positions from the centroid, velocities)
changes the distance between bonded neighbours by tenths of an Ångström at random; a rollout accumulates that into
torn chains. :class:`BondRefiner` gives the network a local mechanism to get bond geometry right: ``n_layers`` EGNN
layers (:class:`~eghn_md.nn.egnn.EGNNLayer`, no velocity term) over the **bond** graph, applied to the predicted
positions::

    x̂_i ← x̂_i + mean_{j bonded to i} (x̂_i − x̂_j) φ(h_i, h_j, ‖x̂_i − x̂_j‖²)

Each layer moves a node along its bond vectors by amounts learned from the bond's current length and the two nodes'
scalars, so it can learn to restore stretched or compressed bonds (a learned, one-shot analogue of a bond
projection, trained by the loss like every other layer; nothing holds a bond at a fixed length). E(3)- and
permutation-equivariant; starts near the identity (the coordinate head is initialised small).

Trained on the network's own one-step predictions only, the refiner learns to mend the small bond errors those have;
a rollout feeds it larger ones (its raw predictions from its own drifted frames), which it then passes on, and the
chain stretches step by step. ``noise`` (``train: refine_noise``) adds Gaussian noise to its input while training,
with the true frame still the target, so it learns to restore bond geometry from errors of that size: a denoising
objective for the refinement alone, the same idea as the input noise of learned simulators.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from eghn_md.nn.edges import Edges
from eghn_md.nn.egnn import EGNNLayer

__all__ = ["BondRefiner"]


class BondRefiner(nn.Module):
    """``n_layers`` EGNN layers over the bond graph on predicted positions.

    Shapes: x (N, 3) in the model's internal length unit, h (N, H), bonds (:class:`~eghn_md.nn.edges.Edges` of the
    bond graph, both directions), noise (N, 3) in the internal length unit or None (added to ``x`` first, in training
    mode only) -> x' (N, 3).
    """

    def __init__(self, *, hidden: int, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            EGNNLayer(hidden=hidden, velocity=False, residual=True, coord_scale=1.0, update_h=k < n_layers - 1)
            for k in range(n_layers)
        )

    def forward(self, x: Tensor, h: Tensor, bonds: Edges, noise: Optional[Tensor] = None) -> Tensor:
        if noise is not None and self.training:
            x = x + noise
        for layer in self.layers:
            x, h = layer(x, None, h, bonds, None)
        return x
