"""A pair bias: tabulated potentials on node-pair distances that a generative model's sampler descends, fitted so
that the model's own ensembles keep the pair-distance distributions of its training trajectory.

A learned next-frame kernel that is a little wrong everywhere is wrong in its stationary distribution too, and the
errors do not cancel: a kernel that loosens a tight state step by step (AdK's closed NMP–CORE interface) empties it
into the looser, more numerous conformations of the other state. Coarse-grained force fields meet the same problem
and answer it by iterative Boltzmann inversion (IBI, Reith, Pütz & Müller 2003): a pair potential U_p(r) per pair,
corrected after each simulation by ln(p_model / p_reference) of that pair's distance distribution until the two
agree. Here the potentials correct the model's kernel, not a force field: in the last sampling step the denoised
frame x̂₁ is moved by ``rate`` × −∇ Σ_p U_p(r_p) (:func:`bias_shift`), with ``rate`` = σ² / 2 [Å²] of the flow's
source (σ² the per-coordinate variance of one horizon's motion: D·ΔT of an overdamped step, so U is in units of
kT), before the bond and clash guidance. :mod:`eghn_md.rollout.pair_bias_fit` fits the tables from ensembles.

Every U_p is piecewise linear on the knots r_k = :data:`R_MIN` + k·:data:`SPACING` [Å], k < :data:`KNOTS`, and
continued linearly beyond them; it depends on a distance only, so sampling stays exactly E(3)-equivariant. The
pairs are numbers of one graph's nodes (i < j); a batch of graphs with that many nodes each gets the same tables.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from eghn_md.models.collective_bias import Collective, collective_gradient
from eghn_md.models.contact_prior import pair_distances, pairs_in_graphs
from eghn_md.models.knot_table import segment, smoothed_density
from eghn_md.nn.edges import scatter_sum

__all__ = ["R_MIN", "SPACING", "KNOTS", "knots", "pair_energy", "bias_shift", "pair_densities",
           "boltzmann_correction", "MAX_SHIFT", "DENSITY_WIDTH", "DENSITY_FLOOR", "MAX_CORRECTION"]

#: [Å] the first knot, the knots' spacing, and their number (3 … 17 Å: Cα contacts and a few Å beyond)
R_MIN = 3.0
SPACING = 0.25
KNOTS = 57
#: [Å] the most any node is moved by each term of the bias in one sample (the pair tables' move and the collective
#: term's move are each shortened to it, direction kept; one bound on their sum let the stiff pair tables swamp the
#: collective term: results/generative_equilibrium.md §12)
MAX_SHIFT = 1.0
#: [Å] width of the Gaussian that smooths a pair's distance histogram into a density on the knots
DENSITY_WIDTH = 0.35
#: density (per knot, each pair's sums to 1) added to both densities before their log ratio: where neither run
#: goes the correction is ~0, where only one goes it is bounded
DENSITY_FLOOR = 1e-3
#: the largest change of U_p at any knot in one correction [kT]
MAX_CORRECTION = 1.0


def knots(*, dtype=torch.float64, device=None) -> Tensor:
    """The knots (:data:`KNOTS`,) [Å] of every pair's table."""
    return R_MIN + SPACING * torch.arange(KNOTS, dtype=dtype, device=device)


def _segment(r: Tensor) -> tuple[Tensor, Tensor]:
    """Per distance ``r`` (P,) [Å]: the index (P,) of its table segment [k, k + 1] (the first / last beyond the
    knots) and its position in it (P,) in units of the spacing (outside [0, 1] beyond the knots)."""
    return segment((r - R_MIN) / SPACING, KNOTS)


def pair_energy(r: Tensor, table: Tensor) -> Tensor:
    """U_p(r_p) (P,) [kT] of distances ``r`` (P,) [Å] on the tables ``table`` (P, :data:`KNOTS`) [kT]."""
    k, u = _segment(r)
    lo = table.gather(1, k.unsqueeze(1)).squeeze(1)
    hi = table.gather(1, (k + 1).unsqueeze(1)).squeeze(1)
    return lo + u * (hi - lo)


