"""The paper's whole M-complex table (single and multiple systems) at a stated CPU budget, resumable.

Every cell = one (M, N/M) column × system types J (1: single system, 5: the paper's "multiple systems") × model,
trained over the seeds by ``eghn-md bench mcomplex train`` (one subprocess per seed, ``--json``). Finished seeds
are kept in ``OUT/cells/`` and never re-run, so an interrupted campaign continues where it stopped. ``--jobs N``
runs N single-threaded workers side by side (on a small CPU several 1-thread processes beat one multi-threaded
one at these graph sizes). When everything that was asked for has run, the markdown table is written to
``OUT/mcomplex_table.md`` (ours beside the paper, per-cell budget, the command behind every cell).

Usage::

    python examples/paper/mcomplex_table.py --out runs/paper --jobs 2                 # everything (CPU hours)
    python examples/paper/mcomplex_table.py --out runs/paper --columns 3x3 --systems 1 --epochs 3x3=30
    python examples/paper/mcomplex_table.py --out runs/paper --table-only              # just re-render the table
    python examples/paper/mcomplex_table.py --out runs/paper --dry-run                 # print the commands
    python examples/paper/mcomplex_table.py --out runs/gpu --jobs 1 --extra-train "--device cuda" \
        --epochs 3x3=1000,5x5=1000,5x10=1000,10x10=1000                               # a GPU budget

Budget (``--epochs``, per column) defaults to what fitted one 2-core CPU session: 30 / 15 / 6 / 3 epochs for
(3,3) / (5,5) / (5,10) / (10,10) (batch 50, lr 1e-3, cosine, hidden 64; validation on 500 systems about six times
per run and at least every 5 epochs, best epoch kept; test on all 2000); the paper trains up to 10 000 epochs with early stopping.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

COLUMNS = ("3x3", "5x5", "5x10", "10x10")
MODELS = ("linear", "gnn", "rf", "egnn", "eghn")
DEFAULT_EPOCHS = {"3x3": 30, "5x5": 15, "5x10": 6, "10x10": 3}
# fixed for every cell (the (3,3) single-system budget of RESULTS.md)
TRAIN_ARGS = ("--batch-size", "50", "--lr", "1e-3")


@dataclass(frozen=True)
class Cell:
    column: str  # "MxA"
    systems: int  # J
    model: str
    seed: int
    epochs: int
    max_val: int

    @property
    def eval_every(self) -> int:
        return max(1, min(5, self.epochs // 6))  # about six validations, at least every 5 epochs

    @property
    def tag(self) -> str:
        return tag(self.column, self.systems)

    @property
    def result_name(self) -> str:
        """The cell's file in ``OUT/cells``."""
        return f"{self.tag}_{self.model}_s{self.seed}.json"

    def command(self, exe: str, data: Path, extra: Sequence[str] = ()) -> list[str]:
        cmd = [exe, "bench", "mcomplex", "train", str(data), "--model", self.model, "--seeds", str(self.seed),
               "--json", "--quiet"]
        if self.model != "linear":
            cmd += ["--epochs", str(self.epochs), *TRAIN_ARGS, "--eval-every", str(self.eval_every),
                    "--max-val", str(self.max_val), *extra]
        return cmd


def tag(column: str, systems: int) -> str:
    """``mcomplex_M_A_jJ``: the name of a column's data set and the prefix of its cells' files."""
    m, a = column.split("x")
    return f"mcomplex_{m}_{a}_j{systems}"


def data_path(out: Path, column: str, systems: int) -> Path:
    return out / f"{tag(column, systems)}.npz"


def generate_command(exe: str, out: Path, column: str, systems: int, n_val: int,
                     extra: Sequence[str] = ()) -> list[str]:
    m, a = column.split("x")
    return [exe, "bench", "mcomplex", "generate", "-o", str(data_path(out, column, systems)), "-M", m,
            "--mean-size", a, "--system-types", str(systems), "--n-val", str(n_val), "--quiet", *extra]


