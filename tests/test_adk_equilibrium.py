"""The dual-basin AdK simulation (``bench adk-equilibrium``): its energy against an independent NumPy evaluation of
the documented formula, its basins, a small generation through the command line, reproducibility and resume."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from eghn_md.benchmarks._adk_structures import load_adk_structures
from eghn_md.benchmarks._sbm import SbmParameters, build_system, build_terms
from eghn_md.benchmarks._sim import RunSettings, make_context, run_chunks
from eghn_md.errors import UsageError
from tests._data import leftovers, run_cli


@pytest.fixture(scope="module")
def mm():
    """OpenMM (extra ``[sim]``); the tests that simulate skip without it, the missing-OpenMM test runs anyway."""
    return pytest.importorskip("openmm")


SMALL = {"temperature": 215.0, "friction": 0.5, "timestep": 0.02, "steps_per_frame": 20, "n_frames": 12,
         "frames_per_chunk": 5, "equilibration_steps": 100, "seed": 3, "threads": 1}


@pytest.fixture(scope="module")
def model(mm):
    pytest.importorskip("MDAnalysisTests")
    params = SbmParameters()
    structures = load_adk_structures(contact_cutoff=params.contact_cutoff)
    terms = build_terms(structures.ca, structures.contacts, params)
    return structures, params, terms


# --- an independent evaluation of the documented energy (Å, rad, kJ/mol) -------------------------------------------

def _angle(a, b, c):
    u, v = a - b, c - b
    return np.arccos(np.clip((u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1), -1, 1))


def _dihedral(p0, p1, p2, p3):
    """IUPAC dihedral (trans = ±π), the Praxeolitic formula."""
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - (b0 * b1).sum(-1, keepdims=True) * b1
    w = b2 - (b2 * b1).sum(-1, keepdims=True) * b1
    return np.arctan2((np.cross(b1, v) * w).sum(-1), (v * w).sum(-1))


def numpy_energy(x: np.ndarray, terms, p: SbmParameters) -> float:
    """The module docstring's formula for one frame ``x`` (N, 3) [Å], in kJ/mol."""
    a = terms.angles
    e_angle = 0.5 * p.k_angle * ((_angle(x[a[:, 0]], x[a[:, 1]], x[a[:, 2]]) - terms.theta0) ** 2).sum()
    d = terms.dihedrals
    phi = _dihedral(x[d[:, 0]], x[d[:, 1]], x[d[:, 2]], x[d[:, 3]])[:, None]
    dphi = phi - terms.phi0
    e_dih = 0.5 * (p.k_dihedral_1 * (1 - np.cos(dphi)) + p.k_dihedral_3 * (1 - np.cos(3 * dphi))).sum()
    c = terms.contacts
    r = np.linalg.norm(x[c[:, 0]] - x[c[:, 1]], axis=1)
    g = terms.contact_on * np.exp(-(r[:, None] - terms.contact_r0) ** 2 / (2 * p.gaussian_width ** 2))
    eps = terms.contact_eps
    e_contact = ((eps + p.repulsion * (terms.contact_rex / r) ** 12) * (1 - g[:, 0]) * (1 - g[:, 1]) - eps).sum()
    i, j = np.triu_indices(len(x), 1)
    skip = {(int(u), int(v)) for u, v in terms.exclusions}
    keep = np.array([(u, v) not in skip for u, v in zip(i, j, strict=True)])
    r = np.linalg.norm(x[i[keep]] - x[j[keep]], axis=1)
    r = r[r < p.repulsion_cutoff]
    e_rep = (p.repulsion * ((p.excluded_radius / r) ** 12 - (p.excluded_radius / p.repulsion_cutoff) ** 12)).sum()
    return float(e_angle + e_dih + e_contact + e_rep)


def _openmm_energy(context, x: np.ndarray) -> float:
    context.setPositions(x * 0.1)
    return context.getState(getEnergy=True).getPotentialEnergy()._value


def test_energy_matches_numpy_formula(model, tmp_path):
    structures, params, terms = model
    system = build_system(terms, params)
    frames = run_chunks(system, structures.ca["closed"], RunSettings(**{**SMALL, "n_frames": 40}), tmp_path / "w")
    rng = np.random.default_rng(0)
    context, _ = make_context(build_system(terms, params), RunSettings(**SMALL))
    picks = [structures.ca["closed"], structures.ca["open"], *frames[rng.choice(len(frames), 5, replace=False)]]
    for x in picks:
        x = np.asarray(x, dtype=np.float64)
        ref = numpy_energy(x, terms, params)
        assert _openmm_energy(context, x) == pytest.approx(ref, rel=1e-5, abs=1e-3)


