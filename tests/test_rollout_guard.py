"""The divergence guard: a synthetic exploding / tearing / swelling model is stopped at the right step, the frames
before it are kept and written, and --strict makes it a non-zero exit."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from _data import run_cli
from eghn_md.models import ModelOutput
from eghn_md.rollout.rollout import GuardConfig, rollout


def _chain(n=20):
    x = torch.zeros(n, 3, dtype=torch.float64)
    x[:, 0] = 3.8 * torch.arange(n)
    idx = torch.arange(n - 1)
    bonds = torch.cat([torch.stack([idx, idx + 1]), torch.stack([idx + 1, idx])], dim=1)
    return x, bonds


class _Scale(torch.nn.Module):
    """Predicts the input scaled about its centroid by ``factor`` per step (swelling when > 1)."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, b):
        c = b.pos.mean(dim=0)
        return ModelOutput(pos=c + (b.pos - c) * self.factor, reg=b.pos.new_zeros(()))


class _Tear(torch.nn.Module):
    """Moves the second half of the chain away by ``gap`` Å per step (one bond tears)."""

    def __init__(self, gap):
        super().__init__()
        self.gap = gap

    def forward(self, b):
        pos = b.pos.clone()
        pos[pos.shape[0] // 2 :, 1] += self.gap
        return ModelOutput(pos=pos, reg=b.pos.new_zeros(()))


class _NaNAt(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k, self.calls = k, 0

    def forward(self, b):
        self.calls += 1
        pos = b.pos + 0.01
        if self.calls == self.k:
            pos = pos * float("nan")
        return ModelOutput(pos=pos, reg=b.pos.new_zeros(()))


def _roll(model, steps=30, guard=None):
    x, bonds = _chain()
    return rollout(model, x_prev=x, x0=x, h=torch.ones(x.shape[0], 1, dtype=x.dtype), bonds=bonds, cutoff=10.0,
                   steps=steps, guard=guard)


def test_swelling_is_stopped_when_rg_leaves_the_bound():
    res = _roll(_Scale(1.05))
    # Rg grows 1.05× per step: 1.05^8 = 1.477 <= 1.5 < 1.05^9 = 1.551, but bonds stretch 3.8·(1.05^k − 1) Å first:
    # > 2 Å at k = 9 (3.8·0.551 = 2.09); the earlier bound wins, here both at step 9
    assert res.stopped["step"] == 9 and len(res.frames) == 9
    res = _roll(_Scale(1.05), guard=GuardConfig(max_bond_dev=None))
    assert res.stopped["step"] == 9 and "swelled" in res.stopped["reason"]
    res = _roll(_Scale(0.95), guard=GuardConfig(max_bond_dev=None))
    k = res.stopped["step"]
    assert "collapsed" in res.stopped["reason"] and 0.95 ** (k - 1) >= 0.5 > 0.95 ** k


def test_a_torn_chain_is_stopped_and_named():
    res = _roll(_Tear(0.7))  # 0.7 Å per step: deviation 3.8→sqrt(3.8²+(0.7k)²); > 2 Å from k = 5 (3.5 Å off axis)
    dev = [np.hypot(3.8, 0.7 * k) - 3.8 for k in range(1, 10)]
    expected = 1 + next(k for k, d in enumerate(dev) if d > 2.0)
    assert res.stopped["step"] == expected and "bond 9–10" in res.stopped["reason"]
    np.testing.assert_allclose(res.frames[-1][10:, 1], 0.7 * (expected - 1), atol=1e-5)


def test_non_finite_prediction_keeps_the_frames_before():
    res = _roll(_NaNAt(4))
    assert res.stopped == {"step": 4, "reason": "non-finite coordinates predicted"}
    assert res.frames.shape[0] == 4 and np.isfinite(res.frames).all()


def test_a_stable_model_runs_to_the_end():
    res = _roll(_Scale(1.0), steps=12)
    assert res.stopped is None and res.frames.shape[0] == 13


def test_strict_rollout_exits_non_zero_but_writes_the_frames(tiny_run, adk, tmp_path, monkeypatch):
    import eghn_md.rollout.rollout as rr

    real = rr.rollout
    monkeypatch.setattr(rr, "rollout", lambda model, **kw: real(_Scale(1.2), **kw))
    out = tmp_path / "p.dcd"
    args = ["rollout", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"], "--frame", "20", "--steps", "10", "-o",
            str(out), "--device", "cpu"]
    res = run_cli(*args + ["--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["stopped"]["step"] == 3 and summary["steps_done"] == 2  # 1.2² = 1.44, 1.2³ = 1.73 > 1.5
    import MDAnalysis as mda

    assert mda.Universe(str(out.with_suffix(".pdb")), str(out)).trajectory.n_frames == 3
    res = run_cli(*args + ["--overwrite", "--strict"])
    assert res.exit_code == 1 and "stopped at step 3" in res.output


def test_rollout_and_evaluate_rollout_guard_alike(tiny_run, adk, adk_h5, tmp_path, monkeypatch):
    """One guard: `rollout` and `evaluate --rollout` stop a model with the same bounds (GuardConfig.for_model)."""
    import eghn_md.rollout.assess as ra
    import eghn_md.rollout.rollout as rr
    from eghn_md.train.checkpoint import load_checkpoint

    seen, real = [], rr.rollout

    def spy(model, **kw):
        seen.append(kw["guard"])
        return real(model, **kw)

    monkeypatch.setattr(rr, "rollout", spy)
    monkeypatch.setattr(ra, "rollout", spy)
    res = run_cli("rollout", tiny_run / "model.pt", adk["psf"], adk["dcd"], "--frame", "20", "--steps", "2", "-o",
                  tmp_path / "p.dcd", "--device", "cpu", "--quiet")
    assert res.exit_code == 0, res.output
    res = run_cli("evaluate", tiny_run / "model.pt", adk_h5, "--rollout", "2", "--rollout-starts", "1",
                  "--per-node", tmp_path / "e.csv", "--device", "cpu", "--quiet")
    assert res.exit_code == 0, res.output
    want = GuardConfig.for_model(load_checkpoint(tiny_run / "model.pt").stats)
    assert seen == [want, want] and math.isfinite(want.max_step_rms)
