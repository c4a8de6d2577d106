"""Distance conditioning of a generative model (``condition_distances``): the radial basis against a direct
computation, exact E(3) and permutation equivariance of sampling with it on (float64, with and without the contact
prior and every edge-feature mode), and that the denoiser reads x_t's distances: the same x_τ conditioned on two
different x_t gives two different predictions only when the option is on."""

from __future__ import annotations

import math

import pytest
import torch

from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.models.generative import CONDITION_FEATURES, distance_features, inner_config
from eghn_md.testing.equivariance import assert_equivariant, assert_permutation_equivariant
from eghn_md.testing.synthetic import random_batch

SIZES = (6, 9, 4)


def _model(name="eghn", *, on=True, edge_features="data", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(name=name, node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2, n_clusters=3,
                      length_scale=3.0, disp_scale=1.5, generative=True, sample_steps=3, condition_distances=on,
                      edge_features=edge_features)
    return build_model(cfg).double().eval()


def _sample(model):
    return lambda b: model(b, noise=b.vel).pos  # noise in the velocity channel, which the Markov model ignores


def test_radial_basis_matches_a_direct_computation():
    pos = torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 9.0]], dtype=torch.float64)
    ei = torch.tensor([[0, 1, 0], [1, 0, 2]])
    feat = distance_features(pos, ei)
    assert feat.shape == (3, CONDITION_FEATURES)
    for row, d in zip(feat.tolist(), (5.0, 5.0, 9.0), strict=True):
        want = [math.exp(-(((d - (3.0 + 1.25 * k)) / 1.25) ** 2)) for k in range(CONDITION_FEATURES)]
        assert row == pytest.approx(want, abs=1e-12)
    assert int(feat[0].argmax()) == 2  # 5 Å is nearest the centre 5.5 Å


def test_inner_network_reads_the_added_edge_scalars():
    base = dict(name="eghn", node_in=4, edge_in=2, generative=True)
    assert inner_config(ModelConfig(**base, condition_distances=True)).edge_in == 2 + CONDITION_FEATURES
    cfg = inner_config(ModelConfig(**base, edge_features="distance", condition_distances=True))
    assert (cfg.edge_features, cfg.edge_in) == ("data+distance", 2 + CONDITION_FEATURES)


@pytest.mark.parametrize("name,edges", [("eghn", "data"), ("eghn", "distance"), ("egnn", "data")])
def test_sampling_is_e3_and_permutation_equivariant(name, edges):
    model = _model(name, edge_features=edges)
    batch = random_batch(SIZES, node_in=4, edge_in=2)
    assert_equivariant(_sample(model), batch, atol=1e-10, reflections=True, n_trials=2)
    assert_permutation_equivariant(_sample(model), batch, atol=1e-10)


@pytest.mark.parametrize("on", [True, False])
def test_the_denoiser_reads_the_distances_of_x_t_only_when_on(on):
    """Two conditioning frames x_t with the same centroid, the same x_τ and the same τ: the denoiser's x̂₁ differs
    only because the edge lengths differ, i.e. only when it reads them (x_τ − x_t differs too, so the check holds
    the vector channel fixed by conditioning the inner network directly)."""
    model = _model(on=on)
    batch = random_batch(SIZES, node_in=4, edge_in=2)
    other = batch.replace(pos=batch.pos * 1.3)
    x_tau, tau = batch.pos + 0.1, torch.full((batch.num_nodes,), 0.4, dtype=torch.float64)
    a = model._denoise(model.conditioned(batch), x_tau, tau).pos
    b = model._denoise(model.conditioned(other).replace(pos=batch.pos), x_tau, tau).pos
    assert (float((a - b).abs().max().detach()) > 1e-6) == on


def test_needs_a_generative_model_and_a_bool():
    with pytest.raises(UsageError, match="condition_distances needs a generative model"):
        ModelConfig(name="eghn", node_in=4, condition_distances=True)
    with pytest.raises(UsageError, match="condition_distances must be true or false"):
        ModelConfig(name="eghn", node_in=4, generative=True, condition_distances=1)
    from eghn_md.models.registry import ignored_option_warnings

    ignored = ignored_option_warnings(ModelConfig(name="linear", node_in=4, generative=True, condition_distances=True))
    assert any("so condition_distances true is ignored" in m for m in ignored)
