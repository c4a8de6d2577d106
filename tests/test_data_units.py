"""Unit tests of the data layer's pieces (split_ranges, build_edges, WindowSet, collate) and of io.atomic."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from eghn_md.data.batch import collate
from eghn_md.data.samples import WindowSet, build_edges, split_ranges
from eghn_md.errors import UsageError
from eghn_md.io.atomic import atomic_path, check_output_path
from eghn_md.testing.synthetic import random_graph


@pytest.mark.parametrize("n, fr", [(98, (0.6, 0.2, 0.2)), (10, (0.66, 0.34, 0.0)), (7, (1.0, 0.0, 0.0))])
def test_split_ranges_are_contiguous_and_cover_every_frame(n, fr):
    blocks = split_ranges(n, fr)
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks[:-1], blocks[1:], strict=True))
    for (a, b), f in zip(blocks, fr, strict=True):
        assert abs((b - a) - f * n) <= 1


def test_build_edges_is_the_radius_graph_united_with_bonds_by_brute_force():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(25, 3, generator=g) * 6
    bonds = torch.tensor([[0, 1, 7, 24], [1, 0, 24, 7]])
    ei, ea = build_edges(pos, 5.0, bonds)
    d = torch.cdist(pos.double(), pos.double())
    expected = {(i, j) for i in range(25) for j in range(25) if i != j and d[i, j] < 5.0} | {(0, 1), (1, 0), (7, 24),
                                                                                              (24, 7)}
    got = list(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
    assert set(got) == expected and len(got) == len(expected)
    assert got == sorted(got)  # sorted by receiver, then sender
    flags = dict(zip(got, ea[:, 0].tolist(), strict=True))
    assert flags[(7, 24)] == 1.0 and flags[(0, 1)] == 1.0 and sum(flags.values()) == 4


def test_window_set_samples_frames_horizon_apart():
    frames = np.arange(20 * 4 * 3, dtype=np.float32).reshape(20, 4, 3)
    bonds = torch.tensor([[0, 1], [1, 0]])
    ws = WindowSet(positions=frames, block=(2, 18), h=torch.ones(4, 1), bonds=bonds, horizon=3, cutoff=1e9)
    assert ws.starts == list(range(5, 15))  # t − 3 >= 2 and t + 3 <= 17
    s = ws[0]
    np.testing.assert_array_equal(s.pos.numpy(), frames[5])
    np.testing.assert_array_equal(s.vel.numpy(), frames[5] - frames[2])
    np.testing.assert_array_equal(s.target.numpy(), frames[8])
    with pytest.raises(IndexError):
        ws[len(ws)]


def test_collate_shifts_edges_and_keeps_graphs_apart():
    g = torch.Generator().manual_seed(1)
    a, b = random_graph(5, edge_in=2, generator=g), random_graph(3, edge_in=2, generator=g)
    batch = collate([a, b])
    assert batch.num_graphs == 2 and batch.num_nodes == 8
    assert batch.ptr.tolist() == [0, 5, 8] and batch.batch.tolist() == [0] * 5 + [1] * 3
    torch.testing.assert_close(batch.edge_index[:, a.edge_index.shape[1]:], b.edge_index + 5)
    torch.testing.assert_close(batch.local_edge_index[:, a.bonds.shape[1]:], b.bonds + 5)
    assert (batch.batch[batch.edge_index[0]] == batch.batch[batch.edge_index[1]]).all()
    with pytest.raises(ValueError, match="at least one"):
        collate([])
    with pytest.raises(ValueError, match="present in all"):
        collate([a, b.replace(target=None)])


def test_atomic_path_leaves_nothing_on_failure_and_replaces_on_success(tmp_path):
    out = tmp_path / "x.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert out.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["x.txt"]
    with atomic_path(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["x.txt"]


def test_check_output_path_names_the_problem(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UsageError, match="already exists"):
        check_output_path(tmp_path / "a.txt", overwrite=False)
    assert check_output_path(tmp_path / "a.txt", overwrite=True) == tmp_path / "a.txt"
    with pytest.raises(UsageError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "a.txt", overwrite=False)
