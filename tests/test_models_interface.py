"""Model interface: config validation and round trip, registry and declarations, gradients, dtypes and autocast.

Every registered model is checked against its declared capabilities (:mod:`eghn_md.testing.models`).
"""

import pytest
import torch

from eghn_md.errors import UsageError
from eghn_md.models import MODEL_NAMES, ModelConfig, ModelOutput, build_model
from eghn_md.models.registry import check_model_config, model_names, models_with
from eghn_md.testing.models import (
    check_declared_inputs,
    check_declared_options,
    check_interface,
    small_config,
    small_model,
)
from eghn_md.testing.synthetic import chain_graph, random_batch
from eghn_md.train.objective import Objective
from eghn_md.train.options import TrainConfig


def test_config_round_trip_and_validation():
    c = small_config("eghn", reg_weight=2.0)
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(UsageError, match="bogus.*valid: name"):
        ModelConfig.from_dict({**c.to_dict(), "bogus": 1})
    with pytest.raises(UsageError, match="'transformer'.*eghn-published"):
        check_model_config(ModelConfig(name="transformer", node_in=3))
    with pytest.raises(UsageError, match="hidden.*0"):
        ModelConfig(node_in=3, hidden=0)
    with pytest.raises(UsageError, match="length_scale"):
        ModelConfig(node_in=3, length_scale=-1.0)
    with pytest.raises(UsageError, match="reg_weight"):
        ModelConfig(node_in=3, reg_weight=float("nan"))
    with pytest.raises(TypeError):
        ModelConfig("eghn", 3)  # keyword-only
    # what only one model restricts is its own check (eghn's complete cluster graph needs two clusters)
    with pytest.raises(UsageError, match="eghn needs n_clusters >= 2"):
        build_model(small_config("eghn", n_clusters=1))
    build_model(small_config("eghn-published", n_clusters=1))


def test_registry_lists_valid_names():
    assert model_names() == MODEL_NAMES == ("eghn", "eghn-published", "egnn", "gnn", "rf", "linear")
    with pytest.raises(UsageError, match="valid: eghn, eghn-published, egnn, gnn, rf, linear"):
        build_model(small_config("nope"))


@pytest.mark.parametrize("name", model_names())
def test_interface_as_declared(name):
    check_interface(name)


@pytest.mark.parametrize("name", model_names())
def test_inputs_and_options_as_declared(name):
    check_declared_inputs(name)
    check_declared_options(name)


def test_declarations_of_the_protein_models():
    assert models_with(pools=True) == ("eghn", "eghn-published")
    assert models_with(refines=True) == ("eghn", "egnn")
    assert models_with(smooths=True) == ("eghn", "eghn-published", "egnn")
    assert models_with(closed_form=True) == ("linear",)


def test_published_eghn_freezes_exactly_the_heads_that_reach_no_loss():
    # eghn-published keeps (frozen) the two heads of the authors' model that reach no loss term; nothing else is
    for name in model_names():
        frozen = {n.rsplit(".", 3)[0] for n, p in small_model(name).named_parameters() if not p.requires_grad}
        assert frozen == ({"pool_net.1.coef", "decoder.layers.1.out"} if name == "eghn-published" else set()), name


class _Fixed(torch.nn.Module):
    """A "model" that returns a fixed output, so the loss of it is known by hand."""

    def __init__(self, out: ModelOutput) -> None:
        super().__init__()
        self.out = out

    def forward(self, batch) -> ModelOutput:
        return self.out


def test_one_step_loss_is_per_coordinate_mse_plus_weighted_reg():
    batch = random_batch((2, 2), node_in=4, edge_in=2)
    target = torch.full((4, 3), 2.0, dtype=batch.pos.dtype)
    batch = batch.replace(target=target)
    out = ModelOutput(pos=torch.zeros(4, 3, dtype=batch.pos.dtype), reg=torch.tensor(0.5, dtype=batch.pos.dtype))
    objective = Objective(config=TrainConfig(reg_weight=3.0))
    total, parts = objective(_Fixed(out), batch, objective.totals([batch]))
    assert objective.terms == ("mse", "reg") and set(parts) == {"mse", "reg"}
    assert float(parts["mse"]) == pytest.approx(4.0) and float(parts["reg"]) == pytest.approx(0.5)
    assert float(total) == pytest.approx(5.5) and total.dtype == batch.pos.dtype


@pytest.mark.parametrize("name", ["eghn", "eghn-published", "egnn"])
def test_float32_default_and_cpu_autocast(name):
    torch.manual_seed(0)
    model = build_model(small_config(name, node_in=20, edge_in=0, length_scale=3.8))
    batch = chain_graph(60, node_in=20)
    out = model(batch)
    assert out.pos.dtype == torch.float32 and torch.isfinite(out.pos).all()
    objective = Objective(config=TrainConfig(reg_weight=1.0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = model(batch)
        total, _ = objective(model, batch, objective.totals([batch]))
    total.backward()
    assert torch.isfinite(total)
    if out16.assign is not None:
        assert out16.assign.dtype == torch.float32  # softmax kept in fp32
    assert (out16.pos.float() - out.pos).abs().max() < 0.5


@pytest.mark.parametrize("name", models_with(pools=True))
def test_pooling_models_are_tame_on_protein_sized_coordinates(name):
    # a 400-node chain spans ±30 Å; with no length scale at all outputs must stay finite and moderate
    torch.manual_seed(0)
    model = build_model(small_config(name, node_in=20, edge_in=0, hidden=16, n_clusters=5, length_scale=1.0))
    batch = chain_graph(400, node_in=20)
    out = model(batch)
    assert torch.isfinite(out.pos).all()
    assert (out.pos - batch.pos).norm(dim=1).max() < 50.0
