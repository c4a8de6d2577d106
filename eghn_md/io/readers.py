"""Open a molecular system: one topology plus trajectories, read through MDAnalysis (or mdtraj for ``.h5``).

This module is the unit boundary: everything it hands out is in Å (positions, float32) and ps (times, float64).
MDAnalysis readers already convert to Å/ps; mdtraj's HDF5 format stores nm and ps, converted here (× 10).

Formats are found by file extension (compressed ``.gz``/``.bz2`` variants included where MDAnalysis reads them):
topology: :data:`SUPPORTED_TOPOLOGY_EXTENSIONS`; trajectory: :data:`SUPPORTED_TRAJECTORY_EXTENSIONS`. The mdtraj
HDF5 format (``.h5``: PyTables file with ``coordinates``, ``time`` and a JSON ``topology``) may be the topology, a
trajectory, or both; for a topology an MDAnalysis ``Universe.empty`` is built with its atom names, residue names
and numbers, segment and chain ids and bonds, so MDAnalysis selections work on it.

Nothing here loads a whole trajectory: :meth:`TrajectorySource.iter_blocks` yields blocks of selected positions.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from eghn_md.errors import DataError, UsageError

__all__ = [
    "SUPPORTED_TOPOLOGY_EXTENSIONS",
    "SUPPORTED_TRAJECTORY_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "System",
    "TrajectorySource",
    "open_system",
    "sha256_file",
    "file_format",
    "is_mdtraj_h5",
]

_NM_TO_ANGSTROM = 10.0
_MDTRAJ_H5 = "H5"
# MDAnalysis format keys that are not file extensions (in-memory objects, other libraries' objects, streams).
_NOT_FILES = {
    "CHAIN", "CHEMFILES", "MEMORY", "IMD", "MINIMAL", "OPENMMAPP", "OPENMMSIMULATION", "OPENMMTOPOLOGY",
    "PARMED", "RDKIT",
}  # fmt: skip
_COMPRESSED = (".gz", ".bz2")


def _mda_formats() -> tuple[set[str], set[str]]:
    import MDAnalysis

    topo = {k for k in MDAnalysis._PARSERS if k not in _NOT_FILES and "." not in k}
    traj = {k for k in MDAnalysis._READERS if k not in _NOT_FILES and "." not in k}
    return topo, traj


def _supported() -> tuple[tuple[str, ...], tuple[str, ...]]:
    topo, traj = _mda_formats()
    return tuple(sorted(k.lower() for k in topo | {_MDTRAJ_H5})), tuple(sorted(k.lower() for k in traj | {_MDTRAJ_H5}))


SUPPORTED_TOPOLOGY_EXTENSIONS, SUPPORTED_TRAJECTORY_EXTENSIONS = _supported()
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(
    sorted(set(SUPPORTED_TOPOLOGY_EXTENSIONS) | set(SUPPORTED_TRAJECTORY_EXTENSIONS))
)


def sha256_file(path: str | os.PathLike, *, block_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``block_size`` pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block_size):
            h.update(chunk)
    return h.hexdigest()


def file_format(path: str | os.PathLike, *, kind: str) -> str:
    """Upper-case format key of ``path`` from its extension (``.gz``/``.bz2`` stripped), checked for ``kind``.

    Args:
        kind: ``"topology"`` or ``"trajectory"``.

    Raises:
        UsageError: the file does not exist, is a directory, or its extension is not supported for ``kind``.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{kind} file {str(p)!r} does not exist")
    if p.is_dir():
        raise UsageError(f"{kind} {str(p)!r} is a directory, expected a file")
    name = p.name.lower()
    for comp in _COMPRESSED:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    ext = name.rsplit(".", 1)[-1].upper() if "." in name else ""
    valid = SUPPORTED_TOPOLOGY_EXTENSIONS if kind == "topology" else SUPPORTED_TRAJECTORY_EXTENSIONS
    if ext.lower() not in valid:
        shown = f"'.{ext.lower()}'" if ext else "no extension"
        raise UsageError(f"unknown {kind} format {shown} of {str(p)!r}; supported: {', '.join(valid)}")
    return ext


