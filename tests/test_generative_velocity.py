"""The velocity-conditioned generative model (``model: {generative: true, flow_velocity: true}``): exact E(3) and
permutation equivariance of sampling and of the denoiser with the velocity transformed too (float64), batch
independence, what it declares (reads ``vel``, not Markov), the networks that can take it, the checkpoint round trip
(weights-only load) and the rollout that needs the frame before its start."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _data import run_cli
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.models.registry import (
    capabilities_of,
    config_capabilities,
    is_generative,
    is_markov,
    model_names,
    models_with,
)
from eghn_md.testing.equivariance import (
    assert_batch_independent,
    assert_equivariant,
    assert_permutation_equivariant,
)
from eghn_md.testing.models import check_extra_vectors
from eghn_md.testing.synthetic import random_batch, random_graph

SIZES = (6, 9, 4)
GUIDED = {"guide_steps": 2, "bond_range": [3.0, 4.0], "contact_floor": 3.0}


def _config(**over) -> ModelConfig:
    base = dict(name="eghn", node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2, n_clusters=3,
                length_scale=3.0, vel_scale=1.3, disp_scale=1.5, generative=True, flow_velocity=True,
                sample_steps=3)
    return ModelConfig(**{**base, **over})


def _model(seed=0, **over):
    torch.manual_seed(seed)
    return build_model(_config(**over)).double().eval()


def _sample(model):
    """One sample whose source noise rides in ``target``: the shared helpers move it as a point (rotated, reflected,
    translated; the model removes its per-graph mean, so the translation drops out), permute and batch it with the
    nodes, while ``vel`` (now read by the model) is rotated as a velocity."""
    return lambda b: model(b, noise=b.target).pos


def _denoise(model, tau=0.37):
    """The training forward at a fixed τ; source noise z = target − pos (a free vector, rotated with the inputs)."""
    def fn(b):
        flow = torch.cat([b.target - b.pos, torch.full((b.num_nodes, 1), tau, dtype=b.pos.dtype)], dim=1)
        return model(b, flow=flow).pos
    return fn


@pytest.mark.parametrize("over", [{}, {"sampler": "heun"}, GUIDED], ids=["euler", "heun", "guided"])
def test_sampling_is_e3_equivariant_with_the_velocity_rotated(over):
    assert_equivariant(_sample(_model(**over)), random_batch(SIZES, node_in=4, edge_in=2), atol=1e-10,
                       reflections=True, n_trials=2)


def test_denoiser_is_e3_equivariant():
    assert_equivariant(_denoise(_model()), random_batch(SIZES, node_in=4, edge_in=2), atol=1e-10, reflections=True)


@pytest.mark.parametrize("fn", [_sample, _denoise])
def test_permutation_equivariant(fn):
    assert_permutation_equivariant(fn(_model()), random_batch(SIZES, node_in=4, edge_in=2), atol=1e-10)


def test_replicas_are_batch_independent():
    gen = torch.Generator().manual_seed(3)
    graphs = [random_graph(n, node_in=4, edge_in=2, generator=gen) for n in SIZES]
    assert_batch_independent(_sample(_model()), graphs, atol=1e-10)


def test_the_sample_reads_the_velocity():
    """Unlike the Markov flow, another velocity (same x_t, same noise) gives another sample, and a velocity that
    only changes scale per graph changes it too (the channel is divided by a fixed scale, not normalised away)."""
    model = _model()
    b = random_batch(SIZES, node_in=4, edge_in=2)
    with torch.no_grad():
        base = _sample(model)(b)
        for vel in (-b.vel, 2.0 * b.vel, torch.zeros_like(b.vel)):
            assert float((_sample(model)(b.replace(vel=vel)) - base).abs().max()) > 1e-6


def test_declares_a_two_frame_generative_model():
    cfg = _config()
    model = build_model(cfg)
    caps = capabilities_of(model)
    assert is_generative(model) and not is_markov(model) and "vel" in caps.reads and not caps.extra_vectors
    assert caps == config_capabilities(cfg)  # the declaration read from a configuration, without building
    markov = build_model(_config(flow_velocity=False))
    assert is_markov(markov) and "vel" not in capabilities_of(markov).reads
    assert capabilities_of(markov) == config_capabilities(_config(flow_velocity=False))
    assert model.net.low[0].m == 3 and markov.net.low[0].m == 2  # Z = [x − x̄, x_τ − x_t, v] vs [x − x̄, x_τ − x_t]


def test_networks_without_a_second_vector_channel_are_refused_by_name():
    assert models_with(extra_vectors=True) == ("eghn",)
    for name in ("egnn", "eghn-published", "gnn"):
        with pytest.raises(UsageError, match=f"flow_velocity needs a network .* {name!r} does not; use name: eghn"):
            build_model(_config(name=name))
    with pytest.raises(UsageError, match="flow_velocity needs a generative model"):
        ModelConfig(name="eghn", node_in=4, flow_velocity=True)
    with pytest.raises(UsageError, match="flow_velocity must be true or false"):
        _config(flow_velocity="yes")


@pytest.mark.parametrize("name", model_names())
def test_extra_vector_channel_as_declared(name):
    check_extra_vectors(name)


def test_eghn_checks_its_extra_channels():
    from eghn_md.models.eghn import EGHN, PublishedEGHN

    cfg = _config(generative=False, flow_velocity=False)
    b = random_batch(SIZES, node_in=4, edge_in=2)
    with pytest.raises(ValueError, match=r"extra_vectors=1 needs extra of shape \(19, 3, 1\), got None"):
        EGHN(cfg, extra_vectors=1).double()(b)
    with pytest.raises(ValueError, match="extra_vectors=0 needs extra of shape None"):
        EGHN(cfg).double()(b, extra=b.vel.unsqueeze(2))
    with pytest.raises(ValueError, match="PublishedEGHN reads no extra vector channels"):
        PublishedEGHN(cfg, extra_vectors=1)


VEL_CONFIG = """\
model: {flow_velocity: true, hidden: 8, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 4,
        sample_steps: 2}
