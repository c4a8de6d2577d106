"""Two-state definition (eghn_md.rollout.states): basin-specific contacts, hysteresis, summaries with known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from eghn_md.errors import DataError, UsageError
from eghn_md.rollout.states import (
    contact_fractions,
    order_parameter,
    population_se,
    state_series,
    state_summary,
    two_states,
)
from tests._data import datafile, mda_positions


def _ca(name: str) -> np.ndarray:
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(datafile(name)).select_atoms("name CA").positions.astype(np.float64)


@pytest.fixture(scope="module")
def adk_states():
    return two_states(ref_a=_ca("PDB_closed"), ref_b=_ca("PDB_small"))  # 1AKE closed, 4AKE open


def test_crystal_structures_classify(adk_states):
    closed, opened = _ca("PDB_closed"), _ca("PDB_small")
    q = contact_fractions(adk_states, np.stack([closed, opened]))
    assert q.shape == (2, 2)
    assert q[0, 0] > 0.95 and q[0, 1] < 0.05  # closed: its own contacts formed, the open-only ones broken
    assert q[1, 1] > 0.95 and q[1, 0] < 0.05
    assert state_series(adk_states, np.stack([closed, opened])).tolist() == [0, 1]
    assert adk_states.describe()["n_contacts"] == [29, 4]  # the numbers the module docstring gives
    assert (np.abs(np.diff(adk_states.pairs_a, axis=1)) >= 4).all()


def test_contacts_are_rotation_and_translation_invariant(adk_states):
    from scipy.spatial.transform import Rotation

    x = _ca("PDB_small")
    y = x @ Rotation.random(random_state=3).as_matrix().T + np.array([10.0, -4.0, 2.0])
    np.testing.assert_allclose(contact_fractions(adk_states, y), contact_fractions(adk_states, x), atol=1e-12)


def test_dims_transition_goes_closed_to_open(adk_states):
    pos, _ = mda_positions(datafile("PSF"), datafile("DCD"), "name CA")  # DIMS closed → open
    s = state_series(adk_states, pos)
    assert s[0] == 0 and s[-1] == 1
    summary = state_summary(s, dt_ps=1.0, names=adk_states.names)
    assert summary["transitions"] == {"closed_to_open": 1, "open_to_closed": 0}


def _hopping(adk_states, blocks: list[tuple[int, int]], noise: float, seed: int = 0) -> np.ndarray:
    """Frames of the reference structure of each (state, length) block, with Gaussian noise [Å]."""
    refs = (_ca("PDB_closed"), _ca("PDB_small"))
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.repeat(refs[s][None], n, axis=0) for s, n in blocks])
    return x + noise * rng.standard_normal(x.shape)


def test_hopping_trajectory_known_counts(adk_states):
    blocks = [(0, 30), (1, 20), (0, 10), (1, 40)]
    s = state_series(adk_states, _hopping(adk_states, blocks, noise=0.3))
    truth = np.concatenate([np.full(n, k) for k, n in blocks])
    np.testing.assert_array_equal(s, truth)
    out = state_summary(s, dt_ps=2.0, names=("closed", "open"))
    assert out["transitions"] == {"closed_to_open": 2, "open_to_closed": 1}
    assert out["population"] == pytest.approx({"closed": 0.4, "open": 0.6})
    assert out["mean_dwell_ps"] == {"closed": 20.0, "open": 40.0}  # complete visits only: closed 10, open 20 frames
    assert out["n_complete_visits"] == {"closed": 1, "open": 1}


def test_hysteresis_counts_a_noisy_crossing_once(adk_states):
    """ΔQ that wobbles around the barrier (both signs, inside the thresholds) between two basins: one transition."""
    dq = np.concatenate([np.full(10, -0.8), 0.2 * np.sin(np.arange(40)), np.full(10, 0.8)])
    np.testing.assert_array_less(np.abs(dq[10:50]), adk_states.high)
    hard = np.sign(dq)
    assert (np.diff(hard) != 0).sum() > 10  # a single cut at 0 would count many transitions
    s = _series_from_dq(adk_states, dq)
    assert s[:50].tolist() == [0] * 50 and s[50:].tolist() == [1] * 10
    assert state_summary(s, dt_ps=1.0)["transitions"] == {"A_to_B": 1, "B_to_A": 0}


def _series_from_dq(states, dq: np.ndarray) -> np.ndarray:
    """state_series of real frames whose ΔQ is close to ``dq``: each is picked on the straight line from A to B
    (where ΔQ grows monotonically) and lies on the same side of each threshold as its target."""
    a, b = _ca("PDB_closed"), _ca("PDB_small")
    lam = np.linspace(0.0, 1.0, 401)
    path = (1 - lam)[:, None, None] * a + lam[:, None, None] * b
    curve = order_parameter(states, path)
    assert np.all(np.diff(curve) > -1e-9)  # monotone along the line, so every target is hit by one frame
    frames = path[np.searchsorted(curve, dq).clip(0, len(lam) - 1)]
    got = order_parameter(states, frames)
    for t in (states.low, states.high):
        assert np.all(np.sign(got - t) == np.sign(dq - t))
    return state_series(states, frames)


def test_uncommitted_start_and_ensembles(adk_states):
    s1 = np.array([-1, -1, 0, 0, 1, 1, 1, 0], dtype=np.int8)
    s2 = np.array([1, 1, 1, 1], dtype=np.int8)
    out = state_summary([s1, s2], dt_ps=1.0, names=("c", "o"))
    assert out["n_frames"] == 12 and out["n_committed"] == 10
    assert out["population"] == pytest.approx({"c": 0.3, "o": 0.7})
    assert out["transitions"] == {"c_to_o": 1, "o_to_c": 1}
    assert out["mean_dwell_ps"] == {"c": None, "o": 3.0}
    empty = state_summary(np.full(5, -1, dtype=np.int8), dt_ps=1.0)
    assert empty["population"] == {"A": None, "B": None} and empty["n_committed"] == 0


def test_bad_inputs(adk_states):
    a = _ca("PDB_closed")
    with pytest.raises(DataError, match="214 and 213 nodes"):
        two_states(ref_a=a, ref_b=a[:-1])
    with pytest.raises(DataError, match="0 closed-only"):
        two_states(ref_a=a, ref_b=a)
    with pytest.raises(UsageError, match="low < high"):
        two_states(ref_a=a, ref_b=_ca("PDB_small"), low=0.5, high=0.2)
    with pytest.raises(DataError, match="10 nodes but the state definition has 214"):
        state_series(adk_states, np.zeros((3, 10, 3)))


def test_states_from_all_atom_files_pick_the_ca(adk_states):
    from eghn_md.rollout.states import states_from_files

    s = states_from_files(datafile("PDB_closed"), datafile("PDB_small"), n_nodes=214)
    assert s.names == ("adk_closed", "adk_open")
    np.testing.assert_array_equal(s.pairs_a, adk_states.pairs_a)
    np.testing.assert_allclose(s.r0_b, adk_states.r0_b, atol=1e-5)
    with pytest.raises(DataError, match="has 214 Cα nodes but the data has 200"):
        states_from_files(datafile("PDB_closed"), datafile("PDB_small"), n_nodes=200)


def _markov_runs(rng, *, leave: tuple[float, float], frames: int, runs: int) -> np.ndarray:
    """(runs, frames) int8 two-state Markov chains leaving state k with probability ``leave[k]`` per frame, each
    started from the stationary distribution."""
    a, b = leave
    s = np.empty((runs, frames), dtype=np.int8)
    s[:, 0] = rng.random(runs) < a / (a + b)
    u = rng.random((runs, frames))
    for t in range(1, frames):
        stay = u[:, t] >= np.where(s[:, t - 1] == 0, a, b)
        s[:, t] = np.where(stay, s[:, t - 1], 1 - s[:, t - 1])
    return s


def test_population_se_matches_the_scatter_of_independent_runs():
    """The reported standard error of a population against the spread of the same population over many independent
    runs (one chain each, and eight replicas pooled), for slow and fast switching."""
    rng = np.random.default_rng(7)
    for leave in ((1 / 14, 1 / 17), (1 / 40, 1 / 90), (0.5, 0.3)):
        runs = _markov_runs(rng, leave=leave, frames=1250, runs=800)
        pops = runs.mean(axis=1)
        ses = [state_summary(r, dt_ps=1.0)["population_se"] for r in runs[:200]]
        assert np.median(ses) == pytest.approx(pops.std(), rel=0.15)
        pooled = runs.reshape(100, 8, 1250)
        se8 = [state_summary(list(r), dt_ps=1.0)["population_se"] for r in pooled[:50]]
        assert np.median(se8) == pytest.approx(pooled.mean(axis=(1, 2)).std(), rel=0.25)


def test_population_se_needs_transitions_both_ways():
    s = np.array([0] * 5 + [1] * 10, dtype=np.int8)  # no way back: no rate to read the correlation from
    assert state_summary(s, dt_ps=1.0)["population_se"] is None
    # one transition each way, 4 + 3 closed frames (6 with a next frame), 6 open: leave 1/6 and 1/6, p = 6/13
    s = np.array([-1] + [0] * 4 + [1] * 6 + [0] * 3, dtype=np.int8)
    a = b = 1 / 6
    want = (6 / 13 * 7 / 13 / 13 * (2 - a - b) / (a + b)) ** 0.5
    assert state_summary(s, dt_ps=1.0)["population_se"] == pytest.approx(want)
    with pytest.raises(UsageError, match="dwell times >= 1"):
        population_se(0.5, 100, dwell_frames=(0.5, 3.0))
    assert population_se(0.5, 100, dwell_frames=(1.0, 1.0)) == 0.0  # strictly alternating: no error
