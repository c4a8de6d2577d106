"""Cost of one ensemble rollout step against the number of replicas R (issue 28: R = 32 must cost ≤ 8× R = 1).

One step of ``eghn-md rollout --replicas R`` is :func:`eghn_md.rollout.ensemble.ensemble_rollout` advancing R frames
of AdK (214 Cα nodes) one horizon: edges rebuilt from every frame, ``--sample-steps`` denoiser passes with the
model's guidance, R replicas batched into passes of at most ``--chunk-nodes`` nodes, ``--workers`` passes side by
side. Every (chunk size, workers, R) setting is timed round-robin with the others (``--rounds`` rounds, the median
kept), so a drift of the machine's speed hits them alike; the table gives seconds per step, steps/s,
replica-steps/s and the cost relative to the first R, and the first R's share of the largest replica-steps/s
measured (:func:`first_share`): once the largest R saturates the machine, its cost relative to the first R is
R × that share, so the share says how far a target such as R = 32 ≤ 8× R = 1 is a property of the machine rather
than of the code (``examples/benchmarks/results/generative_equilibrium.md`` §16).

Usage::

    OMP_NUM_THREADS=2 python examples/benchmarks/sampler_speed.py --model examples/models/adk_eq_generative.pt \\
        --replicas 1,8,32 --chunk-nodes 1024,2048,4096 --workers 1,auto --sample-steps 4 [--device cuda] \\
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def _start(model: str, device: str):
    from MDAnalysisTests.datafiles import PDB_small  # adk_open.pdb

    from eghn_md.rollout.start import open_start

    return open_start(model, PDB_small, [], frame=0, device=device)


def time_step(st, r: int, *, chunk: int, sample_steps, steps: int, workers=None) -> float:
    """Seconds per ensemble rollout step of ``r`` replicas of ``st`` (a :class:`~eghn_md.rollout.start.ModelStart`)
    all starting at its first frame: ``steps`` timed steps after one warm-up step."""
    from eghn_md.rollout.ensemble import ensemble_rollout

    x0 = torch.as_tensor(st.frames[0], dtype=st.dtype, device=st.device)
    kw = dict(starts=x0.expand(r, -1, -1).clone(), h=st.system.h.to(st.device, st.dtype),
              bonds=st.system.bonds.to(st.device), cutoff=st.cutoff, sample_steps=sample_steps,
              max_chunk_nodes=chunk, workers=workers)
    ensemble_rollout(st.model, steps=1, **kw)
    if st.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    ensemble_rollout(st.model, steps=steps, **kw)
    if st.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def first_share(rows: dict, reps: list) -> float:
    """The first R's replica-steps/s as a fraction of the largest measured: how much of the machine one small batch
    already uses. Once the largest R saturates the machine, its cost relative to the first R is (largest R) × this
    share, whatever the code: on a machine that R = 1 keeps half busy, R = 32 costs ~16× R = 1 at best."""
    return rows[reps[0]]["replica_steps_per_s"] / max(rows[r]["replica_steps_per_s"] for r in reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a generative model.pt")
    ap.add_argument("--replicas", default="1,8,32")
    ap.add_argument("--chunk-nodes", default="4096", help="comma-separated max_chunk_nodes values (0: one pass)")
    ap.add_argument("--sample-steps", type=int, default=None)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="auto", help="comma-separated ensemble_rollout workers values ('auto': one "
                    "per torch thread on a CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    st = _start(args.model, args.device)
    reps = sorted({int(r) for r in args.replicas.split(",")})
    out = {"threads": torch.get_num_threads(), "device": args.device, "sample_steps": args.sample_steps,
           "chunks": {}}
    settings = [(int(c), None if w == "auto" else int(w)) for c in dict.fromkeys(args.chunk_nodes.split(","))
                for w in dict.fromkeys(args.workers.split(","))]
    times = {(c, w, r): [] for c, w in settings for r in reps}
    for _ in range(args.rounds):
        for (chunk, workers, r), t in times.items():
            t.append(time_step(st, r, chunk=chunk, sample_steps=args.sample_steps, steps=args.steps,
                               workers=workers))
    for chunk, workers in settings:
        med = {r: statistics.median(times[(chunk, workers, r)]) for r in reps}
        base = med[reps[0]]
        key = f"{chunk}" if len(settings) == 1 else f"{chunk}/workers={'auto' if workers is None else workers}"
        rows = {r: {"s_per_step": med[r], "steps_per_s": 1 / med[r], "replica_steps_per_s": r / med[r],
                    "cost_vs_first": med[r] / base} for r in reps}
        print(f"chunk {chunk} nodes, workers {'auto' if workers is None else workers}:", flush=True)
        for r in reps:
            v = rows[r]
            print(f"  R = {r:3d}: {v['s_per_step']:.4f} s/step, {v['steps_per_s']:.2f} steps/s, "
                  f"{v['replica_steps_per_s']:.1f} replica-steps/s, {v['cost_vs_first']:.2f}x R = {reps[0]}",
                  flush=True)
        share = first_share(rows, reps)
        out["chunks"][key] = {"replicas": rows, "first_share_of_peak": share}
        print(f"  R = {reps[0]} runs at {100 * share:.0f} % of the largest replica-steps/s measured; R = {reps[-1]} "
              f"costs {reps[-1]} x that share = {reps[-1] * share:.1f}x R = {reps[0]} once the machine is saturated",
              flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
