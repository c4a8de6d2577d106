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


def _nonlocal_pairs(batch, bonds):
    """All non-local pairs (2, P) of the graphs of ``batch`` (N,) graph ids, dense (both directions)."""
    from eghn_md.graph.separation import nonlocal_mask

    n = batch.shape[0]
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    pairs = torch.stack([ii.reshape(-1), jj.reshape(-1)])
    return pairs[:, (batch[pairs[0]] == batch[pairs[1]]) & nonlocal_mask(pairs, bonds, n)]


def test_guidance_puts_bonds_into_range_and_separates_non_local_pairs():
    """Random graphs have bonds of ~7 Å and close pairs; guided samples have them within the restraints' ranges
    (every non-local pair of a graph no closer than the floor), unguided ones not."""
    b = random_batch(SIZES, node_in=4, edge_in=2)
    z = torch.randn(b.num_nodes, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    far = _nonlocal_pairs(b.batch, b.bonds)

    def worst(x):
        bond = (x[b.bonds[0]] - x[b.bonds[1]]).norm(dim=1)
        return float(bond.max()), float(bond.min()), float((x[far[0]] - x[far[1]]).norm(dim=1).min())

    hi, lo, close = worst(_model(**GUIDED)(b, noise=z).pos.detach())
    assert hi < 4.1 and lo > 2.9 and close > 2.9
    hi0, _, _ = worst(_model()(b, noise=z).pos.detach())
    assert hi0 > 4.5


def test_guidance_also_separates_a_close_pair_that_was_not_an_edge_of_x_t():
    """A large step can bring together two residues that were farther apart than the cutoff in x_t: guidance
    restrains every non-local pair of the denoised frame, not only the edges of x_t."""
    from eghn_md.graph.separation import nonlocal_mask

    model = _model(**GUIDED)
    b = random_batch(SIZES, node_in=4, edge_in=2)
    x = b.pos.clone()
    i, j = 0, 4  # nodes of graph 0, ≥ 3 bonds apart on its chain; put j 1.5 Å from i
    assert bool(nonlocal_mask(torch.tensor([[i], [j]]), b.bonds, b.num_nodes))
    x[j] = x[i] + torch.tensor([1.5, 0.0, 0.0], dtype=x.dtype)
    y = model.guide(x, b.bonds, b.batch)
    assert float((y[i] - y[j]).norm()) > float((x[i] - x[j]).norm()) + 0.5


def _guide_all_pairs(x, bonds, batch, *, bond_range, floor):
    """Reference guidance, float64: the same :data:`GUIDE_ITERATIONS` gradient steps, the clash term summed over
    ALL non-local pairs of each graph (dense O(N²) pair list, no neighbour list). Returns the guided frame and the
    number of neighbour lists the guidance should build: one at the start, one more at each iteration whose frame
    has a node moved by ≥ GUIDE_MARGIN / 2 from the frame of the last build."""
    from eghn_md.models.generative import GUIDE_ITERATIONS, GUIDE_MARGIN, GUIDE_RATE

    pairs = _nonlocal_pairs(batch, bonds)
    built, builds = x, 1
    for _ in range(GUIDE_ITERATIONS):
        if float((x - built).norm(dim=1).max()) >= GUIDE_MARGIN / 2:
            built, builds = x, builds + 1
        d = x[bonds[0]] - x[bonds[1]]
        r = d.norm(dim=1, keepdim=True)
        f = torch.relu(r - bond_range[1]) - torch.relu(bond_range[0] - r)
        push = torch.zeros_like(x).index_add_(0, bonds[0], f * d / r)
        d = x[pairs[0]] - x[pairs[1]]
        r = d.norm(dim=1, keepdim=True)
        push = push - torch.zeros_like(x).index_add_(0, pairs[0], torch.relu(floor - r) * d / r)
        x = x - GUIDE_RATE * push
    return x, builds


def _count_list_builds(monkeypatch):
    """Replace :func:`~eghn_md.models.generative.clash_candidates` by a wrapper counting its calls (a list)."""
    import eghn_md.models.generative as generative

    calls, build = [], generative.clash_candidates
    monkeypatch.setattr(generative, "clash_candidates", lambda *a: calls.append(1) or build(*a))
    return calls


def test_guidance_keeps_apart_a_pair_that_it_pushes_into_contact(monkeypatch):
    """A stretched bond A–B pulls A past C (another chain): A–C is 6.8 Å at the start, outside the first neighbour
    list (floor + margin = 5 Å), and the bond alone would leave it at 2.5 Å. The list is rebuilt as A moves, so
    A–C ends at the floor, as the all-pairs reference has it."""
    from eghn_md.models.generative import GUIDE_MARGIN

    x = torch.tensor([[0.0, 0.0, 0.0], [14.0, 0.0, 0.0], [6.5, 2.0, 0.0]], dtype=torch.float64)  # A, B, C
    bonds, batch = torch.tensor([[0, 1], [1, 0]]), torch.zeros(3, dtype=torch.long)
    assert float((x[0] - x[2]).norm()) > GUIDED["contact_floor"] + GUIDE_MARGIN
    bond_only = _model(**{**GUIDED, "contact_floor": None}).guide(x, bonds, batch)
    assert float((bond_only[0] - bond_only[2]).norm()) < 2.6
    builds = _count_list_builds(monkeypatch)
    y = _model(**GUIDED).guide(x, bonds, batch)
    assert abs(float((y[0] - y[2]).norm()) - 3.0) < 1e-3 and abs(float((y[0] - y[1]).norm()) - 4.0) < 1e-3
    ref, want_builds = _guide_all_pairs(x, bonds, batch, bond_range=GUIDED["bond_range"],
                                        floor=GUIDED["contact_floor"])
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)
    assert len(builds) == want_builds >= 2


