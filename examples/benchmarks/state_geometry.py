"""Where a generative ensemble's state populations go wrong: the global motion or the closed state's contacts.

The two-state populations of the equilibrium benchmark are read from the basin-specific native contacts
(ΔQ = Q_open − Q_closed, :mod:`eghn_md.rollout.states`). A model can miss them in two ways: its ensemble spends
too little time in globally closed conformations, or it reaches them with the closed-state contacts a little too
long, so ΔQ reads them as open. This script separates the two. Every frame of the reference run and of the model
ensemble is projected on the reference's first principal component (PC1, the closing motion: :func:`pca_basis`
of the reference superposed on its mean, in Å per node as in the PC1–PC2 W2), and the frames are binned on PC1;
per bin it prints the fraction of frames of each ensemble and their mean Q_closed and ΔQ. Equal fractions with a
lower Q_closed mean the contacts; unequal fractions mean the global motion. A second table lists the closed-state
contacts one by one (residue numbers from 1, AdK's domains: CORE, NMP 30–59, LID 122–159): their mean length in
the globally closed frames (PC1 beyond half of 1AKE's) of each ensemble, and the fraction formed.

``--drift K`` instead follows the closed state step by step: from ``--starts`` closed frames of ``--run`` (ΔQ <
−0.5, at least K horizons before the run's end), K model steps (one sample each, one batched ensemble) against the
MD's own frames k horizons later: per step the mean length [Å] of the closed-only contacts that involve a residue
of ``--segment`` (default 53–58, the end of the NMP domain), of the other closed-only contacts, and mean Q_closed.

The model ensemble is the acceptance setting of ``generative_equilibrium.py`` (``--replicas`` replicas ×
``--steps`` steps from evenly spaced frames of ``--run``, no ``--constrain``), kept in ``--frames`` (an ``.npz``)
and read back from there when it exists. ``--other-run`` adds an independent MD run in the same bins (the floor:
two MD runs should agree within their own noise).

Usage::

    OMP_NUM_THREADS=1 python examples/benchmarks/state_geometry.py --data /work/data/adk-eq \\
        --model RUN/last.pt --steps 1000 --frames ens.npz [--other-run 3] [--json out.json]
    OMP_NUM_THREADS=1 python examples/benchmarks/state_geometry.py --model RUN/last.pt --run 1 --drift 6
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

BINS = 12  #: PC1 bins over the range of all frames


def ensemble(model: Path, data: Path, ref: np.ndarray, *, replicas: int, steps: int, horizon: int, seed: int,
             frames: Path | None) -> np.ndarray:
    """(R, steps + 1, N, 3) [Å] the model's ensemble from evenly spaced frames of ``ref`` (generative_equilibrium's
    ``roll``); read from / written to ``frames`` (``.npz``) when given."""
    import generative_equilibrium as ge

    if frames is not None and frames.exists():
        return np.load(frames)["frames"]
    args = SimpleNamespace(horizon=horizon, replicas=replicas, checkpoint=model.name, source_scale=None,
                           steps=steps, sample_steps=None)
    out, _ = ge.roll(model.parent, data, ref, args, seed)
    x = np.stack([np.asarray(f, dtype=np.float32) for f in out])
    if frames is not None:
        np.savez_compressed(frames, frames=x)
    return x


def _bin_means(values: np.ndarray, idx: np.ndarray, bins: int) -> list[float]:
    """Mean of ``values`` (T,) in each of ``bins`` bins given by ``idx`` (T,) int (NaN for an empty bin)."""
    return [float(values[idx == b].mean()) if (idx == b).any() else float("nan") for b in range(bins)]


@dataclass(frozen=True)
class ClosingAxis:
    """The two-state definition (1AKE / 4AKE) and every ensemble's frames on the reference's PC1 (the closing
    motion), computed once for :func:`state_geometry` and :func:`contact_lengths`.

    Attributes:
        states: the two-state definition (closed-only / open-only contacts).
        pc1: name → (T,) [Å per node] each ensemble's frames on PC1.
        crystal: [Å per node] PC1 of 1AKE (closed) and of 4AKE (open).
    """

    states: object
    pc1: dict
    crystal: tuple[float, float]


def closing_axis(ensembles: dict[str, np.ndarray], *, reference: str) -> ClosingAxis:
    """:class:`ClosingAxis` of ``ensembles`` (name → (T, N, 3) [Å] frames, AdK Cα): PC1 of ``reference``'s frames
    superposed on their mean structure, every ensemble superposed on that mean and projected."""
    from MDAnalysisTests.datafiles import PDB_closed, PDB_small

    from eghn_md.rollout.distribution import mean_structure, pca_basis, project, superpose
    from eghn_md.rollout.states import read_nodes, states_from_files

    n = ensembles[reference].shape[1]
    states = states_from_files(PDB_closed, PDB_small, n_nodes=n, names=("closed", "open"))
    target = mean_structure(ensembles[reference])
    basis = pca_basis(superpose(ensembles[reference], target))
    on_pc1 = lambda x: project(superpose(x, target), basis)[:, 0]  # noqa: E731
    crystal = tuple(float(on_pc1(read_nodes(p)[None])[0]) for p in (PDB_closed, PDB_small))
    return ClosingAxis(states=states, pc1={k: on_pc1(x) for k, x in ensembles.items()}, crystal=crystal)


def state_geometry(ensembles: dict[str, np.ndarray], axis: ClosingAxis, *, bins: int = BINS) -> dict:
    """Per PC1 bin: the fraction of each ensemble's frames, their mean Q_closed and mean ΔQ.

    Args:
        ensembles: name → (T, N, 3) [Å] frames (AdK Cα).
        axis: :func:`closing_axis` of ``ensembles``.
        bins: number of equal-width PC1 bins spanning all frames.

    Returns:
        JSON-able dict: ``edges`` (bins + 1,) [Å per node], ``pc1_crystal`` (1AKE, 4AKE), and per ensemble
        ``fraction`` / ``q_closed`` / ``dq`` (bins,) (NaN for empty bins), ``pc1_mean`` / ``pc1_sd`` [Å] and the
        fraction of frames with ΔQ > 0.
    """
    from eghn_md.rollout.states import contact_fractions

    pc1 = axis.pc1
    lo, hi = min(v.min() for v in pc1.values()), max(v.max() for v in pc1.values())
    edges = np.linspace(lo, hi, bins + 1)
    out = {"edges": edges.tolist(), "pc1_crystal": list(axis.crystal)}
    for k, x in ensembles.items():
        q = contact_fractions(axis.states, x)
        idx = np.clip(np.searchsorted(edges, pc1[k], side="right") - 1, 0, bins - 1)
        dq = q[:, 1] - q[:, 0]
        out[k] = {"fraction": (np.bincount(idx, minlength=bins) / len(idx)).tolist(),
                  "q_closed": _bin_means(q[:, 0], idx, bins), "dq": _bin_means(dq, idx, bins),
                  "pc1_mean": float(pc1[k].mean()),
                  "pc1_sd": float(pc1[k].std()), "open_by_dq": float((dq > 0).mean())}
    return out


def _domain(i: int) -> str:
    """AdK domain of residue ``i`` (0-based node index): NMP 30–59, LID 122–159 (1-based), else CORE."""
    r = i + 1
    return "NMP" if 30 <= r <= 59 else "LID" if 122 <= r <= 159 else "CORE"


def _lengths(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(T, P) [Å] distances of the node ``pairs`` (P, 2) in frames ``x`` (T, N, 3) [Å]."""
    return np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)


