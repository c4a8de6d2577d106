"""Rollout validity metrics against brute-force loops, and on the real AdK MD (which must be valid)."""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections import deque

import numpy as np
import pytest
import torch

from eghn_md.errors import DataError, UsageError
from eghn_md.rollout.validity import (
    ATOM_BOND_TOL_A,
    ATOM_CLASH_A,
    CA_BREAK_A,
    CA_CLASH_A,
    frame_check,
    near_pairs,
    plot_validity,
    validity_report,
)


# ----------------------------------------------------------------------------------------- independent reference
def _topo_dist(n, bond_list):
    """All-pairs topological distance by breadth-first search (inf between components)."""
    nbr = {k: set() for k in range(n)}
    for a, b in bond_list:
        nbr[a].add(b)
        nbr[b].add(a)
    dist = np.full((n, n), math.inf)
    for s in range(n):
        dist[s, s] = 0
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in nbr[u]:
                if dist[s, v] == math.inf:
                    dist[s, v] = dist[s, u] + 1
                    queue.append(v)
    return dist


def _brute(frames, bond_list, *, kind, ref=None, brk, clash, min_sep=3):
    """Per-frame (max |d − ref|, breaks, clashes, rg) with plain Python loops."""
    n = frames.shape[1]
    topo = _topo_dist(n, bond_list)
    if ref is None:
        ref = [math.dist(frames[0][a], frames[0][b]) for a, b in bond_list]
    out = []
    for f in frames:
        lengths = [math.dist(f[a], f[b]) for a, b in bond_list]
        dev = max((abs(d - r) for d, r in zip(lengths, ref, strict=True)), default=0.0)
        if kind == "residue":
            breaks = sum(1 for d, r in zip(lengths, ref, strict=True) if d > brk and r <= brk)
        else:
            breaks = sum(1 for d, r in zip(lengths, ref, strict=True) if abs(d - r) > brk)
        clashes = sum(1 for a in range(n) for b in range(a + 1, n)
                      if topo[a, b] >= min_sep and math.dist(f[a], f[b]) < clash)
        centre = [sum(f[k][c] for k in range(n)) / n for c in range(3)]
        rg = math.sqrt(sum(math.dist(f[k], centre) ** 2 for k in range(n)) / n)
        out.append((dev, breaks, clashes, rg))
    return [np.array(col) for col in zip(*out, strict=True)]


def _both_directions(bond_list):
    b = torch.tensor(bond_list, dtype=torch.long).T
    return torch.cat([b, b.flip(0)], dim=1)


# ------------------------------------------------------------------------------------------ synthetic systems
def _two_chains():
    """Chain A = nodes 0..7, chain B = nodes 8..13 (zig-zag, 3.805 Å bonds), 30 Å apart; the chains are not bonded."""
    a = np.array([[3.0 * k, 2.34 * (k % 2), 0.0] for k in range(8)])
    b = np.array([[3.0 * k, 2.34 * (k % 2), 30.0] for k in range(6)])
    bond_list = [(k, k + 1) for k in range(7)] + [(k, k + 1) for k in range(8, 13)]
    return np.concatenate([a, b]), bond_list


def _synthetic_frames():
    base, bond_list = _two_chains()
    f_break = base.copy()
    f_break[4:8, 0] += 2.0  # bond 3–4 stretched to 5.5 Å: one break, nothing else
    f_cross = base.copy()
    f_cross[8:] += base[7] + np.array([0.0, 0.0, 2.0]) - base[8]  # B's start 2 Å above A's end: a clash, no break
    f_fold = base.copy()
    f_fold[0] = base[4] + np.array([0.0, 0.0, 2.5])  # node 0 onto node 4 (4 apart in sequence): clash + break 0–1
    rng = np.random.default_rng(3)
    squashed = base * np.array([0.7, 0.7, 0.1])  # the chains 3 Å apart: noise makes breaks and clashes
    noisy = [squashed + rng.normal(scale=1.0, size=base.shape) for _ in range(4)]
    return np.stack([base, f_break, f_cross, f_fold] + noisy), bond_list


@pytest.mark.parametrize("kind", ["residue", "atom"])
def test_metrics_match_brute_force(kind):
    frames, bond_list = _synthetic_frames()
    brk, clash = (CA_BREAK_A, CA_CLASH_A) if kind == "residue" else (ATOM_BOND_TOL_A, ATOM_CLASH_A)
    rep = validity_report(frames, bonds=_both_directions(bond_list), node_kind=kind)
    dev, breaks, clashes, rg = _brute(frames, bond_list, kind=kind, brk=brk, clash=clash)
    np.testing.assert_allclose(rep.max_bond_dev, dev, atol=1e-4)
    np.testing.assert_array_equal(rep.n_breaks, breaks)
    np.testing.assert_array_equal(rep.n_clashes, clashes)
    np.testing.assert_allclose(rep.rg, rg, rtol=1e-10)
    assert rep.n_breaks[4:].sum() > 0 and rep.n_clashes[4:].sum() > 0  # the noisy frames exercise both counts


