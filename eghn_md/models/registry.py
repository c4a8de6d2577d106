"""Name → model builder. ``build_model(ModelConfig(name=..., node_in=...))``."""

from __future__ import annotations

from typing import Callable

from torch import nn

from eghn_md.errors import UsageError
from eghn_md.models.config import MODEL_NAMES, ModelConfig

__all__ = ["MODEL_NAMES", "POOLING_MODELS", "build_model", "has_pooling", "is_generative", "is_markov"]

#: models that learn a pooling assignment S (their output carries ``assign``; ``export clusters`` works on them)
POOLING_MODELS = ("eghn", "eghn-published")


def has_pooling(name: str) -> bool:
    """Whether model ``name`` learns pooling clusters (a capability of the architecture, not of its name)."""
    return str(name) in POOLING_MODELS


def _eghn(c: ModelConfig) -> nn.Module:
    from eghn_md.models.eghn import EGHN, EQUATIONS

    return EGHN(c, EQUATIONS)


def _eghn_published(c: ModelConfig) -> nn.Module:
    from eghn_md.models.eghn import EGHN, PUBLISHED

    return EGHN(c, PUBLISHED)


def _egnn(c: ModelConfig) -> nn.Module:
    from eghn_md.models.egnn import EGNN

    return EGNN(c)


def _gnn(c: ModelConfig) -> nn.Module:
    from eghn_md.models.gnn import GNN

    return GNN(c)


def _rf(c: ModelConfig) -> nn.Module:
    from eghn_md.models.rf import RF

    return RF(c)


def _linear(c: ModelConfig) -> nn.Module:
    from eghn_md.models.linear import LinearModel

    return LinearModel(c)


_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "eghn": _eghn,
    "eghn-published": _eghn_published,
    "egnn": _egnn,
    "gnn": _gnn,
    "rf": _rf,
    "linear": _linear,
}
assert tuple(_BUILDERS) == MODEL_NAMES


def build_model(config: ModelConfig) -> nn.Module:
    """Build the model ``config.name`` names; unknown names raise :class:`UsageError` listing the valid ones. With
    ``config.generative`` the network is the denoiser of a :class:`~eghn_md.models.generative.FlowModel`."""
    builder = _BUILDERS.get(config.name)
    if builder is None:
        raise UsageError(f"unknown model name {config.name!r}; valid: {', '.join(MODEL_NAMES)}")
    if config.generative:
        from eghn_md.models.generative import FlowModel, inner_config

        return FlowModel(config=config, net=builder(inner_config(config)))
    return builder(config)


def is_generative(model: nn.Module) -> bool:
    """Whether ``model`` (or the module inside a DDP / ``torch.compile`` wrapper) samples its prediction."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return bool(getattr(getattr(model, "_orig_mod", model), "generative", False))


def is_markov(model: nn.Module) -> bool:
    """Whether ``model`` reads the current frame only (no velocity channel): a rollout can start from one
    structure."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return bool(getattr(getattr(model, "_orig_mod", model), "markov", False))
