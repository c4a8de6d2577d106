"""One progress interface (:class:`eghn_md.utils.Progress`): every long library call reports start / update / stop
to it, silent by default; the command line's rich implementation."""

from __future__ import annotations

import io

import pytest
import torch

from eghn_md.utils import SILENT, Progress, as_progress


class Recorder:
    def __init__(self):
        self.calls = []

    def start(self, total, done=0):
        self.calls.append(("start", total, done))

    def update(self, status):
        self.calls.append(("update", status["done"]))

    def stop(self):
        self.calls.append(("stop",))


def test_silent_default_and_checked_objects():
    assert as_progress(None) is SILENT and isinstance(SILENT, Progress)
    SILENT.start(3)
    SILENT.update({"done": 1})
    SILENT.stop()
    r = Recorder()
    assert as_progress(r) is r
    with pytest.raises(TypeError, match="start.*update.*stop"):
        as_progress(lambda k: None)  # the old callable form is refused, not silently ignored


def test_rollout_reports_every_frame_and_stops_on_failure():
    from eghn_md.rollout.rollout import rollout

    class Step(torch.nn.Module):
        def forward(self, batch):
            return type("Out", (), {"pos": batch.pos + 0.01})()

    x0 = torch.arange(15, dtype=torch.float64).reshape(5, 3) * 1.2  # bonded neighbours ~3.6 Å apart
    bonds = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4], [1, 0, 2, 1, 3, 2, 4, 3]])
    r = Recorder()
    rollout(Step(), x_prev=x0 - 0.01, x0=x0, h=torch.ones(5, 1, dtype=torch.float64), bonds=bonds, cutoff=10.0, steps=3,
            progress=r)
    assert r.calls == [("start", 3, 0), ("update", 1), ("update", 2), ("update", 3), ("stop",)]

    class Boom(torch.nn.Module):
        def forward(self, batch):
            raise RuntimeError("boom")

    r = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        rollout(Boom(), x_prev=x0, x0=x0, h=torch.ones(5, 1, dtype=torch.float64), bonds=bonds, cutoff=10.0, steps=3,
                progress=r)
    assert r.calls == [("start", 3, 0), ("stop",)]


def test_preprocess_reports_frames(tmp_path):
    from MDAnalysisTests.datafiles import DCD, PSF

    from eghn_md.data.preprocess import preprocess

    r = Recorder()
    preprocess(PSF, [DCD], tmp_path / "a.h5", stride=10, progress=r)
    assert r.calls[0] == ("start", 10, 0) and r.calls[-1] == ("stop",) and r.calls[-2] == ("update", 10)


def test_rich_progress_shows_training_rows_and_plain_counts():
    from rich.console import Console

    from cli._progress import RichProgress

    out = io.StringIO()
    p = RichProgress(console=Console(file=out, width=160, force_terminal=False), description="eghn")
    assert isinstance(p, Progress)
    p.start(4, 1)
    p.update({"done": 2, "epoch": 2, "train_loss": 0.5, "val_mse": 0.25, "samples_per_s": 10.0})
    p.stop()
    text = out.getvalue()
    assert "2/4" in text and "loss 0.5" in text and "val 0.25" in text and "best 0.25" in text
    out2 = io.StringIO()
    q = RichProgress(console=Console(file=out2, width=160), description="preprocess")
    q.start(10)
    q.update({"done": 10, "trajectory": "adk.dcd"})
    q.stop()
    assert "10/10" in out2.getvalue() and "adk.dcd" in out2.getvalue()
