"""Figures made automatically at the end of other commands: never fail the command that produced the data.

``train`` calls :func:`maybe_plot_run` and ``rollout --truth`` calls :func:`maybe_plot_rollout`; both return the
written paths (or None) and turn any plotting problem into a warning (logged through ``log`` when given), because a
figure must never make a successful training or rollout fail. The figures themselves live in
:mod:`eghn_md.export.plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from eghn_md.errors import warn

__all__ = ["maybe_plot_rollout", "maybe_plot_rollout_curves", "maybe_plot_run"]


def maybe_plot_rollout(summary: dict, log: Optional[Callable[[str], None]] = None) -> Optional[str]:
    """RMSD vs time of a rollout with truth (``PRED_rmsd.png``); the path, or None if it could not be made."""
    try:
        from eghn_md.export.plots import plot_rollout_rmsd

        return plot_rollout_rmsd(summary)
    except Exception as exc:  # noqa: BLE001 - a figure must not fail the rollout
        warn(f"warning: rollout figure not written ({type(exc).__name__}: {exc})", log)
        return None


def maybe_plot_rollout_curves(csv_path: str | Path, log: Optional[Callable[[str], None]] = None) -> Optional[str]:
    """RMSD vs step of ``evaluate --rollout`` (``rollout_<split>.png`` beside its CSV), or None with a warning."""
    try:
        from eghn_md.export.plots import plot_rmsd_csv

        return plot_rmsd_csv(csv_path, title=f"Rollouts ({Path(csv_path).stem}), mean RMSD without superposition")
    except Exception as exc:  # noqa: BLE001 - a figure must not fail the evaluation
        warn(f"warning: rollout figure not written ({type(exc).__name__}: {exc})", log)
        return None


def maybe_plot_run(run_dir: str | Path, fmt: str = "png",
                   log: Optional[Callable[[str], None]] = None) -> Optional[list[str]]:
    """The figures of a run directory (:func:`eghn_md.export.plots.plot_run`); None if they could not be made."""
    try:
        from eghn_md.export.plots import plot_run

        return plot_run(run_dir, fmt)
    except Exception as exc:  # noqa: BLE001 - a figure must not fail the training
        warn(f"warning: figures of {str(run_dir)!r} not written ({type(exc).__name__}: {exc})", log)
        return None
