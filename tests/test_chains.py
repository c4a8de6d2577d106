"""Issue 14: sequence bonds only within a chain, never across a chain break or a gap of missing residues."""

from __future__ import annotations

import json
import warnings

import MDAnalysis as mda
import numpy as np
import pytest

from _data import run_cli
from eghn_md.graph.chains import CA_CA_MAX_BOND, chain_model, sequence_bonds, sequence_breaks

SEL = "protein and name CA"


def test_sequence_breaks_rules():
    resid = np.array([1, 2, 3, 5, 6, 1, 2, 2, 3])
    ids = np.array(["A"] * 9)
    br = sequence_breaks(resid, ids, np.array([""] * 9))
    # jump 3→5 (gap), restart 6→1 (new chain); equal resids (insertion codes) stay joined
    assert br.tolist() == [False, False, True, False, True, False, False, False]
    assert sequence_bonds(br).tolist() == [[0, 1], [1, 2], [3, 4], [5, 6], [6, 7], [7, 8]]
    chain = np.array(["A", "A", "B"])
    assert sequence_breaks(np.array([1, 2, 3]), np.array(["S"] * 3), chain).tolist() == [False, True]
    pos = np.array([[0, 0, 0], [3.8, 0, 0], [3.8 + CA_CA_MAX_BOND + 0.01, 0, 0]])
    r3, s3 = np.array([1, 2, 3]), np.array([""] * 3)
    assert sequence_breaks(r3, s3, s3, positions=pos, is_ca=True).tolist() == [False, True]
    assert sequence_breaks(r3, s3, s3, positions=pos, is_ca=False).tolist() == [False, False]


def _write(atoms, top, traj):
    """``atoms`` as a GRO topology (no chain IDs) and a 2-frame XTC of their current positions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atoms.write(str(top))
        with mda.Writer(str(traj), atoms.n_atoms) as w:
            w.write(atoms)
            w.write(atoms)


def _preprocess(top, traj, out):
    res = run_cli("preprocess", str(top), str(traj), "-o", str(out), "--quiet", "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _bond_lengths(h5):
    from eghn_md.data.dataset import Dataset

    with Dataset(h5) as ds:
        pos = ds.positions(ds.trajectories[0])[0]
        b = np.asarray(ds.nodes.bonds)
        return ds.nodes, np.linalg.norm(pos[b[:, 0]] - pos[b[:, 1]], axis=1)


@pytest.fixture(scope="module")
def adk_universe(adk):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(adk["psf"], adk["dcd"])


@pytest.mark.parametrize("numbering", ["restart", "continuous"])
def test_two_chains_without_chain_ids_get_no_bond_between_them(adk_universe, adk, tmp_path, numbering):
    """Two AdK copies 40 Å apart in one GRO (no chain IDs, one segment): resids restart at 1, or continue 215…"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = mda.Universe(adk["psf"], adk["dcd"])
        if numbering == "continuous":
            second.residues.resids = second.residues.resids + 214
        merged = mda.Merge(adk_universe.select_atoms("protein"), second.select_atoms("protein"))
        merged.atoms[3341:].translate([40.0, 0.0, 0.0])
    _write(merged.atoms, tmp_path / "dimer.gro", tmp_path / "dimer.xtc")  # the merged frame twice
    summary = _preprocess(tmp_path / "dimer.gro", tmp_path / "dimer.xtc", tmp_path / "d.h5")
    nodes, lengths = _bond_lengths(tmp_path / "d.h5")
    assert nodes.n_nodes == 428 and set(nodes.chain) == {""} and len(set(nodes.segid)) == 1
    assert lengths.max() <= CA_CA_MAX_BOND
    assert [213, 214] not in np.asarray(nodes.bonds).tolist()
    assert summary["n_bonds"] == 426  # 213 per chain
    if numbering == "restart":
        assert summary["n_chains"] == 2 and summary["n_gaps"] == 0
    else:  # a break between consecutive resids without IDs is reported as a gap, and preprocess says why
        assert summary["n_chains"] == 1 and summary["n_gaps"] == 1
        assert any("1 sequence bond(s) not drawn" in w and "214–215" in w for w in summary["warnings"])


