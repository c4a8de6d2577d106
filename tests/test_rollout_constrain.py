"""The bond/clash constraint: exact E(3) and permutation equivariance, convergence on AdK, idempotence, errors."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import DataError, UsageError
from eghn_md.rollout.constrain import constrain
from eghn_md.rollout.validity import ATOM_CLASH_A, CA_CLASH_A, near_pairs, validity_report
from eghn_md.testing.equivariance import assert_equivariant, assert_permutation_equivariant


def _adk(selection: str = "protein and name CA", frame: int = 0):
    """(positions (N, 3) float64 [Å], bonds (2, 2B) long, node level) of one AdK frame (a fresh copy)."""
    pos, bonds, level = _adk_cached(selection, frame)
    return pos.clone(), bonds.clone(), level


@functools.lru_cache(maxsize=None)
def _adk_cached(selection: str, frame: int):
    import MDAnalysis as mda
    from MDAnalysisTests import datafiles

    from eghn_md.data.system import GraphSystem
    from eghn_md.graph.nodes import node_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(datafiles.PSF, datafiles.DCD)
        atoms = u.select_atoms(selection)
        u.trajectory[frame]
        pos = torch.as_tensor(atoms.positions.copy(), dtype=torch.float64)
    gs = GraphSystem.from_nodes(node_table(atoms), selection=selection)
    return pos, gs.bonds, gs.nodes.level


def _lengths(pos, bonds):
    return (pos[bonds[0]] - pos[bonds[1]]).norm(dim=1)


def _perturbed(pos, sigma, seed=0):
    """Gaussian noise of ``sigma`` Å per coordinate, plus node 40 dropped 1 Å from node 10 (a certain clash)."""
    gen = torch.Generator().manual_seed(seed)
    out = pos + sigma * torch.randn(pos.shape, generator=gen, dtype=pos.dtype)
    out[40] = out[10] + torch.tensor([1.0, 0.0, 0.0], dtype=pos.dtype)
    return out


def _batch(n: int = 60) -> GraphBatch:
    pos, bonds, _ = _adk()
    pos, keep = _perturbed(pos, 0.8)[:n], (bonds < n).all(dim=0)
    bonds = bonds[:, keep]
    gen = torch.Generator().manual_seed(1)
    h = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    return GraphBatch.single(pos=pos, vel=torch.zeros_like(pos), h=h, edge_index=bonds, local_edge_index=bonds)


def _constrained(batch: GraphBatch, **kw) -> dict:
    """Lengths are node properties (3.7 Å + 0.2·(h_i + h_j)): invariant and carried along by a permutation.

    Returns the helper's dict form ``{"points": (N, 3)}`` (its bare-tensor form looks up a missing ``"reg"``)."""
    b = batch.local_edge_index
    lengths = 3.7 + 0.2 * (batch.h[b[0], 0] + batch.h[b[1], 0])
    out, info = constrain(batch.pos, bonds=b, lengths=lengths, return_info=True, **kw)
    return {"points": out}


@pytest.mark.parametrize("kw", [{"tol": 0.0, "max_iter": 40}, {}], ids=["fixed-sweeps", "to-convergence"])
def test_exactly_equivariant(kw):
    batch = _batch()
    out = _constrained(batch, **kw)["points"]
    assert (out - batch.pos).norm(dim=1).max() > 0.5  # the projection does real work on this frame
    assert_equivariant(lambda g: _constrained(g, **kw), batch, atol=1e-10, reflections=True, n_trials=2)
    assert_permutation_equivariant(lambda g: _constrained(g, **kw), batch, atol=1e-10)


@pytest.mark.parametrize("selection, sigma, clash", [("protein and name CA", 1.5, CA_CLASH_A),
                                                     ("backbone", 0.5, ATOM_CLASH_A)])
