"""One tuning run of the dual-basin AdK model: generate with changed settings, print one JSON line of what matters.

    python examples/benchmarks/adk_equilibrium_tune.py --frames 1000 temperature=215 sbm.eps_closed=2.0

``key=value`` sets a field of :class:`AdkEquilibriumConfig` (``sbm.key=value``: of :class:`SbmParameters`). The
line holds the transitions each way, the open population, mean dwell times [frames], RMSD to the nearer crystal
structure, the RMS Cα displacement per lag, frames with a break or clash, steps/s and CPU seconds. The rows of
examples/benchmarks/results/adk_equilibrium.md were made with this script.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile

from eghn_md.benchmarks._sbm import SbmParameters
from eghn_md.benchmarks.adk_equilibrium import AdkEquilibriumConfig, generate


def _config(frames: int, seed: int, settings: list[str]) -> AdkEquilibriumConfig:
    top, sbm = {"n_frames": frames, "seed": seed}, {}
    for item in settings:
        key, _, value = item.partition("=")
        target = sbm if key.startswith("sbm.") else top
        name = key.removeprefix("sbm.")
        kind = {f.name: f.type for f in dataclasses.fields(SbmParameters if target is sbm else AdkEquilibriumConfig)}
        target[name] = {"int": int, "float": float, "str": str}[str(kind[name])](value)
    return AdkEquilibriumConfig(**top, sbm=SbmParameters(**sbm))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="*", help="key=value or sbm.key=value")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = _config(args.frames, args.seed, args.settings)
    with tempfile.TemporaryDirectory() as out:
        s = generate(out, config)
    st, dt = s["states"], s["frame_dt_ps"]
    steps = config.n_frames * config.steps_per_frame + config.equilibration_steps
    print(json.dumps({
        "settings": args.settings, "frames": config.n_frames, "steps_per_frame": config.steps_per_frame,
        "closed_to_open": st["transitions"]["closed_to_open"], "open_to_closed": st["transitions"]["open_to_closed"],
        "p_open": st["population"]["open"],
        "dwell_frames": {k: (None if v is None else round(v / dt, 1)) for k, v in st["mean_dwell_ps"].items()},
        "rmsd_nearer_A": s["rmsd_A"]["nearer"]["mean"],
        "rmsd_min_A": [s["rmsd_A"][k]["min"] for k in ("closed", "open")], "rmsd_own_state_A": s["rmsd_A"]["own_state"],
        "displacement_A": s["displacement_A"], "break_frames": s["validity"]["frames_with_break"],
        "clash_frames": s["validity"]["frames_with_clash"], "steps_per_s": round(steps / s["wall_time_s"]),
        "cpu_time_s": s["cpu_time_s"]}), flush=True)


if __name__ == "__main__":
    main()
