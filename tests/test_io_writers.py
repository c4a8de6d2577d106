"""The one MDAnalysis writer (`eghn_md.io.writers.mda_writer`): atomic, and it silences only the warnings it means
to."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from eghn_md.io.writers import EXPECTED_WRITER_WARNINGS, mda_writer, node_universe, write_node_trajectory

NODES = {"resid": [1, 2, 3], "resname": ["ALA", "GLY", "SER"], "segid": ["A"] * 3, "name": ["CA"] * 3}


def _universe():
    return node_universe(NODES, np.arange(18, dtype=np.float32).reshape(2, 3, 3) * 1.5, dt_ps=1.0)


def test_node_files_are_written_without_the_expected_warnings(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = write_node_trajectory(tmp_path / "p.dcd", NODES, _universe().trajectory.coordinate_array,
                                        dt_ps=1.0)
    assert [p.name for p in written] == ["p.dcd", "p.pdb"]
    assert [str(w.message) for w in caught if "MDAnalysis" in str(w.filename)] == []


def test_an_unrelated_warning_still_surfaces(tmp_path):
    u = _universe()
    with pytest.warns(UserWarning, match="something else"):
        with mda_writer(tmp_path / "a.pdb", n_atoms=3, multiframe=False) as w:
            warnings.warn("something else", UserWarning, stacklevel=1)
            w.write(u.atoms)
    with pytest.warns(RuntimeWarning, match="No dimensions set"):  # the right message, another category
        with mda_writer(tmp_path / "b.pdb", n_atoms=3, multiframe=False) as w:
            warnings.warn("No dimensions set for current frame, zeroed unitcell will be written", RuntimeWarning,
                          stacklevel=1)
            w.write(u.atoms)
    assert (tmp_path / "a.pdb").exists() and (tmp_path / "b.pdb").exists()


def test_the_filters_match_what_mdanalysis_says():
    import re

    said = ["No dimensions set for current frame, zeroed unitcell will be written",
            "Unit cell dimensions not found. CRYST1 record set to unitary values.",
            "Found no information for attr: 'altLocs' Using default value of ' '",
            "Found missing chainIDs. Corresponding atoms will use value of 'X'"]
    assert all(any(re.match(p, m) for p in EXPECTED_WRITER_WARNINGS) for m in said)
    assert not any(re.match(p, "Reader has no dt information, set to 1.0 ps") for p in EXPECTED_WRITER_WARNINGS)


def test_a_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="stop"):
        with mda_writer(tmp_path / "c.dcd", n_atoms=3) as w:
            w.write(_universe().atoms)
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
