"""Small MLPs and the per-node first layer of per-edge MLPs.

Performance contract (``DESIGN.md``): the first linear map of an edge MLP acting on ``[f_i, f_j, e_ij]`` equals
``W_i f_i + W_j f_j + W_e e_ij + b``. The node parts are computed once per *node* (N rows) and gathered by edge,
instead of concatenating ``(E, 2F + D)`` inputs and multiplying per edge.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MLP", "PairLinear", "silu_linear"]


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
        sig = torch.sigmoid(x)
        s = x * sig
        grad2 = grad.reshape(-1, grad.shape[-1])
        grad_w = grad2.t().mm(s.reshape(-1, s.shape[-1]).to(grad2.dtype)) if ctx.needs_input_grad[1] else None
        grad_b = grad2.sum(0) if (ctx.has_bias and ctx.needs_input_grad[2]) else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            gs = grad.matmul(weight.to(grad.dtype))
            grad_x = gs * (sig * (1.0 + x * (1.0 - sig))).to(gs.dtype)
        return grad_x, grad_w, grad_b


def silu_linear(x: Tensor, linear: nn.Linear) -> Tensor:
    """``linear(silu(x))`` with the memory-lean backward of :class:`_SiLULinear` (plain ops under autocast)."""
    if torch.is_autocast_enabled() or not torch.is_grad_enabled():
        return linear(F.silu(x))
    return _SiLULinear.apply(x, linear.weight, linear.bias)


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
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
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

    ``out_ij = W_i f_i + W_j f_j + W_e e_ij + b`` with ``i = edge_index[0]`` (receiver), ``j = edge_index[1]``.

    Shapes: ``f`` (N, node_dim), ``edge_feat`` (E, edge_dim) or None, ``edge_index`` (2, E) -> (E, out_dim).
    """

    def __init__(self, node_dim: int, edge_dim: int, out_dim: int):
        super().__init__()
        self.node = nn.Linear(node_dim, 2 * out_dim, bias=False)
        self.edge = nn.Linear(edge_dim, out_dim, bias=True) if edge_dim > 0 else None
        self.bias = None if edge_dim > 0 else nn.Parameter(torch.zeros(out_dim))
        self.out_dim = out_dim
        # match nn.Linear's fan-in scaling of the equivalent concatenated layer
        fan_in = 2 * node_dim + edge_dim
        bound = 1.0 / max(fan_in, 1) ** 0.5
        with torch.no_grad():
            self.node.weight.uniform_(-bound, bound)
            if self.edge is not None:
                self.edge.weight.uniform_(-bound, bound)
                self.edge.bias.uniform_(-bound, bound)

    def forward(self, f: Tensor, edge_feat: Optional[Tensor], edge_index: Tensor) -> Tensor:
        p = self.node(f)
        pi, pj = p[:, : self.out_dim], p[:, self.out_dim :]
        out = pi.index_select(0, edge_index[0]) + pj.index_select(0, edge_index[1])
        if self.edge is not None:
            out = out + self.edge(edge_feat)
        else:
            out = out + self.bias
        return out
