"""Figures (matplotlib, headless Agg backend). Placeholder-free: functions return None when there is nothing to plot."""

from __future__ import annotations

__all__ = ["maybe_plot_rollout"]


def maybe_plot_rollout(summary: dict):
    """Plot RMSD vs time for a rollout with truth; returns the figure path or None (figures not available)."""
    try:
        from eghn_md.export.plots import plot_rollout_rmsd  # written by the figures issue
    except ImportError:
        return None
    return plot_rollout_rmsd(summary)
