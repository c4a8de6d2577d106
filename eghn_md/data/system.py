"""A molecular system as the models see it: node scalars, bond graph and the metadata saved in checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from eghn_md.errors import DataError
from eghn_md.graph.features import FeatureSpec, default_feature_spec, node_features
from eghn_md.graph.nodes import NodeTable

__all__ = ["GraphSystem", "check_same_nodes", "select_model_nodes"]


@dataclass
class GraphSystem:
    """Node-level description of one system.

    Attributes:
        nodes: node metadata (residue names/ids, atom names, bonds).
        spec: which feature blocks make up ``h``.
        h: (N, F) float32 node scalars.
        bonds: (2, 2·n_bonds) long, both directions of every bond (local graph).
        selection: the MDAnalysis selection that produced the nodes.
    """

    nodes: NodeTable
    spec: FeatureSpec
    h: Tensor
    bonds: Tensor
    selection: str

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


def check_same_nodes(expected: dict, nodes: NodeTable, *, what: str) -> None:
    """Raise :class:`DataError` naming the first difference between a model's nodes and those of ``what``.

    Args:
        expected: ``GraphSystem.metadata()`` of the model's training system.
        nodes: the nodes selected from the data the model is applied to.
        what: description of that data for the message (file name, selection).
    """
    exp_names = list(expected.get("resname", []))
    sel = expected.get("selection", "?")
    if len(exp_names) != nodes.n_nodes:
        raise DataError(
            f"{what} has {nodes.n_nodes} nodes but the model was trained on {len(exp_names)} nodes "
            f"(selection {sel!r}); use the same topology and selection"
        )
    got = [str(x) for x in nodes.resname]
    for i, (a, b) in enumerate(zip(exp_names, got)):
        if a != b:
            raise DataError(
                f"{what}: node {i} (resid {int(nodes.resid[i])}) is residue {b!r} but the model expects {a!r} "
                f"(resid {expected['resid'][i]}); the topology does not match the model's system"
            )
    exp_atoms = expected.get("name")
    if exp_atoms is not None:
        for i, (a, b) in enumerate(zip(exp_atoms, [str(x) for x in nodes.name])):
            if a != b:
                raise DataError(
                    f"{what}: node {i} is atom {b!r} but the model expects {a!r} (selection {sel!r})"
                )


def select_model_nodes(system, model_nodes: dict, *, what: str):
    """Select a model's nodes in an opened topology and check they match the model's training system.

    Args:
        system: an :class:`eghn_md.io.readers.System`.
        model_nodes: ``GraphSystem.metadata()`` stored in the checkpoint (selection, residues, feature spec).
        what: description of the topology for error messages.

    Returns:
        ``(atoms, graph_system)``: the MDAnalysis AtomGroup of the nodes and their :class:`GraphSystem`.
    """
    from eghn_md.graph.nodes import node_table

    atoms = system.select(model_nodes["selection"])
    nodes = node_table(atoms)
    check_same_nodes(model_nodes, nodes, what=what)
    gs = GraphSystem.from_nodes(nodes, selection=model_nodes["selection"],
                                spec=FeatureSpec.from_dict(model_nodes["feature_spec"]))
    return atoms, gs
