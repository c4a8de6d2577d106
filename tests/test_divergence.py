"""A model whose numbers run away ends `eghn-md train` with one line (exit 1), never a traceback, and its last good
epoch stays resumable."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from _data import history_rows, run_cli

CONFIG = """\
model: {{name: linear}}
data: {{horizon: 5, window_stride: 3}}
train: {{epochs: 3, batch_size: 8, lr: 0.002, patience: 0, unroll_steps: {unroll}, free_steps: {free},
        bond_weight: 1.0, clash_weight: 1.0}}
"""


class _Sabotage:
    """Wraps a model class's ``forward``: once the model has been validated (epoch 1 done), every training call that
    continues an unroll (the batch of the call before with the model's own prediction as input: the same ``target``
    tensor) returns NaN positions, as a model that diverges on its own output does."""

    def __init__(self, forward) -> None:
        self.forward, self.validated, self.last_target = forward, 0, None

    def __call__(self, model, batch):
        out = self.forward(model, batch)
        if not torch.is_grad_enabled():  # validation
            self.validated += 1
            return out
        continues = batch.target is self.last_target
        self.last_target = batch.target
        if continues and self.validated:
            return dataclasses.replace(out, pos=out.pos * float("nan"))
        return out


@pytest.mark.parametrize("unroll, free, term", [(2, 0, "mse_unroll"), (1, 1, "bond_free")],
                         ids=["unrolled-step", "free-step"])
def test_nan_inside_an_unroll_is_one_line_and_last_pt_resumes(adk_h5, tmp_path, monkeypatch, unroll, free, term):
    from eghn_md.models.linear import LinearModel
    from eghn_md.train.checkpoint import load_checkpoint

    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(unroll=unroll, free=free))
    run = tmp_path / "run"
    args = ("train", adk_h5, "-o", run, "--config", cfg, "--quiet", "--device", "cpu")
    sabotage = _Sabotage(LinearModel.forward)
    monkeypatch.setattr(LinearModel, "forward", lambda model, batch: sabotage(model, batch))
    res = run_cli(*args)
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert lines[0].startswith("Error: training diverged in epoch 2, step 1 of ") and f"the term {term} (" in lines[0]
    assert "became nan; try a lower --lr (now 0.002) or, for eghn-published, the paper preset" in lines[0]
    assert f"{str(run / 'last.pt')!r} keeps epoch 1 (continue it with --resume)" in lines[0]
    assert load_checkpoint(run / "last.pt").train_state["epoch"] == 1
    assert len(history_rows(run)) == 1

    monkeypatch.undo()  # the model fixed: the run continues from its last good epoch
    res = run_cli("train", adk_h5, "-o", run, "--resume", "--quiet", "--device", "cpu")
    assert res.exit_code == 0, res.output
    rows = history_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert all(float(r[f"train_{term}"]) == float(r[f"train_{term}"]) for r in rows)  # finite, logged every epoch


def test_a_diverging_benchmark_model_is_a_result_and_the_others_run():
    from eghn_md.benchmarks.runner import BenchSettings, run_benchmark, summarise
    from eghn_md.testing.synthetic import random_batch

    data = [random_batch((6,), node_in=4, edge_in=2, dtype=torch.float32, seed=i) for i in range(6)]
    settings = BenchSettings.create(train={"epochs": 2, "batch_size": 3, "lr": 1e30, "grad_clip": 0.0},
                                    model={"hidden": 8, "n_layers": 1})
    logged: list = []
    rows = run_benchmark(data[:4], data[4:5], data[5:], models=["gnn", "linear"], seeds=[0], settings=settings,
                         log=logged.append)
    gnn, linear = rows
    assert gnn["diverged"].startswith("training diverged in epoch ") and gnn["test_mse"] != gnn["test_mse"]
    assert "diverged" not in linear and linear["test_mse"] == linear["test_mse"]  # closed form: fitted, finite
    assert logged[0].startswith("gnn seed 0: training diverged in epoch ") and len(logged) == 2
    assert [r["model"] for r in summarise(rows)] == ["gnn", "linear"]


DDP_CONFIG = """\
model: {name: gnn, hidden: 8, n_layers: 1}
data: {horizon: 5, split: [0.65, 0.2, 0.15], window_stride: 3}
train: {epochs: 3, batch_size: 6, lr: 1.0e+30, grad_clip: 0.0, schedule: none, patience: 0, device: cpu}
"""


@pytest.mark.slow
def test_torchrun_ranks_stop_together_on_divergence(adk_h5, tmp_path):
    """Under torchrun (2 gloo processes) every rank sees the all-reduced loss terms, so all of them raise in the same
    epoch: the command ends (no rank left waiting in a collective) with the one-line error."""
    import os
    import subprocess
    import sys

    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(DDP_CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29521",
         "-m", "cli.main", "train", adk_h5, "-o", str(tmp_path / "run"), "--config", str(cfg), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: training diverged in epoch")]
    assert len(errors) == 2 and len({e.split(":")[1] for e in errors}) == 1, proc.stderr[-3000:]