def _parse_epochs(text: str) -> dict:
    budget = dict(DEFAULT_EPOCHS)
    for item in filter(None, (t.strip() for t in text.split(","))):
        col, _, n = item.partition("=")
        if col not in COLUMNS or not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--epochs: bad item {item!r}; expected COLUMN=EPOCHS with COLUMN in {', '.join(COLUMNS)}")
        budget[col] = int(n)
    return budget


def _run(cmd: list[str], log: Path, stdout: Path | None = None) -> bool:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    tmp = stdout.with_suffix(".tmp") if stdout else None
    with open(log, "a") as err:
        err.write(f"$ {' '.join(cmd)}\n")
        err.flush()
        with open(tmp, "w") if tmp else open(os.devnull, "w") as fh:
            rc = subprocess.run(cmd, stdout=fh, stderr=err, env=env).returncode
    if rc == 0 and tmp:
        os.replace(tmp, stdout)  # a cell exists only once its run finished
    elif tmp and tmp.exists():
        tmp.unlink()
    return rc == 0


def run_cells(out: Path, cells: list[Cell], *, exe: str, jobs: int, n_val: int, dry_run: bool,
              extra_gen: Sequence[str] = (), extra_train: Sequence[str] = ()) -> None:
    cell_dir = out / "cells"
    cell_dir.mkdir(parents=True, exist_ok=True)
    log = out / "mcomplex_table.log"
    datasets = sorted({(c.column, c.systems) for c in cells}, key=lambda k: (COLUMNS.index(k[0]), k[1]))
    todo = [c for c in cells if not (cell_dir / c.result_name).exists()]
    print(f"{len(cells) - len(todo)} of {len(cells)} cells already done; {len(todo)} to run with {jobs} worker(s)")
    if dry_run:
        for col, j in datasets:
            if not data_path(out, col, j).exists():
                print(" ".join(generate_command(exe, out, col, j, n_val, extra_gen)))
        for c in todo:
            print(" ".join(c.command(exe, data_path(out, c.column, c.systems), extra_train)))
        return

    ready = {k: threading.Event() for k in datasets}

    def gen(key):
        col, j = key
        try:
            if not data_path(out, col, j).exists():
                t0 = time.time()
                ok = _run(generate_command(exe, out, col, j, n_val, extra_gen), log)
                print(f"generated {data_path(out, col, j).name} in {time.time() - t0:.0f} s" if ok else
                      f"FAILED to generate {col} J={j} (see {log})", flush=True)
        finally:
            ready[key].set()

    def train(c: Cell):
        ready[(c.column, c.systems)].wait()
        data = data_path(out, c.column, c.systems)
        if not data.exists():
            return
        t0 = time.time()
        ok = _run(c.command(exe, data, extra_train), log, cell_dir / c.result_name)
        print(f"{c.tag} {c.model} seed {c.seed}: {'done' if ok else 'FAILED'} in {time.time() - t0:.0f} s",
              flush=True)

    # Generation of the next column's data overlaps the training of this column's cells.
    order = list(dict.fromkeys(k[0] for k in datasets))
    tasks = [(gen, k) for k in datasets if k[0] == order[0]]
    for i, col in enumerate(order):
        tasks += [(gen, k) for k in datasets if i + 1 < len(order) and k[0] == order[i + 1]]
        tasks += [(train, c) for c in todo if c.column == col]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for fut in [pool.submit(fn, arg) for fn, arg in tasks]:
            fut.result()


# ---------------------------------------------------------------------------------------------------- the table
def _load_cells(out: Path) -> dict:
    """(tag, model) → list of run rows (with the JSON's settings)."""
    found: dict = {}
    for f in sorted((out / "cells").glob("mcomplex_*.json")):
        doc = json.loads(f.read_text())
        tag = "_".join(f.stem.split("_")[:4])
        for r in doc["runs"]:
            found.setdefault((tag, r["model"]), []).append({**r, "settings": doc["settings"], "sizes": doc["sizes"]})
    return found


