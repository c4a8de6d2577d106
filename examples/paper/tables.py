"""Print the motion-capture results written by ``run_all.sh`` (``eghn-md bench mocap train --json``) beside the paper.

Usage: ``python examples/paper/tables.py OUTDIR`` — reads ``OUTDIR/mocap.json`` (and any ``OUTDIR/mcomplex_M_A.json``
written by ``eghn-md bench mcomplex train --json``); the whole M-complex table is rendered by ``mcomplex_table.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from eghn_md.benchmarks.mcomplex import PAPER_TABLE
from eghn_md.benchmarks.mocap import PAPER_TABLE as MOCAP_PAPER


def _rows(doc: dict, paper: dict) -> list[str]:
    out = []
    for s in doc["summary"]:
        p = paper.get(s["model"])
        ps = f"{p[0]:.2f} ± {p[1]:.2f}" if p else "—"
        runs = [r for r in doc["runs"] if r["model"] == s["model"]]
        epochs = "/".join(str(r["epochs_run"]) for r in runs)
        out.append(f"| {s['model']} | {s['mean_e2']:.2f} ± {s['std_e2']:.2f} | {ps} | {s['n_seeds']} | {epochs} | "
                   f"{s['wall_s'] / 60:.1f} |")
    return out


def main(outdir: str) -> None:
    head = "| model | ours (×10⁻²) | paper (×10⁻²) | seeds | epochs run | wall min (all seeds) |\n|---|---|---|---|---|---|"
    for f in sorted(Path(outdir).glob("mcomplex_*.json")):
        doc = json.loads(f.read_text())
        m, a = (int(x) for x in f.stem.split("_")[1:3])
        print(f"\n{doc['benchmark']} — {doc['sizes']}\n{head}")
        print("\n".join(_rows(doc, PAPER_TABLE.get((m, a), {}))))
    f = Path(outdir) / "mocap.json"
    if f.exists():
        doc = json.loads(f.read_text())
        print(f"\n{doc['benchmark']} — {doc['sizes']}\n{head}")
        print("\n".join(_rows(doc, MOCAP_PAPER)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/paper")
