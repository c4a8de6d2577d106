"""Load weights trained with the authors' EGHN code (hanjq17/EGHN, ``model/eghn.py``) into ``eghn-published``.

``from_authors_state_dict(state_dict, authors_config)`` returns an :class:`~eghn_md.models.eghn.PublishedEGHN`
that computes the same function as the authors' model: same positions, soft assignment, regulariser and decoder node
scalars (checked to ≤ 1e-9 in float64 by ``tests/test_models_convert.py`` against outputs of their
code). Their model takes raw Å inputs, so the returned model has ``length_scale = vel_scale = disp_scale = 1``, reads
the node and edge scalars from the batch as they are (``speed_feature=False``, ``edge_features="data"``) and feeds
the global edge scalars of each bond to the pooling network (their ``local_edge_fea``; pass bonds that are global
edges too, with the same scalars).

Name mapping (authors → ours; ``L``: a layer index; ``mlp.0``/``mlp.2`` are their two linear maps):

=================================================================  ===============================================
``embedding``                                                      ``embed``
``{low,high}_force_net.embedding``                                 ``{low,high}_embed``
``{low,high}_force_net.layers.L.edge_message_net.scalar_net.mlp.0``  ``{low,high}.L.edge_mlp.first`` (split by input
                                                                   block: [d², h_i, h_j, e] → node rows i, j; edge)
``… .scalar_net.mlp.2``                                            ``{low,high}.L.edge_mlp.second``
``… .coord_net.mlp.0 / .2``                                        ``{low,high}.L.coord1 / coord2``
``… .node_net.mlp.0 / .2``, ``… .node_v_net.mlp.0 / .2``           ``{low,high}.L.node.layers.0 / 1``,
                                                                   ``{low,high}.L.vel.layers.0 / 1``
``low_pooling.layers.L.edge_message_net.in_scalar_net.mlp.0``      ``pool_net.L.edge_mlp.first`` ([Z_jᵀZ_i (9), h_i,
                                                                   h_j, e] split likewise)
``… .in_scalar_net.mlp.2``, ``… .out_vector_net.mlp.0 / .2``       ``pool_net.L.edge_mlp.second``,
                                                                   ``pool_net.L.coef.layers.0 / 1``
``low_pooling.layers.L.node_net.mlp.0 / .2``                       ``pool_net.L.node.layers.0 / 1``
``low_pooling.pooling.0 / .2``                                     ``assign.mlp.layers.0 / 1``
``kinematics_net[.layers.L].{in_scalar,out_vector,out_scalar}_net``  ``decoder.layers.L.{inp,vec,out}``
=================================================================  ===============================================

Every parameter of theirs is used exactly once and every one of ours is filled; anything else raises.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from eghn_md.errors import UsageError
from eghn_md.models.config import ModelConfig

__all__ = ["authors_model_config", "convert_authors_state_dict", "from_authors_state_dict"]

_SUPPORTED = {"flat": False, "norm": False, "with_v": True, "activation": "SiLU"}


def authors_model_config(authors_config: Mapping[str, Any]) -> ModelConfig:
    """The ``eghn-published`` :class:`ModelConfig` of the authors' ``EGHN(**authors_config)`` constructor arguments.

    Raises:
        UsageError: a missing size argument, or an option whose model we do not implement (``flat``, ``norm``,
            ``with_v=False``, another activation), naming the value and the supported one.
    """
    need = ("in_node_nf", "in_edge_nf", "hidden_nf", "n_cluster", "layer_per_block", "layer_pooling", "layer_decoder")
    missing = [k for k in need if k not in authors_config]
    if missing:
        raise UsageError(f"authors' config lacks {', '.join(missing)}; needed: {', '.join(need)}")
    for key, want in _SUPPORTED.items():
        got = authors_config.get(key, want)
        if got != want:
            raise UsageError(f"authors' config {key}={got!r} is not supported; "
                             f"eghn-published implements {key}={want!r}")
    a = authors_config
    return ModelConfig(name="eghn-published", node_in=int(a["in_node_nf"]), edge_in=int(a["in_edge_nf"]),
                       hidden=int(a["hidden_nf"]), n_layers=int(a["layer_per_block"]),
                       n_pool_layers=int(a["layer_pooling"]), n_decoder_layers=int(a["layer_decoder"]),
                       n_clusters=int(a["n_cluster"]))


def _mlp(out: dict, src: dict, theirs: str, ours: str) -> None:
    """A two-linear BaseMLP (``mlp.0``, ``mlp.2``) → our MLP (``layers.0``, ``layers.1``)."""
    for k_t, k_o in (("mlp.0", "layers.0"), ("mlp.2", "layers.1")):
        for p in ("weight", "bias"):
            out[f"{ours}.{k_o}.{p}"] = src.pop(f"{theirs}.{k_t}.{p}")


def _linear(out: dict, src: dict, theirs: str, ours: str) -> None:
    for p in ("weight", "bias"):
        out[f"{ours}.{p}"] = src.pop(f"{theirs}.{p}")


def _edge_first(out: dict, src: dict, theirs: str, ours: str, *, n_inv: int, hidden: int) -> None:
    """Their first edge layer on [inv (n_inv), h_i, h_j, e] → our PairLinear (node rows [W_i; W_j], edge [inv, e])."""
    W, b = src.pop(f"{theirs}.weight"), src.pop(f"{theirs}.bias")
    H = hidden
    out[f"{ours}.node.weight"] = torch.cat([W[:, n_inv:n_inv + H], W[:, n_inv + H:n_inv + 2 * H]], dim=0)
    out[f"{ours}.edge.weight"] = torch.cat([W[:, :n_inv], W[:, n_inv + 2 * H:]], dim=1)
    out[f"{ours}.bias"] = b


def _egnn(out: dict, src: dict, theirs: str, ours: str, n_layers: int, hidden: int) -> None:
    """Their EGNN (embedding + layers) → our ``{ours}_embed`` and ``{ours}.L`` EGNN layers."""
    _linear(out, src, f"{theirs}.embedding", f"{ours}_embed")
    for k in range(n_layers):
        t, o = f"{theirs}.layers.{k}", f"{ours}.{k}"
        _edge_first(out, src, f"{t}.edge_message_net.scalar_net.mlp.0", f"{o}.edge_mlp.first", n_inv=1, hidden=hidden)
        _linear(out, src, f"{t}.edge_message_net.scalar_net.mlp.2", f"{o}.edge_mlp.second")
        _linear(out, src, f"{t}.coord_net.mlp.0", f"{o}.coord1")
        _linear(out, src, f"{t}.coord_net.mlp.2", f"{o}.coord2")
        _mlp(out, src, f"{t}.node_net", f"{o}.node")
        _mlp(out, src, f"{t}.node_v_net", f"{o}.vel")


def convert_authors_state_dict(state_dict: Mapping[str, Any], config: ModelConfig) -> dict[str, Tensor]:
    """Our ``eghn-published`` state_dict from the authors' (tensors or NumPy arrays, under their names).

    Raises:
        UsageError: a parameter of theirs is missing, or left over (a different architecture).
    """
    src = {k: torch.as_tensor(np.asarray(v) if not isinstance(v, Tensor) else v) for k, v in state_dict.items()}
    out: dict[str, Tensor] = {}
    H = config.hidden
    try:
        _linear(out, src, "embedding", "embed")
        _egnn(out, src, "low_force_net", "low", config.n_layers, H)
        _egnn(out, src, "high_force_net", "high", config.n_layers, H)
        for k in range(config.n_pool_layers):
            t, o = f"low_pooling.layers.{k}", f"pool_net.{k}"
            _edge_first(out, src, f"{t}.edge_message_net.in_scalar_net.mlp.0", f"{o}.edge_mlp.first", n_inv=9,
                        hidden=H)
            _linear(out, src, f"{t}.edge_message_net.in_scalar_net.mlp.2", f"{o}.edge_mlp.second")
            _mlp(out, src, f"{t}.edge_message_net.out_vector_net", f"{o}.coef")
            _mlp(out, src, f"{t}.node_net", f"{o}.node")
        _linear(out, src, "low_pooling.pooling.0", "assign.mlp.layers.0")
        _linear(out, src, "low_pooling.pooling.2", "assign.mlp.layers.1")
        for k in range(config.n_decoder_layers):
            t = "kinematics_net" if config.n_decoder_layers == 1 else f"kinematics_net.layers.{k}"
            for theirs, ours in (("in_scalar_net", "inp"), ("out_vector_net", "vec"), ("out_scalar_net", "out")):
                _mlp(out, src, f"{t}.{theirs}", f"decoder.layers.{k}.{ours}")
    except KeyError as exc:
        raise UsageError(f"authors' state_dict lacks {exc.args[0]!r} (does it match the config {config}?)") from None
    if src:
        raise UsageError(f"authors' state_dict has {len(src)} parameter(s) this config does not use, e.g. "
                         f"{sorted(src)[0]!r}; check the layer counts")
    return out


def from_authors_state_dict(state_dict: Mapping[str, Any], authors_config: Mapping[str, Any]):
    """An ``eghn-published`` model (float64 if their parameters are) holding the authors' trained weights.

    Args:
        state_dict: their ``model.state_dict()`` (tensors or NumPy arrays under their names).
        authors_config: their ``EGHN`` constructor arguments (``in_node_nf``, ``hidden_nf``, ``n_cluster``, …).
    """
    from eghn_md.models.registry import build_model

    config = authors_model_config(authors_config)
    ours = convert_authors_state_dict(state_dict, config)
    model = build_model(config)
    dtype = next(iter(ours.values())).dtype
    model = model.to(dtype)
    model.load_state_dict(ours, strict=True)
    return model
