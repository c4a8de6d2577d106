"""``eghn-md preprocess``: topology + trajectories → residue-graph dataset (HDF5)."""

from __future__ import annotations

import click

from cli._common import emit_json, json_option, lit, overwrite_option, quiet_option, stderr_console

__all__ = ["preprocess"]


@click.command("preprocess")
@click.argument("topology", type=click.Path(dir_okay=True))
@click.argument("trajectories", nargs=-1, required=False, type=click.Path(dir_okay=True))
@click.option("-o", "--output", required=True, type=click.Path(), help="Dataset file to write (HDF5, e.g. data.h5).")
@click.option(
    "--select",
    "selection",
    default="protein and name CA",
    show_default=True,
    help="MDAnalysis selection of the node atoms (e.g. 'backbone' for N, CA, C, O nodes).",
)
@click.option(
    "--stride", default=1, show_default=True, type=int, help="Keep every N-th frame, starting with the first."
)
@overwrite_option
@quiet_option
@json_option
def preprocess(
    topology: str,
    trajectories: tuple[str, ...],
    output: str,
    selection: str,
    stride: int,
    overwrite: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Turn TOPOLOGY + TRAJECTORIES into a residue-graph dataset (one group per trajectory).

    TOPOLOGY alone when it holds the frames (multi-model PDB, GRO, mdtraj .h5).

    \b
    Formats: anything MDAnalysis reads (PDB, PSF+DCD, GRO+XTC, TPR+TRR, PRMTOP+NetCDF/MDCRD, multi-model PDB …)
    and mdtraj HDF5 (.h5) as topology and/or trajectory. Positions are stored in Å, times in ps.

    \b
    Example:
      eghn-md preprocess adk.psf adk.dcd adk2.dcd -o adk.h5 --select backbone --stride 2
      eghn-md preprocess models.pdb -o models.h5
    """
    from cli._progress import RichProgress
    from eghn_md.data.preprocess import preprocess as run

    summary = run(topology, list(trajectories), output, select=selection, stride=stride, overwrite=overwrite,
                  progress=None if quiet else RichProgress(description="preprocess"))
    if as_json:
        emit_json(summary)
    console = stderr_console(quiet)
    for w in summary.get("warnings", []):
        console.print(f"[yellow]Warning:[/] {lit(w)}")
    if not as_json:
        from cli.info import print_dataset_summary

        print_dataset_summary(summary, console)
        console.print(f"Wrote {lit(summary['path'])} in {summary['elapsed_s']:.2f} s "
                      f"({summary['frames_per_s']} frames/s).")