def contact_lengths(ensembles: dict[str, np.ndarray], axis: ClosingAxis) -> dict:
    """Each closed-only contact's mean length [Å] and mean formed fraction (the switching function of Q) in the
    globally closed frames (PC1 beyond half of 1AKE's) of every ensemble.

    Args:
        ensembles: name → (T, N, 3) [Å] frames (AdK Cα).
        axis: :func:`closing_axis` of ``ensembles``.

    Returns:
        JSON-able dict: ``pairs`` (P, 2) residue numbers (1-based), ``domains``, ``r0`` (P,) [Å] the length in 1AKE,
        ``threshold`` [Å] on PC1, and per ensemble ``length`` / ``formed`` (P,) and ``frames`` (how many).
    """
    from eghn_md.rollout.states import contact_formed

    st, cut = axis.states, 0.5 * axis.crystal[0]
    domains = [f"{_domain(a)}–{_domain(b)}" for a, b in st.pairs_a]
    out = {"pairs": (st.pairs_a + 1).tolist(), "domains": domains, "r0": st.r0_a.tolist(), "threshold": cut}
    sign = np.sign(cut) if cut != 0 else 1.0
    for k, x in ensembles.items():
        closed = x[sign * axis.pc1[k] >= abs(cut)]
        d = _lengths(closed, st.pairs_a)
        out[k] = {"length": d.mean(axis=0).tolist(), "formed": contact_formed(st, d, st.r0_a).mean(axis=0).tolist(),
                  "frames": len(closed)}
    return out


