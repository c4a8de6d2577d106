"""Interrupting a real ``eghn-md train`` process: SIGINT exits 130 with a resumable checkpoint, SIGKILL leaves the last
complete checkpoint intact, and ``--resume`` then ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _data import run_cli

CONFIG = """\
model: {name: eghn, hidden: 16, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 4}
data: {horizon: 5, window_stride: 2}
train: {epochs: 4, batch_size: 4, lr: 0.002, schedule: cosine, patience: 0}
"""
EPOCHS = 4


def _rows(run: Path) -> list[dict]:
    try:
        return list(csv.DictReader(open(run / "history.csv")))
    except (FileNotFoundError, csv.Error):
        return []


@pytest.fixture(scope="module")
def setup(adk_h5, tmp_path_factory):
    """The config file and the history of an uninterrupted run (the reference)."""
    d = tmp_path_factory.mktemp("interrupt")
    cfg = d / "c.yaml"
    cfg.write_text(CONFIG)
    ref = d / "reference"
    res = run_cli("train", adk_h5, "-o", str(ref), "--config", str(cfg), "--seed", "5", "--quiet",
                  "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert len(_rows(ref)) == EPOCHS
    return {"cfg": cfg, "reference": _rows(ref)}


def _start(adk_h5, run: Path, cfg: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "eghn-md"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    # A shell without job control starts background commands with SIGINT ignored, and Python keeps an inherited
    # SIG_IGN (no KeyboardInterrupt): restore the default so the test also holds under `make test &` or nohup.
    return subprocess.Popen([str(exe), "train", adk_h5, "-o", str(run), "--config", str(cfg), "--seed", "5",
                             "--quiet", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(proc: subprocess.Popen, cond, timeout=240.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"train ended (rc {proc.returncode}) before it could be interrupted: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("train made no progress")
        time.sleep(0.02)


def _resume_and_compare(adk_h5, run: Path, reference: list[dict]) -> None:
    res = run_cli("train", adk_h5, "-o", str(run), "--resume", "--quiet", "--device", "cpu")
    assert res.exit_code == 0, res.output
    got = _rows(run)
    assert len(got) == len(reference) == EPOCHS
    for a, b in zip(reference, got, strict=True):
        for key in ("train_loss", "train_mse", "train_reg", "val_mse", "lr"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-6, abs=1e-12), (a["epoch"], key)


def test_sigint_saves_a_resumable_checkpoint_and_exits_130(adk_h5, setup, tmp_path):
    from eghn_md.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    proc = _start(adk_h5, run, setup["cfg"])
    _wait_for(proc, lambda: len(_rows(run)) >= 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Interrupted." and "Traceback" not in err, err
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt.train_state is not None and 1 <= ckpt.train_state["epoch"] < EPOCHS
    assert not list(run.glob(".*tmp*")), "a temporary file was left behind"
    _resume_and_compare(adk_h5, run, setup["reference"])


def test_sigkill_leaves_the_last_complete_checkpoint_and_resume_matches(adk_h5, setup, tmp_path):
    from eghn_md.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    proc = _start(adk_h5, run, setup["cfg"])
    # kill as soon as the first checkpoint exists: often while the next files of that epoch are being written
    _wait_for(proc, lambda: (run / "last.pt").exists())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(run / "last.pt")  # complete and verified (digest), never half-written
    assert ckpt.train_state is not None and ckpt.train_state["epoch"] >= 1
    for f in run.glob("*.pt"):
        load_checkpoint(f)
    _resume_and_compare(adk_h5, run, setup["reference"])
