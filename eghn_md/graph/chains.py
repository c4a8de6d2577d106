"""The chain model: which consecutive nodes are joined by a sequence bond, and where chains and gaps are.

Nodes are in topology order. Consecutive nodes i, i+1 are **not** joined (a *break*) when

1. their segment or chain ID differs (a new chain), or
2. their residue numbers are not consecutive: the resid decreases (numbering restarts: a new chain, e.g. two chains
   of a GRO file without chain IDs) or jumps by more than 1 (missing residues: a gap); equal resids (insertion
   codes, several atom nodes of one residue) do not break, or
3. both are Cα atoms (residue-level ``name CA`` nodes) and their distance in the first frame exceeds
   :data:`CA_CA_MAX_BOND` (4.19 Å, the chain-break threshold of the rollout validity report and of ProteinBench /
   AlphaFlow): no peptide bond is that long, so this catches chains and gaps that residue numbering hides (two
   chains numbered continuously without chain IDs; missing residues in a renumbered file).

Every pair that does not break is a sequence bond, so a stored bond list never crosses a chain or a gap, and no
stored Cα–Cα sequence bond is longer than :data:`CA_CA_MAX_BOND` in the frame it was built from.
:func:`chain_model` recovers chains and gaps from a node table's stored bonds (for ``eghn-md info`` and the rollout
validity report, which therefore see exactly the bonds the model was trained with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

import numpy as np


class ChainNodes(Protocol):
    """What :func:`chain_model` reads of a node table (:class:`eghn_md.graph.nodes.NodeTable` is one; this module
    sits below it, so it names the fields instead of importing the class)."""

    n_nodes: int
    level: str
    resid: Sequence[int]
    segid: Sequence[str]
    chain: Sequence[str]
    bonds: Sequence

__all__ = ["CA_CA_MAX_BOND", "sequence_breaks", "sequence_bonds", "Chain", "ChainModel", "chain_model"]

CA_CA_MAX_BOND = 4.19
"""[Å] The longest consecutive Cα–Cα distance that is still a sequence bond (a trans peptide gives 3.80 Å)."""


def sequence_breaks(
    resid: np.ndarray,
    segid: np.ndarray,
    chain: np.ndarray,
    *,
    positions: Optional[np.ndarray] = None,
    is_ca: bool = False,
) -> np.ndarray:
    """(n − 1,) bool: True where consecutive nodes i, i+1 are not joined (rules in the module docstring).

    Args:
        resid: (n,) int residue numbers; segid, chain: (n,) str IDs ('' when absent).
        positions: (n, 3) [Å] the first frame, for the Cα distance rule (skipped when None).
        is_ca: the nodes are Cα atoms, one per residue (enables the distance rule).
    """
    resid = np.asarray(resid, dtype=np.int64)
    step = np.diff(resid)
    breaks = (np.asarray(segid)[1:] != np.asarray(segid)[:-1]) | (np.asarray(chain)[1:] != np.asarray(chain)[:-1])
    breaks |= (step < 0) | (step > 1)
    if positions is not None and is_ca and len(resid) > 1:
        pos = np.asarray(positions, dtype=np.float64)
        breaks |= np.linalg.norm(pos[1:] - pos[:-1], axis=1) > CA_CA_MAX_BOND
    return breaks


def sequence_bonds(breaks: np.ndarray) -> np.ndarray:
    """(n_bonds, 2) int64 pairs (i, i+1) for every consecutive pair that does not break."""
    i = np.flatnonzero(~np.asarray(breaks, dtype=bool))
    return np.stack([i, i + 1], axis=1).astype(np.int64) if len(i) else np.zeros((0, 2), dtype=np.int64)


@dataclass(frozen=True)
class Chain:
    """A run of nodes ``start..stop−1`` with one segment/chain ID and non-decreasing resids.

    ``gaps``: the node indices i after which the chain has a gap (no bond i → i+1: missing residues or a Cα–Cα
    distance beyond :data:`CA_CA_MAX_BOND`).
    """

    label: str
    start: int
    stop: int
    first_resid: int
    last_resid: int
    gaps: tuple = ()


@dataclass(frozen=True)
class ChainModel:
    """Chains and gaps of a node graph; ``breaks`` (n − 1,) bool as in :func:`sequence_breaks`."""

    chains: tuple
    breaks: np.ndarray = field(repr=False)

    @property
    def n_gaps(self) -> int:
        return sum(len(c.gaps) for c in self.chains)

    def describe(self, resid: np.ndarray) -> list[str]:
        """One line per chain: ``"A: resid 1–214 (214 nodes), gaps after resid 50"``."""
        out = []
        for c in self.chains:
            gaps = ", ".join(f"{int(resid[g])}–{int(resid[g + 1])}" for g in c.gaps)
            out.append(f"{c.label or '-'}: resid {c.first_resid}–{c.last_resid} ({c.stop - c.start} nodes)"
                       + (f", gaps between resid {gaps}" if gaps else ""))
        return out


def chain_model(nodes: ChainNodes) -> ChainModel:
    """Chains and gaps of ``nodes`` from its stored bonds (residue level) or its IDs and resids (atom level).

    A new chain starts where the segment/chain ID changes or the resid decreases; every other break between
    consecutive nodes (residue level: a missing sequence bond) is a gap of that chain.
    """
    n = nodes.n_nodes
    if n == 0:
        return ChainModel(chains=(), breaks=np.zeros(0, dtype=bool))
    resid = np.asarray(nodes.resid, dtype=np.int64)
    segid, chain = np.asarray(nodes.segid, dtype=str), np.asarray(nodes.chain, dtype=str)
    new_chain = (segid[1:] != segid[:-1]) | (chain[1:] != chain[:-1]) | (np.diff(resid) < 0)
    if nodes.level == "residue":
        bonds = np.asarray(nodes.bonds, dtype=np.int64).reshape(-1, 2)
        joined = np.zeros(max(n - 1, 0), dtype=bool)
        seq = bonds[bonds[:, 1] - bonds[:, 0] == 1]
        joined[seq[:, 0]] = True
        breaks = ~joined
    else:
        breaks = sequence_breaks(resid, segid, chain)
    starts = [0] + [int(i) + 1 for i in np.flatnonzero(new_chain)]
    stops = starts[1:] + [n]
    chains = []
    for a, b in zip(starts, stops, strict=True):
        gaps = tuple(int(i) for i in np.flatnonzero(breaks[a:b - 1]) + a)
        label = ":".join(dict.fromkeys(x for x in (str(segid[a]), str(chain[a])) if x))
        chains.append(Chain(label=label, start=a, stop=b, first_resid=int(resid[a]), last_resid=int(resid[b - 1]),
                            gaps=gaps))
    return ChainModel(chains=tuple(chains), breaks=breaks)
