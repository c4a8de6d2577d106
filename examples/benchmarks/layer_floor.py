"""How far one message-passing layer's training step sits above the cost of its large matrix products.

At the AdK backbone size (MDAnalysisTests PSF/DCD frame 0, 855 nodes, 34,966 edges at 8 Å, hidden 128) it times, in
alternation, forward + backward of one layer as the models run it, and the same number of (2048, 128)×(128, 128)
products alone (the blocks of ``eghn_md.nn.edge_chain``: 2 forward and 4 backward per edge block for the published
model's ``EGNNLayer`` (message and coordinate MLP), 1 + 2 for the equations' ``EMMP``). The difference is everything
that is not a large product: SiLUs, gathers and scatters, small products, the (E, 3, m) vector work, copies,
dispatch. Medians over ``--reps`` alternations.

Usage: ``python examples/benchmarks/layer_floor.py [--layers egnn emmp] [--reps 5] [--threads 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _median_ms(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _layer(kind: str, g, torch):
    """(a training step of one layer, its number of large products per edge block)."""
    from eghn_md.nn.edges import Edges
    from eghn_md.nn.egnn import EGNNLayer
    from eghn_md.nn.emmp import EMMP

    n, H = g.num_nodes, 128
    edges = Edges(g.edge_index, n)
    ea = g.edge_attr
    if kind == "egnn":
        layer = EGNNLayer(hidden=H, edge_in=ea.shape[1], velocity=True, residual=False, coord_bias=True, clamp=100.0)
        x, v = torch.randn(n, 3, requires_grad=True), torch.randn(n, 3)
        h = torch.randn(n, H, requires_grad=True)

        def step():
            x2, h2 = layer(x, v, h, edges, ea)
            (x2.sum() + h2.sum()).backward()

        return step, 6
    layer = EMMP(hidden=H, n_vectors=2, translating=(True, False), edge_in=ea.shape[1], vector_scale=(3.0, 1.0))
    Z, h = torch.randn(n, 3, 2, requires_grad=True), torch.randn(n, H, requires_grad=True)
    b = torch.zeros(n, dtype=torch.long)

    def step():
        Z2, h2 = layer(Z, h, edges, ea, b, 1)
        (Z2.sum() + h2.sum()).backward()

    return step, 3


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", nargs="+", choices=["egnn", "emmp"], default=["egnn", "emmp"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    import torch

    from eghn_md.nn import edge_chain
    from profile_step import _graph

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    g = _graph("bb")
    E, H, C = g.edge_index.shape[1], 128, edge_chain.CHUNK_ROWS
    rows = [min(C, E - a) for a in range(0, E, C)]  # the chain's blocks, the last one ragged
    x, W, bias, out = torch.randn(C, H), torch.randn(H, H), torch.randn(H), torch.empty(C, H)
    acc, grad = torch.zeros(H, H), torch.randn(C, H)
    for kind in a.layers:
        step, n_products = _layer(kind, g, torch)

        def products():
            for r in rows:
                for _ in range(n_products // 3):  # forward product, weight gradient, input gradient
                    torch.addmm(bias, x[:r], W.t(), out=out[:r])
                    acc.addmm_(grad[:r].t(), x[:r])
                    torch.mm(grad[:r], W, out=out[:r])

        step()  # warm-up
        products()
        layer_ms, prod_ms = [], []
        for _ in range(a.reps):
            layer_ms.append(_median_ms(step, 3))
            prod_ms.append(_median_ms(products, 3))
        lm, pm = statistics.median(layer_ms), statistics.median(prod_ms)
        gflop = 2 * E * H * H * n_products / 1e9
        print(f"{kind}: layer forward + backward {lm:.1f} ms; its {n_products} × {len(rows)} large products alone "
              f"{pm:.1f} ms ({gflop / pm * 1e3:.0f} GFLOP/s); everything else {lm - pm:.1f} ms "
              f"({(lm - pm) / lm:.0%}) ({E} edges, {a.threads} threads, torch {torch.__version__})")


if __name__ == "__main__":
    main()
