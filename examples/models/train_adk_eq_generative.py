"""Train the small generative model that ``make demo`` ships: ``examples/models/adk_eq_generative.pt``.

Data: one reference run of the equilibrium AdK benchmark, as written by
``eghn-md bench adk-equilibrium generate -o DIR --seed 1`` (``DIR/adk_cg.pdb`` + ``DIR/run-1.dcd``, 12,500 frames
1.6 ps apart); nothing is regenerated, the run is only preprocessed (Cα nodes) into ``--work``.

Model: the ``generative`` preset (``eghn-md train --preset generative``: EGHN hidden 32, 2 layers, K = 6, sequence
features, the contact prior of the training run, input noise and breathing, 4 Euler sampling steps with guidance in
the last 2) with these overrides, the
setting of seed 1 of the equilibrium campaign (examples/benchmarks/results/generative_equilibrium.md, section 2):

* ``data.horizon --horizon`` (10 frames = 16 ps, the AdK DIMS horizon), ``data.split [0.9, 0.1, 0]`` (the last 10 %
  of the run validates), ``data.window_stride --stride`` (every 4th training window);
* ``train.epochs --epochs`` (2), ``train.eval_every 1``, ``train.patience 0`` (no early stop), ``train.seed --seed``.

About 6 CPU minutes on one thread. ``--from-run DIR`` takes a run that was already trained with exactly this
configuration (its ``config.yaml`` is compared with the one this script resolves, and must be equal) instead of
training again: the campaign's ``generative_s1`` is such a run.

Writes ``--output`` (the run's ``model.pt``: a weights-only checkpoint of a few hundred KB) and, beside it, a card
``<output stem>.json`` (data, command, resolved config, one-step validation MSE of one sample beside the static
predictor, date, versions). If the ``generative`` preset changes, rerun this script to re-create both.

Usage::

    OMP_NUM_THREADS=1 python examples/models/train_adk_eq_generative.py --data /work/data/adk-eq \\
        --work runs/adk_eq_generative [--from-run CAMPAIGN/generative_s1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def overrides(args: argparse.Namespace) -> dict:
    """The documented overrides of the ``generative`` preset."""
    return {"data": {"horizon": args.horizon, "split": [0.9, 0.1, 0.0], "window_stride": args.stride},
            "train": {"epochs": args.epochs, "seed": args.seed, "device": "cpu", "eval_every": 1, "patience": 0}}


def prepare(args: argparse.Namespace) -> Path:
    """The reference run preprocessed (Cα nodes) into ``--work`` (reused when present)."""
    from eghn_md.data.preprocess import preprocess

    h5 = args.work / f"run-{args.run}.h5"
    if not h5.exists():
        preprocess(args.data / "adk_cg.pdb", [args.data / f"run-{args.run}.dcd"], h5, select="name CA")
    return h5


def card(args: argparse.Namespace, metrics: dict, config: dict) -> dict:
    """The model card written beside the checkpoint."""
    import torch

    import eghn_md

    val = metrics["splits"]["val"]
    return {
        "model_file": args.output.name,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "command": "OMP_NUM_THREADS=1 python " + shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "data": {"generator": f"eghn-md bench adk-equilibrium generate -o DIR --seed {args.run}",
                 "topology": "adk_cg.pdb", "trajectory": f"run-{args.run}.dcd", "n_nodes": metrics["n_nodes"],
                 "frame_dt_ps": metrics["frame_dt_ps"], "horizon_ps": metrics["horizon_ps"],
                 "windows": metrics["n_windows"]},
        "preset": "generative", "overrides": overrides(args), "config": config,
        "one_step_val_mse_A2": {"model_one_sample": val["model"], "static": val["static"],
                                "windows": val["windows"],
                                "note": "MSE per coordinate of one sample of the next frame (a sample, not a mean: "
                                        "its MSE is the spread plus the error of the mean)"},
        "parameters": metrics["parameters"], "epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
        "wall_time_s": metrics["wall_time_s"],
        "versions": {"eghn_md": eghn_md.__version__, "torch": torch.__version__},
    }


def reuse(run: Path, config) -> dict:
    """The metrics of ``run``, after checking that its saved configuration is the one this script would train (a
    value left None here, e.g. the cutoff, is resolved from the data by the run and not compared)."""
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    ours = yaml.safe_load(config.to_yaml())
    for section in ("data", "train"):
        diff = {k: (saved[section].get(k), v) for k, v in ours[section].items()
                if v is not None and saved[section].get(k) != v}  # None: resolved from the data by the run
        if diff:
            raise SystemExit(f"{run} was trained with another {section} configuration (saved, wanted): {diff}")
    diff = {k: (saved["model"].get(k), v) for k, v in ours["model"].items() if saved["model"].get(k) != v}
    if diff:
        raise SystemExit(f"{run} was trained with another model configuration (saved, wanted): {diff}")
    return json.loads((run / "metrics.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the generator's output folder (adk_cg.pdb, run-RUN.dcd)")
    p.add_argument("--run", type=int, default=1, help="seed of the reference run to train on (run-RUN.dcd)")
    p.add_argument("--work", type=Path, default=Path("runs/adk_eq_generative"), help="scratch folder (data, run)")
    p.add_argument("--horizon", type=int, default=10, help="ΔT in frames of the reference run")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--stride", type=int, default=4, help="every STRIDE-th training window")
    p.add_argument("--from-run", type=Path, default=None,
                   help="a run already trained with exactly this configuration (its config.yaml must match)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--output", type=Path, default=HERE / "adk_eq_generative.pt")
    args = p.parse_args()

    import torch

    from eghn_md.io.atomic import atomic_path
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    h5 = prepare(args)
    config = resolve_config(preset="generative", overrides=overrides(args))
    if args.from_run is None:
        run = args.work / "run"
        metrics = train_run([h5], run, config=config, overwrite=True)
    else:
        run, metrics = args.from_run, reuse(args.from_run, config)
    with atomic_path(args.output) as tmp:
        shutil.copyfile(run / "model.pt", tmp)
    info = card(args, metrics, config.to_dict())
    with atomic_path(args.output.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info["one_step_val_mse_A2"]), f"-> {args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
