"""Physical validity of a trajectory of graph nodes: bond deviations, chain breaks, clashes, Rg, RMSD/RMSF vs truth.

Definitions (all distances in Å, nodes have equal weight):

* **Bonds** are those of the node graph (``GraphSystem.bonds``, (2, B) long, both directions; each undirected bond
  is counted once). A bond's **reference length** is the given ``reference_lengths`` or else its length in frame 0
  (for a rollout: the true start frame).
* **Chain break**, residue (Cα) nodes: a bonded pair (consecutive residues of one chain) farther apart than
  :data:`CA_BREAK_A` (:data:`~eghn_md.graph.chains.CA_CA_MAX_BOND`, 4.19 Å), the threshold ProteinBench and
  AlphaFlow report (trans Cα–Cα is 3.80 Å). A bond whose *reference* length already exceeds it is a gap in the
  chain (missing residues), not a virtual bond, and is left out of the break count. In the AdK MD
  (MDAnalysisTests PSF + DCD/DCD2) Cα–Cα stays within 2.80–4.09 Å.
  Atom nodes: a bond with \\|d − d_ref\\| > :data:`ATOM_BOND_TOL_A` = 0.4 Å. The AdK MD (``backbone``) moves no
  bond more than 0.20 Å from its frame-0 length, so 0.4 Å is twice that, and about a quarter of a covalent bond
  (a C–N bond stretched to 1.7 Å is no longer a bond).
* **Clash**: a pair at topological distance >= ``min_separation`` = 3 in the bond graph (sequence separation >= 3
  within a chain; any pair of different chains) closer than :data:`CA_CLASH_A` = 3.0 Å for Cα nodes, or
  :data:`ATOM_CLASH_A` = 2.0 Å for atom nodes. Topological distance 3 includes 1–4 pairs; in the AdK MD the
  closest such backbone pairs (N(i)–O(i), O(i)–CA(i+1), N(i)–N(i+1)) come to 2.32 Å and the closest Cα pairs to
  3.65 Å, so neither threshold fires on real MD; two non-bonded heavy atoms closer than 2.0 Å overlap.
* **Radius of gyration**: ``sqrt(mean_i |x_i − mean(x)|²)`` over the nodes (geometric, equal masses).
* With the true frames: **RMSD** per frame without superposition (the surrogate predicts absolute frames), and the
  per-node **RMSF** (about each node's mean position, over the frames both have, lab frame) of prediction and truth
  with their Pearson r, when there are at least :data:`MIN_RMSF_FRAMES` = 10 common frames (fewer frames give a
  fluctuation estimate dominated by sampling noise).

Distances use MDAnalysis' ``calc_bonds`` and ``self_capped_distance``. :func:`frame_check` is the cheap torch
version (breaks and Rg of one frame) for use inside a rollout loop.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from eghn_md.choices import NODE_LEVELS
from eghn_md.errors import DataError, UsageError
from eghn_md.graph.chains import CA_CA_MAX_BOND
from eghn_md.io.atomic import atomic_path

__all__ = [
    "CA_BREAK_A", "CA_CLASH_A", "ATOM_BOND_TOL_A", "ATOM_CLASH_A", "MIN_SEPARATION", "MIN_RMSF_FRAMES",
    "default_thresholds", "ValidityReport", "FrameCheck", "validity_report", "frame_check", "unique_bonds",
    "near_pairs", "plot_validity",
]

CA_BREAK_A = CA_CA_MAX_BOND  # one home: eghn_md.graph.chains
CA_CLASH_A = 3.0
ATOM_BOND_TOL_A = 0.4
ATOM_CLASH_A = 2.0
MIN_SEPARATION = 3
MIN_RMSF_FRAMES = 10


def default_thresholds(node_kind: str) -> tuple[float, float]:
    """``(break, clash)`` thresholds [Å] of a node kind (see the module docstring)."""
    if node_kind not in NODE_LEVELS:
        raise UsageError(f"node_kind {node_kind!r} is not one of {list(NODE_LEVELS)}")
    return (CA_BREAK_A, CA_CLASH_A) if node_kind == "residue" else (ATOM_BOND_TOL_A, ATOM_CLASH_A)


def unique_bonds(bonds, n_nodes: int, lengths=None) -> tuple[Tensor, Optional[Tensor]]:
    """Each undirected bond once.

    Args:
        bonds: (2, B) int node pairs (tensor or array), one or both directions.
        n_nodes: number of nodes N.
        lengths: optional (B,) [Å] per column of ``bonds``; both directions of a bond must agree (1e-6 Å).

    Returns:
        ``(pairs, lengths)``: (2, U) long with ``pairs[0] < pairs[1]``, sorted; (U,) lengths or None.
    """
    b = torch.as_tensor(np.asarray(bonds) if not isinstance(bonds, Tensor) else bonds).long().cpu()
    if b.ndim != 2 or b.shape[0] != 2:
        raise UsageError(f"bonds must be a (2, B) index array, got shape {tuple(b.shape)}")
    if b.numel() and (int(b.min()) < 0 or int(b.max()) >= n_nodes):
        raise UsageError(f"bond indices must lie in [0, {n_nodes}), got [{int(b.min())}, {int(b.max())}]")
    if b.numel() and bool((b[0] == b[1]).any()):
        i = int(torch.nonzero(b[0] == b[1])[0])
        raise UsageError(f"bond {i} joins node {int(b[0, i])} to itself")
    lo, hi = torch.minimum(b[0], b[1]), torch.maximum(b[0], b[1])
    keys, inverse = torch.unique(lo * n_nodes + hi, return_inverse=True)
    pairs = torch.stack([keys // n_nodes, keys % n_nodes])
    if lengths is None:
        return pairs, None
    lengths = torch.as_tensor(np.asarray(lengths) if not isinstance(lengths, Tensor) else lengths).cpu()
    if lengths.shape != (b.shape[1],):
        raise UsageError(f"reference lengths must have shape ({b.shape[1]},) like the bonds, "
                         f"got {tuple(lengths.shape)}")
    out = torch.zeros(len(keys), dtype=torch.float64).scatter_(0, inverse, lengths.double())
    bad = torch.nonzero((out[inverse] - lengths.double()).abs() > 1e-6)
    if len(bad):
        k = int(bad[0])
        raise UsageError(f"the two directions of bond {int(lo[k])}–{int(hi[k])} have different lengths")
    return pairs, out


def near_pairs(bonds, n_nodes: int, *, min_separation: int = MIN_SEPARATION, device=None) -> Tensor:
    """Node pairs closer than ``min_separation`` in the bond graph (topological distance 1 … min_separation − 1).

    These are the pairs that can never clash. Args: ``bonds`` (2, B) int; ``n_nodes`` N.
    Returns: (P,) long sorted keys ``i * N + j`` with ``i < j``.
    """
    if min_separation < 1:
        raise UsageError(f"min_separation must be >= 1, got {min_separation}")
    pairs, _ = unique_bonds(bonds, n_nodes)
    if pairs.shape[1] == 0 or min_separation == 1:
        return torch.zeros(0, dtype=torch.long, device=device)
    p = pairs.numpy()
    src, dst = np.concatenate([p, p[::-1]], axis=1)
    nbr = dst[np.argsort(src, kind="stable")]  # neighbours of node k: nbr[ptr[k]:ptr[k] + deg[k]]
    deg = np.bincount(src, minlength=n_nodes)
    ptr = np.cumsum(deg) - deg
    reach = [p[0] * n_nodes + p[1]]
    start, end = src, dst  # walks of length 1
    for _ in range(min_separation - 2):  # extend every walk by one bond
        counts = deg[end]
        step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        start, end = np.repeat(start, counts), nbr[np.repeat(ptr[end], counts) + step]
        keep = start != end
        reach.append(np.minimum(start, end)[keep] * n_nodes + np.maximum(start, end)[keep])
        walks = np.unique(start * n_nodes + end)
        start, end = walks // n_nodes, walks % n_nodes
    return torch.as_tensor(np.unique(np.concatenate(reach)), dtype=torch.long, device=device)


class FrameCheck(NamedTuple):
    """Result of :func:`frame_check`: breaks, Rg [Å] and max \\|bond − reference\\| [Å] (nan without references)."""

    n_breaks: int
    rg: float
    max_bond_dev: float


@torch.no_grad()
def frame_check(pos: Tensor, bonds: Tensor, *, node_kind: str = "residue", reference_lengths: Optional[Tensor] = None,
                break_threshold: Optional[float] = None) -> FrameCheck:
    """Chain breaks and radius of gyration of one frame, in torch on the frame's device (for a rollout loop).

    Args:
        pos: (N, 3) [Å] positions.
        bonds: (2, B) long, both directions of every bond (as ``GraphSystem.bonds``); columns with i < j are used.
        node_kind: ``"residue"`` (break: d > 4.19 Å, gap bonds with reference > threshold skipped) or ``"atom"``
            (break: \\|d − d_ref\\| > 0.4 Å; needs ``reference_lengths``).
        reference_lengths: (B,) [Å] per column of ``bonds``.
        break_threshold: [Å] overrides the default of ``node_kind``.
    """
    brk = default_thresholds(node_kind)[0] if break_threshold is None else float(break_threshold)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise UsageError(f"pos must be (N, 3), got shape {tuple(pos.shape)}")
    if node_kind == "atom" and reference_lengths is None:
        raise UsageError("frame_check with node_kind='atom' needs reference_lengths (the bond lengths to keep)")
    b = bonds.to(pos.device).long()
    once = b[0] < b[1]
    d = (pos[b[0, once]] - pos[b[1, once]]).norm(dim=1)
    ref = None if reference_lengths is None else reference_lengths.to(pos.device, pos.dtype)[once]
    if node_kind == "residue":
        broken = d > brk if ref is None else (d > brk) & (ref <= brk)
    else:
        broken = (d - ref).abs() > brk
    rg = float(((pos - pos.mean(dim=0)) ** 2).sum(dim=1).mean().sqrt())
    dev = float((d - ref).abs().max()) if ref is not None and d.numel() else math.nan
    return FrameCheck(int(broken.sum()), rg, dev)


@dataclass
class ValidityReport:
    """Per-frame validity of a trajectory (see the module docstring for the definitions).

    Attributes:
        node_kind: ``"residue"`` or ``"atom"``.
        break_threshold: [Å] Cα–Cα distance (residue) or \\|d − d_ref\\| tolerance (atom).
        clash_threshold: [Å] non-bonded distance below which a pair clashes.
        min_separation: topological distance from which pairs can clash.
        n_bonds: undirected bonds; n_gap_bonds: of them, chain gaps left out of the break count (residue nodes).
        max_bond_dev: (T,) [Å] max \\|d − d_ref\\| over the bonds (0 without bonds).
        n_breaks: (T,) int chain breaks.
        n_clashes: (T,) int clashing pairs.
        rg: (T,) [Å] radius of gyration.
        rmsd: (T,) [Å] RMSD to the truth without superposition (nan past the truth's end), or None.
        rmsf_pred, rmsf_true: (N,) [Å] per-node RMSF over the common frames, or None (no or too short truth).
        rmsf_r: Pearson r of ``rmsf_pred`` and ``rmsf_true`` (None when undefined).
    """

    node_kind: str
    break_threshold: float
    clash_threshold: float
    min_separation: int
    n_bonds: int
    n_gap_bonds: int
    max_bond_dev: np.ndarray
    n_breaks: np.ndarray
    n_clashes: np.ndarray
    rg: np.ndarray
    rmsd: Optional[np.ndarray] = None
    rmsf_pred: Optional[np.ndarray] = None
    rmsf_true: Optional[np.ndarray] = None
    rmsf_r: Optional[float] = None

    @property
    def n_frames(self) -> int:
        return len(self.rg)

    def summary(self) -> dict:
        """JSON-able dict: frames with breaks/clashes (counts, fractions, first), max bond deviation, Rg [Å] and its
        ratio to frame 0, RMSF Pearson r (None without it) and, with the truth, RMSD [Å] at the last common frame and
        its mean over the common frames after frame 0 (the start)."""
        t = self.n_frames
        brk, cl = self.n_breaks > 0, self.n_clashes > 0
        first = lambda m: int(np.argmax(m)) if m.any() else None  # noqa: E731
        rg0 = float(self.rg[0])
        out = {
            "n_frames": t, "node_kind": self.node_kind, "n_bonds": self.n_bonds, "n_gap_bonds": self.n_gap_bonds,
            "thresholds_A": {"break": self.break_threshold, "clash": self.clash_threshold},
            "min_separation": self.min_separation,
            "frames_with_break": int(brk.sum()), "frac_frames_with_break": float(brk.mean()),
            "frames_with_clash": int(cl.sum()), "frac_frames_with_clash": float(cl.mean()),
            "first_break_frame": first(brk), "first_clash_frame": first(cl), "first_invalid_frame": first(brk | cl),
            "max_breaks": int(self.n_breaks.max()), "max_clashes": int(self.n_clashes.max()),
            "max_bond_dev_A": float(self.max_bond_dev.max()),
            "rg_A": {"start": rg0, "end": float(self.rg[-1]), "min": float(self.rg.min()), "max": float(self.rg.max())},
            "rg_ratio": {k: (float(v) / rg0 if rg0 > 0 else None)
                         for k, v in (("end", self.rg[-1]), ("min", self.rg.min()), ("max", self.rg.max()))},
            "rmsf_r": self.rmsf_r,
        }
        if self.rmsd is not None:
            ok = self.rmsd[np.isfinite(self.rmsd)]
            out["rmsd_A"] = {"final": float(ok[-1]), "mean": float(ok[1:].mean()) if len(ok) > 1 else 0.0,
                             "n_frames": int(len(ok))}
        return out

    def write_csv(self, path: str | Path) -> Path:
        """Write the per-frame table atomically: frame, max_bond_dev_A, n_breaks, n_clashes, rg_A, rg_ratio and,
        with the truth, rmsd_A (empty past the truth's end)."""
        path = Path(path)
        head = ["frame", "max_bond_dev_A", "n_breaks", "n_clashes", "rg_A", "rg_ratio"]
        head += ["rmsd_A"] if self.rmsd is not None else []
        rg0 = float(self.rg[0])
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(head)
            for k in range(self.n_frames):
                row = [k, f"{self.max_bond_dev[k]:.6g}", int(self.n_breaks[k]), int(self.n_clashes[k]),
                       f"{self.rg[k]:.6g}", f"{self.rg[k] / rg0:.6g}" if rg0 > 0 else ""]
                if self.rmsd is not None:
                    row.append(f"{self.rmsd[k]:.6g}" if np.isfinite(self.rmsd[k]) else "")
                w.writerow(row)
        return path


def _check_frames(frames, what: str, n_nodes: Optional[int] = None) -> np.ndarray:
    x = np.asarray(frames.detach().cpu() if isinstance(frames, Tensor) else frames, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] == 0:
        raise UsageError(f"{what} must be (T, N, 3) with T >= 1, got shape {x.shape}")
    if n_nodes is not None and x.shape[1] != n_nodes:
        raise UsageError(f"{what} has {x.shape[1]} nodes but the frames have {n_nodes}")
    bad = ~np.isfinite(x).all(axis=(1, 2))
    if bad.any():
        raise DataError(f"{what}: frame {int(np.argmax(bad))} has non-finite coordinates")
    return x


def validity_report(frames, *, bonds, node_kind: str = "residue", reference_lengths=None, truth=None,
                    break_threshold: Optional[float] = None, clash_threshold: Optional[float] = None,
                    min_separation: int = MIN_SEPARATION, min_rmsf_frames: int = MIN_RMSF_FRAMES) -> ValidityReport:
    """Validity of every frame of a trajectory of nodes (definitions and thresholds: module docstring).

    Args:
        frames: (T, N, 3) [Å] positions (numpy or tensor).
        bonds: (2, B) int bonds of the node graph (one or both directions).
        node_kind: ``"residue"`` (Cα nodes) or ``"atom"``.
        reference_lengths: (B,) [Å] per column of ``bonds``; default: the bond lengths of frame 0.
        truth: (T', N, 3) [Å] true frames aligned with ``frames`` (``truth[k]`` is the truth of ``frames[k]``).
        break_threshold, clash_threshold: [Å] override the defaults of ``node_kind``.
        min_separation: pairs this far apart in the bond graph (or in different chains) can clash.
        min_rmsf_frames: fewest common frames for RMSF and its Pearson r.
    """
    from MDAnalysis.lib.distances import calc_bonds

    brk_default, clash_default = default_thresholds(node_kind)
    brk = brk_default if break_threshold is None else float(break_threshold)
    clash = clash_default if clash_threshold is None else float(clash_threshold)
    x = _check_frames(frames, "frames")
    t, n = x.shape[:2]
    pairs, ref = unique_bonds(bonds, n, reference_lengths)
    i, j = pairs.numpy()
    lengths = np.stack([calc_bonds(f[i], f[j]) for f in x]) if len(i) else np.zeros((t, 0))
    ref = lengths[0] if ref is None else ref.numpy()
    dev = np.abs(lengths - ref)
    if node_kind == "residue":
        gap = ref > brk
        n_breaks = ((lengths > brk) & ~gap).sum(axis=1)
    else:
        gap = np.zeros(len(ref), dtype=bool)
        n_breaks = (dev > brk).sum(axis=1)
    excluded = near_pairs(pairs, n, min_separation=min_separation).numpy()
    n_clashes = np.array([_count_clashes(f, clash, excluded) for f in x])
    rg = np.sqrt(((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=2).mean(axis=1))
    report = ValidityReport(
        node_kind=node_kind, break_threshold=brk, clash_threshold=clash, min_separation=int(min_separation),
        n_bonds=len(ref), n_gap_bonds=int(gap.sum()), max_bond_dev=dev.max(axis=1) if len(ref) else np.zeros(t),
        n_breaks=n_breaks.astype(np.int64), n_clashes=n_clashes.astype(np.int64), rg=rg,
    )
    if truth is not None:
        _add_truth(report, x, _check_frames(truth, "truth", n), min_rmsf_frames)
    return report


def _count_clashes(frame: np.ndarray, threshold: float, excluded: np.ndarray) -> int:
    """Pairs i < j closer than ``threshold`` whose key i·N + j is not in ``excluded`` (sorted)."""
    from MDAnalysis.lib.distances import self_capped_distance

    if threshold <= 0 or len(frame) < 2:
        return 0
    pairs, dist = self_capped_distance(frame, max_cutoff=threshold)
    if len(pairs) == 0:
        return 0
    lo, hi = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    close = (dist < threshold) & ~np.isin(lo.astype(np.int64) * len(frame) + hi, excluded)
    return int(close.sum())


def _add_truth(report: ValidityReport, x: np.ndarray, truth: np.ndarray, min_frames: int) -> None:
    """RMSD per common frame, and RMSF + Pearson r when there are >= ``min_frames`` common frames."""
    m = min(len(x), len(truth))
    rmsd = np.full(len(x), np.nan)
    rmsd[:m] = np.sqrt(((x[:m] - truth[:m]) ** 2).sum(axis=2).mean(axis=1))
    report.rmsd = rmsd
    if m < min_frames:
        return
    rmsf = lambda a: np.sqrt(((a - a.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))  # noqa: E731
    report.rmsf_pred, report.rmsf_true = rmsf(x[:m]), rmsf(truth[:m])
    if report.rmsf_pred.std() > 0 and report.rmsf_true.std() > 0:
        report.rmsf_r = float(np.corrcoef(report.rmsf_pred, report.rmsf_true)[0, 1])


def plot_validity(report: ValidityReport, path: str | Path) -> Path:
    """Figure of a report (PNG/PDF/SVG from the extension), written atomically: max bond deviation, breaks and
    clashes, Rg / Rg(frame 0) per frame, and per-node RMSF of prediction vs truth (else RMSD, else a note)."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot: the caller's backend and figures are untouched

    path = Path(path)
    k = np.arange(report.n_frames)
    fig = Figure(figsize=(10, 7), layout="constrained")
    ax = fig.subplots(2, 2)
    ax[0, 0].plot(k, report.max_bond_dev, color="C0")
    if report.node_kind == "atom":
        ax[0, 0].axhline(report.break_threshold, color="C3", ls="--", label="break tolerance")
        ax[0, 0].legend()
    ax[0, 0].set(xlabel="frame", ylabel="max |bond − reference| [Å]", title="bond deviation")
    ax[0, 1].step(k, report.n_breaks, where="mid", label="chain breaks", color="C3")
    ax[0, 1].step(k, report.n_clashes, where="mid", label="clashes", color="C1")
    ax[0, 1].set(xlabel="frame", ylabel="count", title="breaks and clashes")
    ax[0, 1].set_ylim(bottom=0)
    ax[0, 1].yaxis.get_major_locator().set_params(integer=True)
    ax[0, 1].legend()
    ax[1, 0].plot(k, report.rg / report.rg[0], color="C2")
    ax[1, 0].axhline(1.0, color="grey", lw=0.8)
    ax[1, 0].set(xlabel="frame", ylabel="Rg / Rg(frame 0)", title="radius of gyration")
    _plot_truth_panel(ax[1, 1], report, k)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    return path


def _plot_truth_panel(ax, report: ValidityReport, k: np.ndarray) -> None:
    if report.rmsf_pred is not None:
        nodes = np.arange(len(report.rmsf_pred))
        ax.plot(nodes, report.rmsf_true, label="truth", color="k")
        ax.plot(nodes, report.rmsf_pred, label="prediction", color="C0")
        r = "n/a" if report.rmsf_r is None else f"{report.rmsf_r:.2f}"
        ax.set(xlabel="node", ylabel="RMSF [Å]", title=f"RMSF (Pearson r = {r})")
        ax.legend()
    elif report.rmsd is not None:
        ax.plot(k, report.rmsd, color="C0")
        ax.set(xlabel="frame", ylabel="RMSD to truth [Å]", title="RMSD (truth too short for RMSF)")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no true frames given", ha="center", va="center")
