"""End-to-end: preprocess → train → evaluate → rollout through the real CLI on the AdK trajectory."""

from __future__ import annotations

import csv
import json

import MDAnalysis as mda
import numpy as np
import pytest
import yaml

from _data import run_cli


def test_train_writes_run_directory(tiny_run):
    from eghn_md.train.checkpoint import load_checkpoint

    for name in ("model.pt", "last.pt", "config.yaml", "history.csv", "metrics.json"):
        assert (tiny_run / name).is_file(), name
    rows = list(csv.DictReader(open(tiny_run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["train_loss"])) and np.isfinite(float(r["val_mse"])) for r in rows)
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert cfg["data"]["cutoff"] == 10.0 and cfg["data"]["horizon"] == 5 and cfg["model"]["node_in"] == 21
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["n_nodes"] == 214 and metrics["best_epoch"] in (1, 2)
    assert set(metrics["splits"]) == {"val", "test"}
    ckpt = load_checkpoint(tiny_run / "model.pt")
    assert ckpt.nodes["selection"] == "protein and name CA" and len(ckpt.nodes["resname"]) == 214
    assert ckpt.train_state is None and load_checkpoint(tiny_run / "last.pt").train_state["epoch"] == 2
    assert ckpt.stats["horizon_ps"] == pytest.approx(5.0, rel=1e-4)


def test_evaluate_baselines_match_direct_computation(tiny_run, adk_h5, adk):
    res = run_cli("evaluate", str(tiny_run / "model.pt"), adk_h5, "--json", "--per-node",
                  str(tiny_run / "err.csv"), expect=0)
    out = json.loads(res.stdout)
    # test block of 98 frames at 0.6/0.2/0.2 is frames 78..97; windows t = 83, 85, …, 92 (horizon 5, stride 2)
    u = mda.Universe(adk["psf"], adk["dcd"])
    ca = u.select_atoms("protein and name CA")
    x = np.stack([ca.positions.copy() for _ in u.trajectory]).astype(np.float64)
    ts = list(range(83, 98 - 5, 2))
    static = np.mean([((x[t + 5] - x[t]) ** 2).mean() for t in ts])
    cv = np.mean([((x[t] + (x[t] - x[t - 5]) - x[t + 5]) ** 2).mean() for t in ts])
    assert out["windows"] == len(ts)
    assert out["static"] == pytest.approx(static, rel=1e-4)
    assert out["const_velocity"] == pytest.approx(cv, rel=1e-4)
    assert np.isfinite(out["model"]) and out["model"] > 0
    rows = list(csv.DictReader(open(tiny_run / "err.csv")))
    assert len(rows) == 214 and rows[0]["resname"] == "MET"
    assert np.mean([float(r["static_mse_A2"]) for r in rows]) == pytest.approx(static, rel=1e-4)


def test_rollout_writes_dcd_and_pdb(tiny_run, adk, tmp_path):
    pred = tmp_path / "pred.dcd"
    run_cli("rollout", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"], "--frame", "10", "--steps", "3",
            "-o", str(pred), "--truth", "--quiet", expect=0)
    u = mda.Universe(str(tmp_path / "pred.pdb"), str(pred))
    ref = mda.Universe(adk["psf"], adk["dcd"])
    ca = ref.select_atoms("protein and name CA")
    assert len(u.trajectory) == 4 and u.atoms.n_atoms == 214
    assert list(u.residues.resnames[:3]) == list(ca.residues.resnames[:3])
    assert u.trajectory.dt == pytest.approx(5.0, rel=1e-4)
    ref.trajectory[10]
    np.testing.assert_allclose(u.trajectory[0].positions, ca.positions, atol=1e-3)
    truth = mda.Universe(str(tmp_path / "pred.pdb"), str(tmp_path / "pred_truth.dcd"))
    ref.trajectory[25]
    np.testing.assert_allclose(truth.trajectory[3].positions, ca.positions, atol=1e-3)
    rows = list(csv.DictReader(open(tmp_path / "pred_rmsd.csv")))
    assert len(rows) == 4 and float(rows[0]["rmsd_model_A"]) < 1e-3
    assert float(rows[3]["time_ps"]) == pytest.approx(15.0, rel=1e-4)
    assert all(float(r["rmsd_model_A"]) >= 0 for r in rows)


