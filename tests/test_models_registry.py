"""A model added at run time (one class with its declaration + one registry entry) is found and checked by the
equivariance and interface tests without editing them, and a false declaration fails them."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch
from torch import nn

import test_models_equivariance as equivariance_tests
import test_models_interface as interface_tests
from eghn_md.data.batch import GraphBatch
from eghn_md.errors import UsageError
from eghn_md.models import ModelCapabilities, ModelOutput, build_model, registry
from eghn_md.models.registry import capabilities_of, ignored_option_warnings, model_capabilities, model_names
from eghn_md.nn.edges import graph_gather, graph_mean
from eghn_md.testing.models import small_config


class _Drift(nn.Module):
    """x' = x + a v + w tanh(|v|) (x − x̄): E(3)-equivariant, reads positions and velocities only."""

    capabilities: ClassVar[ModelCapabilities] = ModelCapabilities(equivariant=True, reads=("pos", "vel"))

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.a = nn.Parameter(torch.tensor(0.5))
        self.w = nn.Parameter(torch.tensor(0.1))

    def _step(self, batch: GraphBatch):
        G = batch.num_graphs
        centred = batch.pos - graph_gather(graph_mean(batch.pos, batch.batch, G), batch.batch, G)
        speed = batch.vel.norm(dim=1, keepdim=True)
        return self.a * batch.vel + self.w * torch.tanh(speed) * centred

    def forward(self, batch: GraphBatch) -> ModelOutput:
        pos = batch.pos + self._step(batch)
        return ModelOutput(pos=pos, reg=pos.new_zeros(()), assign=None)


class _ReadsScalarsSecretly(_Drift):
    """Declares ``reads=("pos", "vel")`` but scales its step by the node scalars."""

    def forward(self, batch: GraphBatch) -> ModelOutput:
        pos = batch.pos + self._step(batch) * (1.0 + 0.1 * batch.h[:, :1])
        return ModelOutput(pos=pos, reg=pos.new_zeros(()), assign=None)


class _ClaimsMarkov(_Drift):
    """Declares itself markov (current frame only) but steps along the velocity channel."""

    capabilities: ClassVar[ModelCapabilities] = ModelCapabilities(equivariant=True, reads=("pos",), markov=True)


class _Wind(_Drift):
    """Declares ``equivariant=True`` but adds a fixed direction to every step."""

    def forward(self, batch: GraphBatch) -> ModelOutput:
        pos = batch.pos + self._step(batch) + self.w * torch.tensor([1.0, 0.0, 0.0], dtype=batch.pos.dtype)
        return ModelOutput(pos=pos, reg=pos.new_zeros(()), assign=None)


def _register(monkeypatch, cls) -> None:
    monkeypatch.setitem(registry.MODELS, "drift", cls)


def test_a_registered_model_is_found_and_passes_the_unedited_tests(monkeypatch):
    _register(monkeypatch, _Drift)
    assert "drift" in model_names() and "drift" in equivariance_tests.equivariant_models()
    assert model_capabilities("drift") == _Drift.capabilities
    equivariance_tests.test_symmetries_as_declared("drift", "cpu")
    interface_tests.test_interface_as_declared("drift")
    interface_tests.test_inputs_and_options_as_declared("drift")
    # options it does not declare warn the same way as for the built-in models
    msgs = ignored_option_warnings(small_config("drift", refine_layers=2, output_smoothing=1))
    assert [m.split(",")[0] for m in msgs] == ["model 'drift' has no bond-graph refinement",
                                               "model 'drift' has no output filter along the bonds"]
    assert "only eghn, egnn read it" in msgs[0]


def test_unregistered_again_it_is_refused_with_the_valid_names():
    assert "drift" not in model_names()
    with pytest.raises(UsageError, match="unknown model name 'drift'; valid: eghn, "):
        build_model(small_config("drift"))


@pytest.mark.parametrize("cls, check, message", [
    (_ReadsScalarsSecretly, "inputs", "does not declare reading 'h'"),
    (_ClaimsMarkov, "inputs", "does not declare reading 'vel'"),
    (_Wind, "symmetries", "points"),
])
def test_a_false_declaration_fails_the_unedited_tests(monkeypatch, cls, check, message):
    _register(monkeypatch, cls)
    run = {"inputs": interface_tests.test_inputs_and_options_as_declared,
           "symmetries": lambda name: equivariance_tests.test_symmetries_as_declared(name, "cpu")}[check]
    with pytest.raises(AssertionError, match=message):
        run("drift")


def test_a_built_model_is_read_through_its_wrappers(monkeypatch):
    _register(monkeypatch, _Drift)
    model = build_model(small_config("drift"))
    wrapped = nn.Module()
    wrapped.module = model  # as DistributedDataParallel holds it
    assert capabilities_of(model) == capabilities_of(wrapped) == _Drift.capabilities
    # a wrapping model declares on the instance what it makes of the network it wraps
    model.capabilities = dataclasses.replace(_Drift.capabilities, generative=True)
    assert capabilities_of(wrapped).generative and not _Drift.capabilities.generative


def test_a_declaration_is_checked_when_written():
    with pytest.raises(ValueError, match="reads: unknown field"):
        ModelCapabilities(equivariant=True, reads=("pos", "charge"))
    with pytest.raises(ValueError, match="pools must be True or False"):
        ModelCapabilities(equivariant=True, pools=1)
    with pytest.raises(ValueError, match="markov model reads the current frame only"):
        ModelCapabilities(equivariant=True, markov=True)
