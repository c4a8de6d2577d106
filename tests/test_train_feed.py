"""The training input pipeline (eghn_md.train.feed): worker processes change nothing in the training (bit for bit,
also across a resume), each rank builds only its own samples, and the --workers / --compile options reach the loop."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from _data import run_cli
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.testing.synthetic import chain_graph
from eghn_md.train.feed import BatchFeed, default_workers, resolve_workers
from eghn_md.train.loop import TrainConfig, fit, objective_from_config


def _graphs():
    graphs = [chain_graph(30 + 5 * k, node_in=6, seed=k, cutoff=6.0) for k in range(11)]
    return [g.replace(edge_attr=g.edge_attr[:, :0]) for g in graphs]


def _model():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="eghn", node_in=6, hidden=8, n_layers=1, n_pool_layers=1,
                                   n_decoder_layers=1, n_clusters=3, length_scale=4.0))


def _config(workers, epochs=2):
    # noise on: the per-sample noise is drawn in the workers and must equal the main process's
    return TrainConfig(epochs=epochs, batch_size=3, lr=1e-2, seed=5, device="cpu", patience=0, workers=workers,
                       max_chunk_nodes=80, noise_std=0.05, noise_scale=0.02)


def _assert_same_training(a, b):
    assert len(a.history) == len(b.history)
    for ra, rb in zip(a.history, b.history, strict=True):
        for key in ("train_loss", "train_mse", "train_reg", "val_mse", "lr"):
            assert ra[key] == rb[key], (ra["epoch"], key, ra[key], rb[key])
    for k, v in a.last_state.model_state.items():
        assert torch.equal(b.last_state.model_state[k], v), k


def test_workers_give_bit_identical_training():
    g = _graphs()
    serial = fit(_model(), g[:9], g[9:], config=_config(0))
    for workers in (1, 2):
        _assert_same_training(serial, fit(_model(), g[:9], g[9:], config=_config(workers)))


def test_resume_with_workers_follows_the_uninterrupted_run():
    g = _graphs()
    states = []
    # a deep copy, as the checkpoint file would be (the optimiser state dict shares the live moment tensors)
    full = fit(_model(), g[:9], g[9:], config=_config(0, epochs=3),
               on_epoch_end=lambda s, best: states.append(copy.deepcopy(s)))
    resumed = fit(_model(), g[:9], g[9:], config=_config(2, epochs=3), resume=states[0])
    _assert_same_training(full, resumed)


class _Recording(list):
    """A sample list that records which indices were built."""

    def __init__(self, items):
        super().__init__(items)
        self.built = []

    def __getitem__(self, i):
        self.built.append(int(i))
        return super().__getitem__(i)


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_each_rank_builds_only_its_share(rank):
    data = _Recording(_graphs()[:10])
    cfg = _config(0)
    feed = BatchFeed(data, config=cfg, objective=objective_from_config(cfg), workers=0, rank=rank, world=3)
    order = [7, 2, 9, 0, 4, 1, 8, 3, 6, 5]  # batches of 3: [7 2 9] [0 4 1] [8 3 6] and [5] (too small for 3 ranks)
    batches = list(feed.epoch(order, epoch=1))
    expected = [b[rank] for b in ([7, 2, 9], [0, 4, 1], [8, 3, 6])]
    assert data.built == expected
    assert [p.n_global for p in batches] == [3, 3, 3]
    assert [sum(piece.num_graphs for piece in p.pieces) for p in batches] == [1, 1, 1]


def test_worker_count_validation_and_default():
    with pytest.raises(UsageError, match=r"workers must be .*got -1"):
        TrainConfig(workers=-1)
    with pytest.raises(UsageError, match=r"workers must be .*got 1\.5"):
        TrainConfig(workers=1.5)
    with pytest.raises(UsageError, match=r"compile must be true or false, got 'yes'"):
        TrainConfig(compile="yes")
    assert TrainConfig(workers=None).workers is None and TrainConfig(workers=2.0).workers == 2
    assert default_workers(torch.device("cpu")) == 0
    assert 0 <= default_workers(torch.device("cuda")) <= 4
    assert resolve_workers(None, torch.device("cpu")) == 0 and resolve_workers(3, torch.device("cpu")) == 3


def test_train_workers_and_compile_options_reach_the_loop(adk_h5, tmp_path, monkeypatch):
    import eghn_md.train.loop as loop

    compiled = []
    monkeypatch.setattr(loop, "compile_model", lambda m: compiled.append(type(m).__name__) or m)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name: egnn, hidden: 8, n_layers: 1}\ndata: {horizon: 5, window_stride: 6}\n"
                   "train: {epochs: 1, batch_size: 4}\n")
    out = tmp_path / "run"
    res = run_cli("train", adk_h5, "-o", str(out), "--config", str(cfg), "--device", "cpu",
                  "--workers", "1", "--compile", "--quiet")
    assert res.exit_code == 0, res.output
    train = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert train["workers"] == 1 and train["compile"] is True
    assert len(compiled) == 1
    res = run_cli("train", adk_h5, "-o", str(tmp_path / "bad"), "--workers", "-2")
    assert res.exit_code == 2 and "-2" in res.output


def test_rollout_compile_option_reaches_the_model(tiny_run, adk, tmp_path, monkeypatch):
    import eghn_md.rollout.rollout as rr

    compiled = []
    monkeypatch.setattr(rr, "compile_model", lambda m: compiled.append(m) or m)
    out = tmp_path / "pred.dcd"
    res = run_cli("rollout", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"], "--steps", "2",
                  "-o", str(out), "--compile", "--device", "cpu", "--quiet", "--json")
    assert res.exit_code == 0, res.output
    assert len(compiled) == 1 and out.exists()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile is not available in this torch build")
def test_compiled_training_matches_eager():
    g = _graphs()
    cfg = dict(epochs=1, batch_size=3, lr=1e-2, seed=5, device="cpu", patience=0)
    eager = fit(_model(), g[:6], g[9:], config=TrainConfig(**cfg))
    compiled = fit(_model(), g[:6], g[9:], config=TrainConfig(**cfg, compile=True))
    for ra, rb in zip(eager.history, compiled.history, strict=True):
        for key in ("train_loss", "val_mse"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4), key


def test_rotation_augmentation_is_a_seeded_proper_rotation_of_every_frame():
    from eghn_md.errors import UsageError
    from eghn_md.testing.synthetic import chain_graph
    from eghn_md.train.feed import with_noise, with_rotation
    from eghn_md.train.options import TrainConfig

    g = chain_graph(20, node_in=4, dtype=torch.float64)
    g = g.replace(future=(g.target + 0.5 * g.vel).unsqueeze(1))
    r = with_rotation(g, seed=3, epoch=2, index=5)
    centre = g.pos.mean(dim=0)
    # the map x ↦ R (x − c) + c of every frame: one R, orthogonal with det +1, recovered by least squares
    a, b = torch.cat([g.pos, g.target, g.future[:, 0]]) - centre, torch.cat([r.pos, r.target, r.future[:, 0]]) - centre
    rot = torch.linalg.lstsq(a, b).solution.T
    assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=rot.dtype), atol=1e-10)
    assert float(torch.linalg.det(rot)) == pytest.approx(1.0) and not torch.allclose(rot, torch.eye(3, dtype=rot.dtype))
    assert torch.allclose(r.vel, g.vel @ rot.T, atol=1e-10) and torch.equal(r.h, g.h)
    assert torch.equal(with_rotation(g, seed=3, epoch=2, index=5).pos, r.pos)
    assert not torch.allclose(with_rotation(g, seed=3, epoch=3, index=5).pos, r.pos)
    plain = with_noise(g, noise_std=0.0, noise_scale=0.0, seed=3, epoch=2, index=5)
    assert plain is g and torch.equal(with_noise(g, noise_std=0.0, noise_scale=0.0, seed=3, epoch=2, index=5,
                                                 rotate=True).pos, r.pos)
    with pytest.raises(UsageError, match="rotate"):
        TrainConfig(rotate="yes")
