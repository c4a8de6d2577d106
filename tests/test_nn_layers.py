"""Building blocks: equivariance of each layer, pooling algebra, the regulariser."""

import pytest
import torch

from eghn_md.nn.edges import Edges
from eghn_md.nn.egnn import EGNNLayer
from eghn_md.nn.emmp import EMMP
from eghn_md.nn.mlp import MLP, PairLinear
from eghn_md.nn.pool import cluster_adjacency, complete_graph, pool_mean, pooling_regulariser, unpool
from eghn_md.nn.uppool import VectorDecoder
from eghn_md.testing.equivariance import (
    assert_batch_independent,
    assert_equivariant,
    assert_permutation_equivariant,
)
from eghn_md.testing.synthetic import random_batch, random_graph

SIZES = (5, 8, 3)
H = 8


def _batch():
    return random_batch(SIZES, node_in=H, edge_in=2)


def _all_checks(fn):
    assert_equivariant(fn, _batch(), atol=1e-10)
    assert_permutation_equivariant(fn, _batch(), atol=1e-10)
    gen = torch.Generator().manual_seed(5)
    assert_batch_independent(fn, [random_graph(n, node_in=H, edge_in=2, generator=gen) for n in SIZES], atol=1e-10)


@pytest.mark.parametrize("invariants", ["gram", "cross"])
def test_emmp_equivariant(invariants):
    torch.manual_seed(0)
    layer = EMMP(hidden=H, n_vectors=2, translating=(True, False), edge_in=2, invariants=invariants).double()
    with torch.no_grad():  # make the vector update large enough to be tested
        layer.coef.weight.mul_(100)

    def fn(b):
        Z = torch.stack([b.pos, b.vel], dim=2)
        e = Edges(b.edge_index, b.num_nodes)
        Z2, h2 = layer(Z, b.h, e, e.attr(b.edge_attr), b.batch, b.num_graphs)
        Z2, h2 = layer(Z2, h2, e, e.attr(b.edge_attr), b.batch, b.num_graphs)
        return {"points": Z2[:, :, 0], "vectors": Z2[:, :, 1], "invariants": h2}

    _all_checks(fn)


def test_emmp_moves_vectors_and_translates_positions_only():
    torch.manual_seed(0)
    layer = EMMP(hidden=H, n_vectors=2, translating=(True, False)).double()
    b = _batch()
    Z = torch.stack([b.pos, b.vel], dim=2)
    Z2, _ = layer(Z, b.h, Edges(b.edge_index, b.num_nodes), None, b.batch, b.num_graphs)
    assert (Z2 - Z).abs().max() > 1e-6  # the layer does update the vectors


def test_egnn_layer_equivariant():
    torch.manual_seed(0)
    layer = EGNNLayer(hidden=H, edge_in=2, clamp=100.0).double()
    nn_init = torch.nn.init
    nn_init.normal_(layer.coord2.weight, std=0.3)

    def fn(b):
        e = Edges(b.edge_index, b.num_nodes)
        x, h = layer(b.pos, b.vel, b.h, e, e.attr(b.edge_attr))
        return {"points": x, "invariants": h}

    _all_checks(fn)


@pytest.mark.parametrize("gram_norm,n_stack", [("none", 1), ("l2", 2)])
def test_vector_decoder_equivariant(gram_norm, n_stack):
    torch.manual_seed(0)
    dec = VectorDecoder(n_vectors=2, scalar_in=H, hidden=H, n_stack=n_stack, gram_norm=gram_norm).double()

    def fn(b):
        V = torch.stack([b.vel, b.vel * b.h[:, :1]], dim=2)
        return {"vectors": dec(V, b.h)}

    _all_checks(fn)


def test_pool_unpool_equivariant():
    torch.manual_seed(0)
    score = MLP(H, H, 3).double()

    def fn(b):
        S = torch.softmax(score(b.h), -1)
        X = pool_mean(S, b.pos, b.batch, b.num_graphs)  # (G, K, 3): points
        V = pool_mean(S, b.vel, b.batch, b.num_graphs)
        return {"points": unpool(S, X, b.batch), "vectors": unpool(S, V, b.batch), "invariants": S}

    _all_checks(fn)


