"""Speed of a dense re-statement of the authors' EGHN forward pass vs eghn-md's ``eghn`` / ``eghn-published``.

The reference follows ``paper/IMPLEMENTATION-NOTES.md`` and runs the way the original implementation has to:

* every graph padded to the same node count N, positions (B, N, 3), a node mask;
* message passing over a per-batch edge list (node indices offset by b·N), the first edge-MLP layer applied to the
  concatenation [‖x_i − x_j‖², h_i, h_j, e_ij] of every edge (no per-node precomputation), sums by ``index_add``;
* pooling with dense (B, N, K) assignment products and dense (B, N, N) adjacency matrices (Sᵀ A S);
* the high level as a dense complete K×K graph with self loops.

Structure (hidden 128, 4 low-level EGNN layers, 4 pooling EMMP layers, 4 high-level EGNN layers, 2 decoder layers,
K = 20): embedding → EGNN over the 8 Å edges (x += φ_v(h)v + clamp(mean (x_i − x_j) φ_x(m_ij), ±100); h ← φ_h(h, Σ m))
→ nf = x' − x → EMMP score net over the bonds with Z = [x − x̄, nf, v] (invariants: L2-normalised 3×3 cross block
Z_jᵀZ_i; message Z_j C_ij; residual mean for vectors, residual sum for scalars) → Linear(H, 8H)–Tanh–Linear(8H, K)
→ softmax S → S-weighted means of input x, low-level h, v → EGNN on K clusters with edge feature (Sᵀ A_global S) →
decoder on [SΔX, x − SX, v − SV, nf] with an equivariant scalar net (normalised Gram + [h, S H_high] → MLP →
coefficients), stacked twice → x = S(X + ΔX) + decoder vector. Loss: MSE + λ‖rownorm(Sᵀ A_local S) − I‖_F.

Data: AdK backbone (N, CA, C, O: 855 nodes) from MDAnalysisTests, 8 Å edges from each frame, bonds as local edges,
node features [|v|, 0], edge features [d, d²]; batch 1 and 8. Each (implementation, batch) runs in a fresh subprocess;
it reports forward+backward samples/s (median of the timed steps) and the peak resident-set growth during the steps
(VmHWM reset after set-up via /proc/self/clear_refs).

Usage: ``python examples/benchmarks/dense_reference.py [--batches 1 8] [--steps 3] [--threads 2] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

IMPLS = ["dense-reference", "eghn-published", "eghn"]
H, K, LAYERS, POOL_LAYERS, DEC_LAYERS, LAMBDA = 128, 20, 4, 4, 2, 2.0


# ------------------------------------------------------------------------------------------------ dense model
def _build_dense(node_in: int, edge_in: int):
    import torch
    from torch import nn

    act = nn.SiLU

    def mlp(i, o, last_act=False):
        layers = [nn.Linear(i, H), act(), nn.Linear(H, o)]
        return nn.Sequential(*layers, act()) if last_act else nn.Sequential(*layers)

    class EGNNLayer(nn.Module):
        def __init__(self, e_in):
            super().__init__()
            self.edge = mlp(2 * H + 1 + e_in, H, last_act=True)
            self.node = mlp(2 * H, H)
            self.coord = nn.Sequential(nn.Linear(H, H), act(), nn.Linear(H, 1, bias=False))
            self.vel = mlp(H, 1)

        def forward(self, x, v, h, row, col, e, n_total):
            d = x[row] - x[col]
            m = self.edge(torch.cat([(d**2).sum(-1, keepdim=True), h[row], h[col], e], -1))
            agg = torch.zeros(n_total, 3, dtype=x.dtype).index_add_(0, row, d * self.coord(m))
            cnt = torch.zeros(n_total, 1, dtype=x.dtype).index_add_(0, row, torch.ones_like(d[:, :1]))
            x = x + self.vel(h) * v + (agg / cnt.clamp_min(1)).clamp(-100, 100)
            msum = torch.zeros(n_total, H, dtype=x.dtype).index_add_(0, row, m)
            return x, self.node(torch.cat([h, msum], -1))

    class EMMPLayer(nn.Module):  # three vectors per node, cross-block invariants
        def __init__(self):
            super().__init__()
            self.edge = mlp(9 + 2 * H + edge_in, H + 9)
            self.node = mlp(2 * H, H)

        def forward(self, z, h, row, col, e, n_total):
            inv = torch.nn.functional.normalize((z[col].transpose(1, 2) @ z[row]).flatten(1), dim=-1)
            out = self.edge(torch.cat([inv, h[row], h[col], e], -1))
            m, c = out[:, :H], out[:, H:].view(-1, 3, 3)
            vec = torch.zeros(n_total, 3, 3, dtype=z.dtype).index_add_(0, row, z[col] @ c)
            cnt = torch.zeros(n_total, 1, 1, dtype=z.dtype).index_add_(0, row, torch.ones(row.shape[0], 1, 1, dtype=z.dtype))
            msum = torch.zeros(n_total, H, dtype=z.dtype).index_add_(0, row, m)
            return z + vec / cnt.clamp_min(1), h + self.node(torch.cat([h, msum], -1))

    class Decoder(nn.Module):
        def __init__(self, n_vec):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(n_vec * n_vec + 2 * H, H), act(), nn.Linear(H, H), act(),
                                     nn.Linear(H, n_vec))

        def forward(self, vecs, s):
            gram = torch.nn.functional.normalize((vecs.transpose(-1, -2) @ vecs).flatten(-2), dim=-1)
            return (vecs @ self.net(torch.cat([gram, s], -1)).unsqueeze(-1)).squeeze(-1)

    class DenseEGHN(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(node_in, H)
            self.low = nn.ModuleList(EGNNLayer(edge_in) for _ in range(LAYERS))
            self.pool = nn.ModuleList(EMMPLayer() for _ in range(POOL_LAYERS))
            self.head = nn.Sequential(nn.Linear(H, 8 * H), nn.Tanh(), nn.Linear(8 * H, K))
            self.high = nn.ModuleList(EGNNLayer(1) for _ in range(LAYERS))
            self.dec = nn.ModuleList(Decoder(4 + i) for i in range(DEC_LAYERS))

        def forward(self, x, v, h, mask, g_row, g_col, g_attr, l_row, l_col, l_attr, a_glob, a_loc):
            b, n, _ = x.shape
            nt = b * n
            xf, vf = x.reshape(nt, 3), v.reshape(nt, 3)
            h0 = self.embed(h.reshape(nt, -1))
            hl, xl = h0, xf
            for layer in self.low:
                xl, hl = layer(xl, vf, hl, g_row, g_col, g_attr, nt)
            nf = xl - xf
            xbar = (x * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
            z = torch.stack([(x - xbar).reshape(nt, 3), nf, vf], -1)
            hp = h0
            for layer in self.pool:
                z, hp = layer(z, hp, l_row, l_col, l_attr, nt)
            s = torch.softmax(self.head(hp), -1).view(b, n, K) * mask  # (B, N, K)
            norm = s.sum(1).clamp_min(1e-5).unsqueeze(-1)  # (B, K, 1)
            st = s.transpose(1, 2)
            xc, vc = st @ x / norm, st @ v / norm
            hc = st @ hl.view(b, n, H) / norm
            a_high = st @ a_glob @ s  # (B, K, K)
            kk = torch.arange(K)
            p, q = torch.meshgrid(kk, kk, indexing="ij")
            off = (torch.arange(b) * K).view(b, 1)
            hr, hcol = (p.flatten() + off).flatten(), (q.flatten() + off).flatten()
            he = a_high.reshape(-1, 1)
            xh, hh = xc.reshape(-1, 3), hc.reshape(-1, H)
            for layer in self.high:
                xh, hh = layer(xh, vc.reshape(-1, 3), hh, hr, hcol, he, b * K)
            dxh = xh.view(b, K, 3) - xc
            vecs = torch.stack([(s @ dxh).reshape(nt, 3), xf - (s @ xc).reshape(nt, 3),
                                vf - (s @ vc).reshape(nt, 3), nf], -1)
            scal = torch.cat([hl, (s @ hh.view(b, K, H)).reshape(nt, H)], -1)
            for layer in self.dec:
                vecs = torch.cat([vecs, layer(vecs, scal).unsqueeze(-1)], -1)
            out = (s @ (xc + dxh)).reshape(nt, 3) + vecs[..., -1]
            a_l = st @ a_loc @ s
            a_l = a_l / a_l.sum(-1, keepdim=True).clamp_min(1e-12)
            reg = torch.linalg.matrix_norm(a_l - torch.eye(K)).mean()
            return out.view(b, n, 3), reg

    return DenseEGHN()


# ------------------------------------------------------------------------------------------------------ data
def _adk_graphs(batch: int):
    """``batch`` consecutive AdK backbone frames as eghn-md GraphBatches (8 Å edges + bonds as local edges)."""
    import MDAnalysis as mda
    import torch
    from MDAnalysisTests.datafiles import DCD, PSF

    from eghn_md.data.batch import GraphBatch
    from eghn_md.graph.edges import radius_graph

    u = mda.Universe(PSF, DCD)
    ag = u.select_atoms("backbone")
    pos_of = {a.ix: k for k, a in enumerate(ag)}
    pairs = [(pos_of[b.atoms[0].ix], pos_of[b.atoms[1].ix]) for b in ag.bonds
             if b.atoms[0].ix in pos_of and b.atoms[1].ix in pos_of]
    bonds = torch.tensor(pairs, dtype=torch.long).t()
    bonds = torch.cat([bonds, bonds.flip(0)], 1)
    graphs = []
    for t in range(batch):
        x = torch.tensor(u.trajectory[t].positions[ag.indices], dtype=torch.float32)
        x1 = torch.tensor(u.trajectory[t + 1].positions[ag.indices], dtype=torch.float32)
        v = x1 - x
        ei = radius_graph(x, 8.0)
        d = (x[ei[0]] - x[ei[1]]).norm(dim=1, keepdim=True)
        h = torch.cat([v.norm(dim=1, keepdim=True), torch.zeros(len(ag), 1)], 1)
        graphs.append(GraphBatch.single(pos=x, vel=v, h=h, edge_index=ei, edge_attr=torch.cat([d, d**2], 1),
                                        local_edge_index=bonds, target=x1))
    return graphs


def _dense_inputs(graphs):
    """Padded tensors + offset edge lists + dense adjacencies, as the authors' collate produces them."""
    import torch

    b, n = len(graphs), max(g.num_nodes for g in graphs)
    x, v, h, tgt, mask = (torch.zeros(b, n, 3), torch.zeros(b, n, 3), torch.zeros(b, n, graphs[0].h.shape[1]),
                          torch.zeros(b, n, 3), torch.zeros(b, n, 1))
    a_glob, a_loc = torch.zeros(b, n, n), torch.zeros(b, n, n)
    rows, cols, attrs, lrows, lcols, lattrs = [], [], [], [], [], []
    for i, g in enumerate(graphs):
        m = g.num_nodes
        x[i, :m], v[i, :m], h[i, :m], tgt[i, :m], mask[i, :m] = g.pos, g.vel, g.h, g.target, 1.0
        a_glob[i, g.edge_index[0], g.edge_index[1]] = 1.0
        a_loc[i, g.local_edge_index[0], g.local_edge_index[1]] = 1.0
        rows.append(g.edge_index[0] + i * n), cols.append(g.edge_index[1] + i * n), attrs.append(g.edge_attr)
        lr, lc = g.local_edge_index
        d = (g.pos[lr] - g.pos[lc]).norm(dim=1, keepdim=True)
        lrows.append(lr + i * n), lcols.append(lc + i * n), lattrs.append(torch.cat([d, d**2], 1))
    cat = torch.cat
    return dict(x=x, v=v, h=h, mask=mask, g_row=cat(rows), g_col=cat(cols), g_attr=cat(attrs), l_row=cat(lrows),
                l_col=cat(lcols), l_attr=cat(lattrs), a_glob=a_glob, a_loc=a_loc), tgt