def pair_table(res: dict, names: list[str]) -> str:
    """The markdown table of :func:`contact_lengths`' result."""
    rows = ["| contact | domains | 1AKE [Å] | " + " | ".join(f"{k}: length [Å]" for k in names) + " | " +
            " | ".join(f"{k}: formed" for k in names) + " |", "|" + "---|" * (3 + 2 * len(names))]
    for p, (a, b) in enumerate(res["pairs"]):
        cells = [f"{res[k]['length'][p]:.2f}" for k in names] + [f"{res[k]['formed'][p]:.2f}" for k in names]
        rows.append(f"| {a}–{b} | {res['domains'][p]} | {res['r0'][p]:.1f} | " + " | ".join(cells) + " |")
    rows.append("| frames | | | " + " | ".join(str(res[k]["frames"]) for k in names) + " |" + " |" * len(names))
    return "\n".join(rows)


def drift(model: Path, data: Path, *, run: int, horizon: int, steps: int, starts: int, segment: tuple[int, int],
          seed: int) -> dict:
    """Closed-only contact lengths [Å] and Q_closed step by step from closed frames, MD against the model.

    Returns:
        JSON-able dict: ``starts`` (frame indices), ``segment`` (first, last residue, 1-based), and for ``md`` and
        ``model`` the lists over steps 0 … ``steps`` of ``segment_A``, ``other_A`` (mean lengths of the closed-only
        contacts with / without a residue of the segment) and ``q_closed``.
    """
    import generative_equilibrium as ge
    import state_kernel as sk
    from MDAnalysisTests.datafiles import PDB_closed, PDB_small

    from eghn_md.rollout.states import contact_fractions, order_parameter, states_from_files

    ref, _ = ge._reference(data, run)
    st = states_from_files(PDB_closed, PDB_small, n_nodes=ref.shape[1], names=("closed", "open"))
    dq = order_parameter(st, ref[: len(ref) - steps * horizon])
    pick = np.random.default_rng(seed).choice(np.flatnonzero(dq < -0.5), starts, replace=False)
    sim = np.stack(sk._roll(model, data, ref, pick, steps, seed))  # (starts, steps + 1, N, 3)
    p = st.pairs_a
    inside = ((p + 1 >= segment[0]) & (p + 1 <= segment[1])).any(axis=1)
    out = {"starts": pick.tolist(), "segment": list(segment)}
    for name, at in (("md", lambda k: ref[pick + k * horizon]), ("model", lambda k: sim[:, k])):
        rows = {"segment_A": [], "other_A": [], "q_closed": []}
        for k in range(steps + 1):
            x = at(k)
            d = _lengths(x, p)
            rows["segment_A"].append(float(d[:, inside].mean()))
            rows["other_A"].append(float(d[:, ~inside].mean()))
            rows["q_closed"].append(float(contact_fractions(st, x)[:, 0].mean()))
        out[name] = rows
    return out


