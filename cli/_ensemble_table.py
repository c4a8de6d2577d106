"""The table of rollouts judged as a distribution (``evaluate --rollout``): model, ideal or reference, floor."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

__all__ = ["print_distribution"]


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def _metric_rows(d: dict, f: dict) -> list[tuple[str, str, str, str]]:
    """(metric, model, ideal, floor) of the comparison metrics."""
    get = lambda x, a, b: x.get(a, {}).get(b) if "skipped" not in x else None  # noqa: E731
    return [
        ("RMSF Pearson r", _fmt(get(d, "rmsf", "pearson_r")), "1", _fmt(get(f, "rmsf", "pearson_r"))),
        ("RMSF ratio model / reference", _fmt(get(d, "rmsf", "ratio")), "1", _fmt(get(f, "rmsf", "ratio"))),
        ("PC1–PC2 W2 [Å]", _fmt(get(d, "pca", "w2_A")), "0", _fmt(get(f, "pca", "w2_A"))),
        ("Jensen–Shannon, Rg", _fmt(get(d, "js", "rg")), "0", _fmt(get(f, "js", "rg"))),
        ("Jensen–Shannon, pair distances", _fmt(get(d, "js", "pairwise_distances")), "0",
         _fmt(get(f, "js", "pairwise_distances"))),
    ]


def _state_rows(d: dict, f: dict) -> list[tuple[str, str, str, str]]:
    """(quantity, model, reference, floor's second half) of the state summaries."""
    m, r = d["states"]["model"], d["states"]["reference"]
    h = f["states"]["model"] if "states" in f else {}
    a, b = d["states"]["definition"]["names"]
    unit = "ps" if d["states"]["model"]["dt_ps"] == d["states"]["model"]["dt_ps"] else "steps"
    dwell = "mean_dwell_ps" if unit == "ps" else "mean_dwell_steps"
    rows = [(f"{x} → {y} per 1,000 steps", "per_1000_steps", f"{x}_to_{y}", 2) for x, y in ((a, b), (b, a))]
    rows += [(f"mean dwell {x} [{unit}]", dwell, x, 1) for x in (a, b)]
    pop = (escape(f"population {b} ± standard error"), _population(m, b), _population(r, b),
           _population(h, b) if h else "–")
    return [pop, _gap_row(d["states"].get("population_gap"))] + [
        (escape(label), _fmt(m[k][n], dg), _fmt(r[k][n], dg), _fmt(h.get(k, {}).get(n), dg))
        for label, k, n, dg in rows]


def _population(summary: dict, name: str) -> str:
    """``0.67 ± 0.02`` (the error when the summary has one)."""
    text = _fmt(summary["population"][name], 2)
    se = summary.get("population_se")
    return text if se is None or text == "–" else f"{text} ± {se:.2f}"


def _gap_row(gap) -> tuple[str, str, str, str]:
    """The model's population minus the reference's, with the combined error and the gap in errors."""
    if not gap or gap.get("model_minus_reference") is None:
        return ("population gap, model − reference", "–", "", "")
    text = f"{gap['model_minus_reference']:+.2f}"
    if gap.get("se") is not None:
        text += f" ± {gap['se']:.2f}" + (f" ({gap['z']:+.1f} SE)" if gap.get("z") is not None else "")
    return (escape(f"population gap {gap['state']}, model − reference"), text, "0", "")


def print_distribution(console, d: dict) -> None:
    """Print the ``distribution`` entry of :func:`eghn_md.rollout.assess.assess_rollouts`."""
    if "skipped" in d:
        console.print(f"Rollouts as a distribution: skipped ({escape(d['skipped'])})")
        return
    f = d.get("floor", {"skipped": "none"})
    n = d["n_frames"]
    t = Table(title=f"Rollouts as a distribution: {n['model']} frames of {d['n_trajectories']['model']} rollouts vs "
                    f"{n['reference']} reference frames {d['reference_frames_apart']} apart")
    for col, just in (("metric", "left"), ("model", "right"), ("ideal / reference", "right"), ("floor", "right")):
        t.add_column(col, justify=just)
    for row in _metric_rows(d, f):
        t.add_row(*row)
    if "states" in d:
        t.add_section()
        for row in _state_rows(d, f):
            t.add_row(*row)
    console.print(t)
    kind = {"halves": "the reference's two halves", "trajectories": "half of the reference trajectories vs the "
            "other half"}.get(f.get("floor_kind"), f"not available: {escape(str(f.get('skipped')))}")
    console.print(f"floor = the same metrics between {kind} (what perfect sampling scores)"
                  + (f"; figure {escape(d['figure'])}" if d.get("figure") else ""))