def test_known_break_clash_and_separate_chains():
    frames, bond_list = _synthetic_frames()
    rep = validity_report(frames[:4], bonds=_both_directions(bond_list), node_kind="residue")
    assert rep.n_breaks.tolist() == [0, 1, 0, 1]
    # frame 2: A's end and B's start are 1 apart in index but in different chains: a clash, never a break
    assert rep.n_clashes.tolist() == [0, 0, 1, 1]
    s = rep.summary()
    assert (s["frames_with_break"], s["frames_with_clash"]) == (2, 2)
    assert (s["first_break_frame"], s["first_clash_frame"], s["first_invalid_frame"]) == (1, 2, 1)
    assert s["frac_frames_with_break"] == 0.5
    assert s["max_bond_dev_A"] == pytest.approx(max(rep.max_bond_dev))
    assert s["rg_ratio"]["end"] == pytest.approx(rep.rg[3] / rep.rg[0])
    assert json.loads(json.dumps(s)) == s


def test_close_pairs_two_apart_are_not_clashes():
    # nodes 0 and 2 are 2.0 Å apart but bonded through node 1: excluded; nodes 0 and 3 (3 apart) clash
    pos = np.array([[0.0, 0, 0], [1.9, 3.3, 0], [2.0, 0, 0], [0.5, 0.5, 2.0]])
    bond_list = [(0, 1), (1, 2), (2, 3)]
    rep = validity_report(pos[None], bonds=_both_directions(bond_list))
    assert rep.n_clashes.tolist() == [1]
    assert _brute(pos[None], bond_list, kind="residue", brk=CA_BREAK_A, clash=CA_CLASH_A)[2].tolist() == [1]
    keys = near_pairs(_both_directions(bond_list), 4).tolist()
    assert keys == sorted([0 * 4 + 1, 1 * 4 + 2, 2 * 4 + 3, 0 * 4 + 2, 1 * 4 + 3])


@pytest.mark.parametrize("min_sep", [1, 2, 3, 4, 6])
def test_near_pairs_match_breadth_first_search(min_sep):
    _, bond_list = _two_chains()
    bond_list = bond_list + [(2, 9), (5, 12), (0, 13)]  # branches and rings between the chains
    topo = _topo_dist(14, bond_list)
    expected = sorted(i * 14 + j for i in range(14) for j in range(i + 1, 14) if topo[i, j] < min_sep)
    assert near_pairs(_both_directions(bond_list), 14, min_separation=min_sep).tolist() == expected


def test_given_reference_lengths_and_chain_gap():
    frames, bond_list = _synthetic_frames()
    bonds = _both_directions(bond_list)
    ref = torch.full((bonds.shape[1],), 3.8, dtype=torch.float64)
    ref[0] = ref[len(bond_list)] = 6.0  # bond 0–1 declared a chain gap (missing residues): never a break
    rep = validity_report(frames[:4], bonds=bonds, reference_lengths=ref)
    dev, breaks, _, _ = _brute(frames[:4], bond_list, kind="residue", ref=ref[: len(bond_list)].tolist(),
                               brk=CA_BREAK_A, clash=CA_CLASH_A)
    np.testing.assert_allclose(rep.max_bond_dev, dev, atol=1e-4)
    assert rep.n_breaks.tolist() == breaks.tolist() == [0, 1, 0, 0]  # frame 3's broken 0–1 is the gap
    assert rep.n_gap_bonds == 1
    ref[len(bond_list)] = 5.0
    with pytest.raises(UsageError, match="two directions of bond 0–1"):
        validity_report(frames, bonds=bonds, reference_lengths=ref)


def test_frame_check_agrees_with_report():
    frames, bond_list = _synthetic_frames()
    bonds = _both_directions(bond_list)
    for kind in ("residue", "atom"):
        rep = validity_report(frames, bonds=bonds, node_kind=kind)
        ref = torch.as_tensor(np.linalg.norm(frames[0][bonds[0]] - frames[0][bonds[1]], axis=1))
        for k, f in enumerate(frames):
            chk = frame_check(torch.as_tensor(f), bonds, node_kind=kind, reference_lengths=ref)
            assert chk.n_breaks == rep.n_breaks[k]
            assert chk.rg == pytest.approx(rep.rg[k], rel=1e-10)
            assert chk.max_bond_dev == pytest.approx(rep.max_bond_dev[k], abs=1e-4)
    with pytest.raises(UsageError, match="reference_lengths"):
        frame_check(torch.as_tensor(frames[0]), bonds, node_kind="atom")


