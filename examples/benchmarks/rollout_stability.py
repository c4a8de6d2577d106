"""Rollout stability campaign (issue "rollouts that stay physical"): train on MDAnalysisTests AdK `DCD` (time blocks
0.66 / 0.34 / 0, ΔT = 15 frames = 15 ps, Cα nodes), then roll out from `DCD2` frame 15 and report

* one-step MSE per coordinate on the whole of `DCD2` [Å²] beside static and constant velocity;
* RMSD after 5 steps (the longest rollout `DCD2` has a truth for) beside static and constant velocity [Å];
* the validity of a 100-step and a 1,000-step rollout (chain breaks, clashes, Rg ratio, max bond deviation, where
  the divergence guard stopped), without and with `--constrain`.

One JSON file per (model, preset, seed) under ``--out``; finished runs are reused (``--retrain`` to redo), so the
campaign can be interrupted and resumed. Usage::

    python examples/benchmarks/rollout_stability.py --out runs/stability --models eghn,egnn,eghn-published \\
        --seeds 0,1,2 [--preset default] [--config extra.yaml] [--steps 100,1000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _data(out: Path) -> dict:
    from MDAnalysisTests.datafiles import DCD, DCD2, PSF

    from eghn_md.data.preprocess import preprocess

    paths = {"psf": PSF, "dcd": DCD, "dcd2": DCD2, "h5": out / "adk.h5", "h5_2": out / "adk2.h5"}
    for src, h5 in ((DCD, paths["h5"]), (DCD2, paths["h5_2"])):
        if not h5.exists():
            preprocess(PSF, [src], h5)
    return paths


def _train(run: Path, model: str, preset: str, seed: int, config_file, data: dict, retrain: bool) -> dict:
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    if (run / "metrics.json").exists() and not retrain:
        return json.loads((run / "metrics.json").read_text())
    overrides = {"model": {"name": model}, "data": {"horizon": 15, "split": [0.66, 0.34, 0.0]},
                 "train": {"seed": seed, "device": "cpu"}}
    cfg = resolve_config(preset=preset, config_file=config_file, overrides=overrides)
    return train_run([data["h5"]], run, config=cfg, overwrite=True, log=print)


def _rollout(run: Path, data: dict, steps: int, constrain: bool) -> dict:
    from eghn_md.rollout.rollout import rollout_run

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        s = rollout_run(run / "model.pt", data["psf"], [data["dcd2"]], Path(tmp) / "p.dcd", frame=15, steps=steps,
                        constrain=constrain, device="cpu")
        s["wall_s"] = time.perf_counter() - t0
    v = s["validity"]
    return {"steps": steps, "constrain": constrain, "steps_done": s["steps_done"], "stopped": s["stopped"],
            "frames_with_break": v["frames_with_break"], "frames_with_clash": v["frames_with_clash"],
            "n_frames": v["n_frames"], "first_invalid_frame": v["first_invalid_frame"],
            "max_bond_dev_A": v["max_bond_dev_A"], "rg_ratio": v["rg_ratio"], "wall_s": s["wall_s"],
            "finite": s["stopped"] is None or "non-finite" not in s["stopped"]["reason"]}


def _five_steps(run: Path, data: dict) -> dict:
    from eghn_md.rollout.rollout import rollout_run

    with tempfile.TemporaryDirectory() as tmp:
        s = rollout_run(run / "model.pt", data["psf"], [data["dcd2"]], Path(tmp) / "p.dcd", frame=15, steps=5,
                        truth=True, device="cpu")
    return {"rmsd_5_steps_A": s["final_rmsd_A"], "steps_done": s["steps_done"]}


def one(model: str, preset: str, seed: int, out: Path, data: dict, steps: list, config_file, retrain: bool) -> dict:
    from eghn_md.train.evaluate import evaluate_model

    tag = f"{model}-{preset}{'-' + Path(config_file).stem if config_file else ''}-s{seed}"
    result_file = out / f"{tag}.json"
    if result_file.exists() and not retrain:
        return json.loads(result_file.read_text())
    run = out / tag
    torch.manual_seed(seed)
    metrics = _train(run, model, preset, seed, config_file, data, retrain)
    ev = evaluate_model(run / "model.pt", [data["h5_2"]], split="all", device="cpu")
    res = {"model": model, "preset": preset, "config": str(config_file) if config_file else None, "seed": seed,
           "best_epoch": metrics.get("best_epoch"), "epochs_run": metrics.get("epochs_run"),
           "selection": metrics.get("selection"), "train_samples_per_s": metrics.get("train_samples_per_s"),
           "one_step_mse_dcd2": {k: ev[k] for k in ("model", "static", "const_velocity")},
           **_five_steps(run, data),
           "rollouts": [_rollout(run, data, n, c) for n in steps for c in (False, True)]}
    result_file.write_text(json.dumps(res, indent=2, default=float) + "\n")
    return res


def table(results: list) -> str:
    rows = ["| model | seed | 1-step MSE DCD2 | RMSD 5 steps (static / c.v.) | steps | constrain | frames with "
            "break / clash | Rg min–max × start | max bond dev [Å] | stopped |", "|---" * 10 + "|"]
    for r in results:
        m, r5 = r["one_step_mse_dcd2"], r["rmsd_5_steps_A"]
        for ro in r["rollouts"]:
            stop = "-" if ro["stopped"] is None else f"step {ro['stopped']['step']}: {ro['stopped']['reason'][:40]}"
            rows.append(
                f"| {r['model']} | {r['seed']} | {m['model']:.3f} (static {m['static']:.3f}) | {r5['model']:.2f} "
                f"({r5['static']:.2f} / {r5['const_velocity']:.2f}) | {ro['steps_done']}/{ro['steps']} | "
                f"{'yes' if ro['constrain'] else 'no'} | {ro['frames_with_break']} / {ro['frames_with_clash']} of "
                f"{ro['n_frames']} | {ro['rg_ratio']['min']:.2f}–{ro['rg_ratio']['max']:.2f} | "
                f"{ro['max_bond_dev_A']:.2f} | {stop} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/stability"))
    ap.add_argument("--models", default="eghn")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--config", default=None, help="YAML merged over the preset (e.g. a candidate stability setting)")
    ap.add_argument("--steps", default="100,1000")
    ap.add_argument("--retrain", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    data = _data(a.out)
    steps = [int(s) for s in a.steps.split(",")]
    results = []
    for model in a.models.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            results.append(one(model, a.preset, seed, a.out, data, steps, a.config, a.retrain))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    (a.out / "table.md").write_text(table(results) + "\n")
    print(table(results))
    print(json.dumps({"rmsd5_model_mean": float(np.mean([r["rmsd_5_steps_A"]["model"] for r in results]))}))


if __name__ == "__main__":
    main()
