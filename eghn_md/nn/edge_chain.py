"""The per-edge MLP chain of an EGNN / EMMP layer as one cache-blocked operator (eager CPU hot path).

::

    pre1 = P[i] + P[N + j] + e W_eᵀ                  (E, H)   first layer, node parts P (2N, H) gathered
    pre2 = silu(pre1) W_2ᵀ + b_2                     (E, H)   edge message pre-activation
    agg  = w ⊙ Σ_{e→n} silu(pre2)                    (N, H)   per receiver n (optional; w = 1 or 1 / in-degree)
    y    = silu(pre2) W_hᵀ + b_h                     (E, K)   head (optional)
    out  = silu(y) W_tᵀ + b_t                        (E, L)   tail (optional; then ``y`` is internal)

Computed the way it is written, every step reads and writes (E, H) tensors from main memory (18 MB each for the
AdK backbone's 35k edges at H = 128). Here the edges are processed in blocks of :data:`CHUNK_ROWS` rows, so each
block's intermediates stay in cache from one step to the next, forward and backward; only ``pre2`` and (with a tail)
``y`` are kept for backward, as the unfused layers keep them. Same values and gradients as the unfused modules
(:class:`~eghn_md.nn.mlp.EdgeMLP`, :func:`~eghn_md.nn.mlp.silu_head_aggregate`, :func:`~eghn_md.nn.mlp.silu_linear`)
up to the order of floating-point sums. On CUDA the whole edge list is one block.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["CHUNK_ROWS", "edge_chain"]

CHUNK_ROWS = 4096
"""Edges per block on CPU: a (4096, 128) float32 block is 2 MiB, inside one core's share of cache."""

_silu_bwd = torch.ops.aten.silu_backward.grad_input


def _chunk(device: torch.device, num_edges: int) -> int:
    return CHUNK_ROWS if device.type == "cpu" else max(num_edges, 1)


def _first_silu(table: Tensor, pair: Tensor, e: Optional[Tensor], We: Optional[Tensor]):
    """(pre1, silu(pre1)) of one block: pair (C, 2) rows of ``table`` summed, plus the edge-feature part."""
    pre1 = F.embedding_bag(pair, table, mode="sum")
    if e is not None:
        pre1.addmm_(e, We.t())
    return pre1, F.silu(pre1)


def _linear_into(x: Tensor, W: Tensor, b: Optional[Tensor], out: Tensor) -> Tensor:
    """``x Wᵀ + b`` written into ``out`` (rows of a larger buffer)."""
    return torch.mm(x, W.t(), out=out) if b is None else torch.addmm(b, x, W.t(), out=out)


def _forward(table, e, We, W2, b2, Wh, bh, Wt, bt, pair, index, node_w, num_nodes, want_agg, keep):
    E, H = pair.shape[0], W2.shape[0]
    C = _chunk(table.device, E)
    pre2 = table.new_empty((E, H))
    agg = table.new_zeros((num_nodes, H)) if want_agg else None
    y = table.new_empty((E, Wh.shape[0])) if Wh is not None else None
    out = table.new_empty((E, Wt.shape[0])) if Wt is not None else None
    for a in range(0, E, C):
        b = min(a + C, E)
        _, a1 = _first_silu(table, pair[a:b], None if e is None else e[a:b], We)
        p2 = _linear_into(a1, W2, b2, pre2[a:b])
        s = F.silu(p2, inplace=not keep)  # pre2 is kept for backward only when training
        if agg is not None:
            agg.index_add_(0, index[a:b], s)
        if y is not None:
            yc = _linear_into(s, Wh, bh, y[a:b])
            if out is not None:
                _linear_into(F.silu(yc), Wt, bt, out[a:b])
    if agg is not None and node_w is not None:
        agg.mul_(node_w.unsqueeze(1))
    return agg, pre2, y, out