def is_mdtraj_h5(path: str | os.PathLike) -> bool:
    """True if ``path`` is an HDF5 file laid out by mdtraj (``coordinates`` + ``topology``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "coordinates" in f and "topology" in f
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------- trajectories
@dataclass
class TrajectorySource:
    """One trajectory file of a system: its length and a streaming reader of selected positions.

    Attributes:
        path: the file.
        format: upper-case format key (``DCD``, ``XTC`` …, ``H5`` for mdtraj HDF5).
        n_atoms: atoms per frame in the file.
        n_frames: frames in the file (before any stride).
        times_from_file: False when the file stores no time step and the reader assumes 1 ps per frame.
    """

    path: Path
    format: str
    n_atoms: int
    n_frames: int
    times_from_file: bool = True
    _reader: object = field(default=None, repr=False)

    def n_strided(self, stride: int = 1) -> int:
        """Frames kept with ``stride``: frames 0, stride, 2·stride, …"""
        return -(-self.n_frames // stride)

    def iter_blocks(
        self, indices: np.ndarray, *, stride: int = 1, block: int = 64
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions, times)`` blocks of at most ``block`` frames, in order.

        Args:
            indices: (n_sel,) int, 0-based atom indices to keep.
            stride: keep every ``stride``-th frame, starting at frame 0.
            block: frames per yielded block.

        Yields:
            positions: (m, n_sel, 3) float32 [Å] (a buffer reused between blocks: copy it to keep it).
            times: (m,) float64 [ps], the reader's frame times.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if self.format == _MDTRAJ_H5:
            yield from self._iter_mdtraj(indices, stride, block)
        else:
            yield from self._iter_mda(indices, stride, block)

    def _iter_mda(self, indices: np.ndarray, stride: int, block: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        reader = self._reader
        buf = np.empty((block, len(indices), 3), dtype=np.float32)
        times = np.empty(block, dtype=np.float64)
        everything = len(indices) == self.n_atoms and np.array_equal(indices, np.arange(self.n_atoms))
        k = 0
        for ts in _guarded(reader[::stride], self.path):
            if not ts.has_positions:
                raise DataError(f"frame {ts.frame} of {str(self.path)!r} has no coordinates")
            if everything:
                buf[k] = ts.positions
            else:
                np.take(ts.positions, indices, axis=0, out=buf[k])
            if self.times_from_file:
                times[k] = ts.time
            else:  # MDAnalysis warns on every access; the missing time step is reported once by preprocess
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    times[k] = ts.time
            k += 1
            if k == block:
                yield buf, times
                k = 0
        if k:
            yield buf[:k], times[:k]

    def _iter_mdtraj(self, indices: np.ndarray, stride: int, block: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import mdtraj

        chunks = mdtraj.iterload(str(self.path), chunk=block, stride=stride, atom_indices=indices)
        for chunk in _guarded(chunks, self.path, unit="block"):
            pos = np.asarray(chunk.xyz, dtype=np.float32) * np.float32(_NM_TO_ANGSTROM)
            yield pos, np.asarray(chunk.time, dtype=np.float64)

    def time_step_ps(self) -> float:
        """[ps] between consecutive frames: the file's time step (1 ps when it stores none, as MDAnalysis
        assumes); NaN for a file of one frame."""
        if self.n_frames < 2:
            return float("nan")
        if self.format == _MDTRAJ_H5:
            import h5py

            with h5py.File(self.path, "r") as f:
                t = f["time"][:2] if "time" in f else None
            return float(t[1] - t[0]) if t is not None and len(t) == 2 else 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self._reader.dt)

    def close(self) -> None:
        if self._reader is not None and hasattr(self._reader, "close"):
            self._reader.close()
        self._reader = None


def _guarded(frames, path: Path, unit: str = "frame"):
    """Iterate a reader's frames, turning a reader failure mid-file (corrupted or truncated frame) into DataError."""
    it = iter(frames)
    number = 0
    while True:
        try:
            ts = next(it)
        except StopIteration:
            return
        except Exception as exc:  # MDAnalysis raises OSError, ValueError, EOFError … for a damaged frame
            raise DataError(f"cannot read {unit} {number} of trajectory {str(path)!r}: {_one_line(exc)}") from exc
        number += 1
        yield ts


