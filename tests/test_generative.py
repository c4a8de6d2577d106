"""The generative (flow) model: exact E(3) and permutation equivariance of sampling and of the denoiser (float64),
batch independence of replicas, reproducibility for a seed, the sampler's landing step, configuration checks."""

import pytest
import torch

from eghn_md.data.batch import collate
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.models.generative import TIME_FEATURES, FlowModel, centred_noise
from eghn_md.models.registry import is_generative, is_markov
from eghn_md.testing.equivariance import (
    assert_batch_independent,
    assert_equivariant,
    assert_permutation_equivariant,
)
from eghn_md.testing.synthetic import random_batch, random_graph

SIZES = (6, 9, 4)


def _model(name="eghn", *, sampler="euler", steps=3, seed=0, **guidance):
    torch.manual_seed(seed)
    cfg = ModelConfig(name=name, node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2, n_clusters=3,
                      length_scale=3.0, vel_scale=1.0, disp_scale=1.5, generative=True, sample_steps=steps,
                      sampler=sampler, **guidance)
    return build_model(cfg).double().eval()


def _sample(model):
    """One sample whose source noise rides in the velocity channel, which the Markov model does not read: the
    shared helpers rotate (not translate), permute and batch it exactly as the inputs, as the check needs."""
    return lambda b: model(b, noise=b.vel).pos


def _denoise(model, tau=0.37):
    """The training forward at a fixed τ, noise again in the velocity channel, target transformed by the helper."""
    def fn(b):
        flow = torch.cat([b.vel, torch.full((b.num_nodes, 1), tau, dtype=b.pos.dtype)], dim=1)
        return model(b, flow=flow).pos
    return fn


@pytest.mark.parametrize("name,sampler", [("eghn", "euler"), ("eghn", "heun"), ("egnn", "euler"),
                                          ("eghn-published", "euler")])
def test_sampling_is_e3_equivariant(name, sampler):
    model = _model(name, sampler=sampler)
    assert_equivariant(_sample(model), random_batch(SIZES, node_in=4, edge_in=2), atol=1e-10, reflections=True,
                       n_trials=2)


GUIDED = {"guide_steps": 2, "bond_range": [3.0, 4.0], "contact_floor": 3.0}


@pytest.mark.parametrize("check", [assert_equivariant, assert_permutation_equivariant])
def test_guided_sampling_is_equivariant(check):
    check(_sample(_model(**GUIDED)), random_batch(SIZES, node_in=4, edge_in=2), atol=1e-10)


