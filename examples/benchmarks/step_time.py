"""Median time of one training step of a model alone, for before/after comparisons of two source trees.

A step = forward + MSE + pooling regulariser + backward + AdamW on AdK frame 0 (MDAnalysisTests PSF/DCD; Cα or
backbone graph as in ``profile_step.py``), hidden 128, 4 layers per level, 4 pooling, 2 decoder layers, K = 20, one
warm-up step first. Run it once per tree with ``PYTHONPATH`` pointing at that tree, alternating trees, and compare
the medians of the same machine state.

Usage: ``PYTHONPATH=TREE python examples/benchmarks/step_time.py --model eghn --size bb --steps 5 [--threads 2]``
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["eghn", "eghn-published", "egnn"], default="eghn")
    p.add_argument("--size", choices=["ca", "bb"], default="bb")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    import torch

    from eghn_md.models import ModelConfig, build_model
    from eghn_md.train.objective import Objective
    from eghn_md.train.options import TrainConfig
    from profile_step import _graph

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    g = _graph(a.size)
    cfg = ModelConfig(name=a.model, node_in=g.h.shape[1], hidden=128, n_layers=4, n_pool_layers=4,
                      n_decoder_layers=2, n_clusters=20, length_scale=3.8, vel_scale=1.0, disp_scale=1.0)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    objective = Objective(config=TrainConfig(reg_weight=1.0))  # the one-step training loss: MSE + λ·reg
    totals = objective.totals([g])

    def step():
        opt.zero_grad(set_to_none=True)
        objective(model, g, totals)[0].backward()
        opt.step()

    step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{a.model} {a.size}: step median {statistics.median(times) * 1e3:.0f} ms, min {min(times) * 1e3:.0f} ms, "
          f"peak RSS {rss:.2f} GiB ({a.steps} steps, {a.threads} threads, torch {torch.__version__})")


if __name__ == "__main__":
    main()
