"""``eghn`` (equations variant) against an independent dense re-statement, output for output, in float64.

The reference below is written from the maths (eqs. 1–13 with the deviations documented in
``eghn_md/models/eghn.py`` and the README): one graph at a time, dense n×n adjacency, explicit loops over layers,
no segment sums, no gathers, no fused autograd functions. It reads the model's parameters by name only. If the
equations variant's maths changes (e.g. its input scaling), this file is the one place to restate it.

The same comparison is shown to fail on four deliberate wiring errors (messages aggregated onto the sender, E-Pool
without its normaliser, EMMP without centring, the regulariser's rows normalised by L2 instead of their sums).
"""

import pytest
import torch
from torch.nn import functional as F

import eghn_md.models.eghn as eghn_module
import eghn_md.nn.emmp as emmp_module
from eghn_md.models import ModelConfig, build_model
from eghn_md.nn.edges import Edges
from eghn_md.testing.synthetic import random_batch

TOL = 1e-10
SIZES = (6, 9, 4)
CFG = dict(name="eghn", node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2, n_decoder_layers=2,
           n_clusters=3, length_scale=2.5, vel_scale=0.7, disp_scale=1.3, radius_scale=6.0)


# ----------------------------------------------------------------------------------------------- dense reference
def _lin(P, name, x):
    return x @ P[f"{name}.weight"].T + P[f"{name}.bias"]


def _mlp(P, name, x, n_layers):
    for k in range(n_layers):
        x = _lin(P, f"{name}.layers.{k}", x)
        if k < n_layers - 1:
            x = F.silu(x)
    return x


def _soft(g):
    """Row-wise g / sqrt(1 + |g|²)."""
    return g / torch.sqrt(1.0 + (g * g).sum(-1, keepdim=True))


def _gram(a, b):
    """(…, 3, p), (…, 3, q) -> (…, p·q): a[:, r]·b[:, s] at r·q + s."""
    return torch.einsum("...dr,...ds->...rs", a, b).flatten(-2)


def _gram_sym(a):
    m = a.shape[-1]
    iu = torch.triu_indices(m, m)
    return torch.einsum("...dr,...ds->...rs", a, a)[..., iu[0], iu[1]]


def _rms(Z):
    """Per-channel RMS norm over the graph's nodes: (n, 3, m) -> (1, 1, m)."""
    return torch.sqrt((Z * Z).sum(1).mean(0) + 1e-6).view(1, 1, -1)


def _centre0(Z):
    """Subtract the graph mean from channel 0 of every 2-channel block (positions); (n, 3, m)."""
    Z = Z.clone()
    for c in range(0, Z.shape[-1], 2):
        Z[:, :, c] = Z[:, :, c] - Z[:, :, c].mean(0)
    return Z


def _emmp(P, name, Z, h, A, E, H, vs):
    """One EMMP layer (eqs. 1–4 as implemented) on a dense graph: A (n, n) with A[i, j] = 1 for a message j → i;
    ``vs`` (1, 1, m) the fixed scales of the vector channels (``vector_norm="fixed"``) or None (per-graph RMS)."""
    n, m = Z.shape[0], Z.shape[2]
    Zc = _centre0(Z)
    Zn = Zc / (_rms(Zc) if vs is None else vs)
    node_feat = torch.cat([h, _soft(_gram_sym(Zn))], dim=1)  # (n, H + m(m+1)/2)
    Zi, Zj = Zc.unsqueeze(1).expand(n, n, 3, m), Zc.unsqueeze(0).expand(n, n, 3, m)  # [i, j]
    Zni, Znj = Zn.unsqueeze(1).expand(n, n, 3, m), Zn.unsqueeze(0).expand(n, n, 3, m)
    rel = Zi - Zj
    edge_feat = torch.cat([_soft(_gram(Zni, Znj)), _soft(_gram_sym(rel)), E], dim=-1)  # (n, n, ·)
    W = P[f"{name}.edge_mlp.first.node.weight"]  # (2H, node_dim): rows [:H] act on the receiver, [H:] the sender
    pre1 = ((node_feat @ W[:H].T).unsqueeze(1) + (node_feat @ W[H:].T).unsqueeze(0)
            + edge_feat @ P[f"{name}.edge_mlp.first.edge.weight"].T + P[f"{name}.edge_mlp.first.bias"])
    msg = F.silu(_lin(P, f"{name}.edge_mlp.second", F.silu(pre1)))  # (n, n, H)
    coef = _lin(P, f"{name}.coef", msg).view(n, n, 2 * m, m)
    M = torch.einsum("ijdb,ijbc->ijdc", torch.cat([rel, Zj], dim=-1), coef)  # (n, n, 3, m)
    deg = A.sum(1).clamp_min(1)
    Z = Z + (A.view(n, n, 1, 1) * M).sum(1) / deg.view(n, 1, 1)
    agg = (A.unsqueeze(-1) * msg).sum(1) / deg.view(n, 1)
    h = h + _mlp(P, f"{name}.node", torch.cat([h, agg], dim=1), 2)
    return Z, h