def test_guidance_puts_bonds_into_range_and_separates_non_local_pairs():
    """Random graphs have bonds of ~7 Å and close pairs; guided samples have them within the restraints' ranges,
    unguided ones not."""
    from eghn_md.graph.separation import nonlocal_mask

    b = random_batch(SIZES, node_in=4, edge_in=2)
    z = torch.randn(b.num_nodes, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    far = b.edge_index[:, nonlocal_mask(b.edge_index, b.bonds, b.num_nodes)]

    def worst(x):
        bond = (x[b.bonds[0]] - x[b.bonds[1]]).norm(dim=1)
        return float(bond.max()), float(bond.min()), float((x[far[0]] - x[far[1]]).norm(dim=1).min())

    hi, lo, close = worst(_model(**GUIDED)(b, noise=z).pos.detach())
    assert hi < 4.1 and lo > 2.9 and close > 2.9
    hi0, _, _ = worst(_model()(b, noise=z).pos.detach())
    assert hi0 > 4.5


def test_guidance_also_separates_a_close_pair_that_was_not_an_edge_of_x_t():
    """A large step can bring together two residues that were farther apart than the cutoff in x_t: guidance
    restrains the denoised frame's own close pairs too."""
    from eghn_md.graph.separation import nonlocal_mask

    model = _model(**GUIDED)
    b = random_batch(SIZES, node_in=4, edge_in=2)
    far = b.edge_index[:, nonlocal_mask(b.edge_index, b.bonds, b.num_nodes)]
    x = b.pos.clone()
    i, j = 0, 4  # nodes of graph 0, ≥ 3 bonds apart on its chain; put j 1.5 Å from i
    assert bool(nonlocal_mask(torch.tensor([[i], [j]]), b.bonds, b.num_nodes))
    x[j] = x[i] + torch.tensor([1.5, 0.0, 0.0], dtype=x.dtype)
    no_edge = far[:, ~(((far[0] == i) & (far[1] == j)) | ((far[0] == j) & (far[1] == i)))]
    pairs = model._guided_pairs(x, b, no_edge)
    have = set(map(tuple, pairs.t().tolist()))
    assert (i, j) in have and (j, i) in have and set(map(tuple, no_edge.t().tolist())) <= have
    assert len(have) == pairs.shape[1]  # each pair once
    y = model.guide(x, b.bonds, pairs)
    assert float((y[i] - y[j]).norm()) > float((x[i] - x[j]).norm()) + 0.5


def test_nonlocal_pairs_match_the_validity_report():
    """The torch mask agrees with the validity report's definition (min_separation 3) on a chain with branches."""
    from eghn_md.graph.separation import nonlocal_mask
    from eghn_md.rollout.validity import near_pairs

    g = random_graph(12, generator=torch.Generator().manual_seed(0))
    extra = torch.tensor([[2, 9, 5, 11], [9, 2, 11, 5]])  # a cross-link makes a ring
    bonds = torch.cat([g.bonds, extra], dim=1)
    n = g.num_nodes
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    pairs = torch.stack([ii.reshape(-1), jj.reshape(-1)])
    near = set(near_pairs(bonds, n).tolist())
    want = torch.tensor([i != j and min(i, j) * n + max(i, j) not in near for i, j in pairs.t().tolist()])
    assert torch.equal(nonlocal_mask(pairs, bonds, n), want)


def test_denoiser_is_e3_equivariant():
    assert_equivariant(_denoise(_model()), random_batch(SIZES, node_in=4, edge_in=2), atol=1e-10, reflections=True)


@pytest.mark.parametrize("fn", [_sample, _denoise])
def test_permutation_equivariant(fn):
    assert_permutation_equivariant(fn(_model()), random_batch(SIZES, node_in=4, edge_in=2), atol=1e-10)


def test_replicas_are_batch_independent():
    """Replica r in a batch of R copies gives the sample a lone run gives with the same noise."""
    model = _model()
    gen = torch.Generator().manual_seed(3)
    g = random_graph(7, node_in=4, edge_in=2, generator=gen)
    replicas = [g.replace(vel=torch.randn(7, 3, generator=gen, dtype=torch.float64)) for _ in range(4)]
    assert_batch_independent(_sample(model), replicas, atol=1e-10)
    graphs = [random_graph(n, node_in=4, edge_in=2, generator=gen) for n in SIZES]
    assert_batch_independent(_sample(model), graphs, atol=1e-10)


def test_sampling_is_reproducible_for_a_seed_and_varies_between_seeds():
    model = _model()
    b = collate([random_graph(8, node_in=4, edge_in=2, generator=torch.Generator().manual_seed(1))] * 3)
    draw = lambda s: model(b, generator=torch.Generator().manual_seed(s)).pos.detach()  # noqa: E731
    torch.testing.assert_close(draw(5), draw(5), atol=0, rtol=0)
    a = draw(5)
    assert float((a - draw(6)).abs().max()) > 1e-3
    # the three replicas of one start got different noise, so they differ
    assert float((a[:8] - a[8:16]).abs().max()) > 1e-3


def test_markov_ignores_the_velocity_channel_and_noise_mean():
    """The sample reads x_t only, and a constant shift of the noise (removed per graph) changes nothing."""
    model = _model()
    b = random_batch(SIZES, node_in=4, edge_in=2)
    z = torch.randn(b.num_nodes, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    base = model(b, noise=z).pos
    torch.testing.assert_close(model(b.replace(vel=b.vel * 7.0 + 1.0), noise=z).pos, base, atol=1e-12, rtol=0)
    torch.testing.assert_close(model(b, noise=z + torch.tensor([1.0, -2.0, 0.5], dtype=z.dtype)).pos, base,
                               atol=1e-10, rtol=0)
    assert is_generative(model) and is_markov(model)
    assert not is_generative(build_model(ModelConfig(name="eghn", node_in=4, n_clusters=3)))


def test_one_euler_step_lands_on_the_denoiser_prediction():
    """With K = 1 the sample is the denoiser's x̂₁ at τ = 0 from the source x_t + σ z̃."""
    model = _model(steps=1)
    b = random_batch(SIZES, node_in=4, edge_in=2)
    z = torch.randn(b.num_nodes, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x0 = b.pos + model.sigma * centred_noise(z, b.batch, b.num_graphs)
    expected = model.denoise(b, x0, torch.zeros(b.num_nodes, dtype=torch.float64)).pos
    torch.testing.assert_close(model(b, noise=z).pos, expected, atol=1e-12, rtol=0)


def test_config_defaults_and_checks():
    cfg = ModelConfig(name="eghn", node_in=4, n_clusters=3, disp_scale=3.0, generative=True)
    assert cfg.flow_sigma == pytest.approx(3.0 / 3**0.5)
    model = build_model(cfg)
    assert isinstance(model, FlowModel) and model.net.embed.in_features == 4 + TIME_FEATURES
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg  # round trip through a checkpoint's dict
    assert ModelConfig(name="eghn", node_in=4, n_clusters=3).flow_sigma is None  # deterministic: unset
    for bad, match in (({"sampler": "rk4"}, "sampler 'rk4'.*euler, heun"), ({"sample_steps": 0}, "sample_steps"),
                       ({"flow_sigma": -1.0}, "flow_sigma"), ({"generative": "yes"}, "generative")):
        with pytest.raises(UsageError, match=match):
            ModelConfig(name="eghn", node_in=4, n_clusters=3, **bad)
