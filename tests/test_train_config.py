"""Run configuration: λ (``reg_weight``) has one home, ``train``; configurations and checkpoints that carry it in
their model section still load."""

from __future__ import annotations

import pytest
import torch

from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig
from eghn_md.train.config import PRESETS, RunConfig, resolve_config


def test_presets_keep_lambda_in_the_train_section_only():
    for name, preset in PRESETS.items():
        assert "reg_weight" not in preset["model"] and "reg_weight" in preset["train"], name
    assert "reg_weight" not in ModelConfig(node_in=3).to_dict()


def test_a_model_section_lambda_moves_to_train(tmp_path):
    c = RunConfig.from_dict({"model": {"name": "egnn", "reg_weight": 0.3}, "train": {"epochs": 2}})
    assert c.train.reg_weight == 0.3 and "reg_weight" not in c.model
    # an old config file over a preset: its λ wins, as it did when it was a model field
    p = tmp_path / "old.yaml"
    p.write_text("model: {reg_weight: 0.5}\n")
    assert resolve_config(preset="paper", config_file=p).train.reg_weight == 0.5
    p.write_text("train: {reg_weight: 0.7}\n")  # the train section alone now counts (was overwritten by the model's)
    assert resolve_config(preset="tiny", config_file=p).train.reg_weight == 0.7
    assert resolve_config(preset="tiny", overrides={"model": {"reg_weight": 0.2}}).train.reg_weight == 0.2


def test_two_different_lambdas_in_one_source_are_refused():
    with pytest.raises(UsageError, match="reg_weight is given twice.*0.1.*0.5"):
        RunConfig.from_dict({"model": {"reg_weight": 0.1}, "train": {"reg_weight": 0.5}})
    same = RunConfig.from_dict({"model": {"reg_weight": 0.5}, "train": {"reg_weight": 0.5}})
    assert same.train.reg_weight == 0.5


def test_model_config_accepts_and_drops_a_legacy_lambda():
    old = {**ModelConfig(node_in=3).to_dict(), "reg_weight": 2.0}
    assert ModelConfig.from_dict(old) == ModelConfig(node_in=3)
    with pytest.raises(UsageError, match="reg_weight"):
        ModelConfig.from_dict({**old, "reg_weight": -1.0})


def test_an_old_checkpoint_with_a_model_lambda_loads_and_resumes_its_lambda(tiny_run, tmp_path):
    from eghn_md.train import checkpoint as ck

    good = ck.load_checkpoint(f"{tiny_run}/last.pt")
    assert "reg_weight" not in good.model_config and good.train_config["train"]["reg_weight"] == 0.1
    old = tmp_path / "old.pt"  # as written before: λ also in the model config and in the model section
    section = {**good.train_config.get("_model_section", {}), "reg_weight": 0.1}
    ck.save_checkpoint(old, model_config={**good.model_config, "reg_weight": 0.1}, data_config=good.data_config,
                       train_config={**good.train_config, "_model_section": section}, stats=good.stats,
                       nodes=good.nodes, state_dict=good.state_dict)
    model, ckpt = ck.load_model(old)
    assert "reg_weight" not in ckpt.model_config and isinstance(model, torch.nn.Module)
    stored = RunConfig.from_dict({"model": ckpt.train_config["_model_section"], "data": ckpt.data_config,
                                  "train": ckpt.train_config["train"]})
    assert stored.train.reg_weight == 0.1 and "reg_weight" not in stored.model


def test_legacy_keys_move_in_one_place():
    from eghn_md.train.config import migrate_legacy

    d = {"model": {"reg_weight": 0.3, "hidden": 8}, "train": {"reg_weight": 0.1}}
    with pytest.raises(UsageError, match="reg_weight is given twice"):
        migrate_legacy(d)
    # a checkpoint: its train section holds the value the run used, the model's copy is dropped
    assert migrate_legacy(d, recorded=True) == {"model": {"hidden": 8}, "train": {"reg_weight": 0.1}}
    assert migrate_legacy({"model": {"reg_weight": 0.3}}) == {"model": {}, "train": {"reg_weight": 0.3}}
    assert migrate_legacy({"model": {"hidden": 8}}) == {"model": {"hidden": 8}}
