"""The equilibrium AdK benchmark: a dual-basin Cα structure-based model of adenylate kinase simulated with OpenMM.

The model (:mod:`eghn_md.benchmarks._sbm`: Lammert, Schug & Onuchic 2009 dual-basin Gaussian contacts, Whitford
et al. 2007 for AdK) joins the closed (1AKE) and open (4AKE) crystal structures of MDAnalysisTests; Langevin
dynamics at a temperature where both basins are populated gives reversible closed ↔ open transitions. The output is
an ordinary Cα PDB + DCD that ``eghn-md preprocess`` reads like any user trajectory:

* ``DIR/adk_cg.pdb``: 214 Cα atoms (residue names and numbers of the PDB, chain A) at the closed structure;
* ``DIR/closed.pdb``, ``DIR/open.pdb``: the two basins' Cα structures (same atoms and order; open superposed on
  closed), the references of :func:`eghn_md.rollout.states.two_states`;
* ``DIR/run-SEED.dcd``: the frames [Å], times in ps from the first saved frame;
* ``DIR/run-SEED.json``: every parameter, the state summary (populations, transitions, dwell times), the validity
  summary and the wall time.

Time is the coarse-grained model's (OpenMM ps with 100 Da beads and a Langevin friction), not all-atom time; the
default frame spacing (80 steps of 0.02 ps) is chosen so one frame moves the Cα about as much as 15 ps of
all-atom AdK MD (1.4 Å RMS). With the defaults a run of 12,500 frames holds 140–190 transitions each way (23–31
per 1,000 frames), populations 0.4–0.6, no chain break or clash (examples/benchmarks/results/adk_equilibrium.md).
The model's open state is *partly* open (LID–CORE 24 ± 3 Å against 30.5 Å in 4AKE): a clean two-state
equilibrium, not a quantitative model of AdK's open ensemble.
Runs are resumable: chunks of frames and an OpenMM checkpoint live in ``DIR/.run-SEED.parts/`` until the run ends.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eghn_md.benchmarks._adk_structures import AdkStructures, load_adk_structures
from eghn_md.benchmarks._sbm import STRUCTURE_NAMES, SbmParameters, build_system, build_terms
from eghn_md.benchmarks._sim import RunSettings, run_chunks
from eghn_md.errors import UsageError
from eghn_md.io.atomic import atomic_path
from eghn_md.io.writers import mda_writer, node_universe, write_node_trajectory
from eghn_md.utils import SILENT, Progress

__all__ = ["OPENMM_HINT", "AdkEquilibriumConfig", "generate", "output_paths", "require_openmm"]

OPENMM_HINT = "pip install 'eghn-md[sim]'"
FORMAT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class AdkEquilibriumConfig:
    """A run of the benchmark: the force field, the thermostat and the frames (temperature K, times ps)."""

    n_frames: int = 12500
    seed: int = 1
    threads: int = 1
    temperature: float = 215.0  #: [K]
    friction: float = 0.5  #: [1/ps]
    timestep: float = 0.02  #: [ps]
    steps_per_frame: int = 80
    frames_per_chunk: int = 500
    equilibration_steps: int = 5000
    start: str = "closed"  #: the crystal structure the run starts from
    sbm: SbmParameters = field(default_factory=SbmParameters)

    def __post_init__(self) -> None:
        if self.start not in STRUCTURE_NAMES:
            raise UsageError(f"`start` must be one of {', '.join(STRUCTURE_NAMES)}, got {self.start!r}",
                             params=("start",))

    def run_settings(self) -> RunSettings:
        return RunSettings(temperature=self.temperature, friction=self.friction, timestep=self.timestep,
                           steps_per_frame=self.steps_per_frame, n_frames=self.n_frames,
                           frames_per_chunk=self.frames_per_chunk, equilibration_steps=self.equilibration_steps,
                           seed=self.seed, threads=self.threads)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_openmm():
    """The ``openmm`` module, or a :class:`UsageError` saying how to install it."""
    try:
        import openmm
    except ImportError:
        raise UsageError(f"the AdK equilibrium simulation needs OpenMM: {OPENMM_HINT}") from None
    return openmm


def output_paths(out_dir: str | Path, seed: int) -> dict[str, Path]:
    """The files a run with ``seed`` writes into ``out_dir``."""
    d = Path(out_dir)
    return {"topology": d / "adk_cg.pdb", "closed": d / "closed.pdb", "open": d / "open.pdb",
            "trajectory": d / f"run-{seed}.dcd", "summary": d / f"run-{seed}.json"}


def _nodes(structures: AdkStructures) -> dict:
    n = len(structures.resnames)
    return {"resname": [str(r) for r in structures.resnames], "resid": list(range(1, n + 1)), "segid": ["A"] * n,
            "chain": ["A"] * n, "name": ["CA"] * n}


def _superposed(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N, 3) [Å] ``x`` rotated and translated onto ``ref`` (Kabsch, no reflection)."""
    from MDAnalysis.analysis.align import rotation_matrix

    xc, rc = x - x.mean(axis=0), ref.mean(axis=0)
    rot, _ = rotation_matrix(xc, ref - rc)
    return xc @ rot.T + rc


