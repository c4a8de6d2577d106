"""``eghn-md plot``: figures of a training run, a rollout (``PRED_rmsd.csv``) or per-residue errors."""

from __future__ import annotations

import click

from cli._common import emit_json, json_option, lit, quiet_option, stderr_console


@click.command("plot")
@click.argument("paths", metavar="RUN|FILE.csv...", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf"]), default="png", show_default=True,
              help="Figure file format.")
@quiet_option
@json_option
def plot(paths, fmt, quiet, as_json):
    """Figures beside their data.

    \b
    RUN (a train output directory): loss.<fmt> from history.csv (validation baselines from metrics.json), and
    one figure per *_rmsd.csv and errors_*.csv inside it. A PRED_rmsd.csv (rollout --truth): RMSD vs time against
    the truth and the baselines. An errors_<split>.csv (evaluate): per-residue error along the sequence.
    """
    from pathlib import Path

    from eghn_md.errors import UsageError
    from eghn_md.export.plots import plot_errors_csv, plot_rmsd_csv, plot_run

    written = []
    for p in map(Path, paths):
        if p.is_dir():
            written += plot_run(p, fmt)
        elif p.name.endswith("_rmsd.csv"):
            written.append(plot_rmsd_csv(p, fmt=fmt))
        elif p.name.startswith("errors_") and p.suffix == ".csv":
            written.append(plot_errors_csv(p, fmt=fmt))
        else:
            raise UsageError(f"cannot plot {str(p)!r}: pass a run directory, a PRED_rmsd.csv or an errors_*.csv")
    if as_json:
        emit_json({"outputs": written})
        return
    console = stderr_console(quiet)
    for w in written:
        console.print(f"  {lit(w)}")