def _open_trajectory(path: Path, fmt: str, n_atoms_topology: int) -> TrajectorySource:
    if fmt == _MDTRAJ_H5:
        n_frames, n_atoms = _mdtraj_h5_shape(path)
        _require_pytables(path)
        src = TrajectorySource(path=path, format=fmt, n_atoms=n_atoms, n_frames=n_frames)
    else:
        from MDAnalysis.coordinates.core import get_reader_for

        reader = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader_cls = get_reader_for(str(path))
                reader = reader_cls.__new__(reader_cls)
                reader.__init__(str(path), n_atoms=n_atoms_topology)
        except Exception as exc:  # any reader failure is a data problem of this file
            if reader is not None:  # a half-built MDAnalysis reader's __del__ would print a traceback
                reader.close = lambda: None
            raise DataError(f"cannot read trajectory {str(path)!r}: {_one_line(exc)}") from exc
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _ = reader.ts.time
        known = not any("no dt information" in str(w.message) for w in caught)
        src = TrajectorySource(
            path=path, format=fmt, n_atoms=reader.n_atoms, n_frames=reader.n_frames, times_from_file=known,
            _reader=reader,
        )
    if src.n_atoms != n_atoms_topology:
        src.close()
        raise DataError(
            f"trajectory {str(path)!r} has {src.n_atoms} atoms but the topology has {n_atoms_topology}; "
            "they do not describe the same system"
        )
    return src


def _mdtraj_h5_shape(path: Path) -> tuple[int, int]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "coordinates" not in f:
                if "format" in f.attrs or "trajectories" in f:
                    raise UsageError(f"{str(path)!r} is an eghn-md dataset, not a trajectory (see `eghn-md info`)")
                raise DataError(f"{str(path)!r} is an HDF5 file without 'coordinates': not an mdtraj trajectory")
            shape = f["coordinates"].shape
    except OSError as exc:
        raise DataError(f"cannot read HDF5 file {str(path)!r}: {_one_line(exc)}") from exc
    if len(shape) != 3 or shape[2] != 3:
        raise DataError(f"mdtraj file {str(path)!r}: coordinates have shape {shape}, expected (frames, atoms, 3)")
    return int(shape[0]), int(shape[1])


