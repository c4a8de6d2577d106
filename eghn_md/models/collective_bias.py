"""A collective bias: a tabulated potential U(ξ) on one collective variable of a frame, the first principal component
of its contact map over the pair bias's pairs, fitted beside the pair tables (:mod:`eghn_md.models.pair_bias`) so
that the model's ensembles keep the training run's distribution of ξ.

Why a second term: the pair tables correct each pair's distance distribution on its own. Where a state is made of
many contacts that form and break together (AdK's closed NMP–CORE and LID–CORE interfaces), each table sees its
pair's share of a population error only, in noisy densities of short ensembles, and the iteration stalls with the
slow state still under-populated (``results/generative_equilibrium.md`` §11–12). The populations are a property of
the slowest collective motion, so one more table on the coordinate that moves every such contact at once corrects
them in a few rounds: ξ = Σ_p w_p (s_p − μ_p) with s_p = 1 / (1 + exp(β (r_p − r_c))) how formed contact p is
(β = :data:`CONTACT_BETA`, r_c = :data:`CONTACT_R`), w the unit leading eigenvector of the contacts' covariance over
the training frames (:func:`contact_component`; sign fixed so that its largest entry is positive) and μ their
means. No state definition is read: ξ is whatever motion changes most contacts in the training run.

U is piecewise linear on :data:`CV_KNOTS` knots evenly spaced over the training run's range of ξ widened by
:data:`CV_MARGIN` each side, continued linearly beyond. The densities it is fitted from are smoothed over one model
step's spread of ξ (:func:`step_width`): the sampler moves ξ by about that much per step, so it cannot feel a
feature of U narrower than it, and a fit on finer densities deepens such features round after round without moving
the populations (``results/generative_equilibrium.md`` §13). ξ depends on distances only, so sampling with the bias
stays exactly E(3)-equivariant; permuting the nodes with the pairs relabelled permutes the move.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from eghn_md.models.contact_prior import pair_distances, pairs_in_graphs
from eghn_md.models.knot_table import segment, smoothed_density
from eghn_md.nn.edges import scatter_sum

__all__ = ["CONTACT_R", "CONTACT_BETA", "CV_KNOTS", "CV_MARGIN", "CV_DENSITY_WIDTH", "Collective",
           "contact_component", "collective_values", "collective_gradient", "collective_density", "step_width"]

#: [Å] distance at which a contact counts half formed, and the switching function's steepness [1/Å]
CONTACT_R = 8.0
CONTACT_BETA = 2.0
#: knots of U(ξ) over the training range of ξ, widened by this fraction of the range on each side
CV_KNOTS = 41
CV_MARGIN = 0.15
#: the narrowest Gaussian that smooths ξ's histogram, in knot spacings (:func:`step_width` widens it to one step)
CV_DENSITY_WIDTH = 1.0


@dataclass(frozen=True)
class Collective:
    """A collective bias: ``weight`` (P,) and ``mean`` (P,) of ξ over the pair bias's P pairs, ``grid`` (2,) [lo,
    hi] the first and last knot of ξ, ``table`` (:data:`CV_KNOTS`,) [kT] U on the knots."""

    weight: Tensor
    mean: Tensor
    grid: Tensor
    table: Tensor


def _contacts(r: Tensor) -> tuple[Tensor, Tensor]:
    """How formed contacts of lengths ``r`` (...) [Å] are, and its derivative d s / d r [1/Å]."""
    s = torch.sigmoid(-CONTACT_BETA * (r - CONTACT_R))
    return s, -CONTACT_BETA * s * (1.0 - s)


def contact_component(frames, index: Tensor) -> Collective:
    """The collective variable of the frames (T, N, 3) [Å] (NumPy or tensor, T ≥ 2) over the pairs ``index`` (2, P)
    long: the contacts' leading principal component, their means, the knots' range, and a zero table (float64)."""
    x = torch.as_tensor(np.asarray(frames), dtype=torch.float64)
    s = torch.cat([_contacts(r)[0] for r in pair_distances(x, index)])  # (T, P)
    mean = s.mean(dim=0)
    centred = s - mean
    w = _leading_direction(centred)
    w = w * torch.sign(w[w.abs().argmax()])
    xi = centred @ w
    lo, hi = float(xi.min()), float(xi.max())
    pad = CV_MARGIN * max(hi - lo, 1e-6)
    grid = torch.tensor([lo - pad, hi + pad], dtype=torch.float64)
    return Collective(weight=w, mean=mean, grid=grid, table=torch.zeros(CV_KNOTS, dtype=torch.float64))


def _leading_direction(centred: Tensor) -> Tensor:
    """The unit leading principal direction (P,) of centred rows (T, P): from the smaller of the two Gram matrices
    (T × T when there are fewer frames than pairs, then mapped back through the rows), so a short reference does not
    pay for a P × P eigendecomposition."""
    if centred.shape[0] < centred.shape[1]:
        _, u = torch.linalg.eigh(centred @ centred.T)
        w = centred.T @ u[:, -1]
        if float(w.norm()) > 0:
            return w / w.norm()
        # rows that do not vary: every direction is leading; the P × P branch's unit vector
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    return vectors[:, -1]


def collective_values(frames, index: Tensor, collective: Collective) -> Tensor:
    """ξ (T,) of the frames (T, N, 3) [Å] (NumPy or tensor) over the pairs ``index`` (2, P) long, float64."""
    x = torch.as_tensor(np.asarray(frames), dtype=torch.float64)
    w, mu = collective.weight.double().cpu(), collective.mean.double().cpu()
    return torch.cat([(_contacts(r)[0] - mu) @ w for r in pair_distances(x, index)])


def _spacing(grid: Tensor) -> Tensor:
    """The knots' spacing in ξ of a term whose first and last knots are ``grid`` (2,)."""
    return (grid[1] - grid[0]) / (CV_KNOTS - 1)


