"""eghn_md.data.dataset: the HDF5 format, streaming writes, the reader and its validation."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from _data import leftovers, write_mdtraj_h5
from eghn_md import __version__
from eghn_md.data.dataset import FORMAT_VERSION, Dataset, TrajectoryData, trajectory_name, write_dataset
from eghn_md.errors import DataError, UsageError
from eghn_md.graph.nodes import NodeTable


def _nodes(n: int = 5) -> NodeTable:
    return NodeTable(
        resname=np.array(["ALA", "GLY", "HSD", "LYS", "TRP"][:n]),
        resid=np.arange(1, n + 1),
        segid=np.array(["A"] * n),
        chain=np.array(["A"] * n),
        name=np.array(["CA"] * n),
        atom_index=np.arange(n) * 10,
        charge=None,
        bonds=np.stack([np.arange(n - 1), np.arange(1, n)], 1),
    )


def _blocks(pos: np.ndarray, times: np.ndarray, size: int):
    for s in range(0, len(pos), size):
        yield pos[s : s + size], times[s : s + size]


def test_write_and_read_back(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(23, 5, 3)).astype(np.float32)
    b = rng.normal(size=(4, 5, 3)).astype(np.float32)
    out = tmp_path / "d.h5"
    write_dataset(
        out,
        _nodes(),
        [
            TrajectoryData("run1", 23, _blocks(a, np.arange(23) * 2.0, 5), source="run1.dcd", sha256="ab", stride=2),
            TrajectoryData.from_arrays("run0", b, dt=0.5),
        ],
        selection="name CA",
        topology="top.psf",
    )
    assert leftovers(tmp_path) == []
    with Dataset(out) as ds:
        assert ds.trajectories == ["run1", "run0"]  # file order, not alphabetical
        assert ds.format_version == FORMAT_VERSION and ds.selection == "name CA" and ds.n_nodes == 5
        pos = ds.positions("run1")
        assert isinstance(pos, h5py.Dataset) and pos.dtype == np.float32 and pos.shape == (23, 5, 3)
        assert pos.chunks is not None and pos.chunks[1:] == (5, 3)
        np.testing.assert_array_equal(pos[3:7], a[3:7])
        np.testing.assert_array_equal(ds.positions(1)[()], b)
        np.testing.assert_array_equal(ds.times("run1"), np.arange(23) * 2.0)
        np.testing.assert_array_equal(ds.frame_index("run1"), np.arange(23) * 2)
        assert ds.attrs["length_unit"] == "angstrom" and ds.attrs["time_unit"] == "ps"
        assert ds.attrs["eghn_md_version"] == __version__
        assert ds.trajectory_attrs("run1")["sha256"] == "ab"
        np.testing.assert_array_equal(ds.nodes.bonds, _nodes().bonds)
        ds.validate()
        s = ds.summary()
        json.dumps(s)
        assert s["n_frames_total"] == 27 and s["n_trajectories"] == 2
        assert s["trajectories"][0]["time_step_ps"] == 2.0 and s["trajectories"][1]["t_end_ps"] == 1.5
        with pytest.raises(UsageError, match="no trajectory 'nope'"):
            ds.positions("nope")


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "d.h5"
    out.write_bytes(b"old")
    with pytest.raises(UsageError, match="already exists"):
        write_dataset(out, _nodes(), [TrajectoryData.from_arrays("t", np.zeros((2, 5, 3)))])
    assert out.read_bytes() == b"old"
    write_dataset(out, _nodes(), [TrajectoryData.from_arrays("t", np.zeros((2, 5, 3)))], overwrite=True)
    assert Dataset(out).n_frames("t") == 2


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_block_leaves_nothing(tmp_path, bad):
    pos = np.zeros((10, 5, 3), dtype=np.float32)
    pos[7, 2, 1] = bad
    with pytest.raises(DataError, match="non-finite .* frame 7"):
        write_dataset(tmp_path / "d.h5", _nodes(), [TrajectoryData("t", 10, _blocks(pos, np.arange(10.0), 4))])
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_count_or_shape(tmp_path):
    pos = np.zeros((4, 5, 3), dtype=np.float32)
    with pytest.raises(DataError, match="yielded 4 frames, expected 6"):
        write_dataset(tmp_path / "d.h5", _nodes(), [TrajectoryData("t", 6, _blocks(pos, np.arange(4.0), 3))])
    with pytest.raises(DataError, match="expected \\(frames, 5, 3\\)"):
        write_dataset(tmp_path / "d.h5", _nodes(), [TrajectoryData.from_arrays("t", np.zeros((4, 6, 3)))])
    with pytest.raises(UsageError, match="used twice"):
        write_dataset(tmp_path / "d.h5", _nodes(), [TrajectoryData.from_arrays("t", pos)] * 2)
    assert list(tmp_path.iterdir()) == []


def test_newer_format_is_refused(tmp_path):
    out = write_dataset(tmp_path / "d.h5", _nodes(), [TrajectoryData.from_arrays("t", np.zeros((2, 5, 3)))])
    with h5py.File(out, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(DataError, match=f"format version {FORMAT_VERSION + 1}, newer than {FORMAT_VERSION}.*upgrade"):
        Dataset(out)


def test_validate_finds_corruption(tmp_path):
    out = write_dataset(tmp_path / "d.h5", _nodes(), [TrajectoryData.from_arrays("t", np.zeros((50, 5, 3)))])
    with h5py.File(out, "r+") as f:
        f["trajectories/t/positions"][33, 0, 0] = np.nan
    with Dataset(out) as ds:
        with pytest.raises(DataError, match="non-finite positions at frame 33"):
            ds.validate()


def test_not_a_dataset(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        Dataset(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        Dataset(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(DataError, match="not an eghn-md dataset"):
        Dataset(tmp_path / "other.h5")


def test_mdtraj_file_is_not_a_dataset(tmp_path):
    pytest.importorskip("tables")
    pytest.importorskip("MDAnalysisTests")
    h5 = write_mdtraj_h5(tmp_path / "traj.h5", n_frames=2)
    with pytest.raises(DataError, match="mdtraj trajectory, not an eghn-md dataset"):
        Dataset(h5)


def test_trajectory_name():
    assert trajectory_name("/a/b/adk_dims.dcd") == "adk_dims"
    assert trajectory_name("x/YiiP lipids.xtc.gz") == "YiiP_lipids"
    assert trajectory_name("run.dcd", ["run", "run_1"]) == "run_2"
