"""Rollouts of a generative model: from one structure (MDAnalysisTests' adk_open.pdb), ensembles of replicas
(files, reproducibility for a seed), batching equal to separate rollouts, and the errors that name what works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _data import run_cli

GEN_CONFIG = """\
model: {name: eghn, generative: true, hidden: 16, n_layers: 1, n_pool_layers: 1, n_decoder_layers: 1,
        n_clusters: 4, sample_steps: 2}
data: {horizon: 5, window_stride: 3}
train: {epochs: 1, batch_size: 8, lr: 0.002, patience: 0, unroll_steps: 1, free_steps: 0, noise_std: 0.0,
        noise_scale: 0.0}
"""


@pytest.fixture(scope="module")
def gen_run(adk_h5, tmp_path_factory):
    """A tiny generative EGHN trained for one epoch through the real train command."""
    d = tmp_path_factory.mktemp("gen")
    (d / "c.yaml").write_text(GEN_CONFIG)
    res = run_cli("train", adk_h5, "-o", d / "run", "--config", d / "c.yaml", "--quiet", "--device", "cpu")
    assert res.exit_code == 0, res.output
    return d / "run"


@pytest.fixture(scope="module")
def open_pdb():
    from MDAnalysisTests.datafiles import PDB_small  # adk_open.pdb: the open AdK crystal structure, one frame

    return PDB_small


def _read(pdb, dcd) -> np.ndarray:
    import MDAnalysis as mda

    u = mda.Universe(str(pdb), str(dcd))
    return np.stack([u.atoms.positions.copy() for _ in u.trajectory])


def test_rollout_from_one_structure(gen_run, open_pdb, tmp_path):
    out = tmp_path / "o.dcd"
    res = run_cli("rollout", gen_run / "model.pt", open_pdb, "--steps", "3", "-o", out, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    import json

    s = json.loads(res.stdout)
    assert s["start_frame"] == 0 and s["replicas"] == 1 and s["steps"] == 3
    assert (tmp_path / "o.pdb").is_file() and (tmp_path / "o_validity.csv").is_file()
    x = _read(tmp_path / "o.pdb", out)
    assert x.shape == (s["steps_done"][0] + 1, 214, 3) and s["validity"]["n_frames"] == x.shape[0]
    assert any("one structure" in n for n in s["notes"]) and s["step_ps"] == pytest.approx(5.0)


def test_replicas_write_one_file_each_and_repeat_for_a_seed(gen_run, open_pdb, tmp_path):
    args = [gen_run / "model.pt", open_pdb, "--steps", "2", "--replicas", "3", "--quiet"]
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        res = run_cli("rollout", *args, "-o", tmp_path / f"{name}.dcd", "--seed", seed)
        assert res.exit_code == 0, res.output
    for name in "abc":
        assert (tmp_path / f"{name}.pdb").is_file() and not (tmp_path / f"{name}.dcd").exists()
        assert sorted(p.name for p in tmp_path.glob(f"{name}_r*.dcd")) == [f"{name}_r{k}.dcd" for k in range(3)]
    a = [_read(tmp_path / "a.pdb", tmp_path / f"a_r{k}.dcd") for k in range(3)]
    b = [_read(tmp_path / "b.pdb", tmp_path / f"b_r{k}.dcd") for k in range(3)]
    c = _read(tmp_path / "c.pdb", tmp_path / "c_r0.dcd")
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # the same seed: the same ensemble
    assert np.abs(a[0][1] - a[1][1]).max() > 1e-3  # replicas of one start differ
    assert np.abs(a[0][1] - c[1]).max() > 1e-3  # another seed, other samples
    rows = (tmp_path / "a_validity.csv").read_text().splitlines()
    assert rows[0].startswith("replica,frame,") and {r.split(",")[0] for r in rows[1:]} == {"0", "1", "2"}


def test_two_frame_model_given_one_structure_names_what_works(tiny_run, open_pdb, tmp_path):
    res = run_cli("rollout", tiny_run / "model.pt", open_pdb, "--steps", "2", "-o", tmp_path / "o.dcd")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "velocity" in res.output and "--preset" in res.output and "--frame" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_replicas_of_a_deterministic_model_are_refused(tiny_run, adk, tmp_path):
    res = run_cli("rollout", tiny_run / "model.pt", adk["psf"], adk["dcd"], "--steps", "2", "--replicas", "2",
                  "-o", tmp_path / "o.dcd")
    assert res.exit_code == 2 and "--replicas" in res.output and "generative" in res.output


def test_batched_replicas_equal_separate_rollouts(tiny_run, adk):
    """Different starts batched as one disjoint union step exactly as each alone (a deterministic model with a
    velocity channel: the x_prev path)."""
    from eghn_md.rollout.ensemble import ensemble_rollout
    from eghn_md.rollout.rollout import rollout
    from eghn_md.rollout.start import open_start

    st = [open_start(tiny_run / "model.pt", adk["psf"], [adk["dcd"]], frame=f, device="cpu") for f in (10, 40, 70)]
    model = st[0].model.double()
    h, bonds, cut = st[0].system.h.double(), st[0].system.bonds, st[0].cutoff
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    ens = ensemble_rollout(model, starts=torch.stack([t(s.frames[0]) for s in st]), h=h, bonds=bonds, cutoff=cut,
                           steps=3, x_prev=torch.stack([t(s.x_prev) for s in st]))
    for k, s in enumerate(st):
        alone = rollout(model, x_prev=t(s.x_prev), x0=t(s.frames[0]), h=h, bonds=bonds, cutoff=cut, steps=3)
        np.testing.assert_allclose(ens.frames[k], alone.frames, atol=1e-4)
        assert ens.stopped[k] == alone.stopped


def test_ensemble_does_not_depend_on_the_chunking(gen_run, open_pdb):
    """Replicas in passes of two or all at once: the same noise per replica, the same samples."""
    from eghn_md.rollout.ensemble import ensemble_rollout
    from eghn_md.rollout.start import open_start

    st = open_start(gen_run / "model.pt", open_pdb, [], frame=0, device="cpu")
    model = st.model.double()
    x = torch.as_tensor(st.frames[0], dtype=torch.float64).expand(5, -1, -1).clone()
    kw = dict(starts=x, h=st.system.h.double(), bonds=st.system.bonds, cutoff=st.cutoff, steps=2, seed=3)
    a = ensemble_rollout(model, max_chunk_nodes=0, **kw)
    b = ensemble_rollout(model, max_chunk_nodes=2 * x.shape[1], **kw)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        np.testing.assert_allclose(fa, fb, atol=1e-5)
    assert np.abs(a.frames[0][1] - a.frames[1][1]).max() > 1e-3


def test_rollout_hands_the_heap_back():
    """release_heap (called every HEAP_TRIM_STEPS rollout steps) runs glibc's malloc_trim where there is one, and is a
    no-op elsewhere; it can be called any number of times."""
    import ctypes.util
    import sys

    from eghn_md.utils import HEAP_TRIM_STEPS, release_heap

    first, second = release_heap(), release_heap()
    assert first is second and isinstance(first, bool) and HEAP_TRIM_STEPS >= 1
    if sys.platform.startswith("linux") and "musl" not in (ctypes.util.find_library("c") or ""):
        assert first  # glibc Linux, as CI runs


def test_replica_chunks_bound_the_nodes_and_balance_the_workers():
    from eghn_md.rollout.ensemble import replica_chunks

    assert replica_chunks(32, 214, max_chunk_nodes=4096) == [(0, 16), (16, 32)]  # 2 passes of <= 19, balanced
    assert replica_chunks(8, 214, max_chunk_nodes=4096) == [(0, 8)]
    assert replica_chunks(8, 214, max_chunk_nodes=4096, workers=2) == [(0, 4), (4, 8)]
    assert replica_chunks(5, 10, max_chunk_nodes=0, workers=3) == [(0, 2), (2, 4), (4, 5)]
    assert replica_chunks(2, 10, max_chunk_nodes=0, workers=4) == [(0, 1), (1, 2)]
    assert replica_chunks(3, 5000, max_chunk_nodes=4096) == [(0, 1), (1, 2), (2, 3)]  # one replica over the bound
    assert replica_chunks(0, 10, max_chunk_nodes=0) == []
    for r, n, m, w in ((32, 214, 4096, 1), (7, 100, 250, 2), (9, 50, 0, 4)):
        chunks = replica_chunks(r, n, max_chunk_nodes=m, workers=w)
        sizes = [b - a for a, b in chunks]
        assert chunks[0][0] == 0 and chunks[-1][1] == r
        assert all(c[1] == d[0] for c, d in zip(chunks[:-1], chunks[1:], strict=True))
        assert max(sizes) - min(sizes) <= 1 and (m == 0 or max(sizes) * n <= max(m, n))


def test_ensemble_does_not_depend_on_the_workers(gen_run, open_pdb, monkeypatch):
    """Passes run side by side on threads (each with its share of torch's threads and the caller's grad mode) or one
    after the other: the same samples, torch's thread count restored; small passes stay one after the other."""
    import eghn_md.rollout.ensemble as ensemble
    from eghn_md.rollout.ensemble import ensemble_rollout
    from eghn_md.rollout.start import open_start

    st = open_start(gen_run / "model.pt", open_pdb, [], frame=0, device="cpu")
    model = st.model.double()
    x = torch.as_tensor(st.frames[0], dtype=torch.float64).expand(5, -1, -1).clone()
    kw = dict(starts=x, h=st.system.h.double(), bonds=st.system.bonds, cutoff=st.cutoff, steps=2, seed=3,
              max_chunk_nodes=0)
    seen = []
    step = ensemble._in_parallel

    def spy(fn, items, workers):
        def checked(item):
            seen.append((torch.get_num_threads(), torch.is_grad_enabled()))
            return fn(item)
        return step(checked, items, workers)

    monkeypatch.setattr(ensemble, "_in_parallel", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        a = ensemble_rollout(model, workers=1, **kw)
        ensemble_rollout(model, workers=3, **kw)  # 5 × 214 nodes: passes below MIN_PARALLEL_NODES stay serial
        assert seen == []
        monkeypatch.setattr(ensemble, "MIN_PARALLEL_NODES", 1)  # now passes of 1–2 replicas go side by side
        b = ensemble_rollout(model, workers=3, **kw)
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)
    assert seen and set(seen) == {(1, False)}  # 4 // 3 threads each, under the rollout's no_grad
    for fa, fb in zip(a.frames, b.frames, strict=True):
        np.testing.assert_allclose(fa, fb, atol=1e-9)
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        ensemble_rollout(model, workers=0, **kw)
