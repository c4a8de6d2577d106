"""Helpers shared by the command modules: consoles, JSON output, common options."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click
from rich.console import Console
from rich.markup import escape

from eghn_md.choices import DEVICES

__all__ = ["stderr_console", "stdout_console", "lit", "plain_log", "emit_json", "quiet_option", "json_option",
           "overwrite_option", "device_option", "model_on_system_arguments", "PARAM_FLAGS", "error_line"]

#: the library's parameter names → this command line's flags: library errors name parameters
#: (:class:`eghn_md.errors.EghnError`), the user reads the flag
PARAM_FLAGS = {
    "batch_size": "--batch-size", "compile": "--compile", "config_file": "--config", "device": "--device",
    "epochs": "--epochs", "features": "--features", "fmt": "--format", "frame": "--frame", "frames": "--frames",
    "hidden": "--hidden", "horizon": "--horizon", "horizon_ps": "--horizon-ps", "lr": "--lr",
    "n_clusters": "--clusters", "overwrite": "--overwrite", "preset": "--preset", "replicas": "--replicas",
    "constrain": "--constrain", "resume": "--resume", "select": "--select", "split": "--split", "states": "--states",
    "seed": "--seed", "start": "--start", "steps": "--steps", "stride": "--stride", "test": "--test",
    "top": "--top", "topology": "--topology", "trajectory": "--trajectory", "truth": "--truth", "val": "--val",
    "init": "--init", "source_scale": "--source-scale", "cutoff": "--cutoff", "min_fraction": "--min-fraction",
    "collective": "--collective",
    "rounds": "--rounds", "weight": "--weight", "samples": "--samples", "average": "--average",
    "sample_steps": "--sample-steps", "calibrate": "--calibrate",
}


def error_line(exc) -> str:
    """The one line the command line prints for a library error: its message with flags for parameter names."""
    return exc.message(PARAM_FLAGS)


def stderr_console(quiet: bool = False) -> Console:
    """Console for progress and human summaries: stderr, so that ``--json`` output on stdout stays clean.

    Every console of the command line is made here (or by :func:`stdout_console`) without emoji codes, so text
    from a user's file such as the segment:chain label ``4AKE:X:`` is never read as one; what such text brings in
    markup is escaped by :func:`lit` (or printed through :func:`plain_log`).
    """
    return Console(stderr=True, quiet=quiet, highlight=False, emoji=False)


def stdout_console() -> Console:
    """Console for a command whose summary is its output (``info``); no emoji codes, no highlighting."""
    return Console(highlight=False, emoji=False)


def lit(value: Any) -> str:
    """``value`` as text that rich prints literally: file names, segments, chains, selections, library messages
    quoting them (``[/b]`` stays ``[/b]``)."""
    return escape(str(value))


def plain_log(console: Console) -> Callable[[str], None]:
    """A ``log`` callback for library functions: their lines quote user text, so rich prints them as plain text."""

    def log(line: str) -> None:
        console.print(line, markup=False)

    return log


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=_default) + "\n")
    sys.stdout.flush()


def _default(o: Any):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or summaries (errors still shown).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary on stdout.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace existing output files.")
device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Where to run: 'auto' picks CUDA when available.",
)


def model_on_system_arguments(frame_help: str):
    """``MODEL TOPOLOGY [TRAJECTORY...]`` and ``--frame``: the inputs of a command that applies a model to a system
    (``rollout``, ``export clusters``); ``frame_help`` says what the frame is for."""
    decorators = [
        click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False)),
        click.argument("topology", type=click.Path(dir_okay=False)),
        click.argument("trajectories", metavar="[TRAJECTORY...]", nargs=-1, required=False,
                       type=click.Path(dir_okay=False)),
        click.option("--frame", type=click.IntRange(min=0), default=None,
                     help=f"{frame_help} (0-based; needs one horizon of history). Default: the model's horizon."),
    ]

    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def validity_line(v: dict) -> str:
    """One line of a rollout validity summary (:meth:`eghn_md.rollout.validity.ValidityReport.summary`)."""
    n = v["n_frames"]
    rg = v["rg_ratio"]
    ok = v["frames_with_break"] == 0 and v["frames_with_clash"] == 0
    head = "[green]valid[/]" if ok else "[red]invalid[/]"
    return (f"Validity ({head}): {v['frames_with_break']}/{n} frames with a chain break "
            f"(> {v['thresholds_A']['break']:g} Å), {v['frames_with_clash']}/{n} with a clash "
            f"(< {v['thresholds_A']['clash']:g} Å), max bond deviation {v['max_bond_dev_A']:.2f} Å, "
            f"Rg {rg['min']:.2f}–{rg['max']:.2f}× the start frame's")
