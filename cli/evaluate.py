"""``eghn-md evaluate``: MSE at the horizon of a trained model, beside the static and constant-velocity baselines."""

from __future__ import annotations

import click

from cli._common import device_option, emit_json, json_option, lit, plain_log, quiet_option, stderr_console
from eghn_md.choices import EVAL_SPLITS


@click.command("evaluate")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("data", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--split", type=click.Choice(EVAL_SPLITS), default="test", show_default=True,
              help="Time block of each trajectory (the model's split fractions) or 'all' windows.")
@click.option("--per-node", "per_node_csv", type=click.Path(dir_okay=False), default=None,
              help="CSV of per-node errors (default: next to MODEL as errors_<split>.csv).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--rollout", "rollout_steps", type=click.IntRange(min=1), default=None,
              help="Also roll the model out STEPS horizons from evenly spaced windows of the split: RMSD vs step "
                   "beside static and constant velocity, and the validity of every frame (rollout_<split>.csv/.png); "
                   "from 20 steps also the pooled rollouts as a distribution against the split's frames one horizon "
                   "apart, beside the data's own floor (ensemble_<split>.png).")
@click.option("--rollout-starts", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of rollout start windows.")
@click.option("--states", nargs=2, type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="A.pdb B.pdb", help="Two structures (Cα of the data's nodes, e.g. closed and open) defining two "
              "states: populations, transitions and dwell times of rollouts of >= 20 steps against the data.")
@click.option("--samples", type=click.IntRange(min=2), default=None,
              help="A generative model: also draw this many samples per window and report the error of their mean "
                   "and of one sample, and the calibration: how often the truth lies in the samples' central 50 % "
                   "(a calibrated sampler: 0.5 (n-1)/(n+1), 44 % for 16).")
@click.option("--source-scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="A generative model: sample with this source scale (lambda; default the checkpoint's), e.g. to "
                   "choose one on --split val that calibrates the samples.")
@click.option("--sample-steps", type=click.IntRange(min=1), default=None,
              help="A generative model: integration steps per sample with --samples (default: the model's).")
@click.option("--calibrate", is_flag=True, default=False,
              help="A generative model: first search the source scale whose samples (--samples, default 16) are "
                   "calibrated on the split (a few passes from --source-scale or the checkpoint's), then evaluate "
                   "with it (on --split val: the lambda for one-step samples, `rollout --source-scale`).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the samples' noise (--samples).")
@device_option
@quiet_option
@json_option
def evaluate(model_path, data, split, per_node_csv, batch_size, rollout_steps, rollout_starts, states, samples,
             source_scale, sample_steps, calibrate, seed, device, quiet, as_json):
    """Evaluate MODEL (RUN/model.pt) on DATA.h5 files: the paper's MSE per coordinate [Å²] at the horizon."""
    from pathlib import Path

    from eghn_md.errors import UsageError
    from eghn_md.train.evaluate import evaluate_model

    if states and not rollout_steps:
        raise UsageError("--states judges rollouts: add --rollout STEPS (>= 20)")
    if per_node_csv is None:
        per_node_csv = str(Path(model_path).parent / f"errors_{split}.csv")
    result = evaluate_model(model_path, list(data), split=split, device=device, batch_size=batch_size,
                            per_node_csv=per_node_csv, samples=samples, source_scale=source_scale, seed=seed,
                            sample_steps=sample_steps, calibrate=calibrate)
    console = stderr_console(quiet)
    if rollout_steps:
        result["rollout"] = _rollouts(model_path, data, split, rollout_steps, rollout_starts, states, device, console,
                                      quiet, result.get("source_scale", source_scale))
    if as_json:
        emit_json(result)
        return
    from rich.table import Table

    for note in result.get("notes", []):
        console.print(f"[cyan]Note:[/] {lit(note)}")
    t = Table(title=lit(f"{result['model_name']} on {', '.join(result['data'])} ({split} split), {_step(result)}"))
    t.add_column("predictor")
    t.add_column("MSE per coord. [Å²]", justify="right")
    t.add_column("MSD per node [Å²]", justify="right")
    rows = (("model", result["model_name"]), ("static", "static (x_t)"), ("const_velocity", "constant velocity"))
    for k, label in rows:
        t.add_row(label, f"{result[k]:.4f}", f"{3 * result[k]:.4f}")
    console.print(t)
    console.print(f"{result['windows']} windows; per-node errors in {lit(result['per_node_csv'])}")
    if "calibration" in result:
        _print_calibration(console, result["calibration"])
    if "sampled" in result:
        _print_sampled(console, {**result["sampled"], "source_scale": result["source_scale"]})
    if rollout_steps:
        _print_rollouts(console, result["rollout"])


def _print_calibration(console, c: dict) -> None:
    from rich.table import Table

    from eghn_md.train.evaluate import CALIBRATION_TOLERANCE

    t = Table(title=f"source scale search (calibrated: {100 * c['ideal']:.1f} % of the truths in the central 50 %)")
    for col in ("pass", "source scale", "truth in central 50 %", "spread [Å²]", "MSE of the mean [Å²]"):
        t.add_column(col, justify="right")
    for i, p in enumerate(c["passes"]):
        mark = " *" if p["source_scale"] == c["source_scale"] else ""
        t.add_row(str(i + 1), f"{p['source_scale']:g}{mark}", f"{100 * p['coverage50']:.1f} %", f"{p['spread']:.4f}",
                  f"{p['mse_mean']:.4f}")
    console.print(t)
    if not c["bracketed"] and abs(c["coverage50"] - c["ideal"]) > CALIBRATION_TOLERANCE:
        console.print("[yellow]Warning:[/] the passes did not reach the calibrated coverage from both sides; the "
                      "source scale found is the nearest tried")
    console.print(f"source scale {c['source_scale']:g} calibrates one step's samples: `rollout --source-scale "
                  f"{c['source_scale']:g}` samples with it (long ensembles may want less: a model whose mean step is "
                  "off needs wider samples to cover the truth than the MD's own spread)")


def _print_sampled(console, r: dict) -> None:
    s = r["n_samples"]
    steps = "" if r["sample_steps"] is None else f", {r['sample_steps']} sampling steps"
    console.print(f"{s} samples per window (source scale {r['source_scale']:g}{steps}, seed {r['seed']}): MSE of "
                  f"their mean {r['mse_mean']:.4f} Å², of one sample {r['mse_one']:.4f} Å², "
                  f"spread {r['spread']:.4f} Å²; step {r['step_msd']:.4f} Å² against the data's "
                  f"{r['data_step_msd']:.4f} Å² ({r['step_ratio']:.2f}x); "
                  f"truth in the central 50 %: {100 * r['coverage50']:.1f} % (calibrated: {100 * r['ideal']:.1f} %; "
                  "less: too narrow, more: too wide)")


def _rollouts(model_path, data, split, steps, starts, states, device, console, quiet, source_scale=None) -> dict:
    from pathlib import Path

    from cli._progress import RichProgress
    from eghn_md.export.ensemble_plots import maybe_plot_ensembles
    from eghn_md.export.figures import maybe_plot_rollout_curves
    from eghn_md.rollout.assess import assess_model_rollouts, write_rollout_csv

    out_csv = Path(model_path).parent / f"rollout_{split}.csv"
    r = assess_model_rollouts(model_path, list(data), split=split, steps=steps, n_starts=starts, device=device,
                              states=states or None, keep_frames=True, source_scale=source_scale,
                              progress=None if quiet else RichProgress(console=console, description="rollouts",
                                                                       transient=True))
    frames = r.pop("frames")
    r["csv"] = str(write_rollout_csv(r, out_csv))
    r["figure"] = maybe_plot_rollout_curves(out_csv, log=plain_log(console))
    if "distribution" in r:
        r["distribution"]["figure"] = maybe_plot_ensembles(
            out_csv.with_name(f"ensemble_{split}.png"), frames, r, states=states or None, log=plain_log(console))
    return r


def _print_rollouts(console, r: dict) -> None:
    from cli._common import validity_line

    curves = r["rmsd_A"]
    last = max((s for s in range(r["steps"] + 1) if curves["model"][s] is not None), default=0)
    console.print(f"{r['validity']['n_rollouts']} rollouts of {r['steps']} steps; RMSD to truth at step {last}: "
                  f"model {curves['model'][last]:.3f} Å, static {curves['static'][last]:.3f} Å, constant velocity "
                  f"{curves['const_velocity'][last]:.3f} Å ({lit(r['csv'])})")
    v = r["validity"]
    summary = {**v, "rg_ratio": v["rg_ratio"]}
    console.print(validity_line(summary))
    if v["rollouts_stopped"]:
        console.print(f"[yellow]warning:[/] the divergence guard stopped {v['rollouts_stopped']} of the rollouts")
    if "distribution" in r:
        from cli._ensemble_table import print_distribution

        print_distribution(console, r["distribution"])


def _step(result: dict) -> str:
    """'ΔT = 15 ps = 5 frames 3 ps apart (trained on 15 frames)' or 'ΔT = 5 frames' without usable times."""
    dt, hps = result.get("frame_dt_ps"), result.get("horizon_ps")
    if not dt or dt != dt or not hps or hps != hps:
        return f"ΔT = {result['horizon_frames']} frames"
    frames = sorted(set(result.get("horizon_frames_per_trajectory", {}).values())) or [result["horizon_frames"]]
    n = "/".join(str(f) for f in frames)
    text = f"ΔT = {hps:.4g} ps = {n} frames {dt:.4g} ps apart"
    if frames != [result.get("trained_horizon_frames")]:
        text += f" (trained on {result.get('trained_horizon_frames')} frames)"
    return text
