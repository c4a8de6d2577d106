"""eghn_md.io.readers: formats, atom-count checks, streamed positions and times in Å / ps."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from _data import datafile, mda_positions, write_mdtraj_h5
from eghn_md.errors import DataError, UsageError
from eghn_md.io.readers import (
    SUPPORTED_EXTENSIONS,
    SUPPORTED_TOPOLOGY_EXTENSIONS,
    SUPPORTED_TRAJECTORY_EXTENSIONS,
    file_format,
    open_system,
    sha256_file,
)

pytest.importorskip("MDAnalysisTests")


def _read_all(src, indices, stride=1, block=7):
    pos, times = [], []
    for p, t in src.iter_blocks(indices, stride=stride, block=block):
        pos.append(p.copy())
        times.append(t.copy())
    return np.concatenate(pos), np.concatenate(times)


def test_supported_extensions_cover_common_md_formats():
    for ext in ("pdb", "psf", "gro", "tpr", "prmtop", "parm7", "h5"):
        assert ext in SUPPORTED_TOPOLOGY_EXTENSIONS
    for ext in ("dcd", "xtc", "trr", "nc", "ncdf", "mdcrd", "trj", "pdb", "h5"):
        assert ext in SUPPORTED_TRAJECTORY_EXTENSIONS
    assert set(SUPPORTED_TOPOLOGY_EXTENSIONS) <= set(SUPPORTED_EXTENSIONS)
    assert "memory" not in SUPPORTED_EXTENSIONS and "chain" not in SUPPORTED_EXTENSIONS


def test_file_format_by_extension(tmp_path):
    assert file_format(datafile("PSF"), kind="topology") == "PSF"
    assert file_format(datafile("GRO_MEMPROT"), kind="topology") == "GRO"  # .gro.gz
    bad = tmp_path / "system.foo"
    bad.write_text("x")
    with pytest.raises(UsageError, match=r"unknown trajectory format '\.foo'.*supported: .*dcd.*xtc"):
        file_format(bad, kind="trajectory")
    with pytest.raises(UsageError, match="does not exist"):
        file_format(tmp_path / "missing.dcd", kind="trajectory")


def test_sha256_file(tmp_path):
    p = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    p.write_bytes(data)
    assert sha256_file(p, block_size=1000) == hashlib.sha256(data).hexdigest()


def test_psf_dcd_positions_and_times_match_mdanalysis():
    ref_pos, ref_t = mda_positions(datafile("PSF"), datafile("DCD"), "protein and name CA", stride=3)
    with open_system(datafile("PSF"), [datafile("DCD")]) as system:
        assert system.n_atoms == 3341
        src = system.trajectories[0]
        assert (src.n_frames, src.n_atoms, src.format) == (98, 3341, "DCD")
        assert src.n_strided(3) == 33
        ca = system.select("protein and name CA")
        pos, times = _read_all(src, ca.indices, stride=3)
    assert pos.dtype == np.float32 and pos.shape == (33, 214, 3)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_allclose(times, ref_t, rtol=0, atol=1e-9)
    assert times[0] > 0.9  # DCD times come from the reader (this file starts at 1 ps)


def test_all_atoms_fast_path():
    with open_system(datafile("PSF"), [datafile("DCD")]) as system:
        idx = np.arange(system.n_atoms)
        pos, _ = _read_all(system.trajectories[0], idx, stride=40)
    ref, _ = mda_positions(datafile("PSF"), datafile("DCD"), "all", stride=40)
    np.testing.assert_array_equal(pos, ref)


def test_atom_count_mismatch():
    with pytest.raises(DataError, match=r"has 47681 atoms but the topology has 3341"):
        open_system(datafile("PSF"), [datafile("XTC")])


def test_selection_errors():
    with open_system(datafile("PSF"), [datafile("DCD")]) as system:
        with pytest.raises(UsageError, match="invalid selection"):
            system.select("protein and nme CA")
        with pytest.raises(UsageError, match="matches no atom"):
            system.select("resname XYZ")
        with pytest.raises(UsageError, match="empty"):
            system.select("  ")


def test_mdtraj_h5_topology_and_trajectory(tmp_path):
    pytest.importorskip("tables")
    h5 = write_mdtraj_h5(tmp_path / "adk.h5", n_frames=4)
    ref, _ = mda_positions(datafile("PSF"), datafile("DCD"), "all")
    with open_system(h5, [h5]) as system:
        assert system.n_atoms == 3341
        bb = system.select("backbone")
        assert bb.n_atoms == 856  # mdtraj renamed the PSF's C-terminal OT1/OT2 to O/OXT: one more 'O' than 855
        assert system.select("protein and name CA").n_atoms == 214
        assert set(system.universe.atoms.segids) == {"4AKE"}
        assert len(system.universe.atoms.bonds) == 3365
        src = system.trajectories[0]
        assert (src.format, src.n_frames) == ("H5", 4)
        pos, times = _read_all(src, bb.indices, block=3)
    np.testing.assert_allclose(pos, ref[:4, bb.indices], atol=2e-4)  # nm float32 on disk → Å
    np.testing.assert_allclose(times, [0.0, 2.5, 5.0, 7.5])


def test_mdtraj_h5_trajectory_with_psf_topology(tmp_path):
    pytest.importorskip("tables")
    h5 = write_mdtraj_h5(tmp_path / "adk.h5", n_frames=4)
    with open_system(datafile("PSF"), [h5]) as system:
        ca = system.select("name CA")
        pos, _ = _read_all(system.trajectories[0], ca.indices, stride=2)
    ref, _ = mda_positions(datafile("PSF"), datafile("DCD"), "name CA", stride=2)
    np.testing.assert_allclose(pos, ref[:2], atol=2e-4)


def test_mdtraj_h5_without_pytables_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    import h5py

    fake = tmp_path / "fake.h5"
    with h5py.File(fake, "w") as f:  # mdtraj's layout, without needing PyTables to write it
        f["coordinates"] = np.zeros((3, 3341, 3), dtype=np.float32)
        f["topology"] = "{}"
    monkeypatch.setitem(sys.modules, "tables", None)  # import tables → ImportError
    with pytest.raises(DataError, match="needs PyTables: pip install tables"):
        open_system(datafile("PSF"), [fake])
    with pytest.raises(DataError, match="needs PyTables"):
        open_system(fake, [fake])
