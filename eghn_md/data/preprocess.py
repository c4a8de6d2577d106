"""``eghn-md preprocess``: topology + trajectories → one residue-graph dataset file.

Everything that can be checked is checked before the first frame is read (output path, stride, files and formats,
atom counts, the selection, frames left after the stride); frames are then streamed block by block into the
dataset, which replaces the output only once complete.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from eghn_md.data.dataset import Dataset, TrajectoryData, chunk_frames, trajectory_name, write_dataset
from eghn_md.errors import DataError, UsageError
from eghn_md.graph.chains import CA_CA_MAX_BOND
from eghn_md.graph.nodes import node_table
from eghn_md.io.atomic import check_output_path
from eghn_md.io.readers import open_system, sha256_file
from eghn_md.utils import Progress, as_progress

__all__ = ["DEFAULT_SELECTION", "preprocess", "read_block_frames"]

DEFAULT_SELECTION = "protein and name CA"
_CHUNKS_PER_BLOCK = 16  # frames are gathered in blocks of whole HDF5 chunks (~4 MiB) before each write


def read_block_frames(n_nodes: int) -> int:
    """Frames per read/write block: 16 HDF5 chunks, about 4 MiB of float32 positions."""
    return _CHUNKS_PER_BLOCK * chunk_frames(n_nodes)


def preprocess(
    topology: str | os.PathLike,
    trajectories: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    select: str = DEFAULT_SELECTION,
    stride: int = 1,
    overwrite: bool = False,
    progress: Optional[Progress] = None,
) -> dict[str, Any]:
    """Write the dataset of ``select``-ed nodes of every trajectory (one group each) to ``output``.

    Args:
        topology: topology file (any MDAnalysis topology format, or an mdtraj ``.h5``).
        trajectories: trajectories of that topology (one group each in the output); none when the topology file
            holds the frames itself (multi-model PDB, GRO, mdtraj ``.h5``).
        output: dataset file to write (HDF5).
        select: MDAnalysis selection of the node atoms (default one Cα per protein residue).
        stride: keep every ``stride``-th frame, starting with the first.
        overwrite: replace an existing ``output``.
        progress: a :class:`~eghn_md.utils.Progress` over the frames written (all trajectories).

    Returns:
        :meth:`Dataset.summary` of the written file plus ``elapsed_s``, ``frames_per_s`` and ``warnings``.

    Raises:
        UsageError: bad arguments (missing file, unknown format, invalid/empty selection, existing output, stride).
        DataError: unreadable or inconsistent input (atom counts, < 2 frames, NaN/Inf coordinates).
    """
    t0 = time.perf_counter()
    if isinstance(trajectories, (str, os.PathLike)):
        trajectories = [trajectories]
    stride = _check_args(topology, trajectories, output, stride=stride, overwrite=overwrite)
    out = Path(output)
    with open_system(topology, trajectories) as system:
        atoms = system.select(select)
        nodes = node_table(atoms, positions=_first_frame(system, atoms.indices))
        far = _distance_breaks(nodes, node_table(atoms))
        datas = _trajectory_data(system, atoms, stride, read_block_frames(nodes.n_nodes))
        with _frames_progress(progress, datas) as on_frames:
            write_dataset(
                out,
                nodes,
                datas,
                selection=select,
                topology=system.topology.name,
                topology_path=str(system.topology.resolve()),
                topology_sha256=sha256_file(system.topology),
                overwrite=overwrite,
                on_frames=on_frames,
            )

    with Dataset(out) as ds:
        summary = ds.summary()
    elapsed = time.perf_counter() - t0
    summary["elapsed_s"] = round(elapsed, 3)
    summary["frames_per_s"] = round(summary["n_frames_total"] / elapsed, 1) if elapsed > 0 else None
    summary["warnings"] = _time_warnings(summary) + _bond_warnings(far)
    return summary


def _check_args(topology, trajectories: Sequence, output, *, stride, overwrite: bool) -> int:
    """The stride as an int; the output may be written and is none of the inputs."""
    if int(stride) != stride or stride < 1:
        raise UsageError(f"`stride` must be a positive integer, got {stride!r}", params=("stride",))
    out = check_output_path(output, overwrite=overwrite)
    for p in [topology, *trajectories]:
        if Path(p).exists() and Path(p).resolve() == out.resolve():
            raise UsageError(f"output {str(out)!r} is also an input file; choose another output path")
    return int(stride)


def _trajectory_data(system, atoms, stride: int, block: int) -> list:
    """One :class:`TrajectoryData` (streamed in blocks of ``block`` frames) per trajectory of at least 2 frames."""
    for src in system.trajectories:
        kept = src.n_strided(stride)
        if kept < 2:
            detail = f" ({src.n_frames} before `stride` {stride})" if stride > 1 else ""
            frames = f"{kept} frame{'s' * (kept != 1)}"
            raise DataError(f"trajectory {str(src.path)!r} has {frames}{detail}; need at least 2", params=("stride",))
    names: list[str] = []
    datas = []
    for src in system.trajectories:
        names.append(trajectory_name(src.path, names))
        datas.append(TrajectoryData(
            name=names[-1], n_frames=src.n_strided(stride),
            blocks=src.iter_blocks(atoms.indices, stride=stride, block=block), source=src.path.name,
            source_path=str(src.path.resolve()), source_format=src.format, sha256=sha256_file(src.path),
            stride=stride, n_source_frames=src.n_frames, times_from_file=src.times_from_file,
        ))
    return datas


def _time_warnings(summary: dict) -> list[str]:
    warnings = []
    for t in summary["trajectories"]:
        if not t["times_from_file"]:
            warnings.append(f"{t['source']!r} stores no time step; frame times were set to frame number x 1 ps")
        elif not t["time_step_ps"] or t["time_step_ps"] <= 0:
            warnings.append(
                f"{t['source']!r}: frame times do not increase (time step {t['time_step_ps']} ps); "
                "the file stores no usable time step"
            )
    return warnings


def _distance_breaks(nodes, by_ids) -> list[tuple[int, int]]:
    """Resid pairs of consecutive nodes that IDs and numbering would join but the Cα distance rule broke."""
    kept = {tuple(b) for b in np.asarray(nodes.bonds).tolist()}
    return [(int(nodes.resid[i]), int(nodes.resid[j])) for i, j in np.asarray(by_ids.bonds).tolist()
            if (i, j) not in kept]


def _bond_warnings(far: list[tuple[int, int]]) -> list[str]:
    if not far:
        return []
    shown = ", ".join(f"{a}–{b}" for a, b in far[:5]) + (" …" if len(far) > 5 else "")
    return [f"{len(far)} sequence bond(s) not drawn: consecutive Cα atoms farther apart than {CA_CA_MAX_BOND} Å in "
            f"the first frame (resid {shown}): missing residues, a chain boundary without chain IDs, or a protein "
            "split across the periodic boundary (then make molecules whole first, e.g. gmx trjconv -pbc mol)"]


def _first_frame(system, indices):
    """(n_sel, 3) [Å] the selected atoms in the first frame of the first trajectory (for the chain model)."""
    blocks = system.trajectories[0].iter_blocks(indices, block=1)
    try:
        positions, _ = next(blocks)
        return positions[0].copy()
    except StopIteration:
        return None
    finally:
        blocks.close()


@contextlib.contextmanager
def _frames_progress(progress: Optional[Progress], datas: list[TrajectoryData]) -> Iterator[Callable[[int, int], None]]:
    """``on_frames(trajectory_number, n)`` of :func:`write_dataset` reporting to ``progress`` over every frame."""
    progress = as_progress(progress)
    done = [0]

    def on_frames(number: int, n: int) -> None:
        done[0] += n
        progress.update({"done": done[0], "trajectory": datas[number].source or datas[number].name})

    progress.start(sum(d.n_frames for d in datas))
    try:
        yield on_frames
    finally:
        progress.stop()
