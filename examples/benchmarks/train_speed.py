"""Training throughput of the real ``eghn-md train`` loop beside the model-only figure, on AdK (MDAnalysisTests).

Data: PSF + DCD (98 frames), nodes ``--select ca`` (Cα, 214 nodes, 10 Å + sequence bonds) or ``bb`` (backbone
N/CA/C/O, 855 nodes, 8 Å + covalent bonds), one-hot atom-name node features, windows of horizon 1 frame built by
:class:`~eghn_md.data.samples.WindowSet` (radius graph from every input frame, as ``train`` does). Model: hidden
128, 4 layers per level, 4 pooling layers, 2 decoder layers, K = 20 (the sizes of ``dense_reference.py``).

For every (model, batch size) it runs in a fresh subprocess:

* **model only**: the samples of ``--steps`` batches are built, noised, split and collated beforehand; then the
  loop's own optimiser step (``eghn_md.train.loop._take_step``: forward + loss + backward + clipping + AdamW, the
  batch in pieces of ``max_chunk_nodes``) is timed on them, after one warm-up step;
* **train loop**: :func:`eghn_md.train.loop.fit` on ``--steps`` batches of windows for 2 epochs with ``--workers``
  sample-building processes; the figure is epoch 2's training samples/s (epoch 1 holds the warm-up and the start of
  the workers), data included, validation excluded;
* ``--compile``: both measurements run the model through ``torch.compile`` (``train: compile: true``); the
  model-only run's warm-up step (``first step s``: the compilation of forward and backward plus one step) and the
  loop's epoch 1 (``epoch 1 s``) are reported beside the steady figures, which exclude them;
* **peak RSS**: VmHWM of the benchmark process and the largest worker's (``ru_maxrss`` of children), in GiB.

``--reference`` also runs ``dense_reference.py`` (the re-statement of the authors' code, forward + backward) at the
same batch sizes in the same invocation, so the ratios come from one machine state. ``--rounds R`` repeats the whole
sequence R times, interleaved (reference, then every model, per batch size, then again): on a shared machine whose
speed drifts from minute to minute, the table then shows each figure's median over the rounds and the median
(min–max) of the ratio to the reference measured in the same round.

Usage: ``nice -n 10 python examples/benchmarks/train_speed.py [--device cpu|cuda] [--models eghn eghn-published]
[--batch-size 1 8] [--workers 0] [--select ca|bb] [--steps 2] [--threads 2] [--compile] [--reference]
[--rounds 1] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SELECTIONS = {"ca": ("name CA", 10.0), "bb": ("backbone", 8.0)}
MODELS = ("eghn", "eghn-published", "egnn")


def _rss_gib(field: str = "VmHWM") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def _windows(select: str, n_windows: int):
    """A WindowSet of the first ``n_windows`` windows (horizon 1) of AdK, and the node feature width."""
    import warnings

    import MDAnalysis as mda
    import numpy as np
    import torch
    from MDAnalysisTests.datafiles import DCD, PSF

    from eghn_md.data.samples import WindowSet
    from eghn_md.graph.edges import merge_edges, sequence_edges

    sel, cutoff = SELECTIONS[select]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(PSF, DCD)
        ag = u.select_atoms(sel)
        pos = np.stack([ag.positions.copy() for _ in u.trajectory]).astype(np.float32)
    idx = {a.ix: k for k, a in enumerate(ag)}
    pairs = [(idx[b.atoms[0].ix], idx[b.atoms[1].ix]) for b in ag.bonds if b.atoms[0].ix in idx and b.atoms[1].ix in idx]
    n = len(ag)
    if pairs:
        b = torch.tensor(pairs, dtype=torch.long).t()
        bonds = merge_edges(b, b.flip(0), n)
    else:
        bonds = sequence_edges(torch.zeros(n, dtype=torch.long), k=1)
    names = sorted(set(ag.names))
    h = torch.nn.functional.one_hot(torch.tensor([names.index(x) for x in ag.names]), len(names)).float()
    stop = min(len(pos), n_windows + 2)
    return WindowSet(positions=pos, block=(0, stop), h=h, bonds=bonds, horizon=1, cutoff=cutoff), h.shape[1]


def _setup(a, model_name: str, batch: int):
    import torch

    from eghn_md.models import ModelConfig, build_model
    from eghn_md.train.loop import TrainConfig

    torch.set_num_threads(a.threads)
    data, node_in = _windows(a.select, batch * a.steps + 1)
    cfg = ModelConfig(name=model_name, node_in=node_in, edge_in=1, hidden=128, n_layers=4, n_pool_layers=4,
                      n_decoder_layers=2, n_clusters=20, length_scale=3.0, vel_scale=1.0,
                      disp_scale=1.0)
    train = TrainConfig(epochs=2, batch_size=batch, lr=1e-4, schedule="none", patience=0, seed=0, device=a.device,
                        workers=a.workers, eval_every=2, reg_weight=2.0, compile=a.compile)
    torch.manual_seed(0)
    return data, (lambda: build_model(cfg)), train


def _model_only(a, model_name: str, batch: int) -> tuple:
    """Samples/s of the loop's optimiser step on pre-built batches, and the warm-up step's seconds."""
    from eghn_md.train import loop
    from eghn_md.train.feed import prepare

    data, build, train = _setup(a, model_name, batch)
    run = loop._start(build(), train, loop.objective_from_config(train), None)
    prepared = [prepare(data, list(range(k * batch, (k + 1) * batch)), config=train, objective=run.objective,
                        epoch=1, n_global=batch) for k in range(a.steps)]
    sync = _sync(run.device)
    t_warm = time.perf_counter()
    loop._take_step(run, prepared[0], 1)  # warm-up (and, with --compile, the compilation)
    sync()
    first = time.perf_counter() - t_warm
    t0 = time.perf_counter()
    for p in prepared:
        loop._take_step(run, p, 1)
    sync()
    return batch * a.steps / (time.perf_counter() - t0), first


def _train_loop(a, model_name: str, batch: int) -> tuple:
    from eghn_md.train.loop import fit

    data, build, train = _setup(a, model_name, batch)
    n = batch * a.steps
    res = fit(build(), _Head(data, n), _Head(data, 1, offset=n), config=train)
    return res.history[-1]["samples_per_s"], res.history[0]["epoch_time_s"]


class _Head:
    """The first ``n`` windows of a WindowSet (after ``offset``), built on access like the set itself."""

    def __init__(self, data, n: int, offset: int = 0) -> None:
        self.data, self.n, self.offset = data, n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.data[self.offset + i]


def _sync(device):
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _child(a) -> dict:
    model_name, batch = a.child[0], int(a.child[1])
    what = a.child[2]
    sps, first = _model_only(a, model_name, batch) if what == "model" else _train_loop(a, model_name, batch)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return {"model": model_name, "batch": batch, "what": what, "samples_per_s": sps, "first_s": first,
            "compile": a.compile, "peak_rss_gib": _rss_gib(),
            "worker_peak_rss_gib": children if a.workers else 0.0, "workers": a.workers, "select": a.select,
            "device": a.device, "threads": a.threads}


def _run(cmd: list, threads: int) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--models", nargs="+", choices=MODELS, default=["eghn", "eghn-published"])
    p.add_argument("--batch-size", type=int, nargs="+", default=[8])
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--select", choices=sorted(SELECTIONS), default="ca")
    p.add_argument("--steps", type=int, default=2, help="batches per measurement")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="run the model through torch.compile (train: compile)")
    p.add_argument("--reference", action="store_true", help="also time dense_reference.py (backbone only)")
    p.add_argument("--rounds", type=int, default=1, help="repeat the whole interleaved sequence this many times")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a)))
        return
    base = [sys.executable, os.path.abspath(__file__), "--device", a.device, "--workers", str(a.workers), "--select",
            a.select, "--steps", str(a.steps), "--threads", str(a.threads)] + (["--compile"] if a.compile else [])
    rows = []
    for rnd in range(a.rounds):
        for batch in a.batch_size:
            rows += _one_round(a, base, batch, rnd)
    _report(a, rows)


def _one_round(a, base: list, batch: int, rnd: int) -> list:
    """The reference (with ``--reference``) and every model's model-only and loop figures at one batch size."""
    rows = []
    if a.reference:
        r = _run([sys.executable, os.path.join(HERE, "dense_reference.py"), "--child", "dense-reference",
                  str(batch), "--steps", str(a.steps), "--threads", str(a.threads)], a.threads)
        rows.append({"model": "dense-reference", "batch": batch, "what": "model", "round": rnd,
                     "samples_per_s": r["train_samples_per_s"], "peak_rss_gib": float("nan")})
        print(f"round {rnd + 1} dense-reference b{batch}: {rows[-1]['samples_per_s']:.2f}", file=sys.stderr)
    for model in a.models:
        for what in ("model", "loop"):
            rows.append({**_run(base + ["--child", model, str(batch), what], a.threads), "round": rnd})
            print(f"round {rnd + 1} {model} b{batch} {what}: {rows[-1]['samples_per_s']:.2f}", file=sys.stderr)
    return rows


