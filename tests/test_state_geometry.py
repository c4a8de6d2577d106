"""`examples/benchmarks/state_geometry.py`: the PC1 bins and the closed-only contacts, on frames built from the AdK
crystal structures (closed 1AKE ↔ open 4AKE interpolations), against the arithmetic of a known displacement."""

from __future__ import annotations

import numpy as np
import pytest

from _data import load_benchmark

pytest.importorskip("MDAnalysisTests")


def _script():
    return load_benchmark("state_geometry")


def _frames(n=240, seed=0):
    """(n, 214, 3) [Å]: 1AKE → 4AKE interpolations (evenly over [0, 1]) with 0.2 Å of noise per coordinate."""
    from MDAnalysisTests.datafiles import PDB_closed, PDB_small

    from eghn_md.rollout.distribution import superpose
    from eghn_md.rollout.states import read_nodes

    closed = read_nodes(PDB_closed)
    opened = superpose(read_nodes(PDB_small)[None], closed)[0]
    w = np.linspace(0.0, 1.0, n)[:, None, None]
    rng = np.random.default_rng(seed)
    return (1 - w) * closed + w * opened + 0.2 * rng.standard_normal((n, *closed.shape))


def test_bins_and_contacts_find_a_displaced_segment(tmp_path):
    sg = _script()
    md = _frames()
    model = md.copy()
    model[:, 52:58] += np.array([2.0, 0.0, 0.0])  # residues 53–58 moved by 2 Å
    ens = {"MD": md, "same": md.copy(), "model": model}
    res = sg.state_geometry(ens, sg.closing_axis(ens, reference="MD"), bins=6)
    assert res["same"]["fraction"] == res["MD"]["fraction"] and res["same"]["q_closed"] == res["MD"]["q_closed"]
    assert sum(res["MD"]["fraction"]) == pytest.approx(1.0)
    pc_closed, pc_open = res["pc1_crystal"]
    assert pc_closed * pc_open < 0  # the crystal structures lie on opposite sides of the mean
    closed_bin = int(np.argmax(res["MD"]["q_closed"]))
    assert res["model"]["q_closed"][closed_bin] < res["MD"]["q_closed"][closed_bin]
    pair_ens = {"MD": md, "model": model}
    pairs = sg.contact_lengths(pair_ens, sg.closing_axis(pair_ens, reference="MD"))
    moved = np.array([any(53 <= r <= 58 for r in p) for p in pairs["pairs"]])
    assert moved.any() and (~moved).any()
    diff = np.array(pairs["model"]["length"]) - np.array(pairs["MD"]["length"])
    np.testing.assert_allclose(diff[~moved], 0.0, atol=1e-12)
    assert np.abs(diff[moved]).max() > 0.5
    assert pairs["MD"]["frames"] == pairs["model"]["frames"] > 0
    assert all("NMP" in d for d, m in zip(pairs["domains"], moved, strict=True) if m)  # 30–59 is the NMP domain
    assert sg.pair_table(pairs, ["MD", "model"]).count("\n") == len(pairs["pairs"]) + 2
    assert sg.table(res, ["MD", "model"]).count("\n") == 6 + 3
