"""Physical time of a model's horizon: from ps to a number of frames of whatever trajectory it is applied to.

A model learns the map x(t) → x(t + ΔT) for a physical ΔT (``stats["horizon_ps"]`` in its checkpoint). Applied to a
trajectory whose frames are ``frame_dt_ps`` apart, one step spans ``ΔT / frame_dt_ps`` frames; this must be a whole
number (within :data:`RELATIVE_TOLERANCE`, which absorbs the float32 rounding of time steps stored in DCD/XTC
headers), otherwise the model cannot be applied and the error names both spacings.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

from eghn_md.errors import DataError, UsageError

__all__ = ["RELATIVE_TOLERANCE", "frames_per_horizon", "frame_spacing", "common_spacing", "model_horizon_frames",
           "system_frame_dt", "input_horizon_frames"]

RELATIVE_TOLERANCE = 1e-3
"""Relative slack of "integer multiple" and "evenly spaced" checks (DCD stores its time step as float32 AKMA)."""


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def frames_per_horizon(
    horizon_ps: float, frame_dt_ps: float, *, what: str, horizon: str = "the model's horizon"
) -> int:
    """Number of frames one step of ``horizon_ps`` spans on frames ``frame_dt_ps`` apart.

    Args:
        horizon_ps: [ps] the model's horizon ΔT.
        frame_dt_ps: [ps] spacing of the frames the model is applied to.
        what: the frames in the caller's terms, e.g. ``"dataset 'adk.h5'"``.
        horizon: the horizon in the caller's terms (``"`horizon_ps`"`` when training: the parameter, which the
            command line shows as its flag).

    Raises:
        DataError: the horizon is not a whole multiple of the spacing (one line naming both spacings).
    """
    if not (math.isfinite(horizon_ps) and horizon_ps > 0):
        raise DataError(f"{horizon} {horizon_ps!r} ps is not a positive time", params=("horizon_ps",))
    if not (math.isfinite(frame_dt_ps) and frame_dt_ps > 0):
        raise DataError(f"{what} has no usable frame spacing ({frame_dt_ps!r} ps between frames)")
    ratio = horizon_ps / frame_dt_ps
    n = int(round(ratio))
    if n < 1 or abs(ratio - n) > RELATIVE_TOLERANCE * max(ratio, 1.0):
        examples = ", ".join(_fmt(horizon_ps / k) for k in (1, 2, 3, 5))
        raise DataError(
            f"{what} has frames {_fmt(frame_dt_ps)} ps apart but {horizon} is {_fmt(horizon_ps)} ps, "
            f"not a whole number of frames ({_fmt(ratio)}); use frames {_fmt(horizon_ps)}/n ps apart "
            f"(e.g. {examples} ps)", params=("horizon_ps",)
        )
    return n


def frame_spacing(times: Sequence[float] | np.ndarray, *, what: str) -> float:
    """The spacing [ps] of evenly spaced frame ``times`` (T,) [ps].

    Raises:
        DataError: fewer than two frames, times that do not increase, or uneven spacing (e.g. concatenated runs
            saved at different intervals).
    """
    t = np.asarray(times, dtype=np.float64)
    if t.size < 2:
        raise DataError(f"{what} has {t.size} frame(s); a frame spacing needs at least 2")
    d = np.diff(t)
    dt = float(np.median(d))
    if not (np.isfinite(d).all() and dt > 0):
        raise DataError(f"{what}: frame times do not increase (median step {_fmt(dt)} ps); no usable frame spacing")
    bad = np.flatnonzero(np.abs(d - dt) > RELATIVE_TOLERANCE * dt)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{what}: frames are not evenly spaced ({_fmt(d[i])} ps between frames {i} and {i + 1}, "
            f"{_fmt(dt)} ps elsewhere); split it into files of one spacing"
        )
    return dt


_MIXED_REMEDY = ("a horizon in frames would mean different times in each: give the horizon in ps with "
                 "`horizon_ps` (a multiple of both), or preprocess them with strides that give one spacing")


def common_spacing(spacings: Mapping[str, float], *, remedy: str = _MIXED_REMEDY) -> float:
    """The one spacing [ps] shared by every trajectory of ``spacings`` (``{description: dt [ps]}``).

    Raises:
        UsageError: two trajectories differ; the message ends with ``remedy``.
    """
    items = list(spacings.items())
    if not items:
        return float("nan")
    first, dt0 = items[0]
    for name, dt in items[1:]:
        if abs(dt - dt0) > RELATIVE_TOLERANCE * max(dt, dt0):
            raise UsageError(
                f"{name} has frames {_fmt(dt)} ps apart but {first} has {_fmt(dt0)} ps; {remedy}",
                params=("horizon_ps",),
            )
    return dt0


def model_horizon_frames(
    stats: Mapping, data_config: Mapping, frame_dt_ps: float, *, what: str
) -> tuple[int, Optional[str]]:
    """Frames per model step on frames ``frame_dt_ps`` [ps] apart, and a note when that differs from training.

    ``stats`` / ``data_config`` are a checkpoint's. Checkpoints without a usable ``horizon_ps`` (older files, or
    data without times) keep their horizon in frames.
    """
    trained = int(data_config["horizon"])
    horizon_ps = float(stats.get("horizon_ps") or float("nan"))
    if not math.isfinite(horizon_ps) or horizon_ps <= 0:
        return trained, None
    n = frames_per_horizon(horizon_ps, frame_dt_ps, what=what)
    note = None
    if n != trained:
        note = (f"{what} has frames {_fmt(frame_dt_ps)} ps apart: one step of the model's {_fmt(horizon_ps)} ps "
                f"horizon spans {n} frames (trained on {trained} frames "
                f"{_fmt(float(stats.get('frame_dt_ps', horizon_ps / trained)))} ps apart)")
    return n, note


def system_frame_dt(system) -> float:
    """The frame spacing [ps] of an open :class:`eghn_md.io.readers.System` (its trajectories are read as one
    concatenated trajectory, so they must share it)."""
    spacings = {f"trajectory {str(src.path)!r}": src.time_step_ps() for src in system.trajectories}
    return common_spacing(spacings, remedy="frames of trajectories read as one must be evenly spaced; "
                                           "give them one at a time")


def input_horizon_frames(ckpt, topology, trajectories: Sequence) -> int:
    """Frames per step of a checkpoint's model (``ckpt.stats``, ``ckpt.data_config``) on ``topology`` +
    ``trajectories`` (none: the topology's own frames): the default start frame of a rollout.

    Inputs the model cannot be applied to give the trained horizon in frames: the command that uses them then
    reports what is wrong with them, in its own order (bad files and a foreign topology before the spacing).
    """
    from eghn_md.errors import EghnError
    from eghn_md.io.readers import open_system

    try:
        with open_system(topology, trajectories) as system:
            dt = system_frame_dt(system)
        return model_horizon_frames(ckpt.stats, ckpt.data_config, dt, what="input")[0]
    except EghnError:
        return int(ckpt.data_config["horizon"])
