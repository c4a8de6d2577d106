"""Does a preset train every model of the registry? One-step MSE on AdK ``DCD`` → ``DCD2`` beside static.

Each model is trained with the preset (its per-model values included) on MDAnalysisTests AdK ``DCD`` (time blocks
0.66 / 0.34 / 0: validation is the last block), ΔT = 15 frames, seed 0, and tested on the whole of ``DCD2``, at
Cα size (214 nodes) or the paper's backbone size (855 nodes, ``preprocess --select backbone``). A run that diverges
is a result (``diverged``), not a crash. One JSON line per run is appended to ``--jsonl``; finished runs (same
model, size, preset, overrides) are reused. Usage::

    OMP_NUM_THREADS=1 python examples/benchmarks/preset_models.py --out runs/presets --size ca \\
        --models eghn,eghn-published,egnn,gnn,rf,linear [--preset default] [--epochs N] \\
        [--set train.lr=5e-4 --set train.free_steps=0]

The command line equivalent of one run is printed beside its result (``eghn-md train …``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

SIZES = {"ca": "protein and name CA", "backbone": "backbone"}
DATA = {"horizon": 15, "split": [0.66, 0.34, 0.0]}


def _data(out: Path, size: str) -> dict:
    from MDAnalysisTests.datafiles import DCD, DCD2, PSF

    from eghn_md.data.preprocess import preprocess

    paths = {"train": out / f"adk_{size}.h5", "test": out / f"adk2_{size}.h5"}
    for src, h5 in ((DCD, paths["train"]), (DCD2, paths["test"])):
        if not h5.exists():
            out.mkdir(parents=True, exist_ok=True)
            preprocess(PSF, [src], h5, select=SIZES[size])
    return paths


def _overrides(pairs: list[str]) -> dict:
    """``section.key=value`` pairs (values parsed as YAML) → ``{section: {key: value}}``."""
    out: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, name = key.partition(".")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 5e-4 as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out.setdefault(section, {})[name] = parsed
    return out


def _run(model: str, args, paths: dict, extra: dict) -> dict:
    from eghn_md.errors import DivergenceError
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    train = {"seed": 0, "device": "cpu", **extra.get("train", {})}
    if args.epochs:
        train["epochs"] = args.epochs
    overrides = {"model": {**extra.get("model", {}), "name": model}, "data": DATA, "train": train}
    cfg = resolve_config(preset=args.preset, overrides=overrides)
    tag = "_".join(f"{k}{v}" for s in extra.values() for k, v in s.items()).replace("/", "")
    run = Path(args.out) / f"{args.size}_{args.preset}_{model}{'_' + tag if tag else ''}"
    t0 = time.perf_counter()
    try:
        m = train_run([paths["train"]], run, config=cfg, test=[paths["test"]], overwrite=True)
        test = m["splits"]["test"]
        res = {"mse": test["model"], "static": test["static"], "const_velocity": test["const_velocity"]}
    except DivergenceError as exc:
        res = {"diverged": str(exc)}
    return {"model": model, "size": args.size, "preset": args.preset, "overrides": extra,
            "epochs": cfg.train.epochs, "wall_s": time.perf_counter() - t0, **res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/presets")
    ap.add_argument("--size", choices=tuple(SIZES), default="ca")
    ap.add_argument("--models", default="eghn,eghn-published,egnn,gnn,rf,linear")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--epochs", type=int, default=None, help="Override the preset's epochs (e.g. 2: a smoke run).")
    ap.add_argument("--set", action="append", default=[], help="section.key=value over the preset (repeatable).")
    ap.add_argument("--jsonl", default=None, help="Append one JSON line per run here (default OUT/results.jsonl).")
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = _data(Path(args.out), args.size)
    extra = _overrides(args.set)
    jsonl = Path(args.jsonl or Path(args.out) / "results.jsonl")
    for model in args.models.split(","):
        row = _run(model, args, paths, extra)
        with jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        verdict = row.get("diverged") or f"MSE {row['mse']:.4f} Å² (static {row['static']:.4f})"
        print(f"{args.size} {args.preset} {model} {extra or ''}: {verdict}, {row['wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