def _spread(xs: list, fmt: str = "{:.2f}") -> str:
    """Median, and (min–max) when there is more than one value."""
    med = fmt.format(statistics.median(xs))
    return med if len(xs) == 1 else f"{med} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def _report(a, rows: list) -> None:
    if a.json:
        print(json.dumps(rows, indent=2))
        return

    def pick(model, batch, what, key="samples_per_s"):
        return [r[key] for r in rows if (r["model"], r["batch"], r["what"]) == (model, batch, what)]

    print(f"device={a.device} select={a.select} workers={a.workers} threads={a.threads} steps={a.steps} "
          f"compile={a.compile} rounds={a.rounds}" + (" (median (min–max) over rounds)" if a.rounds > 1 else ""))
    print("| model | batch | model only (samples/s) | train loop (samples/s) | loop / model | loop / dense ref "
          "| peak RSS loop (GiB) | first step s (model only) | epoch 1 s (loop) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for batch in a.batch_size:
        ref = pick("dense-reference", batch, "model")
        if ref:
            print(f"| dense-reference | {batch} | {_spread(ref)} | | | 1.00× | | | |")
        for model in a.models:
            m, lp = pick(model, batch, "model"), pick(model, batch, "loop")
            vs = _spread([x / r for x, r in zip(lp, ref)], "{:.2f}×") if ref else ""
            rss = f"{max(pick(model, batch, 'loop', 'peak_rss_gib')):.2f}"
            if a.workers:
                rss += f" (+ worker {max(pick(model, batch, 'loop', 'worker_peak_rss_gib')):.2f})"
            print(f"| {model} | {batch} | {_spread(m)} | {_spread(lp)} | {_spread([x / y for x, y in zip(lp, m)])} | "
                  f"{vs} | {rss} | {statistics.median(pick(model, batch, 'model', 'first_s')):.1f} | "
                  f"{statistics.median(pick(model, batch, 'loop', 'first_s')):.1f} |")


if __name__ == "__main__":
    main()
