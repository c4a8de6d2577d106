"""`--features residue|paper|both|sequence`, the `paper` / `paper-eghn` presets, the optimiser, `--clusters 1`."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from _data import run_cli
from eghn_md.data.dataset import Dataset
from eghn_md.errors import DataError, UsageError
from eghn_md.graph.features import feature_spec_for, node_features
from eghn_md.testing.synthetic import random_graph
from eghn_md.train.config import resolve_config
from eghn_md.train.loop import TrainConfig, fit

pytest.importorskip("MDAnalysisTests")

SMALL = """\
model: {hidden: 8, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 3}
data: {horizon: 5, window_stride: 8}
train: {epochs: 1, batch_size: 8, patience: 0}
"""


def test_feature_sets(adk_h5):
    with Dataset(adk_h5) as ds:
        nodes = ds.nodes
    q = np.asarray(nodes.charge, dtype=np.float64)
    paper = node_features(nodes, feature_spec_for("paper", nodes))
    np.testing.assert_allclose(paper[:, 0], q / np.abs(q).max(), rtol=1e-6)
    assert paper.shape == (214, 1) and np.abs(paper).max() == pytest.approx(1.0)
    both = node_features(nodes, feature_spec_for("both", nodes))
    assert both.shape == (214, 22) and np.array_equal(both[:, -1], paper[:, 0])
    assert feature_spec_for("both", nodes).names()[-1] == "charge/max|charge|"
    residue = node_features(nodes, feature_spec_for("residue", nodes))
    assert residue.shape == (214, 21)
    with pytest.raises(ValueError, match="'atoms'.*valid: residue, paper, both, sequence"):
        feature_spec_for("atoms", nodes)


def test_sequence_features_name_each_residue(adk_h5):
    """The sequence block is [sin(πks), cos(πks)] of the residue's place along the chain: the residue one-hots
    unchanged, s = 0 … 1 from the first residue to the last, every residue a distinct row."""
    with Dataset(adk_h5) as ds:
        nodes = ds.nodes
    spec = feature_spec_for("sequence", nodes)
    h = node_features(nodes, spec)
    assert h.shape == (214, 21 + 14) and spec.n_features == 35 and len(spec.names()) == 35
    np.testing.assert_array_equal(h[:, :21], node_features(nodes, feature_spec_for("residue", nodes)))
    s = np.arange(214) / 213
    np.testing.assert_allclose(h[:, 21], np.sin(np.pi * s), atol=1e-6)  # k = 1
    np.testing.assert_allclose(h[:, 34], np.cos(64 * np.pi * s), atol=1e-5)  # k = 64
    assert len({tuple(np.round(row, 4)) for row in h[:, 21:]}) == 214
    assert type(spec).from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("features, node_in, edge_in, edge_mode", [
    ("paper", 2, 2, "distance"), ("both", 23, 3, "data+distance"), (None, 21, 1, "data"),
    ("sequence", 35, 1, "data")])
def test_train_with_features(adk_h5, tmp_path, features, node_in, edge_in, edge_mode):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    run = tmp_path / "run"
    args = ["train", adk_h5, "-o", run, "--config", cfg, "--model", "eghn-published", "--quiet", "--device", "cpu"]
    res = run_cli(*args, *(["--features", features] if features else []))
    assert res.exit_code == 0, res.output
    ckpt = torch.load(run / "model.pt", weights_only=False)
    m = ckpt["model_config"]
    assert (m["node_in"], m["edge_in"], m["edge_features"]) == (node_in, edge_in, edge_mode)
    assert m["speed_feature"] is (features in ("paper", "both"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["splits"]["test"]["model"])


def test_paper_features_need_charges_and_name_the_dataset(adk_h5, tmp_path):
    old = tmp_path / "no_charges.h5"  # a dataset made from a topology without charges
    shutil.copy(adk_h5, old)
    with h5py.File(old, "r+") as f:
        del f["nodes/charge"]
    with Dataset(old) as ds, pytest.raises(DataError, match="stores no charges.*use features residue"):
        feature_spec_for("paper", ds.nodes, what=f"dataset {str(old)!r}")
    res = run_cli("train", old, "-o", tmp_path / "run", "--features", "paper", "--quiet", "--device", "cpu")
    assert res.exit_code != 0
    assert "no_charges.h5" in res.output and "stores no charges" in res.output
    assert "Traceback" not in res.output


def test_eghn_rejects_one_cluster(adk_h5, tmp_path):
    res = run_cli("train", adk_h5, "-o", tmp_path / "run", "--preset", "tiny", "--clusters", "1", "--quiet")
    assert res.exit_code != 0
    assert "eghn needs n_clusters >= 2, got 1" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()


def test_paper_preset_is_the_authors_protocol():
    c = resolve_config(preset="paper")
    assert c.model["name"] == "eghn-published" and c.data.features == "paper"
    assert (c.model["hidden"], c.model["n_layers"], c.model["n_pool_layers"], c.model["n_decoder_layers"],
            c.model["n_clusters"], c.train.reg_weight) == (128, 4, 4, 2, 20, 2.0)  # λ: one home, the train section
    assert all(c.model[k] == 1.0 for k in ("length_scale", "vel_scale", "disp_scale"))
    t = c.train
    assert (t.optimizer, t.lr, t.weight_decay, t.batch_size, t.schedule, t.grad_clip, t.eval_every, t.patience) == (
        "adam", 5e-5, 1e-4, 8, "none", 0.0, 5, 50)
    e = resolve_config(preset="paper-eghn")
    assert e.model["name"] == "eghn" and e.data.features == "residue"
    assert (e.train.optimizer, e.train.grad_clip) == ("adamw", 10.0)
    assert resolve_config(preset="default").train.optimizer == "adamw"  # the old behaviour stays the default
    with pytest.raises(UsageError, match="'sgd'.*valid choices: adamw, adam"):
        TrainConfig(optimizer="sgd")


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_optimizer_option_builds_that_optimizer(monkeypatch, name, cls):
    built = []
    real = cls

    class Spy(real):
        def __init__(self, *a, **kw):
            built.append(real)
            super().__init__(*a, **kw)

    monkeypatch.setattr(torch.optim, cls.__name__, Spy)
    from eghn_md.models import ModelConfig, build_model

    gen = torch.Generator().manual_seed(0)
    graphs = [random_graph(6, node_in=2, generator=gen) for _ in range(4)]
    model = build_model(ModelConfig(name="egnn", node_in=2, hidden=4, n_layers=1)).double()
    fit(model, graphs, graphs[:2], config=TrainConfig(epochs=1, batch_size=2, optimizer=name, device="cpu"))
    assert built == [real]
