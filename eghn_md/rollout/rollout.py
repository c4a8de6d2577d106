"""Autoregressive rollout of a trained model from a frame of a trajectory, with divergence checks.

Step k maps (x_{k−1}, x_k) → x_{k+1} with the model; the velocity channel is v_k = x_k − x_{k−1} (the displacement
over the previous horizon, exactly as in training), so the first step needs the true frames I − ΔT and I.
Edges are rebuilt from every input frame.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from eghn_md.choices import PREDICTORS
from eghn_md.errors import UsageError
from eghn_md.io.atomic import atomic_path, check_output_path
from eghn_md.io.writers import write_node_trajectory
from eghn_md.rollout.guard import STEP_RMS_FACTOR, STEP_RMS_FLOOR, GuardConfig, StepGuard
from eghn_md.rollout.start import frame_batch, open_start
from eghn_md.utils import HEAP_TRIM_STEPS, Progress, as_progress, compile_model, release_heap

__all__ = ["rollout", "rollout_run", "RolloutResult", "GuardConfig", "StepGuard", "STEP_RMS_FACTOR",
           "STEP_RMS_FLOOR", "const_velocity_rollout", "write_rmsd_csv"]


@dataclass
class RolloutResult:
    """``frames``: (k + 1, N, 3) [Å] float32, the start frame then the k predicted frames that passed the guard;
    ``stopped``: None, or ``{"step": k, "reason": ...}`` for the first step the guard rejected (not in ``frames``)."""

    frames: np.ndarray
    stopped: Optional[dict] = None


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
    guard: Optional[GuardConfig] = None,
    constraint: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    progress: Optional[Progress] = None,
) -> RolloutResult:
    """Predict ``steps`` frames autoregressively, stopping at the first frame the guard rejects.

    Args:
        model: trained model (eval mode) on the device of the tensors.
        x_prev: (N, 3) [Å] frame one horizon before the start.
        x0: (N, 3) [Å] start frame.
        h: (N, F) node scalars.
        bonds: (2, B) long bond graph (both directions).
        cutoff: [Å] contact cutoff for edges.
        steps: number of predicted frames.
        guard: divergence bounds (default :class:`GuardConfig`).
        constraint: applied to every predicted frame before it is checked and fed back, e.g. a
            :func:`~eghn_md.rollout.constrain.constrain` closure: (N, 3) [Å] -> (N, 3) [Å].
        progress: a :class:`~eghn_md.utils.Progress` over the ``steps`` predicted frames.
    """
    progress = as_progress(progress)
    progress.start(steps)
    try:
        return _predict(model, x_prev, x0, h, bonds, cutoff, steps, StepGuard(guard or GuardConfig(), x0, bonds),
                        constraint, progress)
    finally:
        progress.stop()


def _predict(model, x_prev, x0, h, bonds, cutoff, steps, check, constraint, progress: Progress) -> RolloutResult:
    out = [x0.detach().cpu().numpy().astype(np.float32)]
    prev, cur = x_prev, x0
    for k in range(1, steps + 1):
        nxt = model(frame_batch(x_prev=prev, x0=cur, h=h, bonds=bonds, cutoff=cutoff)).pos.to(cur.dtype)
        if constraint is not None and bool(torch.isfinite(nxt).all()):
            nxt = constraint(nxt)
        reason = check(cur, nxt)
        if reason is not None:
            return RolloutResult(frames=np.stack(out), stopped={"step": k, "reason": reason})
        prev, cur = cur, nxt
        out.append(cur.detach().cpu().numpy().astype(np.float32))
        if k % HEAP_TRIM_STEPS == 0:
            release_heap()  # every step's tensors differ a little in size (eghn_md.utils.release_heap)
        progress.update({"done": k})
    return RolloutResult(frames=np.stack(out))


def const_velocity_rollout(x_prev: np.ndarray, x0: np.ndarray, steps: int) -> np.ndarray:
    """The constant-velocity baseline rolled out: x_{k+1} = x_k + (x_k − x_{k−1}). (steps + 1, N, 3) [Å]."""
    v = x0 - x_prev
    return np.stack([x0 + k * v for k in range(steps + 1)]).astype(np.float32)


def _output_paths(output: Path, *, truth: bool, overwrite: bool) -> dict:
    """Every file a rollout writes beside ``output`` (PRED.dcd), checked for ``overwrite``."""
    if output.suffix.lower() != ".dcd":
        raise UsageError(f"output {str(output)!r} must end in .dcd (convert later with `eghn-md export trajectory`)")
    paths = {"dcd": output, "pdb": output.with_suffix(".pdb"),
             "validity": output.with_name(output.stem + "_validity.csv"),
             "validity_png": output.with_name(output.stem + "_validity.png")}
    if truth:
        paths["truth"] = output.with_name(output.stem + "_truth.dcd")
        paths["rmsd"] = output.with_name(output.stem + "_rmsd.csv")
    for p in paths.values():
        check_output_path(p, overwrite=overwrite)
    return paths


def _constraint(gs, x0: torch.Tensor, node_kind: str):
    """The ``--constrain`` projection: bonds restored to their start-frame lengths, clashes pushed apart."""
    from eghn_md.rollout.constrain import constrain
    from eghn_md.rollout.validity import near_pairs

    bonds = gs.bonds.to(x0.device)
    lengths = (x0[bonds[0]] - x0[bonds[1]]).norm(dim=1)
    excluded = near_pairs(bonds, x0.shape[0], device=x0.device)
    return lambda x: constrain(x, bonds=bonds, lengths=lengths, node_kind=node_kind, excluded=excluded)


def _write_single(paths: dict, start, result: RolloutResult, *, model_path, frame: int, steps: int, truth: bool,
                  constrain: bool, compile: bool) -> dict:
    """Write what one deterministic rollout ``result`` produced (frames, validity report, with ``truth`` the true
    frames and RMSD table, figures) to ``paths`` and return the summary of :func:`rollout_run`."""
    from eghn_md.rollout.validity import plot_validity, validity_report

    ckpt = start.ckpt
    frames = result.frames
    written = write_node_trajectory(paths["dcd"], ckpt.nodes, frames, dt_ps=start.step_ps,
                                    start_time_ps=start.start_time_ps)
    true_frames = start.frames[: len(frames)] if truth else None
    report = validity_report(frames, bonds=start.system.bonds, node_kind=start.node_kind, truth=true_frames)
    written += [report.write_csv(paths["validity"])]
    summary = {
        "model_file": str(model_path), "start_frame": frame, "steps": steps, "steps_done": len(frames) - 1,
        "stopped": result.stopped, "constrained": bool(constrain), "compiled": bool(compile),
        "horizon_frames": start.horizon,
        "step_ps": start.step_ps, "notes": start.notes, "n_nodes": int(frames.shape[1]),
        "validity": report.summary(),
        "outputs": [str(p) for p in written],
    }
    if truth:
        extra = _truth_outputs(paths, ckpt.nodes, start, frames)
        summary["outputs"] += extra.pop("outputs")
        summary.update(extra)
    fig = _maybe_plot(plot_validity, report, paths["validity_png"])
    if fig:
        summary["outputs"].append(fig)
    return summary


def rollout_run(
    model_path: str | Path,
    topology: str | Path,
    trajectories: Sequence[str | Path],
    output: str | Path,
    *,
    frame: int,
    steps: int,
    truth: bool = False,
    constrain: bool = False,
    compile: bool = False,
    device: str = "auto",
    overwrite: bool = False,
    replicas: Optional[int] = None,
    seed: int = 0,
    sample_steps: Optional[int] = None,
    source_scale: Optional[float] = None,
    progress: Optional[Progress] = None,
) -> dict:
    """``eghn-md rollout`` as a library call: writes ``output`` (DCD) + its ``.pdb`` and the validity report
    (``<stem>_validity.csv`` and ``.png``); with ``truth`` also ``<stem>_truth.dcd`` and ``<stem>_rmsd.csv`` (RMSD
    vs time of the model, static and constant-velocity predictors against the true frames). With ``constrain`` every
    predicted frame is projected onto the start frame's bond lengths, without clashes. ``compile`` runs the model
    through :func:`~eghn_md.utils.compile_model` (the same frames up to floating-point reassociation). A rollout the
    divergence guard stops keeps the frames before it (``summary["stopped"]`` says where and why). Returns a
    summary dict.

    A generative model samples every step (from a generator seeded by ``seed``, with ``sample_steps`` integration
    steps, None: the model's own; ``source_scale`` λ on its source noise, None: the model's own) and may start from
    one structure. With ``replicas`` R the rollout is an ensemble
    of R replicas advanced in one batched forward pass per step (:func:`eghn_md.rollout.ensemble.ensemble_run`:
    ``PRED.pdb``, ``PRED_r0.dcd`` … and the validity per replica and over the ensemble); R > 1 needs a generative
    model (a deterministic one would give R identical copies).
    """
    if steps < 1:
        raise UsageError(f"steps must be >= 1, got {steps}")
    if frame < 0:
        raise UsageError(f"frame must be >= 0, got {frame}")
    if replicas is not None and replicas < 1:
        raise UsageError(f"replicas must be >= 1, got {replicas}", params=("replicas",))
    if replicas is None:
        paths = _output_paths(Path(output), truth=truth, overwrite=overwrite)
    start = open_start(model_path, topology, trajectories, frame=frame, steps=steps if truth else 0, device=device)
    if source_scale is not None:
        from eghn_md.models.registry import set_source_scale

        set_source_scale(start.model, source_scale)
    if replicas is not None or start.x_prev is None:
        if compile and hasattr(start.model, "net"):  # a generative model: its denoiser runs every sampling step
            start.model.net = compile_model(start.model.net)
        return _sampled_run(start, Path(output), replicas=replicas, seed=seed, sample_steps=sample_steps,
                            steps=steps, truth=truth, constrain=constrain, overwrite=overwrite, progress=progress,
                            frame=frame, model_path=model_path)
    ckpt, dev, dtype = start.ckpt, start.device, start.dtype
    to = lambda a: torch.as_tensor(a, dtype=dtype, device=dev)  # noqa: E731
    x0 = to(start.frames[0])
    model = compile_model(start.model) if compile else start.model
    result = rollout(
        model, x_prev=to(start.x_prev), x0=x0, h=start.system.h.to(dev, dtype), bonds=start.system.bonds.to(dev),
        cutoff=start.cutoff, steps=steps, guard=GuardConfig.for_model(ckpt.stats),
        constraint=_constraint(start.system, x0, start.node_kind) if constrain else None, progress=progress,
    )
    return _write_single(paths, start, result, model_path=model_path, frame=frame, steps=steps, truth=truth,
                         constrain=constrain, compile=compile)


def _sampled_run(start, output: Path, *, replicas: Optional[int], frame: int, model_path, constrain: bool,
                 **kw) -> dict:
    """A rollout through :func:`~eghn_md.rollout.ensemble.ensemble_run` (an ensemble, or a Markov model)."""
    from eghn_md.models.registry import is_generative
    from eghn_md.rollout.ensemble import ensemble_run

    if constrain:
        raise UsageError("`constrain` projects single deterministic rollouts; an ensemble or a model that starts from "
                         "one structure is judged without it: drop `constrain`", params=("constrain",))
    if (replicas or 1) > 1 and not is_generative(start.model):
        raise UsageError(f"`replicas` {replicas} needs a generative model (a deterministic model gives {replicas} "
                         "identical copies); train one with the generative `preset`", params=("replicas", "preset"))
    summary = ensemble_run(start, output, replicas=replicas or 1, single=replicas is None, **kw)
    scale = start.model.config.source_scale if is_generative(start.model) else None
    return {"model_file": str(model_path), "start_frame": frame, "steps": kw["steps"], "constrained": False,
            "source_scale": scale, "horizon_frames": start.horizon, "step_ps": start.step_ps, "notes": start.notes,
            "n_nodes": int(start.frames.shape[1]), **summary}


def _maybe_plot(fn, *args) -> Optional[str]:
    """A figure must never fail the rollout: the path, or None with a warning."""
    try:
        return str(fn(*args))
    except Exception as exc:  # noqa: BLE001
        import warnings

        warnings.warn(f"figure not written ({type(exc).__name__}: {exc})", RuntimeWarning, stacklevel=2)
        return None


def _truth_outputs(paths: dict, nodes: dict, start, frames: np.ndarray) -> dict:
    """Write the true frames and the RMSD-vs-step table of the model, static and constant-velocity predictors."""
    k_done = len(frames) - 1
    true_frames = start.frames[: k_done + 1]
    cv = const_velocity_rollout(start.x_prev, start.frames[0], k_done)
    written = write_node_trajectory(paths["truth"], nodes, true_frames, dt_ps=start.step_ps,
                                    start_time_ps=start.start_time_ps, pdb_path=paths["truth"])
    rmsd = {
        "model": _rmsd(frames, true_frames),
        "static": _rmsd(np.repeat(true_frames[:1], k_done + 1, axis=0), true_frames),
        "const_velocity": _rmsd(cv, true_frames),
    }
    write_rmsd_csv(paths["rmsd"], rmsd, step_ps=start.step_ps)
    return {
        "outputs": [str(p) for p in written] + [str(paths["rmsd"])],
        "final_rmsd_A": {k: float(v[-1]) for k, v in rmsd.items()},
        "mean_rmsd_A": {k: float(np.mean(v[1:])) if k_done else 0.0 for k, v in rmsd.items()},
    }


def write_rmsd_csv(path: str | Path, rmsd: dict, *, step_ps: float) -> Path:
    """The RMSD-vs-step table of every predictor (:data:`eghn_md.choices.PREDICTORS`), written atomically.

    ``rmsd[predictor][k]`` [Å] at step k (``step_ps`` ps per step); the table ends at the first step without a
    value (None: no true frame there). Columns ``step, time_ps, rmsd_<predictor>_A …``.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "time_ps", *(f"rmsd_{k}_A" for k in PREDICTORS)])
        for s in range(len(rmsd["model"])):
            if rmsd["model"][s] is None:
                break
            w.writerow([s, f"{s * step_ps:.6g}", *(f"{rmsd[k][s]:.6g}" for k in PREDICTORS)])
    return path


def _rmsd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame RMSD [Å] without superposition (the surrogate predicts absolute frames). a, b: (T, N, 3)."""
    return np.sqrt(((a.astype(np.float64) - b) ** 2).sum(axis=2).mean(axis=1))
