"""Model configuration: plain data, saved beside every run and inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Optional

from eghn_md.errors import UsageError

__all__ = ["ModelConfig", "MODEL_NAMES", "VECTOR_NORMS"]

#: every model the registry can build (see :mod:`eghn_md.models.registry`)
MODEL_NAMES = ("eghn", "eghn-published", "egnn", "gnn", "rf", "linear")
#: how ``eghn`` scales vector channels before taking invariants (see :class:`ModelConfig`)
VECTOR_NORMS = ("fixed", "per-graph")


@dataclass(kw_only=True)
class ModelConfig:
    """Hyper-parameters of every model (each model reads the fields it needs).

    Units: ``length_scale`` [Å] typical neighbour distance (relative positions are divided by it); ``vel_scale``
    typical |v| in the velocity channel's unit (velocities are divided by it); ``disp_scale`` [Å] typical
    |x(t+ΔT) − x(t)| (displacements are produced in these units); ``radius_scale`` [Å] typical distance of a node
    from its graph's centroid (``None``: ``length_scale``).

    ``vector_norm`` (``eghn``): how the EMMP layers scale vector channels before their invariants are taken:
    ``"fixed"`` divides them by the training statistics above, so the model sees absolute geometry and can respond
    to a structure that swells or shrinks; ``"per-graph"`` divides each channel by its RMS over the graph (v0.1; the
    model cannot see the structure's size, and its rollouts swell without bound). The decoder's vector basis is
    divided by its per-graph RMS in both modes (bounded steps). Checkpoints written before the
    option existed load as ``"per-graph"``.
    """

    name: str = "eghn"
    node_in: int
    edge_in: int = 0
    hidden: int = 64
    n_layers: int = 4  #: interaction (EMMP / EGNN) layers per level
    n_pool_layers: int = 2  #: EMMP layers of the pooling score network
    n_decoder_layers: int = 2
    n_clusters: int = 8  #: K
    length_scale: float = 1.0
    vel_scale: float = 1.0
    disp_scale: float = 1.0
    reg_weight: float = 1.0  #: λ of the pooling regulariser
    radius_scale: Optional[float] = None
    vector_norm: str = "fixed"

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise UsageError(f"unknown model name {self.name!r}; valid: {', '.join(MODEL_NAMES)}")
        for key, low in (
            ("node_in", 0),
            ("edge_in", 0),
            ("hidden", 1),
            ("n_layers", 1),
            ("n_pool_layers", 1),
            ("n_decoder_layers", 1),
            ("n_clusters", 1),
        ):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise UsageError(f"model config: {key} must be an integer >= {low}, got {v!r}")
        if self.vector_norm not in VECTOR_NORMS:
            raise UsageError(f"model config: unknown vector_norm {self.vector_norm!r}; valid: {', '.join(VECTOR_NORMS)}")
        if self.radius_scale is None:
            self.radius_scale = self.length_scale
        for key in ("length_scale", "vel_scale", "disp_scale", "radius_scale"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and v < float("inf")):
                raise UsageError(f"model config: {key} must be a finite number > 0, got {v!r}")
            setattr(self, key, float(v))
        v = self.reg_weight
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and v < float("inf")):
            raise UsageError(f"model config: reg_weight must be a finite number >= 0, got {v!r}")
        self.reg_weight = float(v)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise UsageError(f"unknown model config key(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        if "node_in" not in d:
            raise UsageError("model config: node_in is required")
        return cls(**dict(d))
