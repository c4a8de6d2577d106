"""Selected atoms → graph nodes: per-node metadata and the local (covalent / sequence) bond graph.

A node is one selected atom. Two levels follow from the selection:

- ``"residue"``: every selected atom is the only one of its residue (default ``protein and name CA``): one node per
  residue. ``charge`` is then the residue's net charge (e), and bonds join consecutive residues of one chain, never
  across a chain break or a gap (the chain model of :mod:`eghn_md.graph.chains`).
- ``"atom"``: some residue contributes several nodes (e.g. ``backbone``: N, CA, C, O). ``charge`` is the atom's
  partial charge (e) and bonds are the topology's bonds between selected atoms.

When the topology has no bonds (GRO, most PDB files) or none join the selected atoms, atom-level bonds fall back to
consecutive nodes of one chain without a gap in residue numbering. ``bonds_source`` records which rule was used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from eghn_md.choices import NODE_LEVELS
from eghn_md.errors import DataError
from eghn_md.graph.chains import sequence_bonds, sequence_breaks
from eghn_md.graph.features import atom_type_index, residue_type_index

if TYPE_CHECKING:  # pragma: no cover
    import h5py
    from MDAnalysis.core.groups import AtomGroup

__all__ = ["NodeTable", "node_table"]

_STR_FIELDS = ("resname", "segid", "chain", "name")


@dataclass(frozen=True, eq=False)
class NodeTable:
    """Metadata of the graph nodes, one entry per node in node order.

    Attributes:
        resname: (n_nodes,) str, residue names as in the topology.
        resid: (n_nodes,) int64, residue numbers.
        segid: (n_nodes,) str, segment ids.
        chain: (n_nodes,) str, chain ids ('' when the topology has none).
        name: (n_nodes,) str, atom names.
        atom_index: (n_nodes,) int64, 0-based index of the node atom in the topology.
        charge: (n_nodes,) float32 [e] or None when the topology has no charges (see module doc for its meaning).
        bonds: (n_bonds, 2) int64, node index pairs i < j, sorted, unique.
        level: ``"residue"`` or ``"atom"``.
        bonds_source: ``"topology"``, ``"sequence"`` or ``"consecutive"``.
    """

    resname: np.ndarray
    resid: np.ndarray
    segid: np.ndarray
    chain: np.ndarray
    name: np.ndarray
    atom_index: np.ndarray
    charge: np.ndarray | None
    bonds: np.ndarray
    level: str = "residue"
    bonds_source: str = "sequence"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.resname)
        for key in ("resid", "segid", "chain", "name", "atom_index"):
            if len(getattr(self, key)) != n:
                raise DataError(f"node metadata {key!r} has {len(getattr(self, key))} entries, expected {n}")
        if self.charge is not None and len(self.charge) != n:
            raise DataError(f"node metadata 'charge' has {len(self.charge)} entries, expected {n}")
        bonds = np.asarray(self.bonds)
        if bonds.ndim != 2 or bonds.shape[1] != 2 or (bonds.size and (bonds.min() < 0 or bonds.max() >= n)):
            raise DataError(f"node bonds must be (n_bonds, 2) indices in [0, {n}), got shape {bonds.shape}")
        if self.level not in NODE_LEVELS:
            raise DataError(f"node level {self.level!r} is not one of {list(NODE_LEVELS)}")

    @property
    def n_nodes(self) -> int:
        return len(self.resname)

    @property
    def residue_type(self) -> np.ndarray:
        """(n_nodes,) int64 index into :data:`~eghn_md.graph.features.RESIDUE_TYPES`, from ``resname``."""
        if "residue_type" not in self._cache:
            self._cache["residue_type"] = np.array([residue_type_index(r) for r in self.resname], dtype=np.int64)
        return self._cache["residue_type"]

    @property
    def atom_type(self) -> np.ndarray:
        """(n_nodes,) int64 index into :data:`~eghn_md.graph.features.ATOM_TYPES`, from ``name``."""
        if "atom_type" not in self._cache:
            self._cache["atom_type"] = np.array([atom_type_index(a) for a in self.name], dtype=np.int64)
        return self._cache["atom_type"]

    # ------------------------------------------------------------------------------------------------ HDF5
    def to_h5(self, group: "h5py.Group") -> None:
        """Write every field as a dataset of ``group`` (strings as UTF-8), level and bonds source as attributes.

        ``residue_type`` and ``atom_type`` are written too, for other tools; :meth:`from_h5` recomputes them.
        """
        import h5py

        str_dt = h5py.string_dtype("utf-8")
        for key in _STR_FIELDS:
            group.create_dataset(key, data=np.asarray(getattr(self, key), dtype=object), dtype=str_dt)
        group.create_dataset("resid", data=np.asarray(self.resid, dtype=np.int64))
        group.create_dataset("atom_index", data=np.asarray(self.atom_index, dtype=np.int64))
        group.create_dataset("residue_type", data=self.residue_type)
        group.create_dataset("atom_type", data=self.atom_type)
        if self.charge is not None:
            group.create_dataset("charge", data=np.asarray(self.charge, dtype=np.float32))
            group["charge"].attrs["units"] = "e"
        group.create_dataset("bonds", data=np.asarray(self.bonds, dtype=np.int64).reshape(-1, 2))
        group.attrs["level"] = self.level
        group.attrs["bonds_source"] = self.bonds_source
        group.attrs["n_nodes"] = self.n_nodes

    @classmethod
    def from_h5(cls, group: "h5py.Group") -> "NodeTable":
        """Read a table written by :meth:`to_h5`."""
        try:
            strs = {key: np.asarray(group[key].asstr()[()], dtype=str) for key in _STR_FIELDS}
            return cls(
                **strs,
                resid=np.asarray(group["resid"][()], dtype=np.int64),
                atom_index=np.asarray(group["atom_index"][()], dtype=np.int64),
                charge=np.asarray(group["charge"][()], dtype=np.float32) if "charge" in group else None,
                bonds=np.asarray(group["bonds"][()], dtype=np.int64).reshape(-1, 2),
                level=str(group.attrs["level"]),
                bonds_source=str(group.attrs["bonds_source"]),
            )
        except KeyError as exc:
            raise DataError(f"node metadata in {group.file.filename!r} is incomplete: missing {exc}") from None


def node_table(atoms: "AtomGroup", *, positions: np.ndarray | None = None) -> NodeTable:
    """Node metadata for the atoms of a selection (one node per atom, in the group's order).

    Args:
        atoms: an MDAnalysis AtomGroup with at least one atom (from :meth:`System.select`).
        positions: (n_atoms of ``atoms``, 3) [Å] the first frame; lets Cα nodes break the chain where
            consecutive Cα atoms are farther apart than :data:`~eghn_md.graph.chains.CA_CA_MAX_BOND`.
    """
    n = atoms.n_atoms
    if n == 0:
        raise DataError("cannot build nodes from an empty selection")
    resindex = atoms.resindices
    level = "residue" if len(np.unique(resindex)) == n else "atom"
    segid = _attr(atoms, "segids", n, "")
    chain = _attr(atoms, "chainIDs", n, "")
    charge = None
    if hasattr(atoms, "charges"):
        charge = atoms.residues.charges if level == "residue" else atoms.charges
        if level == "residue":  # one value per selected atom's residue, in node order
            order = {r: i for i, r in enumerate(atoms.residues.resindices)}
            charge = charge[[order[r] for r in resindex]]
        charge = np.asarray(charge, dtype=np.float32)
    bonds, source = _node_bonds(atoms, level, segid, chain, positions)
    return NodeTable(
        resname=np.asarray(atoms.resnames, dtype=str),
        resid=np.asarray(atoms.resids, dtype=np.int64),
        segid=segid,
        chain=chain,
        name=np.asarray(atoms.names, dtype=str),
        atom_index=np.asarray(atoms.indices, dtype=np.int64),
        charge=charge,
        bonds=bonds,
        level=level,
        bonds_source=source,
    )


def _attr(atoms: "AtomGroup", key: str, n: int, default: str) -> np.ndarray:
    if hasattr(atoms, key):
        return np.asarray(getattr(atoms, key), dtype=str)
    return np.full(n, default, dtype=str)


def _node_bonds(atoms: "AtomGroup", level: str, segid: np.ndarray, chain: np.ndarray,
                positions: np.ndarray | None) -> tuple[np.ndarray, str]:
    """(n_bonds, 2) int64 node pairs and the rule used (see module docstring)."""
    n = atoms.n_atoms
    all_bonds = _topology_bonds(atoms.universe) if level == "atom" else None
    if all_bonds is not None and len(all_bonds):
        lookup = np.full(atoms.universe.atoms.n_atoms, -1, dtype=np.int64)
        lookup[atoms.indices] = np.arange(n)
        pairs = lookup[all_bonds]
        pairs = pairs[(pairs >= 0).all(axis=1)]
        if len(pairs):
            return _canonical(pairs), "topology"
    is_ca = level == "residue" and bool(np.all(np.char.upper(np.asarray(atoms.names, dtype=str)) == "CA"))
    breaks = sequence_breaks(atoms.resids, segid, chain, positions=positions, is_ca=is_ca)
    return _canonical(sequence_bonds(breaks)), "sequence" if level == "residue" else "consecutive"


def _topology_bonds(universe) -> np.ndarray | None:
    """(n_bonds, 2) atom index pairs of the whole topology, or None when it has no bond information."""
    try:  # the raw index pairs: avoids building MDAnalysis Bond objects for the whole system
        values = universe._topology.bonds.values
    except AttributeError:
        try:
            return np.asarray(universe.atoms.bonds.indices, dtype=np.int64).reshape(-1, 2)
        except AttributeError:  # NoDataError derives from AttributeError
            return None
    return np.asarray(values, dtype=np.int64).reshape(-1, 2)


def _canonical(pairs: np.ndarray) -> np.ndarray:
    pairs = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if not len(pairs):
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0)
