"""The `default` and `tiny` presets train every model of the registry, at the Cα size and at the paper's AdK backbone
size, without a non-finite loss; per-model preset values apply under the user's own."""

from __future__ import annotations

import math

import pytest

from _data import history_rows, run_cli
from eghn_md.choices import MODEL_NAMES
from eghn_md.train.config import PRESETS, resolve_config

SELECTIONS = {"ca": "protein and name CA", "backbone": "backbone"}
DATA = "data: {horizon: 15, split: [0.66, 0.34, 0.0]}\n"  # the AdK accuracy setting: validation = the last block


def test_per_model_values_apply_under_the_users_own(tmp_path):
    per_model = PRESETS["default"]["models"]
    name, values = next(iter(per_model.items()))
    section, fields = next(iter(values.items()))
    key, value = next(iter(fields.items()))
    got = resolve_config(preset="default", overrides={"model": {"name": name}})
    assert getattr(got.train, key) == value if section == "train" else got.model[key] == value
    mine = 123 if isinstance(value, int) else 0.123
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{name: {name}}}\n{section}: {{{key}: {mine}}}\n")
    got = resolve_config(preset="default", config_file=cfg)
    assert getattr(got.train, key) == mine if section == "train" else got.model[key] == mine
    plain = resolve_config(preset="default")  # the preset's own model gets the preset's own values
    assert plain.model["name"] == PRESETS["default"]["model"]["name"]
    assert set(per_model) <= set(MODEL_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("size", sorted(SELECTIONS))
@pytest.mark.parametrize("preset", ["default", "tiny"])
def test_the_preset_trains_every_model_without_divergence(preset, size, adk, tmp_path):
    h5 = tmp_path / f"adk_{size}.h5"
    res = run_cli("preprocess", adk["psf"], adk["dcd"], "-o", h5, "--select", SELECTIONS[size], "--quiet")
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "data.yaml"
    cfg.write_text(DATA if preset == "default" else "data: {split: [0.66, 0.34, 0.0]}\n")
    for model in MODEL_NAMES:
        run = tmp_path / model
        res = run_cli("train", h5, "-o", run, "--preset", preset, "--config", cfg, "--model", model, "--epochs", "2",
                      "--quiet", "--device", "cpu")
        assert res.exit_code == 0, (model, res.output)
        rows = history_rows(run)
        assert len(rows) == 2, model
        for row in rows:
            losses = {k: float(v) for k, v in row.items() if k.startswith("train_") or k == "val_mse"}
            assert all(math.isfinite(v) for v in losses.values()), (model, losses)
