"""Autoregressive rollouts need a bounded response: a model's predicted step may grow at most about linearly when
the velocity channel grows (a super-linear response makes rollouts explode within a few steps).

Only ``eghn`` promises this (its invariants are soft-normalised). ``egnn`` and ``eghn-published`` reproduce
published architectures whose coordinate updates feed raw squared distances back into MLPs: their response is
super-linear, which the second test records so that a change of that behaviour is noticed."""

from __future__ import annotations

import pytest
import torch

from eghn_md.models import ModelConfig, build_model
from eghn_md.testing.synthetic import chain_graph


def _steps(name):
    torch.manual_seed(0)
    g = chain_graph(120, node_in=8, dtype=torch.float64)
    cfg = ModelConfig(name=name, node_in=8, edge_in=0, hidden=16, n_layers=2, n_pool_layers=1,
                      n_decoder_layers=2, n_clusters=4, length_scale=4.0, vel_scale=1.0, disp_scale=1.0)
    model = build_model(cfg).double().eval()
    with torch.no_grad():  # a trained-looking model: weights well away from their small initial values
        for p in model.parameters():
            p.mul_(3.0)
        steps = {}
        for s in (10.0, 100.0, 1000.0):
            out = model(g.replace(vel=g.vel * s, edge_attr=g.edge_attr[:, :0]))
            steps[s] = float((out.pos - g.pos).norm(dim=1).max())
    return steps


def test_eghn_step_grows_at_most_linearly_with_velocity():
    steps = _steps("eghn")
    assert torch.isfinite(torch.tensor(list(steps.values()))).all()
    # linear growth gives a ratio of ~10 per decade, quadratic ~100
    assert steps[1000.0] / steps[100.0] < 20.0, steps
    assert steps[100.0] / steps[10.0] < 20.0, steps


@pytest.mark.parametrize("name", ["egnn", "eghn-published"])
def test_published_architectures_respond_super_linearly(name):
    steps = _steps(name)
    assert steps[1000.0] / steps[100.0] > 20.0, steps
