"""E-UpPool decoder (eqs. 12–13): node-wise invariant scalars → coefficients of equivariant vectors.

Given vectors ``V_i`` (3, c) and scalars ``s_i``, one step is::

    c_i = MLP(inv(V_iᵀ V_i), s_i)        (12)
    out_i = V_i c_i                      (13)

Stacking ``n_stack`` steps, each step appending its output to the vectors the next one sees, is the published code's
"equivariant scalar net" decoder (GMN-style); ``n_stack = 1`` is eqs. 12–13. ``gram_norm="l2"`` L2-normalises the
flattened Gram matrix (published); ``"soft"`` bounds it with :func:`~eghn_md.nn.invariants.soft_normalise` (equations
variant: keeps magnitudes, bounds the response to large vectors); ``"none"`` uses it as is.

:class:`ScalarNetDecoder` is the published code's decoder exactly (``EquivariantScalarNet`` / ``EGMN``): the *whole*
c×c Gram matrix, L2-normalised as one vector, goes with the scalars through a two-layer network with a final SiLU;
two two-layer heads give the c vector coefficients and new node scalars, and each stacked step receives the previous
step's scalars (not the input scalars).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from eghn_md.nn.invariants import gram_features, soft_normalise
from eghn_md.nn.mlp import MLP

__all__ = ["VectorDecoder", "ScalarNetDecoder"]


class VectorDecoder(nn.Module):
    """Shapes: V (N, 3, c), s (N, F) -> (N, 3)."""

    def __init__(
        self,
        *,
        n_vectors: int,
        scalar_in: int,
        hidden: int,
        n_stack: int = 1,
        mlp_layers: int = 2,
        gram_norm: str = "none",
    ):
        super().__init__()
        if gram_norm not in ("none", "l2", "soft"):
            raise ValueError(f"unknown gram_norm {gram_norm!r}; valid: none, l2, soft")
        self.gram_norm = gram_norm
        self.steps = nn.ModuleList()
        for t in range(n_stack):
            c = n_vectors + t
            mlp = MLP(c * (c + 1) // 2 + scalar_in, hidden, c, n_layers=mlp_layers)
            self.steps.append(mlp)

    def forward(self, V: Tensor, s: Tensor) -> Tensor:
        out = None
        for mlp in self.steps:
            g = gram_features(V, symmetric=True)
            if self.gram_norm == "l2":
                g = F.normalize(g, dim=1)
            elif self.gram_norm == "soft":
                g = soft_normalise(g)
            coef = mlp(torch.cat([g.to(s.dtype), s], dim=1))
            out = torch.einsum("ncv,nv->nc", V, coef.to(V.dtype))
            V = torch.cat([V, out.unsqueeze(2)], dim=2)
        return out


class _ScalarNetStep(nn.Module):
    """One equivariant scalar net: ``m = MLP_in([l2(VᵀV), s])``, ``out = V · MLP_vec(m)``, ``s' = MLP_out(m)``."""

    def __init__(self, n_vectors: int, scalar_in: int, hidden: int):
        super().__init__()
        c = n_vectors
        self.inp = MLP(c * c + scalar_in, hidden, hidden, n_layers=2, final_act=True)
        self.vec = MLP(hidden, hidden, c, n_layers=2)
        self.out = MLP(hidden, hidden, hidden, n_layers=2)

    def forward(self, V: Tensor, s: Tensor):
        g = F.normalize(gram_features(V), dim=1)  # whole c×c Gram, row-major, as one vector
        m = self.inp(torch.cat([g.to(s.dtype), s], dim=1))
        coef = self.vec(m)
        return torch.einsum("ncv,nv->nc", V, coef.to(V.dtype)), self.out(m)


class ScalarNetDecoder(nn.Module):
    """The published decoder: ``n_layers`` stacked equivariant scalar nets (see the module docstring).

    Step t sees the c + t vectors (the inputs and the outputs of the steps before it) and the scalars returned by
    step t − 1 (the input scalars for t = 0). The last step's scalar head only produces the returned node scalars.

    Shapes: V (N, 3, c), s (N, scalar_in) -> vector (N, 3), scalars (N, hidden).
    """

    def __init__(self, *, n_vectors: int, scalar_in: int, hidden: int, n_layers: int = 1):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"ScalarNetDecoder needs n_layers >= 1, got {n_layers}")
        self.layers = nn.ModuleList(
            _ScalarNetStep(n_vectors + t, scalar_in if t == 0 else hidden, hidden) for t in range(n_layers)
        )

    def forward(self, V: Tensor, s: Tensor):
        out = None
        for step in self.layers:
            out, s = step(V, s)
            V = torch.cat([V, out.unsqueeze(2)], dim=2)
        return out, s