def test_cluster_adjacency_matches_dense():
    b = _batch()
    torch.manual_seed(1)
    S = torch.softmax(torch.randn(b.num_nodes, 3, dtype=torch.float64), -1)
    A = cluster_adjacency(S, Edges(b.edge_index, b.num_nodes), b.batch, b.num_graphs)
    for g in range(b.num_graphs):
        lo, hi = int(b.ptr[g]), int(b.ptr[g + 1])
        dense = torch.zeros(hi - lo, hi - lo, dtype=torch.float64)
        ei = b.edge_index[:, (b.edge_index[0] >= lo) & (b.edge_index[0] < hi)] - lo
        dense[ei[0], ei[1]] = 1.0
        torch.testing.assert_close(A[g], S[lo:hi].T @ dense @ S[lo:hi])


@pytest.mark.parametrize("squared", [True, False])
def test_regulariser_zero_for_perfect_block_assignment(squared):
    # two graphs; each block-diagonal with K = 3 blocks (cliques), S a hard assignment of every node to its block
    edges, S_rows, batch, off = [], [], [], 0
    for g, sizes in enumerate([(2, 3, 4), (3, 3, 2)]):
        for k, n in enumerate(sizes):
            ids = torch.arange(n) + off
            ii, jj = torch.meshgrid(ids, ids, indexing="ij")
            keep = ii != jj
            edges.append(torch.stack([ii[keep], jj[keep]]))
            S_rows.append(torch.nn.functional.one_hot(torch.full((n,), k), 3).double())
            batch.append(torch.full((n,), g))
            off += n
    ei, S, batch = torch.cat(edges, 1), torch.cat(S_rows), torch.cat(batch)
    A = cluster_adjacency(S, Edges(ei, len(batch)), batch, 2)
    assert float(pooling_regulariser(A, squared=squared)) == pytest.approx(0.0, abs=1e-12)
    # a wrong assignment (every node to cluster 0) is penalised
    S_bad = torch.zeros_like(S)
    S_bad[:, 0] = 1.0
    assert float(pooling_regulariser(cluster_adjacency(S_bad, Edges(ei, len(batch)), batch, 2), squared=squared)) > 0.5


def test_complete_graph():
    e = complete_graph(2, 3, self_loops=False)
    assert e.shape == (2, 12) and bool((e[0] != e[1]).all()) and bool(((e[0] // 3) == (e[1] // 3)).all())
    assert complete_graph(2, 3, self_loops=True).shape == (2, 18)


def test_pair_linear_equals_concatenated_linear():
    torch.manual_seed(0)
    b = _batch()
    pl = PairLinear(H, 2, 5).double()
    e = Edges(b.edge_index, b.num_nodes)
    i, j = e.i, e.j
    W = torch.cat([pl.node.weight[:5], pl.node.weight[5:], pl.edge.weight], dim=1)
    ref = torch.cat([b.h[i], b.h[j], e.attr(b.edge_attr)], 1) @ W.T + pl.bias
    torch.testing.assert_close(pl(b.h, e.attr(b.edge_attr), e), ref)


def test_edges_gather_and_sum_match_index_ops_with_gradients():
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 7, (2, 30), generator=gen)  # unsorted, repeated, some nodes without edges
    x = torch.randn(7, 3, 2, dtype=torch.float64, requires_grad=True)
    e = Edges(ei, 7)
    w = torch.randn(30, 3, 2, dtype=torch.float64)
    got = e.sum_i(e.gather_j(x) * w + e.gather_i(x))
    ref = torch.zeros(7, 3, 2, dtype=torch.float64).index_add_(0, e.i, x[e.j] * w + x[e.i])
    torch.testing.assert_close(got, ref)
    (gx,) = torch.autograd.grad(got.square().sum(), x)
    (rx,) = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(e.mean_i(torch.ones(30, 1, dtype=torch.float64))[:, 0],
                               (torch.bincount(ei[0], minlength=7) > 0).double())


def test_silu_linear_gradients_match_autograd():
    torch.manual_seed(0)
    mlp = MLP(4, 6, 3, n_layers=3).double()
    x = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: mlp(t), (x,))


def test_fused_edge_mlp_matches_plain_ops():
    from eghn_md.nn.mlp import EdgeMLP

    torch.manual_seed(0)
    b = _batch()
    e = Edges(b.edge_index, b.num_nodes)
    mlp = EdgeMLP(H, 2, 6).double()
    h = b.h.clone().requires_grad_(True)
    ea = e.attr(b.edge_attr).clone().requires_grad_(True)
    fused = mlp(h, ea, e)  # grad enabled: fused autograd function
    grads = torch.autograd.grad(fused.square().sum(), [h, ea] + list(mlp.parameters()))

    plain = mlp.second(torch.nn.functional.silu(mlp.first(h, ea, e)))
    ref = torch.autograd.grad(plain.square().sum(), [h, ea] + list(mlp.parameters()))
    torch.testing.assert_close(fused, plain)
    for a, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, r)
    small = random_graph(4, node_in=H, edge_in=2, generator=torch.Generator().manual_seed(1))
    es = Edges(small.edge_index, 4)
    hs = small.h.clone().requires_grad_(True)
    eas = es.attr(small.edge_attr).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, y: mlp(x, y, es), (hs, eas))


