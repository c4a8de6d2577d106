"""Small MLPs and the per-node first layer of per-edge MLPs.

Performance contract: the first linear map of an edge MLP acting on ``[f_i, f_j, e_ij]`` equals
``W_i f_i + W_j f_j + W_e e_ij + b``. The node parts are computed once per *node* (N rows) and gathered by edge,
instead of concatenating ``(E, 2F + D)`` inputs and multiplying per edge.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from eghn_md.nn.edge_chain import edge_chain, first_layer
from eghn_md.nn.edges import _is_compiling, scatter_sum

__all__ = ["MLP", "PairLinear", "EdgeMLP", "silu_linear", "silu_with_head", "silu_head_aggregate"]


class _SiLULinear(torch.autograd.Function):
    """``silu(x) @ W.T + b`` that saves only ``x`` for backward and recomputes ``silu(x)`` there.

    A plain ``Linear(SiLU(x))`` keeps both ``x`` (for SiLU) and ``silu(x)`` (for Linear) alive; on per-edge tensors
    (E, H) that is the dominant autograd memory. Recomputing an element-wise SiLU in backward is cheap.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.silu(x), weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad2 = grad.reshape(-1, grad.shape[-1])
        grad_w = grad_b = grad_x = None
        if ctx.needs_input_grad[1]:
            s = F.silu(x)
            grad_w = grad2.t().mm(s.reshape(-1, s.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad2.sum(0)
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.silu_backward(grad.matmul(weight), x)
        return grad_x, grad_w, grad_b


def silu_linear(x: Tensor, linear: nn.Linear) -> Tensor:
    """``linear(silu(x))`` with the memory-lean backward of :class:`_SiLULinear` (plain ops under autocast)."""
    if not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type):
        return linear(F.silu(x))
    return _SiLULinear.apply(x, linear.weight, linear.bias)


class _SiLUWithHead(torch.autograd.Function):
    """``s = silu(x)`` and ``y = s @ W.T + b`` together, saving only ``x``: one SiLU forward, one SiLU recompute
    and one fused ``silu_backward`` for both consumers (instead of computing and differentiating SiLU twice)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        s = F.silu(x)
        return s, F.linear(s, weight, bias)

    @staticmethod
    def backward(ctx, gs: Optional[Tensor], gy: Optional[Tensor]):
        x, weight = ctx.saved_tensors
        grad_w = grad_b = None
        if gy is None:
            return (torch.ops.aten.silu_backward(gs, x) if gs is not None else None), None, None
        gy2 = gy.reshape(-1, gy.shape[-1])
        buf = F.silu(x)
        if ctx.needs_input_grad[1]:
            grad_w = gy2.t().mm(buf.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = gy2.sum(0)
        # one (…, H) buffer for silu(x), the summed gradient and the result (fresh buffers cost page faults on CPU)
        if gs is None:
            torch.matmul(gy, weight, out=buf)
        else:
            torch.addmm(gs.reshape(-1, x.shape[-1]), gy2, weight, out=buf.view(-1, x.shape[-1]))
        return torch.ops.aten.silu_backward.grad_input(buf, x, grad_input=buf), grad_w, grad_b


def silu_with_head(x: Tensor, linear: nn.Linear):
    """``(silu(x), linear(silu(x)))`` with the memory-lean fused backward of :class:`_SiLUWithHead`."""
    if not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type):
        s = F.silu(x)
        return s, linear(s)
    return _SiLUWithHead.apply(x, linear.weight, linear.bias)


class _SiLUHeadAggregate(torch.autograd.Function):
    """``a = w ⊙ Σ_{e→n} silu(x_e)`` (per receiver n) and ``y = silu(x) Wᵀ + b``, saving only ``x``.

    The edge message ``silu(x)`` (E, H) is only read through its per-node sum, so it is never returned: backward
    writes the gathered ``a`` gradient, the head's gradient and the SiLU derivative into one (E, H) buffer.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], index: Tensor, node_w: Optional[Tensor],
                num_nodes: int):
        ctx.save_for_backward(x, weight, index, node_w)
        ctx.has_bias = bias is not None
        s = F.silu(x)
        agg = scatter_sum(s, index, num_nodes)
        if node_w is not None:
            agg.mul_(node_w.unsqueeze(1))
        return agg, F.linear(s, weight, bias)

    @staticmethod
    def backward(ctx, ga: Optional[Tensor], gy: Optional[Tensor]):
        x, weight, index, node_w = ctx.saved_tensors
        buf = F.silu(x)
        grad_w = grad_b = None
        if gy is not None and ctx.needs_input_grad[1]:
            grad_w = gy.t().mm(buf)
        if gy is not None and ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = gy.sum(0)
        if ga is None:
            buf.zero_()
        else:
            torch.index_select(ga if node_w is None else ga * node_w.unsqueeze(1), 0, index, out=buf)
        if gy is not None:
            buf.addmm_(gy, weight)
        return torch.ops.aten.silu_backward.grad_input(buf, x, grad_input=buf), grad_w, grad_b, None, None, None


