"""E(3), permutation and batch equivariance of every registered model, as it declares (float64; on ``--device``).

The models come from the registry and are checked against their declared capabilities by
:mod:`eghn_md.testing.models`: a new model is tested here by registering it (``tests/test_models_registry.py``
shows a model added at run time being found).
"""

import pytest
import torch

from eghn_md.models.registry import model_names, models_with
from eghn_md.testing.equivariance import assert_equivariant
from eghn_md.testing.models import SIZES, check_symmetries, small_model
from eghn_md.testing.synthetic import random_batch


def equivariant_models() -> list[str]:
    """Every registered model declaring ``equivariant=True`` (read at the time of the call)."""
    return list(models_with(equivariant=True))


@pytest.mark.parametrize("name", model_names())
def test_symmetries_as_declared(name, device):
    check_symmetries(name, device=device)


def test_every_protein_model_but_gnn_is_declared_equivariant():
    # the declarations themselves, as the README documents them
    assert set(model_names()) - set(equivariant_models()) == {"gnn"}


def test_gnn_is_not_rotation_equivariant_but_translation_equivariant():
    model = small_model("gnn")
    batch = random_batch(SIZES, node_in=4, edge_in=2)
    with pytest.raises(AssertionError, match="points"):
        assert_equivariant(model, batch, atol=1e-6)
    # translations only (R = I) are fine: positions are centred per graph
    out = model(batch).pos
    shift = torch.tensor([3.0, -7.0, 11.0], dtype=torch.float64)
    torch.testing.assert_close(model(batch.replace(pos=batch.pos + shift)).pos, out + shift)
