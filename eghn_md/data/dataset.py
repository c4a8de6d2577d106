"""The eghn-md dataset file (HDF5): node metadata of one system and one group per trajectory.

Layout (format version 1)::

    /                      attrs: format = "eghn-md dataset", format_version, eghn_md_version, created, selection,
                                  topology, topology_path, topology_sha256, length_unit = "angstrom",
                                  time_unit = "ps", trajectory_names (JSON list, file order)
    /nodes/                resname, resid, segid, chain, name, atom_index, residue_type, atom_type,
                           charge [e] (only if the topology has charges), bonds (n_bonds, 2) int64;
                           attrs: level ("residue" | "atom"), bonds_source, n_nodes
    /trajectories/<name>/  positions (n_frames, n_nodes, 3) float32 [Å], chunked by frames
                           times (n_frames,) float64 [ps], the reader's frame times
                           frame_index (n_frames,) int64, frame numbers in the source file
                           attrs: source, source_path, source_format, sha256, stride, n_source_frames,
                                  times_from_file (False: the file had no time step, times = frame × 1 ps)

Format history: 1 — first version.

Writing streams: :func:`write_dataset` takes blocks of frames and writes each block into the chunked dataset as it
comes (no whole trajectory in memory), into a temporary file that replaces the output only when complete.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from eghn_md import __version__
from eghn_md.errors import DataError, EghnError, UsageError
from eghn_md.graph.nodes import NodeTable
from eghn_md.io.atomic import atomic_path, check_output_path

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "TrajectoryData", "write_dataset", "Dataset", "trajectory_name", "chunk_frames",
]

FORMAT_NAME = "eghn-md dataset"
FORMAT_VERSION = 1
_CHUNK_BYTES = 1 << 18  # ~256 KiB position chunks: a few frames of a large system, many of a small one


@dataclass
class TrajectoryData:
    """One trajectory to write: its length and a source of ``(positions, times)`` blocks.

    Attributes:
        name: group name (see :func:`trajectory_name`).
        n_frames: frames that ``blocks`` will yield in total.
        blocks: iterable of ``(positions (m, n_nodes, 3) [Å], times (m,) [ps])``.
        source, source_path, source_format, sha256: provenance of the file the frames came from.
        stride: frame stride used when reading; ``frame_index`` = 0, stride, 2·stride, …
        n_source_frames: frames in the source file (default ``n_frames``).
        times_from_file: False when the source had no time step and ``times`` are frame numbers × 1 ps.
    """

    name: str
    n_frames: int
    blocks: Iterable[tuple[np.ndarray, np.ndarray]]
    source: str = ""
    source_path: str = ""
    source_format: str = ""
    sha256: str = ""
    stride: int = 1
    n_source_frames: int | None = None
    times_from_file: bool = True

    @classmethod
    def from_arrays(
        cls, name: str, positions: np.ndarray, times: np.ndarray | None = None, *, dt: float = 1.0, **kw: Any
    ) -> "TrajectoryData":
        """In-memory positions ``(n_frames, n_nodes, 3)`` [Å]; ``times`` default ``dt · frame`` [ps]."""
        positions = np.asarray(positions, dtype=np.float32)
        times = np.arange(len(positions)) * float(dt) if times is None else np.asarray(times, dtype=np.float64)
        return cls(name=name, n_frames=len(positions), blocks=[(positions, times)], **kw)


def trajectory_name(path: str | os.PathLike, taken: Iterable[str] = ()) -> str:
    """A group name from a file name: the stem with unsafe characters replaced, made unique among ``taken``."""
    stem = Path(path).name
    for ext in (".gz", ".bz2"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "trajectory"
    taken = set(taken)
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def write_dataset(
    path: str | os.PathLike,
    nodes: NodeTable,
    trajectories: Iterable[TrajectoryData],
    *,
    selection: str = "",
    topology: str = "",
    topology_path: str = "",
    topology_sha256: str = "",
    overwrite: bool = False,
    on_frames: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a dataset file atomically, streaming each trajectory's blocks into a chunked dataset.

    Args:
        path: output file; must not exist unless ``overwrite``.
        nodes: node metadata shared by all trajectories.
        trajectories: one :class:`TrajectoryData` per group (names must be unique).
        on_frames: called as ``on_frames(trajectory_number, frames_in_block)`` after each block is written.

    Raises:
        UsageError: the output exists without ``overwrite``, or names collide.
        DataError: a block has the wrong shape, non-finite values, or the frame count differs from ``n_frames``.
    """
    import h5py

    path = check_output_path(path, overwrite=overwrite)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["eghn_md_version"] = __version__
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["selection"] = selection
            f.attrs["topology"] = topology
            f.attrs["topology_path"] = topology_path
            f.attrs["topology_sha256"] = topology_sha256
            f.attrs["length_unit"] = "angstrom"
            f.attrs["time_unit"] = "ps"
            nodes.to_h5(f.create_group("nodes"))
            group = f.create_group("trajectories")
            names: list[str] = []
            for number, traj in enumerate(trajectories):
                if traj.name in names or not traj.name or "/" in traj.name:
                    raise UsageError(f"trajectory name {traj.name!r} is empty, contains '/', or is used twice")
                _write_trajectory(group.create_group(traj.name), traj, nodes.n_nodes, number, on_frames)
                names.append(traj.name)
            if not names:
                raise UsageError("a dataset needs at least one trajectory")
            f.attrs["trajectory_names"] = json.dumps(names)
    return path