@pytest.mark.parametrize("renumber", [False, True])
def test_missing_residues_make_a_gap(adk_universe, tmp_path, renumber):
    """AdK without residues 50–52; numbered as in the PSF (resid jump 49→53) or renumbered 1…211 (only the Cα
    distance shows the gap)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cut = mda.Merge(adk_universe.select_atoms("protein and not resid 50:52"))
        if renumber:
            cut.residues.resids = np.arange(1, cut.residues.n_residues + 1)
    _write(cut.atoms, tmp_path / "gap.gro", tmp_path / "gap.xtc")
    summary = _preprocess(tmp_path / "gap.gro", tmp_path / "gap.xtc", tmp_path / "g.h5")
    nodes, lengths = _bond_lengths(tmp_path / "g.h5")
    assert nodes.n_nodes == 211 and summary["n_bonds"] == 209 and lengths.max() <= CA_CA_MAX_BOND
    assert [48, 49] not in np.asarray(nodes.bonds).tolist()  # node 48 = resid 49, node 49 = the residue after
    assert summary["n_chains"] == 1 and summary["n_gaps"] == 1
    gap = "49–50" if renumber else "49–53"
    assert summary["chains"] == [f"SYSTEM: resid 1–{211 if renumber else 214} (211 nodes), gaps between resid {gap}"]
    res = run_cli("info", str(tmp_path / "g.h5"))
    assert res.exit_code == 0 and "1 gap(s)" in res.output and gap in res.output


def test_chain_model_from_stored_bonds(adk_h5):
    from eghn_md.data.dataset import Dataset

    with Dataset(adk_h5) as ds:
        cm = chain_model(ds.nodes)
    assert len(cm.chains) == 1 and cm.n_gaps == 0 and not cm.breaks.any()
    c = cm.chains[0]
    assert (c.start, c.stop, c.first_resid, c.last_resid) == (0, 214, 1, 214)


SYSTEMS = [  # MDAnalysisTests protein systems: (topology, trajectory or None when the topology holds the frame)
    ("PSF", "DCD"), ("GRO", "XTC"), ("TPR", "TRR"), ("PDB_small", None), ("PDB_multiframe", None), ("PRM", "TRJ"),
    ("PRMncdf", "NCDF"), ("PDB_full", None), ("PSF_NAMD", "PDB_NAMD"), ("PDB_helix", None), ("PDB_sub_sol", None),
    ("CRD", None), ("PQR", None), ("PDB_icodes", None), ("PDB_CRYOEM_BOX", None), ("PDB_HOLE", None),
    ("GRO_MEMPROT", "XTC_MEMPROT"), ("PDB_CHECK_RIGHTHAND_PA", None), ("PDB_chainidrepeat", None),
]


@pytest.mark.parametrize("top,traj", SYSTEMS, ids=[s[0] for s in SYSTEMS])
def test_no_sequence_bond_longer_than_the_bound_on_mdanalysistests_proteins(top, traj):
    from MDAnalysisTests import datafiles as d

    from eghn_md.graph.nodes import node_table
    from eghn_md.io.readers import open_system

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_system(getattr(d, top), [getattr(d, traj)] if traj else []) as system:
            atoms = system.select(SEL)
            block, _ = next(system.trajectories[0].iter_blocks(atoms.indices, block=1))
            pos = block[0].copy()
            nodes = node_table(atoms, positions=pos)
    b = np.asarray(nodes.bonds)
    if len(b):
        assert np.linalg.norm(pos[b[:, 0]] - pos[b[:, 1]], axis=1).max() <= CA_CA_MAX_BOND
    assert (np.diff(nodes.resid)[b[:, 0]] if len(b) else np.zeros(0)).max(initial=0) <= 1


def test_opls_adk_split_across_the_box_is_not_bonded_and_preprocess_warns(tmp_path):
    """adk_oplsaa.gro's first frame has AdK split across the periodic boundary (consecutive Cα up to 79.5 Å):
    those pairs get no bond and preprocess says why."""
    from MDAnalysisTests.datafiles import GRO, XTC

    summary = _preprocess(GRO, XTC, tmp_path / "opls.h5")
    nodes, lengths = _bond_lengths(tmp_path / "opls.h5")
    assert lengths.max() <= CA_CA_MAX_BOND and summary["n_bonds"] == 209
    assert any("4 sequence bond(s) not drawn" in w and "periodic boundary" in w for w in summary["warnings"])
