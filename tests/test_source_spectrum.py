"""The spectral source of the generative flow (``model: {spectral_source: true}``): the noise against a direct
computation, the fit against a known spectrum, exact E(3) / permutation equivariance and batch independence of
sampling with it (float64), configuration checks, and training → checkpoint → rollout through the CLI."""

import math

import numpy as np
import pytest
import torch

from _data import run_cli
from eghn_md.errors import UsageError
from eghn_md.models import ModelConfig, build_model
from eghn_md.models.generative import centred_noise
from eghn_md.models.source_spectrum import (
    N_KNOTS,
    SPECTRUM_CUTOFF,
    fit_spectrum,
    knots,
    laplacian_modes,
    spectral_noise,
    spectrum_at,
)
from eghn_md.testing.equivariance import (
    assert_batch_independent,
    assert_equivariant,
    assert_permutation_equivariant,
)
from eghn_md.testing.synthetic import random_batch, random_graph
from test_generative import _denoise, _sample

SIZES = (6, 9, 4)
#: a spectrum that falls with λ like the AdK data's (soft modes 10–30× the stiff ones)
SPECTRUM = [float(30.0 / (1.0 + k)) for k in np.logspace(-1.3, 1.9, N_KNOTS)]


def _chain(n, seed=0):
    """(n, 3) [Å] a compact random chain (3.8 Å steps), connected at the spectrum's cutoff."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=1) * 3.8
    return torch.cumsum(steps, dim=0) * 0.5


def _reference_matrix(pos, values):
    """U diag(√f(λ)) Uᵀ from a Laplacian built pair by pair and numpy's eigh and interpolation."""
    x = pos.numpy()
    n = len(x)
    lap = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j and np.linalg.norm(x[i] - x[j]) < SPECTRUM_CUTOFF:
                lap[i, j] = -1.0
        lap[i, i] = -lap[i].sum()
    lam, u = np.linalg.eigh(lap)
    logk = np.log(knots().numpy())
    f = np.exp(np.interp(np.log(np.clip(lam, 1e-300, None)), logk, np.log(values)))
    f[lam <= 1e-6 * lam.max()] = 0.0
    return u @ np.diag(np.sqrt(f)) @ u.T


def test_noise_matches_a_direct_computation():
    pos = _chain(12)
    z = torch.randn(12, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ptr = torch.tensor([0, 12])
    got = spectral_noise(z, pos, ptr, SPECTRUM)
    want = _reference_matrix(pos, SPECTRUM) @ z.numpy()
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)


