"""Simulated nanoseconds per day: an eghn-md ensemble rollout beside all-atom OpenMM on the same machine.

Two measurements, one script, one machine (issue 28's README headline):

* **All-atom MD** of adenylate kinase (MDAnalysisTests ``adk_open.pdb``, 4AKE, 214 residues): heavy atoms kept,
  CHARMM names mapped to PDB ones, hydrogens added by PDBFixer at pH 7, Amber14 (``amber14-all.xml``) with the
  OBC2 implicit solvent (``implicit/obc2.xml``), no cutoff, bonds to hydrogen constrained, Langevin middle
  integrator at 300 K with a 2 fs step, OpenMM's CPU platform with ``--threads`` threads. ns/day from the wall time
  of the ``--md-steps`` timed steps only. Before them, untimed and reported separately: at most
  ``--min-iterations`` L-BFGS iterations of Amber14 in vacuum without constraints (the OBC2 term is ~99 % of an
  energy evaluation on the CPU platform and OpenMM's minimiser repeats its run per constraint restraint strength,
  so minimising the production system took > 11 min), velocities at 300 K, ``--md-warmup`` steps. The potential
  energy and the Cα RMSD reached are checked finite and reported. Expect ~2-3 s per step on one loaded thread.
* **The surrogate**: ``eghn-md rollout`` of a trained model (``--model RUN/model.pt``) from one structure,
  ``--replicas`` replicas batched in one forward pass, ``--steps`` steps; ns/day = replica-steps done × ΔT / wall
  time with ΔT = ``--step-ps`` (default 15 ps, the AdK DIMS horizon of RESULTS.md; the cost of a step does not
  depend on the ΔT a model was trained for). The rollout runs through the library's public entry point (the one
  the command line calls), writing its DCDs to a temporary folder, so the figure is what a user gets.

Usage::

    pip install -e ".[bench]"   # OpenMM + PDBFixer
    python examples/benchmarks/ns_per_day.py --md-steps 200 --threads 2 [--model run/model.pt --start adk_open.pdb
        --replicas 8 --steps 200 --sample-steps K] [--json out.json]

Without ``--model`` only the all-atom half runs; ``--md-steps 0`` skips it. The JSON records the threads, the
number of CPUs and the load average at the start and the end.

Compare both figures from one run (timings on this shared machine drift 2x from hour to hour).
"""

from __future__ import annotations

import argparse
import json
import os
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
    """``(simulation, fixer)``: an OpenMM Simulation of ``pdb`` (hydrogens added by PDBFixer at pH 7) in Amber14 +
    OBC2 implicit solvent on the CPU platform with ``threads`` threads, positions set to PDBFixer's."""
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
    return sim, fixer


def _relax(topology, positions, *, max_iterations: int, threads: int, tolerance: float = 10.0) -> tuple:
    """``(positions, iterations)``: ``positions`` (n_atoms, 3) [nm, OpenMM Quantity] after at most
    ``max_iterations`` L-BFGS iterations of Amber14 **in vacuum and without constraints** (to ``tolerance`` kJ/mol/nm
    RMS force).

    Why not the production system: its OBC2 term is a CustomGBForce, ~99 % of an energy evaluation on OpenMM's CPU
    platform (~3 s for AdK's 3,341 atoms on one thread), and OpenMM 8's minimiser repeats its whole L-BFGS run for
    every restraint strength it tries on the HBonds constraints (``maxIterations`` caps each run, not the total), so
    ``minimizeEnergy(maxIterations=200)`` took > 11 minutes. The vacuum run relieves PDBFixer's hydrogens and the
    crystal contacts in seconds; the constraints are applied afterwards and the warm-up settles the solvation term.
    """
    import openmm
    from openmm import app

    class _Count(openmm.MinimizationReporter):
        def __init__(self):
            super().__init__()
            self.iterations = 0

        def report(self, iteration, x, grad, args):
            self.iterations += 1
            return False

    system = app.ForceField("amber14-all.xml").createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": str(threads)})
    context.setPositions(positions)
    count = _Count()
    openmm.LocalEnergyMinimizer.minimize(context, tolerance, max_iterations, count)
    return context.getState(getPositions=True).getPositions(asNumpy=True), count.iterations