def test_guidance_equals_the_all_pairs_reference(monkeypatch):
    """On a crumpled random chain (bonds of 1.6–4.8 Å, 17 of 39 too short and 12 too long; 36 non-local pairs
    closer than the floor) and an overlapping copy of it in a second graph, the neighbour-list guidance is the dense
    all-pairs computation to 1e-12 Å (float64), with the list rebuilt exactly when a node has moved by half the
    margin since the last build."""
    gen = torch.Generator().manual_seed(11)
    n = 40
    steps = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen, dtype=torch.float64), dim=1)
    one = torch.cumsum(steps * (2.0 + 4.0 * torch.rand(n, 1, generator=gen, dtype=torch.float64)), 0) * 0.8
    x = torch.cat([one, one + torch.randn(n, 3, generator=gen, dtype=torch.float64)])
    chain = torch.arange(n - 1)
    bonds = torch.cat([torch.stack([chain, chain + 1]), torch.stack([chain + 1, chain])], dim=1)
    bonds = torch.cat([bonds, bonds + n], dim=1)
    batch = torch.arange(2).repeat_interleave(n)
    builds = _count_list_builds(monkeypatch)
    y = _model(**GUIDED).guide(x, bonds, batch)
    ref, want_builds = _guide_all_pairs(x, bonds, batch, bond_range=GUIDED["bond_range"],
                                        floor=GUIDED["contact_floor"])
    assert float((y - x).abs().max()) > 1.0  # guidance did move the chain
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)
    assert len(builds) == want_builds >= 2


def test_guidance_builds_its_neighbour_list_once_for_a_valid_frame(monkeypatch):
    """A frame that already satisfies the restraints does not move: one list, built from the denoised frame."""
    x = torch.tensor([[0.0, 0.0, 0.0], [3.5, 0.0, 0.0], [7.0, 0.0, 0.0], [10.5, 0.0, 0.0], [7.0, 3.5, 0.0]],
                     dtype=torch.float64)
    bonds = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    builds = _count_list_builds(monkeypatch)
    y = _model(**GUIDED).guide(x, bonds, torch.zeros(5, dtype=torch.long))
    assert len(builds) == 1
    torch.testing.assert_close(y, x, atol=0, rtol=0)


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
