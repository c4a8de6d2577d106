"""What a run of the AdK equilibrium benchmark holds: states (populations, transitions, dwell times), RMSD to the two
crystal structures, the Cα motion per frame spacing, and the project's validity report (breaks, clashes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from eghn_md.rollout.states import state_series, state_summary, two_states
from eghn_md.rollout.validity import validity_report

__all__ = ["LAGS", "analyse_run", "displacement", "rmsd_to"]

LAGS = (1, 2, 5, 10)  #: frame lags whose RMS displacement the summary reports


def rmsd_to(frames: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(T,) [Å] RMSD of each frame of ``frames`` (T, N, 3) [Å] to ``ref`` (N, 3) [Å] after optimal superposition."""
    from MDAnalysis.analysis.rms import rmsd

    ref = np.asarray(ref, dtype=np.float64)
    return np.array([rmsd(f.astype(np.float64), ref, center=True, superposition=True) for f in frames])


def displacement(frames: np.ndarray, lag: int) -> float:
    """[Å] RMS over nodes and frame pairs of the Cα displacement between frames ``lag`` apart (lab frame, as a
    surrogate model sees it) of ``frames`` (T, N, 3) [Å]; NaN when the run is shorter than ``lag`` + 1 frames."""
    if len(frames) <= lag:
        return float("nan")
    d = frames[lag:].astype(np.float64) - frames[:-lag]
    return float(np.sqrt((d ** 2).sum(axis=2).mean()))


def _stats(x: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(x.mean()), 3), "min": round(float(x.min()), 3), "max": round(float(x.max()), 3)}


def _mean_where(x: np.ndarray, mask: np.ndarray) -> float | None:
    return round(float(x[mask].mean()), 3) if mask.any() else None


def analyse_run(frames: np.ndarray, ref: dict[str, np.ndarray], *, dt_ps: float) -> dict[str, Any]:
    """Summary of a run.

    Args:
        frames: (T, N, 3) [Å] the Cα trajectory.
        ref: ``{"closed": (N, 3), "open": (N, 3)}`` [Å] the two crystal structures.
        dt_ps: [ps] time between frames.

    Returns:
        JSON-able ``states`` (definition and :func:`state_summary`), ``rmsd_A`` (to each structure, to the
        nearer one, and the mean RMSD to each structure over the frames in its state), ``displacement_A`` (RMS
        per lag in frames), ``validity`` (:meth:`ValidityReport.summary`).
    """
    states = two_states(ref_a=ref["closed"], ref_b=ref["open"], names=("closed", "open"))
    series = state_series(states, frames)
    rc, ro = rmsd_to(frames, ref["closed"]), rmsd_to(frames, ref["open"])
    n = frames.shape[1]
    bonds = np.stack([np.arange(n - 1), np.arange(1, n)])
    validity = validity_report(frames, bonds=bonds, node_kind="residue").summary()
    return {
        "states": {"definition": states.describe(), **state_summary(series, dt_ps=dt_ps, names=states.names)},
        "rmsd_A": {"closed": _stats(rc), "open": _stats(ro), "nearer": _stats(np.minimum(rc, ro)),
                   "own_state": {"closed": _mean_where(rc, series == 0), "open": _mean_where(ro, series == 1)}},
        "displacement_A": {f"lag_{k}": round(displacement(frames, k), 3) for k in LAGS},
        "validity": validity,
    }