def _write_pdb(path: Path, nodes: dict, pos: np.ndarray) -> None:
    u = node_universe(nodes, pos[None], dt_ps=1.0)
    with mda_writer(path, n_atoms=u.atoms.n_atoms, multiframe=False) as w:
        w.write(u.atoms)


def _write_structures(paths: dict[str, Path], structures: AdkStructures) -> dict[str, np.ndarray]:
    nodes = _nodes(structures)
    ref = {"closed": structures.ca["closed"], "open": _superposed(structures.ca["open"], structures.ca["closed"])}
    _write_pdb(paths["topology"], nodes, ref["closed"])
    for s in STRUCTURE_NAMES:
        _write_pdb(paths[s], nodes, ref[s])
    return ref


def _check_outputs(paths: dict[str, Path], overwrite: bool) -> None:
    for key in ("trajectory", "summary"):
        if paths[key].exists() and not overwrite:
            raise UsageError(f"output {str(paths[key])!r} already exists; pass `overwrite` to replace it",
                             params=("overwrite",))
    if not paths["trajectory"].parent.is_dir():
        raise UsageError(f"output directory {str(paths['trajectory'].parent)!r} does not exist")


def generate(out_dir: str | Path, config: AdkEquilibriumConfig | None = None, *, overwrite: bool = False,
             progress: Progress = SILENT) -> dict[str, Any]:
    """Simulate the dual-basin AdK model and write the PDBs, ``run-SEED.dcd`` and ``run-SEED.json`` to ``out_dir``.

    An interrupted call resumes from its last complete chunk when called again with the same config. ``overwrite``
    replaces finished outputs and discards the chunks of an unfinished run of this seed with another config (those
    of the same config are resumed).

    Args:
        out_dir: an existing directory.
        config: the run (default: :class:`AdkEquilibriumConfig` ()).
        overwrite: replace existing outputs.
        progress: told the frames done after each chunk.

    Returns:
        The summary written to ``run-SEED.json`` (also the ``--json`` output of the command line).
    """
    require_openmm()
    config = config or AdkEquilibriumConfig()
    paths = output_paths(out_dir, config.seed)
    _check_outputs(paths, overwrite)
    structures = load_adk_structures(contact_cutoff=config.sbm.contact_cutoff)
    terms = build_terms(structures.ca, structures.contacts, config.sbm)
    system = build_system(terms, config.sbm)
    settings = config.run_settings()
    work = Path(out_dir) / f".run-{config.seed}.parts"
    t0, c0 = time.perf_counter(), time.process_time()
    frames = run_chunks(system, structures.ca[config.start], settings, work, progress=progress, replace=overwrite,
                        identity={"format": FORMAT_VERSION, "config": config.to_dict()})
    wall = {"wall_time_s": round(time.perf_counter() - t0, 1), "cpu_time_s": round(time.process_time() - c0, 1)}
    ref = _write_structures(paths, structures)
    write_node_trajectory(paths["trajectory"], _nodes(structures), frames, dt_ps=settings.frame_dt_ps,
                          pdb_path=paths["trajectory"])
    summary = _summary(config, terms.counts(), frames, ref, wall, paths)
    with atomic_path(paths["summary"]) as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return summary


def _summary(config: AdkEquilibriumConfig, counts: dict, frames: np.ndarray, ref: dict, wall: dict,
             paths: dict[str, Path]) -> dict[str, Any]:
    """The JSON summary; ``wall``: wall and CPU seconds of the simulation in this call (a resumed run: since the
    resume)."""
    from eghn_md.benchmarks._adk_analysis import analyse_run

    return {"format": FORMAT_VERSION, "config": config.to_dict(), "terms": counts,
            "frame_dt_ps": config.run_settings().frame_dt_ps, "n_frames": len(frames),
            "time_unit": "ps of the coarse-grained model (OpenMM time with 100 Da Cα beads), not all-atom ps",
            **analyse_run(frames, ref, dt_ps=config.run_settings().frame_dt_ps),
            **wall, "files": {k: str(v) for k, v in paths.items()}}