def silu_head_aggregate(x: Tensor, linear: nn.Linear, edges, *, mean: bool):
    """``(agg, linear(silu(x)))`` with ``agg`` the mean (``mean``) or sum of ``silu(x)`` over every receiver's
    incoming edges. Shapes: x (E, H), edges (:class:`~eghn_md.nn.edges.Edges`) -> (N, H), (E, out)."""
    if not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type):
        s = F.silu(x)
        return (edges.mean_i(s) if mean else edges.sum_i(s)), linear(s)
    node_w = edges.inv_degree(x.dtype, x.device) if mean else None
    return _SiLUHeadAggregate.apply(x, linear.weight, linear.bias, edges.i, node_w, edges.num_nodes)


class MLP(nn.Module):
    """``n_layers`` linear maps with SiLU between them (none after the last unless ``final_act``).

    Shapes: ``(*, in_dim) -> (*, out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        out_dim: int,
        *,
        n_layers: int = 2,
        final_act: bool = False,
        act: str = "silu",
        out_init_scale: float = 1.0,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"MLP needs n_layers >= 1, got {n_layers}")
        dims = [in_dim] + [hidden] * (n_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.final_act = final_act
        self.act = act
        if act not in ("silu", "tanh"):
            raise ValueError(f"unknown activation {act!r}; valid: silu, tanh")
        if out_init_scale != 1.0:
            with torch.no_grad():
                self.layers[-1].weight.mul_(out_init_scale)
                self.layers[-1].bias.zero_()

    def _act(self, x: Tensor) -> Tensor:
        return F.silu(x) if self.act == "silu" else torch.tanh(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers[0](x)
        for layer in self.layers[1:]:
            x = silu_linear(x, layer) if self.act == "silu" else layer(self._act(x))
        return self._act(x) if self.final_act else x


class PairLinear(nn.Module):
    """First layer of an edge MLP on ``[f_i, f_j, e_ij]``, computed per node and gathered per edge.

    ``out_ij = (W_i f_i + b) + W_j f_j + W_e e_ij`` with ``i`` the receiver, ``j`` the sender: two (N, F)×(F, H)
    products and two gathers instead of an (E, 2F + D)×(2F + D, H) product.

    Shapes: ``f`` (N, node_dim), ``edge_feat`` (E, edge_dim) or None, ``edges`` an :class:`~eghn_md.nn.edges.Edges`
    -> (E, out_dim).
    """

    def __init__(self, node_dim: int, edge_dim: int, out_dim: int):
        super().__init__()
        self.node = nn.Linear(node_dim, 2 * out_dim, bias=False)
        self.edge = nn.Linear(edge_dim, out_dim, bias=False) if edge_dim > 0 else None
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.out_dim = out_dim
        # match nn.Linear's fan-in scaling of the equivalent concatenated layer
        bound = 1.0 / max(2 * node_dim + edge_dim, 1) ** 0.5
        with torch.no_grad():
            self.node.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)
            if self.edge is not None:
                self.edge.weight.uniform_(-bound, bound)

    def forward(self, f: Tensor, edge_feat: Optional[Tensor], edges) -> Tensor:
        p = self.node(f)
        H = self.out_dim
        out = edges.gather_i(p[:, :H] + self.bias.to(p.dtype))
        out = out.add_(edges.gather_j(p[:, H:]))
        if self.edge is not None:
            w = self.edge.weight
            if edge_feat.dtype == out.dtype == w.dtype:
                out = out.addmm_(edge_feat, w.t())
            else:  # autocast: mixed dtypes
                out = out + self.edge(edge_feat).to(out.dtype)
        return out


class _EdgeFirstTwo(torch.autograd.Function):
    """``silu(P_i[i] + P_j[j] + e W_eᵀ) W_2ᵀ + b_2`` saving only node-level inputs (recomputes the first layer).

    The first-layer pre-activation (E, H) is not kept for backward: it is rebuilt there from the per-node terms
    (one ``embedding_bag`` sum of the two gathered rows and a thin ``addmm``, no (E, H)×(H, H) product), halving
    the per-edge autograd memory of a layer. Per-edge temporaries are reused in place (each fresh (E, H) buffer
    costs page faults on CPU): forward allocates one (E, H) buffer besides its output, backward two.
    """

    @staticmethod
    def forward(ctx, Pi, Pj, e, We, W2, b2, i, j, pair):
        table = torch.cat([Pi, Pj])
        ctx.save_for_backward(table, e, We, W2, i, j, pair)
        pre1 = first_layer(table, pair, e, We)
        return F.linear(F.silu(pre1, inplace=True), W2, b2)

    @staticmethod
    def backward(ctx, g):
        table, e, We, W2, i, j, pair = ctx.saved_tensors
        n = table.shape[0] // 2
        pre1 = first_layer(table, pair, e, We)
        need = ctx.needs_input_grad
        buf = F.silu(pre1)
        gW2 = g.t().mm(buf) if need[4] else None
        gb2 = g.sum(0) if need[5] else None
        g1 = torch.mm(g, W2, out=buf)  # silu(pre1) is no longer needed
        g1 = torch.ops.aten.silu_backward.grad_input(g1, pre1, grad_input=g1)
        del pre1
        gPi = scatter_sum(g1, i, n) if need[0] else None
        gPj = scatter_sum(g1, j, n) if need[1] else None
        # thin D: (D, H)×(H, E) then transpose is ~1.5× faster on CPU than (E, H)×(H, D), and
        # (D, E)×(E, H) then transpose ~8× faster than (H, E)×(E, D)
        ge = torch.mm(We.t(), g1.t()).t().contiguous() if (e is not None and need[2]) else None
        gWe = e.t().mm(g1).t() if (e is not None and need[3]) else None
        return gPi, gPj, ge, gWe, gW2, gb2, None, None, None


class EdgeMLP(nn.Module):
    """The first two layers of an edge MLP: ``second(silu(PairLinear(f_i, f_j, e_ij))) `` -> (E, H) pre-activation.

    Uses a fused, memory-lean autograd function when gradients are needed (and no autocast), plain ops otherwise.
    Shapes: f (N, node_dim), edge_feat (E, edge_dim) or None, edges (:class:`~eghn_md.nn.edges.Edges`) -> (E, H).
    """

    def __init__(self, node_dim: int, edge_dim: int, hidden: int):
        super().__init__()
        self.first = PairLinear(node_dim, edge_dim, hidden)
        self.second = nn.Linear(hidden, hidden)

    def forward(self, f: Tensor, edge_feat: Optional[Tensor], edges) -> Tensor:
        fused = torch.is_grad_enabled() and not torch.is_autocast_enabled(f.device.type)
        if edge_feat is not None and edge_feat.dtype != f.dtype:
            fused = False
        if not fused:
            return silu_linear(self.first(f, edge_feat, edges), self.second)
        Pi, Pj = self._node_parts(f)
        We = self.first.edge.weight if self.first.edge is not None else None
        e = edge_feat if We is not None else None
        return _EdgeFirstTwo.apply(
            Pi, Pj.contiguous(), e, We, self.second.weight, self.second.bias,
            edges.i, edges.j, edges.pair_index,
        )

    def _node_parts(self, f: Tensor):
        """The first layer's receiver part ``W_i f + b`` and sender part ``W_j f``: (N, node_dim) -> 2 × (N, H)."""
        p = self.first.node(f)
        H = self.first.out_dim
        return p[:, :H] + self.first.bias, p[:, H:]

    def chain(
        self,
        f: Tensor,
        edge_feat: Optional[Tensor],
        edges,
        *,
        agg: Optional[str],
        head: Optional[nn.Linear] = None,
        tail: Optional[nn.Linear] = None,
    ):
        """This MLP's message ``s = silu(pre2)`` read through its per-receiver ``agg`` (``"sum"``, ``"mean"`` or
        None) and a head ``y = head(s)``, optionally followed by ``tail(silu(y))``: returns ``(agg, y or tail)``.

        Eagerly (no ``torch.compile``, no autocast) the whole chain is the cache-blocked
        :func:`~eghn_md.nn.edge_chain.edge_chain`; otherwise the modules of this file, composed (same values).
        Shapes: f (N, node_dim), edge_feat (E, edge_dim) or None -> (N, H) or None, (E, out) or None.
        """
        if agg not in ("sum", "mean", None):
            raise ValueError(f"unknown aggregation {agg!r}; valid: sum, mean, None")
        mixed = edge_feat is not None and edge_feat.dtype != f.dtype
        if mixed or _is_compiling() or torch.is_autocast_enabled(f.device.type):
            return self._chain_composed(f, edge_feat, edges, agg=agg, head=head, tail=tail)
        table = torch.cat(self._node_parts(f))
        node_w = edges.inv_degree(f.dtype, f.device) if agg == "mean" else None
        return edge_chain(table, edges.pair_index, edge_feat if self.first.edge is not None else None,
                          None if self.first.edge is None else self.first.edge.weight, self.second,
                          index=edges.i, num_nodes=edges.num_nodes, node_w=node_w, want_agg=agg is not None,
                          head=head, tail=tail)

    def _chain_composed(self, f, edge_feat, edges, *, agg, head=None, tail=None):
        pre2 = self(f, edge_feat, edges)
        a = y = None
        if head is not None and agg is not None:
            a, y = silu_head_aggregate(pre2, head, edges, mean=agg == "mean")
        elif head is not None:
            y = silu_with_head(pre2, head)[1]
        else:
            s = F.silu(pre2)
            a = edges.mean_i(s) if agg == "mean" else edges.sum_i(s)
        if tail is not None:
            y = silu_linear(y, tail)
        return a, y
