"""Shared assertions for E(3)-, permutation- and batch-equivariance (float64, tight tolerance).

``fn(batch)`` may return:

* a (N, 3) tensor of *points* (transform as ``R x + b``),
* a :class:`~eghn_md.models.ModelOutput` (``pos`` points; ``reg`` and ``assign`` invariant), or
* a dict with keys ``"points"`` (…, 3), ``"vectors"`` (…, 3) (rotate only) and ``"invariants"`` (unchanged), each a
  tensor or None. Node-indexed entries must have N rows for the permutation/batch checks.

Transformations act on the inputs as physics does: positions (and target) rotate and translate, velocities only
rotate, node scalars and edge scalars do not change.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from eghn_md.data.batch import GraphBatch, collate

__all__ = [
    "random_orthogonal",
    "transform_batch",
    "assert_equivariant",
    "assert_permutation_equivariant",
    "assert_batch_independent",
]


def random_orthogonal(*, det: int = 1, dtype=torch.float64, generator: Optional[torch.Generator] = None) -> Tensor:
    """A random 3×3 orthogonal matrix with determinant ``det`` (±1)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def transform_batch(batch: GraphBatch, R: Tensor, b: Tensor) -> GraphBatch:
    """``x → R x + b`` for positions and target, ``v → R v`` for velocities."""
    R = R.to(device=batch.pos.device, dtype=batch.pos.dtype)
    b = b.to(device=batch.pos.device, dtype=batch.pos.dtype)
    return batch.replace(
        pos=batch.pos @ R.T + b,
        vel=batch.vel @ R.T,
        target=None if batch.target is None else batch.target @ R.T + b,
    )


def _parts(out) -> dict:
    from eghn_md.models.output import ModelOutput

    if isinstance(out, Tensor):
        return {"points": out, "vectors": None, "invariants": None, "reg": None}
    if isinstance(out, ModelOutput):
        return {"points": out.pos, "vectors": None, "invariants": out.assign, "reg": out.reg}
    if isinstance(out, dict):
        unknown = set(out) - {"points", "vectors", "invariants", "reg"}
        if unknown:
            raise ValueError(f"unknown output keys {sorted(unknown)}; valid: points, vectors, invariants, reg")
        return {k: out.get(k) for k in ("points", "vectors", "invariants", "reg")}
    raise TypeError(f"fn must return a Tensor, ModelOutput or dict, got {type(out).__name__}")


def _close(a: Optional[Tensor], b: Optional[Tensor], atol: float, what: str) -> None:
    if a is None and b is None:
        return
    assert a is not None and b is not None, f"{what}: present in one output only"
    torch.testing.assert_close(a, b, atol=atol, rtol=atol, msg=lambda m: f"{what}: {m}")


def assert_equivariant(
    fn: Callable[[GraphBatch], object],
    batch: GraphBatch,
    *,
    atol: float = 1e-10,
    reflections: bool = True,
    translation_scale: float = 10.0,
    n_trials: int = 1,
    seed: int = 0,
) -> None:
    """Check ``fn(g·batch) = g·fn(batch)`` for random rotations (and reflections) R and translations b."""
    gen = torch.Generator().manual_seed(seed)
    base = _parts(fn(batch))
    dets = (1, -1) if reflections else (1,)
    for _ in range(n_trials):
        for det in dets:
            R = random_orthogonal(det=det, generator=gen)
            b = torch.randn(3, generator=gen, dtype=torch.float64) * translation_scale
            got = _parts(fn(transform_batch(batch, R, b)))
            tag = f"det={det:+d}"
            if base["points"] is not None:
                P = base["points"]
                _close(got["points"], P @ R.T.to(P) + b.to(P), atol, f"points ({tag})")
            if base["vectors"] is not None:
                _close(got["vectors"], base["vectors"] @ R.T.to(base["vectors"]), atol, f"vectors ({tag})")
            _close(got["invariants"], base["invariants"], atol, f"invariants ({tag})")
            _close(got["reg"], base["reg"], atol, f"regulariser ({tag})")


def permute_batch(batch: GraphBatch, *, seed: int = 0):
    """Permute nodes within each graph (and shuffle edge order). Returns ``(permuted, perm)`` with
    ``permuted.pos == batch.pos[perm]``."""
    gen = torch.Generator().manual_seed(seed)  # permutations drawn on the CPU, then moved to the batch's device
    dev = batch.pos.device
    ptr = batch.ptr.tolist()
    perm = torch.cat([a + torch.randperm(b - a, generator=gen) for a, b in zip(ptr[:-1], ptr[1:], strict=True)])
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    perm, inv = perm.to(dev), inv.to(dev)
    eperm = torch.randperm(batch.edge_index.shape[1], generator=gen).to(dev)
    ei = inv[batch.edge_index][:, eperm]
    loc = batch.local_edge_index
    if loc is not None:
        loc = inv[loc][:, torch.randperm(loc.shape[1], generator=gen).to(dev)]
    out = batch.replace(
        pos=batch.pos[perm],
        vel=batch.vel[perm],
        h=batch.h[perm],
        edge_index=ei,
        edge_attr=batch.edge_attr[eperm],
        local_edge_index=loc,
        target=None if batch.target is None else batch.target[perm],
    )
    return out, perm


def assert_permutation_equivariant(
    fn: Callable[[GraphBatch], object], batch: GraphBatch, *, atol: float = 1e-10, seed: int = 0
) -> None:
    """Permuting nodes within graphs (relabelling edges, shuffling edge order) permutes node outputs: they MATCH."""
    base = _parts(fn(batch))
    pb, perm = permute_batch(batch, seed=seed)
    got = _parts(fn(pb))
    for key in ("points", "vectors", "invariants"):
        if base[key] is not None:
            _close(got[key], base[key][perm], atol, f"{key} (permuted nodes)")
    _close(got["reg"], base["reg"], atol, "regulariser (permuted nodes)")


def assert_batch_independent(
    fn: Callable[[GraphBatch], object], graphs: Sequence[GraphBatch], *, atol: float = 1e-10
) -> None:
    """Each graph's output is the same alone and inside a batch with the others (of different sizes).

    The batched regulariser must be the mean of the single-graph ones.
    """
    together = _parts(fn(collate(list(graphs))))
    off = 0
    regs = []
    for k, g in enumerate(graphs):
        alone = _parts(fn(g))
        n = g.num_nodes
        for key in ("points", "vectors", "invariants"):
            if alone[key] is not None:
                _close(together[key][off : off + n], alone[key], atol, f"{key} of graph {k} (batched vs alone)")
        if alone["reg"] is not None:
            regs.append(alone["reg"])
        off += n
    if regs:
        _close(together["reg"], torch.stack(regs).mean(), atol, "regulariser (batched vs mean of alone)")
