"""Windowed samples: frame t → frame t + ΔT, as single-graph :class:`GraphBatch` objects.

Definitions (``ΔT`` = ``horizon`` in stored frames):

* input positions ``x_t`` (N, 3) [Å] and target ``x_{t+ΔT}`` (N, 3) [Å];
* velocity channel ``v_t = x_t − x_{t−ΔT}`` (N, 3) [Å per horizon]: the displacement over the previous horizon.
  An autoregressive rollout computes it from its own last two frames, so training and rollout see the same
  quantity. (The paper's code uses the forward difference ``x_{t+1} − x_t``, which needs the frame after the input;
  we do not.) A window therefore spans frames ``t − ΔT … t + ΔT`` and must lie inside one split block.
* edges: all node pairs closer than ``cutoff`` in ``x_t`` (rebuilt for every input frame) ∪ the bonds of the node
  graph (sequence neighbours / covalent bonds); edge scalar = bond flag (1 for a bond, 0 otherwise).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from eghn_md.data.batch import GraphBatch
from eghn_md.errors import DataError, UsageError
from eghn_md.utils import evenly_spaced, reject_unknown_fields

__all__ = [
    "DataConfig",
    "WindowSet",
    "ConcatSet",
    "split_ranges",
    "build_edges",
    "compute_stats",
    "default_cutoff",
    "EDGE_FEATURES",
]

EDGE_FEATURES = ("bond",)
_IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


@dataclass(kw_only=True)
class DataConfig:
    """How windows and graphs are built from a dataset (saved in every checkpoint).

    ``cutoff`` [Å] ``None`` picks the default for the node kind (10 Å for one node per residue, 8 Å for atoms).
    ``split`` are the fractions of every trajectory's frames given to train / validation / test blocks.
    ``window_stride`` takes every k-th start frame.
    ``horizon_ps`` [ps], when set, is the horizon as physical time: each trajectory then steps over
    ``horizon_ps / its frame spacing`` frames (a whole number, see :mod:`eghn_md.data.timebase`) and ``horizon`` is
    overwritten with that count for the first trajectory.
    ``window_stride`` takes every k-th start frame. ``features`` picks the node and edge scalars
    (:data:`~eghn_md.graph.features.FEATURE_SETS`: ``residue`` one-hots and bond flag; ``paper``: [|v|, charge /
    max|charge|] and [d, d²]; ``both``), see :func:`eghn_md.graph.features.feature_spec_for`.
    """

    horizon: int = 15
    horizon_ps: Optional[float] = None
    cutoff: Optional[float] = None
    split: tuple = (0.6, 0.2, 0.2)
    window_stride: int = 1
    features: str = "residue"

    def __post_init__(self) -> None:
        try:
            self._check()
        except UsageError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. `horizon: abc` in a YAML file
            raise UsageError(f"invalid data option ({exc}); see the data: section of the config") from None

    def _check(self) -> None:
        if int(self.horizon) < 1:
            raise UsageError(f"horizon must be >= 1 frame, got {self.horizon!r}")
        if self.horizon_ps is not None:
            self.horizon_ps = float(self.horizon_ps)
            if not 0 < self.horizon_ps < float("inf"):
                raise UsageError(f"horizon_ps must be a finite time > 0 ps, got {self.horizon_ps!r}")
        if self.cutoff is not None and not 0 < float(self.cutoff) < float("inf"):
            raise UsageError(f"cutoff must be a finite number > 0 Å, got {self.cutoff!r}")
        split = tuple(float(s) for s in self.split)
        if len(split) != 3 or any(s < 0 for s in split) or abs(sum(split) - 1.0) > 1e-6:
            raise UsageError(f"split must be three non-negative fractions summing to 1, got {self.split!r}")
        self.split = split
        if int(self.window_stride) < 1:
            raise UsageError(f"window_stride must be >= 1, got {self.window_stride!r}")
        from eghn_md.graph.features import FEATURE_SETS

        if self.features not in FEATURE_SETS:
            raise UsageError(f"unknown features {self.features!r}; valid: {', '.join(FEATURE_SETS)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["split"] = list(self.split)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        reject_unknown_fields(d, cls, what="data")
        d = dict(d)
        if "split" in d:
            if not isinstance(d["split"], (list, tuple)):
                raise UsageError(f"split must be a list of three fractions, got {d['split']!r}")
            d["split"] = tuple(d["split"])
        return cls(**d)


def default_cutoff(nodes_are_atoms: bool) -> float:
    """The paper-matching default cutoff [Å]: 8 Å between backbone atoms, 10 Å between Cα nodes."""
    return 8.0 if nodes_are_atoms else 10.0


def split_ranges(n_frames: int, fractions: Sequence[float]) -> list[tuple[int, int]]:
    """Contiguous frame blocks ``[(start, stop), …]`` (train, val, test) covering ``range(n_frames)``."""
    bounds = [0]
    acc = 0.0
    for f in fractions[:-1]:
        acc += f
        bounds.append(int(round(acc * n_frames)))
    bounds.append(n_frames)
    return [(bounds[k], bounds[k + 1]) for k in range(len(fractions))]


def build_edges(pos: Tensor, cutoff: float, bonds: Tensor, *, batch: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Radius graph of ``pos`` united with ``bonds``.

    Args:
        pos: (N, 3) [Å] node positions.
        cutoff: [Å] contact distance.
        bonds: (2, B) long, both directions of every bond.
        batch: (N,) long graph id of every node (pairs of different graphs are never joined), or None: one graph.

    Returns:
        ``edge_index`` (2, E) long (receiver, sender), sorted by receiver, without duplicates or self loops;
        ``edge_attr`` (E, 1) bond flag in the dtype of ``pos``.
    """
    from eghn_md.graph.edges import radius_graph

    n = pos.shape[0]
    radius = radius_graph(pos, cutoff, batch)
    keys_r = radius[0] * n + radius[1]
    keys_b = bonds[0].to(pos.device) * n + bonds[1].to(pos.device)
    keys = torch.cat([keys_r, keys_b])
    flags = torch.cat([torch.zeros_like(keys_r), torch.ones_like(keys_b)])
    uniq, inverse = torch.unique(keys, return_inverse=True)
    is_bond = torch.zeros_like(uniq).scatter_reduce_(0, inverse, flags, reduce="amax")
    edge_index = torch.stack([uniq // n, uniq % n])
    return edge_index, is_bond.to(pos.dtype).unsqueeze(1)


class WindowSet(Sequence):
    """All windows of one frame block of one trajectory, as single-graph samples.

    Args:
        positions: (T, N, 3) [Å] array-like (NumPy array or lazy h5py dataset) of one trajectory.
        block: ``(start, stop)`` frames this set may touch.
        h: (N, F) node scalars.
        bonds: (2, B) long, both directions.
        horizon: ΔT [frames].
        cutoff: [Å].
        window_stride: take every k-th start frame.
        future_steps: K >= 1; with K > 1 every sample also carries ``future`` (N, K − 1, 3) [Å], the frames
            t + 2ΔT … t + KΔT for multi-step training, NaN beyond the block's end (the windows stay the same).
        time_reversal: also serve every window played backwards (samples ``len/2 …``): input frames
            ``x_{t+ΔT}, x_t``, target ``x_{t−ΔT}``, future ``x_{t−2ΔT} …`` (NaN before the block's start). The
            equilibrium dynamics an MD trajectory samples is statistically time-reversible, so a reversed window is
            as valid a sample as a forward one; a trajectory that crosses between two states in one direction then
            teaches the model both directions instead of "keep going" (see ``train: time_reversal``).
        name: label for messages (``file:trajectory:split``).
    """

    def __init__(
        self,
        *,
        positions,
        block: tuple[int, int],
        h: Tensor,
        bonds: Tensor,
        horizon: int,
        cutoff: float,
        window_stride: int = 1,
        future_steps: int = 1,
        time_reversal: bool = False,
        name: str = "",
    ) -> None:
        start, stop = int(block[0]), int(block[1])
        self.future_steps = int(future_steps)
        self.time_reversal = bool(time_reversal)
        self.block_start = start  #: first frame of the block
        self.block_stop = stop  #: first frame past the block
        self.name = name
        self.horizon = int(horizon)
        self.cutoff = float(cutoff)
        self.h = h
        self.bonds = bonds
        first = start + self.horizon  # needs t - ΔT >= start
        last = stop - 1 - self.horizon  # needs t + ΔT <= stop - 1
        self.starts = list(range(first, last + 1, int(window_stride))) if last >= first else []
        nbytes = (stop - start) * int(np.prod(positions.shape[1:])) * 4
        if nbytes <= _IN_MEMORY_LIMIT_BYTES:
            block_pos = np.asarray(positions[start:stop], dtype=np.float32)
            if not np.isfinite(block_pos).all():
                raise DataError(f"{name or 'dataset'}: non-finite coordinates in frames {start}..{stop - 1}")
            self._pos = torch.from_numpy(block_pos)
            self._offset = start
            self._lazy = None
        else:  # very long trajectories: read the three frames of a window on demand
            self._pos = None
            self._offset = 0
            self._lazy = positions

    def __len__(self) -> int:
        return len(self.starts) * (2 if self.time_reversal else 1)

    def frame(self, t: int) -> Tensor:
        """Positions (N, 3) [Å] of absolute frame ``t``."""
        if self._pos is not None:
            return self._pos[t - self._offset]
        return torch.from_numpy(np.asarray(self._lazy[t], dtype=np.float32))

    def __getitem__(self, i: int) -> GraphBatch:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        step = self.horizon
        if i >= len(self.starts):  # a reversed window
            i, step = i - len(self.starts), -self.horizon
        t = self.starts[i]
        x_prev, x, y = self.frame(t - step), self.frame(t), self.frame(t + step)
        edge_index, edge_attr = build_edges(x, self.cutoff, self.bonds)
        return GraphBatch.single(
            pos=x, vel=x - x_prev, h=self.h, edge_index=edge_index, edge_attr=edge_attr,
            local_edge_index=self.bonds, target=y, future=self._future(t, step),
        )

    def _future(self, t: int, step: int) -> Optional[Tensor]:
        """(N, K − 1, 3) [Å] frames t + 2·step … t + K·step (NaN outside the block), or None when K = 1."""
        if self.future_steps <= 1:
            return None
        frames = []
        for k in range(2, self.future_steps + 1):
            f = t + k * step
            inside = self.block_start <= f < self.block_stop
            frames.append(self.frame(f) if inside else torch.full_like(self.frame(t), float("nan")))
        return torch.stack(frames, dim=1)


class ConcatSet(Sequence):
    """Concatenation of several sample sequences (e.g. one :class:`WindowSet` per trajectory)."""

    def __init__(self, parts: Sequence[Sequence]) -> None:
        self.parts = [p for p in parts]
        self._cum = np.cumsum([0] + [len(p) for p in self.parts]).tolist()

    def __len__(self) -> int:
        return self._cum[-1]

    def __getitem__(self, i: int):
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        k = bisect_right(self._cum, i) - 1
        return self.parts[k][i - self._cum[k]]


def compute_stats(samples: Sequence[GraphBatch], *, max_samples: int = 64) -> dict:
    """Normalisation statistics of a training set (all rotation-invariant scalars).

    Returns ``length_scale`` [Å] (mean edge length), ``radius_scale`` [Å] (RMS distance of a node from its graph's
    centroid), ``vel_scale`` [Å per horizon] (RMS node velocity),
    ``disp_scale`` [Å] (RMS node displacement over the horizon), ``mean_degree``, and the geometry a valid structure
    of the data keeps: ``bond_range`` [Å] ``[min, max]`` length of the node graph's bonds and ``contact_floor`` [Å]
    the closest approach of two nodes at least 3 bonds apart (:mod:`eghn_md.graph.separation`), over the input and
    target frames (None without bonds / such pairs); a generative model's sampler guides its samples into them.
    """
    n = len(samples)
    if n == 0:
        raise UsageError("cannot compute statistics of an empty training set")
    lengths, rad2, vel2, disp2, degree, geometry = [], [], [], [], [], []
    for i in evenly_spaced(n, max_samples):
        s = samples[int(i)]
        geometry.append(_geometry(s))
        d = (s.pos[s.edge_index[0]] - s.pos[s.edge_index[1]]).norm(dim=1)
        lengths.append(d.mean().item())
        rad2.append(((s.pos - s.pos.mean(dim=0)) ** 2).sum(dim=1).mean().item())
        vel2.append((s.vel**2).sum(dim=1).mean().item())
        disp2.append(((s.target - s.pos) ** 2).sum(dim=1).mean().item())
        degree.append(s.edge_index.shape[1] / s.num_nodes)
    return {
        "length_scale": float(np.mean(lengths)),
        "radius_scale": float(max(np.sqrt(np.mean(rad2)), 1e-6)),
        "vel_scale": float(max(np.sqrt(np.mean(vel2)), 1e-6)),
        "disp_scale": float(max(np.sqrt(np.mean(disp2)), 1e-6)),
        "mean_degree": float(np.mean(degree)),
        **_geometry_range(geometry),
    }


def _geometry(s: GraphBatch) -> tuple:
    """(shortest bond, longest bond, closest non-local pair) [Å] of a sample's input and target frames (NaN when
    there are none)."""
    from eghn_md.graph.separation import nonlocal_mask

    frames = [s.pos] + ([s.target] if s.target is not None else [])
    i, j = s.bonds
    far = s.edge_index[:, nonlocal_mask(s.edge_index, s.bonds, s.num_nodes)]
    out = [math.nan, math.nan, math.nan]
    if i.numel():
        d = torch.cat([(x[i] - x[j]).norm(dim=1) for x in frames])
        out[0], out[1] = float(d.min()), float(d.max())
    if far.shape[1]:
        out[2] = float(min((x[far[0]] - x[far[1]]).norm(dim=1).min() for x in frames))
    return tuple(out)


def _geometry_range(geometry: list) -> dict:
    """``bond_range`` and ``contact_floor`` over the samples' :func:`_geometry` (None where undefined)."""
    g = np.asarray(geometry, dtype=np.float64)
    has_bonds = bool(np.isfinite(g[:, 0]).any())
    floor = np.nanmin(g[:, 2]) if np.isfinite(g[:, 2]).any() else None
    return {"bond_range": [float(np.nanmin(g[:, 0])), float(np.nanmax(g[:, 1]))] if has_bonds else None,
            "contact_floor": None if floor is None else float(floor)}