def bias_shift(x: Tensor, *, index: Tensor, table: Tensor, ptr: Tensor, rate: float,
               collective: Optional[Collective] = None) -> Tensor:
    """The bias's move (N, 3) [Å] of the frames ``x``: −``rate`` × the gradient of Σ_p U_p(r_p), each node's move
    shortened to at most :data:`MAX_SHIFT`, plus the same of U(ξ) for a ``collective`` term over the same pairs
    (:mod:`~eghn_md.models.collective_bias`), shortened on its own.

    Args:
        x: (N, 3) [Å] positions of a batch of graphs of n nodes each, side by side.
        index: (2, P) long node pairs of one graph, numbers in [0, n).
        table: (P, :data:`KNOTS`) [kT] the pairs' potentials on :func:`knots`.
        ptr: (G + 1,) long first node of every graph (``GraphBatch.ptr``); every graph has n nodes.
        rate: [Å²] how far a unit gradient [kT / Å] moves a node (D·ΔT).
    """
    g = ptr.shape[0] - 1
    i, j = pairs_in_graphs(index, ptr)
    d = x[i] - x[j]
    r = d.norm(dim=1).clamp_min(1e-6)
    k, _ = _segment(r)
    tab = table.to(x.dtype).repeat(g, 1)
    slope = (tab.gather(1, (k + 1).unsqueeze(1)) - tab.gather(1, k.unsqueeze(1))) / SPACING  # dU/dr [kT/Å]
    f = slope * d / r.unsqueeze(1)
    grad = scatter_sum(f, i, x.shape[0]) - scatter_sum(f, j, x.shape[0])
    move = _bounded(-float(rate) * grad)
    if collective is not None:
        move = move + _bounded(-float(rate) * collective_gradient(x, index=index, collective=collective, ptr=ptr))
    return move


def _bounded(move: Tensor) -> Tensor:
    """``move`` (N, 3) [Å] with every node's row shortened to at most :data:`MAX_SHIFT`."""
    norm = move.norm(dim=1, keepdim=True)
    return move * torch.clamp(MAX_SHIFT / norm.clamp_min(1e-12), max=1.0)


def pair_densities(frames, index: Tensor) -> Tensor:
    """Each pair's distance density over ``frames`` on the knots (P, :data:`KNOTS`), float64, each row summing to
    1: a histogram (linear binning onto the two nearest knots; distances beyond the knots count on the end knots)
    smoothed by a Gaussian of width :data:`DENSITY_WIDTH`.

    Args:
        frames: (T, N, 3) [Å] positions, T ≥ 1 (NumPy array or tensor).
        index: (2, P) long node pairs.
    """
    x = torch.as_tensor(np.asarray(frames), dtype=torch.float64)
    counts = torch.zeros(index.shape[1], KNOTS, dtype=torch.float64)
    rows = torch.arange(index.shape[1])
    for r in pair_distances(x, index):  # (t, P)
        k, u = _segment(r)
        u = u.clamp(0.0, 1.0)  # beyond the knots: all on the end knot
        for kk, w in ((k, 1 - u), (k + 1, u)):
            counts.index_put_((rows.expand_as(kk).reshape(-1), kk.reshape(-1)), w.reshape(-1), accumulate=True)
    return smoothed_density(counts, torch.arange(KNOTS, dtype=torch.float64) * SPACING, DENSITY_WIDTH)


def boltzmann_correction(model_density: Tensor, reference_density: Tensor, *, weight: float = 1.0) -> Tensor:
    """The IBI correction (P, :data:`KNOTS`) [kT] of the tables: ``weight`` × ln((p_model + ε) / (p_ref + ε)),
    ε = :data:`DENSITY_FLOOR`, clipped to ±:data:`MAX_CORRECTION` and shifted to mean 0 per pair (only its slopes
    move nodes). Positive where the model goes more often than the reference: the table rises there.

    Args:
        model_density, reference_density: (P, :data:`KNOTS`) :func:`pair_densities` of the model's ensemble and of
            the reference trajectory.
        weight: the step of the iteration (1: a full Boltzmann inversion of each pair on its own).
    """
    if model_density.shape != reference_density.shape:
        raise ValueError(f"densities of different shapes: {tuple(model_density.shape)} and "
                         f"{tuple(reference_density.shape)}")
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"weight must be a finite number > 0, got {weight!r}")
    c = weight * (torch.log(model_density + DENSITY_FLOOR) - torch.log(reference_density + DENSITY_FLOOR))
    c = c.clamp(-MAX_CORRECTION, MAX_CORRECTION)
    return c - c.mean(dim=1, keepdim=True)
