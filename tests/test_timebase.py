"""Issue 14: the horizon is physical time. A model trained on frames 1 ps apart applied to frames 3 ps apart steps
over 5 frames instead of 15; 7 ps apart is refused in one line naming both spacings; written DCD times are the
physical times of the predicted frames; mixed spacings in training need --horizon-ps."""

from __future__ import annotations

import json
import warnings

import MDAnalysis as mda
import numpy as np
import pytest

from _data import run_cli
from eghn_md.data.timebase import common_spacing, frame_spacing, frames_per_horizon, model_horizon_frames
from eghn_md.errors import DataError, UsageError


# ------------------------------------------------------------------------------------------------------ helper
def test_frames_per_horizon_exact_and_with_float32_time_steps():
    assert frames_per_horizon(15.0, 1.0, what="x") == 15
    assert frames_per_horizon(15.0, 3.0, what="x") == 5
    # DCD headers store the time step as float32 AKMA: AdK's 1 ps reads back as 0.99999991 ps
    assert frames_per_horizon(15 * 0.9999999119200186, 3 * 0.9999999119200186 * (1 + 3e-8), what="x") == 5
    assert frames_per_horizon(14.9999986, 2.9999997, what="x") == 5


@pytest.mark.parametrize("dt", [7.0, 2.0, 30.0, 4.5])
def test_frames_per_horizon_refuses_a_non_multiple_naming_both_spacings(dt):
    with pytest.raises(DataError) as exc:
        frames_per_horizon(15.0, dt, what="dataset 'x.h5'")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"dataset 'x.h5' has frames {dt:g} ps apart but the model's horizon is 15 ps")


def test_frame_spacing_checks_even_increasing_times():
    assert frame_spacing(np.arange(10) * 2.5 + 1.0, what="t") == pytest.approx(2.5)
    with pytest.raises(DataError, match="not evenly spaced"):
        frame_spacing([0.0, 1.0, 2.0, 5.0, 6.0], what="t")
    with pytest.raises(DataError, match="do not increase"):
        frame_spacing([0.0, 0.0, 0.0], what="t")
    with pytest.raises(DataError, match="at least 2"):
        frame_spacing([0.0], what="t")


def test_common_spacing_refuses_mixed_spacings():
    assert common_spacing({"a": 1.0, "b": 1.0000001}) == 1.0
    with pytest.raises(UsageError, match="horizon_ps"):  # the parameter; the CLI says --horizon-ps
        common_spacing({"a": 1.0, "b": 3.0})


def test_model_horizon_frames_notes_a_different_spacing_and_keeps_old_checkpoints():
    stats, dc = {"horizon_ps": 15.0, "frame_dt_ps": 1.0}, {"horizon": 15}
    assert model_horizon_frames(stats, dc, 1.0, what="x") == (15, None)
    n, note = model_horizon_frames(stats, dc, 3.0, what="x")
    assert n == 5 and "spans 5 frames" in note and "trained on 15 frames 1 ps apart" in note
    assert model_horizon_frames({}, dc, 3.0, what="x") == (15, None)  # no horizon_ps: frames as before


