"""`eghn-md rollout` writes the validity report; `eghn-md evaluate --rollout` reports RMSD-vs-step curves and
validity, checked against an independent computation from the dataset file (on ``--device``)."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np

from _data import run_cli


def test_rollout_writes_the_validity_report(tiny_run, adk, tmp_path, device):
    out = tmp_path / "p.dcd"
    res = run_cli("rollout", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"], "--frame", "20",
                  "--steps", "4", "-o", str(out), "--truth", "--device", str(device))
    assert res.exit_code == 0, res.output
    assert "Validity" in res.output and "chain break" in res.output
    rows = list(csv.DictReader(open(tmp_path / "p_validity.csv")))
    assert len(rows) == 5 and {"n_breaks", "n_clashes", "rg_A", "rmsd_A"} <= set(rows[0])
    assert float(rows[0]["rmsd_A"]) == 0.0  # frame 0 is the true start frame
    assert (tmp_path / "p_validity.png").stat().st_size > 1000


def test_rollout_constrain_keeps_bonds(tiny_run, adk, tmp_path, device):
    out = tmp_path / "c.dcd"
    res = run_cli("rollout", str(tiny_run / "model.pt"), adk["psf"], adk["dcd"], "--frame", "20",
                  "--steps", "6", "-o", str(out), "--constrain", "--json", "--device", str(device))
    assert res.exit_code == 0, res.output
    s = json.loads(res.output[res.output.index("{"):])
    assert s["constrained"] and s["validity"]["frames_with_break"] == 0 and s["validity"]["frames_with_clash"] == 0
    assert s["validity"]["max_bond_dev_A"] < 0.01


def _positions(h5):
    with h5py.File(h5, "r") as f:
        grp = f["trajectories"]
        name = list(grp)[0]
        return np.asarray(grp[name]["positions"], dtype=np.float64)


def test_evaluate_rollout_curves_match_an_independent_static_computation(tiny_run, adk_h5, device):
    res = run_cli("evaluate", str(tiny_run / "model.pt"), adk_h5, "--split", "all", "--rollout", "6",
                  "--rollout-starts", "3", "--json", "--device", str(device))
    assert res.exit_code == 0, res.output
    r = json.loads(res.output[res.output.index("{"):])["rollout"]
    starts = [x["start"] for x in r["rollouts"]]
    assert len(starts) == 3 and starts == sorted(starts)
    pos = _positions(adk_h5)
    H = r["horizon_frames"]
    for k in range(0, 7):
        have = [t for t in starts if t + k * H < len(pos)]
        if not have:
            assert r["rmsd_A"]["static"][k] is None
            continue
        static = np.mean([np.sqrt(((pos[t] - pos[t + k * H]) ** 2).sum(1).mean()) for t in have])
        cv = np.mean([np.sqrt(((pos[t] + k * (pos[t] - pos[t - H]) - pos[t + k * H]) ** 2).sum(1).mean())
                      for t in have])
        assert abs(r["rmsd_A"]["static"][k] - static) < 1e-4
        assert abs(r["rmsd_A"]["const_velocity"][k] - cv) < 1e-3
    v = r["validity"]
    assert v["n_rollouts"] == 3 and v["n_frames"] == sum(x["steps_done"] + 1 for x in r["rollouts"])
    rows = list(csv.DictReader(open(r["csv"])))
    assert rows[0]["step"] == "0" and float(rows[0]["rmsd_model_A"]) == 0.0