@pytest.mark.parametrize("state", ["closed", "open"])
def test_minimum_stays_at_crystal_structure(mm, model, state):
    from eghn_md.benchmarks._adk_analysis import rmsd_to

    structures, params, terms = model
    context, _ = make_context(build_system(terms, params), RunSettings(**SMALL))
    x0 = structures.ca[state]
    context.setPositions(x0 * 0.1)
    context.applyConstraints(1e-6)
    mm.LocalEnergyMinimizer.minimize(context, 0.1, 0)
    x = context.getState(getPositions=True).getPositions(asNumpy=True)._value * 10
    assert rmsd_to(x[None], x0)[0] < 1.0


class _StopAfter:
    """A progress that interrupts the run after ``n`` chunks, as Ctrl-C would."""

    def __init__(self, n):
        self.n = n

    def start(self, total, done=0):
        pass

    def update(self, status):
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt

    def stop(self):
        pass


def test_same_seed_same_trajectory_and_resume(model, tmp_path):
    structures, params, terms = model
    system = build_system(terms, params)
    start = structures.ca["closed"]
    a = run_chunks(system, start, RunSettings(**SMALL), tmp_path / "a")
    b = run_chunks(system, start, RunSettings(**SMALL), tmp_path / "b")
    np.testing.assert_array_equal(a, b)
    other = run_chunks(system, start, RunSettings(**{**SMALL, "seed": 4}), tmp_path / "c")
    assert np.abs(other - a).max() > 0.1
    with pytest.raises(KeyboardInterrupt):
        run_chunks(system, start, RunSettings(**SMALL), tmp_path / "d", progress=_StopAfter(1))
    assert sorted(p.name for p in (tmp_path / "d").glob("*-*")) == ["chunk-00000.npy", "state-00001.chk"]
    np.save(tmp_path / "d" / "chunk-00001.npy", np.zeros((5, 214, 3)))  # killed before its checkpoint: redone
    resumed = run_chunks(system, start, RunSettings(**SMALL), tmp_path / "d")
    np.testing.assert_array_equal(resumed[:5], a[:5])
    # the CPU platform re-sorts its atoms on reload, so the continuation agrees to round-off (not bit for bit)
    np.testing.assert_allclose(resumed, a, atol=1e-4)
    with pytest.raises(KeyboardInterrupt):
        run_chunks(system, start, RunSettings(**SMALL), tmp_path / "e", progress=_StopAfter(1))
    with pytest.raises(UsageError, match="other settings.*overwrite"):
        run_chunks(system, start, RunSettings(**{**SMALL, "seed": 4}), tmp_path / "e")
    replaced = run_chunks(system, start, RunSettings(**{**SMALL, "seed": 4}), tmp_path / "e", replace=True)
    np.testing.assert_array_equal(replaced, other)


def test_generate_small_through_cli(model, tmp_path):
    import MDAnalysis as mda

    out = tmp_path / "eq"
    r = run_cli("bench", "adk-equilibrium", "generate", "-o", out, "--frames", 8, "--steps-per-frame", 10,
                "--seed", 5, "--json", "-q")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary == json.loads((out / "run-5.json").read_text())
    assert summary["n_frames"] == 8 and summary["config"]["seed"] == 5
    assert summary["validity"]["frames_with_break"] == 0 and summary["validity"]["frames_with_clash"] == 0
    assert set(summary["states"]["population"]) == {"closed", "open"}
    u = mda.Universe(str(out / "adk_cg.pdb"), str(out / "run-5.dcd"))
    assert u.atoms.n_atoms == 214 and u.trajectory.n_frames == 8
    assert u.residues.resnames[0] == "MET" and set(u.atoms.chainIDs) == {"A"}
    assert u.trajectory.dt == pytest.approx(summary["frame_dt_ps"], rel=1e-4)
    for name in ("closed.pdb", "open.pdb"):
        ref = mda.Universe(str(out / name))
        assert list(ref.residues.resnames) == list(u.residues.resnames)
    assert leftovers(out) == []
    pre = run_cli("preprocess", out / "adk_cg.pdb", out / "run-5.dcd", "-o", tmp_path / "eq.h5", "--json", "-q")
    assert pre.exit_code == 0, pre.output
    info = json.loads(pre.stdout)
    assert info["n_nodes"] == 214 and info["n_frames_total"] == 8 and info["n_gaps"] == 0
    again = run_cli("bench", "adk-equilibrium", "generate", "-o", out, "--frames", 8, "--seed", 5, "-q")
    assert again.exit_code == 2 and "--overwrite" in again.stderr


def test_missing_openmm_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openmm", None)
    r = run_cli("bench", "adk-equilibrium", "generate", "-o", tmp_path / "eq", "--frames", 2)
    assert r.exit_code == 2
    line = "Error: the AdK equilibrium simulation needs OpenMM: pip install 'eghn-md[sim]'"
    assert r.stderr.strip().splitlines() == [line]
