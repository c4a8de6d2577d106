"""Training/inference speed and peak memory of EGHN vs EGNN (and eghn-published) at the paper's AdK size.

Cases (hidden 128, 4 layers per level, 2 pooling layers, 2 decoder layers, K = 20 unless --quick):

* ``adk-ca``: AdK Cα graph (214 nodes, 10 Å cutoff + sequence neighbours), batch 1;
* ``adk-bb``: AdK backbone N/CA/C/O (855 nodes, 8 Å cutoff + bonds), batch 1 and 8 (8 consecutive frames);
  ``adk-bb-b8c`` is the batch of 8 processed as 8 one-graph pieces with accumulated gradients (the same gradients
  as the whole batch: MSE weighted by node share, regulariser by graph share);
* ``chain-2k/10k/50k``: synthetic protein-like chains at constant density, batch 1.

AdK comes from MDAnalysisTests (PSF/DCD). For each case and model it prints forward ms, forward+backward ms (one
training step without the optimiser), training samples/s and peak memory. Memory on CPU: each case runs in a fresh
subprocess; the peak resident set (VmHWM) is reset after the model and data are built (``/proc/self/clear_refs``)
and the reported number is the peak over the first training step (forward + backward) minus the resident set at
that point. On CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation before the step. Time: wall-clock
per step and process CPU seconds per step (the latter is steadier on a shared machine; with T threads on an idle
machine wall ≈ CPU / T at best).

Usage: ``python examples/benchmarks/model_speed.py [--device cpu|cuda] [--compile] [--quick] [--cases ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CASES = ["adk-ca", "adk-bb-b1", "adk-bb-b8", "adk-bb-b8c", "chain-2k", "chain-10k", "chain-50k"]
MODELS = ["eghn", "egnn", "eghn-published"]


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _adk(select: str, cutoff: float, n_frames: int):
    import MDAnalysis as mda
    import torch
    from MDAnalysisTests.datafiles import DCD, PSF

    from eghn_md.data.batch import GraphBatch, collate
    from eghn_md.graph.edges import merge_edges, radius_graph, sequence_edges

    u = mda.Universe(PSF, DCD)
    ag = u.select_atoms(select)
    idx = {a.ix: k for k, a in enumerate(ag)}
    bonds = [(idx[b.atoms[0].ix], idx[b.atoms[1].ix]) for b in ag.bonds if b.atoms[0].ix in idx and b.atoms[1].ix in idx]
    n = len(ag)
    if bonds:
        b = torch.tensor(bonds, dtype=torch.long).t()
        local = merge_edges(b, b.flip(0), n)
    else:
        local = sequence_edges(torch.zeros(n, dtype=torch.long), k=1)
    names = sorted(set(ag.names))
    h = torch.nn.functional.one_hot(torch.tensor([names.index(x) for x in ag.names]), 20).float()
    graphs = []
    for t in range(n_frames):
        x = torch.tensor(u.trajectory[t].positions[ag.indices], dtype=torch.float64)
        x1 = torch.tensor(u.trajectory[t + 1].positions[ag.indices], dtype=torch.float64)
        ei = merge_edges(radius_graph(x, cutoff), local, n)
        graphs.append(
            GraphBatch.single(pos=x.float(), vel=(x1 - x).float(), h=h, edge_index=ei, local_edge_index=local,
                              target=x1.float())
        )
    return graphs


def _batch(case: str):
    from eghn_md.testing.synthetic import chain_graph

    from eghn_md.data.batch import collate

    if case == "adk-ca":
        return [collate(_adk("name CA", 10.0, 1))]
    if case == "adk-bb-b8c":
        return _adk("backbone", 8.0, 8)  # 8 pieces
    if case.startswith("adk-bb"):
        return [collate(_adk("backbone", 8.0, int(case.rsplit("b", 1)[1])))]
    n = {"chain-2k": 2000, "chain-10k": 10000, "chain-50k": 50000}[case]
    return [chain_graph(n, cutoff=8.0, node_in=20, density=0.0155)]


def _child(case: str, model_name: str, device: str, compile_: bool, quick: bool, reps: int) -> dict:
    import torch

    from eghn_md.models import ModelConfig, build_model
    from eghn_md.train.objective import Objective
    from eghn_md.train.options import TrainConfig

    torch.manual_seed(0)
    pieces = [b.to(device) for b in _batch(case)]
    n_nodes = sum(b.num_nodes for b in pieces)
    n_graphs = sum(b.num_graphs for b in pieces)
    hidden, layers, k = (32, 2, 8) if quick else (128, 4, 20)
    cfg = ModelConfig(name=model_name, node_in=pieces[0].h.shape[1], hidden=hidden, n_layers=layers,
                      n_pool_layers=2, n_decoder_layers=2, n_clusters=k, length_scale=3.8, vel_scale=1.0,
                      disp_scale=1.0)
    model = build_model(cfg).to(device)
    fwd = torch.compile(model) if compile_ else model
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    objective = Objective(config=TrainConfig(reg_weight=1.0))  # the one-step training loss: MSE + λ·reg
    totals = objective.totals(pieces)  # denominators of the whole batch

    def step():
        for b in pieces:  # one piece unless chunked; same gradients as the whole batch
            loss, _ = objective(fwd, b, totals)
            loss.backward()

    if cuda:
        step()  # compile / cuDNN warm-up outside the measurement
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_kib("VmRSS") * 1024
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    step()
    sync()
    peak = (torch.cuda.max_memory_allocated() if cuda else _rss_kib("VmHWM") * 1024) - base
    model.zero_grad(set_to_none=True)
    step()
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        step()
    sync()
    t_train = (time.perf_counter() - t0) / reps
    c_train = (time.process_time() - c0) / reps
    with torch.no_grad():
        for b in pieces:
            fwd(b)
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(reps):
            for b in pieces:
                fwd(b)
        sync()
    t_fwd = (time.perf_counter() - t0) / reps
    c_fwd = (time.process_time() - c0) / reps
    return {
        "case": case, "model": model_name, "nodes": n_nodes, "graphs": n_graphs,
        "edges": sum(int(b.edge_index.shape[1]) for b in pieces),
        "fwd_ms": 1e3 * t_fwd, "train_ms": 1e3 * t_train, "fwd_cpu_s": c_fwd, "train_cpu_s": c_train,
        "train_samples_s": n_graphs / t_train, "fwd_samples_s": n_graphs / t_fwd,
        "peak_mib": peak / 2**20, "threads": torch.get_num_threads(), "loadavg": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny model, small cases only (smoke test)")
    p.add_argument("--cases", nargs="*", default=None)
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each case")
    p.add_argument("--json", default=None, help="also write all rows to this JSON file")
    p.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a._child:
        res = _child(a._child[0], a._child[1], a.device, a.compile, a.quick, a.reps or 3)
        print("RESULT " + json.dumps(res))
        return 0
    cases = a.cases or (["adk-ca", "adk-bb-b1", "chain-2k"] if a.quick else CASES)
    print(f"device={a.device} compile={a.compile} quick={a.quick}", file=sys.stderr)
    print("| case | model | nodes | edges | fwd ms | fwd+bwd ms | train samples/s | train CPU s/step | peak MiB | load |")
    print("|" + "---|" * 10)
    rows = []
    for case in cases:
        for m in a.models:
            reps = a.reps or (1 if case in ("chain-50k", "adk-bb-b8", "adk-bb-b8c") else 2 if case == "chain-10k" else 3)
            cmd = [sys.executable, os.path.abspath(__file__), "--device", a.device, "--_child", case, m,
                   "--reps", str(reps)] + (["--threads", str(a.threads)] if a.threads else []) + (["--compile"] if a.compile else []) + (["--quick"] if a.quick else [])
            r = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
            if r.returncode != 0 or not line:
                print(f"| {case} | {m} | failed: {r.stderr.strip().splitlines()[-1:]} |")
                continue
            d = json.loads(line[0][7:])
            rows.append(d)
            print(f"| {case} | {m} | {d['nodes']} | {d['edges']} | {d['fwd_ms']:.0f} | {d['train_ms']:.0f} | "
                  f"{d['train_samples_s']:.2f} | {d['train_cpu_s']:.2f} | {d['peak_mib']:.0f} | {d['loadavg']:.1f} |",
                  flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    raise SystemExit(main())
