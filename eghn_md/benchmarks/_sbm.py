"""The dual-basin Cα structure-based model (SBM) of adenylate kinase: its terms and its OpenMM ``System``.

One Hamiltonian whose native contacts are the union of two structures' contact maps, with Gaussian contact wells
(Lammert, Schug & Onuchic, *Proteins* 77, 881 (2009), "Robustness and generality of structure-based models for
protein dual-basin dynamics"; single-basin Gaussian contacts: Noel, Whitford & Onuchic, *J. Phys. Chem. B* 116,
8692 (2012); AdK dual-basin with weakened closed-only contacts: Whitford, Miyashita, Levy & Onuchic, *J. Mol.
Biol.* 366, 1661 (2007)). Distances r in Å, angles in rad, energies in kJ/mol:

* **Bonds** i, i+1: rigid, held by constraints at the mean of the two structures' Cα–Cα lengths (they differ by
  at most 0.06 Å). No energy term.
* **Angles** i, i+1, i+2: ``½ k_θ (θ − θ̄)²``, θ̄ the mean of the two structures' angles (they differ by <= 26°).
* **Dihedrals** i … i+3, both structures at half strength (Lammert 2009):
  ``Σ_{s ∈ {closed, open}} ½ [k₁ (1 − cos(φ − φ_s)) + k₃ (1 − cos 3(φ − φ_s))]``.
* **Contacts**: residue pairs with |i − j| >= 4 having heavy atoms within ``contact_cutoff`` in either structure.
  ``V = (ε_ij + A (r_ex,ij / r)¹²) (1 − G_c(r)) (1 − G_o(r)) − ε_ij`` with ``G_s(r) = w_s exp(−(r − r_s)² / 2σ²)``,
  r_s the pair's Cα distance in structure s. A contact is *specific* to s (w_s = 1, w_other = 0) when it is in s's
  map only and its Cα distance in the other structure is longer by more than ``specific_margin`` (3σ: the well
  of s is empty there); every other contact is *shared*, a double well at both distances (w_c = w_o = 1, Lammert
  2009 eq. 2): about half the pairs in one heavy-atom map only keep their Cα distance in the other structure
  (side chains rearrange, the backbone does not), and a single well would strain the other basin.
  ε_ij = ``eps_contact`` for shared contacts, ``eps_closed`` / ``eps_open`` for closed- / open-specific ones
  (Whitford 2007 tunes their ratio to set the populations). ``r_ex,ij = min(r_ex, min_s r_s)``: the wall acts
  only where (1 − G_c)(1 − G_o) > 0, i.e. off the wells.
* **Excluded volume**: every other pair with |i − j| >= 3: ``A ((r_ex / r)¹² − (r_ex / r_cut)¹²)`` for r < r_cut.

Energies are in kJ/mol and the temperature in K, so ``k_B T / ε`` is the reduced temperature of the SBM
literature. Time is the coarse-grained model's time: OpenMM's ps with uniform Cα masses, not the ps of an all-atom
simulation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["STRUCTURE_NAMES", "SbmParameters", "SbmTerms", "build_system", "build_terms"]

STRUCTURE_NAMES = ("closed", "open")
_NM = 0.1  # Å → nm


@dataclass(frozen=True, kw_only=True)
class SbmParameters:
    """Force-field constants of the dual-basin model (energies kJ/mol, lengths Å)."""

    eps_contact: float = 2.0  #: ε of shared contacts [kJ/mol]
    eps_closed: float = 2.1  #: ε of closed-specific contacts [kJ/mol]
    eps_open: float = 3.0  #: ε of open-specific contacts [kJ/mol]
    k_angle: float = 80.0  #: k_θ [kJ/mol/rad²]
    k_dihedral_1: float = 2.0  #: k₁ [kJ/mol], per structure before the ½
    k_dihedral_3: float = 1.0  #: k₃ [kJ/mol]
    gaussian_width: float = 0.5  #: σ of the contact wells [Å]
    repulsion: float = 5.0  #: A [kJ/mol]
    excluded_radius: float = 4.0  #: r_ex [Å]
    repulsion_cutoff: float = 6.0  #: r_cut of the excluded volume [Å]
    contact_cutoff: float = 4.5  #: heavy-atom distance that makes a contact [Å]
    specific_margin: float = 1.5  #: how much longer a contact's Cα distance in the other structure must be [Å]
    mass: float = 100.0  #: every Cα's mass [Da]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SbmTerms:
    """The model's interaction lists, built from the two structures (indices 0-based, lengths Å, angles rad).

    Shapes: ``bonds (B, 2)``, ``bond_length (B,)`` [Å]; ``angles (A, 3)``, ``theta0 (A,)`` [rad];
    ``dihedrals (D, 4)``, ``phi0 (D, 2)`` [rad] (closed, open); ``contacts (C, 2)``, ``contact_r0 (C, 2)`` [Å],
    ``contact_on (C, 2)`` bool, ``contact_eps (C,)`` [kJ/mol], ``contact_rex (C,)`` [Å]; ``exclusions (E, 2)``:
    the pairs the excluded-volume force skips (|i − j| < 3 and the contacts)."""

    n: int
    bonds: np.ndarray
    bond_length: np.ndarray
    angles: np.ndarray
    theta0: np.ndarray
    dihedrals: np.ndarray
    phi0: np.ndarray
    contacts: np.ndarray
    contact_r0: np.ndarray
    contact_on: np.ndarray
    contact_eps: np.ndarray
    contact_rex: np.ndarray
    exclusions: np.ndarray

    def counts(self) -> dict[str, int]:
        on = self.contact_on
        both, closed, opened = on[:, 0] & on[:, 1], on[:, 0] & ~on[:, 1], ~on[:, 0] & on[:, 1]
        return {"bonds": len(self.bonds), "angles": len(self.angles), "dihedrals": len(self.dihedrals),
                "contacts_shared": int(both.sum()), "contacts_closed_specific": int(closed.sum()),
                "contacts_open_specific": int(opened.sum())}


def _angles(x: np.ndarray) -> np.ndarray:
    from MDAnalysis.lib.distances import calc_angles

    return calc_angles(x[:-2], x[1:-1], x[2:]).astype(np.float64)


def _dihedrals(x: np.ndarray) -> np.ndarray:
    from MDAnalysis.lib.distances import calc_dihedrals

    return calc_dihedrals(x[:-3], x[1:-2], x[2:-1], x[3:]).astype(np.float64)


def _mean_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * a) + np.exp(1j * b))


def _contacts(xc: np.ndarray, xo: np.ndarray, maps: dict[str, np.ndarray], margin: float):
    """Contact pairs (C, 2), their Cα distances (C, 2) [Å] in (closed, open) and which wells they have (C, 2)."""
    i, j = np.triu_indices(len(xc), 4)
    in_c, in_o = maps["closed"][i, j], maps["open"][i, j]
    keep = in_c | in_o
    contacts = np.stack([i[keep], j[keep]], axis=1)
    r0 = np.stack([np.linalg.norm(x[contacts[:, 0]] - x[contacts[:, 1]], axis=1) for x in (xc, xo)], axis=1)
    closed_only = in_c[keep] & ~in_o[keep] & (r0[:, 1] - r0[:, 0] > margin)
    open_only = in_o[keep] & ~in_c[keep] & (r0[:, 0] - r0[:, 1] > margin)
    return contacts, r0, np.stack([~open_only, ~closed_only], axis=1)


def build_terms(ca: dict[str, np.ndarray], contact_maps: dict[str, np.ndarray], params: SbmParameters) -> SbmTerms:
    """The interaction lists of the dual-basin model.

    Args:
        ca: ``{"closed": (n, 3), "open": (n, 3)}`` Cα positions [Å] of the two structures, same residue order.
        contact_maps: ``{"closed": (n, n), "open": (n, n)}`` bool, residues with heavy atoms within
            ``params.contact_cutoff`` (|i − j| >= 4 and the shared / specific split are applied here).
        params: the force-field constants.
    """
    xc, xo = (np.asarray(ca[s], dtype=np.float64) for s in STRUCTURE_NAMES)
    n = len(xc)
    idx = np.arange(n)
    bonds = np.stack([idx[:-1], idx[1:]], axis=1)
    bond_length = 0.5 * (np.linalg.norm(np.diff(xc, axis=0), axis=1) + np.linalg.norm(np.diff(xo, axis=0), axis=1))
    angles = np.stack([idx[:-2], idx[1:-1], idx[2:]], axis=1)
    theta0 = 0.5 * (_angles(xc) + _angles(xo))
    dihedrals = np.stack([idx[:-3], idx[1:-2], idx[2:-1], idx[3:]], axis=1)
    phi0 = np.stack([_dihedrals(xc), _dihedrals(xo)], axis=1)
    contacts, r0, on = _contacts(xc, xo, contact_maps, params.specific_margin)
    eps = np.where(on[:, 0] & on[:, 1], params.eps_contact, np.where(on[:, 0], params.eps_closed, params.eps_open))
    r_min = np.where(on, r0, np.inf).min(axis=1)
    rex = np.minimum(params.excluded_radius, r_min)
    near = np.stack(np.triu_indices(n, 1), axis=1)
    near = near[near[:, 1] - near[:, 0] < 3]
    exclusions = np.concatenate([near, contacts])
    return SbmTerms(n=n, bonds=bonds, bond_length=bond_length, angles=angles, theta0=theta0, dihedrals=dihedrals,
                    phi0=phi0, contacts=contacts, contact_r0=r0, contact_on=on, contact_eps=eps, contact_rex=rex,
                    exclusions=exclusions)


CONTACT_ENERGY = ("(eps + A*(rex/r)^12)*(1 - wc*exp(-(r-rc)^2/(2*s^2)))*(1 - wo*exp(-(r-ro)^2/(2*s^2))) - eps")
DIHEDRAL_ENERGY = ("0.5*(k1*(2 - cos(theta-pc) - cos(theta-po)) + k3*(2 - cos(3*(theta-pc)) - cos(3*(theta-po))))")
REPULSION_ENERGY = "A*((rex/r)^12 - (rex/rcut)^12)"


def build_system(terms: SbmTerms, params: SbmParameters):
    """The OpenMM ``System`` (nm, kJ/mol): constraints, angle, dihedral, contact and excluded-volume forces."""
    import openmm as mm

    system = mm.System()
    for _ in range(terms.n):
        system.addParticle(params.mass)
    for (a, b), d in zip(terms.bonds, terms.bond_length, strict=True):
        system.addConstraint(int(a), int(b), float(d) * _NM)
    system.addForce(_angle_force(terms, params))
    system.addForce(_dihedral_force(terms, params))
    system.addForce(_contact_force(terms, params))
    system.addForce(_repulsion_force(terms, params))
    for k, f in enumerate(system.getForces()):
        f.setForceGroup(k)
    return system


def _angle_force(terms: SbmTerms, params: SbmParameters):
    import openmm as mm

    f = mm.CustomAngleForce("0.5*k*(theta-theta0)^2")
    f.addGlobalParameter("k", params.k_angle)
    f.addPerAngleParameter("theta0")
    for (a, b, c), t in zip(terms.angles, terms.theta0, strict=True):
        f.addAngle(int(a), int(b), int(c), [float(t)])
    return f


def _dihedral_force(terms: SbmTerms, params: SbmParameters):
    import openmm as mm

    f = mm.CustomTorsionForce(DIHEDRAL_ENERGY)
    f.addGlobalParameter("k1", params.k_dihedral_1)
    f.addGlobalParameter("k3", params.k_dihedral_3)
    f.addPerTorsionParameter("pc")
    f.addPerTorsionParameter("po")
    for (a, b, c, d), (pc, po) in zip(terms.dihedrals, terms.phi0, strict=True):
        f.addTorsion(int(a), int(b), int(c), int(d), [float(pc), float(po)])
    return f


def _contact_force(terms: SbmTerms, params: SbmParameters):
    import openmm as mm

    f = mm.CustomBondForce(CONTACT_ENERGY)
    f.addGlobalParameter("A", params.repulsion)
    f.addGlobalParameter("s", params.gaussian_width * _NM)
    for name in ("eps", "rex", "rc", "ro", "wc", "wo"):
        f.addPerBondParameter(name)
    for (a, b), (rc, ro), (wc, wo), e, rex in zip(terms.contacts, terms.contact_r0, terms.contact_on,
                                                  terms.contact_eps, terms.contact_rex, strict=True):
        f.addBond(int(a), int(b), [float(e), float(rex) * _NM, float(rc) * _NM, float(ro) * _NM, float(wc), float(wo)])
    return f


def _repulsion_force(terms: SbmTerms, params: SbmParameters):
    import openmm as mm

    f = mm.CustomNonbondedForce(REPULSION_ENERGY)
    f.addGlobalParameter("A", params.repulsion)
    f.addGlobalParameter("rex", params.excluded_radius * _NM)
    f.addGlobalParameter("rcut", params.repulsion_cutoff * _NM)
    f.setNonbondedMethod(mm.CustomNonbondedForce.CutoffNonPeriodic)
    f.setCutoffDistance(params.repulsion_cutoff * _NM)
    f.setUseSwitchingFunction(False)
    f.setUseLongRangeCorrection(False)
    for _ in range(terms.n):
        f.addParticle([])
    for a, b in terms.exclusions:
        f.addExclusion(int(a), int(b))
    return f
