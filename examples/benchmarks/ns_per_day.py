"""Simulated nanoseconds per day: an eghn-md ensemble rollout beside all-atom OpenMM on the same machine.

Two measurements, one script, one machine (issue 28's README headline):

* **All-atom MD** of adenylate kinase (MDAnalysisTests ``adk_open.pdb``, 4AKE, 214 residues): heavy atoms kept,
  CHARMM names mapped to PDB ones, hydrogens added by PDBFixer at pH 7, Amber14 (``amber14-all.xml``) with the
  OBC2 implicit solvent (``implicit/obc2.xml``), no cutoff, bonds to hydrogen constrained, Langevin middle
  integrator at 300 K with a 2 fs step, OpenMM's CPU platform with ``--threads`` threads. ns/day from the wall time
  of ``--md-steps`` steps after a minimisation and a warm-up.
* **The surrogate**: ``eghn-md rollout`` of a trained model (``--model RUN/model.pt``) from one structure,
  ``--replicas`` replicas batched in one forward pass, ``--steps`` steps; ns/day = replica-steps done × ΔT / wall
  time with ΔT = ``--step-ps`` (default 15 ps, the AdK DIMS horizon of RESULTS.md; the cost of a step does not
  depend on the ΔT a model was trained for). The rollout runs through the library's public entry point (the one
  the command line calls), writing its DCDs to a temporary folder, so the figure is what a user gets.

Usage::

    pip install -e ".[bench]"   # OpenMM + PDBFixer
    python examples/benchmarks/ns_per_day.py --md-steps 2000 --threads 2 [--model run/model.pt --start adk_open.pdb
        --replicas 8 --steps 200 --sample-steps K] [--json out.json]

Compare both figures from one run (timings on this shared machine drift 2x from hour to hour).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

#: CHARMM → PDB residue and atom names that PDBFixer / Amber14 do not know
_RESNAMES = {"HSD": "HIS", "HSE": "HIS", "HSP": "HIS", "HID": "HIS", "HIE": "HIS", "HIP": "HIS"}
_ATOM_NAMES = {("ILE", "CD"): "CD1", (None, "OT1"): "O", (None, "OT2"): "OXT"}


def _heavy_atom_pdb(source: str, out: Path) -> Path:
    """``source``'s protein heavy atoms with PDB residue / atom names, written to ``out`` (for PDBFixer)."""
    import MDAnalysis as mda

    u = mda.Universe(source)
    protein = u.select_atoms("protein and not name H*")
    for res in protein.residues:
        res.resname = _RESNAMES.get(res.resname, res.resname)
    for atom in protein:
        atom.name = _ATOM_NAMES.get((atom.resname, atom.name), _ATOM_NAMES.get((None, atom.name), atom.name))
    protein.chainIDs = "A"
    protein.write(str(out))
    return out


def _md_system(pdb: Path, threads: int):
    """An OpenMM Simulation of ``pdb`` (hydrogens added) in Amber14 + OBC2 implicit solvent on the CPU platform."""
    import openmm
    from openmm import app, unit
    from pdbfixer import PDBFixer

    fixer = PDBFixer(filename=str(pdb))
    fixer.findMissingResidues()
    fixer.missingResidues = {}
    fixer.findMissingAtoms()
    fixer.addMissingAtoms()
    fixer.addMissingHydrogens(7.0)
    ff = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    system = ff.createSystem(fixer.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
    platform = openmm.Platform.getPlatformByName("CPU")
    sim = app.Simulation(fixer.topology, system, integrator, platform, {"Threads": str(threads)})
    sim.context.setPositions(fixer.positions)
    return sim, system.getNumParticles()


def measure_md(*, steps: int, threads: int, warmup: int = 100) -> dict:
    """ns/day of all-atom AdK (Amber14 + OBC2, 2 fs) on ``threads`` CPU threads over ``steps`` timed steps."""
    from MDAnalysisTests.datafiles import PDB_small as PDB_open  # adk_open.pdb (4AKE)

    with tempfile.TemporaryDirectory() as tmp:
        sim, n_atoms = _md_system(_heavy_atom_pdb(PDB_open, Path(tmp) / "adk_heavy.pdb"), threads)
    sim.minimizeEnergy(maxIterations=200)
    sim.step(warmup)
    t0 = time.perf_counter()
    sim.step(steps)
    wall = time.perf_counter() - t0
    ns = steps * 0.002 / 1000.0
    return {"what": "OpenMM all-atom AdK, amber14-all + implicit/obc2, 2 fs, HBonds, CPU platform",
            "atoms": n_atoms, "threads": threads, "steps": steps, "wall_s": wall, "ns_per_day": ns / wall * 86400}


def measure_rollout(*, model: str, start: str, replicas: int, steps: int, sample_steps, seed: int,
                    step_ps: float = 15.0) -> dict:
    """ns/day of an ensemble rollout of ``model`` from the single structure ``start`` (wall time of the whole call:
    reading, sampling, writing)."""
    import torch

    from eghn_md.rollout.rollout import rollout_run

    with tempfile.TemporaryDirectory() as tmp:
        kwargs = {"replicas": replicas, "seed": seed}
        if sample_steps is not None:
            kwargs["sample_steps"] = sample_steps
        t0 = time.perf_counter()
        result = rollout_run(model, start, [], frame=0, steps=steps, output=Path(tmp) / "pred.dcd", **kwargs)
        wall = time.perf_counter() - t0
    model_ps = float(result.get("horizon_ps", float("nan")))
    dt_ps = float(step_ps) if step_ps else model_ps
    done = int(sum(result.get("steps_done", [steps] * replicas)))  # replica-steps before any guard stop
    ns = done * dt_ps / 1000.0
    return {"what": f"eghn-md rollout, {replicas} replicas x {steps} steps of {dt_ps:g} ps", "model": model,
            "threads": torch.get_num_threads(), "wall_s": wall, "ns_per_day": ns / wall * 86400,
            "step_ps": dt_ps, "model_horizon_ps": model_ps, "replicas": replicas, "steps": steps,
            "replica_steps_done": done, "replica_steps_per_s": done / wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--md-steps", type=int, default=2000, help="timed all-atom steps (2 fs each); 0 skips MD")
    p.add_argument("--threads", type=int, default=2, help="threads for OpenMM and torch")
    p.add_argument("--model", default=None, help="RUN/model.pt of a trained surrogate (skipped when absent)")
    p.add_argument("--start", default=None, help="start structure (default: MDAnalysisTests adk_open.pdb)")
    p.add_argument("--replicas", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--sample-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step-ps", type=float, default=15.0, help="ps per rollout step (0: the model's own horizon)")
    p.add_argument("--json", dest="json_out", default=None)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if a.model:
        from MDAnalysisTests.datafiles import PDB_small as PDB_open  # adk_open.pdb (4AKE)

        out["surrogate"] = measure_rollout(model=a.model, start=a.start or PDB_open, replicas=a.replicas,
                                           steps=a.steps, sample_steps=a.sample_steps, seed=a.seed,
                                           step_ps=a.step_ps)
        print(f"surrogate: {out['surrogate']['ns_per_day']:.1f} ns/day ({out['surrogate']['what']})", flush=True)
    if a.md_steps:
        out["md"] = measure_md(steps=a.md_steps, threads=a.threads)
        print(f"all-atom MD: {out['md']['ns_per_day']:.3f} ns/day ({out['md']['atoms']} atoms)", flush=True)
    if "md" in out and "surrogate" in out:
        out["speedup"] = out["surrogate"]["ns_per_day"] / out["md"]["ns_per_day"]
        print(f"surrogate / MD: {out['speedup']:.0f}x")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