def test_rmsd_rmsf_and_pearson_by_hand():
    rng = np.random.default_rng(0)
    frames, bond_list = _synthetic_frames()
    truth = frames[0] + rng.normal(scale=0.5, size=(12,) + frames.shape[1:]) * rng.uniform(0.2, 2, (1, 14, 1))
    pred = truth + rng.normal(scale=0.3, size=truth.shape)
    rep = validity_report(pred, bonds=_both_directions(bond_list), truth=truth[:11])  # truth one frame short
    n, m = pred.shape[1], 11
    for k in range(m):
        assert rep.rmsd[k] == pytest.approx(math.sqrt(sum(math.dist(pred[k][i], truth[k][i]) ** 2
                                                          for i in range(n)) / n), rel=1e-10)
    assert math.isnan(rep.rmsd[11])

    def rmsf(a, i):
        mean = [sum(a[t][i][c] for t in range(m)) / m for c in range(3)]
        return math.sqrt(sum(math.dist(a[t][i], mean) ** 2 for t in range(m)) / m)

    p = [rmsf(pred, i) for i in range(n)]
    q = [rmsf(truth, i) for i in range(n)]
    np.testing.assert_allclose(rep.rmsf_pred, p, rtol=1e-10)
    np.testing.assert_allclose(rep.rmsf_true, q, rtol=1e-10)
    mp, mq = sum(p) / n, sum(q) / n
    r = sum((a - mp) * (b - mq) for a, b in zip(p, q, strict=True)) / math.sqrt(
        sum((a - mp) ** 2 for a in p) * sum((b - mq) ** 2 for b in q))
    assert rep.rmsf_r == pytest.approx(r, rel=1e-10)
    assert 0.5 < r < 1.0
    s = rep.summary()
    assert s["rmsf_r"] == rep.rmsf_r and s["rmsd_A"]["n_frames"] == 11
    short = validity_report(pred, bonds=_both_directions(bond_list), truth=truth[:9])  # below MIN_RMSF_FRAMES
    assert short.rmsf_r is None and short.rmsf_pred is None and np.isfinite(short.rmsd[:9]).all()


def test_csv_and_plot(tmp_path):
    frames, bond_list = _synthetic_frames()
    rep = validity_report(frames, bonds=_both_directions(bond_list), truth=frames[::-1])
    path = rep.write_csv(tmp_path / "validity.csv")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(frames)
    assert [int(r["n_breaks"]) for r in rows] == rep.n_breaks.tolist()
    assert [int(r["n_clashes"]) for r in rows] == rep.n_clashes.tolist()
    np.testing.assert_allclose([float(r["rg_A"]) for r in rows], rep.rg, rtol=1e-5)
    np.testing.assert_allclose([float(r["rmsd_A"]) for r in rows], rep.rmsd, rtol=1e-5, atol=1e-6)
    png = plot_validity(rep, tmp_path / "validity.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validity.csv", "validity.png"]  # no temporaries left


def test_bad_inputs_name_the_value():
    frames, bond_list = _synthetic_frames()
    bonds = _both_directions(bond_list)
    with pytest.raises(UsageError, match="'protein'.*residue"):
        validity_report(frames, bonds=bonds, node_kind="protein")
    with pytest.raises(UsageError, match=r"\(2, B\)"):
        validity_report(frames, bonds=bonds.T, node_kind="residue")
    with pytest.raises(UsageError, match=r"\[0, 10\), got \[0, 13\]"):
        validity_report(frames[:, :10], bonds=bonds)
    bad = frames.copy()
    bad[5, 3, 1] = np.nan
    with pytest.raises(DataError, match="frame 5"):
        validity_report(bad, bonds=bonds)
    with pytest.raises(UsageError, match="truth has 13 nodes"):
        validity_report(frames, bonds=bonds, truth=frames[:, :13])
    # no bonds at all: nothing to break, every close pair clashes (the chains' nodes 7 and 8 in frame 2)
    free = validity_report(frames[:3], bonds=torch.zeros((2, 0), dtype=torch.long))
    assert free.n_bonds == 0 and free.n_breaks.tolist() == [0, 0, 0] and free.n_clashes.tolist() == [0, 0, 1]


# ------------------------------------------------------------------------------------------------- real MD data
@pytest.mark.parametrize("selection, kind", [("protein and name CA", "residue"), ("backbone", "atom")])
@pytest.mark.parametrize("trajectory", ["DCD", "DCD2"])
def test_adk_md_is_valid(selection, kind, trajectory):
    import MDAnalysis as mda
    from MDAnalysisTests import datafiles

    from eghn_md.data.system import GraphSystem
    from eghn_md.graph.nodes import node_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(datafiles.PSF, getattr(datafiles, trajectory))
        atoms = u.select_atoms(selection)
        frames = np.stack([atoms.positions.copy() for _ in u.trajectory])
    gs = GraphSystem.from_nodes(node_table(atoms), selection=selection)
    assert gs.nodes.level == kind
    rep = validity_report(frames, bonds=gs.bonds, node_kind=kind, truth=frames)
    s = rep.summary()
    assert s["frames_with_break"] == 0 and s["frames_with_clash"] == 0 and s["first_invalid_frame"] is None
    assert s["n_bonds"] == len(gs.nodes.bonds) and s["n_gap_bonds"] == 0
    if kind == "atom":  # the documented margin: MD bonds move <= 0.20 Å from frame 0, half the 0.4 Å tolerance
        assert s["max_bond_dev_A"] < ATOM_BOND_TOL_A / 2 + 0.01
    assert rep.rmsf_r == pytest.approx(1.0) and s["rmsd_A"]["final"] == 0.0
