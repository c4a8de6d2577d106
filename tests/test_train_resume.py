"""Resume continues exactly; torchrun (2 gloo processes on CPU) gives the same training as one process."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from _data import StopAfter, history_rows, run_cli

RESUME_CONFIG = """\
model: {name: eghn, hidden: 16, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 4}
data: {horizon: 5, window_stride: 3}
train: {epochs: 4, batch_size: 4, lr: 0.002, schedule: cosine, patience: 0}
"""




def test_resume_follows_the_uninterrupted_curve(adk_h5, tmp_path):
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(RESUME_CONFIG)
    args = ["--config", str(cfg_file), "--seed", "3", "--quiet", "--device", "cpu"]
    full, part = tmp_path / "full", tmp_path / "part"
    res = run_cli("train", adk_h5, "-o", str(full), *args)
    assert res.exit_code == 0, res.output

    config = resolve_config(preset=None, config_file=cfg_file, overrides={"train": {"seed": 3, "device": "cpu"}})
    with pytest.raises(KeyboardInterrupt):
        train_run([adk_h5], part, config=config, progress=StopAfter(2))
    assert len(history_rows(part)) == 2
    res = run_cli("train", adk_h5, "-o", str(part), "--resume", "--quiet", "--device", "cpu")
    assert res.exit_code == 0, res.output

    a, b = history_rows(full), history_rows(part)
    assert len(a) == len(b) == 4
    for ra, rb in zip(a, b, strict=True):
        for key in ("train_loss", "train_mse", "val_mse", "lr"):
            assert float(rb[key]) == pytest.approx(float(ra[key]), rel=1e-6, abs=1e-9), (ra["epoch"], key)
    # a finished run has nothing left to do
    res = run_cli("train", adk_h5, "-o", str(part), "--resume", "--quiet")
    assert res.exit_code == 2 and "already finished" in res.output and "--epochs" in res.output


DDP_CONFIG = """\
model: {name: eghn, hidden: 16, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 4}
data: {horizon: 5, split: [0.65, 0.2, 0.15], window_stride: 3}
train: {epochs: 2, batch_size: 6, lr: 0.002, schedule: none, patience: 0, device: cpu}
"""


GENERATIVE_DDP_CONFIG = """\
model: {name: eghn, generative: true, hidden: 16, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1,
        n_clusters: 4, sample_steps: 2}
data: {horizon: 5, split: [0.65, 0.2, 0.15], window_stride: 3}
train: {epochs: 2, batch_size: 6, lr: 0.002, schedule: none, patience: 0, device: cpu, unroll_steps: 1,
        free_steps: 0, score_weight: 0.5}
"""


@pytest.mark.parametrize("config", [DDP_CONFIG, GENERATIVE_DDP_CONFIG], ids=["deterministic", "generative"])
def test_torchrun_two_gloo_processes_match_one_process(adk_h5, tmp_path, config):
    """Each global batch of 6 windows is split 3 + 3 across ranks; with equal graph sizes the averaged gradient
    equals the single-process one, so the loss curves agree to float precision. A generative model's draws
    (training and its score's samples, and validation's) are seeded per window, so they do not depend on the
    split either."""
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(config)
    single, multi = tmp_path / "single", tmp_path / "multi"
    res = run_cli("train", adk_h5, "-o", str(single), "--config", str(cfg), "--quiet")
    assert res.exit_code == 0, res.output
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "cli.main", "train", adk_h5, "-o", str(multi), "--config", str(cfg), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = history_rows(single), history_rows(multi)
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b, strict=True):
        assert float(rb["train_loss"]) == pytest.approx(float(ra["train_loss"]), rel=1e-4)
        assert float(rb["val_mse"]) == pytest.approx(float(ra["val_mse"]), rel=1e-4)
    assert (multi / "model.pt").is_file() and (multi / "metrics.json").is_file()
    assert np.isfinite(float(b[-1]["val_mse"]))
