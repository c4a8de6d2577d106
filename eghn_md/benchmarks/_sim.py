"""Langevin dynamics of an OpenMM ``System`` in resumable chunks: frames and an OpenMM checkpoint after each chunk.

A work directory holds ``settings.json`` (what the run is: the settings and the caller's description of the
system), ``chunk-KKKKK.npy`` (the frames of chunk K, (F, N, 3) float32 [Å]) and ``state-DDDDD.chk`` (the OpenMM
checkpoint after the first D chunks: positions, velocities, step count and the integrator's random-number state).
Every file is written atomically, the checkpoint after its chunk's frames, and the checkpoint's name says how many
chunks it follows, so an interrupted run (Ctrl-C, a killed process) resumes after the last checkpointed chunk
(a chunk written without its checkpoint is simulated again). With the same seed and thread count OpenMM's CPU
platform gives the same trajectory bit for bit; a resumed run continues from the checkpoint to float round-off
(~1e-10 Å; the platform re-sorts its atoms on reload), so a long resumed run is an equally valid sample but, the
dynamics being chaotic, not the same trajectory as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eghn_md.errors import DataError, UsageError
from eghn_md.io.atomic import atomic_path
from eghn_md.utils import SILENT, Progress

__all__ = ["RunSettings", "make_context", "run_chunks"]

_NM = 0.1  # Å → nm


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """One Langevin run: ``LangevinMiddleIntegrator(temperature, friction, timestep)``, a frame every
    ``steps_per_frame`` steps after ``equilibration_steps`` unsaved steps from the energy-minimised start."""

    temperature: float  #: [K]
    friction: float  #: [1/ps]
    timestep: float  #: [ps]
    steps_per_frame: int
    n_frames: int
    frames_per_chunk: int
    equilibration_steps: int
    seed: int
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("steps_per_frame", "n_frames", "frames_per_chunk", "threads"):
            if getattr(self, name) < 1:
                raise UsageError(f"`{name}` must be >= 1, got {getattr(self, name)}", params=(name,))
        if not (self.temperature > 0 and self.friction > 0 and self.timestep > 0):
            raise UsageError(f"temperature, friction and timestep must be > 0, got {self.temperature} K, "
                             f"{self.friction} /ps, {self.timestep} ps")
        if self.equilibration_steps < 0 or not 0 <= self.seed < 2**31:
            raise UsageError(f"need equilibration_steps >= 0 and 0 <= `seed` < 2^31, got {self.equilibration_steps}"
                             f" and {self.seed}", params=("seed",))

    @property
    def frame_dt_ps(self) -> float:
        """Time between saved frames [ps] (the model's coarse-grained time)."""
        return self.steps_per_frame * self.timestep

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_context(system, settings: RunSettings):
    """An OpenMM ``Context`` on the CPU platform with ``settings.threads`` threads and its Langevin integrator."""
    import openmm as mm

    integrator = mm.LangevinMiddleIntegrator(settings.temperature, settings.friction, settings.timestep)
    integrator.setRandomNumberSeed(settings.seed + 1)  # OpenMM reads seed 0 as "pick one at random"
    platform = mm.Platform.getPlatformByName("CPU")
    return mm.Context(system, integrator, platform, {"Threads": str(settings.threads)}), integrator


def _fresh_start(context, integrator, start: np.ndarray, settings: RunSettings) -> None:
    import openmm as mm

    context.setPositions(np.asarray(start, dtype=np.float64) * _NM)
    context.applyConstraints(1e-6)
    mm.LocalEnergyMinimizer.minimize(context, 1.0, 0)
    context.setVelocitiesToTemperature(settings.temperature, settings.seed + 1)
    integrator.step(settings.equilibration_steps)


def _positions(context) -> np.ndarray:
    return context.getState(getPositions=True).getPositions(asNumpy=True)._value / _NM


def _state_path(work: Path, chunks_done: int) -> Path:
    return work / f"state-{chunks_done:05d}.chk"


def _check_work_dir(work: Path, identity: dict, replace: bool) -> int:
    """Chunks already done in ``work`` for this run (0 for a new run); a directory of another run is emptied when
    ``replace`` is true, else refused."""
    meta = work / "settings.json"
    if meta.exists() and replace and json.loads(meta.read_text()) != identity:
        shutil.rmtree(work)
    if not meta.exists():
        work.mkdir(parents=True, exist_ok=True)
        with atomic_path(meta) as tmp:
            tmp.write_text(json.dumps(identity, indent=1))
        return 0
    if json.loads(meta.read_text()) != identity:
        raise UsageError(f"{work} holds the chunks of an unfinished run with other settings; rerun that command to "
                         "finish it, or pass `overwrite` to discard it", params=("overwrite",))
    states = sorted(work.glob("state-*.chk"))
    return int(states[-1].stem.split("-")[1]) if states else 0


def run_chunks(system, start: np.ndarray, settings: RunSettings, work_dir: str | Path, *,
               identity: dict | None = None, replace: bool = False, progress: Progress = SILENT) -> np.ndarray:
    """Run (or resume) the simulation in ``work_dir`` and return all its frames.

    Args:
        system: the OpenMM ``System``.
        start: (N, 3) [Å] positions minimised before the run.
        settings: the run.
        work_dir: directory of chunks and the checkpoint (see the module docstring).
        identity: JSON-able description of the system; a resume refuses a directory written for another one.
        replace: discard the chunks of a run with other settings or another system instead of refusing them.
        progress: ``start(total frames, done)``, ``update({"done": frames})`` after each chunk.

    Returns:
        (n_frames, N, 3) float32 [Å]; frame k at ``equilibration_steps + (k + 1) · steps_per_frame`` steps.
    """
    work = Path(work_dir)
    n_chunks = -(-settings.n_frames // settings.frames_per_chunk)
    done = _check_work_dir(work, {"settings": settings.to_dict(), "system": identity or {}}, replace)
    context, integrator = make_context(system, settings)
    if done:
        context.loadCheckpoint(_state_path(work, done).read_bytes())
    else:
        _fresh_start(context, integrator, start, settings)
    progress.start(settings.n_frames, min(done * settings.frames_per_chunk, settings.n_frames))
    try:
        for k in range(done, n_chunks):
            n = min(settings.frames_per_chunk, settings.n_frames - k * settings.frames_per_chunk)
            frames = np.empty((n, system.getNumParticles(), 3), dtype=np.float32)
            for f in range(n):
                integrator.step(settings.steps_per_frame)
                frames[f] = _positions(context)
            if not np.isfinite(frames).all():
                raise DataError(f"the simulation blew up in chunk {k} (non-finite positions); lower the timestep")
            with atomic_path(work / f"chunk-{k:05d}.npy") as tmp:
                np.save(tmp, frames)
            with atomic_path(_state_path(work, k + 1)) as tmp:
                tmp.write_bytes(context.createCheckpoint())
            _state_path(work, k).unlink(missing_ok=True)
            progress.update({"done": k * settings.frames_per_chunk + n})
    finally:
        progress.stop()
    return np.concatenate([np.load(work / f"chunk-{k:05d}.npy") for k in range(n_chunks)])
