"""eghn_md.graph.nodes and eghn_md.graph.features: node metadata, bonds among nodes, features."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from _data import datafile
from eghn_md.errors import DataError
from eghn_md.graph.features import (
    ATOM_TYPES,
    RESIDUE_TYPES,
    FeatureSpec,
    atom_type_index,
    default_feature_spec,
    node_features,
    residue_type_index,
)
from eghn_md.graph.nodes import NodeTable, node_table

mda = pytest.importorskip("MDAnalysis")
pytest.importorskip("MDAnalysisTests")


def _universe(*files):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(*files)


@pytest.fixture(scope="module")
def adk():
    return _universe(datafile("PSF"))


def test_vocabularies():
    assert len(RESIDUE_TYPES) == 21 and RESIDUE_TYPES[-1] == "OTHER"
    assert ATOM_TYPES == ("N", "CA", "C", "O", "CB", "OTHER")
    assert residue_type_index("ALA") == 0 and residue_type_index("val") == 19
    for variant in ("HSD", "HSE", "HIP", "HIE", "NHIE"):
        assert RESIDUE_TYPES[residue_type_index(variant)] == "HIS"
    assert RESIDUE_TYPES[residue_type_index("NALA")] == "ALA"
    assert RESIDUE_TYPES[residue_type_index("CYX")] == "CYS"
    assert residue_type_index("SOL") == residue_type_index("NAME") == 20  # 'NAME' is not N + 'AME'
    assert [ATOM_TYPES[atom_type_index(a)] for a in ("N", "CA", "C", "O", "CB", "OT1", "OXT", "HA", "CG")] == [
        "N", "CA", "C", "O", "CB", "O", "O", "OTHER", "OTHER"
    ]  # fmt: skip


def test_calpha_nodes(adk):
    nodes = node_table(adk.select_atoms("protein and name CA"))
    assert nodes.n_nodes == 214 and nodes.level == "residue"
    assert nodes.bonds.shape == (213, 2) and nodes.bonds_source == "sequence"
    np.testing.assert_array_equal(nodes.bonds, np.stack([np.arange(213), np.arange(1, 214)], 1))
    assert list(nodes.resname[:3]) == ["MET", "ARG", "ILE"] and list(nodes.resid[:3]) == [1, 2, 3]
    assert set(nodes.name) == {"CA"} and set(nodes.segid) == {"4AKE"}
    # residue-level charge = the residue's net charge: integers, summing to the protein's total charge
    assert nodes.charge is not None
    np.testing.assert_allclose(nodes.charge, np.round(nodes.charge), atol=1e-4)
    assert nodes.charge.sum() == pytest.approx(adk.atoms.charges.sum(), abs=1e-3)
    assert nodes.charge[list(nodes.resname).index("LYS")] == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_array_equal(nodes.atom_index, adk.select_atoms("name CA").indices)


def test_backbone_nodes_use_topology_bonds(adk):
    nodes = node_table(adk.select_atoms("backbone"))
    assert nodes.n_nodes == 855 and nodes.level == "atom"  # the C-terminal O is named OT1/OT2 in this PSF
    counts = np.bincount(nodes.atom_type, minlength=len(ATOM_TYPES))
    assert list(counts) == [214, 214, 214, 213, 0, 0]
    assert nodes.bonds_source == "topology" and nodes.bonds.shape == (854, 2)  # N-CA, CA-C, C-O, C-N(next)
    assert (nodes.bonds[:, 0] < nodes.bonds[:, 1]).all()
    pair_names = {tuple(sorted(nodes.name[b])) for b in nodes.bonds}
    assert pair_names == {("CA", "N"), ("C", "CA"), ("C", "O"), ("C", "N")}
    assert abs(nodes.charge[0]) < 2  # atom-level: partial charges


def test_atom_nodes_without_topology_bonds_fall_back_to_consecutive():
    u = _universe(datafile("GRO"))
    assert not hasattr(u.atoms, "bonds")
    nodes = node_table(u.select_atoms("backbone"))
    assert nodes.level == "atom" and nodes.bonds_source == "consecutive" and nodes.charge is None
    assert nodes.bonds.shape == (854, 2)


def test_sequence_bonds_stop_at_segment_boundaries():
    u = mda.Universe.empty(6, n_residues=6, n_segments=2, atom_resindex=np.arange(6),
                           residue_segindex=[0, 0, 0, 1, 1, 1], trajectory=True)
    u.add_TopologyAttr("names", ["CA"] * 6)
    u.add_TopologyAttr("resnames", ["ALA", "GLY", "HSD", "LYS", "XYZ", "TRP"])
    u.add_TopologyAttr("resids", [1, 2, 3, 1, 2, 3])
    u.add_TopologyAttr("segids", ["A", "B"])
    nodes = node_table(u.atoms)
    np.testing.assert_array_equal(nodes.bonds, [[0, 1], [1, 2], [3, 4], [4, 5]])
    assert [RESIDUE_TYPES[i] for i in nodes.residue_type] == ["ALA", "GLY", "HIS", "LYS", "OTHER", "TRP"]
    assert list(nodes.chain) == [""] * 6


def test_node_features(adk):
    ca = node_table(adk.select_atoms("protein and name CA"))
    h = node_features(ca)
    assert h.shape == (214, 21) and h.dtype == np.float32
    np.testing.assert_array_equal(h.sum(1), 1.0)
    np.testing.assert_array_equal(h.argmax(1), ca.residue_type)
    hc = node_features(ca, FeatureSpec(charge=True))
    assert hc.shape == (214, 22)
    np.testing.assert_allclose(hc[:, -1], ca.charge)

    bb = node_table(adk.select_atoms("backbone"))
    spec = default_feature_spec(bb)
    assert spec == FeatureSpec(residue=True, atom=True, charge=False) and spec.n_features == 27
    hb = node_features(bb)
    assert hb.shape == (855, 27)
    np.testing.assert_array_equal(hb[:, 21:].argmax(1), bb.atom_type)
    assert len(spec.names()) == 27 and spec.names()[21] == "atom:N"
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(DataError, match="unknown feature spec keys"):
        FeatureSpec.from_dict({"residue": True, "colour": True})


def test_charge_features_need_charges():
    nodes = node_table(_universe(datafile("GRO")).select_atoms("name CA"))
    with pytest.raises(DataError, match="no charges"):
        node_features(nodes, FeatureSpec(charge=True))


def test_features_are_deterministic_from_metadata(adk, tmp_path):
    """A table saved and loaded again gives identical features (a checkpoint can rebuild them)."""
    nodes = node_table(adk.select_atoms("backbone"))
    with h5py.File(tmp_path / "n.h5", "w") as f:
        nodes.to_h5(f.create_group("nodes"))
    with h5py.File(tmp_path / "n.h5", "r") as f:
        back = NodeTable.from_h5(f["nodes"])
        assert list(f["nodes/residue_type"][()]) == list(nodes.residue_type)
    for key in ("resname", "resid", "segid", "chain", "name", "atom_index", "charge", "bonds"):
        np.testing.assert_array_equal(getattr(back, key), getattr(nodes, key))
    assert (back.level, back.bonds_source) == ("atom", "topology")
    np.testing.assert_array_equal(node_features(back, FeatureSpec(atom=True, charge=True)),
                                  node_features(nodes, FeatureSpec(atom=True, charge=True)))


def test_node_table_rejects_inconsistent_metadata():
    with pytest.raises(DataError, match="bonds"):
        NodeTable(resname=np.array(["ALA"]), resid=np.array([1]), segid=np.array(["A"]), chain=np.array([""]),
                  name=np.array(["CA"]), atom_index=np.array([0]), charge=None, bonds=np.array([[0, 1]]))