def _write_trajectory(g, traj: TrajectoryData, n_nodes: int, number: int, on_frames) -> None:
    n = int(traj.n_frames)
    if n < 1:
        raise DataError(f"trajectory {traj.name!r} has no frames")
    chunks = (min(n, chunk_frames(n_nodes)), n_nodes, 3)
    pos = g.create_dataset("positions", shape=(n, n_nodes, 3), dtype=np.float32, chunks=chunks)
    pos.attrs["units"] = "angstrom"
    times = np.empty(n, dtype=np.float64)
    start = 0
    for block, t in traj.blocks:
        block = np.asarray(block)
        m = len(block)
        if block.shape[1:] != (n_nodes, 3) or np.shape(t) != (m,):
            raise DataError(
                f"trajectory {traj.name!r}: block of shape {block.shape} with {np.shape(t)} times, "
                f"expected (frames, {n_nodes}, 3) and (frames,)"
            )
        if start + m > n:
            raise DataError(f"trajectory {traj.name!r} yielded more than the announced {n} frames")
        if not np.isfinite(block).all():
            bad = start + int(np.nonzero(~np.isfinite(block).reshape(m, -1).all(axis=1))[0][0])
            raise DataError(
                f"trajectory {traj.source or traj.name!r}: non-finite (NaN/Inf) coordinates in frame "
                f"{bad * traj.stride} of the source"
            )
        pos[start : start + m] = block
        times[start : start + m] = t
        start += m
        if on_frames is not None:
            on_frames(number, m)
    if start != n:
        raise DataError(
            f"trajectory {traj.source or traj.name!r} yielded {start} frames, expected {n} as its header announces "
            "(truncated or corrupted file?)"
        )
    if not np.isfinite(times).all():
        raise DataError(f"trajectory {traj.source or traj.name!r} has non-finite frame times")
    g.create_dataset("times", data=times).attrs["units"] = "ps"
    g.create_dataset("frame_index", data=np.arange(n, dtype=np.int64) * int(traj.stride))
    g.attrs["source"] = traj.source
    g.attrs["source_path"] = traj.source_path
    g.attrs["source_format"] = traj.source_format
    g.attrs["sha256"] = traj.sha256
    g.attrs["stride"] = int(traj.stride)
    g.attrs["n_source_frames"] = int(traj.n_source_frames if traj.n_source_frames is not None else n)
    g.attrs["times_from_file"] = bool(traj.times_from_file)


def chunk_frames(n_nodes: int) -> int:
    """Frames per HDF5 chunk of ``positions``: about 256 KiB (at least one frame)."""
    return max(1, _CHUNK_BYTES // max(1, n_nodes * 12))


# ---------------------------------------------------------------------------------------------------- reading
_H5_FAILURES = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError)


def _damaged(path: Path, exc: BaseException) -> DataError:
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    return DataError(f"{str(path)!r} is damaged or not a complete eghn-md dataset ({detail})")