def render_table(out: Path, columns, systems, models) -> str:
    from eghn_md.benchmarks.mcomplex import paper_row

    found = _load_cells(out)
    lines = []
    for j in systems:
        title = "single system" if j == 1 else f"multiple systems (J = {j})"
        lines += [f"#### {title} — test MSE ×10⁻², ours (mean ± std over seeds) / paper", "",
                  "| model | " + " | ".join(f"({c.replace('x', ', ')})" for c in columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for model in models:
            cells = []
            for col in columns:
                m, a = col.split("x")
                runs = found.get((tag(col, j), model), [])
                paper = (paper_row(int(m), int(a), j) or {}).get(model)
                ps = f"{paper[0]:.2f}" if paper else "—"
                if not runs:
                    cells.append(f"not run / {ps}")
                    continue
                v = np.array([100 * r["test_mse"] for r in runs])
                sd = v.std(ddof=1) if len(v) > 1 else 0.0
                cells.append(f"{v.mean():.2f} ± {sd:.2f} / {ps}" + ("" if len(v) >= 3 else f" ({len(v)} seed{'s' if len(v) > 1 else ''})"))
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += ["| column | data (train/val/test) | epochs (optimiser steps) | best epoch per seed (EGHN; EGNN) | "
                  "wall min per seed, 1 thread (GNN, RF, EGNN, EGHN) |", "|---|---|---|---|---|"]
        for col in columns:
            m, a = col.split("x")
            t = tag(col, j)
            any_run = next((found[k][0] for k in found if k[0] == t and k[1] != "linear"), None)
            if any_run is None:
                continue
            s, sz = any_run["settings"], any_run["sizes"]
            best = "; ".join("/".join(str(r["best_epoch"]) for r in found.get((t, mm), [])) or "—"
                             for mm in ("eghn", "egnn"))
            mins = ", ".join(f"{np.mean([r['wall_s'] for r in found.get((t, mm), [])]) / 60:.1f}"
                             if found.get((t, mm)) else "—" for mm in ("gnn", "rf", "egnn", "eghn"))
            steps = s["epochs"] * -(-sz["train"] // s["batch_size"])
            lines.append(f"| ({m}, {a}) | {sz['train']}/{sz['val']}/{sz['test']} | {s['epochs']} ({steps}) | {best} | "
                         f"{mins} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    from eghn_md.train.run import write_text_atomic

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/paper"))
    ap.add_argument("--columns", default=",".join(COLUMNS), help=f"comma-separated, from {', '.join(COLUMNS)}")
    ap.add_argument("--systems", default="1,5", help="system types J: 1 (single), 5 (multiple)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--epochs", default="", help="per-column budget, e.g. '5x5=20,10x10=4' (defaults: "
                    + ", ".join(f"{k}={v}" for k, v in DEFAULT_EPOCHS.items()) + ")")
    ap.add_argument("--n-val", type=int, default=500, help="validation systems generated per dataset")
    ap.add_argument("--jobs", type=int, default=2, help="parallel single-threaded workers")
    ap.add_argument("--exe", default=shutil.which("eghn-md") or str(Path(sys.executable).parent / "eghn-md"))
    ap.add_argument("--extra-gen", default="", help="more `generate` options (tests: tiny data sets)")
    ap.add_argument("--extra-train", default="", help="more `train` options (they override the fixed ones)")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args(argv)
    columns = [c for c in a.columns.split(",") if c]
    bad = [c for c in columns if c not in COLUMNS]
    if bad:
        raise SystemExit(f"--columns: unknown {bad}; valid: {', '.join(COLUMNS)}")
    systems = [int(j) for j in a.systems.split(",") if j]
    models = [m for m in a.models.split(",") if m]
    epochs = _parse_epochs(a.epochs)
    cells = [Cell(col, j, model, int(seed), epochs[col], a.n_val)
             for col in columns for j in systems for model in models for seed in a.seeds.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    if not a.table_only:
        run_cells(a.out, cells, exe=a.exe, jobs=a.jobs, n_val=a.n_val, dry_run=a.dry_run,
                  extra_gen=shlex.split(a.extra_gen), extra_train=shlex.split(a.extra_train))
    if not a.dry_run:
        table = render_table(a.out, columns, systems, models)
        write_text_atomic(a.out / "mcomplex_table.md", table + "\n")
        print(table)


if __name__ == "__main__":
    main()