def drift_table(res: dict) -> str:
    """The markdown table of :func:`drift`'s result."""
    a, b = res["segment"]
    rows = [f"| step | MD: {a}–{b} contacts [Å] | model | MD: other closed contacts [Å] | model | MD: Q_closed "
            "| model |",
            "|---|---|---|---|---|---|---|"]
    md, mo = res["md"], res["model"]
    for k in range(len(md["q_closed"])):
        rows.append(f"| {k} | {md['segment_A'][k]:.2f} | {mo['segment_A'][k]:.2f} | {md['other_A'][k]:.2f} | "
                    f"{mo['other_A'][k]:.2f} | {md['q_closed'][k]:.2f} | {mo['q_closed'][k]:.2f} |")
    return "\n".join(rows)


def table(res: dict, names: list[str]) -> str:
    """The markdown table of :func:`state_geometry`'s result."""
    head = "| PC1 [Å] | " + " | ".join(f"{k}: frames" for k in names) + " | " + \
        " | ".join(f"{k}: Q_closed" for k in names) + " | " + " | ".join(f"{k}: ΔQ" for k in names) + " |"
    rows = [head, "|" + "---|" * (1 + 3 * len(names))]
    e = res["edges"]
    for b in range(len(e) - 1):
        cells = [f"{res[k]['fraction'][b]:.3f}" for k in names] + [f"{res[k]['q_closed'][b]:.2f}" for k in names] + \
            [f"{res[k]['dq'][b]:+.2f}" for k in names]
        rows.append(f"| {e[b]:.2f} – {e[b + 1]:.2f} | " + " | ".join(cells) + " |")
    rows.append("| ΔQ > 0 (open) | " + " | ".join(f"{res[k]['open_by_dq']:.3f}" for k in names) + " |" +
                " |" * (2 * len(names)))
    rows.append("| PC1 mean ± sd | " + " | ".join(f"{res[k]['pc1_mean']:.2f} ± {res[k]['pc1_sd']:.2f}"
                                             for k in names) + " |" + " |" * (2 * len(names)))
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/data/adk-eq"))
    ap.add_argument("--model", type=Path, required=True, help="a generative checkpoint (RUN/last.pt or model.pt)")
    ap.add_argument("--run", type=int, default=2, help="the reference run the replicas start from")
    ap.add_argument("--other-run", type=int, default=None, help="an independent MD run shown beside (the floor)")
    ap.add_argument("--horizon", type=int, default=10, help="frames per rollout step (the model's ΔT)")
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--frames", type=Path, default=None, help=".npz that keeps the ensemble (reused if present)")
    ap.add_argument("--drift", type=int, default=None, metavar="K", help="follow the closed state K steps instead")
    ap.add_argument("--starts", type=int, default=64, help="closed starting frames of --drift")
    ap.add_argument("--segment", default="53-58", help="residues (first-last, from 1) whose contacts --drift follows")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import generative_equilibrium as ge

    if args.drift is not None:
        seg = tuple(int(v) for v in args.segment.split("-"))
        res = drift(args.model, args.data, run=args.run, horizon=args.horizon, steps=args.drift,
                    starts=args.starts, segment=seg, seed=args.seed)
        print(drift_table(res))
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
        return

    ref, _ = ge._reference(args.data, args.run)
    ens = {"MD": ref[::args.horizon]}
    if args.other_run is not None:
        ens["MD (other run)"] = ge._reference(args.data, args.other_run)[0][::args.horizon]
    x = ensemble(args.model, args.data, ref, replicas=args.replicas, steps=args.steps, horizon=args.horizon,
                 seed=args.seed, frames=args.frames)
    ens["model"] = x.reshape(-1, *x.shape[2:]).astype(np.float64)
    axis = closing_axis(ens, reference="MD")
    res = state_geometry(ens, axis)
    print(f"PC1 of 1AKE (closed) {res['pc1_crystal'][0]:.2f} Å, of 4AKE (open) {res['pc1_crystal'][1]:.2f} Å")
    print(table(res, list(ens)))
    pairs = contact_lengths(ens, axis)
    print(f"\nClosed-only contacts in the frames with PC1 beyond {pairs['threshold']:.2f} Å (half of 1AKE's):")
    print(pair_table(pairs, list(ens)))
    if args.json:
        args.json.write_text(json.dumps({"bins": res, "contacts": pairs}, indent=2))


if __name__ == "__main__":
    main()
