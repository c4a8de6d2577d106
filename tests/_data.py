"""Small inputs for the reader / dataset / preprocess tests: MDAnalysisTests files and tiny generated files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["datafile", "mda_positions", "write_mdtraj_h5", "write_nan_dcd", "leftovers", "run_cli"]


def load_benchmark(name: str):
    """The script ``examples/benchmarks/{name}.py`` imported as a module (its functions, without running ``main``)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "examples" / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered before it runs, as an import does (dataclasses look themselves up)
    spec.loader.exec_module(module)
    return module


def datafile(name: str) -> str:
    """Path of an MDAnalysisTests data file by its ``MDAnalysisTests.datafiles`` name (PSF, DCD, GRO, …)."""
    from MDAnalysisTests import datafiles

    return str(getattr(datafiles, name))


def mda_positions(topology: str, trajectory: str, selection: str, stride: int = 1):
    """Reference ``(positions (T, n, 3) float32, times (T,))`` from a plain MDAnalysis loop."""
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(topology, trajectory)
    ag = u.select_atoms(selection)
    pos, times = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Reader has no dt information" (TRJ, PDB)
        for ts in u.trajectory[::stride]:
            pos.append(ag.positions.copy())
            times.append(ts.time)
    return np.asarray(pos, dtype=np.float32), np.asarray(times)


def write_mdtraj_h5(path: Path, n_frames: int = 4) -> Path:
    """The first ``n_frames`` AdK frames (PSF + DCD) converted to mdtraj's HDF5 format (nm, with topology)."""
    import mdtraj

    traj = mdtraj.load_dcd(datafile("DCD"), top=datafile("PSF"), frame=None)[:n_frames]
    traj.time = np.arange(n_frames) * 2.5  # ps, to check that times are carried over
    traj.save_hdf5(str(path))
    return path


def write_nan_dcd(path: Path, *, bad_frame: int = 1, n_frames: int = 3) -> Path:
    """A DCD of the AdK PSF whose frame ``bad_frame`` has a NaN coordinate on a Cα atom."""
    import MDAnalysis as mda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(datafile("PSF"), datafile("DCD"))
        ca = u.select_atoms("name CA")[5].index
        with mda.Writer(str(path), n_atoms=u.atoms.n_atoms) as w:
            for ts in u.trajectory[:n_frames]:
                if ts.frame == bad_frame:
                    ts.positions[ca, 1] = np.nan
                w.write(u.atoms)
    return path


def leftovers(directory: Path) -> list[str]:
    """Hidden/temporary files left in ``directory`` (atomic writes use ``.NAME.*.tmp*``)."""
    return sorted(n for n in os.listdir(directory) if n.startswith(".") or ".tmp" in n)


def run_cli(*args, expect: int | None = None):
    """Invoke ``eghn-md`` in-process with ``args`` (each turned into a string); returns Click's Result
    (``exit_code``, ``output``, ``stdout``, ``stderr``, ``exception``). The one way the tests run a command.

    ``expect``: the exit status the command must end with (asserted, showing its output and exception).
    """
    from click.testing import CliRunner

    from cli.main import main

    res = CliRunner().invoke(main, [str(a) for a in args])
    if expect is not None:
        assert res.exit_code == expect, f"exit {res.exit_code} (expected {expect})\n{res.output}\n{res.exception!r}"
    return res


def history_rows(run: Path) -> list[dict]:
    """The rows of ``RUN/history.csv`` as dicts of strings."""
    import csv

    with open(Path(run) / "history.csv") as fh:
        return list(csv.DictReader(fh))


class StopAfter:
    """A progress object that interrupts training (like Ctrl-C) once ``k`` epochs are complete."""

    def __init__(self, k: int):
        self.k = k

    def start(self, total, done):
        pass

    def update(self, row):
        if row["epoch"] >= self.k:
            raise KeyboardInterrupt

    def stop(self):
        pass


def full_and_resumed_runs(data: Path, cfg_file: Path, out: Path, *, seed: int) -> tuple[Path, Path]:
    """Train ``data`` with the ``cfg_file`` config twice on CPU: ``out/full`` in one go through the CLI, and
    ``out/part`` interrupted after epoch 1 (:class:`StopAfter`) and continued with ``train --resume``; returns
    ``(full, part)`` for a test to compare (a resumed run must follow the uninterrupted one bit-identically).

    All three runs use one CPU thread: with two, a machine busy with other processes changes how torch splits some
    sums between its threads, and so their last digits (seen on the 2-core CI machine beside two busy processes),
    which is not what these tests are about."""
    import pytest
    import torch

    from eghn_md.train.config import resolve_config
    from eghn_md.train.run import train_run

    full, part = Path(out) / "full", Path(out) / "part"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_cli("train", data, "-o", full, "--config", cfg_file, "--seed", seed, "--quiet", "--device", "cpu",
                expect=0)
        config = resolve_config(preset=None, config_file=cfg_file,
                                overrides={"train": {"seed": seed, "device": "cpu"}})
        with pytest.raises(KeyboardInterrupt):
            train_run([data], part, config=config, progress=StopAfter(1))
        run_cli("train", data, "-o", part, "--resume", "--quiet", "--device", "cpu", expect=0)
    finally:
        torch.set_num_threads(threads)
    return full, part
