"""Writing node trajectories (predicted or true) as PDB + DCD/XTC/… through MDAnalysis, atomically.

:func:`mda_writer` is the one way the package writes an MDAnalysis file: the file appears atomically (temporary
file, fsync, rename) and only the warnings listed in :data:`EXPECTED_WRITER_WARNINGS` (fields our files do not have,
for which MDAnalysis writes its defaults) are silenced; any other warning reaches the caller.

The PDB holds the node topology (one ATOM record per node with its residue name/id, segment and atom name) so that
``vmd pred.pdb pred.dcd`` and PyMOL (``load pred.pdb; load_traj pred.dcd``) show residues correctly.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from eghn_md.io.atomic import atomic_path

__all__ = ["node_universe", "write_node_trajectory", "mda_writer", "EXPECTED_WRITER_WARNINGS"]

#: messages (regular expressions) of the UserWarnings MDAnalysis' coordinate writers give for what node and
#: predicted files lack: no unit cell (DCD zeroes it, PDB writes a unitary CRYST1), no chain IDs, elements, alt locs,
#: insertion codes, formal charges or record types (PDB writes defaults). Nothing else is filtered.
EXPECTED_WRITER_WARNINGS = (
    r"No dimensions set for current frame, zeroed unitcell will be written",
    r"Unit cell dimensions not found\. CRYST1 record set to unitary values",
    r"Found no information for attr: '\w+' Using default value of",
    r"Found missing chainIDs\. Corresponding atoms will use value of",
)


@contextlib.contextmanager
def mda_writer(path: str | Path, *, n_atoms: int, **kwargs) -> Iterator:
    """An MDAnalysis ``Writer`` of ``path`` (format from the extension; ``kwargs`` go to the writer) whose file
    appears atomically when the block ends without an error, with only :data:`EXPECTED_WRITER_WARNINGS` silenced."""
    import MDAnalysis as mda

    with atomic_path(path) as tmp, warnings.catch_warnings():
        for message in EXPECTED_WRITER_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning, module=r"MDAnalysis\.")
        with mda.Writer(str(tmp), n_atoms=n_atoms, **kwargs) as w:
            yield w


def node_universe(nodes: dict, frames: np.ndarray, *, dt_ps: float, start_time_ps: float = 0.0):
    """An in-memory MDAnalysis Universe of the nodes with ``frames`` as its trajectory.

    Args:
        nodes: node metadata (``resname``, ``resid``, ``segid``, ``name`` lists, as stored in checkpoints).
        frames: (T, N, 3) [Å] coordinates.
        dt_ps: time between frames [ps].
        start_time_ps: time of the first frame [ps].
    """
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    frames = np.ascontiguousarray(frames, dtype=np.float32)
    n = frames.shape[1]
    resid = np.asarray(nodes["resid"], dtype=np.int64)
    segid = np.asarray(nodes.get("segid") or [""] * n, dtype=object)
    # one residue per (segid, resid) run of consecutive nodes
    new_res = np.ones(n, dtype=bool)
    new_res[1:] = (resid[1:] != resid[:-1]) | (segid[1:] != segid[:-1])
    atom_resindex = np.cumsum(new_res) - 1
    n_res = int(atom_resindex[-1]) + 1
    first = np.flatnonzero(new_res)
    seg_names = list(dict.fromkeys(str(s) for s in segid))
    seg_of_res = np.array([seg_names.index(str(segid[i])) for i in first], dtype=np.int64)
    u = mda.Universe.empty(n, n_residues=n_res, n_segments=len(seg_names), atom_resindex=atom_resindex,
                           residue_segindex=seg_of_res, trajectory=True)
    u.add_TopologyAttr("names", [str(x) for x in nodes["name"]])
    u.add_TopologyAttr("types", [str(x)[:1] for x in nodes["name"]])
    u.add_TopologyAttr("elements", [str(x)[:1] for x in nodes["name"]])
    u.add_TopologyAttr("resnames", [str(nodes["resname"][i]) for i in first])
    u.add_TopologyAttr("resids", resid[first])
    u.add_TopologyAttr("segids", seg_names)
    chains = nodes.get("chain") or [""] * n
    u.add_TopologyAttr("chainIDs", [str(c) if str(c) else (str(segid[i])[:1] or "A") for i, c in enumerate(chains)])
    u.add_TopologyAttr("tempfactors", np.zeros(n))
    u.add_TopologyAttr("occupancies", np.ones(n))
    u.load_new(frames, format=MemoryReader, dt=float(dt_ps))
    if start_time_ps:
        u.trajectory.ts.data["time_offset"] = float(start_time_ps)
    return u


def write_node_trajectory(
    path: str | Path,
    nodes: dict,
    frames: np.ndarray,
    *,
    dt_ps: float,
    start_time_ps: float = 0.0,
    pdb_path: Optional[str | Path] = None,
) -> list[Path]:
    """Write ``frames`` (T, N, 3) [Å] to ``path`` (any MDAnalysis trajectory format by extension) and the first frame
    with the node topology to ``pdb_path`` (default: ``path`` with ``.pdb``). Both files appear atomically.

    Frame k is at ``start_time_ps + k · dt_ps`` [ps]; a DCD carries both in its header (see
    :func:`_dcd_time_header`), so MDAnalysis and VMD read the physical times.
    """
    path = Path(path)
    pdb_path = Path(pdb_path) if pdb_path is not None else path.with_suffix(".pdb")
    u = node_universe(nodes, frames, dt_ps=dt_ps, start_time_ps=start_time_ps)
    written = []
    header = _dcd_time_header(dt_ps, start_time_ps) if path.suffix.lower() == ".dcd" else {}
    with mda_writer(path, n_atoms=u.atoms.n_atoms, dt=float(dt_ps), **header) as w:
        for _ in u.trajectory:
            w.write(u.atoms)
        if pdb_path != path:  # inside: neither file appears unless both were written
            u.trajectory[0]
            with mda_writer(pdb_path, n_atoms=u.atoms.n_atoms, multiframe=False) as wp:
                wp.write(u.atoms)
    written.append(path)
    if pdb_path != path:
        written.append(pdb_path)
    return written


def _dcd_time_header(dt_ps: float, start_time_ps: float, *, max_nsavc: int = 10000) -> dict:
    """DCD ``nsavc`` / ``istart`` that make readers report frame k at ``start_time_ps + k · dt_ps``.

    A DCD stores time as integration steps: frame k is at ``(k + istart / nsavc) · dt``, with ``dt = nsavc · delta``.
    The smallest ``nsavc`` for which ``start_time_ps`` is a whole number of steps ``delta`` (within 1e-3 of a step)
    is used: for frames of an MD trajectory ``nsavc`` is the number of input frames per step.
    """
    if not (dt_ps > 0 and np.isfinite(dt_ps) and np.isfinite(start_time_ps)):
        return {}
    for nsavc in range(1, max_nsavc + 1):
        steps = start_time_ps / (dt_ps / nsavc)
        if abs(steps - round(steps)) <= 1e-3 and abs(steps) < 2**31 - 1:
            return {"nsavc": nsavc, "istart": int(round(steps))}
    return {}