def _guarded(method):
    """Turn h5py failures of a damaged file inside ``method`` into :class:`DataError`."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except EghnError:
            raise
        except _H5_FAILURES as exc:
            raise _damaged(self.path, exc) from exc

    return wrapper


class Dataset:
    """Read-only view of a dataset file; positions stay on disk until sliced.

    Example::

        with Dataset("adk.h5") as ds:
            x = ds.positions(ds.trajectories[0])[10:20]   # (10, n_nodes, 3) float32 [Å]

    Raises (on opening):
        UsageError: the file does not exist.
        DataError: not an HDF5 file, not an eghn-md dataset, or written by a newer format version.
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        if not self.path.exists():
            raise UsageError(f"dataset file {str(self.path)!r} does not exist")
        if self.path.is_dir():
            raise UsageError(f"dataset {str(self.path)!r} is a directory, expected a file from `eghn-md preprocess`")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{str(self.path)!r} is not a readable HDF5 file ({' '.join(str(exc).split())})") from None
        try:
            self._check_header()
            self.nodes: NodeTable = NodeTable.from_h5(self._f["nodes"])
            names = self._f.attrs.get("trajectory_names")
            self.trajectories: list[str] = json.loads(names) if names else sorted(self._f["trajectories"])
        except EghnError:
            self._f.close()
            raise
        except _H5_FAILURES as exc:  # damaged HDF5 internals surface as assorted h5py errors
            self._f.close()
            raise _damaged(self.path, exc) from exc
        except BaseException:
            self._f.close()
            raise

    def _check_header(self) -> None:
        f = self._f
        if f.attrs.get("format") != FORMAT_NAME:
            if "coordinates" in f and "topology" in f:
                raise DataError(
                    f"{str(self.path)!r} is an mdtraj trajectory, not an eghn-md dataset; "
                    "convert it with `eghn-md preprocess TOPOLOGY TRAJECTORY -o DATA.h5`"
                )
            raise DataError(f"{str(self.path)!r} is not an eghn-md dataset (no format={FORMAT_NAME!r} attribute)")
        version = int(f.attrs.get("format_version", -1))
        if version > FORMAT_VERSION:
            raise DataError(
                f"{str(self.path)!r} has dataset format version {version}, newer than {FORMAT_VERSION} which this "
                f"eghn-md {__version__} reads; upgrade eghn-md"
            )
        if version < 1:
            raise DataError(f"{str(self.path)!r} has an invalid dataset format version {version}")
        for key in ("nodes", "trajectories"):
            if key not in f:
                raise DataError(f"{str(self.path)!r} is incomplete: no '/{key}' group")

    # ------------------------------------------------------------------------------------------------ access
    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes (format, versions, selection, topology provenance, units)."""
        return {k: _plain(v) for k, v in self._f.attrs.items()}

    @property
    def selection(self) -> str:
        return str(self._f.attrs.get("selection", ""))

    @property
    def format_version(self) -> int:
        return int(self._f.attrs["format_version"])

    @property
    def n_nodes(self) -> int:
        return self.nodes.n_nodes

    def _group(self, name: str | int):
        if isinstance(name, (int, np.integer)):
            if not 0 <= int(name) < len(self.trajectories):
                raise UsageError(f"trajectory number {name} out of range 0..{len(self.trajectories) - 1}")
            name = self.trajectories[int(name)]
        if name not in self.trajectories:
            raise UsageError(f"no trajectory {name!r} in {str(self.path)!r}; it has {self.trajectories}")
        return self._f["trajectories"][name]

    def positions(self, name: str | int):
        """The h5py dataset ``(n_frames, n_nodes, 3)`` float32 [Å] of a trajectory (lazy; slice it to read)."""
        return self._group(name)["positions"]

    @_guarded
    def times(self, name: str | int) -> np.ndarray:
        """(n_frames,) float64 [ps] frame times."""
        return self._group(name)["times"][()]

    @_guarded
    def frame_index(self, name: str | int) -> np.ndarray:
        """(n_frames,) int64 frame numbers in the source trajectory."""
        return self._group(name)["frame_index"][()]

    @_guarded
    def n_frames(self, name: str | int) -> int:
        return int(self._group(name)["positions"].shape[0])

    @_guarded
    def trajectory_attrs(self, name: str | int) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self._group(name).attrs.items()}

    def iter_positions(self, name: str | int, *, block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, positions[start:start + m])`` in blocks aligned with the file's chunks."""
        ds = self.positions(name)
        step = block or (ds.chunks[0] if ds.chunks else 64) * 4
        for start in range(0, ds.shape[0], step):
            yield start, ds[start : start + step]

    # ------------------------------------------------------------------------------------------------ checks
    @_guarded
    def validate(self) -> None:
        """Check shapes, dtypes, monotone frame bookkeeping and that every stored value is finite.

        Reads positions block by block (never a whole trajectory at once).

        Raises:
            DataError: naming the first problem found.
        """
        n = self.n_nodes
        where = str(self.path)
        if not self.trajectories:
            raise DataError(f"{where!r} has no trajectories")
        for name in self.trajectories:
            if name not in self._f["trajectories"]:
                raise DataError(f"{where!r}: trajectory {name!r} is listed but missing")
            g = self._f["trajectories"][name]
            for key in ("positions", "times", "frame_index"):
                if key not in g:
                    raise DataError(f"{where!r}: trajectory {name!r} has no {key!r}")
            pos, times = g["positions"], g["times"]
            if pos.ndim != 3 or pos.shape[1:] != (n, 3):
                raise DataError(f"{where!r}: {name!r} positions have shape {pos.shape}, expected (frames, {n}, 3)")
            if pos.dtype != np.float32:
                raise DataError(f"{where!r}: {name!r} positions are {pos.dtype}, expected float32")
            if times.shape != (pos.shape[0],) or g["frame_index"].shape != (pos.shape[0],):
                raise DataError(f"{where!r}: {name!r} has {times.shape} times for {pos.shape[0]} frames")
            g["frame_index"][()]  # readable (a damaged file fails here, not later)
            if not np.isfinite(times[()]).all():
                raise DataError(f"{where!r}: {name!r} has non-finite frame times")
            for start, block in self.iter_positions(name):
                if not np.isfinite(block).all():
                    bad = start + int(np.nonzero(~np.isfinite(block).reshape(len(block), -1).all(axis=1))[0][0])
                    raise DataError(f"{where!r}: {name!r} has non-finite positions at frame {bad}")

    @_guarded
    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: system, selection, nodes, and per trajectory frames, time step and span."""
        a = self.attrs
        trajs = []
        for name in self.trajectories:
            t = self.times(name)
            ta = self.trajectory_attrs(name)
            dt = float(np.median(np.diff(t))) if len(t) > 1 else None
            trajs.append(
                {
                    "name": name,
                    "source": ta.get("source", ""),
                    "n_frames": len(t),
                    "stride": int(ta.get("stride", 1)),
                    "n_source_frames": int(ta.get("n_source_frames", len(t))),
                    "time_step_ps": dt,
                    "t_start_ps": float(t[0]) if len(t) else None,
                    "t_end_ps": float(t[-1]) if len(t) else None,
                    "times_from_file": bool(ta.get("times_from_file", True)),
                    "sha256": ta.get("sha256", ""),
                }
            )
        return {
            "path": str(self.path),
            "format": a.get("format"),
            "format_version": int(a.get("format_version", 0)),
            "eghn_md_version": a.get("eghn_md_version", ""),
            "created": a.get("created", ""),
            "topology": a.get("topology", ""),
            "selection": self.selection,
            "n_nodes": self.n_nodes,
            "node_level": self.nodes.level,
            "n_bonds": int(len(self.nodes.bonds)),
            "bonds_source": self.nodes.bonds_source,
            **_chain_summary(self.nodes),
            "has_charges": self.nodes.charge is not None,
            "n_trajectories": len(trajs),
            "n_frames_total": int(sum(t["n_frames"] for t in trajs)),
            "length_unit": a.get("length_unit", "angstrom"),
            "time_unit": a.get("time_unit", "ps"),
            "trajectories": trajs,
        }

    # ------------------------------------------------------------------------------------------------ lifetime
    def close(self) -> None:
        if getattr(self, "_f", None) is not None and self._f.id.valid:
            self._f.close()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, n_nodes={self.n_nodes}, trajectories={self.trajectories})"


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _chain_summary(nodes) -> dict[str, Any]:
    """``n_chains``, ``n_gaps`` and one line per chain (:func:`eghn_md.graph.chains.chain_model`)."""
    from eghn_md.graph.chains import chain_model

    model = chain_model(nodes)
    return {"n_chains": len(model.chains), "n_gaps": model.n_gaps, "chains": model.describe(nodes.resid)}
