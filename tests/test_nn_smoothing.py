"""The displacement filter along the bonds (``output_smoothing``): against a dense reference, and equivariant inside
the models that use it (float64, the shared helper)."""

import pytest
import torch

from eghn_md.models import ModelConfig, build_model
from eghn_md.models.registry import models_with
from eghn_md.nn.smoothing import smooth_along_bonds
from eghn_md.testing.equivariance import assert_batch_independent, assert_equivariant, assert_permutation_equivariant
from eghn_md.testing.synthetic import random_batch, random_graph


def _dense(disp, bonds, n_iter):
    """(I − ½ L_rw)^n as a dense matrix: row i averages i (½) and its bonded neighbours (½ / degree)."""
    n = disp.shape[0]
    A = torch.zeros(n, n, dtype=disp.dtype)
    for i, j in bonds.t().tolist():
        A[i, j] += 1.0
    deg = A.sum(1)
    P = torch.eye(n, dtype=disp.dtype)
    for i in range(n):
        if deg[i] > 0:
            P[i] = 0.5 * P[i] + 0.5 * A[i] / deg[i]
    return torch.linalg.matrix_power(P, n_iter) @ disp


def _bonds(pairs):
    b = torch.tensor(pairs, dtype=torch.long).t()
    return torch.cat([b, b.flip(0)], dim=1)


def test_matches_dense_reference_and_keeps_isolated_nodes():
    torch.manual_seed(0)
    bonds = _bonds([(0, 1), (1, 2), (2, 3), (3, 4), (1, 5)])  # node 6 has no bond
    d = torch.randn(7, 3, dtype=torch.float64)
    for n in (0, 1, 3, 10):
        torch.testing.assert_close(smooth_along_bonds(d, bonds, n), _dense(d, bonds, n), atol=1e-12, rtol=0)
    out = smooth_along_bonds(d, bonds, 5)
    torch.testing.assert_close(out[6], d[6])
    assert not torch.allclose(out[:6], d[:6])


def test_rigid_translation_passes_and_bond_stretch_shrinks():
    bonds = _bonds([(i, i + 1) for i in range(9)])
    shift = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64).expand(10, 3)
    torch.testing.assert_close(smooth_along_bonds(shift, bonds, 7), shift)  # a common displacement is kept
    zigzag = torch.zeros(10, 3, dtype=torch.float64)
    zigzag[::2, 0] = 1.0  # neighbours pulled apart: every bond stretched or compressed by 1
    out = smooth_along_bonds(zigzag, bonds, 4)
    assert float((out[1:, 0] - out[:-1, 0]).abs().max()) < 0.2


def test_empty_bonds_is_identity():
    d = torch.randn(4, 3)
    assert smooth_along_bonds(d, torch.zeros(2, 0, dtype=torch.long), 3) is d


def _model(name):
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2, n_clusters=3,
                      length_scale=3.0, output_smoothing=3)
    return build_model(cfg).double().eval()


@pytest.mark.parametrize("name", models_with(smooths=True))
def test_smoothed_models_are_equivariant(name):
    model = _model(name)
    batch = random_batch((6, 9, 4), node_in=4, edge_in=2)
    assert_equivariant(model, batch, atol=1e-10, reflections=True, n_trials=2)
    assert_permutation_equivariant(model, batch, atol=1e-10)
    gen = torch.Generator().manual_seed(3)
    assert_batch_independent(model, [random_graph(n, node_in=4, edge_in=2, generator=gen) for n in (6, 9, 4)],
                             atol=1e-10)


def test_smoothing_changes_the_output_and_is_off_by_default():
    assert ModelConfig(name="eghn", node_in=4).output_smoothing == 0
    batch = random_batch((6, 9), node_in=4, edge_in=2)
    smooth = _model("eghn")
    torch.manual_seed(0)
    plain = build_model(ModelConfig(name="eghn", node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2,
                                    n_clusters=3, length_scale=3.0)).double().eval()
    plain.load_state_dict(smooth.state_dict())  # same weights: only the filter differs
    a, b = smooth(batch).pos, plain(batch).pos
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, batch.pos + smooth_along_bonds(b - batch.pos, batch.bonds, 3))


# ---------------------------------------------------------------- bond-graph refinement (``refine_layers``)
@pytest.mark.parametrize("name", models_with(refines=True))
def test_refined_models_are_equivariant(name):
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2, n_clusters=3,
                      length_scale=3.0, refine_layers=2, output_smoothing=2)
    model = build_model(cfg).double().eval()
    batch = random_batch((6, 9, 4), node_in=4, edge_in=2)
    assert_equivariant(model, batch, atol=1e-10, reflections=True, n_trials=2)
    assert_permutation_equivariant(model, batch, atol=1e-10)


def test_refiner_learns_to_restore_bond_lengths():
    """Trained alone on randomly perturbed chains, the refiner brings bonds back towards their length (3.8)."""
    from eghn_md.nn.edges import Edges
    from eghn_md.nn.refine import BondRefiner

    torch.manual_seed(0)
    n = 12
    bonds = _bonds([(i, i + 1) for i in range(n - 1)])
    edges = Edges(bonds, n)
    net = BondRefiner(hidden=16, n_layers=2)
    h = torch.ones(n, 16)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def chain(k):  # random walks of 3.8 Å steps (in units of 3.8) plus noise
        steps = torch.nn.functional.normalize(torch.randn(k, n - 1, 3), dim=2)
        x = torch.cat([torch.zeros(k, 1, 3), steps.cumsum(1)], dim=1)
        return x, x + 0.08 * torch.randn_like(x)

    def bond_err(x):
        return ((x[:, 1:] - x[:, :-1]).norm(dim=2) - 1.0).abs().mean()

    for _ in range(300):
        clean, noisy = chain(16)
        out = torch.stack([net(x, h, edges) for x in noisy])
        loss = bond_err(out) ** 2 + ((out - clean) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    clean, noisy = chain(64)
    with torch.no_grad():
        out = torch.stack([net(x, h, edges) for x in noisy])
    assert float(bond_err(out)) < 0.7 * float(bond_err(noisy))