def _segment(xi: Tensor, grid: Tensor) -> tuple[Tensor, Tensor]:
    """Per value ``xi``: its knot segment (long) and position in it (in spacings, outside [0, 1] beyond)."""
    return segment((xi - grid[0]) / _spacing(grid), CV_KNOTS)


def collective_gradient(x: Tensor, *, index: Tensor, collective: Collective, ptr: Tensor) -> Tensor:
    """∇ U(ξ) (N, 3) [kT / Å] of a batch of graphs of n nodes each (positions ``x`` (N, 3) [Å], graphs starting at
    ``ptr`` (G + 1,) long), every graph's ξ over the pairs ``index`` (2, P) long of one graph."""
    g = ptr.shape[0] - 1
    i, j = pairs_in_graphs(index, ptr)
    d = x[i] - x[j]
    r = d.norm(dim=1).clamp_min(1e-6)
    s, ds = _contacts(r)
    w = collective.weight.to(x.dtype).repeat(g)
    xi = ((s - collective.mean.to(x.dtype).repeat(g)) * w).view(g, -1).sum(dim=1)  # (G,)
    grid = collective.grid.to(x.dtype)
    k, _ = _segment(xi, grid)
    tab = collective.table.to(x.dtype)
    slope = (tab[k + 1] - tab[k]) / _spacing(grid)  # dU/dξ per graph [kT]
    f = (slope.repeat_interleave(index.shape[1]) * w * ds / r).unsqueeze(1) * d
    return scatter_sum(f, i, x.shape[0]) - scatter_sum(f, j, x.shape[0])


def step_width(before, after, index: Tensor, collective: Collective) -> float:
    """The root-mean-square change of ξ over one model step, in knot spacings and at least :data:`CV_DENSITY_WIDTH`:
    the width :func:`collective_density` smooths with in a fit.

    Args:
        before, after: (T, N, 3) [Å] frames one horizon apart (NumPy or tensors, T ≥ 1): ``after[t]`` follows
            ``before[t]`` by the model's ΔT in the training trajectory.
        index: (2, P) long the pairs of ξ.
    """
    d = collective_values(after, index, collective) - collective_values(before, index, collective)
    return max(CV_DENSITY_WIDTH, float(d.square().mean().sqrt()) / float(_spacing(collective.grid.double())))


def collective_density(xi: Tensor, grid: Tensor, *, width: float = CV_DENSITY_WIDTH) -> Tensor:
    """The density (1, :data:`CV_KNOTS`) float64 of the values ``xi`` (T,) on the knots spanning ``grid`` (2,):
    linear binning (beyond the knots on the end knots), smoothed by a Gaussian of ``width`` knot spacings, summing
    to 1."""
    if not width > 0:
        raise ValueError(f"width must be > 0 knot spacings, got {width!r}")
    k, u = _segment(xi.double().cpu(), grid.double().cpu())
    u = u.clamp(0.0, 1.0)
    counts = torch.zeros(CV_KNOTS, dtype=torch.float64)
    counts.index_add_(0, k, 1 - u)
    counts.index_add_(0, k + 1, u)
    return smoothed_density(counts.unsqueeze(0), torch.arange(CV_KNOTS, dtype=torch.float64), width)