class _EdgeChain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, e, We, W2, b2, Wh, bh, Wt, bt, pair, index, node_w, num_nodes, want_agg):
        agg, pre2, y, out = _forward(table, e, We, W2, b2, Wh, bh, Wt, bt, pair, index, node_w, num_nodes,
                                     want_agg, keep=True)
        ctx.save_for_backward(table, e, We, W2, Wh, Wt, pair, index, node_w, pre2, y)
        ctx.flags = (b2 is not None, bh is not None, bt is not None, want_agg)
        res = out if Wt is not None else y
        return (agg if want_agg else pre2.new_zeros(())), (res if res is not None else pre2.new_zeros(()))

    @staticmethod
    def backward(ctx, g_agg, g_res):
        table, e, We, W2, Wh, Wt, pair, index, node_w, pre2, y = ctx.saved_tensors
        has_b2, has_bh, has_bt, want_agg = ctx.flags
        need = ctx.needs_input_grad
        E, H = pair.shape[0], W2.shape[0]
        C = _chunk(table.device, E)
        if want_agg and node_w is not None:
            g_agg = g_agg * node_w.unsqueeze(1)
        g_table = torch.zeros_like(table)
        g_e = torch.empty_like(e) if (e is not None and need[1]) else None
        grads = {k: torch.zeros_like(w) for k, w in (("W2", W2), ("Wh", Wh), ("Wt", Wt)) if w is not None}
        gWeT = We.new_zeros(We.shape[::-1]) if We is not None else None  # (D, H): (D, C)×(C, H) is the fast order
        We_rows = _pad_rows(We.t()) if We is not None else None
        gb = {k: W.new_zeros(W.shape[0]) for k, W in (("b2", W2), ("bh", Wh), ("bt", Wt)) if W is not None}
        for a in range(0, E, C):
            b = min(a + C, E)
            pc, ec = pair[a:b], None if e is None else e[a:b]
            pre1, a1 = _first_silu(table, pc, ec, We)
            p2 = pre2[a:b]
            s = F.silu(p2)
            g_s = None if Wh is None else _head_backward(g_res[a:b], s, None if y is None else y[a:b], Wh, Wt,
                                                         grads, gb)
            if want_agg:
                g_agg_c = g_agg.index_select(0, index[a:b])
                g_s = g_agg_c if g_s is None else g_s.add_(g_agg_c)
            g_p2 = _silu_bwd(g_s, p2, grad_input=g_s)
            grads["W2"].addmm_(g_p2.t(), a1)
            gb["b2"].add_(g_p2.sum(0))
            g_a1 = torch.mm(g_p2, W2, out=a1)
            g_p1 = _silu_bwd(g_a1, pre1, grad_input=g_a1)
            g_table.index_add_(0, pc[:, 0], g_p1).index_add_(0, pc[:, 1], g_p1)
            if ec is not None:
                if g_e is not None:
                    g_e[a:b] = F.linear(g_p1, We_rows)[:, : ec.shape[1]]
                gWeT.addmm_(ec.t(), g_p1)
        return (g_table, g_e, None if gWeT is None else gWeT.t(), grads["W2"], gb["b2"] if has_b2 else None,
                grads.get("Wh"), gb.get("bh") if has_bh else None, grads.get("Wt"), gb.get("bt") if has_bt else None,
                None, None, None, None, None)


def _pad_rows(w: Tensor, rows: int = 16) -> Tensor:
    """``w`` (n, H) zero-padded to ``rows`` rows when n is smaller: on CPU an (C, H)×(H, n) product with a handful
    of columns n (the edge-feature gradient) is 2–5× slower than with 16 (MKL, AMD EPYC, torch 2.13)."""
    if w.shape[0] >= rows:
        return w.contiguous()
    return torch.cat([w, w.new_zeros((rows - w.shape[0], w.shape[1]))])


def _head_backward(g, s, y, Wh, Wt, grads, gb):
    """Gradient with respect to ``s = silu(pre2)`` from the head (and tail) of one block; accumulates weights."""
    if Wt is not None:
        u = F.silu(y)
        grads["Wt"].addmm_(g.t(), u)
        gb["bt"].add_(g.sum(0))
        g_u = torch.mm(g, Wt, out=u)
        g = _silu_bwd(g_u, y, grad_input=g_u)
    grads["Wh"].addmm_(g.t(), s)
    gb["bh"].add_(g.sum(0))
    return torch.mm(g, Wh)


def edge_chain(
    table: Tensor,
    pair: Tensor,
    edge_feat: Optional[Tensor],
    We: Optional[Tensor],
    second: torch.nn.Linear,
    *,
    index: Tensor,
    num_nodes: int,
    node_w: Optional[Tensor] = None,
    want_agg: bool = True,
    head: Optional[torch.nn.Linear] = None,
    tail: Optional[torch.nn.Linear] = None,
):
    """The chain of the module text: returns ``(agg, res)``, ``res`` = ``out`` with a tail, else ``y`` (or None).

    Shapes: table (2N, H) = ``[P_i + b_1; P_j]`` (node parts of the first layer), pair (E, 2) rows ``[i, N + j]``,
    edge_feat (E, D) or None with We (H, D), index (E,) receivers, node_w (N,) or None -> agg (N, H) or None,
    res (E, K or L) or None. ``tail`` needs ``head``.
    """
    if tail is not None and head is None:
        raise ValueError("edge_chain: a tail needs a head")
    args = (table, edge_feat, We, second.weight, second.bias,
            None if head is None else head.weight, None if head is None else head.bias,
            None if tail is None else tail.weight, None if tail is None else tail.bias)
    if not torch.is_grad_enabled():
        agg, _, y, out = _forward(*args, pair, index, node_w, num_nodes, want_agg, keep=False)
        return agg, (out if tail is not None else y)
    agg, res = _EdgeChain.apply(*args, pair, index, node_w, num_nodes, want_agg)
    return (agg if want_agg else None), (res if head is not None else None)
