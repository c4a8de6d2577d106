"""The contact prior of a generative model: its pair statistics against a direct computation, exact E(3) and
permutation equivariance of sampling with the prior on (float64), the prior's edges and scalars, training and
rolling out through the CLI with a weights-only checkpoint, and the errors for a wrong node count or model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _data import run_cli
from eghn_md.data.batch import collate
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.models.contact_prior import add_prior_edges, pair_statistics
from eghn_md.testing.equivariance import assert_equivariant, permute_batch
from eghn_md.testing.synthetic import random_graph

N = 9


def _frames(t=5, n=N, seed=0):
    """A chain of ``n`` nodes ~3.8 Å apart, folded back on itself, jittered over ``t`` frames (T, n, 3) [Å]."""
    rng = np.random.default_rng(seed)
    angle = np.linspace(0, 1.6 * np.pi, n)
    base = np.stack([4.0 * np.cos(angle), 4.0 * np.sin(angle), np.linspace(0, 3, n)], axis=1)
    return base[None] + 0.3 * rng.standard_normal((t, n, 3))


def _chain_bonds(n=N):
    b = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    return torch.cat([b, b.flip(0)], dim=1)


def test_pair_statistics_match_a_direct_computation():
    frames, bonds, cutoff = _frames(), _chain_bonds(), 7.0
    pairs, mean, std = pair_statistics(frames, bonds=bonds, cutoff=cutoff)
    d = np.linalg.norm(frames[:, :, None] - frames[:, None, :], axis=3)  # (T, N, N)
    want = [(i, j) for i in range(N) for j in range(i + 3, N) if d[:, i, j].mean() < cutoff]
    assert 0 < len(want) < N * (N - 1) // 2 - 2 * N  # the cutoff keeps some pairs and drops others
    assert [tuple(p) for p in pairs.t().tolist()] == want
    ii, jj = np.array(want).T
    np.testing.assert_allclose(mean.numpy(), d[:, ii, jj].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std.numpy(), d[:, ii, jj].std(axis=0), rtol=1e-9, atol=1e-12)
    # separation: 2 keeps the pairs two bonds apart, 3 (the default) never has them
    p2, _, _ = pair_statistics(torch.as_tensor(frames), bonds=bonds, cutoff=cutoff, min_separation=2)
    assert (p2[1] - p2[0] == 2).any() and not (pairs[1] - pairs[0] < 3).any()
    # subsampling: every other frame of 5 → frames 0, 2, 4
    p3, m3, _ = pair_statistics(frames, bonds=bonds, cutoff=100.0, max_frames=3)
    k = p3.shape[1] // 2
    a, b = int(p3[0, k]), int(p3[1, k])
    assert m3[k].item() == pytest.approx(d[[0, 2, 4], a, b].mean(), rel=1e-12)
    with pytest.raises(ValueError, match="min_separation must be one of 1, 2, 3"):
        pair_statistics(frames, bonds=bonds, cutoff=cutoff, min_separation=4)


def test_prior_fraction_takes_in_the_contacts_of_a_state_visited_part_of_the_time():
    """``min_fraction`` f: a pair within the cutoff in 40 % of the frames (mean distance beyond it) joins the prior
    for f ≤ 0.4 and not for f = 0 (mean criterion) or 0.5; the statistics stay those over all frames."""
    frames, bonds, cutoff = _frames(t=10), _chain_bonds(), 7.0
    frames[6:, N - 1] += np.array([30.0, 0.0, 0.0])  # the last node leaves in frames 6–9: near only in 0–5
    frames[:2, N - 1] += np.array([30.0, 0.0, 0.0])  # … and in 0–1: near in frames 2–5, 40 %
    d = np.linalg.norm(frames[:, :, None] - frames[:, None, :], axis=3)
    near = [i for i in range(N - 3) if (d[2:6, i, N - 1] < cutoff).all()]
    assert near and all(d[:, i, N - 1].mean() > cutoff for i in near)
    by_mean, _, _ = pair_statistics(frames, bonds=bonds, cutoff=cutoff)
    assert not any(int(b) == N - 1 for b in by_mean[1])
    for f, wanted in ((0.3, True), (0.4, True), (0.5, False)):
        pairs, mean, _ = pair_statistics(frames, bonds=bonds, cutoff=cutoff, min_fraction=f)
        got = [(int(a), int(b)) for a, b in pairs.t()]
        assert all(((i, N - 1) in got) == wanted for i in near), f
        if wanted:
            k = got.index((near[0], N - 1))
            assert float(mean[k]) == pytest.approx(d[:, near[0], N - 1].mean(), rel=1e-12)
    with pytest.raises(ValueError, match="min_fraction must be in"):
        pair_statistics(frames, bonds=bonds, cutoff=cutoff, min_fraction=1.5)
    with pytest.raises(UsageError, match="prior_fraction chooses the pairs of the contact prior"):
        ModelConfig(name="eghn", node_in=4, generative=True, prior_fraction=0.3)
    for bad in (-0.1, 1.2, True, "0.3"):
        with pytest.raises(UsageError, match="prior_fraction must be"):
            ModelConfig(name="eghn", node_in=4, generative=True, contact_prior=True, prior_fraction=bad)


def test_prior_edges_are_added_once_with_their_scalars():
    """Two graphs of 4 nodes: edge (0, 1) already there keeps its scalar and gets the prior's; (0, 3) is new."""
    ei = torch.tensor([[0, 1, 4, 5], [1, 0, 5, 4]])
    ea = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    idx, mean, std = torch.tensor([[0, 0], [1, 3]]), torch.tensor([3.8, 6.0]), torch.tensor([0.1, 0.5])
    out_i, out_a = add_prior_edges(ei, ea, index=idx, mean=mean, std=std, ptr=torch.tensor([0, 4, 8]))
    got = {tuple(e): tuple(round(v, 6) for v in a) for e, a in zip(out_i.t().tolist(), out_a.tolist(), strict=True)}
    assert got == {(0, 1): (1, 1, 0.38, 0.1), (1, 0): (1, 1, 0.38, 0.1), (0, 3): (0, 1, 0.6, 0.5),
                   (3, 0): (0, 1, 0.6, 0.5), (4, 5): (1, 1, 0.38, 0.1), (5, 4): (1, 1, 0.38, 0.1),
                   (4, 7): (0, 1, 0.6, 0.5), (7, 4): (0, 1, 0.6, 0.5)}
    keys = out_i[0] * 8 + out_i[1]
    assert torch.equal(keys, torch.sort(keys).values)  # sorted by receiver, no duplicates


