"""E(3), permutation and batch equivariance of every model, through the shared helper (float64; on ``--device``)."""

import pytest
import torch

from eghn_md.models import ModelConfig, build_model
from eghn_md.testing.equivariance import (
    assert_batch_independent,
    assert_equivariant,
    assert_permutation_equivariant,
)
from eghn_md.testing.synthetic import random_batch, random_graph

EQUIVARIANT = ["eghn", "eghn-published", "egnn", "rf", "linear"]
SIZES = (6, 9, 4)


def _model(name, seed=0, device="cpu"):
    torch.manual_seed(seed)
    cfg = ModelConfig(name=name, node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2, n_clusters=3,
                      length_scale=3.0, vel_scale=1.0, disp_scale=1.0)
    return build_model(cfg).double().eval().to(device)


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_e3_equivariant(name, device):
    model = _model(name, device=device)
    batch = random_batch(SIZES, node_in=4, edge_in=2).to(device)
    assert_equivariant(model, batch, atol=1e-10, reflections=True, n_trials=2)


@pytest.mark.parametrize("name", EQUIVARIANT + ["gnn"])
def test_permutation_equivariant(name, device):
    model = _model(name, device=device)
    assert_permutation_equivariant(model, random_batch(SIZES, node_in=4, edge_in=2).to(device), atol=1e-10)


@pytest.mark.parametrize("name", EQUIVARIANT + ["gnn"])
def test_batch_independent(name, device):
    model = _model(name, device=device)
    gen = torch.Generator().manual_seed(3)
    graphs = [random_graph(n, node_in=4, edge_in=2, generator=gen).to(device) for n in SIZES]
    assert_batch_independent(model, graphs, atol=1e-10)


def test_gnn_is_not_rotation_equivariant_but_translation_equivariant():
    model = _model("gnn")
    batch = random_batch(SIZES, node_in=4, edge_in=2)
    with pytest.raises(AssertionError, match="points"):
        assert_equivariant(model, batch, atol=1e-6)
    # translations only (R = I) are fine: positions are centred per graph
    out = model(batch).pos
    shifted = model(batch.replace(pos=batch.pos + torch.tensor([3.0, -7.0, 11.0], dtype=torch.float64))).pos
    torch.testing.assert_close(shifted, out + torch.tensor([3.0, -7.0, 11.0], dtype=torch.float64))


@pytest.mark.parametrize("name", ["eghn", "eghn-published"])
def test_assignment_is_invariant_and_stochastic(name):
    model = _model(name)
    batch = random_batch(SIZES, node_in=4, edge_in=2)
    out = model(batch)
    assert out.assign.shape == (batch.num_nodes, 3) and model.n_clusters == 3
    torch.testing.assert_close(out.assign.sum(1), torch.ones(batch.num_nodes, dtype=out.assign.dtype))
    assert out.reg.ndim == 0 and float(out.reg.detach()) > 0


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_e3_equivariant_on_production_edges(name):
    """The production path: edges rebuilt by ``build_edges`` (radius graph ∪ bonds, bond flag) from the transformed
    positions of a protein-like chain, as every training sample and rollout step does."""
    from eghn_md.data.samples import build_edges
    from eghn_md.testing.synthetic import chain_graph

    torch.manual_seed(1)
    model = build_model(ModelConfig(name=name, node_in=4, edge_in=1, hidden=8, n_layers=2, n_pool_layers=2,
                                    n_clusters=3, length_scale=3.0)).double().eval()
    g = chain_graph(30, node_in=4, cutoff=8.0, dtype=torch.float64, seed=2)

    def fn(b):
        ei, ea = build_edges(b.pos, 8.0, b.bonds)
        return model(b.replace(edge_index=ei, edge_attr=ea))

    ei, _ = build_edges(g.pos, 8.0, g.bonds)
    assert ei.shape[1] > 2 * 29  # contacts beyond the bonds
    assert_equivariant(fn, g, atol=1e-9, reflections=True, n_trials=2)
