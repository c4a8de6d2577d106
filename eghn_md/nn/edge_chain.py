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

__all__ = ["CHUNK_ROWS", "edge_chain", "first_layer"]

CHUNK_ROWS = 2048
"""Edges per block on CPU: a (2048, 128) float32 block is 1 MiB, split over the two cores' 512 KB L2 caches when an
op runs on two threads (AMD EPYC of RESULTS.md; 1,024 rows was slower there, 4,096 no faster)."""


def _ranges(device: torch.device, num_edges: int) -> list:
    """Edge blocks ``(start, stop)``: CHUNK_ROWS rows on CPU, the whole list elsewhere."""
    rows = CHUNK_ROWS if device.type == "cpu" else max(num_edges, 1)
    return [(a, min(a + rows, num_edges)) for a in range(0, num_edges, rows)]


def first_layer(table: Tensor, pair: Tensor, e: Optional[Tensor], We: Optional[Tensor]) -> Tensor:
    """``pre1 = table[i] + table[N + j] (+ e W_eᵀ)``: one ``embedding_bag`` sum over the rows of ``pair``.

    Shapes: table (2N, H), pair (C, 2) rows ``[i, N + j]``, e (C, D) or None with We (H, D) -> (C, H)."""
    pre1 = F.embedding_bag(pair, table, mode="sum")
    if e is not None:
        pre1.addmm_(e, We.t())
    return pre1


def _silu_sig(x: Tensor):
    """``(silu(x), sigmoid(x))``: one exponential serves SiLU and, later, its derivative (:func:`_silu_grad_`)."""
    sg = torch.sigmoid(x)
    return x * sg, sg


def _silu_grad_(g: Tensor, s: Tensor, sg: Tensor) -> Tensor:
    """``g ⊙ silu'(x)`` in place of ``g``, from ``s = silu(x)`` and ``sg = sigmoid(x)`` (overwritten with
    silu' = sg − s·sg + s: two in-place passes, no new buffer). On CPU cheaper than ``silu_backward``, which
    recomputes the exponential."""
    return g.mul_(sg.addcmul_(s, sg, value=-1).add_(s))


def _linear_into(x: Tensor, W: Tensor, b: Optional[Tensor], out: Tensor) -> Tensor:
    """``x Wᵀ + b`` written into ``out`` (rows of a larger buffer)."""
    return torch.mm(x, W.t(), out=out) if b is None else torch.addmm(b, x, W.t(), out=out)


def _forward(table, e, We, W2, b2, Wh, bh, Wt, bt, pair, index, node_w, num_nodes, want_agg, keep):
    E, H = pair.shape[0], W2.shape[0]
    pre2 = table.new_empty((E, H))
    y = table.new_empty((E, Wh.shape[0])) if Wh is not None else None
    out = table.new_empty((E, Wt.shape[0])) if Wt is not None else None
    agg = table.new_zeros((num_nodes, H)) if want_agg else None
    for a, b in _ranges(table.device, E):
        a1 = F.silu(first_layer(table, pair[a:b], None if e is None else e[a:b], We), inplace=True)
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
        if want_agg and node_w is not None:
            g_agg = g_agg * node_w.unsqueeze(1)
        g_e = torch.empty_like(e) if (e is not None and ctx.needs_input_grad[1]) else None
        We_rows = _pad_rows(We.t()) if We is not None else None
        acc = {"table": torch.zeros_like(table), "W2": torch.zeros_like(W2), "b2": W2.new_zeros(W2.shape[0])}
        for k, W in (("Wh", Wh), ("Wt", Wt)):
            if W is not None:
                acc[k], acc["b" + k[1]] = torch.zeros_like(W), W.new_zeros(W.shape[0])
        if We is not None:
            acc["WeT"] = We.new_zeros(We.shape[::-1])  # (D, H): (D, C)×(C, H) is the fast order
        for a, b in _ranges(table.device, pair.shape[0]):
            _block_backward(a, b, table, e, We, We_rows, W2, Wh, Wt, pair, index, pre2, y, g_agg, g_res, g_e,
                            want_agg, acc)
        return (acc["table"], g_e, acc["WeT"].t() if We is not None else None, acc["W2"],
                acc["b2"] if has_b2 else None, acc.get("Wh"), acc.get("bh") if has_bh else None, acc.get("Wt"),
                acc.get("bt") if has_bt else None, None, None, None, None, None)


def _block_backward(a, b, table, e, We, We_rows, W2, Wh, Wt, pair, index, pre2, y, g_agg, g_res, g_e, want_agg,
                    acc):
    """Backward of edges ``a:b``: recomputes the block's first layer and SiLUs, accumulates into ``acc``."""
    pc, ec = pair[a:b], None if e is None else e[a:b]
    pre1 = first_layer(table, pc, ec, We)
    a1, sg1 = _silu_sig(pre1)
    p2 = pre2[a:b]
    s, sg2 = _silu_sig(p2)
    gy = None if Wh is None else _head_backward(g_res[a:b], s, None if y is None else y[a:b], Wt, acc)
    if want_agg:
        g_s = g_agg.index_select(0, index[a:b])
        if gy is not None:
            g_s.addmm_(gy, Wh)
    else:
        g_s = torch.mm(gy, Wh)
    g_p2 = _silu_grad_(g_s, s, sg2)
    acc["W2"].addmm_(g_p2.t(), a1)
    acc["b2"].add_(g_p2.sum(0))
    g_p1 = _silu_grad_(torch.mm(g_p2, W2, out=pre1), a1, sg1)
    acc["table"].index_add_(0, pc[:, 0], g_p1).index_add_(0, pc[:, 1], g_p1)
    if ec is not None:
        if g_e is not None:
            g_e[a:b] = F.linear(g_p1, We_rows)[:, : ec.shape[1]]
        acc["WeT"].addmm_(ec.t(), g_p1)


def _pad_rows(w: Tensor, rows: int = 16) -> Tensor:
    """``w`` (n, H) zero-padded to ``rows`` rows when n is smaller: on CPU an (C, H)×(H, n) product with a handful
    of columns n (the edge-feature gradient) is 2–5× slower than with 16 (MKL, AMD EPYC, torch 2.13)."""
    if w.shape[0] >= rows:
        return w.contiguous()
    return torch.cat([w, w.new_zeros((rows - w.shape[0], w.shape[1]))])


def _head_backward(g, s, y, Wt, acc):
    """Gradient with respect to the head's output ``y`` of one block (through the tail, if any); accumulates the
    head's and the tail's weight gradients. g: (C, K or L), s: (C, H) = silu(pre2), y: (C, K) or None."""
    if Wt is not None:
        u, sgu = _silu_sig(y)
        acc["Wt"].addmm_(g.t(), u)
        acc["bt"].add_(g.sum(0))
        g = _silu_grad_(torch.mm(g, Wt), u, sgu)
    acc["Wh"].addmm_(g.t(), s)
    acc["bh"].add_(g.sum(0))
    return g


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
