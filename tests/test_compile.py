"""`torch.compile` gives the eager model's values and gradients (float64).

torch 2.13's inductor, on CPU, fuses an inlined ``index_add_`` (the backward of a row gather) with the kernel that
reads its result, in the wrong order: the sum is read before the rows are added. The first test is that pattern
reduced to four lines through ``eghn_md.nn.edges``; it fails when the row sums are inlined again. The slow test runs
both EGHN variants compiled against eager, on one graph and on a batch of two.
"""

from __future__ import annotations

import pytest
import torch

from eghn_md.data.batch import collate
from eghn_md.data.samples import build_edges
from eghn_md.models import ModelConfig, build_model
from eghn_md.models.registry import models_with
from eghn_md.nn.edges import gather_rows, graph_gather, scatter_sum
from eghn_md.nn.invariants import gram_features, tri_indices
from eghn_md.testing.synthetic import chain_graph


def _grads(fn, x, v, s):
    x = x.detach().clone().requires_grad_()
    v = v.detach().clone().requires_grad_()
    out = fn(x, v, s)
    out.pow(2).sum().backward()
    return out.detach(), x.grad, v.grad


def test_compiled_gather_and_row_sum_give_eager_gradients():
    n = 12
    i = torch.arange(n).repeat_interleave(n)
    j = torch.arange(n).repeat(n)

    def step(x, v, s):  # an EGNN-like position update: x + c (Σ_j x_j + s v)
        return x + 0.1 * (scatter_sum(gather_rows(x, j), i, n) + s * v)

    g = torch.Generator().manual_seed(0)
    x, v, s = (torch.randn(n, k, dtype=torch.float64, generator=g) for k in (3, 3, 1))
    want = _grads(step, x, v, s)
    got = _grads(torch.compile(step, dynamic=True), x, v, s)
    for a, b, what in zip(want, got, ("value", "x gradient", "v gradient"), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12, msg=what)


def test_one_graph_paths_equal_the_general_ones():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(7, 3, 2, dtype=torch.float64, generator=g)
    zeros = torch.zeros(7, dtype=torch.long)
    want = torch.zeros(1, 3, 2, dtype=torch.float64).index_add_(0, zeros, src)
    torch.testing.assert_close(scatter_sum(src, zeros, 1), want)
    row = torch.randn(1, 3, dtype=torch.float64, generator=g)
    torch.testing.assert_close(graph_gather(row, zeros, 1), row[zeros])
    a = torch.randn(5, 3, 3, dtype=torch.float64, generator=g)
    full = torch.bmm(a.transpose(1, 2), a).reshape(5, -1)
    iu = tri_indices(3)
    torch.testing.assert_close(gram_features(a, symmetric=True), full[:, iu[0] * 3 + iu[1]])


@pytest.mark.slow
@pytest.mark.parametrize("name", models_with(pools=True))
def test_compiled_models_match_eager(name):
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, node_in=6, edge_in=1, hidden=16, n_layers=2, n_pool_layers=2, n_decoder_layers=1,
                      n_clusters=3, length_scale=4.0)
    model = build_model(cfg).double()
    graphs = [chain_graph(24 + 6 * k, node_in=6, seed=k, cutoff=6.0, dtype=torch.float64) for k in range(2)]
    graphs = [g.replace(edge_index=ei, edge_attr=ea) for g in graphs for ei, ea in [build_edges(g.pos, 6.0, g.bonds)]]
    compiled = torch.compile(model, dynamic=True)
    for batch in (graphs[0], collate(graphs)):
        grads = []
        for net in (model, compiled, compiled):
            model.zero_grad(set_to_none=True)
            out = net(batch)
            out.pos.pow(2).mean().backward()
            grads.append((out.pos.detach(),
                          {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
        (pos0, g0), (pos1, g1) = grads[0], grads[2]
        torch.testing.assert_close(pos1, pos0, rtol=1e-10, atol=1e-10)
        assert g1.keys() == g0.keys()
        for k in g0:
            torch.testing.assert_close(g1[k], g0[k], rtol=1e-8, atol=1e-10 * float(g0[k].abs().max()) + 1e-14, msg=k)
