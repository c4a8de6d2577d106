"""Model configuration: plain data, saved beside every run and inside every checkpoint."""

from __future__ import annotations

from dataclasses import InitVar, asdict, dataclass, fields
from typing import Any, Mapping, Optional

from eghn_md.errors import UsageError

__all__ = ["ModelConfig", "VECTOR_NORMS", "EDGE_FEATURES", "LEGACY_FIELDS", "SAMPLERS"]

#: how ``eghn`` scales vector channels before taking invariants (see :class:`ModelConfig`)
VECTOR_NORMS = ("fixed", "per-graph")

#: where a model's edge scalars come from (see :mod:`eghn_md.models.inputs`)
EDGE_FEATURES = ("data", "distance", "data+distance")

#: ODE integrators of a generative model's sampler (:mod:`eghn_md.models.generative`)
SAMPLERS = ("euler", "heun")

#: keys that model configurations of earlier versions carried and that are accepted and dropped: ``reg_weight``
#: (λ, now only :attr:`eghn_md.train.options.TrainConfig.reg_weight`)
LEGACY_FIELDS = ("reg_weight",)


@dataclass(kw_only=True)
class ModelConfig:
    """Hyper-parameters of every model (each model reads the fields it needs).

    The fields are checked here on their own; whether ``name`` is a registered model and what that model restricts
    further are checked by :func:`eghn_md.models.registry.check_model_config` (which :func:`build_model` runs).
    Which options a model reads is declared on its class (:mod:`eghn_md.models.capabilities`); an option set for a
    model that ignores it is reported by :func:`eghn_md.models.registry.ignored_option_warnings`.

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

    ``output_smoothing`` (models declaring ``smooths``): the predicted displacement x(t+ΔT) − x(t) is filtered by
    that many lazy random-walk steps along the bond graph (:mod:`eghn_md.nn.smoothing`; the contact graph when the
    data has no bonds) inside the model, so training sees it; 0 (the default, and every checkpoint written before the
    option) leaves the output as the network produces it. ``refine_layers`` (models declaring ``refines``): that
    many EGNN layers over the bond graph move the predicted nodes along their bond vectors by learned amounts
    (:mod:`eghn_md.nn.refine`), after the filter; 0 (default and old checkpoints): none.

    Input scalars (:mod:`eghn_md.models.inputs`): ``node_in`` and ``edge_in`` count what the layers see. With
    ``speed_feature`` the node scalars are ``[|v| / vel_scale, batch.h]`` (so ``batch.h`` has ``node_in − 1``
    columns); ``edge_features`` is ``"data"`` (``batch.edge_attr``), ``"distance"`` ([d, d²] of every edge from the
    positions, in ``length_scale`` units; the dataset's edge scalars are not read) or ``"data+distance"`` (both).
    Both are recomputed from every input, so an autoregressive rollout sees them too.

    ``reg_weight`` is not a model setting: λ of the pooling regulariser lives in
    :class:`~eghn_md.train.options.TrainConfig` (the loss is the objective's, not the model's). The keyword is still
    accepted, checked and dropped (:data:`LEGACY_FIELDS`), so configurations and checkpoints written when it was a
    field here still load; :class:`~eghn_md.train.config.RunConfig` moves a ``model: reg_weight`` of a config file
    to ``train``.

    ``generative`` (any model): the network becomes the denoiser of a conditional flow from the current frame to
    the next (:class:`~eghn_md.models.generative.FlowModel`): the model then *samples* x(t + ΔT) given x(t) only
    (Markov: no velocity channel, a rollout starts from one structure; ``flow_velocity`` below adds the velocity).
    ``flow_sigma`` [Å] is the per-coordinate standard deviation of the flow's source noise around x(t) (``None``:
    ``disp_scale / √3``, the typical per-coordinate displacement over the horizon); ``sample_steps`` integration
    steps of the ``sampler`` (:data:`SAMPLERS`) produce one sample (a rollout may override it). Every checkpoint
    written before these options existed loads as deterministic (``generative`` false). ``source_scale`` λ scales
    the source noise when *sampling* (x₀ = x(t) + λσz; training always uses σ): below 1 the samples lie nearer the
    denoiser's conditional mean, the low-temperature sampling of image and protein flows (RFdiffusion's noise scale).
    An imperfect denoiser adds spread of its own; λ takes it back. On equilibrium AdK with the isotropic source
    λ = 0.8 gives the MD's one-step kernel on the closed state, which λ = 1 loosens; with ``spectral_source`` λ
    barely changes it (``examples/benchmarks/state_kernel.py``). 1 (the default, and older checkpoints): as
    trained; a rollout may override it.

    ``flow_velocity`` (generative models whose network declares ``extra_vectors``: ``eghn``): the denoiser also
    reads the velocity x(t) − x(t − ΔT) [Å] (divided by ``vel_scale``) as a second free vector channel, so the
    samples can follow the direction the trajectory is moving in. The model is then not Markov: it reads ``vel`` and
    a rollout needs the frame one horizon before its start (not one structure). Training's ``time_reversal`` stays
    exact: a reversed window is (x(t + ΔT), x(t), x(t − ΔT)), its velocity x(t) − x(t + ΔT) and target x(t − ΔT)
    (:class:`~eghn_md.data.samples.WindowSet`). False (the default, and every checkpoint written before the
    option): the Markov flow.

    Guidance (generative models): in the last ``guide_steps`` sampling steps the denoised frame x̂₁ is moved down
    the gradient of flat-bottom restraints before the step is taken (BioEmu's pattern): bonds of the node graph into
    ``bond_range`` [Å] ``[min, max]`` and pairs at least 3 bonds apart no closer than ``contact_floor`` [Å]. Training
    sets both from the training data's frames (:func:`eghn_md.data.samples.compute_stats`); ``None`` leaves that
    term out, ``guide_steps`` 0 (the default, and old checkpoints) all guidance.

    ``contact_prior`` (generative models only): the denoiser also sees the native contacts of the training
    trajectory, as edges with their mean and spread of distance (:mod:`eghn_md.models.contact_prior`), like the
    native contacts of a structure-based model or an AlphaFold template. Training computes them from the training
    frames and fills in ``prior_nodes`` (nodes of the graph the prior was computed for; every graph the model reads
    must have that many) and ``prior_pairs`` (number of contact pairs), so a checkpoint rebuilds the model's prior
    buffers before loading them. False (the default, and every checkpoint written before the option): no prior.
    ``prior_fraction`` f: which pairs join the prior. 0 (the default): those whose *mean* distance over the training
    frames is below the data's cutoff; f in (0, 1]: those within the cutoff in at least a fraction f of the frames,
    which also takes in the contacts of a state the trajectory leaves part of the time (AdK's closed-state
    interface, whose mean distance over a run that is open 60 % of the time lies beyond the cutoff).

    ``condition_distances`` (generative models only): every edge the denoiser reads also carries its length in the
    current frame x_t, in radial basis functions (:func:`eghn_md.models.generative.distance_features`): the
    denoiser's own positions are the noisy x_τ, so this is how it reads x_t's contacts exactly. False (the
    default, and older checkpoints): not read.

    ``spectral_source`` (generative models only): the flow's source noise is shaped like the training data's
    motion over the horizon instead of isotropic: per Laplacian mode of x_t's contact graph, as much variance as
    the training displacements have along it (:mod:`eghn_md.models.source_spectrum`), so the soft collective modes
    (the domain motions) get most of it. Training fits ``source_spectrum`` (one value per knot of
    :func:`~eghn_md.models.source_spectrum.knots`, mean 1 over the training modes) from its training pairs; a
    checkpoint carries it. False (the default, and older checkpoints): isotropic noise.

    A pair bias (generative models only; :mod:`eghn_md.models.pair_bias`): tabulated potentials on ``bias_pairs``
    node pairs that the sampler's last step descends, fitted by ``eghn-md fit-bias`` so that the model's ensembles
    keep the training run's pair-distance distributions; the fit sets ``bias_pairs`` and ``bias_nodes`` (the nodes
    of the graph it was fitted on; every graph the model samples must have that many), so a checkpoint rebuilds the
    tables' buffers before loading them. 0 (the default, and older checkpoints): no bias. ``bias_collective``: the
    bias also has a table on one collective variable of its pairs' contacts (:mod:`eghn_md.models.collective_bias`).
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
    radius_scale: Optional[float] = None
    vector_norm: str = "fixed"
    speed_feature: bool = False  #: prepend |v| to the node scalars
    edge_features: str = "data"  #: one of EDGE_FEATURES
    output_smoothing: int = 0  #: lazy random-walk steps filtering the predicted displacement along the bonds
    refine_layers: int = 0  #: EGNN layers over the bond graph refining the predicted structure
    generative: bool = False  #: sample the next frame with a conditional flow (Markov; see above)
    flow_sigma: Optional[float] = None  #: [Å] source noise per coordinate (None: disp_scale / √3)
    flow_velocity: bool = False  #: the denoiser also reads the velocity x(t) − x(t − ΔT) (not Markov; see above)
    sample_steps: int = 8  #: integration steps per sample
    sampler: str = "euler"  #: one of SAMPLERS
    source_scale: float = 1.0  #: λ on the source noise when sampling (x₀ = x(t) + λσz; see above)
    guide_steps: int = 0  #: last sampling steps whose denoised frame is guided into bond_range / contact_floor
    bond_range: Optional[list] = None  #: [Å] [min, max] bond length of the training data (guidance)
    contact_floor: Optional[float] = None  #: [Å] closest non-local approach in the training data (guidance)
    contact_prior: bool = False  #: the denoiser reads the training data's native contacts (generative; see above)
    prior_fraction: float = 0.0  #: the prior's pairs: mean distance below the cutoff (0) or within it in ≥ f of frames
    condition_distances: bool = False  #: the denoiser's edges carry their length in x_t (generative; see above)
    spectral_source: bool = False  #: the source noise follows the training data's mode spectrum (generative)
    source_spectrum: Optional[list] = None  #: the fitted spectrum at source_spectrum.knots() (set by training)
    prior_nodes: int = 0  #: nodes of the graph the contact prior was computed for (set by training)
    prior_pairs: int = 0  #: contact pairs of the prior (set by training)
    bias_nodes: int = 0  #: nodes of the graph the pair bias was fitted for (set by fitting it)
    bias_pairs: int = 0  #: node pairs of the pair bias; 0: none (set by fitting it; generative; see above)
    bias_collective: bool = False  #: the pair bias has a collective term U(ξ) too (set by fitting it; see above)
    reg_weight: InitVar[Optional[float]] = None  #: legacy: checked and dropped (λ is TrainConfig.reg_weight)

    def __post_init__(self, reg_weight: Optional[float]) -> None:
        if not isinstance(self.name, str):
            raise UsageError(f"model config: name must be a model name, got {self.name!r}")
        for key, low in (
            ("node_in", 0),
            ("edge_in", 0),
            ("hidden", 1),
            ("n_layers", 1),
            ("n_pool_layers", 1),
            ("n_decoder_layers", 1),
            ("output_smoothing", 0),
            ("refine_layers", 0),
            ("n_clusters", 1),
            ("sample_steps", 1),
            ("guide_steps", 0),
            ("prior_nodes", 0),
            ("prior_pairs", 0),
            ("bias_nodes", 0),
            ("bias_pairs", 0),
        ):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise UsageError(f"model config: {key} must be an integer >= {low}, got {v!r}")
        if self.vector_norm not in VECTOR_NORMS:
            raise UsageError(f"model config: unknown vector_norm {self.vector_norm!r}; "
                             f"valid: {', '.join(VECTOR_NORMS)}")
        if self.radius_scale is None:
            self.radius_scale = self.length_scale
        for key in ("length_scale", "vel_scale", "disp_scale", "radius_scale"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and v < float("inf")):
                raise UsageError(f"model config: {key} must be a finite number > 0, got {v!r}")
            setattr(self, key, float(v))
        v = reg_weight
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf")):
            raise UsageError(f"model config: reg_weight must be a finite number >= 0, got {v!r}")
        self._check_inputs()
        self._check_flow()

    def _check_flow(self) -> None:
        if not isinstance(self.generative, bool):
            raise UsageError(f"model config: generative must be true or false, got {self.generative!r}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"model config: unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}")
        self._check_guidance()
        for key in ("flow_velocity", "contact_prior", "condition_distances", "spectral_source"):
            if not isinstance(getattr(self, key), bool):
                raise UsageError(f"model config: {key} must be true or false, got {getattr(self, key)!r}")
            if getattr(self, key) and not self.generative:
                raise UsageError(f"model config: {key} needs a generative model (set generative: true, or "
                                 f"{key}: false)")
        self._check_spectrum()
        if self.bias_pairs and not (self.generative and self.bias_nodes):
            raise UsageError("model config: a pair bias (bias_pairs > 0) belongs to a generative model and needs "
                             "bias_nodes > 0 (both are set by fitting it: eghn-md fit-bias)")
        if not isinstance(self.bias_collective, bool) or (self.bias_collective and not self.bias_pairs):
            raise UsageError(f"model config: bias_collective must be true or false and needs a pair bias "
                             f"(bias_pairs > 0), got {self.bias_collective!r} with bias_pairs={self.bias_pairs}")
        v = self.prior_fraction
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise UsageError(f"model config: prior_fraction must be 0 (pairs by their mean distance) or a fraction "
                             f"of the training frames in (0, 1], got {v!r}")
        self.prior_fraction = float(v)
        if self.prior_fraction and not self.contact_prior:
            raise UsageError("model config: prior_fraction chooses the pairs of the contact prior; set contact_prior: "
                             "true, or prior_fraction: 0")
        v = self.source_scale
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < float("inf")):
            raise UsageError(f"model config: source_scale must be a finite number > 0, got {v!r}")
        self.source_scale = float(v)
        if self.flow_sigma is None:
            if not self.generative:
                return
            self.flow_sigma = self.disp_scale / 3.0**0.5
        v = self.flow_sigma
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < float("inf")):
            raise UsageError(f"model config: flow_sigma must be a finite number > 0 [Å] (or null), got {v!r}")
        self.flow_sigma = float(v)

    def _check_spectrum(self) -> None:
        from eghn_md.models.source_spectrum import N_KNOTS

        v = self.source_spectrum
        if v is None:
            return
        ok = isinstance(v, (list, tuple)) and len(v) == N_KNOTS and all(
            not isinstance(x, bool) and isinstance(x, (int, float)) and 0 < x < float("inf") for x in v)
        if not ok:
            raise UsageError(f"model config: source_spectrum must be null or a list of {N_KNOTS} finite numbers > 0 "
                             f"(set by training with spectral_source), got {v!r}")
        if not self.spectral_source:
            raise UsageError("model config: source_spectrum is only read with spectral_source: true")
        self.source_spectrum = [float(x) for x in v]

    def _check_inputs(self) -> None:
        if not isinstance(self.speed_feature, bool):
            raise UsageError(f"model config: speed_feature must be true or false, got {self.speed_feature!r}")
        if self.edge_features not in EDGE_FEATURES:
            raise UsageError(
                f"model config: unknown edge_features {self.edge_features!r}; valid: {', '.join(EDGE_FEATURES)}"
            )
        if self.speed_feature and self.node_in < 1:
            raise UsageError("model config: speed_feature needs node_in >= 1 (|v| is one of the node scalars)")
        if self.edge_features == "distance" and self.edge_in != 2:
            raise UsageError(f"model config: edge_features 'distance' means edge_in = 2 ([d, d²]), got {self.edge_in}")
        if self.edge_features == "data+distance" and self.edge_in < 2:
            raise UsageError(
                f"model config: edge_features 'data+distance' needs edge_in >= 2 (the dataset's scalars + [d, d²]), "
                f"got {self.edge_in}"
            )

    def _check_guidance(self) -> None:
        r = self.bond_range
        if r is not None:
            ok = isinstance(r, (list, tuple)) and len(r) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf") for v in r)
            if not ok or r[0] > r[1]:
                raise UsageError(f"model config: bond_range must be [min, max] in Å with 0 <= min <= max, got {r!r}")
            self.bond_range = [float(r[0]), float(r[1])]
        v = self.contact_floor
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
                raise UsageError(f"model config: contact_floor must be a distance >= 0 in Å (or null), got {v!r}")
            self.contact_floor = float(v)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid) - set(LEGACY_FIELDS))
        if unknown:
            raise UsageError(f"unknown model config key(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        if "node_in" not in d:
            raise UsageError("model config: node_in is required")
        return cls(**dict(d))
