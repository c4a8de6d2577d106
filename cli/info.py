"""``eghn-md info``: summarise a dataset (.h5) or a trained model checkpoint (.pt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from cli._common import emit_json, json_option, lit, stdout_console

__all__ = ["info", "print_dataset_summary", "print_mapping"]


@click.command("info")
@click.argument("path", type=click.Path())
@json_option
def info(path: str, as_json: bool) -> None:
    """Summarise PATH: a dataset from `eghn-md preprocess` (.h5) or a model checkpoint (.pt)."""
    if Path(path).suffix.lower() == ".pt":
        if not Path(path).exists():
            from eghn_md.errors import UsageError

            raise UsageError(f"checkpoint file {path!r} does not exist")
        from eghn_md.train.checkpoint import describe

        summary = describe(path)
        if as_json:
            emit_json(summary)
        else:
            print_mapping(summary, stdout_console(), title=f"Model {path}")
        return

    from eghn_md.data.dataset import Dataset

    with Dataset(path) as ds:
        summary = ds.summary()
    if as_json:
        emit_json(summary)
    else:
        print_dataset_summary(summary, stdout_console())


def _fmt(v: Any) -> str:
    """A table cell, escaped: names, segments and selections come from the user's files."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.6g}"
    return lit(v)


def print_dataset_summary(s: dict[str, Any], console: Console) -> None:
    """A table of the system and one row per trajectory."""
    head = Table(title=f"Dataset {lit(s['path'])}", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column()
    rows = [
        ("format version", f"{s['format_version']} (eghn-md {s['eghn_md_version']})"),
        ("topology", s["topology"]),
        ("selection", s["selection"]),
        ("nodes", f"{s['n_nodes']} ({s['node_level']} level, charges: {'yes' if s['has_charges'] else 'no'})"),
        ("bonds", f"{s['n_bonds']} ({s['bonds_source']})"),
        ("chains", f"{s['n_chains']}, {s['n_gaps']} gap(s) inside them" if "n_chains" in s else None),
        *[("", line) for line in s.get("chains", [])],
        ("trajectories", f"{s['n_trajectories']}, {s['n_frames_total']} frames in total"),
        ("units", f"{s['length_unit']}, {s['time_unit']}"),
    ]
    for k, v in rows:
        head.add_row(k, _fmt(v))
    console.print(head)
    table = Table(title="Trajectories", title_justify="left")
    for col, just in [("name", "left"), ("source", "left"), ("frames", "right"), ("stride", "right"),
                      ("time step (ps)", "right"), ("start (ps)", "right"), ("end (ps)", "right")]:
        table.add_column(col, justify=just)
    for t in s["trajectories"]:
        table.add_row(lit(t["name"]), lit(t["source"]), str(t["n_frames"]), str(t["stride"]), _fmt(t["time_step_ps"]),
                      _fmt(t["t_start_ps"]), _fmt(t["t_end_ps"]))
    console.print(table)


def print_mapping(d: dict[str, Any], console: Console, *, title: str = "") -> None:
    """A two-column table of a (possibly nested) dict; nested keys are dotted."""
    table = Table(title=lit(title) if title else None, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for k, v in _flatten(d):
        table.add_row(lit(k), _fmt(v))
    console.print(table)


def _flatten(d: dict[str, Any], prefix: str = ""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        else:
            yield key, v
