"""The generative model measured: one-step accuracy and calibration on AdK, and the sampler's cost per step.

* **accuracy and calibration** (the RESULTS.md "AdK accuracy (b)" setting): MDAnalysisTests AdK Cα (214 nodes),
  ``DCD`` first 66 % train / last 34 % validation, ΔT = 15 frames (15 ps), the whole ``DCD2`` as test set (72
  windows). For each seed a ``generative``-preset model and the deterministic ``eghn`` of the accuracy table are
  trained for ``--epochs`` epochs; on every test window ``--samples`` samples are drawn (one batched pass per
  window), and the table gives the one-step MSE per coordinate [Å²] of the samples' mean, of a single sample, and
  the calibration: the fraction of the coordinates whose true value lies in the samples' central 50 % interval
  (25th–75th percentile; 50 % for the distribution itself, 0.5 (n − 1) / (n + 1) = 44.1 % for n = 16 samples'
  interpolated quantiles). ``--calibrate`` samples each generative run with the source scale λ whose coverage on
  ``DCD``'s validation windows is nearest that ideal (``DCD2`` is not read to choose it).
* **velocity-conditioned variant** (``--velocity``): the generative runs get ``model: {flow_velocity: true}``
  (the denoiser also reads x_t − x_{t−ΔT}; not Markov), named ``velflow_s{seed}`` unless ``--tag`` says otherwise.
  ``--time-reversal on|off`` sets ``train: time_reversal`` of the generative *and* the deterministic runs (default:
  each preset's own, on for ``generative``, off for the ``eghn`` runs); the deterministic runs trained with it are
  named ``eghn_tr_s{seed}``. The table also gives the samples' spread: the mean per-coordinate variance of the
  samples [Å²] (calibrated samples have a spread near the MSE of their mean).
* **sampler cost** (``--speed``): rollout steps per second of an ensemble of R replicas (R = 1, 8, 32) on AdK
  (214 nodes) with the model's ``sample_steps``, one batched forward pass per sampling step, CPU threads as set.

Usage::

    OMP_NUM_THREADS=1 python examples/benchmarks/generative.py --seeds 1,2,3 --epochs 30 --workdir runs/generative
    OMP_NUM_THREADS=1 python examples/benchmarks/generative.py --velocity --time-reversal off --workdir runs/generative
    OMP_NUM_THREADS=1 python examples/benchmarks/generative.py --speed --workdir runs/generative
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

MODEL = {"hidden": 32, "n_layers": 2, "n_pool_layers": 1, "n_decoder_layers": 1, "n_clusters": 6}
DATA = {"horizon": 15, "split": [0.66, 0.34, 0.0]}


def _data(work: Path) -> dict:
    from MDAnalysisTests.datafiles import DCD, DCD2, PSF

    from eghn_md.data.preprocess import preprocess

    data = {"dcd": work / "adk.h5", "dcd2": work / "adk2.h5"}
    for key, traj in (("dcd", DCD), ("dcd2", DCD2)):
        if not data[key].exists():
            preprocess(PSF, [traj], data[key], select="protein and name CA", stride=1, overwrite=True)
    return data


def train(work: Path, data: dict, kind: str, seed: int, epochs: int, extra: dict, init: str | None = None) -> Path:
    """Train (or reuse) the run ``{kind}_s{seed}``: ``generative`` preset, or (``kind`` ``eghn…``) the accuracy
    table's ``eghn`` (which takes only ``extra``'s ``train: time_reversal``). ``init`` (generative runs only; a
    ``model.pt``, ``{seed}`` replaced by the seed) makes the generative run a fine-tune of that model."""
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    out = work / f"{kind}_s{seed}"
    if (out / "metrics.json").exists():
        return out
    over = extra.get("train", {})
    if kind.startswith("eghn"):
        over = {k: v for k, v in over.items() if k == "time_reversal"}
    train = {"epochs": epochs, "seed": seed, "device": "cpu", "patience": 0, **over}
    if kind.startswith("eghn"):
        cfg = resolve_config(preset="tiny", overrides={"model": {**MODEL, "name": "eghn"}, "data": DATA,
                                                       "train": {**train, "reg_weight": 0.1}})
    else:
        cfg = resolve_config(preset="generative", overrides={"model": extra.get("model", {}), "data": DATA,
                                                             "train": train})
    init = init.format(seed=seed) if init and not kind.startswith("eghn") else None
    train_run([data["dcd"]], out, config=cfg, test=[data["dcd2"]], init=init, overwrite=True)
    return out


@torch.no_grad()
def one_step(run: Path, data: dict, n_samples: int, seed: int = 0, sample_steps=None, split: str = "test",
             source_scale: float | None = None) -> dict:
    """Mean-of-samples and single-sample MSE [Å² per coordinate], the central-50 % coverage and the samples'
    spread (mean per-coordinate variance [Å²]) on DCD2 (``split`` "val": on DCD's validation windows), sampled
    with the sampler's source scale λ = ``source_scale`` (default: the model's own);
    :func:`eghn_md.train.evaluate.sample_calibration` (a deterministic model: its one prediction, coverage 0)."""
    from eghn_md.data.samples import DataConfig
    from eghn_md.models.registry import is_generative
    from eghn_md.train.checkpoint import load_model
    from eghn_md.train.evaluate import evaluate_sets, sample_calibration
    from eghn_md.train.sources import build_splits

    model, ckpt = load_model(run / "model.pt")
    if source_scale is not None:
        model.set_source_scale(source_scale)
    cfg = DataConfig.from_dict(ckpt.data_config)
    with build_splits([data["dcd"]], config=cfg, test=[data["dcd2"]], only=[split],
                      expected_nodes=ckpt.nodes) as splits:
        if is_generative(model):
            return sample_calibration(model, splits.sets[split], n_samples=n_samples, seed=seed,
                                      sample_steps=sample_steps)
        mse = evaluate_sets(model, {split: splits.sets[split]})[split]["model"]
    return {"mse_mean": mse, "mse_one": mse, "coverage50": 0.0, "spread": 0.0}


def calibrate(run: Path, data: dict, n_samples: int, sample_steps=None) -> dict:
    """The source scale λ, from :data:`SCALES`, whose coverage on DCD's validation windows is nearest to a
    calibrated sampler's (:func:`ideal_coverage`): chosen without reading DCD2."""
    from eghn_md.train.evaluate import ideal_coverage

    target = ideal_coverage(n_samples)
    scan = {lam: one_step(run, data, n_samples, sample_steps=sample_steps, split="val", source_scale=lam)
            for lam in SCALES}
    best = min(SCALES, key=lambda lam: abs(scan[lam]["coverage50"] - target))
    return {"source_scale": best, "target": target,
            "validation": {str(k): v["coverage50"] for k, v in scan.items()}}


