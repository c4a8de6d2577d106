"""The training loop: processing a batch in pieces gives the same training as processing it whole (float64)."""

from __future__ import annotations

import pytest
import torch

from eghn_md.models import ModelConfig, build_model
from eghn_md.testing.synthetic import chain_graph
from eghn_md.train.loop import TrainConfig, fit


def _fit(max_chunk_nodes):
    graphs = [chain_graph(40 + 7 * k, node_in=6, seed=k, cutoff=6.0, dtype=torch.float64) for k in range(10)]
    graphs = [g.replace(edge_attr=g.edge_attr[:, :0]) for g in graphs]
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="eghn", node_in=6, hidden=8, n_layers=1, n_pool_layers=1,
                                    n_decoder_layers=1, n_clusters=3, length_scale=4.0)).double()
    cfg = TrainConfig(epochs=2, batch_size=5, lr=1e-2, seed=0, device="cpu", patience=0,
                      max_chunk_nodes=max_chunk_nodes)
    return fit(model, graphs[:8], graphs[8:], config=cfg)


def test_batch_in_pieces_gives_the_same_training():
    whole, pieces = _fit(0), _fit(60)  # 60 nodes: every batch of 5 graphs (40..103 nodes each) in 5 pieces
    for a, b in zip(whole.history, pieces.history):
        for key in ("train_loss", "train_mse", "train_reg", "val_mse"):
            assert b[key] == pytest.approx(a[key], rel=1e-9), key
    for k, v in whole.best_state.items():
        torch.testing.assert_close(pieces.best_state[k], v, rtol=1e-7, atol=1e-9)
