"""Equivariant building blocks: scatter helpers, MLPs, EMMP, EGNN layer, E-Pool, E-UpPool."""

from eghn_md.nn.egnn import EGNNLayer
from eghn_md.nn.emmp import EMMP
from eghn_md.nn.mlp import MLP, PairLinear
from eghn_md.nn.pool import AssignHead, cluster_adjacency, complete_graph, pool_mean, pooling_regulariser, unpool
from eghn_md.nn.uppool import VectorDecoder

__all__ = [
    "MLP",
    "PairLinear",
    "EMMP",
    "EGNNLayer",
    "AssignHead",
    "pool_mean",
    "unpool",
    "cluster_adjacency",
    "pooling_regulariser",
    "complete_graph",
    "VectorDecoder",
]
