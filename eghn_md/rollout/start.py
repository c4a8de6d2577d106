"""A trained model applied to a system: the one chain ``rollout``, ``evaluate --rollout`` and ``export clusters``
share (device → checkpoint → horizon and cutoff → system → the model's nodes → the frames a run needs → checks).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import DataError, UsageError

__all__ = ["ModelStart", "ModelSystem", "open_start", "open_model_system", "check_start_frame", "frame_batch",
           "read_frames", "model_dtype", "default_start_frame", "is_markov_checkpoint"]


@dataclass
class ModelStart:
    """A loaded model and the frames of a run from frame ``frame`` of a system.

    ``x_prev``: (N, 3) [Å] frame one horizon before the start (None for a Markov model, which reads the start frame
    only); ``frames``: (1 + k, N, 3) [Å] the start frame and the
    k true frames one horizon apart that were asked for (k = 0 without truth); ``step_ps``: time per step [ps];
    ``node_kind``: ``"residue"`` or ``"atom"``; ``horizon``: the model's horizon in frames of this input;
    ``notes``: what the user should know (frames per step when it differs from training, residue spellings).
    """

    model: torch.nn.Module
    ckpt: object
    device: torch.device
    dtype: torch.dtype
    system: object
    horizon: int
    cutoff: float
    node_kind: str
    frame: int
    x_prev: np.ndarray
    frames: np.ndarray
    step_ps: float
    start_time_ps: float
    notes: list


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s parameters (float32 for a model without any)."""
    return next((p.dtype for p in model.parameters()), torch.float32)


@dataclass
class ModelSystem:
    """A topology (+ trajectories) opened for a model: ``system`` (:class:`eghn_md.io.readers.System`, open),
    ``atoms`` / ``graph`` the model's nodes in it (checked against the model's), ``horizon`` the model's horizon in
    frames of this input, ``frame_dt`` [ps] its frame spacing, ``n_frames``, ``notes`` for the user."""

    system: object
    atoms: object
    graph: object
    horizon: int
    frame_dt: float
    n_frames: int
    notes: list

    def read(self, frames: Sequence[int], *, inputs: Sequence[int] = ()) -> tuple[dict, dict]:
        """:func:`read_frames` of the nodes; the ``inputs`` frames (a model's input) must be finite."""
        pos, times = read_frames(self.system, self.atoms.indices, sorted(set(frames) | set(inputs)))
        for f in inputs:
            if not np.isfinite(pos[f]).all():
                raise DataError(f"input frame {f} has non-finite coordinates")
        return pos, times


def is_markov_checkpoint(ckpt) -> bool:
    """Whether a checkpoint's model reads the current frame only (its declaration, without building it; a generative
    model, :mod:`eghn_md.models.generative`, does unless ``flow_velocity``):
    a rollout of it starts from one structure."""
    from eghn_md.models import ModelConfig
    from eghn_md.models.registry import config_capabilities

    return config_capabilities(ModelConfig.from_dict(ckpt.model_config)).markov


def _one_structure(ckpt, n_frames: int, markov: bool, what: str) -> tuple[int, str]:
    """Horizon and note of a rollout from an input of one frame (no frame spacing): the model's own step for a
    Markov model; a model with a velocity channel needs two frames, and the error names what works."""
    if not markov:
        velocity_flow = bool(ckpt.model_config.get("flow_velocity", False))
        raise UsageError(
            f"{what} holds {n_frames} frame(s), but model {ckpt.model_config.get('name')!r} reads a velocity channel"
            f"{' (flow_velocity: true)' if velocity_flow else ''}, so its first step needs the frame one horizon "
            f"({int(ckpt.data_config['horizon'])} frames) before the start: give a trajectory with `frame` one "
            "horizon in, or roll out a model that starts from one structure (trained with the generative `preset`"
            f"{', without flow_velocity' if velocity_flow else ''})", params=("frame", "preset"))
    horizon_ps = float(ckpt.stats.get("horizon_ps") or float("nan"))
    note = (f"{what} holds one structure: each step is the model's horizon"
            + (f" ({horizon_ps:.4g} ps)" if horizon_ps == horizon_ps else ""))
    return int(ckpt.data_config["horizon"]), note


@contextmanager
def open_model_system(ckpt, topology: str | Path, trajectories: Sequence[str | Path], *, markov: bool = False):
    """Open the system and select the model's nodes (a topology that differs from the model's is refused). An input
    of one frame has no frame spacing: with ``markov`` a step is then the model's horizon, otherwise it is refused
    with the option that works."""
    from eghn_md.data.system import select_model_nodes
    from eghn_md.data.timebase import model_horizon_frames, system_frame_dt
    from eghn_md.io.readers import open_system

    with open_system(topology, trajectories) as system:
        atoms, gs = select_model_nodes(system, ckpt.nodes, what=f"topology {Path(topology).name!r}")
        n_frames = sum(s.n_frames for s in system.trajectories)
        inputs = ", ".join(repr(s.path.name) for s in system.trajectories)
        if n_frames == 1:
            frame_dt = float("nan")
            horizon, step_note = _one_structure(ckpt, n_frames, markov, f"input {inputs}")
        else:
            frame_dt = system_frame_dt(system)  # the model's horizon in ps → frames of this input
            horizon, step_note = model_horizon_frames(ckpt.stats, ckpt.data_config, frame_dt,
                                                      what=f"trajectory {inputs}")
        yield ModelSystem(system=system, atoms=atoms, graph=gs, horizon=horizon, frame_dt=frame_dt,
                          n_frames=n_frames, notes=[n for n in [step_note, *gs.notes] if n])