def _model(index, mean, std, *, steps=3, seed=0, name="eghn", edge_features="data"):
    torch.manual_seed(seed)
    cfg = ModelConfig(name=name, node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2, n_clusters=3,
                      length_scale=3.0, disp_scale=1.5, generative=True, sample_steps=steps, contact_prior=True,
                      prior_nodes=N, prior_pairs=int(index.shape[1]), edge_features=edge_features)
    model = build_model(cfg).double().eval()
    model.set_contact_prior(index, mean, std)
    return model


def _prior():
    pairs, mean, std = pair_statistics(_frames(), bonds=_chain_bonds(), cutoff=7.0)
    return pairs, mean, std


def _graphs(k=3):
    gen = torch.Generator().manual_seed(5)
    return [random_graph(N, node_in=4, edge_in=2, generator=gen) for _ in range(k)]


def _sample(model):
    return lambda b: model(b, noise=b.vel).pos.detach()  # noise in the velocity channel, which the model does not read


@pytest.mark.parametrize("name,edges", [("eghn", "data"), ("eghn", "distance"), ("egnn", "data")])
def test_sampling_with_the_prior_is_e3_equivariant_and_reads_the_prior(name, edges):
    model = _model(*_prior(), name=name, edge_features=edges)
    batch = collate(_graphs())
    assert_equivariant(_sample(model), batch, atol=1e-10, reflections=True, n_trials=2)
    with_prior = _sample(model)(batch)
    model.prior_mean.mul_(1.5)  # another prior, the same weights: another sample
    assert float((_sample(model)(batch) - with_prior).abs().max()) > 1e-6


