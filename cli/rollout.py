"""``eghn-md rollout``: autoregressive prediction written as DCD + PDB (open with ``vmd pred.pdb pred.dcd``)."""

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
    validity_line,
)


@click.command("rollout")
@model_on_system_arguments("Start frame")
@click.option("--steps", type=click.IntRange(min=1), required=True, help="Number of predicted frames (each ΔT).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PRED.dcd (PRED.pdb beside it).")
@click.option("--truth", is_flag=True, help="Also write the true frames (PRED_truth.dcd) and PRED_rmsd.csv.")
@click.option("--constrain", is_flag=True,
              help="Project every predicted frame onto the start frame's bond lengths and push clashing pairs apart "
                   "(equivariant, SHAKE-like). An aid for viewing, not a fix: the validity report says how the model "
                   "does without it.")
@click.option("--strict", is_flag=True,
              help="Exit with status 1 when the divergence guard stops the rollout (the frames before are written).")
@click.option("--compile", "compile_", is_flag=True,
              help="Run the model through torch.compile (dynamic shapes); pays off for long rollouts.")
@device_option
@overwrite_option
@quiet_option
@json_option
def rollout(model_path, topology, trajectories, frame, steps, output, truth, constrain, strict, compile_, device,
            overwrite, quiet, as_json):
    """Roll MODEL out from a frame of TOPOLOGY + TRAJECTORY for --steps horizons (TOPOLOGY alone when it holds the
    frames: multi-model PDB, mdtraj .h5). A step is the model's horizon in ps, as frames of this input."""
    from cli._progress import RichProgress
    from eghn_md.rollout.rollout import rollout_run

    console = stderr_console(quiet)
    if frame is None:  # the model's horizon in frames of this input
        from eghn_md.data.timebase import input_horizon_frames
        from eghn_md.train.checkpoint import load_checkpoint

        frame = input_horizon_frames(load_checkpoint(model_path), topology, list(trajectories))
    summary = rollout_run(model_path, topology, list(trajectories), output, frame=frame, steps=steps, truth=truth,
                          constrain=constrain, compile=compile_, device=device, overwrite=overwrite,
                          progress=None if quiet else RichProgress(console=console, description="rollout",
                                                                   transient=True))
    if truth:
        from eghn_md.export.figures import maybe_plot_rollout

        fig = maybe_plot_rollout(summary)
        if fig:
            summary["outputs"].append(fig)
    if as_json:
        emit_json(summary)
    else:
        _print_summary(console, summary, frame=frame, output=output, truth=truth)
    if strict and summary["stopped"]:
        from eghn_md.errors import DivergenceError

        raise DivergenceError(f"rollout stopped at step {summary['stopped']['step']}: {summary['stopped']['reason']}")


def _print_summary(console, summary: dict, *, frame: int, output: str, truth: bool) -> None:
    done = summary["steps_done"]
    for note in summary.get("notes", []):
        console.print(f"[cyan]Note:[/] {lit(note)}")
    console.print(f"Wrote {done} predicted frames ({summary['step_ps']:.4g} ps apart, "
                  f"{summary['horizon_frames']} input frames per step) from frame {frame}:")
    for p in summary["outputs"]:
        console.print(f"  {lit(p)}")
    if summary["stopped"]:
        s = summary["stopped"]
        console.print(f"[yellow]warning:[/] the divergence guard stopped the rollout at step {s['step']}: "
                      f"{lit(s['reason'])}; the {done} frames before it were written")
    console.print(validity_line(summary["validity"]))
    if truth and done:
        r = summary["final_rmsd_A"]
        console.print(f"RMSD to truth after {done} steps: model {r['model']:.3f} Å, static {r['static']:.3f} Å, "
                      f"constant velocity {r['const_velocity']:.3f} Å")
    pdb, output = lit(summary["outputs"][1]), lit(output)
    console.print(f"Open with:  vmd {pdb} {output}    or    pymol {pdb} -d 'load_traj {output}'")

