"""Node scalar features h computed from node metadata only (never from coordinates).

The features are a pure function of a :class:`~eghn_md.graph.nodes.NodeTable` and a :class:`FeatureSpec`, so a
trained model that stores its spec can rebuild exactly the same features for a new topology:

======================  ====  =====================================================================================
block                   size  content
======================  ====  =====================================================================================
residue type one-hot    21    :data:`RESIDUE_TYPES`: the 20 standard amino acids, then ``OTHER``, indexed by
                              the canonical residue (:func:`canonical_residue`, table below).
atom name one-hot       6     :data:`ATOM_TYPES` (``N, CA, C, O, CB, OTHER``), only when ``spec.atom``: by
                              default when nodes are atoms (several nodes per residue, e.g. ``--select backbone``).
                              Terminal carboxyl oxygens (OT1, OT2, OC1, OC2, OXT, O1, O2) count as ``O``.
sequence                14    only when ``spec.sequence``: where the node's residue lies along the chain, s = its
                              ordinal among the residues / (their number − 1) ∈ [0, 1], as [sin(π k s), cos(π k s)]
                              for k in :data:`SEQUENCE_FREQUENCIES` (1, 2, 4 … 64: neighbours told apart, as in a
                              transformer's positional encoding). It names each residue, so a model learns *this*
                              protein's structure (a surrogate of one protein); it ties the model to the topology's
                              residue count.
charge                  1     the node's charge in e, only when ``spec.charge`` (opt-in; needs a topology with
                              charges): the atom's partial charge for atom nodes, the residue's net charge for
                              one-node-per-residue graphs (see :mod:`eghn_md.graph.nodes`). With
                              ``spec.charge_norm`` divided by the largest |charge| of the nodes (the paper's
                              protein feature; their code divides by the largest charge, the same for AdK's
                              backbone, ±0.51 e).
======================  ====  =====================================================================================

Canonical residues (:func:`canonical_residue`): protonation states and force-field spellings of one amino acid are
one residue type, both for the features and for checking a topology against a trained model
(:func:`eghn_md.data.system.check_same_nodes`):

=========  ===================================================================================
canonical  spellings (case-insensitive; CHARMM, Amber, GROMOS/GROMACS, OPLS, PDB)
=========  ==========================================================================================
HIS        HSD HSE HSP (CHARMM) · HID HIE HIP (Amber) · HISD HISE HISH HISA HISB HIS1 HIS2 (GROMACS)
CYS        CYX (disulfide) · CYM (deprotonated) · CYS2 CYS1 CYN
ASP        ASH (Amber, protonated) · ASPH ASPP (GROMACS / CHARMM, protonated)
GLU        GLH (Amber) · GLUH GLUP (GROMACS / CHARMM)
LYS        LYN (Amber, neutral) · LSN (CHARMM) · LYSH LYSN (GROMACS)
ARG        ARGN (neutral)
MET        MSE (selenomethionine, as in crystal structures)
any above  Amber terminal residues: the name with an ``N`` or ``C`` prefix (NALA, CALA, NHIE, CCYX …)
=========  ==========================================================================================

Any other name is its own canonical residue (upper case, stripped), whose feature is ``OTHER``.
=======
:data:`FEATURE_SETS` names the choices of ``eghn-md train --features`` (:func:`feature_spec_for`): ``residue`` (the
default above), ``paper`` (the authors' protein node scalars: scaled charge here, |v| added by the model, edge
scalars [d, d²]), ``both`` and ``sequence`` (``residue`` plus the sequence-position block: a model of one
protein that knows which residue is which, e.g. the ``generative`` preset's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Protocol, Sequence

import numpy as np

from eghn_md.errors import DataError


class FeatureNodes(Protocol):
    """What the feature functions read of a node table (:class:`eghn_md.graph.nodes.NodeTable` is one; this module
    is the vocabulary below it, so it names the fields instead of importing the class)."""

    n_nodes: int
    level: str
    residue_type: Sequence[int]
    atom_type: Sequence[int]
    charge: Optional[Sequence[float]]
    resid: Sequence[int]
    segid: Sequence[str]

__all__ = [
    "RESIDUE_TYPES",
    "ATOM_TYPES",
    "FeatureSpec",
    "canonical_residue",
    "residue_type_index",
    "atom_type_index",
    "default_feature_spec",
    "node_features",
    "FEATURE_SETS",
    "feature_spec_for",
    "SEQUENCE_FREQUENCIES",
    "sequence_position",
]

#: ``eghn-md train --features`` choices
from eghn_md.choices import FEATURE_SETS  # noqa: E402  (one home, torch-free)

RESIDUE_TYPES: tuple[str, ...] = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
    "OTHER",
)  # fmt: skip
ATOM_TYPES: tuple[str, ...] = ("N", "CA", "C", "O", "CB", "OTHER")
#: frequencies k of the sequence-position block [sin(π k s), cos(π k s)] (s ∈ [0, 1] along the chain)
SEQUENCE_FREQUENCIES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)

_RESIDUE_INDEX = {name: i for i, name in enumerate(RESIDUE_TYPES[:-1])}
_RESIDUE_ALIASES = {
    "HSD": "HIS", "HSE": "HIS", "HSP": "HIS", "HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HISD": "HIS",
    "HISE": "HIS", "HISH": "HIS", "HISA": "HIS", "HISB": "HIS", "HIS1": "HIS", "HIS2": "HIS",
    "CYX": "CYS", "CYM": "CYS", "CYS2": "CYS", "CYS1": "CYS", "CYN": "CYS", "ASH": "ASP", "ASPH": "ASP",
    "ASPP": "ASP", "GLH": "GLU", "GLUH": "GLU", "GLUP": "GLU", "LYN": "LYS", "LSN": "LYS", "LYSH": "LYS",
    "LYSN": "LYS", "ARGN": "ARG", "MSE": "MET",
}  # fmt: skip
_ATOM_INDEX = {name: i for i, name in enumerate(ATOM_TYPES[:-1])}
_ATOM_ALIASES = {"OT1": "O", "OT2": "O", "OC1": "O", "OC2": "O", "OXT": "O", "O1": "O", "O2": "O"}


def canonical_residue(resname: str) -> str:
    """The canonical name of a residue spelling (see the table in the module docstring).

    Standard amino acids and their variants give one of :data:`RESIDUE_TYPES` (``'HSE'`` → ``'HIS'``,
    ``'NALA'`` → ``'ALA'``); anything else gives its own stripped upper-case name (``'SOL'`` → ``'SOL'``).
    """
    name = str(resname).strip().upper()
    name = _RESIDUE_ALIASES.get(name, name)
    if name not in _RESIDUE_INDEX and len(name) == 4 and name[0] in "NC":  # Amber termini: NALA, CLYS, NHIE …
        base = _RESIDUE_ALIASES.get(name[1:], name[1:])
        if base in _RESIDUE_INDEX:
            return base
    return name


def residue_type_index(resname: str) -> int:
    """Index of ``resname``'s canonical residue in :data:`RESIDUE_TYPES` (``OTHER`` = 20 if non-standard)."""
    return _RESIDUE_INDEX.get(canonical_residue(resname), len(RESIDUE_TYPES) - 1)


