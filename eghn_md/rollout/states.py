"""Two conformational states of a protein (e.g. closed and open adenylate kinase) from basin-specific native contacts,
assigned with hysteresis so that a barrier crossing counts once.

Definitions (distances between nodes, Cα for residue nodes, in Å):

* **Basin-specific contacts.** From two reference structures A and B of the same N nodes, the pairs with
  sequence separation ``|i − j| >= min_separation`` (4) that are in contact in A only: ``d_A < cutoff`` (8 Å) and,
  in B, ``d_B > max(cutoff + margin, λ·d_A + margin)`` (``margin`` 1 Å), i.e. clearly broken in B even by the
  tolerance of the switching function below. ``r0_a`` is their distance in A. The same the other way round for B.
  (With 1AKE / 4AKE from MDAnalysisTests this gives 29 closed-only and 4 open-only Cα contacts: opening AdK mostly
  breaks contacts, so Q_B moves in steps of 1/4 and ΔQ is driven mainly by Q_A; ``margin=0.5`` gives 32 and 7.)
* **Fraction of contacts formed** (Best, Hummer & Eaton, *PNAS* 110, 17874 (2013), eq. 1):
  ``Q(X) = mean over pairs of 1 / (1 + exp(β (r(X) − λ r0)))`` with β = 5 Å⁻¹ and λ = ``tolerance`` (1.2 here,
  tighter than their all-atom 1.8, because Cα–Cα contact distances are longer and the basin-specific pairs of the
  other state sit only a few Å further out). ``Q_A`` and ``Q_B`` lie in [0, 1].
* **Order parameter** ``ΔQ = Q_B − Q_A`` in [−1, 1] (A ≈ −1, B ≈ +1).
* **State with hysteresis** (transition-based assignment, as for core sets / milestones): a frame enters B when
  ``ΔQ > high`` and A when ``ΔQ < low`` (``low`` < ``high``); between the two thresholds it keeps the state of the
  previous frame; frames before the first threshold crossing are *not yet committed* (−1). A noisy recrossing of
  the barrier that never reaches the other threshold is therefore not a transition.
* **Summary** over committed frames: populations, transitions A→B and B→A, and the mean dwell time [ps] of the
  visits whose entry and exit both lie inside the trajectory (a visit cut by the start or the end is left out of
  the mean but its frames count in the populations). A list of trajectories (replicas) sums the counts.
* **Statistical error of the populations** (:func:`population_se`): a population read from a finite trajectory is
  the time average of a correlated 0/1 series. For a two-state Markov chain that leaves A with probability a per
  frame and B with b, the variance of that average over T committed frames is p (1 − p) / T · (2 − a − b) / (a + b)
  (the integrated autocorrelation of the indicator, whose correlation decays as (1 − a − b)^k); a and b are
  estimated as the transitions out of each state over its committed frames that have a next frame (so visits cut
  by a trajectory's ends count too), and independent replicas add their frames to T. It assumes the trajectories
  sample the equilibrium: replicas from one start, or from starts away from it, carry a bias it does not include.
  On the equilibrium AdK benchmark it gives ± 0.054 for one MD run of 1,250 steps, where six independent runs
  scatter by 0.058 (``examples/benchmarks/results/generative_equilibrium.md`` §13c, §17).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from eghn_md.errors import DataError, UsageError

__all__ = ["TwoStates", "two_states", "states_from_files", "read_nodes", "contact_fractions", "contact_formed",
           "order_parameter", "state_series", "state_summary", "population_se", "BETA_PER_A", "UNCOMMITTED"]

BETA_PER_A = 5.0  #: steepness β of the contact switching function [1/Å] (Best, Hummer & Eaton 2013)
UNCOMMITTED = -1  #: state code of frames before the first threshold crossing


@dataclass(frozen=True, kw_only=True, eq=False)
class TwoStates:
    """Two states defined by their basin-specific native contacts (see the module docstring).

    Attributes:
        names: names of state A (code 0) and state B (code 1), e.g. ``("closed", "open")``.
        n_nodes: N, the nodes of the reference structures (every trajectory must have them in the same order).
        pairs_a: (n_a, 2) int node pairs in contact in A only; r0_a: (n_a,) [Å] their distance in A.
        pairs_b: (n_b, 2) int node pairs in contact in B only; r0_b: (n_b,) [Å] their distance in B.
        low, high: thresholds on ΔQ = Q_B − Q_A: enter A below ``low``, enter B above ``high``.
        tolerance: λ of the switching function (a contact is half formed at λ·r0).
        beta: β of the switching function [1/Å].
    """

    names: tuple[str, str]
    n_nodes: int
    pairs_a: np.ndarray
    r0_a: np.ndarray
    pairs_b: np.ndarray
    r0_b: np.ndarray
    low: float
    high: float
    tolerance: float = 1.2
    beta: float = BETA_PER_A

    def describe(self) -> dict:
        """JSON-able parameters: names, contact counts, thresholds, λ and β."""
        return {"names": list(self.names), "n_nodes": self.n_nodes, "n_contacts": [len(self.r0_a), len(self.r0_b)],
                "low": self.low, "high": self.high, "tolerance": self.tolerance, "beta_per_A": self.beta}


def _specific(d_own: np.ndarray, d_other: np.ndarray, *, cutoff: float, margin: float, tolerance: float,
              min_separation: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs i < j with |i − j| >= min_separation in contact in one structure only: (P, 2) int, (P,) [Å]."""
    i, j = np.triu_indices(len(d_own), k=min_separation)
    own, other = d_own[i, j], d_other[i, j]
    keep = (own < cutoff) & (other > np.maximum(cutoff + margin, tolerance * own + margin))
    return np.stack([i[keep], j[keep]], axis=1).astype(np.int64), own[keep]


