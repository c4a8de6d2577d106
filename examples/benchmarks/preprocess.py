"""Throughput of `eghn-md preprocess` against a bare MDAnalysis loop over the same frames and selection.

Both sides are timed end to end on the MDAnalysisTests trajectories (largest: AdK in water, 47 681 atoms, as
GRO+XTC and TPR+TRR): the bare loop opens the Universe and copies the selected positions of every frame into one
array; `preprocess` also checksums the inputs, writes the HDF5 dataset (fsync + rename) and reads its summary back.
Each figure is the best of ``--repeat`` interleaved runs after one warm-up (XTC/TRR offsets cached). Prints a
Markdown table; ``--record`` writes it to section ``## Preprocess`` of examples/benchmarks/RESULTS.md.

    python examples/benchmarks/preprocess.py [--repeat 5] [--record]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Preprocess"


def cases():
    from MDAnalysisTests import datafiles as d

    return [
        ("AdK in water, GRO+XTC", d.GRO, d.XTC, "protein and name CA"),
        ("AdK in water, GRO+XTC", d.GRO, d.XTC, "backbone"),
        ("AdK in water, TPR+TRR", d.TPR, d.TRR, "protein and name CA"),
        ("YiiP + lipids, GRO+XTC", d.GRO_MEMPROT, d.XTC_MEMPROT, "protein and name CA"),
        ("AdK, PSF+DCD", d.PSF, d.DCD, "protein and name CA"),
        ("AdK, PSF+DCD", d.PSF, d.DCD, "backbone"),
        # the same 98 frames five times (5 groups / a ChainReader): per-frame costs once fixed costs amortise
        ("AdK, PSF + 5 x DCD", d.PSF, [d.DCD] * 5, "backbone"),
    ]


def bare_loop(top: str, traj: str | list[str], selection: str) -> tuple[int, np.ndarray]:
    import MDAnalysis as mda

    u = mda.Universe(top, traj)  # a list of files is read by MDAnalysis' ChainReader
    ag = u.select_atoms(selection)
    out = np.empty((len(u.trajectory), ag.n_atoms, 3), dtype=np.float32)
    for i, _ts in enumerate(u.trajectory):
        out[i] = ag.positions
    return len(out), out


def run_preprocess(top: str, traj: str | list[str], selection: str, out: Path) -> int:
    from eghn_md.data.preprocess import preprocess

    trajs = traj if isinstance(traj, list) else [traj]
    return preprocess(top, trajs, out, select=selection, overwrite=True)["n_frames_total"]


def best_of(fns, repeat: int) -> list[float]:
    """Best wall time of each function; runs are interleaved so that both sides see the same machine load."""
    for fn in fns:
        fn()  # warm-up: page cache, XTC/TRR offset files, imports
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--record", action="store_true", help=f"write the table to {RESULTS.name}")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.h5"
        for label, top, traj, sel in cases():
            n_frames, ref = bare_loop(top, traj, sel)
            t_bare, t_pre = best_of(
                [lambda: bare_loop(top, traj, sel), lambda: run_preprocess(top, traj, sel, out)], args.repeat
            )
            import h5py

            with h5py.File(out) as f:  # same numbers as the bare loop
                stored = np.concatenate([g["positions"][()] for g in f["trajectories"].values()])
                assert np.array_equal(stored, ref)
            name = Path(traj).name if isinstance(traj, str) else f"{len(traj)} x {Path(traj[0]).name}"
            rows.append((label, name, sel, ref.shape[1], n_frames, t_bare, t_pre))

    lines = [
        "| system | trajectory | selection | nodes | frames | bare MDAnalysis (frames/s) | preprocess (frames/s) "
        "| preprocess / bare time |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, traj, sel, n_nodes, n_frames, t_bare, t_pre in rows:
        lines.append(
            f"| {label} | {traj} | `{sel}` | {n_nodes} | {n_frames} | {n_frames / t_bare:,.0f} | "
            f"{n_frames / t_pre:,.0f} | {t_pre / t_bare:.2f}x |"
        )
    table = "\n".join(lines)
    env = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(table)
    print(f"\nbest of {args.repeat} after a warm-up; {env}")
    if args.record:
        record(table, args.repeat, env)


def record(table: str, repeat: int, env: str) -> None:
    body = (
        f"{SECTION}\n\n`python examples/benchmarks/preprocess.py --record` ({env}; best of {repeat} interleaved "
        "runs after a warm-up, end to end: opening the files, reading every frame, and for `preprocess` also SHA-256 "
        "of the inputs, the HDF5 write with fsync + rename and the summary read-back). Target: preprocess within "
        "1.5x of the bare read.\n\n" + table + "\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(body + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + body
    RESULTS.write_text(text)
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
