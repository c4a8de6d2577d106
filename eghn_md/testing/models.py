"""The checks every registered model gets, driven by what it declares (NequIP's ``BasicModelTestsMixin`` idea).

A model is found through :data:`eghn_md.models.registry.MODELS` and checked against its
:class:`~eghn_md.models.capabilities.ModelCapabilities`, so a new model is tested by registering it:

* :func:`check_symmetries`: permutation-equivariant and batch-independent (every model); E(3)-equivariant with
  reflections, also on edges rebuilt from the moved positions, if it declares ``equivariant`` and demonstrably not
  if it does not (a declaration that undersells is as wrong as one that oversells);
* :func:`check_interface`: a :class:`~eghn_md.models.output.ModelOutput` of the right shapes, a gradient for every
  trainable parameter, ``assign``/``reg`` exactly when it ``pools``;
* :func:`check_declared_inputs`: a batch field outside ``reads`` does not change the prediction;
* :func:`check_declared_options`: an option whose capability it lacks (``refine_layers`` without ``refines``, …)
  changes nothing, and one it has changes the model;
* :func:`check_extra_vectors`: a model declaring ``extra_vectors`` reads an extra free vector channel exactly
  equivariantly (rotated, never translated) and trains every parameter with it; one that does not refuses it.

All in float64 on small random graphs (:mod:`eghn_md.testing.synthetic`); a ``generative`` model is called with the
same torch seed every time, so its draws are comparable.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from eghn_md.data.batch import GraphBatch
from eghn_md.models.capabilities import OPTION_NEEDS
from eghn_md.models.config import ModelConfig
from eghn_md.models.output import ModelOutput
from eghn_md.models.registry import build_model, model_capabilities, model_class
from eghn_md.testing.equivariance import assert_batch_independent, assert_equivariant, assert_permutation_equivariant
from eghn_md.testing.synthetic import chain_graph, random_batch, random_graph

__all__ = ["SIZES", "small_config", "small_model", "check_symmetries", "check_interface", "check_declared_inputs",
           "check_declared_options", "check_extra_vectors"]

#: node counts of the graphs of a test batch (different sizes, so batching mistakes show)
SIZES = (6, 9, 4)
_NODE_IN, _EDGE_IN, _K = 4, 2, 3


def small_config(name: str, **overrides) -> ModelConfig:
    """A small configuration of model ``name`` for the checks (4 node scalars, 2 edge scalars, K = 3)."""
    base = dict(name=name, node_in=_NODE_IN, edge_in=_EDGE_IN, hidden=8, n_layers=2, n_pool_layers=2,
                n_clusters=_K, length_scale=3.0, vel_scale=1.0, disp_scale=1.0)
    return ModelConfig(**{**base, **overrides})


def small_model(name: str, *, seed: int = 0, device: str = "cpu", **overrides) -> nn.Module:
    """The model of :func:`small_config`, seeded, float64, in eval mode, on ``device``."""
    torch.manual_seed(seed)
    return build_model(small_config(name, **overrides)).double().eval().to(device)


def _call(name: str, model: nn.Module) -> Callable[[GraphBatch], ModelOutput]:
    """``model`` as a function of the batch; a generative model draws with the same seed at every call."""
    if not model_capabilities(name).generative:
        return model

    def seeded(batch: GraphBatch) -> ModelOutput:
        torch.manual_seed(0)
        return model(batch)

    return seeded


def check_symmetries(name: str, *, device: str = "cpu", atol: float = 1e-10) -> None:
    """Permutation, batch independence, and E(3) equivariance exactly as declared (see the module docstring)."""
    fn = _call(name, small_model(name, device=device))
    batch = random_batch(SIZES, node_in=_NODE_IN, edge_in=_EDGE_IN).to(device)
    assert_permutation_equivariant(fn, batch, atol=atol)
    gen = torch.Generator().manual_seed(3)
    graphs = [random_graph(n, node_in=_NODE_IN, edge_in=_EDGE_IN, generator=gen).to(device) for n in SIZES]
    assert_batch_independent(fn, graphs, atol=atol)
    if not model_capabilities(name).equivariant:
        try:
            assert_equivariant(fn, batch, atol=1e-6)
        except AssertionError:
            return
        raise AssertionError(f"model {name!r} declares equivariant=False but is E(3)-equivariant: declare it")
    assert_equivariant(fn, batch, atol=atol, reflections=True, n_trials=2)
    _check_equivariant_on_rebuilt_edges(name, device)


def _check_equivariant_on_rebuilt_edges(name: str, device: str) -> None:
    """The production path: edges rebuilt by ``build_edges`` (radius graph ∪ bonds, bond flag) from the moved
    positions of a protein-like chain, as every training sample and rollout step does."""
    from eghn_md.data.samples import build_edges

    model = small_model(name, seed=1, device=device, edge_in=1)
    fn = _call(name, model)
    g = chain_graph(30, node_in=_NODE_IN, cutoff=8.0, dtype=torch.float64, seed=2).to(device)

    def rebuilt(b: GraphBatch) -> ModelOutput:
        ei, ea = build_edges(b.pos, 8.0, b.bonds)
        return fn(b.replace(edge_index=ei, edge_attr=ea))

    assert_equivariant(rebuilt, g, atol=1e-9, reflections=True, n_trials=2)


def check_interface(name: str, *, device: str = "cpu") -> None:
    """Output type and shapes; ``assign`` (N, K) rows summing to 1 and ``reg`` > 0 iff the model ``pools`` (else
    no assignment and ``reg`` 0); every trainable parameter receives a non-zero gradient from MSE + reg."""
    model = small_model(name, device=device).train()
    batch = random_batch(SIZES, node_in=_NODE_IN, edge_in=_EDGE_IN).to(device)
    out = _call(name, model)(batch)
    assert isinstance(out, ModelOutput), f"{name}: forward returned {type(out).__name__}, not ModelOutput"
    assert out.pos.shape == (batch.num_nodes, 3) and out.pos.dtype == batch.pos.dtype, f"{name}: pos {out.pos.shape}"
    assert out.reg.ndim == 0 and bool(torch.isfinite(out.pos).all())
    if model_capabilities(name).pools:
        assert out.assign is not None and out.assign.shape == (batch.num_nodes, _K), f"{name}: assign"
        torch.testing.assert_close(out.assign.sum(1), torch.ones_like(out.assign[:, 0]))
        assert float(out.reg.detach()) > 0, f"{name} pools but its regulariser is {float(out.reg)}"
    else:
        assert out.assign is None and float(out.reg) == 0.0, f"{name} declares pools=False but returns a pooling"
    (((out.pos - batch.target) ** 2).mean() + out.reg).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not bool((p.grad != 0).any()))]
    assert not missing, f"{name}: parameters without gradient: {missing}"


def _perturbed(batch: GraphBatch, field: str, gen: torch.Generator) -> GraphBatch:
    """``batch`` with ``field`` replaced by other values of the same kind."""
    if field in ("h", "edge_attr", "vel"):
        old = getattr(batch, field)
        return batch.replace(**{field: torch.randn(old.shape, generator=gen, dtype=old.dtype).to(old.device)})
    if field == "bonds":  # every other bond
        return batch.replace(local_edge_index=batch.bonds[:, ::2].contiguous())
    if field == "edge_index":  # the bonds only (edge scalars cut to match)
        return batch.replace(edge_index=batch.bonds, edge_attr=batch.edge_attr[: batch.bonds.shape[1]])
    raise ValueError(f"no perturbation for batch field {field!r}")


def check_declared_inputs(name: str, *, device: str = "cpu") -> None:
    """Each batch field the model does not declare in ``reads`` leaves its prediction unchanged."""
    caps = model_capabilities(name)
    fn = _call(name, small_model(name, device=device))
    batch = random_batch(SIZES, node_in=_NODE_IN, edge_in=_EDGE_IN).to(device)
    gen = torch.Generator().manual_seed(5)
    base = fn(batch).pos
    for field in ("vel", "h", "edge_attr", "bonds", "edge_index"):
        if field not in caps.reads:
            got = fn(_perturbed(batch, field, gen)).pos
            assert torch.equal(got, base), f"model {name!r} does not declare reading {field!r} but depends on it"


def check_declared_options(name: str, *, device: str = "cpu") -> None:
    """An option of :data:`~eghn_md.models.capabilities.OPTION_NEEDS` set on a model without the capability it
    needs leaves parameters and prediction unchanged; on a model with it, it changes one of them."""
    caps = model_capabilities(name)
    batch = random_batch(SIZES, node_in=_NODE_IN, edge_in=_EDGE_IN).to(device)
    plain = small_model(name, device=device)
    base = _call(name, plain)(batch).pos
    for o in OPTION_NEEDS:
        on = (not o.off) if isinstance(o.off, bool) else 2
        model = small_model(name, device=device, **{o.option: on})
        got = _call(name, model)(batch).pos
        same = torch.equal(got, base) and _n_params(model) == _n_params(plain)
        if caps.has(o.need):
            assert not same, f"model {name!r} declares {o.need} but {o.option} changes nothing"
        else:
            assert same, f"model {name!r} does not declare {o.need} but {o.option} changes it"


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_extra_vectors(name: str, *, device: str = "cpu", atol: float = 1e-10) -> None:
    """A model declaring ``extra_vectors``, built with one (the velocity of a ``flow_velocity`` flow), depends on it,
    is E(3)- and permutation-equivariant and batch independent with it rotated as a free vector (here ``target −
    pos``, moved by the shared helpers like the inputs) and gives every trainable parameter a gradient; a model that
    does not declare it refuses ``extra_vectors=1``."""
    if not model_capabilities(name).extra_vectors:
        try:
            model_class(name)(small_config(name), extra_vectors=1)
        except (TypeError, ValueError):
            return
        raise AssertionError(f"model {name!r} does not declare extra_vectors but accepts extra_vectors=1")
    torch.manual_seed(0)
    model = model_class(name)(small_config(name), extra_vectors=1).double().to(device)
    fn = lambda b: model(b, extra=(b.target - b.pos).unsqueeze(2))  # noqa: E731
    batch = random_batch(SIZES, node_in=_NODE_IN, edge_in=_EDGE_IN).to(device)
    assert_equivariant(fn, batch, atol=atol, reflections=True, n_trials=2)
    assert_permutation_equivariant(fn, batch, atol=atol)
    gen = torch.Generator().manual_seed(3)
    assert_batch_independent(fn, [random_graph(n, node_in=_NODE_IN, edge_in=_EDGE_IN, generator=gen).to(device)
                                  for n in SIZES], atol=atol)
    out = fn(batch)
    other = model(batch, extra=-(batch.target - batch.pos).unsqueeze(2)).pos
    assert not torch.allclose(other, out.pos), f"model {name!r} declares extra_vectors but ignores them"
    (((out.pos - batch.target) ** 2).mean() + out.reg).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not bool((p.grad != 0).any()))]
    assert not missing, f"{name} with an extra vector channel: parameters without gradient: {missing}"
