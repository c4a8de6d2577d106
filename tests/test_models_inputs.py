"""Input scalars computed inside the models (|v|, [d, d²]) and the bonds' edge scalars."""

import dataclasses

import pytest
import torch

from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.models.inputs import bond_edge_scalars, with_input_features
from eghn_md.models.registry import model_names, models_with
from eghn_md.testing.equivariance import assert_equivariant
from eghn_md.testing.synthetic import random_batch

SIZES = (6, 9, 4)


def _cfg(name, **kw):
    base = dict(name=name, node_in=4, edge_in=3, hidden=8, n_layers=2, n_pool_layers=2, n_clusters=3,
                length_scale=2.0, vel_scale=0.5, speed_feature=True, edge_features="data+distance")
    base.update(kw)
    return ModelConfig(**base)


def test_features_are_speed_and_distances_in_model_units():
    batch = random_batch(SIZES, node_in=3, edge_in=1)
    out = with_input_features(batch, _cfg("egnn"))
    torch.testing.assert_close(out.h[:, 0], (batch.vel / 0.5).norm(dim=1))
    torch.testing.assert_close(out.h[:, 1:], batch.h)
    d = (batch.pos[batch.edge_index[0]] - batch.pos[batch.edge_index[1]]).norm(dim=1) / 2.0
    torch.testing.assert_close(out.edge_attr, torch.stack([batch.edge_attr[:, 0], d, d * d], dim=1))
    only = with_input_features(batch, _cfg("egnn", speed_feature=False, edge_in=2, edge_features="distance"))
    torch.testing.assert_close(only.edge_attr, torch.stack([d, d * d], dim=1))
    assert only.h is batch.h
    assert with_input_features(batch, _cfg("egnn", speed_feature=False, edge_features="data")) is batch


@pytest.mark.parametrize("name", model_names())
def test_models_read_the_computed_features(name):
    # the same weights on precomputed features (edge_features="data") give the same prediction
    torch.manual_seed(0)
    cfg = _cfg(name)
    model = build_model(cfg).double().eval()
    batch = random_batch(SIZES, node_in=3, edge_in=1)
    plain = build_model(dataclasses.replace(cfg, speed_feature=False, edge_features="data")).double().eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(batch).pos, plain(with_input_features(batch, cfg)).pos, rtol=0, atol=1e-12)
        moved = model(batch.replace(vel=batch.vel * 1.5)).pos  # |v| is read: speed changes the prediction
    assert not torch.allclose(moved, model(batch).pos)


@pytest.mark.parametrize("name", models_with(equivariant=True))
def test_models_with_computed_features_stay_equivariant(name):
    torch.manual_seed(0)
    model = build_model(_cfg(name)).double().eval()
    assert_equivariant(model, random_batch(SIZES, node_in=3, edge_in=1), atol=1e-10, reflections=True, n_trials=1)


def test_bond_scalars_come_from_the_global_edge_of_the_same_pair():
    batch = random_batch(SIZES, node_in=3, edge_in=2)
    got = bond_edge_scalars(batch)
    ei, bonds = batch.edge_index.t().tolist(), batch.local_edge_index.t().tolist()
    want = torch.stack([batch.edge_attr[ei.index(b)] for b in bonds])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert bond_edge_scalars(batch.replace(local_edge_index=None)) is batch.edge_attr
    keep = ~((batch.edge_index[0] == 0) & (batch.edge_index[1] == 1))
    broken = batch.replace(edge_index=batch.edge_index[:, keep], edge_attr=batch.edge_attr[keep])
    with pytest.raises(ValueError, match=r"bond \(0, 1\) is not among the global edges"):
        bond_edge_scalars(broken)


def test_config_checks_the_feature_options():
    with pytest.raises(UsageError, match="'angles'.*valid: data, distance, data\\+distance"):
        _cfg("eghn", edge_features="angles")
    with pytest.raises(UsageError, match="'distance' means edge_in = 2"):
        _cfg("eghn", edge_features="distance", edge_in=3)
    with pytest.raises(UsageError, match="'data\\+distance' needs edge_in >= 2"):
        _cfg("eghn", edge_in=1)
    with pytest.raises(UsageError, match="speed_feature needs node_in >= 1"):
        _cfg("eghn", node_in=0)
    with pytest.raises(UsageError, match="speed_feature must be true or false"):
        _cfg("eghn", speed_feature="yes")
    c = _cfg("eghn")
    assert ModelConfig.from_dict(c.to_dict()) == c
    old = {k: v for k, v in c.to_dict().items() if k not in ("speed_feature", "edge_features")}
    assert ModelConfig.from_dict(old).edge_features == "data"  # configs saved before the fields existed