def _rotated_trajectory(adk, out, R, b, n_frames=20):
    u = mda.Universe(adk["psf"], adk["dcd"])
    with mda.Writer(str(out), n_atoms=u.atoms.n_atoms, dt=u.trajectory.dt) as w:
        for _ in u.trajectory[:n_frames]:
            u.atoms.positions = u.atoms.positions @ R.T + b
            w.write(u.atoms)


def test_rollout_of_rotated_input_is_rotated_rollout(tiny_run, adk, tmp_path):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R = q * np.sign(np.linalg.det(q))  # proper rotation
    b = np.array([12.5, -30.0, 7.0])
    rot = tmp_path / "rot.dcd"
    _rotated_trajectory(adk, rot, R, b)
    a, c = tmp_path / "a.dcd", tmp_path / "c.dcd"
    for traj, out in ((adk["dcd"], a), (str(rot), c)):
        run_cli("rollout", str(tiny_run / "model.pt"), adk["psf"], traj, "--frame", "5", "--steps", "3",
                "-o", str(out), "--quiet", "--device", "cpu", expect=0)
    ua = mda.Universe(str(tmp_path / "a.pdb"), str(a))
    uc = mda.Universe(str(tmp_path / "c.pdb"), str(c))
    for fa, fc in zip(ua.trajectory, uc.trajectory, strict=True):
        pa = fa.positions.astype(np.float64) @ R.T + b
        np.testing.assert_allclose(uc.trajectory[fc.frame].positions, pa, atol=2e-3)
    # and the prediction actually moves (not a trivial identity)
    ua.trajectory[0]
    p0 = ua.atoms.positions.copy()
    ua.trajectory[3]
    assert np.abs(ua.atoms.positions - p0).max() > 1e-2


def test_rollout_rejects_other_topology(tiny_run, tmp_path):
    """A real sequence difference (residue 1 MET → ALA in the OPLS-AA AdK GRO) is refused, naming the node. The
    unmodified GRO is the same protein (HIS for the PSF's HSD, issue 14) and passes this check."""
    from MDAnalysisTests.datafiles import GRO, XTC

    lines = open(GRO).read().splitlines(keepends=True)
    mutated = tmp_path / "mutated.gro"
    mutated.write_text("".join(lines[:2] + [ln[:5] + "ALA" + ln[8:] if ln[:5].strip() == "1" else ln
                                            for ln in lines[2:]]))
    res = run_cli("rollout", str(tiny_run / "model.pt"), str(mutated), XTC, "--frame", "5", "--steps", "1",
                  "-o", str(tmp_path / "x.dcd"), expect=1)
    assert "node" in res.output and "Traceback" not in res.output
    assert "node 0 (resid 1) is residue 'ALA' (ALA) but the model expects 'MET'" in res.output
    assert not (tmp_path / "x.dcd").exists()


def test_rollout_truth_needs_enough_frames(tiny_run, adk, tmp_path):
    res = run_cli("rollout", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"], "--frame", "90", "--steps", "5",
                  "--truth", "-o", str(tmp_path / "x.dcd"), expect=2)
    assert "--steps <= 1" in res.output
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_existing_run_without_overwrite(tiny_run, adk_h5, tiny_config):
    res = run_cli("train", adk_h5, "-o", str(tiny_run), "--config", tiny_config, "--quiet", expect=2)
    assert "--resume" in res.output and "--overwrite" in res.output


def test_horizon_too_long_is_a_clear_error(adk_h5, tiny_config, tmp_path):
    res = run_cli("train", adk_h5, "-o", str(tmp_path / "r"), "--config", tiny_config, "--horizon", "40",
                  "--quiet", expect=2)
    assert "horizon 40" in res.output
    assert not (tmp_path / "r" / "model.pt").exists()
