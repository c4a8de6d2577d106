"""What the pooling learned: the soft assignment S (N, K) of a trained EGHN, exported for viewers and plots.

``eghn-md export clusters`` evaluates the model on frame I (input frames I − ΔT and I, exactly as a rollout's first
step; ΔT is the model's horizon in ps as frames of the input, :mod:`eghn_md.data.timebase`) or on every frame of a
range A:B, and writes to OUTDIR:

* ``clusters.pdb``: the full-atom structure of frame I (of A for a range) with every atom's B-factor set to its
  residue's cluster id and its occupancy to the assignment probability; atoms of residues that hold no node get
  B-factor −1 and occupancy 0;
* ``clusters.pml`` / ``clusters.tcl``: PyMOL / VMD scripts that colour it by cluster (:mod:`eghn_md.export.viewers`);
* ``clusters.csv``: node → residue → cluster, probability, stability, and the soft assignment row;
* ``clusters.png``: cluster along the sequence and the soft assignment heat-map (:mod:`eghn_md.export.plots`).

Definitions (per node i, over the F analysed frames f with soft assignments S_f):

* cluster: the majority of argmax_k S_f[i, k] over the frames (ties: the larger mean probability);
* probability: mean over frames of S_f[i, cluster];
* stability: fraction of frames whose argmax is the majority cluster (1 for a single frame).

With several nodes per residue (an atom-level selection) a residue takes the majority cluster of its nodes (ties:
larger summed probability) and the mean probability of its nodes for that cluster.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from eghn_md.errors import UsageError
from eghn_md.io.atomic import atomic_path, check_output_path
from eghn_md.io.writers import mda_writer
from eghn_md.rollout.start import frame_batch

__all__ = [
    "ClusterAssignment", "OUTPUT_NAMES", "frame_batch", "summarise_assignments", "residue_clusters",
    "parse_frames", "export_clusters",
]  # fmt: skip

OUTPUT_NAMES = ("clusters.pdb", "clusters.pml", "clusters.tcl", "clusters.csv", "clusters.png")


@dataclass(frozen=True)
class ClusterAssignment:
    """Hard and soft pooling assignment of N nodes to K clusters, summarised over F frames.

    Attributes:
        frames: the F analysed frame numbers (0-based, across the concatenated trajectories).
        soft: (N, K) mean soft assignment over the frames (rows sum to 1).
        cluster: (N,) int majority hard cluster.
        probability: (N,) mean over frames of S[i, cluster[i]].
        stability: (N,) fraction of frames whose argmax is ``cluster[i]``.
    """

    frames: tuple
    soft: np.ndarray
    cluster: np.ndarray
    probability: np.ndarray
    stability: np.ndarray

    @property
    def n_clusters(self) -> int:
        return int(self.soft.shape[1])

    @property
    def used(self) -> list[int]:
        """Cluster ids holding at least one node, ascending."""
        return sorted(int(k) for k in np.unique(self.cluster))


def summarise_assignments(S: np.ndarray, frames: Optional[Sequence[int]] = None) -> ClusterAssignment:
    """Majority cluster, probability and stability of each node from per-frame soft assignments.

    Args:
        S: (F, N, K) soft assignments (rows of each frame sum to 1), or (N, K) for one frame.
        frames: the F frame numbers (default 0..F−1).
    """
    S = np.asarray(S, dtype=np.float64)
    if S.ndim == 2:
        S = S[None]
    if S.ndim != 3 or S.shape[0] == 0 or S.shape[2] == 0:
        raise ValueError(f"S must be (F, N, K) with F, K >= 1, got shape {S.shape}")
    F, N, K = S.shape
    hard = S.argmax(axis=2)  # (F, N)
    counts = np.zeros((N, K))
    np.add.at(counts, (np.broadcast_to(np.arange(N), (F, N)), hard), 1.0)
    mean = S.mean(axis=0)
    cluster = (counts + 0.5 * mean).argmax(axis=1)  # mean < 1 only breaks ties between equal counts
    idx = np.arange(N)
    return ClusterAssignment(
        frames=tuple(int(f) for f in (frames if frames is not None else range(F))),
        soft=mean,
        cluster=cluster.astype(np.int64),
        probability=mean[idx, cluster],
        stability=counts[idx, cluster] / F,
    )


def residue_clusters(node_resindex: np.ndarray, assignment: ClusterAssignment) -> dict[int, tuple[int, float]]:
    """``{resindex: (cluster, probability)}`` for every residue holding a node (see the module docstring).

    Args:
        node_resindex: (N,) int, topology residue index of each node.
    """
    node_resindex = np.asarray(node_resindex)
    out = {}
    for r in np.unique(node_resindex):
        sel = np.flatnonzero(node_resindex == r)
        votes = np.bincount(assignment.cluster[sel], minlength=assignment.n_clusters).astype(np.float64)
        k = int((votes + 0.5 * assignment.soft[sel].mean(axis=0)).argmax())
        out[int(r)] = (k, float(assignment.soft[sel, k].mean()))
    return out


def parse_frames(frame: Optional[int], frames: Optional[str], *, horizon: int, n_frames: int) -> list[int]:
    """The frames to analyse: ``frame`` (default: the horizon, the first frame with a velocity) or a half-open
    range ``"A:B"`` (``"A:"`` runs to the end; B is excluded, as in Python). Validated against the trajectory."""
    if frame is not None and frames is not None:
        raise UsageError("pass either `frame` or `frames`, not both", params=("frame", "frames"))
    if frames is not None:
        parts = str(frames).split(":")
        try:
            if len(parts) != 2 or not parts[0].strip():
                raise ValueError
            a = int(parts[0])
            b = int(parts[1]) if parts[1].strip() else n_frames
        except ValueError:
            raise UsageError(f"`frames` {frames!r} is not a range A:B of frame numbers (e.g. 5:50)",
                             params=("frames",)) from None
        if b <= a:
            raise UsageError(f"`frames` {frames!r} is empty: B must be larger than A", params=("frames",))
        wanted = list(range(a, b))
    else:
        wanted = [horizon if frame is None else int(frame)]
    first, last = wanted[0], wanted[-1]
    if first < horizon:
        raise UsageError(f"frame {first} is too early: the model input needs frame {first} − {horizon} (one horizon "
                         f"before) for the velocity; use frames >= {horizon}")
    if last >= n_frames:
        raise UsageError(f"frame {last} is out of range: the trajectory has {n_frames} frames (0..{n_frames - 1})")
    return wanted


@torch.no_grad()
def _assignments(model, gs, pos: dict, frames: Sequence[int], *, horizon: int, cutoff: float, dev) -> np.ndarray:
    dtype = next(model.parameters()).dtype
    h, bonds = gs.h.to(dev, dtype), gs.bonds.to(dev)
    out = []
    for f in frames:
        x_prev = torch.as_tensor(pos[f - horizon], dtype=dtype, device=dev)
        x0 = torch.as_tensor(pos[f], dtype=dtype, device=dev)
        S = model(frame_batch(x_prev=x_prev, x0=x0, h=h, bonds=bonds, cutoff=cutoff)).assign
        if S is None:
            return None
        out.append(S.float().cpu().numpy())
    return np.stack(out)


def _check_outputs(out_dir: Path, *, plot: bool, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output {str(out_dir)!r} exists and is not a directory")
    if not out_dir.parent.exists():
        raise UsageError(f"directory {str(out_dir.parent)!r} of output {str(out_dir)!r} does not exist")
    if out_dir.is_dir():
        for name in (n for n in OUTPUT_NAMES if plot or not n.endswith(".png")):
            check_output_path(out_dir / name, overwrite=overwrite)


def _write_viewers(out_dir: Path, ckpt, result, per_res: dict, pdb: Path, *, what: str, has_unassigned: bool,
                   plot: bool) -> tuple[list, list, list]:
    """PyMOL / VMD scripts, the CSV and the figure beside ``clusters.pdb``: ``(written, used clusters, colours)``."""
    from eghn_md.export import viewers

    used = sorted({k for k, _ in per_res.values()})
    colours = viewers.cluster_palette(len(used))
    kw = dict(pdb_name="clusters.pdb", clusters=used, colours=colours, has_unassigned=has_unassigned, title=what)
    written = [pdb, viewers.write_pml(out_dir / "clusters.pml", **kw),
               viewers.write_tcl(out_dir / "clusters.tcl", **kw),
               _write_csv(out_dir / "clusters.csv", ckpt.nodes, result)]
    if plot:
        from eghn_md.export.plots import plot_clusters

        written.append(Path(plot_clusters(result, ckpt.nodes, out_dir / "clusters.png",
                                          colours=dict(zip(used, colours, strict=True)), title=what)))
    return written, used, colours


def export_clusters(
    model_path: str | Path,
    topology: str | Path,
    trajectories: Sequence[str | Path],
    out_dir: str | Path,
    *,
    frame: Optional[int] = None,
    frames: Optional[str] = None,
    device: str = "auto",
    overwrite: bool = False,
    plot: bool = True,
) -> dict:
    """``eghn-md export clusters`` as a library call; returns a summary dict (files, frames, cluster sizes).

    Raises:
        UsageError: bad frames, outputs that exist without ``overwrite``, a model without pooling.
        DataError: a topology whose nodes differ from the model's, non-finite input frames.
    """
    from eghn_md.models.registry import has_pooling, models_with
    from eghn_md.rollout.start import open_model_system, read_frames
    from eghn_md.train.checkpoint import load_model
    from eghn_md.utils import resolve_device

    dev = resolve_device(device)  # the model first: a bad input is named before the output
    model, ckpt = load_model(model_path, device=dev)
    if not has_pooling(ckpt.model_config.get("name", "")):
        raise UsageError(f"model {str(model_path)!r} ({ckpt.model_config.get('name')}) has no pooling clusters; "
                         f"only the pooling models ({', '.join(models_with(pools=True))}) learn them")
    out_dir = Path(out_dir)
    _check_outputs(out_dir, plot=plot, overwrite=overwrite)
    with open_model_system(ckpt, topology, trajectories) as ms:
        horizon, universe = ms.horizon, ms.system.universe
        wanted = parse_frames(frame, frames, horizon=horizon, n_frames=ms.n_frames)
        pos, _ = ms.read(wanted, inputs=sorted(set(wanted) | {f - horizon for f in wanted}))
        all_pos, times = read_frames(ms.system, np.arange(universe.atoms.n_atoms), [wanted[0]])
        node_resindex = universe.atoms[np.asarray(ms.graph.nodes.atom_index)].resindices
        S = _assignments(model, ms.graph, pos, wanted, horizon=horizon, cutoff=float(ckpt.data_config["cutoff"]),
                         dev=dev)
        if S is None:
            raise UsageError(f"model {str(model_path)!r} has no pooling clusters (its output has no assignment)")
        result = summarise_assignments(S, wanted)
        per_res = residue_clusters(node_resindex, result)
        out_dir.mkdir(exist_ok=True)
        pdb = _write_pdb(out_dir / "clusters.pdb", universe, all_pos[wanted[0]], per_res)
    what = f"{Path(model_path)} on {Path(topology).name}, " + (
        f"frame {wanted[0]}" if len(wanted) == 1 else f"majority over frames {wanted[0]}..{wanted[-1]}")
    written, used, colours = _write_viewers(out_dir, ckpt, result, per_res, pdb, what=what, plot=plot,
                                            has_unassigned=len(per_res) < universe.residues.n_residues)
    return {
        "model_file": str(model_path), "frames": [wanted[0], wanted[-1]] if len(wanted) > 1 else [wanted[0]],
        "n_frames": len(wanted), "horizon_frames": horizon, "notes": ms.notes, "structure_frame": wanted[0],
        "structure_time_ps": float(times[wanted[0]]), "n_nodes": int(result.cluster.shape[0]),
        "n_atoms": int(universe.atoms.n_atoms), "n_clusters": result.n_clusters, "clusters_used": result.used,
        "cluster_sizes": {int(k): int((result.cluster == k).sum()) for k in result.used},
        "mean_probability": float(result.probability.mean()), "mean_stability": float(result.stability.mean()),
        "colours": {int(k): c for k, c in zip(used, colours, strict=True)}, "outputs": [str(p) for p in written],
    }


def _write_pdb(path: Path, universe, positions: np.ndarray, per_res: dict) -> Path:
    """Full-atom PDB of ``positions`` (n_atoms, 3) [Å] with B-factor = residue cluster, occupancy = probability."""
    from MDAnalysis.coordinates.memory import MemoryReader

    u = universe.copy() if hasattr(universe, "trajectory") else universe
    u.load_new(np.ascontiguousarray(positions[None], dtype=np.float32), format=MemoryReader)
    resindex = u.atoms.resindices
    beta = np.full(u.atoms.n_atoms, -1.0)
    occ = np.zeros(u.atoms.n_atoms)
    for r, (k, p) in per_res.items():
        m = resindex == r
        beta[m] = k
        occ[m] = p
    for attr, values in (("tempfactors", beta), ("occupancies", occ)):
        if hasattr(u.atoms, attr):
            setattr(u.atoms, attr, values)
        else:
            u.add_TopologyAttr(attr, values)
    with mda_writer(path, n_atoms=u.atoms.n_atoms, multiframe=False) as w:  # missing chainIDs…: defaults
        w.write(u.atoms)
    return path


def _write_csv(path: Path, nodes: dict, result: ClusterAssignment) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "segid", "resid", "resname", "atom", "cluster", "probability", "stability",
                    *[f"p{k}" for k in range(result.n_clusters)]])
        for i in range(result.cluster.shape[0]):
            w.writerow([i, nodes["segid"][i], nodes["resid"][i], nodes["resname"][i], nodes["name"][i],
                        int(result.cluster[i]), f"{result.probability[i]:.4f}", f"{result.stability[i]:.4f}",
                        *[f"{p:.4f}" for p in result.soft[i]]])
    return path
