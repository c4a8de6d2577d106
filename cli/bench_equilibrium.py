"""``eghn-md bench adk-equilibrium``: the dual-basin AdK simulation (OpenMM) that makes an equilibrium reference.

\b
  eghn-md bench adk-equilibrium generate -o data/adk-eq --seed 1
  eghn-md preprocess data/adk-eq/adk_cg.pdb data/adk-eq/run-1.dcd -o adk-eq-1.h5
"""

from __future__ import annotations

import click

from cli._common import emit_json, json_option, overwrite_option, quiet_option, stderr_console


@click.group("adk-equilibrium")
def adk_equilibrium() -> None:
    """Equilibrium AdK: a dual-basin Cα structure-based model with reversible closed ↔ open transitions."""


@adk_equilibrium.command()
@click.option("--output", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for adk_cg.pdb, closed.pdb, open.pdb, run-SEED.dcd and run-SEED.json (created).")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Frames to save [default: 12500].")
@click.option("--seed", type=click.IntRange(min=0, max=2**31 - 2), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads of OpenMM (the same thread count reproduces a seed's trajectory).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Temperature [K] (default: the tuned one; see the docs).")
@click.option("--steps-per-frame", type=click.IntRange(min=1), default=None,
              help="Integration steps between saved frames (default: the tuned spacing).")
@click.option("--start", type=click.Choice(["closed", "open"]), default="closed", show_default=True,
              help="Crystal structure the run starts from.")
@overwrite_option
@json_option
@quiet_option
def generate(out_dir, frames, seed, threads, temperature, steps_per_frame, start, overwrite, as_json, quiet) -> None:
    """Simulate the model and write the PDBs, DCD and JSON summary to OUTPUT (resumes an interrupted run)."""
    from pathlib import Path

    from eghn_md.benchmarks.adk_equilibrium import AdkEquilibriumConfig, require_openmm
    from eghn_md.benchmarks.adk_equilibrium import generate as run

    require_openmm()
    overrides = {"n_frames": frames, "temperature": temperature, "steps_per_frame": steps_per_frame}
    config = AdkEquilibriumConfig(seed=seed, threads=threads, start=start,
                                  **{k: v for k, v in overrides.items() if v is not None})
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    console = stderr_console(quiet)
    progress = None
    if not quiet:
        from cli._progress import RichProgress

        progress = RichProgress(console=console, description=f"AdK seed {seed}")
    summary = run(out_dir, config, overwrite=overwrite, **({"progress": progress} if progress else {}))
    if as_json:
        emit_json(summary)
        return
    st, v = summary["states"], summary["validity"]
    p_open, se = st["population"]["open"], st.get("population_se")
    pop = "-" if p_open is None else f"{p_open:.2f}" + ("" if se is None else f" ± {se:.2f}")
    console.print(f"wrote {summary['files']['trajectory']}: {summary['n_frames']} frames, "
                  f"{summary['frame_dt_ps']:g} ps apart; transitions closed→open {st['transitions']['closed_to_open']},"
                  f" open→closed {st['transitions']['open_to_closed']}; population open "
                  f"{pop}; {v['frames_with_break']} frames with a break, "
                  f"{v['frames_with_clash']} with a clash; {summary['wall_time_s']:.0f} s")
