"""Name → model class, and what each model declares it can do.

``build_model(ModelConfig(name=..., node_in=...))`` builds one; ``model_capabilities(name)`` reads a model's
declaration (:class:`~eghn_md.models.capabilities.ModelCapabilities`) without building it.

Adding a model: write one module whose class takes ``(config: ModelConfig)``, returns a
:class:`~eghn_md.models.output.ModelOutput` from ``forward(batch)`` and sets ``capabilities``; add one entry to
:data:`MODELS` (and its name to :data:`eghn_md.choices.MODEL_NAMES`, the torch-free list the command line offers;
the assertion below keeps the two equal). The test suite finds it through this registry and checks it against its
declaration (:mod:`eghn_md.testing.models`). A class may also define ``check_config(config)`` (a classmethod raising
:class:`~eghn_md.errors.UsageError`) for settings only it restricts.
"""

from __future__ import annotations

from torch import nn

from eghn_md.choices import MODEL_NAMES
from eghn_md.errors import UsageError
from eghn_md.models.capabilities import OPTION_NEEDS, ModelCapabilities, flow_capabilities, ignored_options
from eghn_md.models.config import ModelConfig
from eghn_md.models.eghn import EGHN, PublishedEGHN
from eghn_md.models.egnn import EGNN
from eghn_md.models.gnn import GNN
from eghn_md.models.linear import LinearModel
from eghn_md.models.rf import RF

__all__ = ["MODELS", "MODEL_NAMES", "build_model", "capabilities_of", "check_model_config", "config_capabilities",
           "has_pooling", "ignored_option_warnings", "is_generative", "is_markov", "model_capabilities", "model_class",
           "model_names", "models_with", "set_source_scale"]

#: every model by the name a configuration gives it
MODELS: dict[str, type[nn.Module]] = {
    "eghn": EGHN,
    "eghn-published": PublishedEGHN,
    "egnn": EGNN,
    "gnn": GNN,
    "rf": RF,
    "linear": LinearModel,
}
assert tuple(MODELS) == MODEL_NAMES, "eghn_md.choices.MODEL_NAMES must list the registry's models in its order"


def model_names() -> tuple[str, ...]:
    """The registered model names, in registry order."""
    return tuple(MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; unknown names raise :class:`UsageError` listing the valid ones."""
    cls = MODELS.get(str(name))
    if cls is None:
        raise UsageError(f"unknown model name {name!r}; valid: {', '.join(MODELS)}")
    return cls


def model_capabilities(name: str) -> ModelCapabilities:
    """What model ``name`` declares it is (its class's ``capabilities``), without building it."""
    return model_class(name).capabilities


def capabilities_of(model: nn.Module) -> ModelCapabilities:
    """What a built ``model`` is: its ``capabilities`` (set on the instance by a wrapping model, else its class's),
    through a ``DistributedDataParallel`` (``.module``) or ``torch.compile`` (``._orig_mod``) wrapper."""
    for attr in ("_orig_mod", "module", "_orig_mod"):
        model = getattr(model, attr, model)
    return model.capabilities


def config_capabilities(config: ModelConfig) -> ModelCapabilities:
    """What the model ``config`` describes is, without building it: its class's declaration, or for a
    ``generative`` configuration that of the conditional flow around it
    (:func:`~eghn_md.models.capabilities.flow_capabilities`: Markov unless ``flow_velocity``)."""
    caps = model_capabilities(config.name)
    return flow_capabilities(caps, velocity=config.flow_velocity) if config.generative else caps


def models_with(**wanted) -> tuple[str, ...]:
    """Names of the models whose declaration matches every ``capability=value`` given (``models_with(pools=True)``)."""
    return tuple(n for n, cls in MODELS.items()
                 if all(getattr(cls.capabilities, k) == v for k, v in wanted.items()))


def has_pooling(name: str) -> bool:
    """Whether model ``name`` learns pooling clusters (its declaration's ``pools``; False for unknown names)."""
    cls = MODELS.get(str(name))
    return cls is not None and cls.capabilities.pools


def check_model_config(config: ModelConfig) -> None:
    """Refuse a configuration its model cannot use: an unknown name, ``flow_velocity`` for a network that declares no
    ``extra_vectors``, or what the model's ``check_config`` refuses.

    (:class:`ModelConfig` checks every field on its own; this adds what depends on the model.)
    """
    cls = model_class(config.name)
    if config.flow_velocity and not cls.capabilities.extra_vectors:
        raise UsageError(f"model config: flow_velocity needs a network that reads a second vector channel, and "
                         f"{config.name!r} does not; use name: {' or '.join(models_with(extra_vectors=True))}, "
                         "or flow_velocity: false")
    check = getattr(cls, "check_config", None)
    if check is not None:
        check(config)


def ignored_option_warnings(config: ModelConfig) -> list[str]:
    """One message per option ``config`` sets that its model ignores (``refine_layers`` on ``gnn``, …), each in
    the same words; the caller logs or warns them."""
    readers = {o.option: [n for n, cls in MODELS.items() if cls.capabilities.has(o.need)] for o in OPTION_NEEDS}
    out = ignored_options(config.name, config, model_capabilities(config.name), readers)
    for key in ("contact_prior", "condition_distances"):
        if getattr(config, key) and "edge_attr" not in model_capabilities(config.name).reads:
            edge_readers = [n for n, cls in MODELS.items() if "edge_attr" in cls.capabilities.reads]
            out.append(f"model {config.name!r} reads no edge scalars, so {key} true is ignored (only "
                       f"{', '.join(edge_readers)} read them)")
    return out


def build_model(config: ModelConfig) -> nn.Module:
    """Build the model ``config.name`` names (after :func:`check_model_config`). With ``config.generative`` the
    network is the denoiser of a :class:`~eghn_md.models.generative.FlowModel` (which declares its capabilities on
    the instance, derived from the network's)."""
    check_model_config(config)
    if config.generative:
        from eghn_md.models.generative import FlowModel, inner_config

        # the velocity is no option of the network (inner_config drops it) but one extra vector channel of it
        extra = {"extra_vectors": 1} if config.flow_velocity else {}
        return FlowModel(config=config, net=model_class(config.name)(inner_config(config), **extra))
    return model_class(config.name)(config)


def is_generative(model: nn.Module) -> bool:
    """Whether a built ``model`` samples its prediction (its declaration's ``generative``)."""
    return capabilities_of(model).generative


def set_source_scale(model: nn.Module, value: float) -> None:
    """A generative ``model`` samples with λ = ``value`` on its source noise from now on (UsageError otherwise)."""
    if not is_generative(model):
        raise UsageError(f"`source_scale` {value} scales a generative model's sampling noise, but this model is "
                         "deterministic; drop it or train one with the generative `preset`",
                         params=("source_scale", "preset"))
    model.set_source_scale(value)


def is_markov(model: nn.Module) -> bool:
    """Whether a built ``model`` reads the current frame only (declaration's ``markov``): a rollout can start from
    one structure."""
    return capabilities_of(model).markov