def _state(sim, ca) -> tuple:
    """``(potential energy [kJ/mol], Cα positions (n_ca, 3) [Å])`` of ``sim``; raises when either is not finite."""
    import numpy as np
    from openmm import unit

    state = sim.context.getState(getEnergy=True, getPositions=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    pos = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    if not (np.isfinite(energy) and np.isfinite(pos).all()):
        raise RuntimeError(f"all-atom MD blew up: potential energy {energy} kJ/mol, positions finite: "
                           f"{bool(np.isfinite(pos).all())}")
    return float(energy), np.asarray(pos[ca], dtype=np.float64)


def measure_md(*, steps: int, threads: int, warmup: int = 20, min_iterations: int = 500, seed: int = 0) -> dict:
    """ns/day of all-atom AdK (Amber14 + OBC2, 2 fs) on ``threads`` CPU threads from the wall time of ``steps``
    timed steps only; the set-up, the minimisation (:func:`_relax`, at most ``min_iterations`` iterations, 0: none)
    and ``warmup`` untimed steps are reported beside it, with the energies and the Cα RMSD reached (sanity)."""
    from MDAnalysis.analysis.rms import rmsd
    from MDAnalysisTests.datafiles import PDB_small as PDB_open  # adk_open.pdb (4AKE)
    from openmm import unit

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sim, fixer = _md_system(_heavy_atom_pdb(PDB_open, Path(tmp) / "adk_heavy.pdb"), threads)
    ca = [a.index for a in fixer.topology.atoms() if a.name == "CA"]
    e_fixer, _ = _state(sim, ca)
    t1 = time.perf_counter()
    iterations = 0
    if min_iterations:
        positions, iterations = _relax(fixer.topology, fixer.positions, max_iterations=min_iterations,
                                       threads=threads)
        sim.context.setPositions(positions)
        sim.context.applyConstraints(1e-6)
    t2 = time.perf_counter()
    e_min, ca_start = _state(sim, ca)
    tw = time.perf_counter()
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    sim.step(warmup)
    t3 = time.perf_counter()  # the timed dynamics, nothing else
    sim.step(steps)
    wall = time.perf_counter() - t3
    e_end, ca_end = _state(sim, ca)
    ns = steps * 0.002 / 1000.0
    return {"what": "OpenMM all-atom AdK, amber14-all + implicit/obc2, NoCutoff, 2 fs, HBonds, CPU platform",
            "atoms": sim.system.getNumParticles(), "threads": threads, "steps": steps, "warmup_steps": warmup,
            "wall_s": wall, "steps_per_s": steps / wall, "ns_per_day": ns / wall * 86400,
            "setup_s": t1 - t0, "minimise": {"where": "amber14-all in vacuum, no constraints", "wall_s": t2 - t1,
                                             "max_iterations": min_iterations, "iterations": iterations},
            "warmup_s": t3 - tw, "energy_kj_mol": {"pdbfixer": e_fixer, "minimised": e_min, "end": e_end},
            "ca_rmsd_from_minimised_A": float(rmsd(ca_end, ca_start, center=True, superposition=True))}


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
    p.add_argument("--md-steps", type=int, default=200, help="timed all-atom steps (2 fs each); 0 skips MD")
    p.add_argument("--md-warmup", type=int, default=20, help="untimed all-atom steps before the timed ones")
    p.add_argument("--min-iterations", type=int, default=500,
                   help="L-BFGS iterations of the (vacuum, unconstrained) minimisation before MD; 0: none")
    p.add_argument("--threads", type=int, default=2, help="threads for OpenMM and torch")
    p.add_argument("--model", default=None, help="RUN/model.pt of a trained surrogate (none: MD only)")
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
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
           "load_average_start": os.getloadavg()}
    if a.model:
        from MDAnalysisTests.datafiles import PDB_small as PDB_open  # adk_open.pdb (4AKE)

        out["surrogate"] = measure_rollout(model=a.model, start=a.start or PDB_open, replicas=a.replicas,
                                           steps=a.steps, sample_steps=a.sample_steps, seed=a.seed,
                                           step_ps=a.step_ps)
        print(f"surrogate: {out['surrogate']['ns_per_day']:.1f} ns/day ({out['surrogate']['what']})", flush=True)
    if a.md_steps:
        print(f"all-atom MD: set-up, minimisation, {a.md_warmup} + {a.md_steps} steps ...", flush=True)
        out["md"] = measure_md(steps=a.md_steps, threads=a.threads, warmup=a.md_warmup,
                               min_iterations=a.min_iterations, seed=a.seed)
        md = out["md"]
        print(f"all-atom MD: {md['ns_per_day']:.3f} ns/day ({md['steps_per_s']:.2f} steps/s, {md['atoms']} atoms, "
              f"{a.threads} threads; minimisation {md['minimise']['wall_s']:.0f} s, untimed)", flush=True)
    if "md" in out and "surrogate" in out:
        out["speedup"] = out["surrogate"]["ns_per_day"] / out["md"]["ns_per_day"]
        print(f"surrogate / MD: {out['speedup']:.0f}x")
    out["load_average_end"] = os.getloadavg()
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
