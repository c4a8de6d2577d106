"""An E(3)- and permutation-equivariant projection of a frame onto fixed bond lengths without clashes.

After a rollout step the bonds of the node graph are restored to their reference lengths by iterative projection
along the bond vectors (SHAKE-like, equal masses): every sweep moves both ends of each bond by half its length
error along the bond and each clashing pair (topological distance >= ``min_separation``, closer than
``clash_threshold``) apart to ``clash_threshold + clash_margin`` along the vector joining them. The corrections of one
sweep are computed from the same positions (Jacobi), averaged over the constraints acting on each node,
over-relaxed by ``relax`` and stripped of their mean (a uniform shift changes no distance, so the centroid of the
nodes never moves); sweeps repeat until every bond is within ``tol`` of its length and no pair clashes.

Only difference vectors and distances enter, and every node is treated alike whatever its index, so the result is
exactly equivariant under rotations, reflections, translations and node permutations (a Gauss–Seidel sweep over
an ordering of the bonds would depend on that ordering).

Typical use after each rollout step (reference lengths from the start frame, exclusions computed once)::

    ref = (x0[bonds[0]] - x0[bonds[1]]).norm(dim=1)
    excl = near_pairs(bonds, len(x0))
    nxt = constrain(nxt, bonds=bonds, lengths=ref, node_kind="residue", excluded=excl)

Measured on AdK frame 0 (Cα, 214 nodes) with 1.5 Å Gaussian noise per coordinate and one node dropped 1 Å from
another (max bond error 24 Å, 145 breaks, 20 clashes): 261 sweeps, 0.7 s on CPU, to a max bond error of 7e-4 Å and
no clash; the backbone (855 atoms, 0.5 Å noise): 67 sweeps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from eghn_md.errors import DataError, UsageError
from eghn_md.rollout.validity import MIN_SEPARATION, default_thresholds, near_pairs, unique_bonds

__all__ = ["constrain", "ConstrainInfo"]

_SKIN = 1.0  # [Å] neighbour-list skin: candidate clash pairs are those within clash_threshold + skin


@dataclass(frozen=True)
class ConstrainInfo:
    """``iterations`` sweeps done; ``max_bond_error`` [Å] and ``n_clashes`` after them; ``converged``."""

    iterations: int
    max_bond_error: float
    n_clashes: int
    converged: bool


@torch.no_grad()
def constrain(pos: Tensor, *, bonds: Tensor, lengths: Tensor, node_kind: str = "residue",
              clash_threshold: Optional[float] = None, min_separation: int = MIN_SEPARATION,
              excluded: Optional[Tensor] = None, tol: float = 1e-3, clash_margin: float = 0.01, relax: float = 1.5,
              max_iter: int = 2000, return_info: bool = False):
    """Restore bond lengths and remove clashes (see the module docstring).

    Args:
        pos: (N, 3) [Å] positions (any float dtype and device; the result has the same).
        bonds: (2, B) long bonds of the node graph (one or both directions).
        lengths: (B,) [Å] reference length of each column of ``bonds`` (both directions must agree).
        node_kind: ``"residue"`` or ``"atom"``: picks the default clash threshold (3.0 Å for Cα, 2.0 Å for atoms,
            as in :mod:`eghn_md.rollout.validity`).
        clash_threshold: [Å] pairs closer than this clash; None: the default of ``node_kind``; 0: bonds only.
        min_separation: topological distance in the bond graph from which pairs can clash.
        excluded: (P,) long sorted keys ``i·N + j`` of never-clashing pairs from :func:`near_pairs` (pass it to
            skip recomputing it every step of a rollout).
        tol: [Å] allowed \\|d − length\\| per bond (>= 0; 0 runs exactly ``max_iter`` sweeps).
        clash_margin: [Å] clashing pairs are pushed to ``clash_threshold + clash_margin``.
        relax: over-relaxation factor in (0, 2).
        max_iter: most sweeps; without convergence a RuntimeWarning is issued (unless ``return_info``).
        return_info: also return a :class:`ConstrainInfo`.

    Returns:
        (N, 3) [Å] constrained positions, or ``(positions, ConstrainInfo)``.
    """
    if clash_threshold is None:
        clash_threshold = default_thresholds(node_kind)[1]
    n = _check_args(pos, tol=tol, relax=relax, max_iter=max_iter, clash_threshold=clash_threshold)
    clash_threshold = clash_threshold or None  # 0: no clash handling
    pairs, ref = unique_bonds(bonds, n, lengths)
    i, j = pairs.to(pos.device)
    ref = ref.to(pos.device, pos.dtype)
    if clash_threshold is not None and excluded is None:
        excluded = near_pairs(pairs, n, min_separation=min_separation, device=pos.device)
    x = pos.clone()
    cand, anchor = None, x
    for it in range(max_iter + 1):
        if clash_threshold is not None and (cand is None or _moved(x, anchor) > _SKIN / 2):
            cand, anchor = _candidates(x, clash_threshold + _SKIN, excluded.to(pos.device)), x.clone()
        ci, cj = _active_clashes(x, cand, clash_threshold)
        err = _bond_lengths(x, i, j) - ref
        max_err = float(err.abs().max()) if err.numel() else 0.0
        if max_err < tol and len(ci) == 0 or it == max_iter:
            break
        x = x + relax * _sweep(x, i, j, ref, ci, cj, clash_threshold, clash_margin)
    info = ConstrainInfo(iterations=it, max_bond_error=max_err, n_clashes=int(len(ci)),
                         converged=bool(max_err < tol and len(ci) == 0))
    if return_info:
        return x, info
    if not info.converged:
        warnings.warn(f"constrain did not converge in {max_iter} sweeps: max bond error {max_err:.3g} Å "
                      f"(tol {tol:g} Å), {info.n_clashes} clashing pairs left", RuntimeWarning, stacklevel=2)
    return x


def _check_args(pos: Tensor, *, tol: float, relax: float, max_iter: int, clash_threshold: float) -> int:
    if pos.ndim != 2 or pos.shape[1] != 3 or not pos.is_floating_point():
        raise UsageError(f"pos must be a floating (N, 3) tensor, got {pos.dtype} of shape {tuple(pos.shape)}")
    if not bool(torch.isfinite(pos).all()):
        raise DataError("constrain: pos has non-finite coordinates")
    if not tol >= 0:
        raise UsageError(f"tol must be >= 0 Å, got {tol}")
    if not 0 < relax < 2:
        raise UsageError(f"relax must lie in (0, 2), got {relax}")
    if max_iter < 0:
        raise UsageError(f"max_iter must be >= 0, got {max_iter}")
    if not clash_threshold >= 0:
        raise UsageError(f"clash_threshold must be >= 0 Å (0: bonds only), got {clash_threshold}")
    return pos.shape[0]


def _bond_lengths(x: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """(B,) [Å] distances of the pairs; raises DataError when a pair coincides (no direction to move along)."""
    d = (x[j] - x[i]).norm(dim=1)
    if d.numel() and float(d.min()) < 1e-9:
        k = int(torch.argmin(d))
        raise DataError(f"constrain: nodes {int(i[k])} and {int(j[k])} coincide; the correction has no direction")
    return d


def _moved(x: Tensor, anchor: Tensor) -> float:
    return float((x - anchor).norm(dim=1).max()) if len(x) else 0.0


def _candidates(x: Tensor, cutoff: float, excluded: Tensor, chunk_elems: int = 1 << 21) -> Tensor:
    """(2, C) long pairs i < j within ``cutoff`` [Å] that are not ``excluded`` (a Verlet list, built in row chunks)."""
    n = len(x)
    rows = max(1, chunk_elems // max(n, 1))
    found = []
    for start in range(0, n, rows):
        d2 = ((x[start:start + rows, None, :] - x[None, :, :]) ** 2).sum(dim=2)
        a, b = torch.nonzero(d2 < cutoff * cutoff, as_tuple=True)
        a = a + start
        keep = b > a
        found.append(torch.stack([a[keep], b[keep]]))
    cand = torch.cat(found, dim=1) if found else torch.zeros((2, 0), dtype=torch.long, device=x.device)
    if excluded.numel():
        cand = cand[:, ~torch.isin(cand[0] * n + cand[1], excluded)]
    return cand


def _active_clashes(x: Tensor, cand: Optional[Tensor], threshold: Optional[float]) -> tuple[Tensor, Tensor]:
    if cand is None or cand.shape[1] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=x.device)
        return empty, empty
    d = (x[cand[1]] - x[cand[0]]).norm(dim=1)
    on = d < threshold
    return cand[0, on], cand[1, on]


def _sweep(x: Tensor, i: Tensor, j: Tensor, ref: Tensor, ci: Tensor, cj: Tensor,
           clash_threshold: Optional[float], clash_margin: float) -> Tensor:
    """(N, 3) [Å] Jacobi correction: half of each violation to either end, averaged over a node's constraints."""
    a, b = torch.cat([i, ci]), torch.cat([j, cj])
    target = ref
    if len(ci):
        target = torch.cat([ref, ref.new_full((len(ci),), clash_threshold + clash_margin)])
    vec = x[b] - x[a]
    d = _bond_lengths(x, a, b)
    step = (0.5 * (d - target) / d).unsqueeze(1) * vec  # moves a toward b when too long
    delta = torch.zeros_like(x).index_add_(0, a, step).index_add_(0, b, -step)
    count = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    ones = torch.ones_like(d)
    count.index_add_(0, a, ones).index_add_(0, b, ones)
    delta = delta / count.clamp(min=1).unsqueeze(1)
    return delta - delta.mean(dim=0)  # no net translation: the centroid (equal masses) stays where it was
