"""The two crystal structures of adenylate kinase in MDAnalysisTests: closed 1AKE (``adk_closed.pdb``) and open
4AKE (``adk_open.pdb``), 214 residues each, same sequence; their Cα positions and heavy-atom contact maps."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from eghn_md.errors import DataError

__all__ = ["DATAFILES", "AdkStructures", "load_adk_structures"]

#: MDAnalysisTests.datafiles names of the two structures
DATAFILES = {"closed": "PDB_closed", "open": "PDB_small"}


@dataclass(frozen=True)
class AdkStructures:
    """Cα positions ``ca[s]``: (n, 3) [Å], the heavy-atom contact maps ``contacts[s]``: (n, n) bool, and
    ``resnames``: (n,) str, for s in ("closed", "open"); ``paths``: the PDB files read."""

    ca: dict
    contacts: dict
    resnames: np.ndarray
    paths: dict


def _residue_contacts(atoms, cutoff: float) -> np.ndarray:
    """(n_res, n_res) bool: some heavy atoms of the two residues closer than ``cutoff`` [Å]."""
    from MDAnalysis.lib.distances import self_capped_distance

    heavy = atoms.select_atoms("not name H*")
    res = heavy.resindices - heavy.resindices.min()
    n = int(res.max()) + 1
    pairs = self_capped_distance(heavy.positions, max_cutoff=cutoff, return_distances=False)
    out = np.zeros((n, n), dtype=bool)
    out[res[pairs[:, 0]], res[pairs[:, 1]]] = True
    return out | out.T


def load_adk_structures(*, contact_cutoff: float = 4.5) -> AdkStructures:
    """Read both structures from MDAnalysisTests (needs the ``MDAnalysisTests`` package: extra ``[test]``)."""
    import MDAnalysis as mda

    try:
        from MDAnalysisTests import datafiles
    except ImportError:
        raise DataError("the AdK crystal structures come from MDAnalysisTests: pip install MDAnalysisTests") from None
    ca, contacts, names, paths = {}, {}, {}, {}
    for state, key in DATAFILES.items():
        paths[state] = str(getattr(datafiles, key))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # missing element records
            u = mda.Universe(paths[state])
        sel = u.select_atoms("protein and name CA")
        ca[state] = sel.positions.astype(np.float64)
        names[state] = np.asarray(sel.resnames)
        contacts[state] = _residue_contacts(u.select_atoms("protein"), contact_cutoff)
    if len(ca["closed"]) != len(ca["open"]) or (names["closed"] != names["open"]).any():
        raise DataError(f"{paths['closed']} and {paths['open']} do not have the same residues")
    return AdkStructures(ca=ca, contacts=contacts, resnames=names["closed"], paths=paths)
