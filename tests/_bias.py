"""What the pair-bias tests share: a small double-precision generative model on graphs of :data:`N` nodes, with a
bias on :data:`INDEX` when given tables, a few random graphs, and its sampler as a function of a batch."""

from __future__ import annotations

import torch

from eghn_md.models import ModelConfig, build_model
from eghn_md.models.pair_bias import KNOTS
from eghn_md.testing.synthetic import random_graph

N = 8
INDEX = torch.tensor([[0, 0, 1, 2, 3], [4, 7, 5, 6, 7]])


def bias_model(index=INDEX, table=None, collective=None):
    """The model; with a ``table`` (P, KNOTS) and / or a ``collective`` term a bias on ``index`` (a missing table:
    zeros)."""
    torch.manual_seed(0)
    cfg = ModelConfig(name="eghn", node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=1, n_clusters=3,
                      length_scale=3.0, disp_scale=1.5, generative=True, sample_steps=3)
    model = build_model(cfg).double().eval()
    if table is not None or collective is not None:
        if table is None:
            table = torch.zeros(index.shape[1], KNOTS, dtype=torch.float64)
        model.set_pair_bias(index, table, nodes=N, collective=collective)
    return model


def bias_graphs(k=3):
    gen = torch.Generator().manual_seed(5)
    return [random_graph(N, node_in=4, edge_in=2, generator=gen) for _ in range(k)]


def sampler(model):
    return lambda b: model(b, noise=b.vel).pos.detach()  # noise in the velocity channel, which the model does not read