def atom_type_index(name: str) -> int:
    """Index of an atom name in :data:`ATOM_TYPES` (``OTHER`` = 5 for anything else)."""
    key = str(name).strip().upper()
    key = _ATOM_ALIASES.get(key, key)
    return _ATOM_INDEX.get(key, len(ATOM_TYPES) - 1)


@dataclass(frozen=True)
class FeatureSpec:
    """Which feature blocks :func:`node_features` concatenates (in this order: residue, atom, sequence, charge).

    Stored inside model checkpoints (``to_dict``/``from_dict``) so that features can be rebuilt for any topology.
    """

    residue: bool = True
    atom: bool = False
    charge: bool = False
    charge_norm: bool = False  #: divide the charge column by the largest |charge| of the nodes
    sequence: bool = False  #: the sequence-position block (module docstring)

    @property
    def n_features(self) -> int:
        return (len(RESIDUE_TYPES) * self.residue + len(ATOM_TYPES) * self.atom
                + 2 * len(SEQUENCE_FREQUENCIES) * self.sequence + int(self.charge))

    def names(self) -> list[str]:
        """One name per feature column, e.g. ``['res:ALA', …, 'atom:CA', …, 'charge']``."""
        out: list[str] = []
        if self.residue:
            out += [f"res:{r}" for r in RESIDUE_TYPES]
        if self.atom:
            out += [f"atom:{a}" for a in ATOM_TYPES]
        if self.sequence:
            out += [f"seq:{f}{k}" for k in SEQUENCE_FREQUENCIES for f in ("sin", "cos")]
        if self.charge:
            out.append("charge/max|charge|" if self.charge_norm else "charge")
        return out

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureSpec":
        valid = {"residue", "atom", "charge", "charge_norm", "sequence"}
        unknown = set(d) - valid
        if unknown:
            raise DataError(f"unknown feature spec keys {sorted(unknown)}; valid: {sorted(valid)}")
        return cls(**{k: bool(v) for k, v in d.items()})


