"""Convert a predicted (node) trajectory to another format for viewing: XTC/TRR/DCD, multi-model PDB, mdtraj HDF5.

``eghn-md export trajectory PRED.dcd -o PRED.xtc`` reads the DCD with its topology (``PRED.pdb`` beside it unless
``--top`` names another) through MDAnalysis and writes:

* ``.xtc`` / ``.trr`` / ``.dcd``: MDAnalysis writers; frame times are kept (XTC/TRR store them per frame, DCD as a
  start and a step);
* ``.pdb``: one MODEL per frame (PDB has no time field: start and step go to the header), residue names, numbers,
  segments and atom names kept;
* ``.h5``: mdtraj's HDF5 (nm inside, converted from Å), topology (names as written, not standardised) and
  per-frame times kept.

``superpose`` aligns every frame onto the first by the Kabsch rotation over all nodes (translation + proper
rotation, no reflection), which removes the overall drift and tumbling for viewing; RMSD values reported elsewhere
are computed without superposition.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from eghn_md.errors import DataError, UsageError
from eghn_md.io.atomic import atomic_path, check_output_path
from eghn_md.io.writers import mda_writer

__all__ = ["OUTPUT_FORMATS", "kabsch_superpose", "export_trajectory"]

OUTPUT_FORMATS = ("xtc", "trr", "dcd", "pdb", "h5")


def kabsch_superpose(frames: np.ndarray, reference: Optional[np.ndarray] = None) -> np.ndarray:
    """Superpose every frame onto ``reference`` (default: the first frame) with the optimal proper rotation.

    Args:
        frames: (T, N, 3) [Å] coordinates.
        reference: (N, 3) [Å].

    Returns:
        (T, N, 3) [Å] float64: each frame moved by the translation and rotation minimising its RMSD to the
        reference (all nodes weighted equally).
    """
    X = np.asarray(frames, dtype=np.float64)
    if X.ndim != 3 or X.shape[2] != 3:
        raise ValueError(f"frames must be (T, N, 3), got {X.shape}")
    ref = X[0] if reference is None else np.asarray(reference, dtype=np.float64)
    ref_c = ref - ref.mean(axis=0)
    out = np.empty_like(X)
    for t in range(X.shape[0]):
        P = X[t] - X[t].mean(axis=0)
        H = P.T @ ref_c  # (3, 3) covariance
        U, _, Vt = np.linalg.svd(H)
        d = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
        R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T  # proper rotation taking P onto ref_c
        out[t] = P @ R.T + ref.mean(axis=0)
    return out


def export_trajectory(
    trajectory: str | Path,
    output: str | Path,
    *,
    top: Optional[str | Path] = None,
    superpose: bool = False,
    overwrite: bool = False,
) -> dict:
    """Convert ``trajectory`` (with topology ``top``, default ``<trajectory stem>.pdb``) to ``output``, whose
    extension picks the format (:data:`OUTPUT_FORMATS`). Returns a summary dict."""
    import MDAnalysis as mda

    trajectory, output = Path(trajectory), Path(output)
    if not trajectory.exists():
        raise UsageError(f"trajectory {str(trajectory)!r} does not exist")
    top = Path(top) if top is not None else trajectory.with_suffix(".pdb")
    if not top.exists():
        raise UsageError(f"topology {str(top)!r} does not exist; pass `top` PRED.pdb (written beside every rollout)",
                         params=("top",))
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"output format {output.suffix or '(none)'!r} of {str(output)!r} is not one of "
                         f"{['.' + f for f in OUTPUT_FORMATS]}")
    if output.resolve() in (trajectory.resolve(), top.resolve()):
        raise UsageError(f"output {str(output)!r} is one of the inputs; choose another file name")
    check_output_path(output, overwrite=overwrite)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            u = mda.Universe(str(top), str(trajectory))
        except Exception as exc:  # MDAnalysis raises many types for unreadable files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot read {str(trajectory)!r} with topology {str(top)!r}: {first[:200]}") from None
        frames = np.stack([ts.positions.copy() for ts in u.trajectory]).astype(np.float64)
        times = np.array([ts.time for ts in u.trajectory], dtype=np.float64)
    if frames.shape[0] == 0:
        raise DataError(f"{str(trajectory)!r} holds no frames")
    if not np.isfinite(frames).all():
        raise DataError(f"{str(trajectory)!r} has non-finite coordinates")
    if superpose:
        frames = kabsch_superpose(frames)
    dt = float(times[1] - times[0]) if len(times) > 1 else 1.0
    if fmt == "h5":
        _write_h5(output, top, frames, times)
    else:
        _write_mda(output, u, frames, times, dt, fmt)
    return {
        "input": str(trajectory),
        "topology": str(top),
        "output": str(output),
        "format": fmt,
        "n_frames": int(frames.shape[0]),
        "n_atoms": int(frames.shape[1]),
        "dt_ps": dt,
        "start_time_ps": float(times[0]),
        "superposed": bool(superpose),
    }


def _write_mda(output: Path, u, frames: np.ndarray, times: np.ndarray, dt: float, fmt: str) -> None:
    from MDAnalysis.coordinates.memory import MemoryReader

    u.load_new(np.ascontiguousarray(frames, dtype=np.float32), format=MemoryReader, dt=dt)
    kw = ({"multiframe": True, "remarks": f"eghn-md: frame times [ps] start {times[0]:.6g} step {dt:.6g}"}
          if fmt == "pdb" else {"dt": dt})
    with mda_writer(output, n_atoms=u.atoms.n_atoms, **kw) as w:
        for i, ts in enumerate(u.trajectory):
            ts.time = float(times[i])
            w.write(u.atoms)


def _write_h5(output: Path, top: Path, frames: np.ndarray, times: np.ndarray) -> None:
    import mdtraj as md

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if top.suffix.lower() == ".pdb":  # keep the residue/atom names as written (mdtraj would rename HSD → HIS)
            topology = md.load_pdb(str(top), standard_names=False).topology
        else:
            topology = md.load_topology(str(top))
    if topology.n_atoms != frames.shape[1]:
        raise DataError(f"topology {str(top)!r} has {topology.n_atoms} atoms, the trajectory {frames.shape[1]}")
    traj = md.Trajectory(xyz=(frames / 10.0).astype(np.float32), topology=topology, time=times)  # Å → nm
    with atomic_path(output) as tmp:
        traj.save_hdf5(str(tmp), force_overwrite=True)
