"""What a model is, declared once on its class: ``capabilities = ModelCapabilities(...)``.

Everything that depends on what a model can do reads this declaration through the registry
(:func:`eghn_md.models.registry.model_capabilities`, without building the model): config validation, the warnings
for options a model ignores (:func:`ignored_options`), the benchmarks (a ``closed_form`` model is fitted, not
trained), the clusters export (``pools``) and the test suite (:mod:`eghn_md.testing.models` checks every model
against its declaration: an ``equivariant`` model must be E(3)-equivariant, a model that does not read ``h`` must
not change when ``h`` does, one that does not ``smooth`` must ignore ``output_smoothing``, …). A new model is one
module whose class sets ``capabilities`` plus one entry in :data:`eghn_md.models.registry.MODELS`.

A model that wraps another (a sampler around a registered network, say) sets ``capabilities`` on the instance,
derived from the wrapped network's (the conditional flow: :func:`flow_capabilities`); code holding a built model
reads it with :func:`eghn_md.models.registry.capabilities_of`, code holding a configuration with
:func:`eghn_md.models.registry.config_capabilities`.

This module is torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

__all__ = ["ModelCapabilities", "BATCH_FIELDS", "OptionNeed", "OPTION_NEEDS", "ignored_options", "flow_capabilities"]

#: the :class:`~eghn_md.data.batch.GraphBatch` fields a model may read (``ModelCapabilities.reads``): positions
#: ``pos`` (N, 3) [Å], velocities ``vel`` (N, 3), node scalars ``h`` (N, F), edges ``edge_index`` (2, E) with their
#: scalars ``edge_attr`` (E, D), and the bond graph ``bonds`` (2, B)
BATCH_FIELDS = ("pos", "vel", "h", "edge_index", "edge_attr", "bonds")


@dataclass(frozen=True, kw_only=True)
class ModelCapabilities:
    """The declaration a model class carries as its ``capabilities`` class attribute.

    * ``equivariant``: the prediction is E(3)-equivariant (rotations with reflections and translations of the
      positions, rotations of the velocities); every model must in any case be permutation-equivariant and treat
      the graphs of a batch independently.
    * ``pools``: learns a soft assignment of nodes to ``n_clusters`` clusters (``ModelOutput.assign`` (N, K) and a
      pooling regulariser ``reg``; ``export clusters`` works on it).
    * ``refines``: builds the bond-graph refinement of ``refine_layers`` (and so accepts ``train: refine_noise``).
    * ``smooths``: filters its predicted displacement by ``output_smoothing`` steps along the bonds.
    * ``reads``: the :data:`BATCH_FIELDS` its prediction depends on (``speed_feature`` feeds ``h``,
      ``edge_features`` feeds ``edge_attr``).
    * ``markov``: the prediction depends on the current frame only (no velocity channel: ``vel`` is not in
      ``reads``), so a rollout can start from one structure; the others read x_t − x_{t−ΔT} and need two frames.
    * ``generative``: samples a distribution of next frames (a seeded random draw) rather than one prediction.
    * ``closed_form``: the class has ``fit_closed_form(samples)``, a least-squares fit the benchmarks use instead
      of training it.
    * ``extra_vectors``: the network reads free vector channels besides ``vel``: built with ``extra_vectors=e``
      (keyword of its constructor), its ``forward(batch, extra=...)`` takes them as ``extra`` (N, 3, e), each
      channel divided by its own scale (dimensionless, O(1)), rotated but never translated (a velocity-conditioned
      generative model passes the velocity there while ``vel`` carries its flow state; ``flow_velocity``).
    """

    equivariant: bool
    pools: bool = False
    refines: bool = False
    smooths: bool = False
    reads: tuple[str, ...] = BATCH_FIELDS
    markov: bool = False
    generative: bool = False
    closed_form: bool = False
    extra_vectors: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.reads) - set(BATCH_FIELDS))
        if unknown:
            raise ValueError(f"ModelCapabilities.reads: unknown field(s) {unknown}; valid: {', '.join(BATCH_FIELDS)}")
        for key in ("equivariant", "pools", "refines", "smooths", "markov", "generative", "closed_form",
                    "extra_vectors"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"ModelCapabilities.{key} must be True or False, got {getattr(self, key)!r}")
        if self.markov and "vel" in self.reads:
            raise ValueError("ModelCapabilities: a markov model reads the current frame only, so not 'vel'")

    def has(self, need: str) -> bool:
        """Whether the declaration grants ``need``: a capability name (``"refines"``) or ``"reads:<field>"``."""
        if need.startswith("reads:"):
            return need.partition(":")[2] in self.reads
        return bool(getattr(self, need))


class OptionNeed(NamedTuple):
    """A model option that only some models read: who reads it and the value that means "not used"."""

    option: str  #: the ModelConfig field
    need: str  #: what a model must declare to read it (see :meth:`ModelCapabilities.has`)
    off: Any  #: the value at which no model reads it, so no warning is due
    what: str  #: what a model that reads it has, for the warning ("bond-graph refinement")


#: the one list of options some models ignore; :func:`ignored_options` warns about each the same way
OPTION_NEEDS = (
    OptionNeed("refine_layers", "refines", 0, "bond-graph refinement"),
    OptionNeed("output_smoothing", "smooths", 0, "output filter along the bonds"),
)


def ignored_options(name: str, config: Any, capabilities: ModelCapabilities,
                    readers: dict[str, list[str]]) -> list[str]:
    """One message per option of ``config`` (a ModelConfig) set although model ``name`` ignores it.

    ``readers`` maps each option of :data:`OPTION_NEEDS` to the models that read it (named in the message).
    """
    out = []
    for o in OPTION_NEEDS:
        value = getattr(config, o.option)
        if value != o.off and not capabilities.has(o.need):
            out.append(f"model {name!r} has no {o.what}, so {o.option} {value!r} is ignored (only "
                       f"{', '.join(readers[o.option]) or 'no model'} read it)")
    return out


def flow_capabilities(net: ModelCapabilities, *, velocity: bool) -> ModelCapabilities:
    """What a conditional flow (:class:`~eghn_md.models.generative.FlowModel`) around a network declaring ``net``
    is: generative; Markov (``vel`` not read: the network's ``vel`` is the flow state, not a velocity) unless
    ``velocity`` (``flow_velocity``: it reads x_t − x_{t−ΔT} through the network's extra vector channel, so it
    needs two frames). The flow itself takes no extra vector channels."""
    reads = net.reads if velocity else tuple(f for f in net.reads if f != "vel")
    if velocity and "vel" not in reads:
        reads = (*reads, "vel")
    return replace(net, generative=True, markov=not velocity, reads=reads, extra_vectors=False)
