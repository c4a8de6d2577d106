"""``eghn-md fit-bias``: fit a generative model's pair bias so its ensembles keep the training run's pair
distances (iterative Boltzmann inversion; :mod:`eghn_md.rollout.pair_bias_fit`).

  eghn-md fit-bias run/model.pt data.h5 -o run/model_bias.pt
  eghn-md rollout run/model_bias.pt start.pdb --steps 2000 --replicas 8 -o pred.dcd
"""

from __future__ import annotations

import click

from cli._common import device_option, emit_json, json_option, lit, overwrite_option, quiet_option, stderr_console
from eghn_md.rollout.pair_bias_fit import FitBiasConfig

_D = FitBiasConfig()  # the defaults' one home


@click.command("fit-bias")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("data", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The checkpoint with the bias.")
@click.option("--rounds", type=click.IntRange(min=1), default=_D.rounds, show_default=True,
              help="Corrections, each from one ensemble (one more ensemble measures the result).")
@click.option("--replicas", type=click.IntRange(min=1), default=_D.replicas, show_default=True,
              help="Replicas of each round's ensemble (round 0 starts them from evenly spaced training frames, "
                   "every later round continues them).")
@click.option("--steps", type=click.IntRange(min=1), default=_D.steps, show_default=True,
              help="Steps of each replica per round.")
@click.option("--weight", type=float, default=_D.weight, show_default=True,
              help="Step of each correction (1: a full Boltzmann inversion of each pair on its own).")
@click.option("--cutoff", type=float, default=_D.cutoff, show_default=True,
              help="[Å] Bias pairs: closer than this in at least --min-fraction of the training frames.")
@click.option("--min-fraction", type=float, default=_D.min_fraction, show_default=True,
              help="Bias pairs: the fraction of the training frames in which they are closer than --cutoff.")
@click.option("--seed", type=int, default=_D.seed, show_default=True, help="Seed of round 0's ensemble (round k: +k).")
@click.option("--collective/--no-collective", default=_D.collective, show_default=True,
              help="Also fit a table on the pairs' leading contact component (the slow states' populations).")
@click.option("--average", type=click.IntRange(min=1), default=_D.average, show_default=True,
              help="Write the mean of the tables after the last N corrections (Polyak-Ruppert averaging of the "
                   "rounds' sampling noise; 1: the last correction's tables).")
@click.option("--source-scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Sample the ensembles with this source scale (lambda) and keep it in the written model "
                   "(default: the model's own).")
@overwrite_option
@device_option
@quiet_option
@json_option
def fit_bias(model_path, data, output, rounds, replicas, steps, weight, cutoff, min_fraction, seed, collective,
             average, source_scale, overwrite, device, quiet, as_json):
    """Fit the pair bias of a generative MODEL on the training split of DATA.h5 (its own split fractions) and write
    MODEL with the bias to --output: the sampler then keeps the training run's pair-distance distributions."""
    from eghn_md.rollout.pair_bias_fit import fit_bias_run

    config = FitBiasConfig(rounds=rounds, replicas=replicas, steps=steps, weight=weight, seed=seed, cutoff=cutoff,
                           min_fraction=min_fraction, collective=collective, average=average,
                           source_scale=source_scale)
    console = stderr_console(quiet)
    progress = None
    if not quiet:
        from cli._progress import RichProgress

        progress = RichProgress(console=console, description="pair bias rounds")
    summary = fit_bias_run(model_path, list(data), output, config=config, overwrite=overwrite, device=device,
                           progress=progress)
    if as_json:
        emit_json(summary)
        return
    if quiet:
        return
    from rich.table import Table

    t = Table(title=lit(f"pair bias of {summary['pairs']} pairs, fitted on {summary['reference_frames']} frames"))
    for col in ("round", "mismatch (mean TV)", "largest", "collective", "|U| max [kT]", "stopped replicas"):
        t.add_column(col, justify="right")
    for r in summary["rounds"]:
        cv = f"{r['collective_mismatch']:.4f}" if "collective_mismatch" in r else "-"
        t.add_row(str(r["round"]), f"{r['mismatch_mean']:.4f}", f"{r['mismatch_max']:.3f}", cv,
                  f"{r['table_max_kT']:.2f}", str(r["stopped"]))
    console.print(t)
    console.print(f"wrote {lit(summary['output'])}")
