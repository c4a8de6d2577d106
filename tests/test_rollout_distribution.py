"""Distributional rollout metrics (eghn_md.rollout.distribution) against cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from eghn_md.errors import DataError
from eghn_md.rollout.distribution import (
    compare_ensembles,
    js_distance,
    mean_structure,
    pairwise_js,
    reference_floor,
    rmsf,
    superpose,
    w2_exact,
)


def _chain(n: int = 30) -> np.ndarray:
    """(n, 3) [Å] a helix-like chain with Cα–Cα 3.8 Å spacing, not symmetric (so superposition is unique)."""
    t = np.arange(n)
    x = np.stack([2.3 * np.cos(1.75 * t), 2.3 * np.sin(1.75 * t), 1.5 * t + 0.02 * t**2], axis=1)
    return x - x.mean(axis=0)


def _harmonic(sigma: np.ndarray, t: int, seed: int) -> np.ndarray:
    """(t, N, 3) [Å] the chain with independent isotropic Gaussian noise of std ``sigma[i]`` per coordinate."""
    rng = np.random.default_rng(seed)
    return _chain(len(sigma))[None] + sigma[None, :, None] * rng.standard_normal((t, len(sigma), 3))


def test_superpose_matches_mdanalysis_and_undoes_rotation():
    from MDAnalysis.analysis.align import rotation_matrix

    x = _chain()
    rng = np.random.default_rng(1)
    frames = np.stack([x @ Rotation.random(random_state=k).as_matrix().T + rng.normal(size=3) * 5 for k in range(6)])
    frames += 0.1 * rng.standard_normal(frames.shape)
    got = superpose(frames, x)
    for f, g in zip(frames, got, strict=True):
        r, _ = rotation_matrix(f - f.mean(axis=0), x)
        np.testing.assert_allclose(g, (f - f.mean(axis=0)) @ np.asarray(r).T, atol=1e-8)
    assert np.sqrt(((got - x) ** 2).sum(axis=2).mean()) < 0.2


def test_harmonic_rmsf_known_and_rotation_invariant():
    sigma = np.linspace(0.2, 1.0, 30)
    traj = _harmonic(sigma, 4000, seed=0)
    np.testing.assert_allclose(rmsf(traj), np.sqrt(3) * sigma, rtol=0.04)  # isotropic: RMSF = √3 σ (lab frame)
    even = _harmonic(np.full(30, 0.5), 4000, seed=1)
    fitted = rmsf(superpose(even, mean_structure(even)))
    # the fit removes 6 of the 3N degrees of freedom of uniform isotropic noise: <RMSF²> = 3σ²(3N − 6)/3N
    assert np.sqrt((fitted**2).mean()) == pytest.approx(np.sqrt(3 * 0.25 * (90 - 6) / 90), rel=0.01)
    spun = np.stack([fr @ Rotation.random(random_state=k).as_matrix().T + 7.0 for k, fr in enumerate(even)])
    np.testing.assert_allclose(rmsf(superpose(spun, mean_structure(spun))), fitted, atol=1e-6)


def test_w2_of_two_gaussians_closed_form():
    rng = np.random.default_rng(0)
    mu = np.array([3.0, -4.0])  # equal covariance: W2 = |μ1 − μ2| = 5
    cov = np.array([[2.0, 0.6], [0.6, 1.0]])
    a = rng.multivariate_normal([0, 0], cov, size=700)
    b = rng.multivariate_normal(mu, cov, size=700)
    assert w2_exact(a, b) == pytest.approx(5.0, abs=0.15)
    assert w2_exact(a, a) == 0.0
    c = rng.multivariate_normal([0, 0], 4 * np.eye(2), size=700)  # N(0, 4I) vs N(0, I): W2 = √2·(2 − 1)
    d = rng.multivariate_normal([0, 0], np.eye(2), size=700)
    assert w2_exact(c, d) == pytest.approx(np.sqrt(2), abs=0.15)


def test_js_identical_zero_disjoint_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    assert js_distance(x, x) == 0.0
    assert js_distance(x, x[::-1].copy()) == 0.0
    # reference uniform over 50 bins, model entirely beyond its range (counted in the last bin)
    p, q = np.full(50, 1 / 50), np.eye(50)[49]
    m = (p + q) / 2
    kl = lambda a, b: float(np.sum(a[a > 0] * np.log2(a[a > 0] / b[a > 0])))  # noqa: E731
    expected = np.sqrt((kl(p, m) + kl(q, m)) / 2)
    assert js_distance(np.arange(50) + 0.5, np.full(20, 99.0)) == pytest.approx(expected, rel=1e-9)
    traj = _harmonic(np.full(12, 0.5), 300, seed=2)
    assert pairwise_js(traj, traj) == 0.0
    assert pairwise_js(traj, traj + np.array([0.0, 0.0, 0.0])) == 0.0
    assert pairwise_js(traj, 1.5 * traj) > 0.3


def test_compare_identical_and_floor():
    sigma = np.linspace(0.2, 0.8, 25)
    ref = [_harmonic(sigma, 600, seed=0)]
    same = compare_ensembles(reference=ref, model=ref, step_ps=1.0)
    assert same["rmsf"]["pearson_r"] == pytest.approx(1.0)
    assert same["rmsf"]["ratio"] == pytest.approx(1.0)
    assert same["pca"]["w2_A"] == pytest.approx(0.0, abs=1e-9)
    assert same["js"]["rg"] == 0.0 and same["js"]["pairwise_distances"] == 0.0
    other = [_harmonic(sigma, 600, seed=1)]
    floor = compare_ensembles(reference=ref, model=other, step_ps=1.0)
    assert floor["rmsf"]["pearson_r"] > 0.95 and 0.9 < floor["rmsf"]["ratio"] < 1.1
    stiff = compare_ensembles(reference=ref, model=[_harmonic(0.3 * sigma, 600, seed=1)], step_ps=1.0)
    assert stiff["rmsf"]["ratio"] == pytest.approx(0.3, rel=0.1)
    assert stiff["js"]["pairwise_distances"] > 2 * floor["js"]["pairwise_distances"]
    assert stiff["pca"]["w2_A"] > 1.5 * floor["pca"]["w2_A"]
    halves = reference_floor(ref, step_ps=1.0)
    assert halves["floor_kind"] == "halves" and halves["n_frames"] == {"reference": 300, "model": 300}
    runs = reference_floor(ref + other, step_ps=1.0)
    assert runs["floor_kind"] == "trajectories" and runs["pca"]["w2_A"] == pytest.approx(floor["pca"]["w2_A"])
    import json

    json.dumps(same)


def test_node_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="model trajectory 0 has 10 nodes, the reference 25"):
        compare_ensembles(reference=[_harmonic(np.ones(25), 5, 0)], model=[_harmonic(np.ones(10), 5, 0)], step_ps=1.0)


def test_states_and_validity_of_hopping_ensembles():
    from eghn_md.rollout.states import two_states
    from tests.test_rollout_states import _ca

    closed, opened = _ca("PDB_closed"), _ca("PDB_small")
    states = two_states(ref_a=closed, ref_b=opened)
    rng = np.random.default_rng(0)

    def hop(blocks):
        x = np.concatenate([np.repeat((closed, opened)[s][None], n, axis=0) for s, n in blocks])
        return x + 0.05 * rng.standard_normal(x.shape)

    # reference: 2 frames per model step; 4 transitions in 200 frames = 100 steps
    ref = [hop([(0, 40), (1, 60), (0, 40), (1, 40), (0, 20)])]
    model = [hop([(0, 30), (1, 21)]), hop([(1, 51)])]  # 1 transition in 100 steps
    model[0][5, 100:] += np.array([6.0, 0.0, 0.0])  # one frame with a chain break between nodes 99 and 100
    n = len(closed)
    bonds = np.stack([np.arange(n - 1), np.arange(1, n)])
    out = compare_ensembles(reference=ref, model=model, states=states, step_ps=10.0, reference_stride=2,
                            bonds=bonds, max_samples=60)
    r, m = out["states"]["reference"], out["states"]["model"]
    assert r["transitions"] == {"closed_to_open": 2, "open_to_closed": 2} and r["n_steps"] == 99
    assert r["per_1000_steps"]["closed_to_open"] == pytest.approx(2000 / 99)
    assert r["population"] == pytest.approx({"closed": 0.5, "open": 0.5})
    assert r["mean_dwell_ps"] == {"closed": 200.0, "open": 250.0}  # complete visits: 20 steps closed, 30, 20 open
    assert m["transitions"] == {"closed_to_open": 1, "open_to_closed": 0} and m["n_steps"] == 100
    assert m["population"]["open"] == pytest.approx(72 / 102)
    # the reference's error from its rates: 2 transitions out of 49 closed steps with a next one, 2 out of 50 open;
    # the model never goes back to closed, so no error, and the gap has none either
    a, b = 2 / 49, 2 / 50
    assert r["population_se"] == pytest.approx((0.25 / 100 * (2 - a - b) / (a + b)) ** 0.5)
    assert m["population_se"] is None
    assert out["states"]["population_gap"] == {"state": "open", "model_minus_reference": pytest.approx(72 / 102 - 0.5),
                                               "se": None, "z": None}
    v = out["validity"]
    assert v["reference"]["n_frames"] == 200 and v["model"]["n_frames"] == 102
    assert v["reference"]["frames_with_break"] == 0 and v["model"]["frames_with_break"] == 1
