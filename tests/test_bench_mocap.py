"""Motion-capture loader: packaged data, split sizes, protocol (velocity, target, edges)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eghn_md.benchmarks import mocap
from eghn_md.errors import UsageError


def test_packaged_file_exists():
    assert mocap.DEFAULT_PATH.is_file()
    assert (mocap.DEFAULT_PATH.parent / "README.md").is_file()


@pytest.mark.parametrize("split,n", [("train", 400), ("val", 240), ("test", 240)])
def test_split_sizes(split, n):
    assert len(mocap.MocapDataset(split)) == n


def test_protocol_matches_raw_arrays():
    raw = mocap.load_raw()
    ds = mocap.MocapDataset("test", delta_frame=30)
    first_trial = min(raw["splits"]["test"])
    t = int(raw["splits"]["test"][first_trial][0])
    x = raw["trials"][first_trial]
    g = ds[0]
    np.testing.assert_allclose(g.pos.numpy(), x[t], rtol=1e-6)
    np.testing.assert_allclose(g.vel.numpy(), x[t + 1] - x[t], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g.target.numpy(), x[t + 30], rtol=1e-6)
    torch.testing.assert_close(g.h[:, 0], g.vel.norm(dim=1))
    assert g.h.shape == (31, 2)


def test_edges_bonds_and_two_hop():
    raw = mocap.load_raw()
    g = mocap.MocapDataset("val")[0]
    bonds = {tuple(e) for e in raw["edges"].tolist()} | {tuple(e[::-1]) for e in raw["edges"].tolist()}
    pairs = list(zip(*g.edge_index.tolist(), strict=True))
    kinds = g.edge_attr[:, 0].tolist()
    assert len(set(pairs)) == len(pairs) and all(i != j for i, j in pairs)
    assert {p for p, k in zip(pairs, kinds, strict=True) if k == 1} == bonds
    assert {tuple(p) for p in g.local_edge_index.t().tolist()} == bonds
    adj = {}
    for i, j in bonds:
        adj.setdefault(i, set()).add(j)
    two = {(i, k) for i in adj for j in adj[i] for k in adj[j] if k != i and (i, k) not in bonds}
    assert {p for p, k in zip(pairs, kinds, strict=True) if k == 2} == two
    # symmetric
    assert set(pairs) == {(j, i) for i, j in pairs}


def test_bad_split_and_max_samples():
    with pytest.raises(UsageError):
        mocap.MocapDataset("nope")
    assert len(mocap.MocapDataset("train", max_samples=50)) == 50  # 10 per trial, 5 trials
