"""The ensemble figure (eghn_md.export.ensemble_plots): written atomically in each format, with and without states."""

from __future__ import annotations

import numpy as np
import pytest

from eghn_md.errors import UsageError
from eghn_md.export.ensemble_plots import plot_ensembles
from eghn_md.rollout.states import two_states
from tests._data import leftovers
from tests.test_rollout_states import _ca


def _hops(seed: int, blocks) -> np.ndarray:
    refs = (_ca("PDB_closed"), _ca("PDB_small"))
    x = np.concatenate([np.repeat(refs[s][None], n, axis=0) for s, n in blocks])
    return x + 0.3 * np.random.default_rng(seed).standard_normal(x.shape)


@pytest.mark.parametrize("ext", ["png", "svg"])
def test_plot_ensembles_writes_a_figure(tmp_path, ext):
    states = two_states(ref_a=_ca("PDB_closed"), ref_b=_ca("PDB_small"))
    ref = [_hops(0, [(0, 40), (1, 40), (0, 20)])]
    model = [_hops(1, [(0, 25), (1, 25)]), _hops(2, [(1, 50)])]
    out = plot_ensembles(tmp_path / f"ens.{ext}", reference=ref, model=model, states=states, step_ps=2.0,
                         reference_stride=2, title="test")
    data = (tmp_path / f"ens.{ext}").read_bytes()
    assert out == str(tmp_path / f"ens.{ext}") and len(data) > 10_000
    assert data.startswith(b"\x89PNG") if ext == "png" else b"<svg" in data[:2000]
    assert leftovers(tmp_path) == []


def test_plot_ensembles_without_states_and_bad_format(tmp_path):
    ref = [_hops(0, [(0, 30)])]
    assert plot_ensembles(tmp_path / "rg.png", reference=ref, model=ref).endswith("rg.png")
    with pytest.raises(UsageError, match="not one of"):
        plot_ensembles(tmp_path / "x.gif", reference=ref, model=ref)
