"""``eghn-md export trajectory``: format conversion of predicted trajectories, times kept, optional superposition."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from _data import run_cli
from eghn_md.export.trajectory import kabsch_superpose


def _rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))  # proper rotation


def test_kabsch_undoes_rotation_and_translation():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(30, 3)) * 10
    frames = np.stack([ref @ _rotation(s).T + rng.normal(size=3) * 5 for s in range(4)])
    out = kabsch_superpose(frames, reference=ref)
    np.testing.assert_allclose(out, np.broadcast_to(ref, out.shape), atol=1e-9)


def test_kabsch_never_reflects():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(30, 3)) * 10
    mirror = ref * np.array([1.0, 1.0, -1.0])
    out = kabsch_superpose(mirror[None], reference=ref)[0]
    assert np.sqrt(((out - ref) ** 2).sum(1).mean()) > 1.0  # a mirror image cannot be rotated onto the original
    # but it is still a rigid motion: internal distances are kept
    d = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d(out), d(mirror), atol=1e-9)


@pytest.fixture(scope="module")
def pred(tiny_run, adk, tmp_path_factory):
    """A trajectory laid out like a rollout's output (PRED.dcd + PRED.pdb, Cα nodes, 5 ps apart), written with the
    rollout's writer from true AdK frames so the test does not depend on the tiny model's stability."""
    import MDAnalysis as mda

    from eghn_md.io.writers import write_node_trajectory
    from eghn_md.train.checkpoint import load_checkpoint

    nodes = load_checkpoint(tiny_run / "model.pt").nodes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(adk["psf"], adk["dcd"])
    ca = u.select_atoms(nodes["selection"])
    frames = np.stack([ca.positions.copy() for _ in u.trajectory[10:30:5]])
    out = tmp_path_factory.mktemp("pred") / "pred.dcd"
    write_node_trajectory(out, nodes, frames, dt_ps=5.0)
    return out


def _read(top, traj=None):
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(top), str(traj)) if traj else mda.Universe(str(top))
        return u, np.stack([ts.positions.copy() for ts in u.trajectory]), np.array([ts.time for ts in u.trajectory])


@pytest.mark.parametrize("ext", ["xtc", "pdb", "h5"])
def test_conversion_keeps_frames_times_and_residues(pred, tmp_path, ext):
    if ext == "h5":
        pytest.importorskip("tables")  # mdtraj writes .h5 through PyTables
    u0, X0, t0 = _read(pred.with_suffix(".pdb"), pred)
    out = tmp_path / f"p.{ext}"
    res = run_cli("export", "trajectory", str(pred), "-o", str(out), "--json")
    assert res.exit_code == 0, res.output
    if ext == "h5":
        import mdtraj as md

        t = md.load(str(out))
        X, times = t.xyz * 10.0, t.time
        assert [r.name for r in t.topology.residues] == list(u0.residues.resnames)
        assert [r.resSeq for r in t.topology.residues] == list(u0.residues.resids)
    else:
        u, X, times = _read(out) if ext == "pdb" else _read(pred.with_suffix(".pdb"), out)
        assert list(u.residues.resnames) == list(u0.residues.resnames)
        assert list(u.residues.resids) == list(u0.residues.resids)
    assert X.shape == X0.shape == (4, 214, 3)
    np.testing.assert_allclose(X, X0, atol=6e-3)  # XTC / PDB precision 1e-3 Å
    if ext != "pdb":  # PDB has no per-frame time
        np.testing.assert_allclose(times, t0, atol=1e-3)
        assert t0[1] > 0


def test_superpose_aligns_frames_on_the_first(pred, tmp_path):
    _, X0, _ = _read(pred.with_suffix(".pdb"), pred)
    out = tmp_path / "p.xtc"
    res = run_cli("export", "trajectory", str(pred), "-o", str(out), "--superpose", "--quiet")
    assert res.exit_code == 0, res.output
    _, X, _ = _read(pred.with_suffix(".pdb"), out)
    rmsd = lambda a, b: np.sqrt(((a - b) ** 2).sum(-1).mean())  # noqa: E731
    np.testing.assert_allclose(X[0], X0[0], atol=6e-3)
    for k in range(1, 4):
        assert rmsd(X[k], X[0]) <= rmsd(X0[k], X0[0]) + 1e-3
        d0 = np.linalg.norm(X0[k][:, None] - X0[k][None], axis=-1)
        d1 = np.linalg.norm(X[k][:, None] - X[k][None], axis=-1)
        np.testing.assert_allclose(d1, d0, atol=0.02)  # rigid motion only


def test_errors(pred, tmp_path):
    res = run_cli("export", "trajectory", str(pred), "-o", str(tmp_path / "p.mol2"))
    assert res.exit_code == 2 and ".xtc" in res.output
    res = run_cli("export", "trajectory", str(pred), "-o", str(tmp_path / "p.xtc"),
                  "--top", str(tmp_path / "missing.pdb"))
    assert res.exit_code == 2 and "missing.pdb" in res.output
    res = run_cli("export", "trajectory", str(pred), "-o", str(pred))
    assert res.exit_code == 2
    (tmp_path / "exists.xtc").write_text("keep")
    res = run_cli("export", "trajectory", str(pred), "-o", str(tmp_path / "exists.xtc"))
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert (tmp_path / "exists.xtc").read_text() == "keep"