def _reference_graph(P, c, pos, vel, h_in, A, E):
    """Positions (n, 3) [Å], S (n, K) and the regulariser term of one graph."""
    H, K = c.hidden, c.n_clusters
    x = pos / c.length_scale
    xbar = x.mean(0)
    xc = x - xbar
    Z0 = torch.stack([xc, vel / c.vel_scale], dim=2)
    vs = (torch.tensor([c.radius_scale / c.length_scale, 1.0], dtype=pos.dtype).view(1, 1, 2)
          if c.vector_norm == "fixed" else None)
    h = _lin(P, "embed", h_in)
    Z = Z0
    for k in range(c.n_layers):
        Z, h = _emmp(P, f"low.{k}", Z, h, A, E, H, vs)
    Zl, hl = Z, h
    for k in range(c.n_pool_layers):
        Z, h = _emmp(P, f"pool_net.{k}", Z, h, A, E, H, vs)
    S = torch.softmax(_mlp(P, "assign.mlp", h, 2), dim=1)  # eq. 6
    den = S.sum(0).clamp_min(1e-5)
    Zh = torch.einsum("ik,idc->kdc", S, Z) / den.view(K, 1, 1)  # eq. 7
    hh = (S.T @ hl) / den.view(K, 1)  # eq. 8
    Ah = S.T @ A @ S  # eq. 9
    rown = Ah / Ah.sum(1, keepdim=True).clamp_min(1e-8)
    Ak = 1.0 - torch.eye(K, dtype=A.dtype)  # complete cluster graph without self loops
    Ek = torch.stack([rown, torch.log1p(Ah)], dim=-1)
    for k in range(c.n_layers):
        Zh, hh = _emmp(P, f"high.{k}", Zh, hh, Ak, Ek, H, vs)
    Zagg, hagg = torch.einsum("ik,kdc->idc", S, Zh), S @ hh  # eqs. 10, 11
    V = torch.cat([_centre0(Zl), _centre0(Zagg), Zl - Z0], dim=2)
    V = V / _rms(V)
    s = torch.cat([hl, hagg], dim=1)
    coef = _mlp(P, "decoder.steps.0", torch.cat([_soft(_gram_sym(V)), s], dim=1), c.n_decoder_layers)  # eq. 12
    d = torch.einsum("idc,ic->id", V, coef)  # eq. 13
    out = xc + (c.disp_scale / c.length_scale) * d
    reg = ((rown - torch.eye(K, dtype=A.dtype)) ** 2).sum()
    return (xbar + out) * c.length_scale, S, reg