def _structure(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or len(a) < 2:
        raise UsageError(f"{what} must be (N, 3) positions with N >= 2, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{what} has non-finite coordinates")
    return a


def two_states(*, ref_a: np.ndarray, ref_b: np.ndarray, names: tuple[str, str] = ("closed", "open"),
               cutoff: float = 8.0, margin: float = 1.0, tolerance: float = 1.2, min_separation: int = 4,
               low: float = -0.3, high: float = 0.3) -> TwoStates:
    """The two states of reference structures A and B (definitions: module docstring).

    Args:
        ref_a: (N, 3) [Å] structure of state A (e.g. closed AdK, 1AKE Cα).
        ref_b: (N, 3) [Å] structure of state B (e.g. open AdK, 4AKE Cα), same nodes in the same order.
        names: names of A and B.
        cutoff: [Å] contact distance in the own structure.
        margin: [Å] how much farther than ``max(cutoff, λ·r0)`` the pair must be in the other structure.
        tolerance: λ, a contact is half formed at λ·r0.
        min_separation: smallest sequence separation |i − j| of a contact.
        low, high: hysteresis thresholds on ΔQ = Q_B − Q_A, −1 < low < high < 1.
    """
    a, b = _structure(ref_a, "ref_a"), _structure(ref_b, "ref_b")
    if a.shape != b.shape:
        raise DataError(f"the two reference structures have {len(a)} and {len(b)} nodes; they must match")
    if not -1.0 < low < high < 1.0:
        raise UsageError(f"state thresholds need -1 < low < high < 1, got low={low}, high={high}")
    if cutoff <= 0 or margin < 0 or tolerance < 1 or min_separation < 1:
        raise UsageError(f"need cutoff > 0, margin >= 0, tolerance >= 1, min_separation >= 1; got {cutoff}, "
                         f"{margin}, {tolerance}, {min_separation}")
    da = np.linalg.norm(a[:, None] - a[None], axis=-1)
    db = np.linalg.norm(b[:, None] - b[None], axis=-1)
    kw = dict(cutoff=cutoff, margin=margin, tolerance=tolerance, min_separation=min_separation)
    pairs_a, r0_a = _specific(da, db, **kw)
    pairs_b, r0_b = _specific(db, da, **kw)
    if not len(r0_a) or not len(r0_b):
        raise DataError(f"the reference structures have {len(r0_a)} {names[0]}-only and {len(r0_b)} {names[1]}-only "
                        f"contacts at cutoff {cutoff} Å, margin {margin} Å; each state needs at least one "
                        "(are they two different conformations?)")
    return TwoStates(names=(str(names[0]), str(names[1])), n_nodes=len(a), pairs_a=pairs_a, r0_a=r0_a,
                     pairs_b=pairs_b, r0_b=r0_b, low=float(low), high=float(high), tolerance=float(tolerance))


def _frames(states: TwoStates, pos) -> np.ndarray:
    x = np.asarray(pos, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != 3:
        raise UsageError(f"positions must be (T, N, 3), got shape {x.shape}")
    if x.shape[1] != states.n_nodes:
        raise DataError(f"the trajectory has {x.shape[1]} nodes but the state definition has {states.n_nodes}")
    return x


def contact_formed(states: TwoStates, r: np.ndarray, r0: np.ndarray) -> np.ndarray:
    """How formed each contact is, the switching function of Q: ``1 / (1 + exp(β (r − λ r0)))`` in [0, 1].

    Args:
        states: the state definition (β, λ).
        r: (..., P) [Å] contact lengths; r0: (P,) [Å] their lengths in the reference structure.

    Returns:
        (..., P) formed fractions.
    """
    z = np.clip(states.beta * (r - states.tolerance * r0), -50.0, 50.0)
    return 1.0 / (1.0 + np.exp(z))


def _q(x: np.ndarray, pairs: np.ndarray, r0: np.ndarray, states: TwoStates) -> np.ndarray:
    r = np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)
    return contact_formed(states, r, r0).mean(axis=1)


def contact_fractions(states: TwoStates, pos: np.ndarray) -> np.ndarray:
    """Fractions of A-only and B-only contacts formed.

    Args:
        states: the state definition.
        pos: (T, N, 3) [Å] trajectory (or one (N, 3) frame).

    Returns:
        (T, 2) ``Q_A, Q_B`` in [0, 1].
    """
    x = _frames(states, pos)
    return np.stack([_q(x, states.pairs_a, states.r0_a, states), _q(x, states.pairs_b, states.r0_b, states)], axis=1)


def order_parameter(states: TwoStates, pos: np.ndarray) -> np.ndarray:
    """(T,) ΔQ = Q_B − Q_A in [−1, 1] of a (T, N, 3) [Å] trajectory."""
    q = contact_fractions(states, pos)
    return q[:, 1] - q[:, 0]


def state_series(states: TwoStates, pos: np.ndarray) -> np.ndarray:
    """(T,) int8 state of each frame of a (T, N, 3) [Å] trajectory: 0 = A, 1 = B, −1 = not yet committed."""
    dq = order_parameter(states, pos)
    event = np.full(len(dq), UNCOMMITTED, dtype=np.int8)
    event[dq < states.low] = 0
    event[dq > states.high] = 1
    last = np.maximum.accumulate(np.where(event != UNCOMMITTED, np.arange(len(dq)), -1))
    out = np.where(last >= 0, event[np.maximum(last, 0)], UNCOMMITTED)
    return out.astype(np.int8)


def _visits(s: np.ndarray) -> tuple[list[int], list[int], list[int]]:
    """Per committed run of equal states: its state, first frame and end frame (exclusive)."""
    idx = np.flatnonzero(s != UNCOMMITTED)
    if not len(idx):
        return [], [], []
    c = s[idx[0]:]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(c) != 0) + 1])
    ends = np.concatenate([starts[1:], [len(c)]])
    return [int(c[k]) for k in starts], [int(k) + int(idx[0]) for k in starts], [int(k) + int(idx[0]) for k in ends]