def default_feature_spec(nodes: FeatureNodes, *, charge: bool = False) -> FeatureSpec:
    """Residue one-hot, plus the atom-name one-hot when nodes are atoms, plus charge if asked for."""
    return FeatureSpec(residue=True, atom=nodes.level == "atom", charge=charge)


def feature_spec_for(features: str, nodes: FeatureNodes, *, what: str = "the dataset") -> FeatureSpec:
    """The :class:`FeatureSpec` of an ``eghn-md train --features`` choice (see :data:`FEATURE_SETS`).

    Raises:
        DataError: ``paper``/``both`` on nodes without charges, naming ``what`` (e.g. the dataset file).
        ValueError: an unknown choice, naming the valid ones.
    """
    if features not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {features!r}; valid: {', '.join(FEATURE_SETS)}")
    if features in ("residue", "sequence"):
        return FeatureSpec(residue=True, atom=nodes.level == "atom", sequence=features == "sequence")
    if nodes.charge is None:
        raise DataError(f"{what} stores no charges, which `features` {features} needs; preprocess it from a topology "
                        "with charges (PSF, TPR, PRMTOP) or use `features` residue", params=("features",))
    if features == "paper":
        return FeatureSpec(residue=False, atom=False, charge=True, charge_norm=True)
    return FeatureSpec(residue=True, atom=nodes.level == "atom", charge=True, charge_norm=True)


def node_features(nodes: FeatureNodes, spec: FeatureSpec | None = None) -> np.ndarray:
    """Node scalars h of shape ``(n_nodes, spec.n_features)``, float32, from metadata only.

    Args:
        nodes: node metadata (residue names, atom names, charges).
        spec: feature blocks; default :func:`default_feature_spec` (no charge).

    Raises:
        DataError: ``spec.charge`` is set but the nodes carry no charges (the topology had none).
    """
    spec = default_feature_spec(nodes) if spec is None else spec
    n = nodes.n_nodes
    blocks: list[np.ndarray] = []
    if spec.residue:
        blocks.append(_one_hot(nodes.residue_type, len(RESIDUE_TYPES)))
    if spec.atom:
        blocks.append(_one_hot(nodes.atom_type, len(ATOM_TYPES)))
    if spec.sequence:
        blocks.append(_sequence_block(sequence_position(nodes)))
    if spec.charge:
        if nodes.charge is None:
            raise DataError("charge features requested but the topology has no charges (use a PSF/TPR/PRMTOP topology)")
        q = np.asarray(nodes.charge, dtype=np.float64).reshape(n, 1)
        if spec.charge_norm:
            top = float(np.abs(q).max()) if n else 0.0
            if not top > 0:
                raise DataError("charge/max|charge| requested but every node has charge 0")
            q = q / top
        blocks.append(q.astype(np.float32))
    if not blocks:
        return np.zeros((n, 0), dtype=np.float32)
    return np.concatenate(blocks, axis=1).astype(np.float32, copy=False)


def sequence_position(nodes: FeatureNodes) -> np.ndarray:
    """s (n_nodes,) float64 ∈ [0, 1]: the ordinal of each node's residue (a new residue wherever segment id or
    residue number changes from one node to the next) over the number of residues − 1 (0 for a single residue)."""
    resid, segid = np.asarray(nodes.resid), np.asarray(nodes.segid)
    if len(resid) == 0:
        return np.zeros(0)
    new = np.ones(len(resid), dtype=bool)
    new[1:] = (resid[1:] != resid[:-1]) | (segid[1:] != segid[:-1])
    ordinal = np.cumsum(new) - 1
    return ordinal / max(int(ordinal[-1]), 1)


def _sequence_block(s: np.ndarray) -> np.ndarray:
    """[sin(π k s), cos(π k s)] for k in :data:`SEQUENCE_FREQUENCIES`: (len(s), 14) float32."""
    a = np.pi * s[:, None] * np.asarray(SEQUENCE_FREQUENCIES, dtype=np.float64)[None, :]
    return np.stack([np.sin(a), np.cos(a)], axis=2).reshape(len(s), -1).astype(np.float32)


def _one_hot(index: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((len(index), size), dtype=np.float32)
    out[np.arange(len(index)), np.asarray(index, dtype=np.int64)] = 1.0
    return out
