"""Fuzzing the readers: random bytes, random truncations and random byte flips of trajectory, topology, dataset and
checkpoint files must end in a clean :class:`~eghn_md.errors.EghnError` (or a correct read), never another exception.

Budget: ``EGHN_FUZZ_EXAMPLES`` examples per test (default 30, so the default suite stays fast); a longer campaign:
``EGHN_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_readers.py``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eghn_md.errors import EghnError

EXAMPLES = int(os.environ.get("EGHN_FUZZ_EXAMPLES", "30"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 50,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def small(adk, tmp_path_factory):
    """A small consistent system (AdK Cα atoms, 10 frames) as PDB + DCD + XTC, its dataset, and a checkpoint."""
    import MDAnalysis as mda

    from _data import run_cli

    d = tmp_path_factory.mktemp("fuzz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(adk["psf"], adk["dcd"])
        ca = u.select_atoms("name CA")
        ca.write(str(d / "ca.pdb"))
        for ext in ("dcd", "xtc"):
            with mda.Writer(str(d / f"ca.{ext}"), ca.n_atoms) as w:
                for _ in u.trajectory[:10]:
                    w.write(ca)
    res = run_cli("preprocess", str(d / "ca.pdb"), str(d / "ca.dcd"), "-o", str(d / "ca.h5"),
                  "--quiet")
    assert res.exit_code == 0, res.output
    work = d / "work"
    work.mkdir()
    return {"dir": d, "work": work, "pdb": d / "ca.pdb", "dcd": d / "ca.dcd", "xtc": d / "ca.xtc",
            "h5": d / "ca.h5"}


def _mutate(original: bytes, data, kinds=("random", "truncate", "flip")) -> bytes:
    """Random bytes, a random truncation, or random byte flips of ``original``, chosen by hypothesis."""
    kind = data.draw(st.sampled_from(list(kinds)), label="kind")
    if kind == "random":
        return data.draw(st.binary(min_size=0, max_size=4096), label="bytes")
    if kind == "truncate":
        return original[: data.draw(st.integers(0, max(len(original) - 1, 0)), label="length")]
    out = bytearray(original)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(out) - 1), st.integers(0, 255)), min_size=1,
                               max_size=16), label="flips")
    for i, b in flips:
        out[i] = b
    return bytes(out)


def _clean(fn):
    """Run ``fn``; any exception other than an EghnError fails the test with the exception's type and text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    except EghnError:
        pass


def _read_everything(topology: Path, trajectory: Path) -> None:
    from eghn_md.io.readers import open_system

    with open_system(topology, [trajectory]) as system:
        atoms = system.select("name CA")
        for src in system.trajectories:
            for pos, _t in src.iter_blocks(atoms.indices, block=4):
                assert pos.shape[1:] == (atoms.n_atoms, 3)


# Byte flips inside an XTC's compressed coordinates corrupt the heap of MDAnalysis' C decoder (libxdrfile: no bounds
# checks on the compressed byte count and run lengths), killing the process with SIGABRT/SIGSEGV; no Python code can
# catch that, so XTC is fuzzed with random bytes and truncations only (see tests/README.md).
KINDS = {"dcd": ("random", "truncate", "flip"), "xtc": ("random", "truncate"), "pdb": ("random", "truncate", "flip")}


@pytest.mark.parametrize("ext", ["dcd", "xtc", "pdb"])
@fuzz
@given(data=st.data())
def test_trajectory_reader_fuzz(small, ext, data):
    path = small["work"] / f"t.{ext}"
    path.write_bytes(_mutate(small[ext].read_bytes(), data, KINDS[ext]))
    _clean(lambda: _read_everything(small["pdb"], path))


@fuzz
@given(data=st.data())
def test_topology_reader_fuzz(small, data):
    path = small["work"] / "top.pdb"
    path.write_bytes(_mutate(small["pdb"].read_bytes(), data))
    _clean(lambda: _read_everything(path, small["dcd"]))


def _use_dataset(path: Path) -> None:
    from eghn_md.data.dataset import Dataset

    with Dataset(path) as ds:
        ds.validate()
        ds.summary()
        for name in ds.trajectories:
            for _start, block in ds.iter_positions(name):
                assert np.isfinite(block).all()  # validate() passed, so every stored value is finite


@fuzz
@given(data=st.data())
def test_dataset_reader_fuzz(small, data):
    path = small["work"] / "d.h5"
    path.write_bytes(_mutate(small["h5"].read_bytes(), data))
    _clean(lambda: _use_dataset(path))


@fuzz
@given(data=st.data())
def test_checkpoint_loader_fuzz(tiny_run, small, data):
    import torch

    from eghn_md.train.checkpoint import load_checkpoint

    good = load_checkpoint(Path(tiny_run) / "model.pt")
    path = small["work"] / "m.pt"
    path.write_bytes(_mutate((Path(tiny_run) / "model.pt").read_bytes(), data))

    def load():
        ckpt = load_checkpoint(path)  # a flip that survives must leave the verified content unchanged
        assert ckpt.model_config == good.model_config
        for k, v in good.state_dict.items():
            assert torch.equal(ckpt.state_dict[k], v)

    _clean(load)