def test_a_flat_spectrum_is_the_centred_isotropic_noise():
    pos = torch.cat([_chain(10, 0), _chain(7, 1)])
    ptr = torch.tensor([0, 10, 17])
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([10, 7]))
    z = torch.randn(17, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = spectral_noise(z, pos, ptr, [1.0] * N_KNOTS)
    torch.testing.assert_close(got, centred_noise(z, batch, 2), atol=1e-10, rtol=0)


def test_equal_and_mixed_graph_sizes_agree():
    """One batched eigendecomposition for equal sizes, one per graph otherwise: the same numbers."""
    a, b = _chain(8, 3), _chain(8, 4)
    z = torch.randn(16, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    both = spectral_noise(z, torch.cat([a, b]), torch.tensor([0, 8, 16]), SPECTRUM)
    alone = torch.cat([spectral_noise(z[:8], a, torch.tensor([0, 8]), SPECTRUM),
                       spectral_noise(z[8:], b, torch.tensor([0, 8]), SPECTRUM)])
    torch.testing.assert_close(both, alone, atol=1e-10, rtol=0)


def test_autocast_does_not_lower_the_precision():
    pos = _chain(10).float()
    z = torch.randn(10, 3, generator=torch.Generator().manual_seed(4))
    ptr = torch.tensor([0, 10])
    plain = spectral_noise(z, pos, ptr, SPECTRUM)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = spectral_noise(z, pos, ptr, SPECTRUM)
    assert cast.dtype == torch.float32
    torch.testing.assert_close(cast, plain, atol=1e-5, rtol=0)


def test_fit_recovers_a_known_spectrum():
    """Displacements drawn with the spectrum's covariance: the fitted f matches it on the modes (to sampling
    error), scaled to mean 1."""
    pos = torch.stack([_chain(24, s) for s in range(4)])
    gen = torch.Generator().manual_seed(0)
    starts = pos.repeat(300, 1, 1)
    z = torch.randn(starts.shape, generator=gen, dtype=torch.float64)
    disp = torch.cat([spectral_noise(z[k], starts[k], torch.tensor([0, 24]), SPECTRUM)[None]
                      for k in range(len(starts))])
    fitted = fit_spectrum(starts, starts + disp)
    assert len(fitted) == N_KNOTS and min(fitted) > 0
    lam, _ = laplacian_modes(pos)
    live = lam > 1e-6 * lam.amax(dim=1, keepdim=True)
    want = spectrum_at(lam[live], torch.tensor(SPECTRUM, dtype=torch.float64))
    got = spectrum_at(lam[live], torch.tensor(fitted, dtype=torch.float64))
    assert float(got.mean()) == pytest.approx(1.0, abs=1e-9)
    ratio = got / (want / want.mean())
    assert float((ratio - 1).abs().max()) < 0.2, ratio


def test_fit_refuses_frames_that_do_not_move():
    pos = _chain(10)[None].repeat(3, 1, 1)
    with pytest.raises(ValueError, match="do not move"):
        fit_spectrum(pos, pos.clone())


def _model(sizes_prior=None, *, steps=3, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(name="eghn", node_in=4, edge_in=2, hidden=8, n_layers=2, n_pool_layers=2, n_clusters=3,
                      length_scale=3.0, vel_scale=1.0, disp_scale=1.5, generative=True, sample_steps=steps,
                      spectral_source=True, source_spectrum=SPECTRUM)
    return build_model(cfg).double().eval()


@pytest.mark.parametrize("fn", [_sample, _denoise])
def test_sampling_and_denoising_are_e3_and_permutation_equivariant(fn):
    b = random_batch(SIZES, node_in=4, edge_in=2)
    assert_equivariant(fn(_model()), b, atol=1e-10, reflections=True, n_trials=2)
    assert_permutation_equivariant(fn(_model()), b, atol=1e-10)


def test_replicas_are_batch_independent():
    model = _model()
    gen = torch.Generator().manual_seed(3)
    g = random_graph(7, node_in=4, edge_in=2, generator=gen)
    replicas = [g.replace(vel=torch.randn(7, 3, generator=gen, dtype=torch.float64)) for _ in range(4)]
    assert_batch_independent(_sample(model), replicas, atol=1e-10)


def test_the_source_differs_from_the_isotropic_one():
    """Same noise, same weights: the spectral model's source (and so its sample) is not the isotropic model's."""
    b = random_batch((8,), node_in=4, edge_in=2)
    spec = _model()
    iso = build_model(ModelConfig(**{**spec.config.to_dict(), "spectral_source": False,
                                     "source_spectrum": None})).double().eval()
    iso.load_state_dict(spec.state_dict())
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float((spec.source_noise(b, z) - iso.source_noise(b, z)).abs().max()) > 1e-2
    with torch.no_grad():
        assert float((spec(b, noise=z).pos - iso(b, noise=z).pos).abs().max()) > 1e-3


def test_config_checks():
    base = dict(name="eghn", node_in=4, edge_in=2, generative=True)
    with pytest.raises(UsageError, match="spectral_source needs a generative model"):
        ModelConfig(**{**base, "generative": False}, spectral_source=True)
    with pytest.raises(UsageError, match=f"list of {N_KNOTS} finite numbers > 0"):
        ModelConfig(**base, spectral_source=True, source_spectrum=[1.0, 2.0])
    with pytest.raises(UsageError, match="only read with spectral_source"):
        ModelConfig(**base, source_spectrum=[1.0] * N_KNOTS)
    model = build_model(ModelConfig(**base, spectral_source=True)).double()
    with pytest.raises(ValueError, match="no source_spectrum"):
        model(random_batch((5,), node_in=4, edge_in=2))


def test_knots_cover_calpha_graphs():
    k = knots()
    assert k.shape == (N_KNOTS,) and float(k[0]) < 0.3 and float(k[-1]) > 60
    assert bool((k[1:] > k[:-1]).all()) and math.isclose(float(k[1] / k[0]), float(k[-1] / k[-2]), rel_tol=1e-9)


SPECTRAL_CONFIG = """\
model: {spectral_source: true, hidden: 8, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1, n_clusters: 4,
        sample_steps: 2}
data: {horizon: 5, window_stride: 6}
train: {epochs: 1, batch_size: 8}
"""


def test_train_fits_the_spectrum_and_rolls_out_from_one_structure(adk_h5, tmp_path):
    from MDAnalysisTests.datafiles import PDB_small  # adk_open.pdb

    (tmp_path / "c.yaml").write_text(SPECTRAL_CONFIG)
    run_cli("train", adk_h5, "-o", tmp_path / "run", "--preset", "generative", "--config", tmp_path / "c.yaml",
            "--quiet", "--device", "cpu", expect=0)
    cfg = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model_config"]
    spec = cfg["source_spectrum"]
    assert cfg["spectral_source"] and len(spec) == N_KNOTS and min(spec) > 0
    assert spec[0] > 3 * spec[-1]  # AdK's soft modes move most
    res = run_cli("rollout", tmp_path / "run" / "model.pt", PDB_small, "--steps", "3", "--replicas", "2",
                  "-o", tmp_path / "o.dcd", "--quiet", expect=0)
    assert "Traceback" not in res.output
