"""Ensembles: R replicas of a rollout advanced together, one batched forward pass per step.

The R current frames are the graphs of one disjoint-union :class:`~eghn_md.data.batch.GraphBatch` (edges rebuilt
from every frame, pairs of different replicas never joined), so a step costs one model call whatever R is (in
passes of at most ``max_chunk_nodes`` nodes; on a CPU large passes run side by side, one per core: ``workers``). A
generative model (:mod:`eghn_md.models.generative`) draws every replica's noise from one ``torch.Generator`` seeded
by the user: the ensemble is reproducible for a seed, and the replicas of one start differ. The models are batch
independent, so replica r's trajectory depends on its own start and noise only.

A Markov model reads the current frame only; a model with a velocity channel gets x_k − x_{k−1} of its own replica
(the first step: the frame one horizon before the start). Each replica has its own divergence guard: a replica the
guard stops keeps the frames before it and leaves the batch; the others go on.

:func:`ensemble_run` is ``eghn-md rollout --replicas R`` as a library call: ``PRED.pdb``, ``PRED_r0.dcd`` …
``PRED_r{R−1}.dcd`` and ``PRED_validity.csv`` (the validity of every frame of every replica); its summary has the
validity per replica and over the ensemble.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from eghn_md.data.batch import GraphBatch
from eghn_md.io.atomic import atomic_path, check_output_path
from eghn_md.rollout.guard import GuardConfig, StepGuard
from eghn_md.utils import HEAP_TRIM_STEPS, Progress, as_progress, release_heap

__all__ = ["EnsembleResult", "ensemble_rollout", "replica_batch", "replica_chunks", "ensemble_run",
           "ensemble_paths", "DEFAULT_CHUNK_NODES", "MIN_PARALLEL_NODES"]

#: nodes per batched model pass of an ensemble step: per-edge tensors stay cache-sized, as in training
#: (``train: max_chunk_nodes``); measured in examples/benchmarks/results/generative.md
DEFAULT_CHUNK_NODES = 4096
#: nodes a pass needs before passes go side by side on threads (``workers``): each thread's Python dispatch holds
#: the GIL, so small passes contend for it. AdK on 2 cores: passes of 3,424 nodes (R = 32) side by side gave 1.4×
#: the replica-steps/s, of 856 nodes (R = 8) 0.9× (``examples/benchmarks/results/generative_equilibrium.md`` §16)
MIN_PARALLEL_NODES = 2048


@dataclass
class EnsembleResult:
    """``frames``: one (k_r + 1, N, 3) [Å] float32 array per replica (the start, then the k_r predicted frames that
    passed its guard); ``stopped``: per replica None or ``{"step": k, "reason": ...}``."""

    frames: list
    stopped: list


def replica_batch(x: torch.Tensor, *, h: torch.Tensor, bonds: torch.Tensor, cutoff: float,
                  vel: Optional[torch.Tensor] = None) -> GraphBatch:
    """The model input of R frames of one system as R graphs of one batch.

    Args:
        x: (R, N, 3) [Å] current frames.
        h: (N, F) node scalars (the same for every replica).
        bonds: (2, B) long, both directions of every bond.
        cutoff: [Å] contact cutoff of the edges, rebuilt from ``x``.
        vel: (R, N, 3) [Å per horizon] velocity channel, or None: zeros (a Markov model does not read it).
    """
    from eghn_md.data.samples import build_edges

    r, n = x.shape[:2]
    dev = x.device
    offsets = torch.arange(r, device=dev).repeat_interleave(bonds.shape[1]) * n
    all_bonds = bonds.to(dev).repeat(1, r) + offsets
    batch = torch.arange(r, device=dev).repeat_interleave(n)
    pos = x.reshape(r * n, 3)
    edge_index, edge_attr = build_edges(pos, cutoff, all_bonds, batch=batch)
    return GraphBatch(pos=pos, vel=torch.zeros_like(pos) if vel is None else vel.reshape(r * n, 3),
                      h=h.repeat(r, 1), edge_index=edge_index, edge_attr=edge_attr, batch=batch,
                      ptr=torch.arange(r + 1, device=dev) * n, local_edge_index=all_bonds)


def replica_chunks(r: int, n: int, *, max_chunk_nodes: int, workers: int = 1) -> list[tuple[int, int]]:
    """The replica ranges ``[a, b)`` of one step's passes through the model: as few passes as keep each within
    ``max_chunk_nodes`` nodes (0: no bound; a pass holds at least one replica of ``n`` nodes), but at least
    ``workers`` when there are that many replicas, and of equal size to within one replica."""
    if r < 1:
        return []
    per = r if max_chunk_nodes <= 0 else max(1, int(max_chunk_nodes) // n)
    k = min(r, max(-(-r // per), int(workers)))
    size, extra = divmod(r, k)
    bounds = [0]
    for i in range(k):
        bounds.append(bounds[-1] + size + (i < extra))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _in_parallel(fn, items: list, workers: int) -> list:
    """``[fn(item) for item in items]`` on ``workers`` threads, each with ``torch.get_num_threads() // workers``
    intra-op threads (at least 1) and the caller's grad mode; the thread count is restored afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    threads, grad = torch.get_num_threads(), torch.is_grad_enabled()

    def run(item):
        with torch.set_grad_enabled(grad):
            return fn(item)

    # the pool's threads are new, so they read this count when they first run an op (a reused pool would keep the
    # count its threads started with)
    torch.set_num_threads(max(1, threads // workers))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(run, items))
    finally:
        torch.set_num_threads(threads)


def _model_step(model, x: torch.Tensor, vel: Optional[torch.Tensor], *, h, bonds, cutoff: float, generator,
                sample_steps: Optional[int], max_chunk_nodes: int, workers: int = 1) -> torch.Tensor:
    """The next frames (R, N, 3) [Å] of R replicas at ``x`` (R, N, 3), in batched passes of at most
    ``max_chunk_nodes`` nodes (0: one pass; :func:`replica_chunks`), up to ``workers`` of them at a time (passes of
    at least :data:`MIN_PARALLEL_NODES` nodes). A generative model's noise for all R is drawn first, so the samples
    do not depend on the chunking or the workers (up to floating-point rounding)."""
    from eghn_md.models.registry import is_generative

    r, n = x.shape[:2]
    gen = is_generative(model)
    z = torch.randn((r, n, 3), generator=generator, dtype=torch.float64).to(x) if gen else None

    def one(chunk: tuple[int, int]) -> torch.Tensor:
        a, b = chunk
        batch = replica_batch(x[a:b], h=h, bonds=bonds, cutoff=cutoff, vel=None if vel is None else vel[a:b])
        pos = model(batch, noise=z[a:b].reshape(-1, 3), steps=sample_steps).pos if gen else model(batch).pos
        return pos.reshape(-1, n, 3)

    workers = min(workers, max(1, r * n // MIN_PARALLEL_NODES))
    chunks = replica_chunks(r, n, max_chunk_nodes=max_chunk_nodes, workers=workers)
    if workers > 1 and len(chunks) > 1 and min(b - a for a, b in chunks) * n >= MIN_PARALLEL_NODES:
        return torch.cat(_in_parallel(one, chunks, workers))
    return torch.cat([one(c) for c in chunks])


@torch.no_grad()
def ensemble_rollout(model: torch.nn.Module, *, starts: torch.Tensor, h: torch.Tensor, bonds: torch.Tensor,
                     cutoff: float, steps: int, x_prev: Optional[torch.Tensor] = None, seed: int = 0,
                     sample_steps: Optional[int] = None, guard: Optional[GuardConfig] = None,
                     max_chunk_nodes: int = DEFAULT_CHUNK_NODES, workers: Optional[int] = None,
                     progress: Optional[Progress] = None) -> EnsembleResult:
    """Roll R replicas out ``steps`` horizons, batched (see the module docstring).

    Args:
        model: trained model (eval mode) on the device of the tensors.
        starts: (R, N, 3) [Å] start frame of every replica (R copies of one frame for an ensemble from one start).
        h: (N, F) node scalars; ``bonds``: (2, B) long (both directions); ``cutoff`` [Å].
        steps: predicted frames per replica.
        x_prev: (R, N, 3) [Å] frames one horizon before the starts: needed by a model with a velocity channel,
            ignored by a Markov one.
        seed: seeds the generator every replica's noise is drawn from (generative models).
        sample_steps: integration steps per sample (None: the model's own).
        guard: divergence bounds per replica (default :class:`~eghn_md.rollout.guard.GuardConfig`).
        max_chunk_nodes: the replicas go through the model in batches of at most this many nodes (0: all at once);
            the results do not depend on it (up to floating-point rounding, which long rollouts amplify).
        workers: batches run side by side on a CPU, each on its share of torch's threads, when each keeps at least
            :data:`MIN_PARALLEL_NODES` nodes (None: one per thread on a CPU, so two threads run two half-ensembles
            each on one core instead of every small op on two cores: 1.4× the replica-steps/s of AdK at R = 32 on
            2 cores; 1 elsewhere). The results do not depend on it (up to rounding, as for ``max_chunk_nodes``).
        progress: over the ``steps`` steps.
    """
    from eghn_md.models.registry import is_markov

    markov = is_markov(model)
    if not markov and x_prev is None:
        raise ValueError("this model reads a velocity channel: ensemble_rollout needs x_prev")
    gen = torch.Generator().manual_seed(int(seed))
    r = starts.shape[0]
    if workers is None:
        workers = torch.get_num_threads() if starts.device.type == "cpu" else 1
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    guards = [StepGuard(guard or GuardConfig(), starts[k], bonds) for k in range(r)]
    frames = [[starts[k].cpu().numpy().astype(np.float32)] for k in range(r)]
    stopped: list = [None] * r
    active = list(range(r))
    prev, cur = (None if markov else x_prev.clone()), starts.clone()
    progress = as_progress(progress)
    progress.start(steps)
    try:
        for step in range(1, steps + 1):
            idx = torch.tensor(active, device=starts.device)
            vel = None if markov else cur[idx] - prev[idx]
            nxt = _model_step(model, cur[idx], vel, h=h, bonds=bonds, cutoff=cutoff, generator=gen,
                              sample_steps=sample_steps, max_chunk_nodes=max_chunk_nodes,
                              workers=int(workers)).to(cur.dtype)
            still = []
            for a, k in enumerate(active):
                reason = guards[k](cur[k], nxt[a])
                if reason is not None:
                    stopped[k] = {"step": step, "reason": reason}
                    continue
                still.append(k)
                frames[k].append(nxt[a].cpu().numpy().astype(np.float32))
            if not markov:
                prev[idx] = cur[idx]
            cur[idx] = torch.where(torch.isfinite(nxt), nxt, cur[idx])
            active = still
            if step % HEAP_TRIM_STEPS == 0:
                release_heap()  # the freed pieces of every step's differently sized tensors (see release_heap)
            progress.update({"done": step})
            if not active:
                break
    finally:
        progress.stop()
    return EnsembleResult(frames=[np.stack(f) for f in frames], stopped=stopped)


def ensemble_paths(output: Path, replicas: int, *, truth: bool, overwrite: bool, single: bool = False) -> dict:
    """Every file an ensemble rollout writes beside ``output`` (PRED.dcd), checked for ``overwrite``; ``single``:
    one trajectory written to ``output`` itself (a rollout without ``--replicas``)."""
    from eghn_md.errors import UsageError

    if output.suffix.lower() != ".dcd":
        raise UsageError(f"output {str(output)!r} must end in .dcd (convert later with `eghn-md export trajectory`)")
    paths = {"pdb": output.with_suffix(".pdb"), "validity": output.with_name(output.stem + "_validity.csv"),
             "replicas": ([output] if single else
                          [output.with_name(f"{output.stem}_r{k}.dcd") for k in range(replicas)])}
    if truth:
        paths["truth"] = output.with_name(output.stem + "_truth.dcd")
    for p in [paths["pdb"], paths["validity"], *paths["replicas"], *([paths["truth"]] if truth else [])]:
        check_output_path(p, overwrite=overwrite)
    return paths


def _write_validity(path: Path, reports: list) -> Path:
    """One CSV of every frame of every replica: ``replica`` then the columns of ``ValidityReport.write_csv``."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["replica", "frame", "max_bond_dev_A", "n_breaks", "n_clashes", "rg_A", "rg_ratio"])
        for k, rep in enumerate(reports):
            rg0 = float(rep.rg[0])
            for t in range(rep.n_frames):
                w.writerow([k, t, f"{rep.max_bond_dev[t]:.6g}", int(rep.n_breaks[t]), int(rep.n_clashes[t]),
                            f"{rep.rg[t]:.6g}", f"{rep.rg[t] / rg0:.6g}" if rg0 > 0 else ""])
    return path


def ensemble_validity(reports: list) -> dict:
    """The validity over an ensemble (JSON-able): frames with a break / clash summed over the replicas, the worst
    bond deviation, Rg ratio range, and each replica's :meth:`ValidityReport.summary`."""
    per = [rep.summary() for rep in reports]
    n = sum(s["n_frames"] for s in per)
    brk = sum(s["frames_with_break"] for s in per)
    cl = sum(s["frames_with_clash"] for s in per)
    return {
        "n_replicas": len(per), "n_frames": n, "frames_with_break": brk, "frames_with_clash": cl,
        "frac_frames_with_break": brk / max(n, 1), "frac_frames_with_clash": cl / max(n, 1),
        "max_bond_dev_A": max(s["max_bond_dev_A"] for s in per), "thresholds_A": per[0]["thresholds_A"],
        "rg_ratio": {"min": min(s["rg_ratio"]["min"] for s in per), "max": max(s["rg_ratio"]["max"] for s in per)},
        "replicas": per,
    }


def ensemble_run(start, output: Path, *, steps: int, replicas: int, seed: int, sample_steps: Optional[int],
                 truth: bool, overwrite: bool, single: bool = False, progress: Optional[Progress] = None) -> dict:
    """Roll ``replicas`` replicas out from ``start`` (:class:`~eghn_md.rollout.start.ModelStart`) and write the
    ensemble's files (module docstring; ``single``: one replica written to ``output``); returns the summary dict of
    ``eghn-md rollout --replicas``."""
    from eghn_md.io.writers import write_node_trajectory
    from eghn_md.rollout.validity import validity_report

    paths = ensemble_paths(Path(output), replicas, truth=truth, overwrite=overwrite, single=single)
    dev, dtype = start.device, start.dtype
    to = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=dev)  # noqa: E731
    starts = to(start.frames[0]).expand(replicas, -1, -1).clone()
    x_prev = None if start.x_prev is None else to(start.x_prev).expand(replicas, -1, -1).clone()
    disp = float(start.ckpt.stats.get("disp_scale", 1.0))
    result = ensemble_rollout(start.model, starts=starts, h=start.system.h.to(dev, dtype),
                              bonds=start.system.bonds.to(dev), cutoff=start.cutoff, steps=steps, x_prev=x_prev,
                              seed=seed, sample_steps=sample_steps, progress=progress,
                              guard=GuardConfig(max_step_rms=max(20.0 * disp, 10.0)))
    written = []
    for k, frames in enumerate(result.frames):
        written += write_node_trajectory(paths["replicas"][k], start.ckpt.nodes, frames, dt_ps=start.step_ps,
                                         start_time_ps=start.start_time_ps,
                                         pdb_path=paths["pdb"] if k == 0 else paths["replicas"][k])
    if truth:
        written += write_node_trajectory(paths["truth"], start.ckpt.nodes, start.frames, dt_ps=start.step_ps,
                                         start_time_ps=start.start_time_ps, pdb_path=paths["truth"])
    reports = [validity_report(f, bonds=start.system.bonds, node_kind=start.node_kind,
                               truth=start.frames[: len(f)] if truth else None) for f in result.frames]
    written.append(_write_validity(paths["validity"], reports))
    return {"replicas": replicas, "seed": int(seed), "sample_steps": sample_steps,
            "steps_done": [len(f) - 1 for f in result.frames], "stopped": result.stopped,
            "validity": ensemble_validity(reports), "outputs": [str(p) for p in written]}