def test_converges_from_a_heavily_perturbed_adk_frame(selection, sigma, clash):
    pos, bonds, kind = _adk(selection)
    ref = _lengths(pos, bonds)
    bad = _perturbed(pos, sigma)
    before = validity_report(bad[None].numpy(), bonds=bonds, node_kind=kind, reference_lengths=ref)
    assert before.max_bond_dev[0] > 2.0 and before.n_breaks[0] > 50 and before.n_clashes[0] >= 1
    out, info = constrain(bad, bonds=bonds, lengths=ref, node_kind=kind, return_info=True)
    assert info == constrain(bad, bonds=bonds, lengths=ref, clash_threshold=clash, return_info=True)[1]
    after = validity_report(out[None].numpy(), bonds=bonds, node_kind=kind, reference_lengths=ref)
    assert info.converged and info.n_clashes == 0 and 0 < info.iterations < 500
    assert after.max_bond_dev[0] < 0.01 and info.max_bond_error < 1e-3
    assert after.n_breaks[0] == 0 and after.n_clashes[0] == 0
    assert torch.allclose(out.mean(dim=0), bad.mean(dim=0), atol=1e-9)  # equal masses: the centre stays put
    again = constrain(bad, bonds=bonds, lengths=ref, clash_threshold=clash,
                      excluded=near_pairs(bonds, len(pos), min_separation=3))  # precomputed for a rollout loop
    assert torch.equal(again, out)


def test_idempotent_on_a_valid_frame():
    pos, bonds, _ = _adk(frame=50)
    out, info = constrain(pos, bonds=bonds, lengths=_lengths(pos, bonds), return_info=True)
    assert info.iterations == 0 and info.converged
    assert (out - pos).norm(dim=1).max() < 1e-6
    # and the result of a projection is itself a fixed point
    ref = _lengths(_adk(frame=0)[0], bonds)
    once = constrain(pos, bonds=bonds, lengths=ref)
    twice, info = constrain(once, bonds=bonds, lengths=ref, return_info=True)
    assert (once - pos).norm(dim=1).max() > 0.05 and info.iterations == 0
    assert (twice - once).norm(dim=1).max() < 1e-6


def test_clashes_between_chains_are_pushed_apart():
    # two 2-node chains whose nodes overlap across the chains: only the clash acts, bonds are already right
    pos = torch.tensor([[0.0, 0, 0], [3.8, 0, 0], [0.5, 0.5, 0], [4.3, 0.5, 0]], dtype=torch.float64)
    bonds = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    out, info = constrain(pos, bonds=bonds, lengths=torch.full((4,), 3.8, dtype=torch.float64), return_info=True)
    d = torch.cdist(out, out)
    assert info.converged and d[0, 2] >= CA_CLASH_A and d[1, 3] >= CA_CLASH_A
    assert torch.allclose(d[0, 1], torch.tensor(3.8, dtype=torch.float64), atol=1e-3)
    off = constrain(pos, bonds=bonds, lengths=torch.full((4,), 3.8, dtype=torch.float64), clash_threshold=0.0)
    assert torch.equal(off, pos)  # bonds only: nothing to do


def test_no_convergence_warns_and_bad_inputs_raise():
    pos, bonds, _ = _adk()
    ref = _lengths(pos, bonds)
    with pytest.warns(RuntimeWarning, match="did not converge in 2 sweeps"):
        constrain(_perturbed(pos, 1.0), bonds=bonds, lengths=ref, max_iter=2)
    with pytest.raises(UsageError, match="relax must lie in \\(0, 2\\), got 2.5"):
        constrain(pos, bonds=bonds, lengths=ref, relax=2.5)
    with pytest.raises(UsageError, match="node_kind 'cg' is not one of"):
        constrain(pos, bonds=bonds, lengths=ref, node_kind="cg")
    with pytest.raises(UsageError, match="lengths must have shape"):
        constrain(pos, bonds=bonds, lengths=ref[:-1])
    same = pos.clone()
    same[5] = same[6]
    with pytest.raises(DataError, match="nodes 5 and 6 coincide"):
        constrain(same, bonds=bonds, lengths=ref)
    nan = pos.clone()
    nan[3, 0] = float("nan")
    with pytest.raises(DataError, match="non-finite"):
        constrain(nan, bonds=bonds, lengths=ref)
    assert np.isfinite(constrain(pos.float(), bonds=bonds, lengths=ref.float()).numpy()).all()
