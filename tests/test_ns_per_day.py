"""`examples/benchmarks/ns_per_day.py`, all-atom half: the AdK PDB it writes is accepted by PDBFixer + Amber14 +
OBC2, its minimisation lowers the production energy, and a few steps stay finite (no timing is asserted)."""

from __future__ import annotations

import math

import pytest

from _data import load_benchmark

pytest.importorskip("openmm")
pytest.importorskip("pdbfixer")


def _script():
    return load_benchmark("ns_per_day")


def test_heavy_atom_pdb_builds_amber14_obc2_and_relaxes(tmp_path):
    from MDAnalysisTests.datafiles import PDB_small  # adk_open.pdb

    nsd = _script()
    pdb = nsd._heavy_atom_pdb(PDB_small, tmp_path / "adk_heavy.pdb")
    text = pdb.read_text()
    assert " HSD " not in text and " HSE " not in text and " OT1 " not in text  # CHARMM names mapped
    names = [line[12:16].strip() for line in text.splitlines() if line.startswith("ATOM")]
    assert names and not any(name.startswith("H") for name in names) and "CD1" in names  # heavy atoms, ILE CD1
    sim, fixer = nsd._md_system(pdb, 1)  # createSystem raises on any residue Amber14 has no template for
    residues = list(fixer.topology.residues())
    assert len(residues) == 214 and sim.system.getNumParticles() == 3341  # heavy atoms + PDBFixer's hydrogens
    assert {type(f).__name__ for f in sim.system.getForces()} >= {"NonbondedForce", "CustomGBForce"}
    ca = [a.index for a in fixer.topology.atoms() if a.name == "CA"]
    e_fixer, ca_fixer = nsd._state(sim, ca)
    positions, iterations = nsd._relax(fixer.topology, fixer.positions, max_iterations=50, threads=1)
    assert 0 < iterations <= 50
    sim.context.setPositions(positions)
    e_relaxed, ca_relaxed = nsd._state(sim, ca)
    assert math.isfinite(e_relaxed) and e_relaxed < e_fixer - 1000.0  # kJ/mol, in the production system
    assert abs(ca_relaxed - ca_fixer).max() < 1.0  # Å: a local relaxation, not a refold


@pytest.mark.slow
def test_measure_md_reports_finite_dynamics_and_its_timing_fields():
    nsd = _script()
    md = nsd.measure_md(steps=3, threads=1, warmup=2, min_iterations=50)
    assert md["atoms"] == 3341 and md["threads"] == 1 and md["steps"] == 3 and md["warmup_steps"] == 2
    assert md["minimise"]["iterations"] <= 50
    energies = md["energy_kj_mol"]
    assert all(math.isfinite(e) for e in energies.values()) and energies["minimised"] < energies["pdbfixer"]
    assert 0.0 < md["ca_rmsd_from_minimised_A"] < 1.0
    # ns/day from the timed steps alone: 3 steps x 2 fs over wall_s
    assert md["ns_per_day"] == pytest.approx(3 * 2e-6 / md["wall_s"] * 86400)
