"""The training loop: processing a batch in pieces gives the same training as processing it whole (float64; the
first test on ``--device``)."""

from __future__ import annotations

import pytest
import torch

from eghn_md.models import ModelConfig, build_model
from eghn_md.testing.synthetic import chain_graph
from eghn_md.train.loop import TrainConfig, fit


def _fit(max_chunk_nodes, device="cpu"):
    graphs = [chain_graph(40 + 7 * k, node_in=6, seed=k, cutoff=6.0, dtype=torch.float64) for k in range(10)]
    graphs = [g.replace(edge_attr=g.edge_attr[:, :0]) for g in graphs]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="eghn", node_in=6, hidden=8, n_layers=1, n_pool_layers=1,
                                    n_decoder_layers=1, n_clusters=3, length_scale=4.0)).double()
    cfg = TrainConfig(epochs=2, batch_size=5, lr=1e-2, seed=0, device=str(device), patience=0,
                      max_chunk_nodes=max_chunk_nodes)
    return fit(model, graphs[:8], graphs[8:], config=cfg)


def test_batch_in_pieces_gives_the_same_training(device):
    # 60 nodes: every batch of 5 graphs (40..103 nodes each) in 5 pieces
    whole, pieces = _fit(0, device), _fit(60, device)
    for a, b in zip(whole.history, pieces.history, strict=True):
        for key in ("train_loss", "train_mse", "train_reg", "val_mse"):
            assert b[key] == pytest.approx(a[key], rel=1e-9), key
    for k, v in whole.best_state.items():
        torch.testing.assert_close(pieces.best_state[k], v, rtol=1e-7, atol=1e-9)


def _small_fit(**kw):
    graphs = [chain_graph(30, node_in=6, seed=k, cutoff=6.0, dtype=torch.float64) for k in range(6)]
    graphs = [g.replace(edge_attr=g.edge_attr[:, :0]) for g in graphs]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="egnn", node_in=6, hidden=8, n_layers=1, length_scale=4.0)).double()
    cfg = TrainConfig(**{"epochs": 6, "batch_size": 2, "lr": 1e-2, "seed": 0, "device": "cpu", **kw})
    return fit(model, graphs[:4], graphs[4:], config=cfg)


def test_eval_every_validates_every_kth_epoch_and_the_last():
    res = _small_fit(eval_every=4, patience=0)
    evaluated = [r["epoch"] for r in res.history if r["val_mse"] == r["val_mse"]]
    assert evaluated == [4, 6]


def test_early_stopping_after_patience_bad_evaluations():
    # a step size below float resolution: the validation error never improves after epoch 1
    res = _small_fit(epochs=40, lr=1e-30, patience=2)
    assert res.stopped_early and len(res.history) == 3 and res.best_epoch == 1


def test_plateau_schedule_halves_the_rate_after_bad_evaluations():
    res = _small_fit(epochs=10, lr=1e-30, schedule="plateau", patience=0)
    lrs = [r["lr"] for r in res.history]
    # ReduceLROnPlateau(factor 0.5, patience 5): the 6th evaluation without improvement (epoch 7) halves the rate
    assert lrs[:7] == [1e-30] * 7 and lrs[7] == pytest.approx(5e-31)


def test_non_finite_loss_is_a_divergence_error():
    from eghn_md.errors import DivergenceError

    with pytest.raises(DivergenceError, match="training loss became"):
        _small_fit(lr=1e30, grad_clip=0.0, epochs=3)
