"""Autoregressive rollout of a trained model from a frame of a trajectory, with divergence checks.

Step k maps (x_{k−1}, x_k) → x_{k+1} with the model; the velocity channel is v_k = x_k − x_{k−1} (the displacement
over the previous horizon, exactly as in training), so the first step needs the true frames I − ΔT and I.
Edges are rebuilt from every input frame.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import DivergenceError, UsageError
from eghn_md.io.atomic import atomic_path, check_output_path

__all__ = ["rollout", "rollout_run", "RolloutResult", "read_frames", "const_velocity_rollout"]


@dataclass
class RolloutResult:
    """``frames``: (steps + 1, N, 3) [Å], the start frame then the predictions; ``step_ps``: time per step."""

    frames: np.ndarray
    step_ps: float


@torch.no_grad()
def rollout(
    model: torch.nn.Module,
    *,
    x_prev: torch.Tensor,
    x0: torch.Tensor,
    h: torch.Tensor,
    bonds: torch.Tensor,
    cutoff: float,
    steps: int,
    max_step_rms: float = math.inf,
    progress=None,
) -> np.ndarray:
    """Predict ``steps`` frames autoregressively.

    Args:
        model: trained model (eval mode) on the device of the tensors.
        x_prev: (N, 3) [Å] frame one horizon before the start.
        x0: (N, 3) [Å] start frame.
        h: (N, F) node scalars.
        bonds: (2, B) long bond graph (both directions).
        cutoff: [Å] contact cutoff for edges.
        steps: number of predicted frames.
        max_step_rms: [Å] a step whose RMS displacement exceeds this is treated as divergence.

    Returns:
        (steps + 1, N, 3) [Å] float32: ``x0`` then the predicted frames.

    Raises:
        DivergenceError: non-finite or exploding coordinates.
    """
    from eghn_md.data.samples import build_edges

    out = [x0.detach().cpu().numpy().astype(np.float32)]
    prev, cur = x_prev, x0
    for k in range(1, steps + 1):
        edge_index, edge_attr = build_edges(cur, cutoff, bonds)
        batch = GraphBatch.single(pos=cur, vel=cur - prev, h=h, edge_index=edge_index, edge_attr=edge_attr,
                                  local_edge_index=bonds)
        nxt = model(batch).pos.to(cur.dtype)
        if not torch.isfinite(nxt).all():
            raise DivergenceError(f"rollout diverged at step {k}: non-finite coordinates predicted")
        step_rms = float(((nxt - cur) ** 2).sum(dim=1).mean().sqrt())
        if step_rms > max_step_rms:
            raise DivergenceError(
                f"rollout diverged at step {k}: RMS step {step_rms:.1f} Å exceeds {max_step_rms:.1f} Å "
                "(the model left the region it was trained on); try fewer --steps"
            )
        prev, cur = cur, nxt
        out.append(cur.detach().cpu().numpy().astype(np.float32))
        if progress is not None:
            progress(k)
    return np.stack(out)


def const_velocity_rollout(x_prev: np.ndarray, x0: np.ndarray, steps: int) -> np.ndarray:
    """The constant-velocity baseline rolled out: x_{k+1} = x_k + (x_k − x_{k−1}). (steps + 1, N, 3) [Å]."""
    v = x0 - x_prev
    return np.stack([x0 + k * v for k in range(steps + 1)]).astype(np.float32)


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


def rollout_run(
    model_path: str | Path,
    topology: str | Path,
    trajectories: Sequence[str | Path],
    output: str | Path,
    *,
    frame: int,
    steps: int,
    truth: bool = False,
    device: str = "auto",
    overwrite: bool = False,
    progress=None,
) -> dict:
    """``eghn-md rollout`` as a library call: writes ``output`` (DCD) + its ``.pdb``; with ``truth`` also
    ``<stem>_truth.dcd`` and ``<stem>_rmsd.csv`` (RMSD vs time of the model, static and constant-velocity
    predictors against the true frames). Returns a summary dict.
    """
    from eghn_md.data.system import select_model_nodes
    from eghn_md.data.timebase import model_horizon_frames, system_frame_dt
    from eghn_md.export.writers import write_node_trajectory
    from eghn_md.io.readers import open_system
    from eghn_md.train.checkpoint import load_model
    from eghn_md.utils import resolve_device

    if steps < 1:
        raise UsageError(f"--steps must be >= 1, got {steps}")
    if frame < 0:
        raise UsageError(f"--frame must be >= 0, got {frame}")
    output = Path(output)
    if output.suffix.lower() != ".dcd":
        raise UsageError(f"output {str(output)!r} must end in .dcd (convert later with `eghn-md export trajectory`)")
    pdb_out = output.with_suffix(".pdb")
    truth_out = output.with_name(output.stem + "_truth.dcd")
    rmsd_out = output.with_name(output.stem + "_rmsd.csv")
    for p in [output, pdb_out] + ([truth_out, rmsd_out] if truth else []):
        check_output_path(p, overwrite=overwrite)

    dev = resolve_device(device)
    model, ckpt = load_model(model_path, device=dev)
    cutoff = float(ckpt.data_config["cutoff"])
    with open_system(topology, trajectories) as system:
        atoms, gs = select_model_nodes(system, ckpt.nodes, what=f"topology {Path(topology).name!r}")
        frame_dt = system_frame_dt(system)  # the model's horizon in ps → frames of this input
        inputs = ", ".join(repr(s.path.name) for s in system.trajectories)
        horizon, step_note = model_horizon_frames(ckpt.stats, ckpt.data_config, frame_dt, what=f"trajectory {inputs}")
        if frame < horizon:
            raise UsageError(
                f"--frame {frame} is too early: the first step needs frame {frame} − {horizon} (one horizon before) "
                f"for the velocity; use --frame >= {horizon}"
            )
        n_total = sum(s.n_frames for s in system.trajectories)
        if frame >= n_total:
            raise UsageError(f"--frame {frame} is out of range: the trajectory has {n_total} frames (0..{n_total - 1})")
        last_needed = frame + steps * horizon
        if truth and last_needed >= n_total:
            max_steps = (n_total - 1 - frame) // horizon
            raise UsageError(
                f"--truth needs frame {last_needed} but the trajectory has {n_total} frames; use --steps <= {max_steps}"
            )
        wanted = [frame - horizon, frame] + ([frame + k * horizon for k in range(1, steps + 1)] if truth else [])
        pos, times = read_frames(system, atoms.indices, wanted)
    for f in (frame - horizon, frame):
        if not np.isfinite(pos[f]).all():
            raise DivergenceError(f"input frame {f} has non-finite coordinates")
    # predicted frame k is at times[frame] + k · step_ps: the physical time of the frame it stands for
    step_ps = horizon * frame_dt if frame_dt > 0 else times[frame] - times[frame - horizon]
    dtype = next(model.parameters()).dtype if any(True for _ in model.parameters()) else torch.float32
    to = lambda a: torch.as_tensor(a, dtype=dtype, device=dev)  # noqa: E731
    disp = float(ckpt.stats.get("disp_scale", 1.0))
    frames = rollout(
        model, x_prev=to(pos[frame - horizon]), x0=to(pos[frame]), h=gs.h.to(dev, dtype), bonds=gs.bonds.to(dev),
        cutoff=cutoff, steps=steps, max_step_rms=max(20.0 * disp, 10.0), progress=progress,
    )
    written = write_node_trajectory(output, ckpt.nodes, frames, dt_ps=step_ps, start_time_ps=times[frame])
    summary = {
        "model_file": str(model_path),
        "start_frame": frame,
        "steps": steps,
        "horizon_frames": horizon,
        "step_ps": step_ps,
        "notes": [n for n in [step_note, *gs.notes] if n],
        "n_nodes": int(frames.shape[1]),
        "outputs": [str(p) for p in written],
    }
    if truth:
        true_frames = np.stack([pos[frame]] + [pos[frame + k * horizon] for k in range(1, steps + 1)])
        cv = const_velocity_rollout(pos[frame - horizon], pos[frame], steps)
        written += write_node_trajectory(truth_out, ckpt.nodes, true_frames, dt_ps=step_ps,
                                         start_time_ps=times[frame], pdb_path=truth_out)
        rmsd = {
            "model": _rmsd(frames, true_frames),
            "static": _rmsd(np.repeat(true_frames[:1], steps + 1, axis=0), true_frames),
            "const_velocity": _rmsd(cv, true_frames),
        }
        with atomic_path(rmsd_out) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["step", "time_ps", "rmsd_model_A", "rmsd_static_A", "rmsd_const_velocity_A"])
            for k in range(steps + 1):
                w.writerow([k, f"{k * step_ps:.6g}", f"{rmsd['model'][k]:.6g}", f"{rmsd['static'][k]:.6g}",
                            f"{rmsd['const_velocity'][k]:.6g}"])
        summary["outputs"] += [str(truth_out), str(rmsd_out)]
        summary["final_rmsd_A"] = {k: float(v[-1]) for k, v in rmsd.items()}
        summary["mean_rmsd_A"] = {k: float(np.mean(v[1:])) for k, v in rmsd.items()}
    return summary


def _rmsd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame RMSD [Å] without superposition (the surrogate predicts absolute frames). a, b: (T, N, 3)."""
    return np.sqrt(((a.astype(np.float64) - b) ** 2).sum(axis=2).mean(axis=1))
