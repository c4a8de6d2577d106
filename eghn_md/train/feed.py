"""The training input pipeline: one rank's share of every batch, built in the main process or in worker processes.

A training batch is built in three steps, all on the host: the samples (radius graph of the input frame ∪ bonds,
:class:`~eghn_md.data.samples.WindowSet`), the configured input noise (:func:`with_noise`, seeded by
``(seed, epoch, sample index)``), and the pieces of at most ``max_chunk_nodes`` nodes collated into disjoint-union
graphs, with the batch's loss denominators (:meth:`~eghn_md.train.objective.Objective.totals`).

With ``workers`` = 0 this runs in the training process, one batch at a time. With ``workers`` > 0 it runs in
``torch.utils.data.DataLoader`` worker processes (persistent over the run, ``prefetch`` batches ahead per worker;
pinned host memory on CUDA, so the copies to the device can be ``non_blocking``). Every batch is a pure function of
``(epoch, its sample indices)`` and the loader is given its own seed generator (the global torch RNG is never
drawn from), so the training history is bit-identical whatever the number of workers, and a resumed run still
follows an uninterrupted one.

Distributed: each rank builds only the samples of its own share of the global batch (``indices[rank::world]``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch

from eghn_md.data.batch import GraphBatch, collate
from eghn_md.errors import UsageError
from eghn_md.train.objective import Objective, sample_noise, sample_refine_noise

__all__ = ["Prepared", "with_noise", "chunks", "prepare", "rank_share", "default_workers", "resolve_workers",
           "BatchFeed"]


@dataclass
class Prepared:
    """One rank's share of one global batch: ``totals`` (loss denominators), ``pieces`` (collated graphs of at most
    ``max_chunk_nodes`` nodes each, on the host) and ``n_global`` (samples in the global batch)."""

    totals: dict
    pieces: list
    n_global: int


def with_rotation(sample: GraphBatch, *, seed: int, epoch: int, index: int) -> GraphBatch:
    """``sample`` turned by a uniformly random proper rotation about its input frame's centroid: positions, the
    velocity channel, the target and the future frames alike (the edges' lengths and scalars do not change). The
    rotation of sample ``index`` in ``epoch`` is drawn from a generator seeded by ``(seed, epoch, index)``."""
    g = torch.Generator()
    g.manual_seed(((int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + int(index)) * 7 + 1)
    q, r = torch.linalg.qr(torch.randn((3, 3), generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # Haar-uniform orthogonal matrix
    q[:, 0] *= torch.sign(torch.linalg.det(q))  # proper: det +1
    rot = q.to(device=sample.pos.device, dtype=sample.pos.dtype)
    centre = sample.pos.mean(dim=0)
    turn = {"pos": (sample.pos - centre) @ rot.T + centre, "vel": sample.vel @ rot.T}
    if sample.target is not None:
        turn["target"] = (sample.target - centre) @ rot.T + centre
    if sample.future is not None:
        turn["future"] = (sample.future - centre) @ rot.T + centre
    return sample.replace(**turn)


def with_noise(sample: GraphBatch, *, noise_std: float, noise_scale: float, seed: int, epoch: int,
               index: int, refine_noise: float = 0.0, rotate: bool = False) -> GraphBatch:
    """``sample`` with the configured noise on its two input frames (the target stays clean), with ``rotate`` a
    random rotation first (:func:`with_rotation`), and, with ``refine_noise`` > 0, the noise its model adds before
    the bond-graph refinement."""
    if rotate:
        sample = with_rotation(sample, seed=seed, epoch=epoch, index=index)
    if refine_noise > 0:
        sample = sample.replace(refine_noise=sample_refine_noise(
            sample.num_nodes, refine_noise, seed=seed, epoch=epoch, index=index, dtype=sample.pos.dtype,
            device=sample.pos.device))
    if noise_std <= 0 and noise_scale <= 0:
        return sample
    noise, scale = sample_noise(sample.num_nodes, noise_std, seed=seed, epoch=epoch, index=index,
                                dtype=sample.pos.dtype, device=sample.pos.device, scale_std=noise_scale)
    prev = sample.pos - sample.vel
    centre = sample.pos.mean(dim=0)
    pos = centre + (sample.pos - centre) * scale + noise[1]
    prev = centre + (prev - centre) * scale + noise[0]
    return sample.replace(pos=pos, vel=pos - prev)


def chunks(samples: list, max_nodes: int) -> list:
    """``samples`` in consecutive groups of at most ``max_nodes`` nodes (a larger sample alone); 0: one group."""
    if max_nodes <= 0:
        return [samples]
    out, cur, n = [], [], 0
    for s in samples:
        if cur and n + s.num_nodes > max_nodes:
            out.append(cur)
            cur, n = [], 0
        cur.append(s)
        n += s.num_nodes
    if cur:
        out.append(cur)
    return out


def rank_share(indices: Sequence[int], rank: int, world: int) -> list:
    """The sample indices of a global batch that rank ``rank`` of ``world`` trains on."""
    return [int(i) for i in indices[rank::world]]


def prepare(dataset: Sequence[GraphBatch], indices: Sequence[int], *, config, objective: Objective, epoch: int,
            n_global: int) -> Prepared:
    """Build, noise, split and collate the samples ``indices`` of ``dataset`` (``config``: a ``TrainConfig``)."""
    samples = [with_noise(dataset[i], noise_std=float(config.noise_std), noise_scale=float(config.noise_scale),
                          seed=int(config.seed), epoch=epoch, index=i, refine_noise=float(config.refine_noise),
                          rotate=bool(config.rotate))
               for i in indices]
    draw = getattr(objective, "draw", None)  # an objective's own per-sample draws (a generative model's flow)
    if draw is not None:
        samples = [draw(s, seed=int(config.seed), epoch=epoch, index=int(i))
                   for s, i in zip(samples, indices, strict=True)]
    pieces = [collate(p) for p in chunks(samples, int(config.max_chunk_nodes))]
    return Prepared(totals=objective.totals(samples), pieces=pieces, n_global=n_global)


def default_workers(device: torch.device) -> int:
    """Worker processes when ``workers`` is not set: on CUDA min(4, CPUs − 1), so sample building overlaps the
    device's compute; on CPU none, since a worker would take cores from the model's own threads (on the 2-core
    development machine ``train --workers 1`` measured slower than 0, see examples/benchmarks/RESULTS.md)."""
    if device.type != "cuda":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cpus - 1))


def resolve_workers(workers: Optional[int], device: torch.device) -> int:
    if workers is None:
        return default_workers(device)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UsageError(f"workers must be a whole number >= 0 (or null for the default), got {workers!r}")
    return workers


class _Source(torch.utils.data.Dataset):
    """Map-style view for the DataLoader: key ``(epoch, indices, n_global)`` → :class:`Prepared`."""

    def __init__(self, dataset, config, objective: Objective) -> None:
        self.dataset, self.config, self.objective = dataset, config, objective

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key) -> Prepared:
        epoch, indices, n_global = key
        return prepare(self.dataset, indices, config=self.config, objective=self.objective, epoch=epoch,
                       n_global=n_global)


class _Keys(torch.utils.data.Sampler):
    """The current epoch's batch keys (set before each pass over the loader)."""

    def __init__(self) -> None:
        self.keys: list = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def _identity(x):
    return x


class BatchFeed:
    """Iterates one rank's :class:`Prepared` batches of an epoch, in order; see the module docstring.

    Args:
        dataset: the training samples.
        config: the run's ``TrainConfig`` (``batch_size``, ``seed``, noise, ``max_chunk_nodes``).
        objective: provides the loss denominators.
        workers: worker processes (0: build in this process).
        rank, world: this process's place in the process group.
        pin_memory: put batches in page-locked memory (CUDA).
        prefetch: batches each worker builds ahead.
    """

    def __init__(self, dataset, *, config, objective: Objective, workers: int, rank: int = 0, world: int = 1,
                 pin_memory: bool = False, prefetch: int = 2) -> None:
        self.dataset, self.config, self.objective = dataset, config, objective
        self.rank, self.world, self.workers = int(rank), int(world), int(workers)
        self._loader = None
        if self.workers > 0:
            self._keys = _Keys()
            self._loader = torch.utils.data.DataLoader(
                _Source(dataset, config, objective), batch_size=None, sampler=self._keys, num_workers=self.workers,
                collate_fn=_identity, pin_memory=pin_memory, prefetch_factor=prefetch, persistent_workers=True,
                generator=torch.Generator().manual_seed(int(config.seed)))

    def _keys_of(self, order: Sequence[int], epoch: int) -> list:
        keys, bs = [], int(self.config.batch_size)
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            if len(idx) < self.world:  # too few samples to give every rank one: skip (last batch only)
                continue
            keys.append((epoch, rank_share(idx, self.rank, self.world), len(idx)))
        return keys

    def epoch(self, order: Sequence[int], epoch: int) -> Iterator[Prepared]:
        """This rank's batches of an epoch whose global sample order is ``order``."""
        keys = self._keys_of(order, epoch)
        if self._loader is None:
            for e, idx, n in keys:
                yield prepare(self.dataset, idx, config=self.config, objective=self.objective, epoch=e, n_global=n)
            return
        self._keys.keys = keys
        yield from self._loader

    def close(self) -> None:
        """Stop the worker processes (also done when the feed is garbage-collected)."""
        if self._loader is not None and getattr(self._loader, "_iterator", None) is not None:
            self._loader._iterator._shutdown_workers()
            self._loader._iterator = None
