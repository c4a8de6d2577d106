"""``eghn-md export``: pooling clusters for PyMOL/VMD (``clusters``) and predicted-trajectory conversion
(``trajectory``)."""

from __future__ import annotations

import click

from cli._common import (
    device_option,
    emit_json,
    json_option,
    lit,
    model_on_system_arguments,
    overwrite_option,
    quiet_option,
    stderr_console,
)


@click.group("export")
def export():
    """Export what a model learned (pooling clusters) or convert predicted trajectories."""


@export.command("clusters")
@model_on_system_arguments("Frame to analyse")
@click.option("--frames", "frame_range", metavar="A:B", default=None,
              help="Majority cluster over frames A..B−1 (B excluded; 'A:' runs to the end), with per-node stability.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="OUTDIR for clusters.pdb/.pml/.tcl/.csv/.png (created if missing).")
@click.option("--render", is_flag=True,
              help="Also render OUTDIR/clusters_pymol.png with headless PyMOL (pip install pymol-open-source).")
@click.option("--no-plot", is_flag=True, help="Skip clusters.png.")
@device_option
@overwrite_option
@quiet_option
@json_option
def clusters(model_path, topology, trajectories, frame, frame_range, out_dir, render, no_plot, device, overwrite,
             quiet, as_json):
    """Pooling clusters of MODEL (an EGHN) on a frame of TOPOLOGY + TRAJECTORY, for PyMOL and VMD (TOPOLOGY alone
    when it holds the frames). The model's horizon in ps is stepped as frames of this input.

    \b
    Writes OUTDIR/clusters.pdb (full-atom frame, B-factor = cluster id, occupancy = probability),
    clusters.pml (PyMOL), clusters.tcl (VMD), clusters.csv (node -> residue -> cluster, probability,
    stability, soft assignment) and clusters.png. Open with:  pymol OUTDIR/clusters.pml  or  vmd -e OUTDIR/clusters.tcl
    """
    from pathlib import Path

    from eghn_md.errors import UsageError
    from eghn_md.export.clusters import export_clusters
    from eghn_md.export.viewers import pymol_available, render_pymol

    if render and not pymol_available():
        raise UsageError("--render needs PyMOL: pip install pymol-open-source (extra: eghn-md[pymol])")
    out = Path(out_dir)
    if render and (out / "clusters_pymol.png").exists() and not overwrite:
        raise UsageError(f"output {str(out / 'clusters_pymol.png')!r} already exists; pass --overwrite to replace it")
    console = stderr_console(quiet)
    with console.status("computing the pooling assignment", spinner="dots") if not quiet else _null():
        summary = export_clusters(model_path, topology, list(trajectories), out, frame=frame, frames=frame_range,
                                  device=device, overwrite=overwrite, plot=not no_plot)
    if render:
        with console.status("rendering with PyMOL", spinner="dots") if not quiet else _null():
            summary["outputs"].append(str(render_pymol(out / "clusters.pml", out / "clusters_pymol.png")))
    if as_json:
        emit_json(summary)
        return
    for note in summary.get("notes", []):
        console.print(f"[cyan]Note:[/] {lit(note)}")
    fr = summary["frames"]
    what = f"frame {fr[0]}" if len(fr) == 1 else f"frames {fr[0]}..{fr[1]} (majority of {summary['n_frames']})"
    sizes = ", ".join(f"{k}: {n}" for k, n in summary["cluster_sizes"].items())
    console.print(f"{len(summary['clusters_used'])} of K = {summary['n_clusters']} clusters hold nodes on {what}; "
                  f"nodes per cluster {{{sizes}}}; mean probability {summary['mean_probability']:.3f}, "
                  f"mean stability {summary['mean_stability']:.3f}")
    for p in summary["outputs"]:
        console.print(f"  {lit(p)}")
    console.print(f"Open with:  pymol {lit(out / 'clusters.pml')}    or    vmd -e {lit(out / 'clusters.tcl')}")


@export.command("trajectory")
@click.argument("trajectory", metavar="PRED.dcd", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="PRED.xtc | PRED.trr | PRED.dcd | PRED.pdb (multi-model) | PRED.h5 (mdtraj HDF5).")
@click.option("--top", type=click.Path(dir_okay=False), default=None,
              help="Topology of the trajectory (default: PRED.pdb beside it).")
@click.option("--superpose", is_flag=True, help="Align every frame onto the first (Kabsch on all nodes) for viewing.")
@overwrite_option
@quiet_option
@json_option
def trajectory(trajectory, output, top, superpose, overwrite, quiet, as_json):
    """Convert a predicted trajectory (eghn-md rollout output) to XTC, multi-model PDB or mdtraj HDF5."""
    from eghn_md.export.trajectory import export_trajectory

    summary = export_trajectory(trajectory, output, top=top, superpose=superpose, overwrite=overwrite)
    if as_json:
        emit_json(summary)
        return
    stderr_console(quiet).print(
        f"Wrote {summary['n_frames']} frames × {summary['n_atoms']} atoms ({summary['dt_ps']:.4g} ps apart"
        f"{', superposed on the first' if superpose else ''}) to {lit(summary['output'])}")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