def test_silu_with_head_gradients():
    from eghn_md.nn.mlp import silu_with_head

    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3).double()
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: silu_with_head(t, lin), (x,))
    assert torch.autograd.gradcheck(lambda t: silu_with_head(t, lin)[1], (x,))  # one output unused
    assert torch.autograd.gradcheck(lambda t: silu_with_head(t, lin)[0], (x,))


@pytest.mark.parametrize("mean", [True, False])
def test_silu_head_aggregate_matches_plain_ops(mean):
    from eghn_md.nn.mlp import silu_head_aggregate

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    e = Edges(torch.randint(0, 6, (2, 17), generator=gen), 7)  # node 6 without edges
    lin = torch.nn.Linear(5, 3).double()
    x = torch.randn(17, 5, dtype=torch.float64, requires_grad=True)
    s = torch.nn.functional.silu(x)
    ref = ((e.mean_i(s) if mean else e.sum_i(s)), lin(s))
    got = silu_head_aggregate(x, lin, e, mean=mean)
    for a, r in zip(got, ref, strict=True):
        torch.testing.assert_close(a, r)
    assert torch.autograd.gradcheck(lambda t: silu_head_aggregate(t, lin, e, mean=mean), (x,))
    assert torch.autograd.gradcheck(lambda t: silu_head_aggregate(t, lin, e, mean=mean)[0], (x,))
    assert torch.autograd.gradcheck(lambda t: silu_head_aggregate(t, lin, e, mean=mean)[1], (x,))
    w = [p for p in lin.parameters()]
    params = tuple(p.detach().requires_grad_() for p in w)
    assert torch.autograd.gradcheck(lambda a, b: _SHA(x.detach(), a, b, e, mean), params)


def _SHA(x, weight, bias, e, mean):
    from eghn_md.nn.mlp import _SiLUHeadAggregate

    node_w = e.inv_degree(x.dtype, x.device) if mean else None
    return _SiLUHeadAggregate.apply(x, weight, bias, e.i, node_w, e.num_nodes)


def test_pool_and_unpool_of_one_graph_match_the_batched_path():
    """The one-graph shortcut (plain matrix products) equals the per-graph sums used for batches, with gradients."""
    gen = torch.Generator().manual_seed(4)
    S = torch.softmax(torch.randn(9, 4, dtype=torch.float64, generator=gen), dim=1).requires_grad_(True)
    X = torch.randn(9, 3, 2, dtype=torch.float64, generator=gen).requires_grad_(True)
    one = torch.zeros(9, dtype=torch.long)
    two = torch.tensor([0] * 9 + [1] * 5)
    S2 = torch.cat([S, torch.softmax(torch.randn(5, 4, dtype=torch.float64, generator=gen), dim=1)])
    X2 = torch.cat([X, torch.randn(5, 3, 2, dtype=torch.float64, generator=gen)])
    y1, y2 = pool_mean(S, X, one, 1), pool_mean(S2, X2, two, 2)
    torch.testing.assert_close(y1[0], y2[0], rtol=1e-13, atol=1e-13)
    u1, u2 = unpool(S, y1, one), unpool(S2, y2, two)
    torch.testing.assert_close(u1, u2[:9], rtol=1e-13, atol=1e-13)
    g1 = torch.autograd.grad(u1.square().sum(), [S, X])
    g2 = torch.autograd.grad(u2[:9].square().sum(), [S, X])
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
