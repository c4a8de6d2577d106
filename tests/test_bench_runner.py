"""Benchmark settings: composed from TrainConfig and ModelConfig (the one home of every hyper-parameter)."""

from __future__ import annotations

import dataclasses

import pytest

from eghn_md.benchmarks.runner import BENCH_MODEL, BENCH_TRAIN, BenchSettings, _model_config
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig
from eghn_md.testing.synthetic import random_batch
from eghn_md.train.options import TrainConfig


def test_defaults_are_overrides_of_the_one_home():
    s = BenchSettings.create()
    assert isinstance(s.train, TrainConfig)
    # the benchmark defaults: what differs from TrainConfig's, everything else is TrainConfig's own default
    assert (s.train.batch_size, s.train.weight_decay, s.train.patience, s.train.eval_every, s.train.device) == (
        100, 1e-12, 50, 5, "cpu")
    home = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name not in BENCH_TRAIN:
            assert getattr(s.train, f.name) == getattr(home, f.name), f.name
    assert s.model == BENCH_MODEL


def test_create_overrides_and_validates():
    s = BenchSettings.create(train={"epochs": 3, "lr": 1e-3}, model={"hidden": 8},
                             model_overrides={"eghn": {"n_layers": 2}})
    assert (s.train.epochs, s.train.lr, s.train.batch_size, s.model["hidden"]) == (3, 1e-3, 100, 8)
    d = s.to_dict()
    # the pooling models' own defaults (BENCH_POOLING_MODEL) stay under what a caller overrides
    assert (d["epochs"], d["hidden"], d["batch_size"], d["model_overrides"]) == (
        3, 8, 100, {"eghn": {"n_layers": 2}, "eghn-published": {"n_layers": 3}})
    with pytest.raises(UsageError, match="lr must be > 0"):
        BenchSettings.create(train={"lr": 0.0})
    with pytest.raises(UsageError, match="unknown benchmark model setting.*bogus"):
        BenchSettings.create(model={"bogus": 1})
    with pytest.raises(UsageError, match="node_in"):  # the data fixes it
        BenchSettings.create(model_overrides={"egnn": {"node_in": 3}})


def test_model_config_from_settings_and_data():
    s = BenchSettings.create(model={"hidden": 8}, model_overrides={"eghn": {"n_layers": 2}})
    data = [random_batch((6,), seed=i) for i in range(3)]
    cfg = _model_config("eghn", data, s)
    assert isinstance(cfg, ModelConfig)
    assert (cfg.hidden, cfg.n_layers, cfg.n_pool_layers, cfg.n_decoder_layers, cfg.n_clusters) == (8, 2, 3, 1, 3)
    assert _model_config("egnn", data, s).n_layers == ModelConfig(node_in=1).n_layers