def test_sampling_is_permutation_equivariant_with_the_prior_relabelled():
    """Nodes permuted AND the prior's pairs mapped through the permutation: the sample is the permuted sample."""
    index, mean, std = _prior()
    g = _graphs(1)[0]
    base = _sample(_model(index, mean, std))(g)
    pg, perm = permute_batch(g, seed=3)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(N)
    got = _sample(_model(inv[index], mean, std))(pg)
    torch.testing.assert_close(got, base[perm], atol=1e-10, rtol=1e-10)


def test_a_graph_of_another_size_is_refused():
    model = _model(*_prior())
    other = random_graph(N + 2, node_in=4, edge_in=2, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=f"graph 1 of the batch has {N + 2} nodes.*computed for {N} nodes"):
        model(collate([_graphs(1)[0], other]))


def test_contact_prior_needs_a_generative_model():
    with pytest.raises(UsageError, match="contact_prior needs a generative model"):
        ModelConfig(name="eghn", node_in=4, contact_prior=True)
    with pytest.raises(UsageError, match="contact_prior must be true or false"):
        ModelConfig(name="eghn", node_in=4, generative=True, contact_prior="yes")
    from eghn_md.models.registry import ignored_option_warnings

    ignored = ignored_option_warnings(ModelConfig(name="linear", node_in=4, generative=True, contact_prior=True))
    assert any("reads no edge scalars, so contact_prior true is ignored" in m for m in ignored)
    assert ignored_option_warnings(ModelConfig(name="eghn", node_in=4, generative=True, contact_prior=True)) == []


PRIOR_CONFIG = """\
model: {contact_prior: true, hidden: 8, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 4,
        sample_steps: 2}
data: {horizon: 5, window_stride: 6}
train: {epochs: 1, batch_size: 8}
"""


def test_train_then_roll_out_from_one_structure(adk_h5, tmp_path):
    from MDAnalysisTests.datafiles import PDB_small  # adk_open.pdb: one frame of the 214 Cα of AdK

    from eghn_md.train.checkpoint import load_model

    (tmp_path / "c.yaml").write_text(PRIOR_CONFIG)
    run_cli("train", adk_h5, "-o", tmp_path / "run", "--preset", "generative", "--config", tmp_path / "c.yaml",
            "--quiet", "--device", "cpu", expect=0)
    ckpt = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    cfg = ckpt["model_config"]
    assert cfg["contact_prior"] and cfg["prior_nodes"] == 214 and cfg["prior_pairs"] > 214
    model, _ = load_model(tmp_path / "run" / "model.pt")
    assert model.prior_index.shape == (2, cfg["prior_pairs"]) and float(model.prior_mean.min()) > 3.0
    assert bool((model.prior_index[1] - model.prior_index[0] >= 3).all())
    res = run_cli("rollout", tmp_path / "run" / "model.pt", PDB_small, "--steps", "3", "--replicas", "2",
                  "-o", tmp_path / "o.dcd", "--quiet", expect=0)
    assert "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.glob("o_r*.dcd")) == ["o_r0.dcd", "o_r1.dcd"]
    # prior_fraction 0.3 takes in more pairs (those within the cutoff in ≥ 30 % of the frames) and is saved
    (tmp_path / "f.yaml").write_text(PRIOR_CONFIG.replace("contact_prior: true", "contact_prior: true, "
                                                          "prior_fraction: 0.3"))
    run_cli("train", adk_h5, "-o", tmp_path / "frac", "--preset", "generative", "--config", tmp_path / "f.yaml",
            "--quiet", "--device", "cpu", expect=0)
    frac = torch.load(tmp_path / "frac" / "model.pt", weights_only=True)["model_config"]
    assert frac["prior_fraction"] == 0.3 and frac["prior_pairs"] > cfg["prior_pairs"]
    # a resumed run rebuilds the prior's buffers from its checkpoint and keeps them
    run_cli("train", adk_h5, "-o", tmp_path / "run", "--resume", "--epochs", "2", "--quiet", expect=0)
    resumed = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["state_dict"]
    assert torch.equal(resumed["prior_index"], model.prior_index)
    assert torch.equal(resumed["prior_mean"], model.prior_mean)
