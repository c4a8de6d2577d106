"""E-Pool pieces (eqs. 6–9) and the pooling regulariser, per graph with gathers and segment sums.

A batch holds G graphs; each is pooled to its own K clusters. Cluster ``k`` of graph ``g`` has flat index
``g·K + k``. Costs are O(N·K) and O(N·K²) (never N², never padded to the largest graph).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from eghn_md.nn.edges import Edges, graph_gather, graph_sum
from eghn_md.nn.mlp import MLP

__all__ = [
    "AssignHead",
    "pool_mean",
    "unpool",
    "cluster_adjacency",
    "row_normalise",
    "pooling_regulariser",
    "l2_row_normalise",
    "published_regulariser",
    "complete_graph",
]


class AssignHead(nn.Module):
    """Soft assignment ``S = softmax(MLP(h))`` of every node to K clusters (eq. 6); softmax in float32 under autocast.

    Shapes: h (N, H) -> S (N, K), rows sum to 1.
    """

    def __init__(self, hidden: int, n_clusters: int, *, width: int = 1, act: str = "silu", init_scale: float = 1.0):
        super().__init__()
        self.mlp = MLP(hidden, width * hidden, n_clusters, n_layers=2, act=act)
        if init_scale != 1.0:  # larger initial logits: start away from the uniform assignment, a saddle of the loss
            with torch.no_grad():
                self.mlp.layers[-1].weight.mul_(init_scale)

    def forward(self, h: Tensor) -> Tensor:
        logits = self.mlp(h)
        if logits.dtype in (torch.float16, torch.bfloat16):  # autocast: softmax in float32
            logits = logits.float()
        return torch.softmax(logits, dim=-1)


def pool_mean(S: Tensor, X: Tensor, batch: Tensor, num_graphs: int, eps: float = 1e-5) -> Tensor:
    """Assignment-weighted mean per cluster (eqs. 7, 8): ``Y_gk = Σ_i s_ik X_i / max(Σ_i s_ik, eps)``.

    Shapes: S (N, K), X (N, *F), batch (N,) -> (G, K, *F).
    """
    n, k = S.shape
    Sx = S.to(X.dtype)
    flat = X.reshape(n, -1)
    if num_graphs == 1:  # one (K, N)×(N, F) product instead of an (N, K, F) broadcast (same sums)
        num = Sx.t().mm(flat).unsqueeze(0)
        den = Sx.sum(0, keepdim=True).clamp_min(eps)
    else:
        num = graph_sum(Sx.unsqueeze(2) * flat.unsqueeze(1), batch, num_graphs)  # (G, K, F)
        den = graph_sum(Sx, batch, num_graphs).clamp_min(eps)  # (G, K)
    return (num / den.unsqueeze(2)).reshape((num_graphs, k) + tuple(X.shape[1:]))


def unpool(S: Tensor, Y: Tensor, batch: Tensor) -> Tensor:
    """Broadcast cluster values back to nodes (eqs. 10, 11): ``X_i = Σ_k s_ik Y_{g_i k}``.

    Shapes: S (N, K), Y (G, K, *F), batch (N,) -> (N, *F).
    """
    n, k = S.shape
    g = Y.shape[0]
    flat = Y.reshape(g, k, -1)
    if g == 1:  # one (N, K)×(K, F) product, no per-node copy of the cluster values
        out = S.to(Y.dtype).mm(flat[0])
    else:
        out = torch.bmm(S.to(Y.dtype).unsqueeze(1), graph_gather(flat, batch, g)).squeeze(1)
    return out.reshape((n,) + tuple(Y.shape[2:]))


def cluster_adjacency(S: Tensor, edges: Edges, batch: Tensor, num_graphs: int) -> Tensor:
    """``Sᵀ A S`` per graph (eq. 9) for the 0/1 adjacency given by ``edge_index``.

    Computed as ``Sᵀ (A S)``: ``(A S)_i = Σ_j S_j`` over edges into i (O(E·K)), then a per-graph sum of
    ``S_i ⊗ (A S)_i`` (O(N·K²)). Shapes: S (N, K), edges (:class:`~eghn_md.nn.edges.Edges`), batch (N,) -> (G, K, K).
    """
    AS = edges.sum_i(edges.gather_j(S))  # (N, K)
    return graph_sum(S.unsqueeze(2) * AS.unsqueeze(1), batch, num_graphs)


def row_normalise(A: Tensor, eps: float = 1e-8) -> Tensor:
    """Divide every row of (…, K, K) by its sum."""
    return A / A.sum(-1, keepdim=True).clamp_min(eps)


def pooling_regulariser(A_high: Tensor, *, squared: bool) -> Tensor:
    """``mean_g ‖rownorm(Sᵀ A S)_g − I‖_F`` (``squared``: its square), a scalar.

    Zero when every node is assigned to one cluster and clusters share no edges (a perfect block assignment of a
    block-diagonal adjacency). Shapes: A_high (G, K, K) -> ().
    """
    k = A_high.shape[-1]
    eye = torch.eye(k, dtype=A_high.dtype, device=A_high.device)
    sq = ((row_normalise(A_high) - eye) ** 2).sum((-2, -1))
    # sqrt with a finite gradient at exactly zero
    per_graph = sq if squared else torch.where(sq > 0, sq.clamp_min(1e-30).sqrt(), torch.zeros_like(sq))
    return per_graph.mean()


def l2_row_normalise(A: Tensor, eps: float = 1e-12) -> Tensor:
    """Divide every row of (…, K, K) by its Euclidean norm (at least ``eps``), as ``F.normalize(A, dim=-1)``."""
    return A / A.norm(dim=-1, keepdim=True).clamp_min(eps)


def published_regulariser(A_high: Tensor) -> Tensor:
    """The published code's pooling regulariser ``mean_g ‖l2rows(Sᵀ A S)_g − I‖_F`` (not squared), a scalar.

    Rows are divided by their L2 norm (not their sum as in :func:`pooling_regulariser`); the published model applies
    it to the *local* (bond) adjacency. Shapes: A_high (G, K, K) -> ().
    """
    k = A_high.shape[-1]
    eye = torch.eye(k, dtype=A_high.dtype, device=A_high.device)
    sq = ((l2_row_normalise(A_high) - eye) ** 2).sum((-2, -1))
    per_graph = torch.where(sq > 0, sq.clamp_min(1e-30).sqrt(), torch.zeros_like(sq))  # finite gradient at 0
    return per_graph.mean()


def complete_graph(num_graphs: int, k: int, *, self_loops: bool, device=None) -> Tensor:
    """Edges of a complete graph on each graph's K clusters (flat ids ``g·K + k``): (2, G·K·(K or K−1))."""
    if self_loops:
        flat = torch.arange(k * k, device=device)
        ii, jj = flat // k, flat % k
    else:  # row-major without the diagonal, by arithmetic (a boolean mask would be a data-dependent shape)
        flat = torch.arange(k * (k - 1), device=device)
        ii, r = flat // max(k - 1, 1), flat % max(k - 1, 1)
        jj = r + (r >= ii).to(r.dtype)
    off = (torch.arange(num_graphs, device=device) * k).view(-1, 1)
    return torch.stack([(ii.view(1, -1) + off).reshape(-1), (jj.view(1, -1) + off).reshape(-1)])
