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
@click.option("--replicas", type=click.IntRange(min=1), default=None,
              help="Roll out an ensemble of R replicas of a generative model, batched in one forward pass per step: "
                   "writes PRED.pdb and PRED_r0.dcd … PRED_r{R-1}.dcd, the validity per replica and over the "
                   "ensemble.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of a generative model's sampling noise (the same seed gives the same trajectories).")
@click.option("--sample-steps", type=click.IntRange(min=1), default=None,
              help="Integration steps per sampled frame of a generative model (default: the model's own; fewer is "
                   "faster).")
@click.option("--source-scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="λ on a generative model's source noise when sampling (default: the model's own, 1 as trained; "
                   "below 1 the samples lie nearer the conditional mean: low-temperature sampling).")
@device_option
@overwrite_option
@quiet_option
@json_option
def rollout(model_path, topology, trajectories, frame, steps, output, truth, constrain, strict, compile_, replicas,
            seed, sample_steps, source_scale, device, overwrite, quiet, as_json):
    """Roll MODEL out from a frame of TOPOLOGY + TRAJECTORY for --steps horizons (TOPOLOGY alone when it holds the
    frames: multi-model PDB, mdtraj .h5). A step is the model's horizon in ps, as frames of this input. A generative
    model (train --preset generative) samples every step and starts from one structure (a single PDB)."""
    from cli._progress import RichProgress
    from eghn_md.rollout.rollout import rollout_run

    console = stderr_console(quiet)
    if frame is None:  # frame 0 for a model that reads one frame, else the model's horizon in frames of this input
        from eghn_md.rollout.start import default_start_frame
        from eghn_md.train.checkpoint import load_checkpoint

        frame = default_start_frame(load_checkpoint(model_path), topology, list(trajectories))
    summary = rollout_run(model_path, topology, list(trajectories), output, frame=frame, steps=steps, truth=truth,
                          constrain=constrain, compile=compile_, device=device, overwrite=overwrite,
                          replicas=replicas, seed=seed, sample_steps=sample_steps, source_scale=source_scale,
                          progress=None if quiet else RichProgress(console=console, description="rollout",
                                                                   transient=True))
    if "replicas" in summary:
        _finish_sampled(console, summary, frame=frame, output=output, as_json=as_json, strict=strict)
        return
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



def _finish_sampled(console, summary: dict, *, frame: int, output: str, as_json: bool, strict: bool) -> None:
    """Summary of a sampled rollout (a generative model; an ensemble with --replicas)."""
    if as_json:
        emit_json(summary)
    else:
        for note in summary.get("notes", []):
            console.print(f"[cyan]Note:[/] {note}")
        r, done = summary["replicas"], summary["steps_done"]
        console.print(f"Wrote {r} replica(s) of {min(done)}–{max(done)} sampled frames ({summary['step_ps']:.4g} ps "
                      f"apart, seed {summary['seed']}) from frame {frame}:")
        for p in summary["outputs"]:
            console.print(f"  {p}")
        for k, s in enumerate(summary["stopped"]):
            if s:
                console.print(f"[yellow]warning:[/] the divergence guard stopped replica {k} at step {s['step']}: "
                              f"{s['reason']}")
        console.print(validity_line(summary["validity"]) + (f" (all {r} replicas)" if r > 1 else ""))
        pdb = next(p for p in summary["outputs"] if p.endswith(".pdb"))
        first = next(p for p in summary["outputs"] if p.endswith(".dcd"))
        console.print(f"Open with:  vmd {pdb} {first}    or    pymol {pdb} -d 'load_traj {first}'")
    stopped = [s for s in summary["stopped"] if s]
    if strict and stopped:
        from eghn_md.errors import DivergenceError

        raise DivergenceError(f"the divergence guard stopped {len(stopped)} of {summary['replicas']} replica(s), "
                              f"the first at step {stopped[0]['step']}: {stopped[0]['reason']}")