# ---------------------------------------------------------------------------------------------------- timing
def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _child(impl: str, batch: int, steps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    graphs = _adk_graphs(batch)
    if impl == "dense-reference":
        model = _build_dense(2, 2)
        inputs, tgt = _dense_inputs(graphs)

        def step():
            out, reg = model(**inputs)
            loss = (((out - tgt) ** 2) * inputs["mask"]).sum() / (inputs["mask"].sum() * 3) + LAMBDA * reg
            loss.backward()
    else:
        from eghn_md.data.batch import collate
        from eghn_md.models import ModelConfig, build_model
        from eghn_md.train.objective import Objective
        from eghn_md.train.options import TrainConfig

        gb = collate(graphs)
        cfg = ModelConfig(name=impl, node_in=2, edge_in=2, hidden=H, n_layers=LAYERS, n_pool_layers=POOL_LAYERS,
                          n_decoder_layers=DEC_LAYERS, n_clusters=K, length_scale=3.0,
                          vel_scale=1.0, disp_scale=1.0)
        model = build_model(cfg)

        objective = Objective(config=TrainConfig(reg_weight=LAMBDA))  # the one-step training loss: MSE + λ·reg
        totals = objective.totals([gb])

        def step():
            objective(model, gb, totals)[0].backward()

    n_params = sum(p.numel() for p in model.parameters())
    n_edges = sum(g.edge_index.shape[1] for g in graphs)
    step()  # warm-up
    model.zero_grad(set_to_none=True)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base = _rss_kib("VmRSS")
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    times.sort()
    med = times[len(times) // 2]
    return {"impl": impl, "batch": batch, "nodes_per_graph": graphs[0].num_nodes, "edges": n_edges,
            "params": n_params, "step_s": med, "train_samples_per_s": batch / med,
            "peak_mib": (_rss_kib("VmHWM") - base) / 1024.0, "threads": threads}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--impls", nargs="+", default=IMPLS, choices=IMPLS)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "BATCH"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child[0], int(a.child[1]), a.steps, a.threads)))
        return
    rows = []
    for batch in a.batches:
        for impl in a.impls:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, str(batch), "--steps", str(a.steps),
                   "--threads", str(a.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(
                a.threads)})
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                raise SystemExit(f"{impl} batch {batch} failed")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"{impl:>16} batch {batch}: {rows[-1]['train_samples_per_s']:.2f} samples/s, "
                  f"peak +{rows[-1]['peak_mib']:.0f} MiB", file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print("| implementation | batch | edges | params | train samples/s | step s | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['batch']} | {r['edges']} | {r['params']} | {r['train_samples_per_s']:.2f} | "
              f"{r['step_s']:.2f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
