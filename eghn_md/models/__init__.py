"""EGHN and the baselines (EGNN, GNN, RF, Linear) behind one interface: ``model(GraphBatch) -> ModelOutput``."""

from eghn_md.models.config import MODEL_NAMES, ModelConfig
from eghn_md.models.output import ModelOutput
from eghn_md.models.registry import build_model

__all__ = ["ModelConfig", "MODEL_NAMES", "ModelOutput", "build_model"]
