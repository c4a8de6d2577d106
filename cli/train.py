"""``eghn-md train``: thin wrapper around :func:`eghn_md.train.run.train_run`."""

from __future__ import annotations

import os

import click

from cli._common import emit_json, json_option, lit, overwrite_option, plain_log, quiet_option, stderr_console
from eghn_md.choices import DEVICES, FEATURE_SETS, MODEL_NAMES, OPTIMIZERS, PRESET_NAMES, SCHEDULES


@click.command("train")
@click.argument("data", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory (model.pt, last.pt, config.yaml, history.csv, metrics.json).")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default=None,
              help="Built-in configuration (default: 'default'; 'paper': the authors' protocol with eghn-published; "
                   "'paper-eghn': the equations variant at the paper's sizes; 'generative': a model that samples the "
                   "next frame from the current one (rollouts start from one structure, ensembles with --replicas; "
                   "any model samples with model: {generative: true} in --config; with flow_velocity: true (eghn) it "
                   "also reads the velocity and a rollout needs two frames)); --config and options override it.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML file with model:/data:/train: sections.")
@click.option("--model", type=click.Choice(MODEL_NAMES), default=None, help="Architecture.")
@click.option("--features", type=click.Choice(FEATURE_SETS), default=None,
              help="Node/edge scalars. residue (default): residue (+ atom) one-hots, bond flag; paper: [|v|, charge / "
                   "max|charge|] and [d, d²] (needs a dataset with charges); both: all of them; sequence: residue plus "
                   "each residue's position along the chain (a model of this one protein).")
@click.option("--horizon", type=click.IntRange(min=1), default=None, help="ΔT in stored frames.")
@click.option("--horizon-ps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="ΔT in ps instead (a whole number of every trajectory's frame spacing; allows mixed spacings).")
@click.option("--cutoff", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Contact cutoff in Å (default 10 for Cα nodes, 8 for atom nodes).")
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None)
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Hidden width.")
@click.option("--clusters", type=click.IntRange(min=1), default=None, help="Number of pooling clusters K (EGHN).")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help="adamw (default): decoupled weight decay; adam: L2 penalty (the authors' code).")
@click.option("--patience", type=click.IntRange(min=0), default=None,
              help="Early stopping: evaluations without improvement (0 = off).")
@click.option("--seed", type=int, default=None)
@click.option("--device", type=click.Choice(DEVICES), default=None, help="Default: auto.")
@click.option("--amp", is_flag=True, default=None, help="bf16/fp16 autocast on CUDA.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes that build training samples ahead of the model (default: min(4, CPUs-1) on CUDA, "
                   "0 on CPU). Results do not depend on it.")
@click.option("--compile", "compile_", is_flag=True, default=None,
              help="Run the model through torch.compile (dynamic shapes); the first steps pay the compilation "
                   "(minutes on CPU; pays off for long runs on Cα-size graphs).")
@click.option("--val", "val_files", multiple=True, type=click.Path(dir_okay=False),
              help="Dataset file used whole as validation set (repeatable).")
@click.option("--test", "test_files", multiple=True, type=click.Path(dir_okay=False),
              help="Dataset file used whole as test set (repeatable).")
@click.option("--resume", is_flag=True, help="Continue the run in OUTPUT from its last completed epoch.")
@click.option("--init", "init", type=click.Path(dir_okay=False), default=None,
              help="Start from this model (RUN/model.pt): its architecture and weights; the data and train options "
                   "of this call apply (a fine-tune, e.g. with train: unroll_steps for a generative model).")
@overwrite_option
@quiet_option
@json_option
def train(data, out_dir, preset, config_file, model, features, horizon, horizon_ps, cutoff, epochs, batch_size, lr,
          weight_decay, hidden, clusters, schedule, optimizer, patience, seed, device, amp, workers, compile_,
          val_files, test_files, resume, init, overwrite, quiet, as_json):
    """Train a surrogate on DATA.h5 files (made by `eghn-md preprocess`).

    \b
    Examples:
      eghn-md train adk.h5 -o run --preset tiny
      eghn-md train adk.h5 -o run --preset paper --device cuda
      eghn-md train adk.h5 -o run --resume
      eghn-md train adk.h5 -o tuned --preset generative --init run/model.pt --config pushforward.yaml
      torchrun --nproc_per_node 4 -m cli.main train adk.h5 -o run --preset paper
    """
    from cli._progress import RichProgress
    from eghn_md.errors import UsageError
    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    if horizon is not None and horizon_ps is not None:
        raise UsageError(f"pass either --horizon (frames, got {horizon}) or --horizon-ps (ps, got {horizon_ps}), "
                         "not both")
    overrides = {
        "model": {"name": model, "hidden": hidden, "n_clusters": clusters},
        "data": {"horizon": horizon, "horizon_ps": horizon_ps, "cutoff": cutoff, "features": features},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                  "schedule": schedule, "optimizer": optimizer, "patience": patience, "seed": seed, "device": device,
                  "amp": amp, "workers": workers, "compile": compile_},
    }
    config = resolve_config(preset=preset, config_file=config_file, overrides=overrides)
    console = stderr_console(quiet)
    progress = None if quiet else RichProgress(console=console, description=config.model.get("name", "train"))
    metrics = train_run(list(data), out_dir, config=config, val=list(val_files), test=list(test_files),
                        resume=resume, resume_epochs=epochs, init=init, overwrite=overwrite, progress=progress,
                        log=plain_log(console))
    if int(os.environ.get("RANK", "0")) == 0:
        from eghn_md.export.figures import maybe_plot_run  # loss curves → RUN/loss.png; never fails the training

        maybe_plot_run(out_dir, log=plain_log(console))
    if as_json:
        emit_json(metrics)
    else:
        _summary(console, metrics, out_dir)


def _summary(console, metrics: dict, out_dir: str) -> None:
    from rich.table import Table

    dt = metrics.get("frame_dt_ps") or float("nan")
    span = f" = {metrics['horizon_ps']:.4g} ps, frames {dt:.4g} ps apart" if dt == dt else ""
    title = f"{metrics['model']} — MSE per coordinate at ΔT = {metrics['horizon_frames']} frames{span} [Å²]"
    table = Table(title=lit(title))
    table.add_column("split")
    table.add_column("windows", justify="right")
    for k in ("model", "static", "const. velocity"):
        table.add_column(k, justify="right")
    for split, v in metrics["splits"].items():
        table.add_row(split, str(v["windows"]), f"{v['model']:.4f}", f"{v['static']:.4f}",
                      f"{v['const_velocity']:.4f}")
    console.print(table)
    console.print(
        f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
        f"{metrics['train_samples_per_s']:.1f} train samples/s; wrote {lit(out_dir)}/model.pt"
    )
