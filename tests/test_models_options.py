"""An option a model ignores always warns, the same way: train reads the model's declared capabilities."""

from __future__ import annotations

import re

from eghn_md.models.registry import models_with


def test_every_ignored_option_warns_alike_in_training(adk_h5, tmp_path):
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    cfg = resolve_config(preset="tiny", overrides={
        "model": {"name": "rf", "hidden": 8, "n_layers": 1, "refine_layers": 3, "output_smoothing": 2},
        "data": {"horizon": 2, "window_stride": 8}, "train": {"epochs": 1, "device": "cpu"}})
    lines = []
    train_run([adk_h5], tmp_path / "r", config=cfg, log=lines.append)
    warned = [x for x in lines if x.startswith("warning: model 'rf'")]
    shape = re.compile(r"warning: model 'rf' has no [a-z -]+, so (\w+) (\d+) is ignored \(only ([a-z, -]+) read it\)")
    got = {m.group(1): (m.group(2), m.group(3)) for m in map(shape.fullmatch, warned) if m}
    assert got == {"refine_layers": ("3", ", ".join(models_with(refines=True))),
                   "output_smoothing": ("2", ", ".join(models_with(smooths=True)))}, warned
