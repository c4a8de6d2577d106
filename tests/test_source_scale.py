"""The sampler's ``source_scale`` λ (``model: {source_scale: λ}``, ``rollout --source-scale``): the source noise
scaled by λ (exactly the sample of noise λz), equivariance kept, the value checked, and the rollout option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _data import run_cli
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.testing.equivariance import assert_equivariant
from eghn_md.testing.synthetic import random_batch

SIZES = (9, 6)
SHIPPED = Path(__file__).resolve().parents[1] / "examples" / "models" / "adk_eq_generative.pt"


def _model(scale=1.0):
    torch.manual_seed(0)
    cfg = ModelConfig(name="eghn", node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=1, n_clusters=3,
                      length_scale=3.0, vel_scale=1.0, disp_scale=1.5, generative=True, sample_steps=3,
                      source_scale=scale)
    return build_model(cfg).double().eval()


def test_scale_is_the_sample_of_scaled_noise():
    b = random_batch(SIZES, node_in=4, edge_in=2)
    z = torch.randn(b.num_nodes, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        scaled = _model(0.6)(b, noise=z).pos
        torch.testing.assert_close(scaled, _model()(b, noise=0.6 * z).pos, atol=1e-12, rtol=0)
        model = _model()
        model.set_source_scale(0.6)  # what `rollout --source-scale` does to a loaded model
        torch.testing.assert_close(model(b, noise=z).pos, scaled, atol=1e-12, rtol=0)
        assert (scaled - _model()(b, noise=z).pos).abs().max() > 1e-3


def test_scaled_sampling_is_e3_equivariant():
    model = _model(0.7)
    assert_equivariant(lambda b: model(b, noise=b.vel).pos, random_batch(SIZES, node_in=4, edge_in=2), atol=1e-10,
                       reflections=True, n_trials=2)


@pytest.mark.parametrize("bad", [0.0, -0.5, float("inf"), True, "0.8"])
def test_bad_scale_is_refused(bad):
    with pytest.raises(UsageError, match="source_scale"):
        ModelConfig(name="eghn", node_in=4, generative=True, source_scale=bad)


def test_rollout_option(tiny_run, adk, tmp_path):
    """``--source-scale`` reaches a generative model's sampler (other frames, reported); a deterministic model
    refuses it in one line."""
    from MDAnalysisTests.datafiles import PDB_small  # adk_open.pdb, one frame

    out = {}
    for name, extra in (("a", []), ("b", ["--source-scale", "0.5"])):
        res = run_cli("rollout", SHIPPED, PDB_small, "--steps", "2", "-o", tmp_path / f"{name}.dcd", "--json",
                      "--quiet", "--device", "cpu", *extra)
        assert res.exit_code == 0, res.output
        out[name] = json.loads(res.stdout)
    assert out["a"]["source_scale"] == 1.0 and out["b"]["source_scale"] == 0.5
    assert (tmp_path / "b.dcd").read_bytes() != (tmp_path / "a.dcd").read_bytes()
    res = run_cli("rollout", tiny_run / "model.pt", adk["psf"], adk["dcd"], "--steps", "2", "--source-scale", "0.5",
                  "-o", tmp_path / "d.dcd")
    assert res.exit_code == 2 and "source" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