#: the source scales λ :func:`calibrate` chooses from
SCALES = (0.8, 0.9, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.6, 1.8, 2.0)


@torch.no_grad()
def sampler_speed(run: Path, data: dict, replicas=(1, 8, 32), steps: int = 5) -> dict:
    """Rollout steps per second of R replicas batched, from DCD2 frame 0 (timed by ``sampler_speed.time_step``,
    the model's own sample steps, the default chunk size)."""
    from MDAnalysisTests.datafiles import DCD2, PSF
    from sampler_speed import time_step

    from eghn_md.rollout.ensemble import DEFAULT_CHUNK_NODES
    from eghn_md.rollout.start import open_start

    st = open_start(run / "model.pt", PSF, [DCD2], frame=0, device="cpu")
    out = {}
    for r in replicas:
        dt = time_step(st, r, chunk=DEFAULT_CHUNK_NODES, sample_steps=None, steps=steps)
        out[r] = {"steps_per_s": 1.0 / dt, "s_per_step": dt, "replica_steps_per_s": r / dt}
    return out


def _accuracy(work: Path, data: dict, args, extra: dict) -> dict:
    """One-step table of the generative runs (``args.tag``) and the deterministic ``eghn`` of the same seeds: one row
    per seed, then mean ± std over the seeds."""
    seeds = [int(s) for s in args.seeds.split(",")]
    baseline = "eghn_tr" if args.time_reversal == "on" else "eghn"
    res = {}
    print("\n| model | seed | MSE of the mean [Å²] | MSE of one sample [Å²] | truth in central 50 % | spread [Å²] |")
    print("|---|---|---|---|---|---|")
    for kind in (args.tag, baseline):
        rows = []
        for seed in seeds:
            run = train(work, data, kind, seed, args.epochs, extra, init=args.init)
            cal = calibrate(run, data, args.samples, args.sample_steps) if args.calibrate and kind == args.tag else {}
            rows.append(one_step(run, data, args.samples, sample_steps=args.sample_steps,
                                 source_scale=cal.get("source_scale")))
            r = rows[-1]
            if cal:
                print(f"  calibrated on DCD's validation windows: λ = {cal['source_scale']} "
                      f"({json.dumps(cal['validation'])}, target {cal['target']:.3f})", flush=True)
                r["source_scale"] = cal["source_scale"]
            print(f"| {kind} | {seed} | {r['mse_mean']:.4f} | {r['mse_one']:.4f} | {100 * r['coverage50']:.1f} % | "
                  f"{r['spread']:.4f} |", flush=True)
        res[kind] = {k: [float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))]
                     for k in rows[0] if k != "source_scale"}
        res[kind]["seeds"] = dict(zip(seeds, rows, strict=True))
        m = res[kind]
        print(f"| {kind} | mean ± std | {m['mse_mean'][0]:.4f} ± {m['mse_mean'][1]:.4f} | {m['mse_one'][0]:.4f} ± "
              f"{m['mse_one'][1]:.4f} | {100 * m['coverage50'][0]:.1f} ± {100 * m['coverage50'][1]:.1f} % | "
              f"{m['spread'][0]:.4f} |", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--workdir", default="runs/generative")
    ap.add_argument("--tag", default=None, help="Run name prefix of the generative runs (default: generative, or "
                    "velflow with --velocity).")
    ap.add_argument("--extra", default="{}", help="JSON overrides of the generative runs ({model: …, train: …}).")
    ap.add_argument("--velocity", action="store_true", help="The velocity-conditioned variant (flow_velocity).")
    ap.add_argument("--time-reversal", choices=("on", "off"), default=None,
                    help="train: time_reversal of the generative and the deterministic runs (default: the presets').")
    ap.add_argument("--sample-steps", type=int, default=None)
    ap.add_argument("--init", default=None, help="Start the generative runs from this model (a fine-tune, `train "
                    "--init`; the model section of --extra is then not used); '{seed}' is replaced by the seed.")
    ap.add_argument("--calibrate", action="store_true", help="Sample each generative run with the source scale λ "
                    "whose coverage on DCD's validation windows is nearest a calibrated sampler's (calibrate()).")
    ap.add_argument("--speed", action="store_true", help="Measure the sampler's cost instead.")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.speed and args.velocity:
        ap.error("--speed times replicas started from one frame (a Markov model): drop --velocity")
    extra = json.loads(args.extra)
    if args.velocity:
        extra["model"] = {**extra.get("model", {}), "flow_velocity": True}
    if args.time_reversal is not None:
        extra["train"] = {**extra.get("train", {}), "time_reversal": args.time_reversal == "on"}
    args.tag = args.tag or ("velflow" if args.velocity else "generative")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = _data(work)
    if args.speed:
        seed = int(args.seeds.split(",")[0])
        res = {"speed": sampler_speed(train(work, data, args.tag, seed, args.epochs, extra), data)}
        for r, v in res["speed"].items():
            print(f"R = {r}: {v['steps_per_s']:.3f} steps/s ({v['s_per_step']:.3f} s per step, "
                  f"{v['replica_steps_per_s']:.2f} replica-steps/s)", flush=True)
    else:
        res = _accuracy(work, data, args, extra)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
