"""Figures (matplotlib, headless: the object-oriented API, no pyplot, so no display or backend is needed).

* :func:`plot_run`: a training run's loss / validation curves (``RUN/history.csv``, baselines from
  ``RUN/metrics.json``), every ``RUN/*_rmsd.csv`` and every ``RUN/errors_*.csv`` found in the run directory.
* :func:`plot_history`, :func:`plot_rmsd_csv`, :func:`plot_errors_csv`: one figure from one file.
* :func:`plot_rollout_rmsd`: RMSD vs time of a rollout with ``--truth`` (from :func:`rollout_run`'s summary).
* :func:`plot_clusters`: pooling cluster along the sequence and the soft assignment heat-map.

Colours: predictors use Okabe-Ito colours *and* distinct line styles (model: blue solid, static: black dashed,
constant velocity: vermillion dash-dot), so they stay apart for colour-blind readers and in greyscale; heat-maps use
``viridis`` (perceptually uniform, colour-blind safe); clusters use :func:`eghn_md.export.viewers.cluster_palette`.
Every figure is written atomically (``FORMATS``: png, svg, pdf); each function returns the path it wrote.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

import numpy as np

from eghn_md.errors import DataError, UsageError
from eghn_md.io.atomic import atomic_path

__all__ = [
    "FORMATS", "plot_run", "plot_history", "plot_rmsd_csv", "plot_errors_csv", "plot_rollout_rmsd", "plot_clusters",
]  # fmt: skip

FORMATS = ("png", "svg", "pdf")
_STYLE = {  # predictor → (label, colour, line style)
    "model": ("model", "#0072B2", "-"),
    "static": ("static (no motion)", "#000000", "--"),
    "const_velocity": ("constant velocity", "#D55E00", "-."),
}
_DPI = 150


# ------------------------------------------------------------------------------------------------------ helpers
def _figure(nrows: int = 1, *, height: float = 3.6, width: float = 7.0, **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, 1, squeeze=False, **kw)[:, 0]
    return fig, axes


def _save(fig, path: Path) -> str:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(f"figure format {fmt!r} of {str(path)!r} is not one of {list(FORMATS)}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=_DPI)
    return str(path)


def _check_fmt(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"`fmt` {fmt!r} is not one of {list(FORMATS)}", params=("fmt",))
    return fmt


def _read_csv(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{str(path)!r} does not exist")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DataError(f"{str(path)!r} has no data rows")
    return rows


def _column(rows: list[dict], key: str, path: Path) -> np.ndarray:
    if key not in rows[0]:
        raise DataError(f"{str(path)!r} has no column {key!r} (columns: {list(rows[0])})")
    return np.array([float(r[key]) if r[key] not in ("", None) else np.nan for r in rows])


def _log_y(ax) -> None:
    """Log y axis with plain numbers (0.2, 0.5, 1) instead of 2×10⁻¹; minor labels only over a short range."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    lo, hi = ax.get_ylim()
    ax.yaxis.set_minor_formatter(fmt if lo > 0 and hi / lo < 30 else NullFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _time_axis(t_ps: np.ndarray) -> tuple[np.ndarray, str]:
    if np.nanmax(np.abs(t_ps)) >= 2000.0:
        return t_ps / 1000.0, "time since start frame [ns]"
    return t_ps, "time since start frame [ps]"


def _sequence_axis(nodes: dict) -> tuple[np.ndarray, str]:
    """x positions of the nodes: residue numbers when they increase along one segment, else node indices."""
    resid = np.asarray(nodes["resid"], dtype=np.int64)
    segs = set(str(s) for s in nodes.get("segid") or [""])
    if len(segs) == 1 and len(resid) > 0 and np.all(np.diff(resid) > 0):
        return resid.astype(float), "residue number"
    return np.arange(len(resid), dtype=float), "node index (along the sequence)"


# ------------------------------------------------------------------------------------------------------ training
def plot_history(history_csv: str | Path, out: str | Path, *, metrics_json: Optional[str | Path] = None) -> str:
    """Training loss and validation MSE per epoch (log scale), with the validation baselines of ``metrics.json``."""
    history_csv = Path(history_csv)
    rows = _read_csv(history_csv)
    epoch = _column(rows, "epoch", history_csv)
    fig, (ax,) = _figure(width=9.0)
    ax.plot(epoch, _column(rows, "train_mse", history_csv), color="#0072B2", ls="-", marker="o", ms=3,
            label="training MSE")
    if "train_loss" in rows[0]:
        ax.plot(epoch, _column(rows, "train_loss", history_csv), color="#56B4E9", ls=":", marker=None,
                label="training loss (MSE + λ·pooling reg.)")
    val = _column(rows, "val_mse", history_csv)
    ax.plot(epoch, val, color="#E69F00", ls="-", marker="s", ms=3, label="validation MSE")
    if np.isfinite(val).any():
        best = int(np.nanargmin(val))
        ax.plot([epoch[best]], [val[best]], marker="*", ms=12, color="#E69F00", mec="black", ls="none",
                label=f"best epoch ({int(epoch[best])})")
    metrics = _load_json(metrics_json)
    base = (metrics.get("splits") or {}).get("val") or {}
    for key in ("static", "const_velocity"):
        if isinstance(base.get(key), (int, float)):
            label, colour, ls = _STYLE[key]
            ax.axhline(base[key], color=colour, ls=ls, lw=1.2, label=f"{label}, validation")
    _log_y(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE per coordinate [Å²]")
    title = "Training curves"
    if metrics.get("model"):
        title += f": {metrics['model']}, ΔT = {metrics.get('horizon_frames')} frames"
        if metrics.get("horizon_ps"):
            title += f" ({metrics['horizon_ps']:.3g} ps)"
    ax.set_title(title, fontsize=10)
    if len(epoch) <= 12:
        ax.set_xticks(epoch)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return _save(fig, Path(out))


def _load_json(path) -> dict:
    if path is None or not Path(path).exists():
        return {}
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------------------ rollout
def plot_rmsd_csv(rmsd_csv: str | Path, out: Optional[str | Path] = None, *, fmt: str = "png",
                  title: Optional[str] = None) -> str:
    """RMSD to the true frames vs time for the model and the baselines, from a ``PRED_rmsd.csv``."""
    rmsd_csv = Path(rmsd_csv)
    rows = _read_csv(rmsd_csv)
    t, xlabel = _time_axis(_column(rows, "time_ps", rmsd_csv))
    fig, (ax,) = _figure()
    for key, (label, colour, ls) in _STYLE.items():
        col = f"rmsd_{key}_A"
        if col in rows[0]:
            ax.plot(t, _column(rows, col, rmsd_csv), color=colour, ls=ls, marker="o" if key == "model" else None,
                    ms=3, lw=1.8 if key == "model" else 1.3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("RMSD to the true trajectory [Å]")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_title(title or f"Rollout vs truth ({rmsd_csv.stem.removesuffix('_rmsd')}, no superposition)",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    out = Path(out) if out is not None else rmsd_csv.with_suffix(f".{_check_fmt(fmt)}")
    return _save(fig, out)


def plot_rollout_rmsd(summary: dict) -> str:
    """RMSD vs time of a rollout run with ``--truth``; writes ``PRED_rmsd.png`` beside ``PRED_rmsd.csv``.

    Args:
        summary: the dict returned by :func:`eghn_md.rollout.rollout.rollout_run` (``outputs`` holds the CSV).
    """
    csvs = [p for p in summary.get("outputs", []) if str(p).endswith("_rmsd.csv")]
    if not csvs:
        raise UsageError("the rollout summary lists no *_rmsd.csv (run the rollout with `truth`)", params=("truth",))
    model = Path(summary.get("model_file", "model.pt"))
    title = (f"Rollout of {model.parent.name + '/' if model.parent.name else ''}{model.name} from frame "
             f"{summary.get('start_frame')}: {summary.get('steps')} steps × {summary.get('step_ps', 0):.3g} ps "
             "(RMSD without superposition)")
    return plot_rmsd_csv(csvs[0], title=title)


# ------------------------------------------------------------------------------------------------------ errors
def plot_errors_csv(errors_csv: str | Path, out: Optional[str | Path] = None, *, fmt: str = "png") -> str:
    """Per-residue MSE at the horizon along the sequence (model and baselines), from ``errors_<split>.csv``."""
    errors_csv = Path(errors_csv)
    rows = _read_csv(errors_csv)
    nodes = {"resid": [int(float(r.get("resid", i))) for i, r in enumerate(rows)],
             "segid": [r.get("segid", "") for r in rows]}
    x, xlabel = _sequence_axis(nodes)
    fig, (ax,) = _figure(width=8.0)
    for key, (label, colour, ls) in _STYLE.items():
        col = f"{key}_mse_A2"
        if col in rows[0]:
            y = _column(rows, col, errors_csv)
            ax.plot(x, y, color=colour, ls=ls, lw=1.6 if key == "model" else 1.1,
                    label=f"{label}: mean {np.nanmean(y):.3g} Å²")
    _log_y(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MSE per coordinate at the horizon [Å²]")
    split = errors_csv.stem.removeprefix("errors_")
    ax.set_title(f"Per-residue error along the sequence ({split} split)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    out = Path(out) if out is not None else errors_csv.with_suffix(f".{_check_fmt(fmt)}")
    return _save(fig, out)


# ------------------------------------------------------------------------------------------------------ run
def plot_run(run_dir: str | Path, fmt: str = "png", *, out_dir: Optional[str | Path] = None) -> list[str]:
    """All figures of a run directory: ``loss.<fmt>`` from ``history.csv``, ``<stem>.<fmt>`` for every
    ``*_rmsd.csv`` and ``errors_*.csv`` in it. Returns the written paths (raises if there is nothing to plot)."""
    fmt = _check_fmt(fmt)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {str(run_dir)!r} does not exist or is not a directory")
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    written = []
    if (run_dir / "history.csv").exists():
        written.append(plot_history(run_dir / "history.csv", out_dir / f"loss.{fmt}",
                                    metrics_json=run_dir / "metrics.json"))
    for p in sorted(run_dir.glob("*_rmsd.csv")):
        written.append(plot_rmsd_csv(p, out_dir / f"{p.stem}.{fmt}"))
    for p in sorted(run_dir.glob("errors_*.csv")):
        written.append(plot_errors_csv(p, out_dir / f"{p.stem}.{fmt}"))
    if not written:
        raise UsageError(f"nothing to plot in {str(run_dir)!r}: no history.csv, *_rmsd.csv or errors_*.csv")
    return written


# ------------------------------------------------------------------------------------------------------ clusters
def plot_clusters(result, nodes: dict, out: str | Path, *, colours: dict, title: str = "") -> str:
    """Hard cluster along the sequence, the soft assignment heat-map and (for a frame range) the stability.

    Args:
        result: a :class:`eghn_md.export.clusters.ClusterAssignment` (N nodes, K clusters).
        nodes: node metadata (``resid``, ``segid`` lists).
        colours: ``{cluster id: "#RRGGBB"}`` for the clusters used (the viewers' colours).
    """

    x, xlabel = _sequence_axis(nodes)
    multi = len(result.frames) > 1
    nrows = 3 if multi else 2
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 2.6 * nrows + 0.6), layout="constrained")
    heights = [1.0, 1.3] + ([0.7] if multi else [])
    axes = fig.subplots(nrows, 1, sharex=True, gridspec_kw={"height_ratios": heights})
    used = sorted(colours)
    # (a) hard cluster along the sequence, in the viewers' colours
    ax = axes[0]
    ax.scatter(x, result.cluster, c=[colours[int(k)] for k in result.cluster], s=16, marker="s",
               edgecolors="none")
    ax.set_yticks(used)
    ax.set_yticklabels([f"{k} (n={int((result.cluster == k).sum())})" for k in used], fontsize=7)
    ax.set_ylim(min(used) - 0.7, max(used) + 0.7)
    ax.set_ylabel("cluster (argmax S)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("(a) hard assignment: argmax over k of S[i, k] (colours as in clusters.pml / .tcl)", fontsize=9,
                 loc="left")
    # (b) soft assignment heat-map, K rows
    ax = axes[1]
    edges = _edges(x)
    lo, hi = float(result.soft.min()), float(result.soft.max())
    if hi - lo < 1e-6:
        lo, hi = 0.0, 1.0
    mesh = ax.pcolormesh(edges, np.arange(result.n_clusters + 1) - 0.5, result.soft.T, cmap="viridis",
                         vmin=lo, vmax=hi, shading="flat")
    ax.set_ylabel("cluster k")
    ax.set_yticks(range(result.n_clusters) if result.n_clusters <= 24 else
                  range(0, result.n_clusters, max(1, result.n_clusters // 12)))
    ax.tick_params(axis="y", labelsize=7)
    fig.colorbar(mesh, ax=ax, label="soft assignment S[i, k]", pad=0.01)
    ax.set_title("(b) soft assignment S" + (f", mean over {len(result.frames)} frames" if multi else "")
                 + f"; colour range = data range, uniform = 1/K = {1 / result.n_clusters:.3g}", fontsize=9,
                 loc="left")
    if multi:
        ax = axes[2]
        ax.plot(x, result.stability, color="#0072B2", lw=1.2, label="stability")
        ax.plot(x, result.probability, color="#E69F00", lw=1.0, ls="--", label="probability")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("fraction")
        ax.legend(fontsize=7, loc="lower right", ncol=2)
        ax.set_title("(c) stability: fraction of frames in the majority cluster", fontsize=9, loc="left")
    axes[-1].set_xlabel(xlabel)
    frames = result.frames
    sub = f"frame {frames[0]}" if not multi else f"frames {frames[0]}–{frames[-1]} ({len(frames)} frames)"
    fig.suptitle(f"Learned pooling clusters: {len(used)} of K = {result.n_clusters} used, {sub}", fontsize=11)
    return _save(fig, Path(out))


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres ``x`` (half-way between neighbours; ±0.5 at the ends)."""
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - 0.5], mid, [x[-1] + 0.5]])
