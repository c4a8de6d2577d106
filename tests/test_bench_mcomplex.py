"""M-complex simulator and data set: rigid complexes, conservation laws, file round trip, graph layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eghn_md.benchmarks import mcomplex as mc
from eghn_md.errors import UsageError


def _tiny(**kw) -> mc.MComplexConfig:
    base = dict(n_complex=2, mean_size=3, n_train=3, n_val=2, n_test=2, frame_in=1, frame_out=3, sample_every=20)
    base.update(kw)
    return mc.MComplexConfig(**base)


def test_sizes_distinct_in_range():
    rng = np.random.default_rng(0)
    for m, a in [(3, 3), (5, 5), (10, 10)]:
        s = mc.sample_complex_sizes(m, a, rng)
        assert len(s) == m and len(set(s.tolist())) == m
        assert s.min() >= 2 and s.max() <= 2 * a - 2


def test_config_rejects_impossible_sizes():
    with pytest.raises(UsageError, match="distinct"):
        mc.MComplexConfig(n_complex=5, mean_size=3)
    with pytest.raises(UsageError, match="dynamics"):
        mc.MComplexConfig(dynamics="nope")


@pytest.mark.parametrize("dynamics", mc.DYNAMICS)
def test_intra_complex_distances_constant(dynamics):
    cfg = _tiny(dynamics=dynamics)
    sim = mc.simulate(np.array([2, 3, 4]), 4, config=cfg, rng=np.random.default_rng(1), record=(0, 1, 3))
    p, comp = sim["pos"], sim["complex"]
    same = (comp[:, None] == comp[None]) & ~np.eye(len(comp), dtype=bool)
    d = np.linalg.norm(p[:, :, :, None] - p[:, :, None, :], axis=-1)[..., same]
    rel = np.abs(d - d[:, :1]) / d[:, :1]
    assert rel.max() < 1e-6
    # and the complexes do move
    assert np.abs(p[:, -1] - p[:, 0]).max() > 1e-3


def test_rigid_free_body_conserves_momenta():
    """One complex, internal forces only (no clipping): centre velocity and angular momentum are constant."""
    cfg = mc.MComplexConfig(n_complex=1, mean_size=3, frame_in=0, frame_out=5, sample_every=40, max_force=1e12,
                            max_speed=1e9, dynamics="rigid")
    sim = mc.simulate(np.array([4]), 3, config=cfg, rng=np.random.default_rng(2), record=range(6))
    x, v = sim["pos"], sim["vel"]
    vc = v.mean(axis=2)
    xc = x.mean(axis=2, keepdims=True)
    ang = np.cross(x - xc, v - vc[:, :, None]).sum(axis=2)
    np.testing.assert_allclose(vc, vc[:, :1].repeat(vc.shape[1], 1), atol=1e-10)
    np.testing.assert_allclose(ang, ang[:, :1].repeat(ang.shape[1], 1), rtol=1e-6, atol=1e-9)


def test_generate_is_deterministic_and_roundtrips(tmp_path):
    cfg = _tiny()
    a, b = mc.generate(cfg), mc.generate(cfg)
    for k in a:
        if k != "meta":
            np.testing.assert_array_equal(a[k], b[k])
    path = tmp_path / "d.npz"
    mc.save(a, path)
    c = mc.load(path)
    np.testing.assert_array_equal(c["test_pos_out"], a["test_pos_out"])
    assert c["meta"]["config"]["n_complex"] == 2


def test_dataset_graph_layout():
    cfg = _tiny(system_types=3, n_train=6)
    data = mc.generate(cfg)
    ds = mc.MComplexDataset(data, "train")
    assert len(ds) == 6
    sizes = {g.num_nodes for g in ds}
    assert sizes <= {sum(s) for s in data["meta"]["system_sizes"]}
    ptr = data["train_ptr"]
    for gi, g in enumerate(ds):
        n = g.num_nodes
        assert g.edge_index.shape == (2, n * (n - 1))
        assert g.edge_attr.shape == (n * (n - 1), 2)
        comp = torch.as_tensor(data["train_complex"][ptr[gi] : ptr[gi + 1]])
        same = comp[g.edge_index[0]] == comp[g.edge_index[1]]
        assert torch.equal(g.edge_attr[:, 1].bool(), same)
        assert g.local_edge_index.shape[1] == int(same.sum())
        assert set(g.edge_attr[:, 0].tolist()) <= {-1.0, 1.0}
        torch.testing.assert_close(g.h[:, 0], g.vel.norm(dim=1))
        assert g.target.shape == g.pos.shape
    assert len(mc.MComplexDataset(data, "val", max_samples=1)) == 1