def state_summary(series: np.ndarray | Sequence[np.ndarray], *, dt_ps: float,
                  names: tuple[str, str] = ("A", "B")) -> dict:
    """Populations, transitions and dwell times of one state series or a list of them (replicas: counts summed).

    Args:
        series: (T,) int state codes (0, 1, −1) from :func:`state_series`, or a list of such arrays.
        dt_ps: [ps] time between consecutive frames.
        names: names of states 0 and 1 (keys of the result).

    Returns:
        JSON-able dict: ``n_frames``, ``n_committed``, ``population`` {name: fraction of committed frames, None
        without any}, ``transitions`` {"A_to_B", "B_to_A" spelled with the names: count}, ``mean_dwell_ps``
        {name: mean over complete visits, None without one}, ``n_complete_visits`` {name: count}, ``dt_ps``,
        ``population_se``: the standard error of either population (:func:`population_se`; None unless there are
        transitions both ways).
    """
    one = isinstance(series, np.ndarray) and series.ndim == 1
    runs = [series] if one else [np.asarray(s) for s in series]
    if any(r.ndim != 1 for r in runs):
        raise UsageError("state series must be 1-D arrays of state codes (0, 1, -1)")
    frames = np.zeros(2, dtype=np.int64)
    trans = np.zeros(2, dtype=np.int64)  # 0→1, 1→0
    dwell: list[list[int]] = [[], []]
    leaving = np.zeros(2, dtype=np.int64)  # committed frames of each state with a committed next frame
    for s in runs:
        frames += np.bincount(s[s != UNCOMMITTED].astype(np.int64), minlength=2)[:2]
        nxt = s[:-1][s[1:] != UNCOMMITTED]
        leaving += np.bincount(nxt[nxt != UNCOMMITTED].astype(np.int64), minlength=2)[:2]
        st, first, end = _visits(s)
        for k in range(1, len(st)):
            trans[st[k - 1]] += 1
        for k in range(1, len(st) - 1):  # entered and left inside the trajectory
            dwell[st[k]].append(end[k] - first[k])
    committed = int(frames.sum())
    a, b = names
    se = None
    if trans.all():  # per-frame leave probabilities trans / leaving: their inverses are the mean dwell times
        se = population_se(float(frames[1] / committed), committed,
                           dwell_frames=(float(leaving[0] / trans[0]), float(leaving[1] / trans[1])))
    return {
        "n_frames": int(sum(len(r) for r in runs)), "n_committed": committed, "dt_ps": float(dt_ps),
        "population": {n: (float(frames[k] / committed) if committed else None) for k, n in enumerate(names)},
        "transitions": {f"{a}_to_{b}": int(trans[0]), f"{b}_to_{a}": int(trans[1])},
        "mean_dwell_ps": {n: (float(np.mean(dwell[k]) * dt_ps) if dwell[k] else None) for k, n in enumerate(names)},
        "n_complete_visits": {n: len(dwell[k]) for k, n in enumerate(names)},
        "population_se": se,
    }


