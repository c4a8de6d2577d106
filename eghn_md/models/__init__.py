"""EGHN and the baselines (EGNN, GNN, RF, Linear) behind one interface: ``model(GraphBatch) -> ModelOutput``."""

from eghn_md.models.capabilities import ModelCapabilities
from eghn_md.models.config import ModelConfig
from eghn_md.models.output import ModelOutput
from eghn_md.models.registry import MODEL_NAMES, build_model, model_capabilities

__all__ = ["ModelCapabilities", "ModelConfig", "MODEL_NAMES", "ModelOutput", "build_model", "model_capabilities"]