def reference(model, batch):
    """The dense re-statement over a batch: positions (N, 3), S (N, K), regulariser ()."""
    P = {k: v for k, v in model.state_dict().items()}
    c = model.config
    pos, assign, regs = [], [], []
    for g in range(batch.num_graphs):
        a, b = int(batch.ptr[g]), int(batch.ptr[g + 1])
        n = b - a
        keep = (batch.edge_index[0] >= a) & (batch.edge_index[0] < b)
        i, j = batch.edge_index[:, keep] - a
        A = torch.zeros(n, n, dtype=batch.pos.dtype)
        A[i, j] = 1.0
        E = torch.zeros(n, n, batch.edge_attr.shape[1], dtype=batch.pos.dtype)
        E[i, j] = batch.edge_attr[keep]
        p, S, r = _reference_graph(P, c, batch.pos[a:b], batch.vel[a:b], batch.h[a:b], A, E)
        pos.append(p), assign.append(S), regs.append(r)
    return torch.cat(pos), torch.cat(assign), torch.stack(regs).mean()


# ----------------------------------------------------------------------------------------------- tests
def _model(seed=0, **over):
    torch.manual_seed(seed)
    return build_model(ModelConfig(**{**CFG, **over})).double().eval()


def _max_errors(model, batch):
    with torch.no_grad():
        out = model(batch)
        ref = reference(model, batch)
    got = (out.pos, out.assign, out.reg)
    return {k: float((a - b).abs().max()) for k, a, b in zip(("pos", "assign", "reg"), got, ref, strict=True)}


def assert_matches_reference(model, batch):
    errors = _max_errors(model, batch)
    assert max(errors.values()) <= TOL, f"eghn differs from the dense reference: {errors}"


@pytest.mark.parametrize("seed, vector_norm", [(0, "fixed"), (1, "fixed"), (0, "per-graph")])
def test_eghn_equals_the_dense_reference(seed, vector_norm):
    model = _model(seed, vector_norm=vector_norm)
    batch = random_batch(SIZES, node_in=4, edge_in=2, seed=seed)
    errors = _max_errors(model, batch)
    assert max(errors.values()) <= TOL, errors
    # the comparison is not vacuous: outputs move away from the input and S is not uniform
    with torch.no_grad():
        out = model(batch)
    assert float((out.pos - batch.pos).abs().max()) > 1e-3 and float(out.assign.std()) > 1e-3


def _sender_mean(self, src):
    """Wrong: messages m_ij averaged onto the sender j instead of the receiver i."""
    out = torch.zeros((self.num_nodes,) + tuple(src.shape[1:]), dtype=src.dtype).index_add_(0, self.j, src)
    return out / self.counts_j.clamp_min(1).to(src.dtype).view((-1,) + (1,) * (src.dim() - 1))


def _pool_sum(S, X, batch, num_graphs, eps=1e-5):
    """Wrong: E-Pool without its normaliser 1 / Σ_i s_ik."""
    k = S.shape[1]
    flat = X.reshape(X.shape[0], -1)
    out = torch.stack([(S[batch == g].T @ flat[batch == g]) for g in range(num_graphs)])
    return out.reshape((num_graphs, k) + tuple(X.shape[1:]))


def _reg_l2_rows(A, *, squared):
    """Wrong: the regulariser's rows divided by their L2 norm instead of their sum."""
    eye = torch.eye(A.shape[-1], dtype=A.dtype)
    return ((A / A.norm(dim=-1, keepdim=True) - eye) ** 2).sum((-2, -1)).mean()


@pytest.mark.parametrize("target, attr, wrong", [
    (Edges, "mean_i", _sender_mean),
    (eghn_module, "pool_mean", _pool_sum),
    (emmp_module, "centre", lambda Z, batch, num_graphs, translating, **_: Z),
    (eghn_module, "pooling_regulariser", _reg_l2_rows),
], ids=["aggregate-onto-sender", "epool-without-normaliser", "emmp-without-centring", "regulariser-l2-rows"])
def test_reference_catches_wiring_errors(monkeypatch, target, attr, wrong):
    model = _model()
    batch = random_batch(SIZES, node_in=4, edge_in=2)
    assert_matches_reference(model, batch)
    monkeypatch.setattr(target, attr, wrong)
    with pytest.raises(AssertionError, match="differs from the dense reference"):
        assert_matches_reference(model, batch)