def population_se(p: float, n_frames: int, *, dwell_frames: tuple[float, float]) -> float:
    """Standard error of a two-state population ``p`` read from ``n_frames`` committed frames of a Markov chain whose
    mean dwell times are ``dwell_frames`` (state A, state B) [frames, ≥ 1] (the module docstring gives the formula):
    sqrt(p (1 − p) / T · (2 − a − b) / (a + b)), a and b the inverse dwell times (per-frame leave probabilities)."""
    if n_frames < 1 or min(dwell_frames) < 1.0:
        raise UsageError(f"population_se needs n_frames >= 1 and dwell times >= 1 frame, got {n_frames}, "
                         f"{tuple(dwell_frames)}")
    a, b = 1.0 / dwell_frames[0], 1.0 / dwell_frames[1]
    factor = max(2.0 - a - b, 0.0) / (a + b)
    return float(np.sqrt(p * (1.0 - p) / n_frames * factor))


def read_nodes(path: str | Path, *, selection: str = "name CA") -> np.ndarray:
    """(N, 3) [Å] positions of the ``selection`` atoms (default Cα; every atom when none matches) in the first frame
    of a structure file (PDB, GRO, … anything :func:`eghn_md.io.readers.open_system` reads without a trajectory)."""
    import warnings

    from eghn_md.io.readers import open_system

    with warnings.catch_warnings(), open_system(path, []) as system:
        warnings.simplefilter("ignore")  # placeholder CRYST1, missing elements: irrelevant to node positions
        atoms = system.universe.select_atoms(selection)
        idx = atoms.indices if atoms.n_atoms else np.arange(system.n_atoms)
        pos, _ = next(system.trajectories[0].iter_blocks(idx, block=1))
        return np.asarray(pos[0], dtype=np.float64).copy()


def states_from_files(path_a: str | Path, path_b: str | Path, *, n_nodes: Optional[int] = None,
                      names: Optional[tuple[str, str]] = None, **kwargs) -> TwoStates:
    """:func:`two_states` of two structure files (their Cα, see :func:`read_nodes`), named after the files' stems
    unless ``names`` is given; ``n_nodes`` is the node count of the data they must match. ``kwargs`` as
    :func:`two_states`.

    Raises:
        DataError: a file's node count differs from the other's or from ``n_nodes`` (the message names both).
    """
    a, b = read_nodes(path_a), read_nodes(path_b)
    for path, x in ((path_a, a), (path_b, b)):
        if n_nodes is not None and len(x) != n_nodes:
            raise DataError(f"`states` structure {str(path)!r} has {len(x)} Cα nodes but the data has {n_nodes}; "
                            "give two structures of the same nodes in the same order", params=("states",))
    if len(a) != len(b):
        raise DataError(f"`states` structures {str(path_a)!r} and {str(path_b)!r} have {len(a)} and {len(b)} Cα "
                        "nodes; they must match", params=("states",))
    return two_states(ref_a=a, ref_b=b, names=names or (Path(path_a).stem, Path(path_b).stem), **kwargs)
