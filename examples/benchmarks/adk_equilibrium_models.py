"""Every deterministic model on the equilibrium AdK benchmark (issue 29, item 5): train on one reference run,
judge on an independent one, in one step and as a distribution.

Data: ``eghn-md bench adk-equilibrium generate -o DIR --seed 1`` and ``--seed 2`` (a dual-basin Cα simulation of
AdK: ``DIR/adk_cg.pdb``, ``DIR/run-1.dcd``, ``DIR/run-2.dcd``, ``DIR/closed.pdb``, ``DIR/open.pdb``). Each model
is trained with the ``default`` preset on run 1 (time blocks 0.9 / 0.1: its last 10 % selects the epoch) with
ΔT = ``--horizon`` frames, every ``--stride``-th window, ``--epochs`` epochs; then, through the command line a user
runs::

    eghn-md evaluate RUN/model.pt run-2.h5 --split all --rollout STEPS --rollout-starts 8 \\
        --states DIR/closed.pdb DIR/open.pdb --json

one-step MSE beside static and constant velocity, and 8 rollouts of ``--steps`` steps from evenly spaced frames of
run 2 pooled as an ensemble: validity, RMSF r / ratio, PC1–PC2 W2, Jensen–Shannon of Rg and pair distances, state
populations and transitions against run 2, with run 2's own floor (its two halves). Every (model, seed) writes
``WORK/<model>_s<seed>/evaluate.json``; finished ones are reused, so the campaign resumes after an interruption.
``--table`` prints the markdown table of whatever has finished.

Usage::

    OMP_NUM_THREADS=1 python examples/benchmarks/adk_equilibrium_models.py --data /work/data/adk-eq \\
        --work runs/eq --runs eghn:1,eghn:2,eghn:3,eghn-published:1,egnn:1,linear:1 --epochs 6 --stride 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``eghn-md ARGS`` in a child process (the command a user runs); raises with its stderr on failure."""
    cmd = [sys.executable, "-m", "cli.main", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done


def _datasets(data: Path, work: Path) -> dict:
    """run-1 and run-2 preprocessed (Cα nodes), cached under ``work``."""
    out = {}
    for seed in (1, 2):
        h5 = work / f"run-{seed}.h5"
        if not h5.exists():
            _cli("preprocess", data / "adk_cg.pdb", data / f"run-{seed}.dcd", "-o", h5, "--quiet")
        out[seed] = h5
    return out


def _train(run: Path, model: str, seed: int, h5: Path, a) -> None:
    """``eghn-md train`` of ``model`` with the ``default`` preset and the campaign's data / epoch overrides."""
    if (run / "model.pt").exists() and (run / "metrics.json").exists():
        return
    run.mkdir(parents=True, exist_ok=True)
    cfg = {"model": {"name": model},
           "data": {"horizon": a.horizon, "split": [0.9, 0.1, 0.0], "window_stride": a.stride},
           "train": {"epochs": a.epochs, "seed": seed}}
    (run / "campaign.yaml").write_text(yaml.safe_dump(cfg))
    _cli("train", h5, "-o", run, "--preset", "default", "--config", run / "campaign.yaml", "--device", "cpu",
         "--quiet", "--overwrite")


def _evaluate(run: Path, h5: Path, data: Path, a) -> dict:
    """``eghn-md evaluate --rollout`` of the trained run on run 2, as JSON (cached in ``run/evaluate.json``)."""
    out = run / "evaluate.json"
    if out.exists():
        return json.loads(out.read_text())
    done = _cli("evaluate", run / "model.pt", h5, "--split", "all", "--rollout", a.steps, "--rollout-starts",
                a.starts, "--states", data / "closed.pdb", data / "open.pdb", "--json", "--quiet", "--device", "cpu")
    result = json.loads(done.stdout)
    out.write_text(json.dumps(result, indent=1))
    return result


def _fmt(v, spec=".3f") -> str:
    return "–" if v is None else format(v, spec)


def _row(name: str, r: dict) -> str:
    """One markdown row of an evaluate JSON: one-step MSE, validity and the distributional metrics."""
    ro = r["rollout"]
    d, v = ro.get("distribution", {}), ro["validity"]
    st = d.get("states", {}).get("model", {})
    bad = f"{v.get('frames_with_break', 0)} / {v.get('frames_with_clash', 0)} of {v.get('n_frames', '?')}"
    pop, tr = st.get("population", {}), st.get("transitions", {})
    return (f"| {name} | {r['model']:.3f} | {r['static']:.3f} | {r['const_velocity']:.3f} | {bad} | "
            f"{v['rollouts_stopped']} | {_fmt(d.get('rmsf', {}).get('pearson_r'), '.2f')} | "
            f"{_fmt(d.get('rmsf', {}).get('ratio'), '.2f')} | {_fmt(d.get('pca', {}).get('w2_A'), '.2f')} | "
            f"{_fmt(d.get('js', {}).get('rg'), '.2f')} | {_fmt(d.get('js', {}).get('pairwise_distances'), '.2f')} | "
            f"{_fmt(pop.get('open'), '.2f')} | {tr.get('closed_to_open', '–')} / {tr.get('open_to_closed', '–')} |")


def table(work: Path) -> str:
    """The markdown table of every finished ``evaluate.json`` under ``work`` (the reference's floor last)."""
    head = ("| model (seed) | MSE [Å²] | static | const. vel. | frames with break / clash | stopped | RMSF r | "
            "RMSF ratio | PC W2 [Å] | JS Rg | JS pairs | p(open) | c→o / o→c |\n" + "|---" * 13 + "|")
    rows, floor = [], None
    for f in sorted(work.glob("*_s*/evaluate.json")):
        r = json.loads(f.read_text())
        rows.append(_row(f.parent.name.replace("_s", " (") + ")", r))
        floor = r["rollout"].get("distribution", {}).get("floor", floor)
    lines = [head, *rows]
    if floor and "rmsf" in floor:
        fst = floor.get("states", {}).get("model", {})
        lines.append(f"| reference floor (run 2, half vs half) | – | – | – | – | – | "
                     f"{floor['rmsf']['pearson_r']:.2f} | "
                     f"{floor['rmsf']['ratio']:.2f} | {floor['pca']['w2_A']:.2f} | {floor['js']['rg']:.2f} | "
                     f"{floor['js']['pairwise_distances']:.2f} | "
                     f"{_fmt(fst.get('population', {}).get('open'), '.2f')} | – |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the generator's output folder (run-1, run-2)")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--runs", default="eghn:1,eghn:2,eghn:3,eghn-published:1,egnn:1,linear:1",
                   help="comma-separated MODEL:SEED")
    p.add_argument("--horizon", type=int, default=1, help="ΔT in frames of the reference runs")
    p.add_argument("--stride", type=int, default=5, help="every STRIDE-th training window (data: window_stride)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--starts", type=int, default=8)
    p.add_argument("--table", action="store_true", help="only print the table of what has finished")
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    if not a.table:
        h5 = _datasets(a.data, a.work)
        for item in a.runs.split(","):
            model, seed = item.split(":")
            run = a.work / f"{model}_s{seed}"
            _train(run, model, int(seed), h5[1], a)
            _evaluate(run, h5[2], a.data, a)
            print(f"{model} seed {seed}: done", flush=True)
    print(table(a.work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