# ------------------------------------------------------------------------------------------------- acceptance
@pytest.fixture(scope="module")
def hz15(adk, adk_h5, tiny_config, tmp_path_factory):
    """A tiny EGHN trained with horizon 15 on AdK (frames 1 ps apart), the same trajectory every 3rd and every 7th
    frame (stride 3 / 7 datasets and a DCD written every 3rd frame)."""
    d = tmp_path_factory.mktemp("hz15")
    run = d / "run"
    run_cli("train", adk_h5, "--val", adk_h5, "-o", str(run), "--config", tiny_config, "--horizon", "15",
            "--epochs", "1", "--seed", "0", "--quiet", "--device", "cpu", expect=0)
    for k in (3, 7):
        run_cli("preprocess", adk["psf"], adk["dcd"], "-o", str(d / f"every{k}.h5"), "--stride", str(k), "--quiet",
                expect=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(adk["psf"], adk["dcd"])
        with mda.Writer(str(d / "every3.dcd"), u.atoms.n_atoms, dt=3 * u.trajectory.dt) as w:
            for _ in u.trajectory[::3]:
                w.write(u.atoms)
    return {"model": str(run / "model.pt"), "dir": d, "full": adk_h5}


def test_evaluate_on_frames_3ps_apart_uses_5_frame_steps_and_the_same_static_baseline(hz15):
    from eghn_md.data.dataset import Dataset
    from eghn_md.data.samples import WindowSet
    from eghn_md.data.system import GraphSystem
    from eghn_md.train.checkpoint import load_model
    from eghn_md.train.evaluate import per_node_errors

    res = run_cli("evaluate", hz15["model"], str(hz15["dir"] / "every3.h5"), "--split", "all", "--json",
                  "--per-node", str(hz15["dir"] / "e3.csv"), "--device", "cpu", expect=0)
    r3 = json.loads(res.stdout)
    assert r3["horizon_frames"] == 5 and r3["trained_horizon_frames"] == 15
    assert r3["horizon_ps"] == pytest.approx(15.0, rel=1e-5) and r3["frame_dt_ps"] == pytest.approx(3.0, rel=1e-5)
    assert any("spans 5 frames" in n for n in r3["notes"])
    # the full trajectory at the same windows, ΔT = 15 frames: every3 windows start at its frames 5, 5 + s, … 27
    # (s = the model's window stride, in frames of the data evaluated), i.e. full frames 15, 15 + 3s, … 81
    model, ckpt = load_model(hz15["model"], device="cpu")
    stride = 3 * int(ckpt.data_config["window_stride"])
    with Dataset(hz15["full"]) as ds:
        gs = GraphSystem.from_nodes(ds.nodes, selection=ds.selection)
        pos = ds.positions(ds.trajectories[0])[()]
        ws = WindowSet(positions=pos, block=(0, len(pos)), h=gs.h, bonds=gs.bonds, horizon=15,
                       cutoff=float(ckpt.data_config["cutoff"]), window_stride=stride)
    assert ws.starts[0] == 15 and ws.starts[-1] == 81 and len(ws) == r3["windows"] == 66 // stride + 1
    full = per_node_errors(model, ws, device="cpu")
    assert r3["static"] == pytest.approx(float(np.mean(full["static"])), rel=1e-6)
    assert r3["const_velocity"] == pytest.approx(float(np.mean(full["const_velocity"])), rel=1e-6)
    assert r3["model"] == pytest.approx(float(np.mean(full["model"])), rel=1e-4)


def test_evaluate_on_frames_7ps_apart_is_a_one_line_error(hz15):
    res = run_cli("evaluate", hz15["model"], str(hz15["dir"] / "every7.h5"), "--split", "all",
                  "--per-node", str(hz15["dir"] / "e7.csv"), "--device", "cpu")
    assert res.exit_code == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in res.output
    assert "has frames 7 ps apart but the model's horizon is 15 ps, not a whole number of frames" in errors[0]
    assert not (hz15["dir"] / "e7.csv").exists()


def test_rollout_dcd_times_are_the_physical_times_of_the_predicted_frames(adk, hz15):
    d = hz15["dir"]
    # --constrain: the barely trained model would tear a bond and the guard stop the rollout before 4 steps
    res = run_cli("rollout", hz15["model"], adk["psf"], str(d / "every3.dcd"), "--frame", "7", "--steps", "4",
                  "--truth", "--constrain", "-o", str(d / "pred.dcd"), "--device", "cpu", "--json", expect=0)
    summary = json.loads(res.stdout)
    assert summary["horizon_frames"] == 5 and summary["step_ps"] == pytest.approx(15.0, rel=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = mda.Universe(adk["psf"], str(d / "every3.dcd"))
        truth_times = [src.trajectory[7 + 5 * k].time for k in range(5)]  # the frames the predictions stand for
        for name in ("pred.dcd", "pred_truth.dcd"):
            pred = mda.Universe(str(d / "pred.pdb"), str(d / name))
            assert pred.trajectory.n_frames == 5
            np.testing.assert_allclose([ts.time for ts in pred.trajectory], truth_times, rtol=1e-5)
    assert truth_times[0] == pytest.approx(21.0, rel=1e-5)  # frame 7 of a file 3 ps apart starting at 0 ps


def test_rollout_default_start_frame_is_one_horizon_of_this_input(adk, hz15):
    d = hz15["dir"]
    res = run_cli("rollout", hz15["model"], adk["psf"], str(d / "every3.dcd"), "--steps", "1",
                  "-o", str(d / "p1.dcd"), "--device", "cpu", "--json", expect=0)
    assert json.loads(res.stdout)["start_frame"] == 5


def test_train_refuses_mixed_spacings_in_frames_and_accepts_them_in_ps(hz15, tiny_config, tmp_path):
    every3 = str(hz15["dir"] / "every3.h5")
    res = run_cli("train", hz15["full"], every3, "-o", str(tmp_path / "r1"), "--config",
                  tiny_config, "--quiet", "--device", "cpu")
    assert res.exit_code == 2 and "3 ps apart" in res.stderr and "--horizon-ps" in res.stderr
    assert not (tmp_path / "r1").exists()
    res = run_cli("train", hz15["full"], every3, "--val", hz15["full"], "-o", str(tmp_path / "r2"), "--config",
                  tiny_config, "--horizon-ps", "6", "--epochs", "1", "--quiet", "--device", "cpu", "--json", expect=0)
    metrics = json.loads(res.stdout)
    assert metrics["horizon_ps"] == pytest.approx(6.0) and metrics["horizon_frames"] == 6
    assert sorted({s["horizon_frames"] for s in metrics["sources"]}) == [2, 6]
    from eghn_md.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "r2" / "model.pt")
    assert ckpt.stats["horizon_ps"] == pytest.approx(6.0) and ckpt.stats["frame_dt_ps"] == pytest.approx(1.0, 1e-5)
    res = run_cli("train", hz15["full"], "-o", str(tmp_path / "r3"), "--horizon", "3",
                  "--horizon-ps", "3")
    assert res.exit_code == 2 and "not both" in res.stderr


@pytest.mark.parametrize("start,dt", [(0.0, 15.0), (21.0, 15.0), (2.5, 5.0), (1.0, 15.0), (7.25, 0.5)])
def test_written_dcd_carries_start_time_and_step(tmp_path, start, dt):
    from eghn_md.io.writers import write_node_trajectory

    nodes = {"resname": ["ALA", "GLY"], "resid": [1, 2], "segid": ["A", "A"], "name": ["CA", "CA"]}
    frames = np.random.default_rng(0).normal(size=(4, 2, 3)).astype(np.float32)
    write_node_trajectory(tmp_path / "p.dcd", nodes, frames, dt_ps=dt, start_time_ps=start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(tmp_path / "p.pdb"), str(tmp_path / "p.dcd"))
        np.testing.assert_allclose([ts.time for ts in u.trajectory], start + dt * np.arange(4), rtol=1e-5, atol=1e-6)
