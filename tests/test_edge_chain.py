"""The cache-blocked per-edge chain (``eghn_md.nn.edge_chain``) against the unfused modules, in float64 (on
``--device``: on CUDA the chain is one block)."""

import itertools

import pytest
import torch
from torch.nn import functional as F

from eghn_md.nn import edge_chain as chain_mod
from eghn_md.nn.edges import Edges
from eghn_md.nn.egnn import EGNNLayer
from eghn_md.nn.emmp import EMMP
from eghn_md.nn.mlp import EdgeMLP
from eghn_md.testing.synthetic import random_batch

N, E, H = 11, 97, 6
# (agg, edge features, head, tail width (0: no tail; 1 as EGNN's φ_x), bias)
CASES = [c for c in itertools.product(["sum", "mean", None], [0, 3, 8], [False, True], [0, 1, 2], [False, True])
         if not (c[0] is None and c[2] is False) and not (c[3] and not c[2])]  # something is read; tail needs head


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    monkeypatch.setattr(chain_mod, "CHUNK_ROWS", 16)  # several blocks and a ragged last one at E = 97


def _setup(edge_dim, has_head, tail_width, bias, device="cpu"):
    gen = torch.Generator().manual_seed(7)
    ei = torch.randint(0, N - 1, (2, E), generator=gen)  # node N - 1 receives no edge (mean over nothing = 0)
    edges = Edges(ei.to(device), N)
    torch.manual_seed(1)
    mlp = EdgeMLP(5, edge_dim, H).double().to(device)
    head = torch.nn.Linear(H, 4, bias=bias).double().to(device) if has_head else None
    tail = torch.nn.Linear(4, tail_width, bias=bias).double().to(device) if tail_width else None
    f = torch.randn(N, 5, dtype=torch.float64).to(device).requires_grad_(True)
    ef = torch.randn(E, edge_dim, dtype=torch.float64).to(device).requires_grad_(True) if edge_dim else None
    return edges, mlp, head, tail, f, ef


def _loss(out):
    gen = torch.Generator().manual_seed(3)
    return sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)).sum()
               for t in out if t is not None)


@pytest.mark.parametrize("agg,edge_dim,has_head,tail_width,bias", CASES)
def test_chain_matches_composed_modules(agg, edge_dim, has_head, tail_width, bias, device):
    edges, mlp, head, tail, f, ef = _setup(edge_dim, has_head, tail_width, bias, device)
    leaves = [f] + ([ef] if ef is not None else []) + [p for m in (mlp, head, tail) if m is not None
                                                       for p in m.parameters()]
    got = mlp.chain(f, ef, edges, agg=agg, head=head, tail=tail)
    ref = mlp._chain_composed(f, ef, edges, agg=agg, head=head, tail=tail)
    assert [t is None for t in got] == [t is None for t in ref] == [agg is None, head is None]
    for a, r in zip(got, ref, strict=True):
        if r is not None:
            torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    g_got = torch.autograd.grad(_loss(got), leaves)
    g_ref = torch.autograd.grad(_loss(ref), leaves)
    for a, r in zip(g_got, g_ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-11, atol=1e-12)
    with torch.no_grad():
        nograd = mlp.chain(f, ef, edges, agg=agg, head=head, tail=tail)
    for a, r in zip(nograd, ref, strict=True):
        if r is not None:
            torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_chain_gradcheck():
    edges, mlp, head, tail, f, ef = _setup(3, True, 2, True)
    small = Edges(edges.edge_index[:, :40], N)
    assert torch.autograd.gradcheck(lambda a, b: mlp.chain(a, b[:40], small, agg="mean", head=head, tail=tail), (f, ef))


def test_chain_rejects_unknown_aggregation():
    edges, mlp, head, tail, f, ef = _setup(0, True, 0, True)
    with pytest.raises(ValueError, match="unknown aggregation 'max'; valid: sum, mean, None"):
        mlp.chain(f, ef, edges, agg="max", head=head)


def _layer_outputs(layer, call, composed: bool, monkeypatch):
    if composed:  # route every layer through the unfused modules
        monkeypatch.setattr(EdgeMLP, "chain", EdgeMLP._chain_composed)
    torch.manual_seed(0)
    out = call()
    return out, torch.autograd.grad(sum(o.square().sum() for o in out), list(layer.parameters()))


@pytest.mark.parametrize("kind", ["egnn", "egnn-last", "emmp-gram", "emmp-cross-2"])
def test_layers_same_with_and_without_the_chain(kind, monkeypatch, device):
    torch.manual_seed(0)
    b = random_batch((9, 13, 6), node_in=8, edge_in=2).to(device)
    e = Edges(b.edge_index, b.num_nodes)
    if kind.startswith("egnn"):
        layer = EGNNLayer(hidden=8, edge_in=2, update_h=kind == "egnn", coord_bias=True).double().to(device)
        with torch.no_grad():
            layer.coord2.weight.mul_(1000)

        def call():
            return layer(b.pos, b.vel, b.h, e, b.edge_attr)
    else:
        gram = kind == "emmp-gram"
        layer = EMMP(hidden=8, n_vectors=2, translating=(True, False), edge_in=2,
                     invariants="gram" if gram else "cross", coef_layers=1 if gram else 2,
                     h_agg="mean" if gram else "sum").double().to(device)
        Z = torch.stack([b.pos, b.vel], dim=2)

        def call():
            return layer(Z, b.h, e, b.edge_attr, b.batch, b.num_graphs)
    fused, g_fused = _layer_outputs(layer, call, False, monkeypatch)
    plain, g_plain = _layer_outputs(layer, call, True, monkeypatch)
    for a, r in zip(fused + g_fused, plain + g_plain, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-11, atol=1e-12)
    assert (fused[0] - (b.pos if kind.startswith("egnn") else Z)).abs().max() > 1e-6  # positions do move


def test_chain_handles_float32_and_an_empty_edge_list():
    edges, mlp, head, tail, f, ef = _setup(3, True, 0, True)
    mlp32, head32 = mlp.float(), head.float()
    got = mlp32.chain(f.float(), ef.float(), edges, agg="sum", head=head32)
    ref = mlp32._chain_composed(f.float(), ef.float(), edges, agg="sum", head=head32)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
    none = Edges(torch.zeros((2, 0), dtype=torch.long), N)
    f32 = f.detach().float().requires_grad_(True)
    agg, y = mlp32.chain(f32, ef.float()[:0], none, agg="mean", head=head32)
    assert agg.shape == (N, H) and not agg.abs().any() and y.shape == (0, 4)
    (grad,) = torch.autograd.grad((agg * F.silu(torch.ones_like(agg))).sum(), [f32], allow_unused=True)
    assert grad is None or not grad.abs().any()