# ------------------------------------------------------------------------------------------------------ system
@dataclass
class System:
    """A topology (as an MDAnalysis Universe, for selections) and the trajectories to read.

    Use :func:`open_system`; close it (or use it as a context manager) to release file handles.
    """

    topology: Path
    universe: object
    trajectories: list[TrajectorySource]

    @property
    def n_atoms(self) -> int:
        return self.universe.atoms.n_atoms

    def select(self, selection: str):
        """The MDAnalysis AtomGroup of ``selection`` (sorted by atom index, duplicates removed).

        Raises:
            UsageError: the selection string is invalid or matches no atom.
        """
        from MDAnalysis.exceptions import SelectionError

        if not selection or not selection.strip():
            raise UsageError("the selection string is empty; e.g. `select` 'protein and name CA'", params=("select",))
        try:
            atoms = self.universe.select_atoms(selection)
        except (SelectionError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            raise UsageError(f"invalid selection {selection!r}: {_one_line(exc)}") from None
        except Exception as exc:  # MDAnalysis raises assorted types from its parser; never a traceback for a typo
            raise UsageError(f"invalid selection {selection!r}: {_one_line(exc)}") from None
        if atoms.n_atoms == 0:
            raise UsageError(
                f"selection {selection!r} matches no atom of {self.topology.name!r} ({self.n_atoms} atoms); "
                "choose another with `select`", params=("select",)
            )
        return atoms

    def close(self) -> None:
        for t in self.trajectories:
            t.close()

    def __enter__(self) -> "System":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_system(topology: str | os.PathLike, trajectories: Sequence[str | os.PathLike]) -> System:
    """Check and open a topology and its trajectories without reading any frame beyond headers.

    With no trajectory the topology file is its own trajectory when its format holds frames (multi-model PDB, GRO,
    mdtraj ``.h5``, …).

    Raises:
        UsageError: a file is missing or has an unsupported extension, or no trajectory is given and the topology
            format holds no coordinates (PSF, TPR, PRMTOP …).
        DataError: a file cannot be parsed, or a trajectory's atom count differs from the topology's.
    """
    top = Path(topology)
    paths = [Path(t) for t in trajectories]
    top_fmt = file_format(top, kind="topology")
    if not paths:
        if top_fmt.lower() not in SUPPORTED_TRAJECTORY_EXTENSIONS:
            raise UsageError(
                f"no trajectory given and topology {str(top)!r} holds no coordinates ({top_fmt} is a topology-only "
                "format); pass a TRAJECTORY file after it, or a topology that holds frames (multi-model PDB, GRO, "
                "mdtraj .h5)"
            )
        paths = [top]
    fmts = [file_format(p, kind="trajectory") for p in paths]
    universe = _load_topology(top, top_fmt)
    n_atoms = universe.atoms.n_atoms
    sources: list[TrajectorySource] = []
    try:
        for p, fmt in zip(paths, fmts, strict=True):
            sources.append(_open_trajectory(p, fmt, n_atoms))
    except BaseException:
        for s in sources:
            s.close()
        raise
    return System(topology=top, universe=universe, trajectories=sources)


def _load_topology(path: Path, fmt: str):
    if fmt == _MDTRAJ_H5:
        return _universe_from_mdtraj(path)
    import MDAnalysis as mda
    from MDAnalysis.topology.core import get_parser_for

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Topology only, no coordinates: `mda.Universe(path)` would also read a GRO/PDB/TPR topology's own
            # coordinates, parsing the file a second time; the positions come from the trajectories instead.
            with get_parser_for(str(path))(str(path)) as parser:
                topology = parser.parse()
            universe = mda.Universe(topology)
            universe.filename = str(path)
            return universe
    except Exception as exc:
        raise DataError(f"cannot read topology {str(path)!r}: {_one_line(exc)}") from exc


def _universe_from_mdtraj(path: Path):
    """An MDAnalysis ``Universe.empty`` with the atoms, residues, chains and bonds of an mdtraj HDF5 file."""
    import MDAnalysis as mda

    _mdtraj_h5_shape(path)  # a clear error for eghn-md datasets and other HDF5 files
    _require_pytables(path)
    try:
        import mdtraj

        top = mdtraj.load_topology(str(path))
    except Exception as exc:
        raise DataError(f"cannot read the topology of mdtraj file {str(path)!r}: {_one_line(exc)}") from exc
    atoms = list(top.atoms)
    residues = list(top.residues)
    chains = list(top.chains)
    u = mda.Universe.empty(
        len(atoms),
        n_residues=len(residues),
        n_segments=max(len(chains), 1),
        atom_resindex=np.array([a.residue.index for a in atoms], dtype=np.int64),
        residue_segindex=np.array([r.chain.index for r in residues], dtype=np.int64),
        trajectory=False,
    )
    chain_ids = [_chain_id(c) for c in chains]
    u.add_TopologyAttr("names", [a.name for a in atoms])
    u.add_TopologyAttr("types", [a.element.symbol if a.element is not None else "" for a in atoms])
    u.add_TopologyAttr("masses", [a.element.mass if a.element is not None else 0.0 for a in atoms])
    u.add_TopologyAttr("resnames", [r.name for r in residues])
    u.add_TopologyAttr("resids", [r.resSeq for r in residues])
    segids = [(c.residue(0).segment_id if c.n_residues else "") or cid
              for c, cid in zip(chains, chain_ids, strict=True)]
    u.add_TopologyAttr("segids", segids or [""])
    u.add_TopologyAttr("chainIDs", [chain_ids[a.residue.chain.index] for a in atoms])
    bonds = [(b[0].index, b[1].index) for b in top.bonds]
    if bonds:
        u.add_TopologyAttr("bonds", bonds)
    return u


def _require_pytables(path: Path) -> None:
    try:
        import tables  # noqa: F401  (mdtraj reads its HDF5 format through PyTables)
    except ImportError:
        raise DataError(f"reading the mdtraj HDF5 file {str(path)!r} needs PyTables: pip install tables") from None


def _chain_id(chain) -> str:
    cid = getattr(chain, "chain_id", None)
    if cid:
        return str(cid)
    i = chain.index
    return chr(ord("A") + i) if i < 26 else str(i)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
