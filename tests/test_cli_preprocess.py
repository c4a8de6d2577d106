"""`eghn-md preprocess` and `eghn-md info` end to end (Click's CliRunner on cli.main:main)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from _data import datafile, leftovers, mda_positions, run_cli, write_mdtraj_h5, write_nan_dcd
from eghn_md.data.dataset import Dataset

pytest.importorskip("MDAnalysisTests")


def _ok(result):
    assert result.exit_code == 0, (result.stderr, result.exception)
    return result


def _preprocess_json(*args):
    return json.loads(_ok(run_cli("preprocess", *args, "--quiet", "--json")).stdout)


def test_psf_dcd_default_calpha(tmp_path):
    out = tmp_path / "adk.h5"
    s = _preprocess_json(datafile("PSF"), datafile("DCD"), "-o", out)
    assert (s["n_nodes"], s["trajectories"][0]["n_frames"]) == (214, 98)
    assert s["selection"] == "protein and name CA" and s["node_level"] == "residue" and s["n_bonds"] == 213
    ref_pos, ref_t = mda_positions(datafile("PSF"), datafile("DCD"), "protein and name CA")
    with Dataset(out) as ds:
        ds.validate()
        np.testing.assert_array_equal(ds.positions(0)[()], ref_pos)  # float32 exactly as MDAnalysis gives them
        np.testing.assert_array_equal(ds.times(0), ref_t)  # ps, from the DCD reader
        attrs, tattrs = ds.attrs, ds.trajectory_attrs(0)
        assert attrs["topology"] == "adk.psf" and len(attrs["topology_sha256"]) == 64
        assert tattrs["source"] == "adk_dims.dcd" and tattrs["source_format"] == "DCD"
        assert ds.nodes.charge is not None
    assert leftovers(tmp_path) == []


def test_backbone_with_stride(tmp_path):
    out = tmp_path / "bb.h5"
    s = _preprocess_json(datafile("PSF"), datafile("DCD"), "-o", out, "--select", "backbone", "--stride", "10")
    assert s["n_nodes"] == 855 and s["node_level"] == "atom" and s["bonds_source"] == "topology"
    assert s["trajectories"][0]["n_frames"] == 10 and s["trajectories"][0]["stride"] == 10
    ref_pos, ref_t = mda_positions(datafile("PSF"), datafile("DCD"), "backbone", stride=10)
    with Dataset(out) as ds:
        np.testing.assert_array_equal(ds.positions(0)[()], ref_pos)
        np.testing.assert_array_equal(ds.times(0), ref_t)
        np.testing.assert_array_equal(ds.frame_index(0), np.arange(10) * 10)


def test_two_trajectories_two_groups(tmp_path):
    out = tmp_path / "two.h5"
    s = _preprocess_json(datafile("PSF"), datafile("DCD"), datafile("DCD2"), "-o", out, "--stride", "20")
    assert [t["name"] for t in s["trajectories"]] == ["adk_dims", "adk_dims2"]
    assert [t["n_frames"] for t in s["trajectories"]] == [5, 6]
    with Dataset(out) as ds:
        ref, _ = mda_positions(datafile("PSF"), datafile("DCD2"), "protein and name CA", stride=20)
        np.testing.assert_array_equal(ds.positions("adk_dims2")[()], ref)


@pytest.mark.parametrize(
    "top, traj, stride, n_nodes, n_frames",
    [
        ("GRO", "XTC", 3, 214, 4),
        ("TPR", "TRR", 5, 214, 2),
        ("PRM", "TRJ", 1, 14, 11),  # Amber ache.prmtop + ache.mdcrd (ASCII TRJ)
        ("PDB_multiframe", "PDB_multiframe", 1, 27, 24),  # multi-model (NMR) PDB as topology and trajectory
    ],
)
def test_other_formats(tmp_path, top, traj, stride, n_nodes, n_frames):
    out = tmp_path / "o.h5"
    s = _preprocess_json(datafile(top), datafile(traj), "-o", out, "--stride", str(stride))
    assert (s["n_nodes"], s["n_frames_total"]) == (n_nodes, n_frames)
    ref_pos, ref_t = mda_positions(datafile(top), datafile(traj), "protein and name CA", stride=stride)
    with Dataset(out) as ds:
        np.testing.assert_array_equal(ds.positions(0)[()], ref_pos)
        np.testing.assert_allclose(ds.times(0), ref_t)


def test_netcdf_without_time_step_warns(tmp_path):
    res = _ok(run_cli("preprocess", datafile("PRMncdf"), datafile("NCDF"), "-o", tmp_path / "n.h5", "--json"))
    s = json.loads(res.stdout)
    assert s["n_nodes"] == 3 and s["n_frames_total"] == 30
    assert s["warnings"] and "do not increase" in s["warnings"][0]
    assert "Warning" in res.stderr


def test_mdtraj_h5(tmp_path):
    pytest.importorskip("tables")
    h5 = write_mdtraj_h5(tmp_path / "adk_md.h5", n_frames=4)
    out = tmp_path / "from_h5.h5"
    s = _preprocess_json(h5, h5, "-o", out)
    assert s["n_nodes"] == 214 and s["n_frames_total"] == 4 and s["trajectories"][0]["time_step_ps"] == 2.5
    ref, _ = mda_positions(datafile("PSF"), datafile("DCD"), "protein and name CA")
    with Dataset(out) as ds:
        np.testing.assert_allclose(ds.positions(0)[()], ref[:4], atol=2e-4)
        assert ds.trajectory_attrs(0)["source_format"] == "H5"
    s = _preprocess_json(datafile("PSF"), h5, "-o", tmp_path / "psf_h5.h5")
    assert s["n_nodes"] == 214 and s["n_frames_total"] == 4


def test_progress_and_human_summary_go_to_stderr(tmp_path):
    res = _ok(run_cli("preprocess", datafile("PSF"), datafile("DCD"), "-o", tmp_path / "a.h5", "--stride", "10"))
    assert res.stdout == ""
    assert "10/10" in res.stderr and "protein and name CA" in res.stderr and "Wrote" in res.stderr
    quiet = _ok(run_cli("preprocess", datafile("PSF"), datafile("DCD"), "-o", tmp_path / "b.h5", "--stride", "10",
                        "--quiet"))
    assert quiet.stdout == "" and quiet.stderr == ""


def test_overwrite(tmp_path):
    out = tmp_path / "a.h5"
    _preprocess_json(datafile("PSF"), datafile("DCD"), "-o", out, "--stride", "10")
    s = _preprocess_json(datafile("PSF"), datafile("DCD"), "-o", out, "--stride", "20", "--overwrite")
    assert s["n_frames_total"] == 5
    assert leftovers(tmp_path) == []


def test_info_dataset(tmp_path):
    out = tmp_path / "a.h5"
    _preprocess_json(datafile("PSF"), datafile("DCD"), "-o", out, "--stride", "10", "--select", "backbone")
    text = _ok(run_cli("info", out)).stdout
    for needle in ("855", "backbone", "adk_dims", "format version", "time step"):
        assert needle in text
    s = json.loads(_ok(run_cli("info", out, "--json")).stdout)
    assert s["n_nodes"] == 855 and s["format_version"] == 1
    assert s["trajectories"][0]["time_step_ps"] == pytest.approx(10, rel=1e-6)


def test_info_checkpoint_uses_describe(tmp_path, monkeypatch):
    fake = types.ModuleType("eghn_md.train.checkpoint")
    fake.describe = lambda path: {"model": "eghn", "format_version": 1, "config": {"hidden": 64}, "path": str(path)}
    monkeypatch.setitem(sys.modules, "eghn_md.train.checkpoint", fake)
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    s = json.loads(_ok(run_cli("info", ckpt, "--json")).stdout)
    assert s["model"] == "eghn" and s["config"] == {"hidden": 64}
    text = _ok(run_cli("info", ckpt)).stdout
    assert "config.hidden" in text and "eghn" in text


# ------------------------------------------------------------------------------------------------ bad input
def _fails(tmp_path, args, code, *needles):
    out = tmp_path / "out.h5"
    res = run_cli("preprocess", *args, "-o", out)
    assert res.exit_code == code, (res.stderr, res.exception)
    err_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(err_lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in err_lines[0], err_lines[0]
    assert not out.exists()
    assert leftovers(tmp_path) == []
    return err_lines[0]


def test_missing_file(tmp_path):
    _fails(tmp_path, [datafile("PSF"), tmp_path / "nope.dcd"], 2, "nope.dcd", "does not exist")
    _fails(tmp_path, [tmp_path / "nope.psf", datafile("DCD")], 2, "nope.psf", "does not exist")


def test_unknown_format(tmp_path):
    bad = tmp_path / "traj.foo"
    bad.write_text("1 2 3")
    _fails(tmp_path, [datafile("PSF"), bad], 2, "unknown trajectory format '.foo'", "supported:", "dcd", "xtc", "h5")
    bad.unlink()


def test_atom_count_mismatch_cli(tmp_path):
    _fails(tmp_path, [datafile("PSF"), datafile("XTC")], 1, "47681 atoms", "3341")


def test_selection_matching_nothing(tmp_path):
    _fails(tmp_path, [datafile("PSF"), datafile("DCD"), "--select", "resname XYZ"], 2, "matches no atom", "--select")


def test_invalid_selection(tmp_path):
    _fails(tmp_path, [datafile("PSF"), datafile("DCD"), "--select", "protein and nme CA"], 2, "invalid selection")


def test_too_few_frames(tmp_path):
    _fails(tmp_path, [datafile("PSF"), datafile("DCD"), "--stride", "98"], 1, "1 frame", "need at least 2")
    _fails(tmp_path, [datafile("GRO"), datafile("GRO")], 1, "1 frame", "need at least 2")


def test_bad_stride(tmp_path):
    _fails(tmp_path, [datafile("PSF"), datafile("DCD"), "--stride", "0"], 2, "--stride")


def test_nan_coordinates(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nan = write_nan_dcd(src / "nan.dcd", bad_frame=1)
    _fails(tmp_path, [datafile("PSF"), nan], 1, "nan.dcd", "NaN", "frame 1")


def test_existing_output_without_overwrite(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    res = run_cli("preprocess", datafile("PSF"), datafile("DCD"), "-o", out)
    assert res.exit_code == 2 and "already exists" in res.stderr and "--overwrite" in res.stderr
    assert out.read_bytes() == b"precious"
    assert leftovers(tmp_path) == []


def test_output_is_an_input(tmp_path):
    h5 = tmp_path / "adk.h5"
    h5.write_bytes(b"x")
    res = run_cli("preprocess", datafile("PSF"), h5, "-o", h5, "--overwrite")
    assert res.exit_code == 2 and "also an input" in res.stderr
    assert h5.read_bytes() == b"x"


def test_dataset_given_as_trajectory(tmp_path):
    data = tmp_path / "d.h5"
    _preprocess_json(datafile("PSF"), datafile("DCD"), "-o", data, "--stride", "20")
    _fails(tmp_path, [datafile("PSF"), data], 2, "eghn-md dataset, not a trajectory")


def test_info_errors(tmp_path):
    res = run_cli("info", tmp_path / "none.h5")
    assert res.exit_code == 2 and "does not exist" in res.stderr
    (tmp_path / "x.h5").write_text("not hdf5")
    res = run_cli("info", tmp_path / "x.h5")
    assert res.exit_code == 1 and "not a readable HDF5 file" in res.stderr and "Traceback" not in res.stderr


def test_missing_time_step_is_reported(tmp_path):
    res = _ok(run_cli("preprocess", datafile("PRM"), datafile("TRJ"), "-o", tmp_path / "a.h5", "--json"))
    s = json.loads(res.stdout)
    assert s["trajectories"][0]["times_from_file"] is False
    assert "stores no time step" in s["warnings"][0] and "stores no time step" in res.stderr