data: {horizon: 5, window_stride: 6}
train: {epochs: 1, batch_size: 8}
"""


@pytest.fixture(scope="module")
def vel_run(adk_h5, tmp_path_factory):
    """A tiny velocity-conditioned flow trained for one epoch by the real train command (generative preset: time
    reversal on)."""
    d = tmp_path_factory.mktemp("velflow")
    (d / "c.yaml").write_text(VEL_CONFIG)
    run_cli("train", adk_h5, "-o", d / "run", "--preset", "generative", "--config", d / "c.yaml", "--quiet",
            "--device", "cpu", expect=0)
    return d / "run"


def test_checkpoint_round_trip(vel_run):
    """The checkpoint holds tensors and plain data only (weights-only load) and rebuilds the same sampler."""
    from eghn_md.train.checkpoint import load_model

    raw = torch.load(vel_run / "model.pt", weights_only=True)
    assert raw["model_config"]["flow_velocity"] is True and raw["train_config"]["train"]["time_reversal"]
    model, _ = load_model(vel_run / "model.pt")
    assert not is_markov(model)
    fresh = build_model(ModelConfig.from_dict(raw["model_config"]))
    fresh.load_state_dict(raw["state_dict"])
    fresh.eval()
    b = random_graph(214, node_in=model.config.node_in, edge_in=model.config.edge_in,
                     generator=torch.Generator().manual_seed(0))
    b = b.replace(pos=b.pos.float(), vel=b.vel.float(), h=b.h.float(), edge_attr=b.edge_attr.float(), target=None)
    z = torch.randn(214, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(b, noise=z).pos, fresh(b, noise=z).pos, atol=0, rtol=0)


def test_rollout_from_one_structure_names_what_works(vel_run, tmp_path):
    from MDAnalysisTests.datafiles import PDB_small  # adk_open.pdb: one frame

    res = run_cli("rollout", vel_run / "model.pt", PDB_small, "--steps", "2", "-o", tmp_path / "o.dcd")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    for word in ("velocity channel (flow_velocity: true)", "--frame", "--preset", "without flow_velocity"):
        assert word in res.output
    assert not list(tmp_path.iterdir())


def test_rollout_and_ensemble_from_a_trajectory_use_the_frame_before(vel_run, adk, tmp_path):
    from eghn_md.rollout.ensemble import ensemble_rollout
    from eghn_md.rollout.start import open_start

    res = run_cli("rollout", vel_run / "model.pt", adk["psf"], adk["dcd"], "--steps", "2", "--replicas", "2",
                  "-o", tmp_path / "o.dcd", "--json", "--quiet", expect=0)
    summary = json.loads(res.stdout)
    assert summary["start_frame"] == 5 and summary["replicas"] == 2  # one horizon in: the first frame with a velocity
    st = open_start(vel_run / "model.pt", adk["psf"], [adk["dcd"]], frame=5, device="cpu")
    x0 = torch.as_tensor(st.frames[0]).expand(2, -1, -1).clone()
    kw = dict(starts=x0, h=st.system.h, bonds=st.system.bonds, cutoff=st.cutoff, steps=1, seed=2)
    with pytest.raises(ValueError, match="needs x_prev"):
        ensemble_rollout(st.model, **kw)
    prev = torch.as_tensor(st.x_prev).expand(2, -1, -1).clone()
    a = ensemble_rollout(st.model, x_prev=prev, **kw).frames[0][1]
    b = ensemble_rollout(st.model, x_prev=2 * x0 - prev, **kw).frames[0][1]  # the velocity reversed
    assert np.abs(a - b).max() > 1e-4
