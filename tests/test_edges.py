"""Edge construction: the cell-list radius graph against brute force; sequence edges; union."""

import pytest
import torch

from eghn_md.graph.edges import merge_edges, radius_graph, sequence_edges


def _brute(pos, cutoff, batch):
    out = set()
    n = pos.shape[0]
    d = torch.cdist(pos.double(), pos.double())
    for i in range(n):
        for j in range(n):
            if i != j and batch[i] == batch[j] and d[i, j] < cutoff:
                out.add((i, j))
    return out


def _set(ei):
    return set(map(tuple, ei.t().tolist()))


@pytest.mark.parametrize("method", ["cells", "dense", "auto"])
def test_radius_graph_matches_brute_force(method):
    gen = torch.Generator().manual_seed(0)
    sizes = [40, 7, 90, 1]
    pos = torch.cat([torch.rand(n, 3, generator=gen) * 12 - 6 + 3 * g for g, n in enumerate(sizes)])
    batch = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])
    ei = radius_graph(pos, 3.0, batch, method=method)
    assert ei.dtype == torch.long and ei.shape[0] == 2
    assert _set(ei) == _brute(pos, 3.0, batch)
    assert ei.shape[1] == len(_set(ei))  # no duplicates


def test_radius_graph_single_graph_and_large():
    gen = torch.Generator().manual_seed(1)
    pos = torch.rand(3000, 3, generator=gen, dtype=torch.float64) * 40
    a = radius_graph(pos, 4.0)  # auto → cell list above 2048 nodes
    b = radius_graph(pos, 4.0, method="dense")
    assert torch.equal(a, b)
    assert _set(radius_graph(pos[:50], 4.0)) == _brute(pos[:50], 4.0, torch.zeros(50, dtype=torch.long))


def test_radius_graph_rejects_bad_input():
    with pytest.raises(ValueError, match="cutoff"):
        radius_graph(torch.zeros(3, 3), 0.0)
    with pytest.raises(ValueError, match="method"):
        radius_graph(torch.zeros(3, 3), 1.0, method="kd")


def test_sequence_edges_respect_chain_ids():
    ids = torch.tensor([0, 0, 0, 1, 1, 2])
    assert _set(sequence_edges(ids, k=1)) == {(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)}
    assert (0, 2) in _set(sequence_edges(ids, k=2)) and (2, 3) not in _set(sequence_edges(ids, k=2))


def test_merge_edges_union_dedup():
    a = torch.tensor([[0, 1], [1, 0]])
    b = torch.tensor([[1, 2, 0], [0, 1, 1]])
    m = merge_edges(a, b)
    assert _set(m) == {(0, 1), (1, 0), (2, 1)} and m.shape[1] == 3


def _float64_pairs(pos, cutoff):
    """The reference pair set: float64 coordinate differences, no Gram-matrix shortcut."""
    p = pos.double()
    d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    adj = d2 < cutoff * cutoff
    adj.fill_diagonal_(False)
    return adj.nonzero().t()


@pytest.mark.parametrize("selection, cutoff", [("name CA", 10.0), ("backbone", 8.0)])
def test_float32_radius_graph_equals_float64_on_adk_frames(selection, cutoff):
    from tests._data import datafile, mda_positions

    frames = torch.as_tensor(mda_positions(datafile("PSF"), datafile("DCD"), selection, stride=7)[0])
    assert frames.dtype == torch.float32 and frames.shape[0] >= 10
    for x in frames:
        ref = _float64_pairs(x, cutoff)
        assert torch.equal(radius_graph(x, cutoff, method="dense"), ref)
        assert torch.equal(radius_graph(x, cutoff, method="cells"), ref)


@pytest.mark.parametrize("method", ["cells", "dense"])
def test_radius_graph_decides_pairs_at_the_cutoff_in_float64(method):
    # pairs 1e-6 Å inside / outside the cutoff, far from the origin: float32 alone cannot tell them apart
    base = torch.tensor([[5000.0, -3000.0, 1200.0]], dtype=torch.float64)
    offsets = torch.tensor([[0.0, 0.0, 0.0], [4.0 - 1e-6, 0.0, 0.0], [0.0, 4.0 + 1e-6, 0.0], [0.0, 0.0, 4.0]],
                           dtype=torch.float64)
    pos = base + offsets
    ei = radius_graph(pos, 4.0, method=method)
    assert _set(ei) == _set(_float64_pairs(pos, 4.0)) == {(0, 1), (1, 0)}


@pytest.mark.parametrize("replicas", [1, 3, 12])
def test_equal_sized_graphs_take_one_dense_block_each_with_the_same_pairs(replicas):
    """An ensemble's replicas (graphs one after another, equal sizes): the per-graph dense blocks give exactly the
    pairs of the cell list and of brute force, in the same (i, j) order, also above 2048 nodes in all and with
    pairs 1e-6 Å either side of the cutoff far from the origin."""
    gen = torch.Generator().manual_seed(replicas)
    m = 200
    pos = torch.rand(replicas * m, 3, generator=gen, dtype=torch.float64) * 20 + 3000.0
    pos[1] = pos[0] + torch.tensor([4.0 - 1e-6, 0.0, 0.0], dtype=torch.float64)
    pos[m - 1] = pos[0] + torch.tensor([0.0, 4.0 + 1e-6, 0.0], dtype=torch.float64)
    batch = torch.arange(replicas).repeat_interleave(m)
    cells = radius_graph(pos, 4.0, batch, method="cells")
    for method in ("dense", "auto"):
        assert torch.equal(radius_graph(pos, 4.0, batch, method=method), cells)
    first = _set(cells[:, cells[0] < m])
    assert first == _brute(pos[:m], 4.0, batch[:m]) and (0, 1) in first and (0, m - 1) not in first
    shifted = radius_graph(pos[:m] + 0.5, 4.0, None, method="dense")  # one graph alone: the same pairs
    assert _set(shifted) == first
