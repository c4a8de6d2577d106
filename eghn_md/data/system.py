"""A molecular system as the models see it: node scalars, bond graph and the metadata saved in checkpoints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from eghn_md.errors import DataError
from eghn_md.graph.features import FeatureSpec, canonical_residue, default_feature_spec, node_features
from eghn_md.graph.nodes import NodeTable

__all__ = ["GraphSystem", "check_same_nodes", "select_model_nodes", "with_model_bonds"]


@dataclass
class GraphSystem:
    """Node-level description of one system.

    Attributes:
        nodes: node metadata (residue names/ids, atom names, bonds).
        spec: which feature blocks make up ``h``.
        h: (N, F) float32 node scalars.
        bonds: (2, 2·n_bonds) long, both directions of every bond (local graph).
        selection: the MDAnalysis selection that produced the nodes.
        notes: one-line remarks for summaries (e.g. residue names that differ from a model's only in spelling).
    """

    nodes: NodeTable
    spec: FeatureSpec
    h: Tensor
    bonds: Tensor
    selection: str
    notes: list = field(default_factory=list)

    @classmethod
    def from_nodes(cls, nodes: NodeTable, *, selection: str, spec: Optional[FeatureSpec] = None) -> "GraphSystem":
        spec = default_feature_spec(nodes) if spec is None else spec
        h = torch.from_numpy(node_features(nodes, spec))
        b = torch.as_tensor(np.asarray(nodes.bonds, dtype=np.int64).reshape(-1, 2)).T
        bonds = torch.cat([b, b.flip(0)], dim=1) if b.numel() else torch.zeros((2, 0), dtype=torch.long)
        return cls(nodes=nodes, spec=spec, h=h, bonds=bonds.contiguous(), selection=selection)

    @property
    def n_nodes(self) -> int:
        return self.nodes.n_nodes

    @property
    def nodes_are_atoms(self) -> bool:
        return self.nodes.level == "atom"

    def metadata(self) -> dict:
        """Plain-data description stored in checkpoints (enough to check a topology against the model)."""
        n = self.nodes
        return {
            "selection": self.selection,
            "level": n.level,
            "resname": [str(x) for x in n.resname],
            "resid": [int(x) for x in n.resid],
            "segid": [str(x) for x in n.segid],
            "chain": [str(x) for x in n.chain],
            "name": [str(x) for x in n.name],
            "feature_spec": self.spec.to_dict(),
            "bonds": np.asarray(n.bonds, dtype=np.int64).reshape(-1, 2).tolist(),
        }


def check_same_nodes(expected: dict, nodes: NodeTable, *, what: str) -> Optional[str]:
    """Check that ``what`` holds a model's nodes; residues are compared by canonical type, not spelling.

    Args:
        expected: ``GraphSystem.metadata()`` of the model's training system.
        nodes: the nodes selected from the data the model is applied to.
        what: description of that data for the message (file name, selection).

    Returns:
        ``None``, or a one-line note when some residue names differ only in spelling (``HSE`` for ``HSD``: both
        :func:`~eghn_md.graph.features.canonical_residue` ``HIS``).

    Raises:
        DataError: naming the first node whose residue (canonical type) or atom differs.
    """
    exp_names = [str(x) for x in expected.get("resname", [])]
    sel = expected.get("selection", "?")
    if len(exp_names) != nodes.n_nodes:
        raise DataError(
            f"{what} has {nodes.n_nodes} nodes but the model was trained on {len(exp_names)} nodes "
            f"(selection {sel!r}); use the same topology and selection"
        )
    got = [str(x) for x in nodes.resname]
    spelled = []
    for i, (a, b) in enumerate(zip(exp_names, got, strict=True)):
        if a == b:
            continue
        if canonical_residue(a) != canonical_residue(b):
            raise DataError(
                f"{what}: node {i} (resid {int(nodes.resid[i])}) is residue {b!r} ({canonical_residue(b)}) but the "
                f"model expects {a!r} ({canonical_residue(a)}, resid {expected['resid'][i]}); the sequence differs "
                "from the model's system"
            )
        spelled.append(i)
    exp_atoms = expected.get("name")
    if exp_atoms is not None:
        for i, (a, b) in enumerate(zip(exp_atoms, [str(x) for x in nodes.name], strict=True)):
            if a != b:
                raise DataError(
                    f"{what}: node {i} is atom {b!r} but the model expects {a!r} (selection {sel!r})"
                )
    if not spelled:
        return None
    i = spelled[0]
    return (f"{what}: {len(spelled)} residue name(s) differ from the model's only in spelling (first: node {i}, "
            f"resid {int(nodes.resid[i])}, {got[i]!r} for {exp_names[i]!r}, both {canonical_residue(got[i])}); "
            "treated as the same residues")


def with_model_bonds(nodes: NodeTable, model_nodes: dict) -> NodeTable:
    """``nodes`` with the bond list stored in a model's checkpoint (the graph it was trained on, built by the chain
    model of :mod:`eghn_md.graph.chains` from its training data); unchanged when the checkpoint stores none."""
    if "bonds" not in model_nodes:
        return nodes
    bonds = np.asarray(model_nodes["bonds"], dtype=np.int64).reshape(-1, 2)
    return dataclasses.replace(nodes, bonds=bonds, _cache={})


def select_model_nodes(system, model_nodes: dict, *, what: str):
    """Select a model's nodes in an opened topology and check they match the model's training system.

    Args:
        system: an :class:`eghn_md.io.readers.System`.
        model_nodes: ``GraphSystem.metadata()`` stored in the checkpoint (selection, residues, feature spec, bonds).
        what: description of the topology for error messages.

    Returns:
        ``(atoms, graph_system)``: the MDAnalysis AtomGroup of the nodes and their :class:`GraphSystem`, whose bonds
        are the model's stored bonds and whose ``notes`` hold a residue-spelling note, if any.
    """
    from eghn_md.graph.nodes import node_table

    atoms = system.select(model_nodes["selection"])
    nodes = node_table(atoms)
    note = check_same_nodes(model_nodes, nodes, what=what)
    gs = GraphSystem.from_nodes(with_model_bonds(nodes, model_nodes), selection=model_nodes["selection"],
                                spec=FeatureSpec.from_dict(model_nodes["feature_spec"]))
    gs.notes += [note] if note else []
    return atoms, gs
