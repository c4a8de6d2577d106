"""Figures: training curves, rollout RMSD, per-residue errors; headless, atomic, never failing a training run."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from _data import run_cli
from eghn_md.export import plots
from eghn_md.export.figures import maybe_plot_rollout, maybe_plot_run
from eghn_md.export.viewers import hex_to_rgb


def _has_colour(png, colour, *, tol=0.03, min_pixels=30) -> bool:
    import matplotlib.image as mpimg

    img = mpimg.imread(png)[..., :3]
    return int((np.abs(img - np.array(hex_to_rgb(colour))).max(axis=2) < tol).sum()) >= min_pixels


@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("history.csv", "metrics.json", "model.pt"):
        shutil.copy(tiny_run / name, run / name)
    return run


def _rmsd_csv(path, steps=6, dt=5.0):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "time_ps", "rmsd_model_A", "rmsd_static_A", "rmsd_const_velocity_A"])
        for k in range(steps + 1):
            w.writerow([k, k * dt, 0.3 * k, 0.5 * k, 0.8 * k])
    return path


def test_plot_run_loss_curves(run_copy):
    written = plots.plot_run(run_copy)
    assert written == [str(run_copy / "loss.png")]
    for colour in ("#0072B2", "#E69F00"):  # training and validation curves are drawn
        assert _has_colour(written[0], colour)


def test_train_writes_loss_figure(tiny_run):
    assert _has_colour(tiny_run / "loss.png", "#E69F00")  # validation curve drawn at the end of `train`


def test_plot_cli_run_with_errors_and_svg(run_copy, adk_h5):
    res = run_cli("evaluate", str(run_copy / "model.pt"), adk_h5, "--device", "cpu", "--quiet")
    assert res.exit_code == 0, res.output
    assert (run_copy / "errors_test.csv").exists()
    res = run_cli("plot", str(run_copy), "--format", "svg", "--json")
    assert res.exit_code == 0, res.output
    svg = (run_copy / "errors_test.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert (run_copy / "loss.svg").exists()
    res = run_cli("plot", str(run_copy / "errors_test.csv"))
    assert res.exit_code == 0, res.output
    for colour in ("#0072B2", "#000000", "#D55E00"):  # model, static, constant velocity
        assert _has_colour(run_copy / "errors_test.png", colour)


def test_rmsd_csv_figure_and_rollout_summary(tmp_path):
    p = _rmsd_csv(tmp_path / "pred_rmsd.csv")
    out = plots.plot_rollout_rmsd({"outputs": [str(tmp_path / "pred.dcd"), str(p)], "model_file": "run/model.pt",
                                   "start_frame": 5, "steps": 6, "step_ps": 5.0})
    assert out == str(tmp_path / "pred_rmsd.png")
    for colour in ("#0072B2", "#000000", "#D55E00"):
        assert _has_colour(out, colour)
    res = run_cli("plot", str(p), "--format", "pdf")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "pred_rmsd.pdf").read_bytes().startswith(b"%PDF")


def test_rollout_truth_writes_rmsd_figure(tiny_run, adk, tmp_path):
    out = tmp_path / "pred.dcd"
    res = run_cli("rollout", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"], "--steps", "1",
                  "--truth", "-o", str(out), "--device", "cpu", "--quiet")
    assert res.exit_code == 0, res.output
    assert _has_colour(tmp_path / "pred_rmsd.png", "#0072B2")


def test_time_axis_switches_to_ns():
    assert plots._time_axis(np.array([0.0, 500.0]))[1].endswith("[ps]")
    t, label = plots._time_axis(np.array([0.0, 5000.0]))
    assert label.endswith("[ns]") and t[-1] == 5.0


def test_errors_are_reported_not_raised_by_maybe_helpers(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,train_mse\n")  # header only: nothing to plot
    with pytest.warns(RuntimeWarning, match="not written"):
        assert maybe_plot_run(tmp_path) is None
    logged = []
    assert maybe_plot_rollout({"outputs": []}, log=logged.append) is None
    assert logged and "rollout figure not written" in logged[0]


def test_plot_usage_errors(tmp_path):
    (tmp_path / "other.csv").write_text("a\n1\n")
    res = run_cli("plot", str(tmp_path / "other.csv"))
    assert res.exit_code == 2 and "cannot plot" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("plot", str(empty))
    assert res.exit_code == 2 and "nothing to plot" in res.output
