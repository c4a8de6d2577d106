"""CMU motion capture, subject #9 "run": the EGHN paper's motion-capture benchmark.

Data (shipped with the package, ``eghn_md/benchmarks/data/cmu_subject09_run.npz``; see the README beside it): 11
trials of 31 joints, 30 skeleton bonds and the published start frames of each split (80 per trial; train trials
1, 2, 5, 6, 10, validation 0, 4, 9, test 3, 7, 8 → 400 / 240 / 240 samples).

Protocol: velocity ``v_t = x_{t+1} − x_t``; input ``(x_t, v_t)``; target ``x_{t+ΔT}`` with ΔT = 30 frames; edges =
skeleton bonds (edge feature 1) plus two-hop neighbours that are not bonds (edge feature 2); local (pooling) edges =
the bonds; node scalars = [|v_t|, height / max height of the frame] (the authors' features; the height is the y
coordinate, so that feature is invariant only to rotations about the vertical axis); metric = MSE per coordinate,
reported ×10⁻².
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from eghn_md.benchmarks._graphs import GraphList
from eghn_md.choices import SPLITS
from eghn_md.data.batch import GraphBatch
from eghn_md.errors import DataError, UsageError

__all__ = ["DEFAULT_PATH", "SPLITS", "PAPER_TABLE", "load_raw", "skeleton_edges", "MocapDataset"]

DEFAULT_PATH = Path(__file__).with_name("data") / "cmu_subject09_run.npz"
#: The paper's table (×10⁻², Subject #9 Run): model → (mean, std).
PAPER_TABLE = {"gnn": (66.4, 2.2), "rf": (521.3, 2.3), "egnn": (50.9, 0.9), "gmn": (44.1, 2.3),
               "eghn": (25.9, 0.3)}


def load_raw(path: str | Path = DEFAULT_PATH) -> dict:
    """The arrays of the data file: ``edges`` (30, 2), ``trials`` {id: (T, 31, 3)}, ``splits`` {split: {id: starts}}."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            trials = {int(k.split("_")[1]): z[k].astype(np.float64) for k in files if k.startswith("trial_")}
            splits: dict = {s: {} for s in SPLITS}
            for k in files:
                if k.startswith("split_"):
                    _, split, trial = k.split("_")
                    splits[split][int(trial)] = z[k].astype(np.int64)
            edges = z["edges"].astype(np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{str(path)!r} is not a motion-capture data file: {exc}") from exc
    return {"edges": edges, "trials": trials, "splits": splits}


def skeleton_edges(bonds: np.ndarray, n_nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both directions of the bonds (feature 1) and of the two-hop pairs that are not bonds (feature 2).

    Returns ``edge_index`` (2, E) with rows (receiver, sender), ``edge_attr`` (E, 1) and the bond edges (2, E_b).
    """
    adj = np.zeros((n_nodes, n_nodes), dtype=np.int64)
    adj[bonds[:, 0], bonds[:, 1]] = 1
    adj[bonds[:, 1], bonds[:, 0]] = 1
    two_hop = (adj @ adj > 0) & (adj == 0)
    np.fill_diagonal(two_hop, False)
    kind = np.where(adj > 0, 1, np.where(two_hop, 2, 0))
    i, j = np.nonzero(kind)
    edge_index = torch.as_tensor(np.stack([i, j]), dtype=torch.long)
    edge_attr = torch.as_tensor(kind[i, j], dtype=torch.float32)[:, None]
    bonds_both = edge_index[:, edge_attr[:, 0] == 1]
    return edge_index, edge_attr, bonds_both


class MocapDataset(GraphList):
    """One split of the subject-9 "run" protocol as single-graph :class:`GraphBatch` samples.

    ``max_samples`` keeps the first ``max_samples // n_trials`` start frames of every trial (the authors' rule).
    """

    def __init__(self, split: str, *, path: str | Path = DEFAULT_PATH, delta_frame: int = 30,
                 height_feature: bool = True, max_samples: Optional[int] = None,
                 dtype: torch.dtype = torch.float32) -> None:
        if split not in SPLITS:
            raise UsageError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
        if delta_frame < 1:
            raise UsageError(f"delta_frame must be >= 1, got {delta_frame}")
        raw = load_raw(path)
        mapping = raw["splits"][split]
        if not mapping:
            raise DataError(f"split {split!r} is not in {str(path)!r}")
        n_nodes = next(iter(raw["trials"].values())).shape[1]
        edge_index, edge_attr, bonds = skeleton_edges(raw["edges"], n_nodes)
        edge_attr = edge_attr.to(dtype)
        per_trial = None if max_samples is None else max(1, int(max_samples) // len(mapping))
        self._graphs: list[GraphBatch] = []
        for trial in sorted(mapping):
            x = raw["trials"][trial]
            starts = mapping[trial][:per_trial]
            if starts.max() + delta_frame >= x.shape[0] - 1 or starts.min() < 0:
                raise DataError(f"trial {trial}: start frames + ΔT={delta_frame} exceed its {x.shape[0]} frames")
            for t in starts:
                pos = torch.as_tensor(x[t], dtype=dtype)
                vel = torch.as_tensor(x[t + 1] - x[t], dtype=dtype)
                target = torch.as_tensor(x[t + delta_frame], dtype=dtype)
                feats = [vel.norm(dim=1, keepdim=True)]
                if height_feature:
                    feats.append(pos[:, 1:2] / pos[:, 1].max())
                self._graphs.append(GraphBatch.single(pos=pos, vel=vel, h=torch.cat(feats, dim=1),
                                                      edge_index=edge_index, edge_attr=edge_attr,
                                                      local_edge_index=bonds, target=target))
