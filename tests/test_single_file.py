"""Issue 14: one file that holds topology and frames (multi-model PDB, mdtraj .h5) is enough for preprocess,
rollout and export clusters; a topology-only file alone is a one-line usage error."""

from __future__ import annotations

import json
import warnings

import MDAnalysis as mda
import numpy as np
import pytest

from _data import datafile, mda_positions, run_cli, write_mdtraj_h5


def test_preprocess_multi_model_pdb_alone(tmp_path):
    pdb = datafile("PDB_multiframe")
    res = run_cli("preprocess", pdb, "-o", tmp_path / "m.h5", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    ref, _ = mda_positions(pdb, pdb, "protein and name CA")
    assert s["n_frames_total"] == ref.shape[0] == 24 and s["n_nodes"] == ref.shape[1]
    from eghn_md.data.dataset import Dataset

    with Dataset(tmp_path / "m.h5") as ds:
        np.testing.assert_allclose(ds.positions(ds.trajectories[0])[()], ref, atol=1e-5)
    # the same as giving the file twice
    res2 = run_cli("preprocess", pdb, pdb, "-o", tmp_path / "m2.h5", "--json", "--quiet")
    s2 = json.loads(res2.stdout)
    assert (s2["n_frames_total"], s2["n_nodes"], s2["n_bonds"]) == (s["n_frames_total"], s["n_nodes"], s["n_bonds"])


def test_preprocess_mdtraj_h5_alone(tmp_path):
    pytest.importorskip("tables")
    h5 = write_mdtraj_h5(tmp_path / "adk_md.h5", n_frames=4)
    res = run_cli("preprocess", h5, "-o", tmp_path / "o.h5", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["n_frames_total"] == 4 and s["n_nodes"] == 214 and s["trajectories"][0]["time_step_ps"] == 2.5


@pytest.mark.parametrize("name,code,message", [
    ("PSF", 2, "no trajectory given and topology"),
    ("GRO", 1, "has 1 frame; need at least 2"),
])
def test_preprocess_alone_refuses_what_cannot_work(tmp_path, name, code, message):
    res = run_cli("preprocess", datafile(name), "-o", tmp_path / "x.h5")
    assert res.exit_code == code
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], res.stderr
    assert not (tmp_path / "x.h5").exists()


def test_rollout_and_export_clusters_from_one_mdtraj_file(tiny_run, tmp_path):
    """12 AdK frames 2.5 ps apart in one .h5: the tiny model's 5 ps horizon is 2 frames; the default start frame
    is 2; predicted frames carry the times of the frames they stand for."""
    pytest.importorskip("tables")
    h5 = write_mdtraj_h5(tmp_path / "adk_md.h5", n_frames=12)
    model = str(tiny_run / "model.pt")
    res = run_cli("rollout", model, h5, "--steps", "3", "--truth", "-o", tmp_path / "p.dcd", "--device", "cpu",
                  "--json", "--quiet")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["start_frame"] == 2 and s["horizon_frames"] == 2 and s["step_ps"] == pytest.approx(5.0)
    assert any("spans 2 frames" in n for n in s["notes"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(tmp_path / "p.pdb"), str(tmp_path / "p.dcd"))
        np.testing.assert_allclose([ts.time for ts in u.trajectory], [5.0, 10.0, 15.0, 20.0], rtol=1e-5)
    res = run_cli("export", "clusters", model, h5, "-o", tmp_path / "cl", "--no-plot", "--device", "cpu", "--json",
                  "--quiet")
    assert res.exit_code == 0, res.output
    c = json.loads(res.stdout)
    assert c["frames"] == [2] and c["horizon_frames"] == 2 and (tmp_path / "cl" / "clusters.pdb").is_file()