def check_start_frame(frame: int, ms: ModelSystem, *, markov: bool = False) -> None:
    """A model input at ``frame`` must lie in the trajectory and, unless the model is ``markov``, needs frame − ΔT
    for its velocity."""
    if frame < ms.horizon and not markov:
        raise UsageError(f"`frame` {frame} is too early: the first step needs frame {frame} − {ms.horizon} (one "
                         f"horizon before) for the velocity; use `frame` >= {ms.horizon}", params=("frame",))
    if frame >= ms.n_frames:
        raise UsageError(f"frame {frame} is out of range: the trajectory has {ms.n_frames} frames "
                         f"(0..{ms.n_frames - 1})")


def frame_batch(*, x_prev: torch.Tensor, x0: torch.Tensor, h: torch.Tensor, bonds: torch.Tensor,
                cutoff: float) -> GraphBatch:
    """The model input for a frame, as every rollout step builds it: positions x0, velocity x0 − x_prev, edges
    rebuilt from x0.

    Args:
        x_prev: (N, 3) [Å] frame one horizon before.
        x0: (N, 3) [Å] the frame.
        h: (N, F) node scalars.
        bonds: (2, B) long, both directions of every bond.
        cutoff: [Å] contact cutoff.
    """
    from eghn_md.data.samples import build_edges

    edge_index, edge_attr = build_edges(x0, cutoff, bonds)
    return GraphBatch.single(pos=x0, vel=x0 - x_prev, h=h, edge_index=edge_index, edge_attr=edge_attr,
                             local_edge_index=bonds)


def default_start_frame(ckpt, topology: str | Path, trajectories: Sequence[str | Path]) -> int:
    """Where a rollout starts when the user names no frame: frame 0 for a Markov model, else one horizon in (the
    first frame with a velocity)."""
    from eghn_md.data.timebase import input_horizon_frames

    return 0 if is_markov_checkpoint(ckpt) else input_horizon_frames(ckpt, topology, list(trajectories))


def _step_ps(ms: ModelSystem, ckpt, times: dict, frame: int, markov: bool) -> float:
    """[ps] per predicted frame: the horizon in frames of this input times its spacing; the model's ``horizon_ps``
    (NaN when unknown) for one structure."""
    if ms.frame_dt > 0:
        return ms.horizon * ms.frame_dt
    if markov or frame - ms.horizon not in times:
        return float(ckpt.stats.get("horizon_ps") or float("nan"))
    return times[frame] - times[frame - ms.horizon]


def open_start(model_path: str | Path, topology: str | Path, trajectories: Sequence[str | Path], *, frame: int,
               steps: int = 0, device: str = "auto") -> ModelStart:
    """Load the model and read frames ``frame − ΔT`` (not for a Markov model), ``frame`` and, with ``steps`` > 0,
    the ``steps`` true frames one horizon apart after it; checks the model's nodes against the topology and the
    frames' range and values."""
    from eghn_md.models.registry import is_markov
    from eghn_md.train.checkpoint import load_model
    from eghn_md.utils import resolve_device

    dev = resolve_device(device)
    model, ckpt = load_model(model_path, device=dev)
    markov = is_markov(model)
    with open_model_system(ckpt, topology, trajectories, markov=markov) as ms:
        horizon = ms.horizon
        check_start_frame(frame, ms, markov=markov)
        if steps and frame + steps * horizon >= ms.n_frames:
            raise UsageError(f"`truth` needs frame {frame + steps * horizon} but the trajectory has {ms.n_frames} "
                             f"frames; use `steps` <= {(ms.n_frames - 1 - frame) // horizon}",
                             params=("truth", "steps"))
        wanted = [frame + k * horizon for k in range(steps + 1)]
        pos, times = ms.read(wanted, inputs=[frame] if markov else [frame - horizon, frame])
    # predicted frame k is at times[frame] + k · step_ps: the physical time of the frame it stands for
    return ModelStart(model=model, ckpt=ckpt, device=dev, dtype=model_dtype(model), system=ms.graph, horizon=horizon,
                      cutoff=float(ckpt.data_config["cutoff"]), node_kind=ms.graph.nodes.level, frame=frame,
                      x_prev=None if markov else pos[frame - horizon], frames=np.stack([pos[f] for f in wanted]),
                      step_ps=_step_ps(ms, ckpt, times, frame, markov), start_time_ps=times[frame], notes=ms.notes)


def read_frames(system, indices: np.ndarray, frames: Sequence[int]) -> tuple[dict, dict]:
    """Read selected positions of absolute frame numbers across the system's trajectories (concatenated).

    Returns ``({frame: (N, 3) [Å]}, {frame: time [ps]})``.
    """
    wanted = set(int(f) for f in frames)
    pos, times = {}, {}
    offset = 0
    for src in system.trajectories:
        if not any(offset <= f < offset + src.n_frames for f in wanted):
            offset += src.n_frames
            continue
        k = offset
        for block, t in src.iter_blocks(indices, block=64):
            for j in range(block.shape[0]):
                if k + j in wanted:
                    pos[k + j] = block[j].copy()
                    times[k + j] = float(t[j])
            k += block.shape[0]
            if k > max(wanted):
                break
        offset += src.n_frames
    return pos, times


