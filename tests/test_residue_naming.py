"""Issue 14: residues are matched by canonical type, not spelling (protonation / force-field variants)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _data import run_cli
from eghn_md.errors import DataError
from eghn_md.graph.features import RESIDUE_TYPES, canonical_residue, residue_type_index


@pytest.mark.parametrize("names,canonical", [
    (["HIS", "HSD", "HSE", "HSP", "HID", "HIE", "HIP", "HISD", "HISE", "HISH", "his", " hse "], "HIS"),
    (["CYS", "CYX", "CYM", "CYS2"], "CYS"),
    (["ASP", "ASH", "ASPH", "ASPP"], "ASP"),
    (["GLU", "GLH", "GLUH", "GLUP"], "GLU"),
    (["LYS", "LYN", "LSN", "LYSH"], "LYS"),
    (["NALA", "CALA", "ALA"], "ALA"),
    (["NHIE", "CHIP", "CCYX", "NLYN"], None),  # terminal prefix on a variant: its parent
])
def test_canonical_table(names, canonical):
    for n in names:
        want = canonical or {"NHIE": "HIS", "CHIP": "HIS", "CCYX": "CYS", "NLYN": "LYS"}[n]
        assert canonical_residue(n) == want, n
        assert RESIDUE_TYPES[residue_type_index(n)] == want


def test_other_names_stay_themselves_and_are_other():
    for n in ("SOL", "NA", "CL", "NME", "ACE", "CXYZ"):
        assert canonical_residue(n) == n
        assert RESIDUE_TYPES[residue_type_index(n)] == "OTHER"


def _nodes(resnames):
    from eghn_md.graph.nodes import NodeTable

    n = len(resnames)
    return NodeTable(resname=np.array(resnames), resid=np.arange(1, n + 1), segid=np.full(n, "A"),
                     chain=np.full(n, ""), name=np.full(n, "CA"), atom_index=np.arange(n), charge=None,
                     bonds=np.zeros((0, 2), dtype=np.int64))


def test_check_same_nodes_notes_spelling_and_refuses_a_sequence_change():
    from eghn_md.data.system import check_same_nodes

    expected = {"resname": ["MET", "HSD", "GLY", "HSD"], "resid": [1, 2, 3, 4], "name": ["CA"] * 4,
                "selection": "name CA"}
    assert check_same_nodes(expected, _nodes(["MET", "HSD", "GLY", "HSD"]), what="x") is None
    note = check_same_nodes(expected, _nodes(["MET", "HSE", "GLY", "HIS"]), what="topology 'b.gro'")
    assert note.startswith("topology 'b.gro': 2 residue name(s) differ from the model's only in spelling")
    assert "'HSE' for 'HSD', both HIS" in note
    with pytest.raises(DataError) as exc:
        check_same_nodes(expected, _nodes(["MET", "HSE", "ALA", "HSD"]), what="topology 'c.gro'")
    assert "node 2 (resid 3) is residue 'ALA' (ALA) but the model expects 'GLY' (GLY" in str(exc.value)


def test_histidine_renamed_topology_evaluates_with_the_same_mse(adk, adk_h5, tiny_run, tmp_path):
    """AdK's PSF with every HSD written HSE: same features, the model is accepted with a note and gives exactly
    the MSE of the original naming."""
    text = Path(adk["psf"]).read_text()
    assert text.count(" HSD ") > 0
    psf = tmp_path / "adk_hse.psf"
    psf.write_text(text.replace(" HSD ", " HSE "))
    renamed = tmp_path / "hse.h5"
    res = run_cli("preprocess", str(psf), adk["dcd"], "-o", str(renamed), "--quiet")
    assert res.exit_code == 0, res.output
    runs = {}
    for name, data in (("orig", adk_h5), ("hse", str(renamed))):
        res = run_cli("evaluate", str(tiny_run / "model.pt"), data, "--json", "--device", "cpu",
                      "--per-node", str(tmp_path / f"{name}.csv"))
        assert res.exit_code == 0, res.output
        runs[name] = json.loads(res.stdout)
    for k in ("model", "static", "const_velocity", "windows"):
        assert runs["hse"][k] == runs["orig"][k], k
    assert runs["orig"]["notes"] == []
    assert any("differ from the model's only in spelling" in n and "'HSE' for 'HSD'" in n
               for n in runs["hse"]["notes"])


def test_rollout_accepts_the_opls_gro_of_the_same_protein(tiny_run):
    """adk_oplsaa.gro names its histidines HIS where the training PSF has HSD: the same protein."""
    import warnings

    from MDAnalysisTests.datafiles import GRO

    from eghn_md.data.system import select_model_nodes
    from eghn_md.io.readers import open_system
    from eghn_md.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tiny_run / "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_system(GRO, []) as system:
            _, gs = select_model_nodes(system, ckpt.nodes, what="topology 'adk_oplsaa.gro'")
    assert len(gs.notes) == 1 and "3 residue name(s)" in gs.notes[0] and "'HIS' for 'HSD'" in gs.notes[0]
    assert gs.bonds.shape[1] == 2 * len(ckpt.nodes["bonds"])  # the model's stored bonds
